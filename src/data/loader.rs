//! The data loader: a sampler's indices cut into batches, fetched on worker threads that prefetch
//! whole batches, delivered in sampler order whatever the number of workers. Over an iterable
//! dataset, the batches are assembled as the samples come ([`super::iterable`]).
use super::iterable::{IterableDataset, Shard, StreamIter};
use super::sampler::Sampler;
use super::{Batch, DataError, Dataset, FetchCtx, Result};
use crate::data_err;
use std::sync::mpsc;
use std::sync::Arc;
use std::thread::JoinHandle;

/// torch.utils.data.DataLoader's keywords.
#[derive(Debug, Clone)]
pub struct LoaderOptions {
    pub batch_size: usize,
    pub shuffle: bool,
    pub drop_last: bool,
    /// 0: batches are fetched on the iterating thread; n: by n worker threads.
    pub num_workers: usize,
    pub pin_memory: bool,
    /// Seeds the sampler (with the epoch) and random transforms.
    pub seed: u64,
    /// Batches each worker fetches ahead.
    pub prefetch_factor: usize,
    /// Replaces the sequential / random sampler that `shuffle` picks.
    pub sampler: Option<Sampler>,
}

impl Default for LoaderOptions {
    fn default() -> Self {
        LoaderOptions {
            batch_size: 1,
            shuffle: false,
            drop_last: false,
            num_workers: 0,
            pin_memory: false,
            seed: 0,
            prefetch_factor: 2,
            sampler: None,
        }
    }
}

/// A dataset, a sampler and batching options. Cloning is cheap (the dataset is shared).
#[derive(Clone)]
pub struct DataLoader {
    source: Source,
    opts: LoaderOptions,
    sampler: Sampler,
    /// Epoch that the next [`DataLoader::iter_next`] runs.
    epoch: u64,
}

/// What a loader reads: a map-style dataset (indexed through the sampler) or an iterable one.
#[derive(Clone)]
enum Source {
    Map(Arc<dyn Dataset>),
    /// With this process's rank and the world size (1 outside DDP).
    Iterable {
        ds: Arc<dyn IterableDataset>,
        rank: usize,
        world_size: usize,
    },
}

impl std::fmt::Debug for DataLoader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "DataLoader(batch_size={}, batches={}, shuffle={}, drop_last={}, num_workers={}, dataset={})",
            self.opts.batch_size,
            self.len().map_or("unknown".to_string(), |n| n.to_string()),
            self.sampler.is_random(),
            self.opts.drop_last,
            self.opts.num_workers,
            self.describe_dataset()
        )
    }
}

impl DataLoader {
    pub fn new(dataset: Arc<dyn Dataset>, opts: LoaderOptions) -> Result<DataLoader> {
        if opts.batch_size == 0 {
            return Err(data_err!("loader: batch_size should be a positive integer value, but got batch_size=0"));
        }
        if dataset.is_empty() {
            return Err(data_err!("loader: the dataset is empty ({})", dataset.describe()));
        }
        if opts.prefetch_factor == 0 {
            return Err(data_err!("loader: prefetch_factor must be at least 1"));
        }
        let sampler = match (&opts.sampler, opts.shuffle) {
            (Some(_), true) => return Err(data_err!("loader: sampler option is mutually exclusive with shuffle")),
            (Some(s), false) => s.clone(),
            (None, true) => Sampler::Random { replacement: false, num_samples: None },
            (None, false) => Sampler::Sequential,
        };
        sampler.check(dataset.len())?;
        Ok(DataLoader { source: Source::Map(dataset), opts, sampler, epoch: 0 })
    }

    /// A loader over an iterable dataset: no sampler, so `shuffle` and `sampler` are errors (as
    /// in PyTorch); batches are assembled as the samples come, sharded over workers and ranks as
    /// [`super::iterable`] describes.
    pub fn iterable(ds: Arc<dyn IterableDataset>, opts: LoaderOptions) -> Result<DataLoader> {
        if opts.batch_size == 0 {
            return Err(data_err!("loader: batch_size should be a positive integer value, but got batch_size=0"));
        }
        if opts.shuffle {
            return Err(data_err!(
                "loader: shuffle is not possible over an iterable dataset ({}): it has no indices to permute; shuffle inside its iter function",
                ds.describe()
            ));
        }
        if opts.sampler.is_some() {
            return Err(data_err!(
                "loader: a sampler is not possible over an iterable dataset ({}): it has no indices to sample",
                ds.describe()
            ));
        }
        if opts.prefetch_factor == 0 {
            return Err(data_err!("loader: prefetch_factor must be at least 1"));
        }
        if ds.len() == Some(0) {
            return Err(data_err!("loader: the dataset is empty ({})", ds.describe()));
        }
        Ok(DataLoader {
            source: Source::Iterable { ds, rank: 0, world_size: 1 },
            opts,
            sampler: Sampler::Sequential,
            epoch: 0,
        })
    }

    fn shard(&self, rank: usize, world_size: usize) -> Shard {
        Shard { rank, world_size, batch_size: self.opts.batch_size, drop_last: self.opts.drop_last, take: None }
    }

    /// Batches per epoch (len(loader)); None for an iterable dataset without a length.
    pub fn len(&self) -> Option<usize> {
        match &self.source {
            Source::Map(ds) => {
                let n = self.sampler.num_samples(ds.len());
                Some(if self.opts.drop_last { n / self.opts.batch_size } else { n.div_ceil(self.opts.batch_size) })
            }
            Source::Iterable { ds, rank, world_size } => ds.len().map(|n| self.shard(*rank, *world_size).batches(n)),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == Some(0)
    }

    /// Samples in the dataset (len(loader.dataset)), when known.
    pub fn dataset_len(&self) -> Option<usize> {
        match &self.source {
            Source::Map(ds) => Some(ds.len()),
            Source::Iterable { ds, .. } => ds.len(),
        }
    }

    /// The map-style dataset; None over an iterable dataset.
    pub fn dataset(&self) -> Option<&Arc<dyn Dataset>> {
        match &self.source {
            Source::Map(ds) => Some(ds),
            Source::Iterable { .. } => None,
        }
    }

    /// The iterable dataset; None over a map-style dataset.
    pub fn iterable_dataset(&self) -> Option<&Arc<dyn IterableDataset>> {
        match &self.source {
            Source::Map(_) => None,
            Source::Iterable { ds, .. } => Some(ds),
        }
    }

    fn describe_dataset(&self) -> String {
        match &self.source {
            Source::Map(ds) => ds.describe(),
            Source::Iterable { ds, .. } => ds.describe(),
        }
    }

    /// True when batches are fetched on the iterating thread whatever `num_workers` (script
    /// datasets).
    pub fn thread_bound(&self) -> bool {
        match &self.source {
            Source::Map(ds) => ds.thread_bound(),
            Source::Iterable { ds, .. } => ds.thread_bound(),
        }
    }

    /// Whether fetching a batch does work per sample that workers run in parallel.
    pub fn per_sample_work(&self) -> bool {
        match &self.source {
            Source::Map(ds) => ds.per_sample_work(),
            Source::Iterable { .. } => true,
        }
    }

    pub fn options(&self) -> &LoaderOptions {
        &self.opts
    }

    pub fn sampler(&self) -> &Sampler {
        &self.sampler
    }

    /// The epoch that the next plain iteration runs (shuffled with seed + epoch).
    pub fn set_epoch(&mut self, epoch: u64) {
        self.epoch = epoch;
    }

    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// Replaces the sampler by this rank's share of it (what the Trainer does under DDP, like
    /// Lightning's `use_distributed_sampler`): a plain loader becomes a DistributedSampler with the
    /// same shuffle; a weighted sampler is split like Lightning's DistributedSamplerWrapper.
    /// Over an iterable dataset, the rank keeps every `world_size`-th element (no padding).
    pub fn set_distributed(&mut self, rank: usize, world_size: usize) -> Result<()> {
        if let Source::Iterable { rank: r, world_size: w, .. } = &mut self.source {
            // the same checks as the distributed sampler's
            Sampler::distributed(Sampler::Sequential, rank, world_size, false)?;
            (*r, *w) = (rank, world_size);
            return Ok(());
        }
        self.sampler = Sampler::distributed(self.sampler.clone(), rank, world_size, false)?;
        Ok(())
    }

    /// The index batches of epoch `epoch` (none over an iterable dataset).
    pub fn batch_indices(&self, epoch: u64) -> Vec<Vec<usize>> {
        let Source::Map(ds) = &self.source else { return Vec::new() };
        let idx = self.sampler.indices(ds.len(), self.opts.seed, epoch);
        let mut out: Vec<Vec<usize>> = idx.chunks(self.opts.batch_size).map(|c| c.to_vec()).collect();
        if self.opts.drop_last && out.last().is_some_and(|b| b.len() < self.opts.batch_size) {
            out.pop();
        }
        out
    }

    /// The batches of epoch `epoch`. Batches are fetched on `num_workers` threads (on the
    /// calling thread when 0, or when the dataset is a script dataset).
    pub fn iter_epoch(&self, epoch: u64) -> EpochIter {
        let ds = match &self.source {
            Source::Map(ds) => ds.clone(),
            Source::Iterable { ds, rank, world_size } => {
                let shard = self.shard(*rank, *world_size);
                let o = &self.opts;
                return EpochIter(Kind::Stream(StreamIter::start(
                    ds,
                    epoch,
                    shard,
                    o.num_workers,
                    o.prefetch_factor,
                    o.pin_memory,
                )));
            }
        };
        let batches = self.batch_indices(epoch);
        let ctx = FetchCtx { seed: self.opts.seed, epoch, batch: 0 };
        let workers = if ds.thread_bound() { 0 } else { self.opts.num_workers.min(batches.len()) };
        let mut it = MapIter { batches, next: 0, ds, ctx, pin: self.opts.pin_memory, pool: None };
        if workers > 0 {
            it.pool = Some(Pool::start(&it, workers, self.opts.prefetch_factor));
        }
        EpochIter(Kind::Map(it))
    }

    /// The batches of the current epoch, then moves on to the next epoch (what a plain
    /// `for batch in loader` does, so that each pass reshuffles).
    pub fn iter_next(&mut self) -> EpochIter {
        let it = self.iter_epoch(self.epoch);
        self.epoch += 1;
        it
    }
}

/// Fetches one batch; a panic in a dataset comes back as an error.
fn fetch(ds: &dyn Dataset, idx: &[usize], ctx: &FetchCtx, pin: bool) -> Result<Batch> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let b = ds.get_batch(idx, ctx)?;
        if pin {
            b.pin_memory()
        } else {
            Ok(b)
        }
    }))
    .unwrap_or_else(|p| {
        let msg = p
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "unknown panic".into());
        Err(data_err!("data loading failed on batch {}: {msg}", ctx.batch))
    })
}

type Job = (usize, Vec<usize>);

/// Worker threads of one epoch. Batch `i` is fetched by worker `i % n` and read back from that
/// worker's channel, so batches arrive in order with no reordering buffer.
struct Pool {
    jobs: Vec<mpsc::Sender<Job>>,
    results: Vec<mpsc::Receiver<Result<Batch>>>,
    handles: Vec<JoinHandle<()>>,
    dispatched: usize,
    /// Worker that failed to start, if any: its batches are fetched inline.
    broken: Vec<bool>,
}

impl Pool {
    fn start(it: &MapIter, n: usize, prefetch: usize) -> Pool {
        let mut pool =
            Pool { jobs: Vec::new(), results: Vec::new(), handles: Vec::new(), dispatched: 0, broken: Vec::new() };
        for w in 0..n {
            let (jtx, jrx) = mpsc::channel::<Job>();
            let (rtx, rrx) = mpsc::channel::<Result<Batch>>();
            let ds = it.ds.clone();
            let ctx = it.ctx;
            let pin = it.pin;
            let spawned = std::thread::Builder::new().name(format!("lt-data-{w}")).spawn(move || {
                while let Ok((b, idx)) = jrx.recv() {
                    let c = FetchCtx { batch: b as u64, ..ctx };
                    let r = fetch(&*ds, &idx, &c, pin).map_err(|e| data_err!("data worker {w}: {e}"));
                    if rtx.send(r).is_err() {
                        break;
                    }
                }
            });
            match spawned {
                Ok(h) => {
                    pool.handles.push(h);
                    pool.broken.push(false);
                }
                Err(_) => pool.broken.push(true),
            }
            pool.jobs.push(jtx);
            pool.results.push(rrx);
        }
        let ahead = (n * prefetch).min(it.batches.len());
        for _ in 0..ahead {
            pool.dispatch(it);
        }
        pool
    }

    fn dispatch(&mut self, it: &MapIter) {
        let b = self.dispatched;
        if b >= it.batches.len() {
            return;
        }
        let w = b % self.jobs.len();
        if !self.broken[w] {
            // a send fails only if the worker is gone; its recv then reports it
            let _ = self.jobs[w].send((b, it.batches[b].clone()));
        }
        self.dispatched += 1;
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        self.jobs.clear(); // closes the job channels: workers finish their batch and exit
        for h in self.handles.drain(..) {
            let _ = h.join();
        }
    }
}

/// One epoch's batches, in order: `Result<Batch, DataError>`.
pub struct EpochIter(Kind);

enum Kind {
    Map(MapIter),
    Stream(StreamIter),
}

impl EpochIter {
    /// Batches in this epoch, when known.
    pub fn len(&self) -> Option<usize> {
        match &self.0 {
            Kind::Map(m) => Some(m.batches.len()),
            Kind::Stream(s) => s.len(),
        }
    }
    pub fn is_empty(&self) -> bool {
        self.len() == Some(0)
    }
    /// Index of the next batch.
    pub fn position(&self) -> usize {
        match &self.0 {
            Kind::Map(m) => m.next,
            Kind::Stream(s) => s.position(),
        }
    }
    /// The dataset indices of the batch returned last (None over an iterable dataset).
    pub fn last_indices(&self) -> Option<&[usize]> {
        match &self.0 {
            Kind::Map(m) => m.next.checked_sub(1).and_then(|b| m.batches.get(b)).map(|v| v.as_slice()),
            Kind::Stream(_) => None,
        }
    }
}

impl Iterator for EpochIter {
    type Item = std::result::Result<Batch, DataError>;

    fn next(&mut self) -> Option<Self::Item> {
        match &mut self.0 {
            Kind::Map(m) => m.next(),
            Kind::Stream(s) => s.next(),
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        match &self.0 {
            Kind::Map(m) => {
                let n = m.batches.len() - m.next;
                (n, Some(n))
            }
            Kind::Stream(s) => (0, s.len().map(|n| n.saturating_sub(s.position()))),
        }
    }
}

/// The batches of an epoch over a map-style dataset.
struct MapIter {
    batches: Vec<Vec<usize>>,
    next: usize,
    ds: Arc<dyn Dataset>,
    ctx: FetchCtx,
    pin: bool,
    pool: Option<Pool>,
}

impl Iterator for MapIter {
    type Item = std::result::Result<Batch, DataError>;

    fn next(&mut self) -> Option<Self::Item> {
        let b = self.next;
        if b >= self.batches.len() {
            return None;
        }
        self.next += 1;
        let ctx = FetchCtx { batch: b as u64, ..self.ctx };
        let Some(mut pool) = self.pool.take() else {
            return Some(fetch(&*self.ds, &self.batches[b], &ctx, self.pin));
        };
        let w = b % pool.results.len();
        let r = if pool.broken[w] {
            fetch(&*self.ds, &self.batches[b], &ctx, self.pin)
        } else {
            pool.results[w].recv().unwrap_or_else(|_| Err(data_err!("data worker {w} stopped before batch {b}")))
        };
        pool.dispatch(self);
        self.pool = Some(pool);
        Some(r)
    }
}

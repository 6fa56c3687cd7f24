//! Iterable datasets (torch.utils.data.IterableDataset): a stream of samples with no indexing and
//! maybe no length, batched as the samples come.
//!
//! # Sharding (what goes where)
//! Every worker thread and every DDP rank runs the dataset's own iterator from the start (as each
//! PyTorch worker iterates its copy of the dataset), and the loader keeps each one's share, so no
//! element is seen twice and none is lost:
//! - element `k` of the stream (counting from 0) belongs to rank `k % world_size`;
//! - a rank's elements are cut into batches of `batch_size` in stream order, and its batch `b`
//!   is assembled by worker `b % num_workers`, and handed out in order `0, 1, 2, …`.
//!
//! So the batches do not depend on `num_workers` (unlike PyTorch, whose workers would each need
//! to shard by hand), and rank `r` sees elements `r, r + world_size, …`. The epoch ends when the
//! stream ends (a last partial batch is kept unless `drop_last`), after `len` elements when the
//! dataset has a length, or when the Trainer stops it (`limit_train_batches`, `max_steps`).
//! Ranks are not padded: with DDP, the ranks' shares should have the same number of batches (as
//! Lightning asks of an IterableDataset), or the ranks with fewer finish the epoch first.
use super::batch::collate;
use super::{Batch, Result};
use crate::data_err;
use std::sync::mpsc;
use std::sync::Arc;

/// The samples of one pass, one at a time, each without a batch dimension.
pub type Samples = Box<dyn Iterator<Item = Result<Batch>>>;

/// A stream of samples. `Send + Sync` so that worker threads can each start a pass; the iterator
/// a pass returns lives on the thread that started it.
pub trait IterableDataset: Send + Sync {
    /// Number of samples in a pass, when known (`len(dataset)`); a pass stops after that many.
    fn len(&self) -> Option<usize>;
    /// Whether a pass is known to have no samples.
    fn is_empty(&self) -> bool {
        self.len() == Some(0)
    }
    /// A pass over the samples of epoch `epoch`, from the first.
    fn iter(&self, epoch: u64) -> Result<Samples>;
    /// One line saying what this is.
    fn describe(&self) -> String;
    /// True when passes must run on the thread that created the dataset (script iterables): the
    /// loader then runs it on the iterating thread, whatever `num_workers`.
    fn thread_bound(&self) -> bool {
        false
    }
}

/// Where one pass's batches go: this rank of `world_size`, its batches split over `workers`.
#[derive(Debug, Clone, Copy)]
pub struct Shard {
    pub rank: usize,
    pub world_size: usize,
    pub batch_size: usize,
    pub drop_last: bool,
    /// At most this many stream elements (the dataset's length).
    pub take: Option<usize>,
}

impl Shard {
    /// Samples of the stream that land on this rank when the stream has `n`.
    pub fn rank_samples(&self, n: usize) -> usize {
        if n <= self.rank {
            0
        } else {
            (n - self.rank).div_ceil(self.world_size)
        }
    }

    /// Batches per epoch on this rank, when the length is known.
    pub fn batches(&self, n: usize) -> usize {
        let s = self.rank_samples(n);
        if self.drop_last {
            s / self.batch_size
        } else {
            s.div_ceil(self.batch_size)
        }
    }
}

/// Worker `worker` of `workers`' batches of one pass: `next_batch` collates its next batch.
struct Producer {
    samples: Samples,
    shard: Shard,
    worker: usize,
    workers: usize,
    /// Elements of the stream read so far.
    read: usize,
    /// Elements of this rank read so far.
    on_rank: usize,
    done: bool,
}

impl Producer {
    fn new(ds: &dyn IterableDataset, epoch: u64, shard: Shard, worker: usize, workers: usize) -> Result<Producer> {
        Ok(Producer { samples: ds.iter(epoch)?, shard, worker, workers, read: 0, on_rank: 0, done: false })
    }

    /// The next batch of this worker, or None at the end of the pass.
    fn next_batch(&mut self) -> Option<Result<Batch>> {
        if self.done {
            return None;
        }
        let bs = self.shard.batch_size;
        let mut samples = Vec::with_capacity(bs);
        let mut positions = Vec::with_capacity(bs);
        loop {
            if self.shard.take.is_some_and(|n| self.read >= n) {
                break;
            }
            let Some(item) = self.samples.next() else { break };
            let k = self.read;
            self.read += 1;
            if k % self.shard.world_size != self.shard.rank {
                continue;
            }
            let batch_no = self.on_rank / bs;
            self.on_rank += 1;
            if batch_no % self.workers != self.worker {
                continue; // another worker's batch; its error, if any, is reported there
            }
            match item {
                Ok(s) => {
                    samples.push(s);
                    positions.push(k);
                }
                Err(e) => {
                    self.done = true;
                    return Some(Err(data_err!("iterable dataset: sample {k}: {e}")));
                }
            }
            if samples.len() == bs {
                return Some(collate(samples, &positions));
            }
        }
        self.done = true;
        if samples.is_empty() || self.shard.drop_last {
            return None;
        }
        Some(collate(samples, &positions))
    }
}

/// Runs `f`, turning a panic into an error.
fn guarded<T>(f: impl FnOnce() -> Option<Result<T>>) -> Option<Result<T>> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).unwrap_or_else(|p| {
        let msg = p
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "unknown panic".into());
        Some(Err(data_err!("iterable dataset: {msg}")))
    })
}

/// One pass's batches, in order.
pub struct StreamIter {
    source: Source,
    next: usize,
    /// Batches this pass yields at most (the dataset's length on this rank).
    limit: Option<usize>,
    pin: bool,
    ended: bool,
}

enum Source {
    /// On the iterating thread (no workers, or a thread-bound dataset); the error of starting the
    /// pass, if any, comes with the first batch.
    Inline(std::result::Result<Producer, Option<super::DataError>>),
    /// Worker `w` sends its batches on `results[w]` (a bounded channel: it reads at most
    /// `prefetch_factor` batches ahead, so a stream larger than memory streams).
    Workers(Vec<mpsc::Receiver<Result<Batch>>>),
}

impl StreamIter {
    /// Starts a pass of `ds` for `shard`, on `workers` threads (inline when 0).
    pub fn start(
        ds: &Arc<dyn IterableDataset>,
        epoch: u64,
        shard: Shard,
        workers: usize,
        prefetch: usize,
        pin: bool,
    ) -> StreamIter {
        let take = match (shard.take, ds.len()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let shard = Shard { take, ..shard };
        let limit = take.map(|n| shard.batches(n));
        let workers = if ds.thread_bound() { 0 } else { workers };
        let source = if workers == 0 {
            Source::Inline(Producer::new(&**ds, epoch, shard, 0, 1).map_err(Some))
        } else {
            let mut results = Vec::with_capacity(workers);
            for w in 0..workers {
                let (tx, rx) = mpsc::sync_channel::<Result<Batch>>(prefetch.max(1));
                let ds = ds.clone();
                let spawned = std::thread::Builder::new().name(format!("lt-stream-{w}")).spawn(move || {
                    let mut p = match Producer::new(&*ds, epoch, shard, w, workers) {
                        Ok(p) => p,
                        Err(e) => {
                            let _ = tx.send(Err(data_err!("data worker {w}: {e}")));
                            return;
                        }
                    };
                    while let Some(r) = guarded(|| p.next_batch()) {
                        let failed = r.is_err();
                        let r = r.map_err(|e| data_err!("data worker {w}: {e}"));
                        if tx.send(r).is_err() || failed {
                            break;
                        }
                    }
                    // dropping `tx` tells the reader this worker's batches are done
                });
                if let Err(e) = spawned {
                    let (tx, rx) = mpsc::sync_channel(1);
                    let _ = tx.send(Err(data_err!("data worker {w} could not start: {e}")));
                    results.push(rx);
                    continue;
                }
                results.push(rx);
            }
            Source::Workers(results)
        };
        StreamIter { source, next: 0, limit, pin, ended: false }
    }

    /// Batches in this pass, when known.
    pub fn len(&self) -> Option<usize> {
        self.limit
    }

    pub fn is_empty(&self) -> bool {
        self.limit == Some(0)
    }

    /// Index of the next batch.
    pub fn position(&self) -> usize {
        self.next
    }
}

impl Iterator for StreamIter {
    type Item = Result<Batch>;

    fn next(&mut self) -> Option<Result<Batch>> {
        if self.ended || self.limit.is_some_and(|n| self.next >= n) {
            return None;
        }
        let b = self.next;
        let r = match &mut self.source {
            Source::Inline(Ok(p)) => guarded(|| p.next_batch()),
            Source::Inline(Err(e)) => e.take().map(Err),
            // a closed channel: that worker has no batch `b`, so the pass is over
            Source::Workers(rx) => rx[b % rx.len()].recv().ok(),
        };
        let Some(r) = r else {
            self.ended = true;
            if let Source::Workers(rx) = &mut self.source {
                rx.clear(); // the other workers stop at their next send
            }
            return None;
        };
        self.next += 1;
        if r.is_err() {
            self.ended = true;
        }
        Some(if self.pin { r.and_then(Batch::pin_memory) } else { r })
    }
}

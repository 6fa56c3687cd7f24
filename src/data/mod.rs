//! Data: datasets, samplers, loaders with worker threads, transforms, file formats.
//!
//! # Shape of the core (no Rhai here, except `api.rs` and `script_ds.rs`)
//! - [`Dataset`]: `len()` and `get_batch(indices, ctx)`, which returns an already collated
//!   [`Batch`] (a nested structure of tensors). Datasets backed by tensors answer a batch with one
//!   `index_select` per tensor instead of sample by sample. `Dataset: Send + Sync`, shared as
//!   `Arc<dyn Dataset>`, so worker threads can fetch batches.
//! - [`Sampler`](sampler::Sampler): the indices of one epoch, reproducible from `(seed, epoch)`.
//! - [`DataLoader`](loader::DataLoader): sampler → batches of indices → `get_batch` on worker
//!   threads (batch `i` always goes to worker `i % num_workers` and is received in order, so the
//!   batch order never depends on `num_workers`). [`DataLoader::iter_epoch`](loader::DataLoader::iter_epoch)
//!   yields `Result<Batch, DataError>`; a worker's error or panic comes back as an error.
//!
//! # Script-defined datasets
//! A script dataset (`data::dataset(#{len, get})`) holds Rhai closures, which are `!Send`. It is
//! wrapped in a thread-affine adapter ([`script_ds`]): it marks itself
//! [`Dataset::thread_bound`], the loader then fetches its batches on the thread that iterates
//! (never on workers), and any access from another thread is an error (a drop there leaks instead
//! of touching Rhai values). Its closures are called through a per-thread callback engine built
//! with [`crate::script::engine::new_engine`] and the script's own function library captured
//! when the dataset was created, so the Trainer iterates every loader the same way, with no
//! `Engine`/`AST` to pass.
//!
//! # Iterable datasets
//! [`iterable::IterableDataset`] is a stream of samples (torch's IterableDataset), maybe without a
//! length: `DataLoader::iterable` batches it as it comes, shards it over workers and DDP ranks by
//! element index (see [`iterable`]), and its `len()` is None when the stream has no length. A
//! script iterable (`data::iterable(#{iter})`, [`script_iter`]) is thread-affine like a script
//! dataset.
//!
//! # What the Trainer uses
//! - [`api::loader_of`] / [`api::loaders_of`]: the [`api::LoaderHandle`]s behind a `Dynamic`
//!   returned by a `*_dataloader()` hook (one loader, or an array of loaders).
//! - `handle.borrow().iter_epoch(e)`: the batches of epoch `e` (shuffled with seed + epoch);
//!   `handle.borrow_mut().set_distributed(rank, world_size)` injects a distributed sampler;
//!   `len()` (batches per epoch, None for an iterable without a length), `dataset_len()`.
//! - [`api::batch_to_dynamic`]: a [`Batch`] as the script sees it (tensors, arrays, maps).
pub mod api;
pub mod batch;
pub mod csv;
pub mod dataset;
pub mod files;
pub mod hf_tokenizer;
pub mod idx;
pub mod image;
pub mod iterable;
pub mod loader;
pub mod npy_rows;
pub mod rng;
pub mod safetensors_rows;
pub mod sampler;
pub mod script_ds;
pub mod script_iter;
pub mod synthetic;
pub mod text;
pub mod tokenizer;
pub mod transform;

pub use batch::Batch;
pub use loader::{DataLoader, EpochIter, LoaderOptions};
pub use sampler::Sampler;

use std::fmt;

/// Error of a data operation: bad file, bad index, inconsistent samples, a worker's failure.
#[derive(Debug, Clone)]
pub struct DataError(pub String);

impl fmt::Display for DataError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for DataError {}

impl From<tch::TchError> for DataError {
    fn from(e: tch::TchError) -> Self {
        DataError(crate::tensor::clean_torch_message(&e.to_string()))
    }
}

impl From<crate::tensor::TensorError> for DataError {
    fn from(e: crate::tensor::TensorError) -> Self {
        DataError(e.0)
    }
}

pub type Result<T> = std::result::Result<T, DataError>;

/// Builds a [`DataError`] from a format string.
#[macro_export]
macro_rules! data_err {
    ($($arg:tt)*) => { $crate::data::DataError(format!($($arg)*)) };
}

/// Where a batch is fetched: seeds random transforms so that they depend only on the loader's
/// seed, the epoch and the batch's position, never on which worker runs it.
#[derive(Debug, Clone, Copy, Default)]
pub struct FetchCtx {
    pub seed: u64,
    pub epoch: u64,
    pub batch: u64,
}

/// A map-style dataset: `len` samples, fetched a batch at a time.
pub trait Dataset: Send + Sync {
    /// Number of samples.
    fn len(&self) -> usize;
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// The samples at `indices`, collated (tensors stacked along a new first dim).
    fn get_batch(&self, indices: &[usize], ctx: &FetchCtx) -> Result<Batch>;
    /// One sample, without a batch dimension.
    fn get(&self, index: usize, ctx: &FetchCtx) -> Result<Batch> {
        self.get_batch(&[index], ctx)?.unbatch(0)
    }
    /// One line saying what this is (`TensorDataset(2 tensors, 100 samples)`).
    fn describe(&self) -> String;
    /// True when batches must be fetched on the thread that created the dataset (script datasets).
    fn thread_bound(&self) -> bool {
        false
    }
    /// True when fetching a batch does work per sample (decoding files, transforms), which the
    /// loader's worker threads run in parallel; false when a batch is one gather of whole tensors.
    fn per_sample_work(&self) -> bool {
        false
    }
    /// Class names, for datasets that have them (image folders, CSV string labels).
    fn classes(&self) -> Option<Vec<String>> {
        None
    }
    /// Token vocabulary, for text datasets in character mode.
    fn vocab(&self) -> Option<Vec<String>> {
        None
    }
}

/// Checks every index against the length, naming the first bad one.
pub fn check_indices(indices: &[usize], len: usize, what: &str) -> Result<()> {
    if let Some(i) = indices.iter().find(|&&i| i >= len) {
        return Err(data_err!("{what}: index {i} is out of range for a dataset of {len} samples"));
    }
    Ok(())
}

/// A tensor shared read-only between loader threads.
///
/// `tch::Tensor` is `Send` but not `Sync`. Datasets only ever read their tensors (`index_select`,
/// `narrow`, `shallow_clone`): libtorch's const tensor operations are safe to call concurrently
/// (reference counts are atomic, reads do not mutate the TensorImpl), which is how PyTorch's own
/// threads share tensors.
pub struct SharedTensor(tch::Tensor);

// SAFETY: see the type's doc: only read-only libtorch calls are made through `&SharedTensor`.
unsafe impl Sync for SharedTensor {}

impl SharedTensor {
    /// Detached, so worker threads never extend an autograd graph.
    pub fn new(t: &tch::Tensor) -> Result<Self> {
        Ok(SharedTensor(t.f_detach()?))
    }
    pub fn get(&self) -> &tch::Tensor {
        &self.0
    }
    pub fn handle(&self) -> tch::Tensor {
        self.0.shallow_clone()
    }
}

//! Distributed data parallel: libtorch's c10d process groups (Gloo on CPU, NCCL on CUDA) reached
//! through csrc/dist.cpp, gradient bucketing and averaging, and the torchrun-compatible launcher.
//! Plain Rust; the Trainer calls it, scripts never see it directly.
//!
//! - [`ProcessGroup`]: rendezvous (TCPStore) and blocking collectives on `tch::Tensor`s.
//! - [`GradSync`]: DDP's bucketed gradient all-reduce (average over ranks), and
//!   [`broadcast_parameters`] (rank 0's weights to every rank at start).
//! - [`launcher`]: `--devices N --strategy ddp` spawns N workers with the torchrun env.
//! - [`slurm`]: a task started by `srun` reads its place from SLURM's variables.
//! - [`selftest`]: checks and the all-reduce benchmark behind the hidden `lt dist-selftest`.
pub mod env;
pub mod grad_sync;
pub mod launcher;
pub mod process_group;
pub mod selftest;
pub mod slurm;

pub use env::DistEnv;
pub use grad_sync::{broadcast_parameters, GradSync};
pub use process_group::{Backend, ProcessGroup, ReduceOp};

use std::fmt;

/// Error of a distributed operation: rendezvous, collective, launch. The message is meant for the
/// user (libtorch's C++ backtrace removed).
#[derive(Debug, Clone)]
pub struct DistError(pub String);

impl fmt::Display for DistError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for DistError {}

impl From<tch::TchError> for DistError {
    fn from(e: tch::TchError) -> Self {
        DistError(crate::tensor::clean_torch_message(&e.to_string()))
    }
}

impl From<DistError> for String {
    fn from(e: DistError) -> String {
        e.0
    }
}

pub type Result<T> = std::result::Result<T, DistError>;

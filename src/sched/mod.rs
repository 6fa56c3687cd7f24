//! Learning-rate schedulers (placeholder while the optimizers land).
pub mod api;

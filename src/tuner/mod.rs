//! Tuning tools that drive the real Trainer: the learning-rate finder (`lt lr-find`).
pub mod lr_find;

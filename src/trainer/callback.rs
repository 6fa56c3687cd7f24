//! Callbacks written in Rust. A callback observes the loop state at each hook and answers with
//! actions for the Trainer to carry out (save a checkpoint, stop, log), so it needs no access to
//! the module or the optimizers.
use super::state::SharedState;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::PathBuf;

/// What a callback asks the Trainer to do.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Write a checkpoint (atomically) to `path`.
    SaveCheckpoint { path: PathBuf, weights_only: bool },
    /// Copy an existing checkpoint (for `last.ckpt`).
    Copy { from: PathBuf, to: PathBuf },
    /// Delete a checkpoint that fell out of the top k.
    Remove(PathBuf),
    /// Stop fitting, with the reason to print.
    Stop(String),
    /// Send metrics to the loggers at the current step.
    Log(BTreeMap<String, f64>),
    /// Set the learning rate of every group of every optimizer, now (before the next optimizer
    /// step when asked at `on_train_batch_start`): the LR finder's ramp.
    SetLr(f64),
}

/// What callbacks learn about the run when fitting starts.
#[derive(Debug, Clone)]
pub struct SetupInfo {
    /// The first logger's version folder, if any (`lightning_logs/version_0`).
    pub log_dir: Option<PathBuf>,
    pub default_root_dir: PathBuf,
    pub check_val_every_n_epoch: Option<i64>,
    /// `val_check_interval` is the default (once per epoch).
    pub val_every_epoch_end: bool,
    pub has_val: bool,
}

pub trait Callback {
    /// The key of its state in checkpoints (`ModelCheckpoint{"monitor": "val_loss", ...}`).
    fn state_key(&self) -> String;
    /// Called once when a fit starts, before any hook.
    fn setup(&mut self, _info: &SetupInfo) -> Result<(), String> {
        Ok(())
    }
    /// Monitoring callbacks (checkpointing, early stopping) run after the module at epoch ends.
    fn monitoring(&self) -> bool {
        false
    }
    fn on_hook(&mut self, hook: &str, state: &SharedState) -> Result<Vec<Action>, String>;
    fn state_dict(&self) -> Value {
        Value::Null
    }
    fn load_state_dict(&mut self, _state: &Value) -> Result<(), String> {
        Ok(())
    }
}

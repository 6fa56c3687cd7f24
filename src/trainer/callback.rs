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
}

pub trait Callback {
    /// The key of its state in checkpoints (`ModelCheckpoint{"monitor": "val_loss", ...}`).
    fn state_key(&self) -> String;
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

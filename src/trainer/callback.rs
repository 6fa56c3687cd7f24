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
    /// Delete a checkpoint that fell out of the top k.
    Remove(PathBuf),
    /// Stop fitting (once min_epochs / min_steps allow).
    Stop,
    /// Print a message (Lightning's `rank_zero_info`): on every rank, prefixed `[rank: N]` on
    /// the others, unless `rank_zero_only`.
    Info { message: String, rank_zero_only: bool },
    /// Send metrics to the loggers at the current step.
    Log(BTreeMap<String, f64>),
    /// Send metrics to the loggers at `step` (not into callback_metrics).
    LogAt { metrics: BTreeMap<String, f64>, step: usize },
    /// Set the learning rates of every optimizer now (before the next optimizer step when asked
    /// at `on_train_batch_start`): one value for every group (the LR finder's ramp), or one per
    /// group (SWA's annealing).
    SetLr(Vec<f64>),
    /// Stop stepping the configured LR schedulers for the rest of the fit, printing the message
    /// (SWA takes over the learning rate, as Lightning swaps the scheduler for SWALR).
    SuspendSchedulers(String),
    /// After this hook, recompute batch-norm running statistics with one pass over the training
    /// data (PyTorch's `update_bn`), for weights that were averaged.
    UpdateBatchNorm,
    /// Freeze the module's child module `attribute` (Lightning's `BaseFinetuning.freeze`).
    FreezeChild { attribute: String, train_bn: bool },
    /// Make the child module `attribute` trainable and add its parameters that the optimizer
    /// does not hold yet as a new parameter group with learning rate `lr`
    /// (`unfreeze_and_add_param_group`).
    UnfreezeChild { attribute: String, lr: f64, train_bn: bool },
    /// Set the learning rate of the optimizer's last parameter group.
    SetLastGroupLr(f64),
    /// Save the model as it is at the end of training (after a batch-norm update) as a
    /// weights-only checkpoint with this file name in the checkpoint folder, if checkpointing is on.
    SaveFinalWeights(String),
}

/// The module's tensors, for callbacks that keep copies of the weights (weight averaging). They
/// share storage with the module, so an in-place copy into them changes the model.
pub struct ModelWeights {
    /// Parameters with their dotted names.
    pub parameters: Vec<(String, tch::Tensor)>,
    /// Buffers (batch-norm running statistics …) with their dotted names.
    pub buffers: Vec<(String, tch::Tensor)>,
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
    /// Its state for checkpoints (`null`: it keeps none).
    fn state_dict(&self) -> Value {
        Value::Null
    }
    /// Restores what `state_dict` wrote; a key that is unknown, missing or of the wrong type is an
    /// error naming it. A callback that keeps no state accepts only `null`.
    fn load_state_dict(&mut self, state: &Value) -> Result<(), String> {
        match state {
            Value::Null => Ok(()),
            other => Err(format!("this callback keeps no state, but the checkpoint holds {other} for it")),
        }
    }
    /// Whether the callback wants the module's tensors (see [`ModelWeights`]) at fit start.
    fn wants_weights(&self) -> bool {
        false
    }
    /// Called at fit start, after `setup` and before a checkpoint is restored, when
    /// `wants_weights`.
    fn set_weights(&mut self, _weights: ModelWeights) -> Result<(), String> {
        Ok(())
    }
    /// Tensors saved with the callback's state (under `callbacks.<state_key>.` in checkpoints).
    fn state_tensors(&self) -> Result<Vec<(String, tch::Tensor)>, String> {
        Ok(Vec::new())
    }
    /// Restores what `state_tensors` saved; called after the checkpoint's weights were loaded into
    /// the module.
    fn load_state_tensors(&mut self, _tensors: &[(String, tch::Tensor)]) -> Result<(), String> {
        Ok(())
    }
    /// ModelSummary: the depth of the summary the fit prints when it starts (0: none).
    fn summary_depth(&self) -> Option<i64> {
        None
    }
    /// Where this callback writes checkpoints (ModelCheckpoint's folder, known after `setup`).
    fn checkpoint_dir(&self) -> Option<PathBuf> {
        None
    }
    /// Weights a checkpoint stores as its `state_dict` in place of the module's current ones
    /// (weight averaging stores the average, as Lightning does).
    fn checkpoint_weights(&self) -> Result<Option<Vec<(String, tch::Tensor)>>, String> {
        Ok(None)
    }
}

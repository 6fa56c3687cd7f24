//! What the Trainer needs from a model: the LightningModule contract as a Rust trait. The Rhai
//! script module (`crate::script::lightning`) is one implementation; tests use a Rust one.
use tch::{Device, Kind, Tensor};

/// Which loader a hook asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoaderStage {
    Train,
    Val,
    Test,
    Predict,
}

impl LoaderStage {
    pub fn hook(self) -> &'static str {
        match self {
            LoaderStage::Train => "train_dataloader",
            LoaderStage::Val => "val_dataloader",
            LoaderStage::Test => "test_dataloader",
            LoaderStage::Predict => "predict_dataloader",
        }
    }
}

/// The step functions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepKind {
    Training,
    Validation,
    Test,
    Predict,
}

impl StepKind {
    pub fn hook(self) -> &'static str {
        match self {
            StepKind::Training => "training_step",
            StepKind::Validation => "validation_step",
            StepKind::Test => "test_step",
            StepKind::Predict => "predict_step",
        }
    }
}

/// What a loader says about itself to the Trainer's checks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LoaderTraits {
    pub num_workers: usize,
    /// Its sampler draws a random order.
    pub shuffled: bool,
    /// Worker threads would speed it up (its dataset does work per sample, off the script's thread).
    pub workers_help: bool,
    /// Its dataset is script code, so its batches are made on the script's thread whatever
    /// `num_workers`.
    pub thread_bound: bool,
}

/// A source of batches for one loop.
pub trait BatchLoader<B> {
    /// Number of batches per epoch, when known.
    fn len(&self) -> Option<usize>;
    /// Whether an epoch is known to have no batches.
    fn is_empty(&self) -> bool {
        self.len() == Some(0)
    }
    /// Starts epoch `epoch` (reshuffles with seed + epoch).
    fn start_epoch(&mut self, epoch: usize) -> Result<(), String>;
    /// The next batch of the epoch, or None at its end.
    fn next_batch(&mut self) -> Option<Result<B, String>>;
    /// Under DDP: this rank's share of every epoch (the Trainer injects it, as Lightning injects a
    /// DistributedSampler).
    fn set_distributed(&mut self, rank: usize, world_size: usize) -> Result<(), String>;
    /// What the Trainer's loader checks read (Lightning's `_worker_check` and the shuffled
    /// evaluation loader warning); None for a loader that cannot tell (an array of batches).
    fn traits(&self) -> Option<LoaderTraits> {
        None
    }
    /// The dataset indices of the batch returned last, when the loader knows them (Lightning's
    /// `current_batch_indices`).
    fn last_batch_indices(&self) -> Option<Vec<usize>> {
        None
    }
}

/// Arguments of a hook call, Lightning's signatures.
pub enum HookArgs<'a, B, O> {
    None,
    Stage(&'a str),
    /// on_*_batch_start(batch, batch_idx[, dataloader_idx])
    BatchStart {
        batch: &'a B,
        batch_idx: usize,
        dataloader_idx: Option<usize>,
    },
    /// on_*_batch_end(outputs, batch, batch_idx[, dataloader_idx])
    BatchEnd {
        outputs: &'a O,
        batch: &'a B,
        batch_idx: usize,
        dataloader_idx: Option<usize>,
    },
    /// on_before_backward(loss)
    Loss(&'a Tensor),
    /// on_before_optimizer_step(optimizer) / on_before_zero_grad(optimizer)
    Optimizer(usize),
    /// optimizer_zero_grad(epoch, batch_idx, optimizer)
    OptimizerZeroGrad {
        epoch: usize,
        batch_idx: usize,
        optimizer: usize,
    },
    /// optimizer_step(epoch, batch_idx, optimizer, optimizer_closure): `loss` is what the
    /// closure (training_step and backward, already run) returned.
    OptimizerStep {
        epoch: usize,
        batch_idx: usize,
        optimizer: usize,
        loss: &'a Tensor,
    },
    /// lr_scheduler_step(scheduler, metric)
    LrSchedulerStep {
        scheduler: usize,
        metric: Option<f64>,
    },
    /// configure_gradient_clipping(optimizer, gradient_clip_val, gradient_clip_algorithm)
    GradientClipping {
        optimizer: usize,
        value: Option<f64>,
        algorithm: Option<&'a str>,
    },
}

/// An optimizer as the Trainer drives it.
pub trait TrainerOptimizer {
    fn step(&mut self) -> Result<(), String>;
    fn zero_grad(&mut self, set_to_none: bool) -> Result<(), String>;
    /// Every parameter it updates (for gradient clipping and AMP unscaling).
    fn params(&self) -> Vec<Tensor>;
    /// How many times `step()` ran (global_step under manual optimization).
    fn state_step(&self) -> usize;
    /// Class name and per-group learning rates (for LearningRateMonitor).
    fn name(&self) -> String;
    fn lrs(&self) -> Vec<f64>;
    /// A numeric option of parameter group `group` (`weight_decay`, `momentum`; the first of a
    /// pair such as `betas`), when the optimizer has it.
    fn group_option(&self, _group: usize, _key: &str) -> Option<f64> {
        None
    }
    /// Sets the learning rates: one value for every parameter group, or one per group.
    fn set_lrs(&mut self, _lrs: &[f64]) -> Result<(), String> {
        Err(format!("optimizer {} does not support setting its learning rate", self.name()))
    }
    /// Sets the learning rate of parameter group `group`.
    fn set_group_lr(&mut self, _group: usize, _lr: f64) -> Result<(), String> {
        Err(format!("optimizer {} does not support setting its learning rate", self.name()))
    }
    /// Adds the parameters of `params` it does not hold yet as a new group with learning rate
    /// `lr` (none left: no group); returns how many it already held.
    fn add_param_group(&mut self, _params: Vec<Tensor>, _lr: f64) -> Result<usize, String> {
        Err(format!("optimizer {} cannot add a parameter group", self.name()))
    }
    /// State tensors and JSON (param groups, step counts) for checkpoints.
    fn state_dict(&self) -> (Vec<(String, Tensor)>, serde_json::Value);
    fn load_state_dict(&mut self, tensors: &[(String, Tensor)], meta: &serde_json::Value) -> Result<(), String>;
}

/// An LR scheduler as the Trainer drives it.
pub trait TrainerScheduler {
    /// `metric` is given to ReduceLROnPlateau-style schedulers.
    fn step(&mut self, metric: Option<f64>) -> Result<(), String>;
    fn is_plateau(&self) -> bool;
    /// Its state for checkpoints; an error when it cannot be read now (never a state left out).
    fn state_dict(&self) -> Result<serde_json::Value, String>;
    fn load_state_dict(&mut self, state: &serde_json::Value) -> Result<(), String>;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Interval {
    Step,
    Epoch,
}

/// A scheduler with Lightning's `lr_scheduler` config.
pub struct SchedulerConfig {
    pub scheduler: Box<dyn TrainerScheduler>,
    pub interval: Interval,
    pub frequency: usize,
    pub monitor: Option<String>,
    pub strict: bool,
    pub name: Option<String>,
    /// The optimizer it schedules (an index into `OptimizerSetup::optimizers`).
    pub optimizer: Option<usize>,
}

/// What `configure_optimizers` produced.
#[derive(Default)]
pub struct OptimizerSetup {
    pub optimizers: Vec<Box<dyn TrainerOptimizer>>,
    pub schedulers: Vec<SchedulerConfig>,
}

/// The LightningModule contract.
pub trait LightningModule {
    type Batch;
    type Output;

    /// Whether anyone listens to hook `name`: the module, or a callback or datamodule it carries
    /// (an undefined hook costs nothing).
    fn has_hook(&self, name: &str) -> bool;
    /// The module's name in profiler actions (`[LightningModule]<name>.<hook>`, Lightning's class name).
    fn class_name(&self) -> String {
        "LightningModule".into()
    }
    /// Whether the module itself defines the step function (a callback cannot).
    fn has_step(&self, kind: StepKind) -> bool {
        self.has_hook(kind.hook())
    }
    /// Whether the module (or its datamodule) defines the `*_dataloader` hook of `stage`; None
    /// when it cannot tell (then the Trainer does not warn about a loader without its step).
    fn defines_loader(&self, _stage: LoaderStage) -> Option<bool> {
        None
    }
    /// Calls the module's hook `name` (and its datamodule's, for data hooks); `Some(n)` when it
    /// returned an int (on_train_batch_start's -1 skips the rest of the epoch).
    fn hook(&mut self, name: &str, args: HookArgs<'_, Self::Batch, Self::Output>) -> Result<Option<i64>, String>;
    /// Calls data hook `name` (`prepare_data`, `setup`, `teardown`) of the module's datamodule, if
    /// it has one (before the callbacks and the module, as Lightning does).
    fn datamodule_hook(&mut self, _name: &str, _args: HookArgs<'_, Self::Batch, Self::Output>) -> Result<(), String> {
        Ok(())
    }
    /// A batch hook that may replace the batch: `on_before_batch_transfer(batch, dataloader_idx)`,
    /// `transfer_batch_to_device(batch, device, dataloader_idx)`,
    /// `on_after_batch_transfer(batch, dataloader_idx)`. Only called when `has_hook(name)`.
    fn batch_hook(
        &mut self,
        name: &str,
        batch: Self::Batch,
        _device: Device,
        _dataloader_idx: usize,
    ) -> Result<Self::Batch, String> {
        let _ = name;
        Ok(batch)
    }
    /// `configure_callbacks()`: callbacks the module adds to the Trainer's (built-in ones; script
    /// callbacks it keeps itself). Called at the start of every run.
    fn configure_callbacks(&mut self) -> Result<Vec<Box<dyn super::callback::Callback>>, String> {
        Ok(Vec::new())
    }
    /// Whether a callback the module carries (a script callback) listens to `name`.
    fn has_callback_hook(&self, _name: &str) -> bool {
        false
    }
    /// Calls hook `name` on the callbacks the module carries, with Lightning's callback arguments
    /// `(trainer, pl_module, ...)`.
    fn callback_hook(&mut self, _name: &str, _args: HookArgs<'_, Self::Batch, Self::Output>) -> Result<(), String> {
        Ok(())
    }
    /// The carried callbacks' `on_save_checkpoint(trainer, pl_module, checkpoint)`: they may add
    /// entries to `extra` (called before the module's).
    fn callbacks_on_save_checkpoint(&mut self, _extra: &mut CheckpointExtra) -> Result<(), String> {
        Ok(())
    }
    /// The carried callbacks' `on_load_checkpoint(trainer, pl_module, checkpoint)`.
    fn callbacks_on_load_checkpoint(&mut self, _extra: &CheckpointExtra) -> Result<(), String> {
        Ok(())
    }
    /// Runs a step function; returns the loss (training) and the step's output.
    fn step(
        &mut self,
        kind: StepKind,
        batch: &Self::Batch,
        batch_idx: usize,
        dataloader_idx: Option<usize>,
    ) -> Result<(Option<Tensor>, Self::Output), String>;
    /// The value when a step produced nothing.
    fn empty_output(&self) -> Self::Output;
    fn configure_optimizers(&mut self) -> Result<OptimizerSetup, String>;
    /// Loaders from the `*_dataloader` hook (several for val/test).
    fn loaders(&mut self, stage: LoaderStage) -> Result<Vec<Box<dyn BatchLoader<Self::Batch>>>, String>;
    /// Moves a batch to the module's device, casting floating tensors to `dtype` when given.
    fn batch_to_device(&self, batch: Self::Batch, device: Device, dtype: Option<Kind>) -> Result<Self::Batch, String>;
    /// Lightning's batch size inference: the size of the first tensor's first dim.
    fn batch_size(&self, batch: &Self::Batch) -> Option<usize>;
    fn parameters(&self) -> Result<Vec<Tensor>, String>;
    /// Buffers (batch-norm running stats …), broadcast from rank 0 at the start of DDP.
    fn buffers(&self) -> Result<Vec<Tensor>, String> {
        Ok(self.named_buffers()?.into_iter().map(|(_, t)| t).collect())
    }
    /// Buffers with their dotted names (sharing storage with the module).
    fn named_buffers(&self) -> Result<Vec<(String, Tensor)>, String> {
        Ok(Vec::new())
    }
    /// For SWA's batch-norm update: resets the running statistics of every batch-norm layer and
    /// sets its momentum (`None`: a cumulative average). Returns the previous momenta in layer
    /// order; empty when the module has no batch norm.
    fn reset_batch_norm(&mut self, _momentum: Option<f64>) -> Result<Vec<Option<f64>>, String> {
        Ok(Vec::new())
    }
    /// Puts back the momenta `reset_batch_norm` returned.
    fn restore_batch_norm_momenta(&mut self, _momenta: &[Option<f64>]) -> Result<(), String> {
        Ok(())
    }
    /// Runs `forward` on a batch's input, as PyTorch's `update_bn` does: the first element of a
    /// list batch, else the batch itself.
    fn forward_input(&mut self, _batch: &Self::Batch) -> Result<(), String> {
        Err("this module has no forward".into())
    }
    fn set_training(&mut self, training: bool) -> Result<(), String>;
    /// Freezes or unfreezes the child module `attribute` for a fine-tuning callback (see
    /// [`crate::callbacks::backbone_finetuning::Finetune`]); unfreezing returns the parameters
    /// for the new optimizer group.
    fn finetune_child(
        &mut self,
        attribute: &str,
        _op: crate::callbacks::backbone_finetuning::Finetune,
    ) -> Result<Vec<Tensor>, String> {
        Err(format!("this module has no child module `{attribute}` to freeze"))
    }
    fn to_device_dtype(&mut self, device: Device, dtype: Option<Kind>) -> Result<(), String>;
    fn automatic_optimization(&self) -> bool;
    /// The model summary table down to `max_depth` levels (-1: all), if the module can describe
    /// itself.
    fn summary(&self, max_depth: i64) -> Option<String>;
    /// Saved hyperparameters (for hparams.yaml and loggers).
    fn hparams(&self) -> serde_json::Value;
    /// The DataModule's hyperparameters (Lightning's `datamodule.hparams`): logged with the
    /// module's and saved in checkpoints as `datamodule_hyper_parameters`. Null when none.
    fn datamodule_hparams(&self) -> serde_json::Value {
        serde_json::Value::Null
    }
    /// Parameters and buffers with PyTorch's dotted names.
    fn state_dict(&self) -> Result<Vec<(String, Tensor)>, String>;
    /// Copies weights in place; `strict` refuses missing or unexpected keys.
    fn load_state_dict(&mut self, tensors: &[(String, Tensor)], strict: bool) -> Result<(), String>;
    /// `on_save_checkpoint(checkpoint)`: the module may add entries (JSON and tensors) to `extra`.
    fn on_save_checkpoint(&mut self, extra: &mut CheckpointExtra) -> Result<(), String>;
    /// `on_load_checkpoint(checkpoint)`: the module reads back what it added.
    fn on_load_checkpoint(&mut self, extra: &CheckpointExtra) -> Result<(), String>;
    /// Called by the Trainer between training batches (a step boundary): a script module swaps in
    /// a reloaded script here (`lt fit --watch`). Returns metrics to record, e.g. a reload event.
    fn at_step_boundary(&mut self) -> Result<Option<(String, f64)>, String> {
        Ok(None)
    }
}

/// What a module's `on_save_checkpoint` adds to a checkpoint: JSON values and tensors.
#[derive(Default)]
pub struct CheckpointExtra {
    pub json: serde_json::Map<String, serde_json::Value>,
    pub tensors: Vec<(String, Tensor)>,
}

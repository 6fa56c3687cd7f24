//! The loop state shared between the Trainer and the module while hooks run: counters, the hook
//! being run (for `this.log` rules), logged metrics, stop requests, precision. The script module
//! reads and writes it through `this.log`, `this.current_epoch`, `this.trainer.should_stop`, ….
use super::logging::{Collection, LogOptions, MetricViews};
use super::precision::Precision;
use super::scaler::GradScaler;
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;

/// One optimizer's class name and, per parameter group, what LearningRateMonitor logs.
#[derive(Debug, Clone, Default)]
pub struct OptimizerLrs {
    pub name: String,
    pub lrs: Vec<f64>,
    /// `betas[0]` for optimizers with betas, else `momentum` (0 without one), as Lightning reads it.
    pub momenta: Vec<f64>,
    pub weight_decays: Vec<f64>,
    /// Its LR scheduler's interval and configured `name`, if it has one.
    pub scheduler: Option<(super::module::Interval, Option<String>)>,
}

/// What the Trainer is doing (Lightning's `trainer.state.stage`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunningStage {
    Training,
    SanityChecking,
    Validating,
    Testing,
    Predicting,
}

impl RunningStage {
    pub fn name(self) -> &'static str {
        match self {
            RunningStage::Training => "train",
            RunningStage::SanityChecking => "sanity_check",
            RunningStage::Validating => "validate",
            RunningStage::Testing => "test",
            RunningStage::Predicting => "predict",
        }
    }
}

pub struct LoopState {
    /// The fit's counters (epoch, global_step, position in the epoch), saved in checkpoints.
    pub progress: super::counters::FitProgress,
    pub stage: RunningStage,
    /// The hook being run, for `this.log`'s per-hook rules.
    pub hook: String,
    pub batch_size: Option<usize>,
    pub dataloader_idx: Option<usize>,
    pub train_results: Collection,
    pub eval_results: Collection,
    /// The three metric views as of the last read or loop boundary (Lightning's logger
    /// connector caches); read them through [`LoopState::callback_metrics`] and its siblings,
    /// which first merge what the running loop's results hold now.
    pub views: MetricViews,
    /// Lightning's `_first_loop_iter is not None`: a loop's batch has started and its epoch end
    /// is not reached, so a read of the views merges the running batch's step values (else the
    /// epoch's reduced values).
    pub in_batch: bool,
    pub should_stop: bool,
    /// Lightning's `should_update_logs` for the batch starting: step-level logging is due
    /// (every `log_every_n_steps` stepping batches, or a stop is pending).
    pub log_due: bool,
    /// The dataset indices of the batch being predicted (empty when its loader cannot tell).
    pub batch_indices: Vec<usize>,
    pub max_epochs: Option<i64>,
    pub max_steps: i64,
    pub estimated_stepping_batches: Option<usize>,
    /// During a fit, what `estimated_stepping_batches` is computed from (a hook that reads it
    /// before the training loader is loaded loads it then).
    pub stepping_estimate: Option<SteppingEstimate>,
    pub precision: Precision,
    pub device: tch::Device,
    pub scaler: Option<GradScaler>,
    pub automatic_optimization: bool,
    pub global_rank: usize,
    pub local_rank: usize,
    pub world_size: usize,
    pub hparams: serde_json::Value,
    /// The DataModule's hyperparameters (null when none).
    pub datamodule_hparams: serde_json::Value,
    /// The process group when running distributed (DDP), shared with `this.log(…, sync_dist)`.
    pub process_group: Option<Rc<crate::dist::ProcessGroup>>,
    /// Each optimizer's class name, per-group learning rates and momenta (for LearningRateMonitor).
    pub optimizer_lrs: Vec<OptimizerLrs>,
    /// Overrides the `accumulate_grad_batches` option from the next epoch start on (set by
    /// GradientAccumulationScheduler).
    pub accumulate_grad_batches: Option<usize>,
    /// The loss of the last training step under automatic optimization, detached (read by the
    /// LR finder; not synchronized to the host unless read).
    pub last_loss: Option<tch::Tensor>,
    /// Checkpoints a script asked for with `this.trainer.save_checkpoint(path, weights_only)`,
    /// written at the next safe point of the fit.
    pub requested_saves: Vec<(std::path::PathBuf, bool)>,
    /// Lightning's `trainer.log_dir`: the first logger's version folder, else default_root_dir.
    pub log_dir: std::path::PathBuf,
    /// The run's loggers (the Trainer's, shared), for `this.logger` / `this.loggers`.
    pub loggers: super::logger::Loggers,
}

pub type SharedState = Rc<RefCell<LoopState>>;

/// Lightning's `estimated_stepping_batches` but for the training loader's length: the batch
/// limit (limit_train_batches or overfit_batches), accumulation, max_epochs, max_steps.
#[derive(Debug, Clone, Copy)]
pub struct SteppingEstimate {
    pub limit: super::config::Limit,
    pub accumulate: usize,
    pub max_epochs: Option<i64>,
    pub max_steps: i64,
}

impl SteppingEstimate {
    /// The optimizer steps of the fit for a loader of `loader_len` batches (None: unknown length).
    pub fn estimate(&self, loader_len: Option<usize>) -> Option<usize> {
        let per_epoch = self.limit.apply(loader_len)?.div_ceil(self.accumulate);
        let by_epochs = self.max_epochs.filter(|e| *e >= 0).map(|e| e as usize * per_epoch);
        Some(match (by_epochs, self.max_steps) {
            (Some(e), s) if s >= 0 => e.min(s as usize),
            (Some(e), _) => e,
            (None, s) if s >= 0 => s as usize,
            _ => per_epoch,
        })
    }
}

impl Default for LoopState {
    fn default() -> Self {
        LoopState {
            progress: Default::default(),
            stage: RunningStage::Training,
            hook: String::new(),
            batch_size: None,
            dataloader_idx: None,
            train_results: Collection::new(true),
            eval_results: Collection::new(false),
            views: MetricViews::default(),
            in_batch: false,
            should_stop: false,
            log_due: false,
            batch_indices: Vec::new(),
            max_epochs: None,
            max_steps: -1,
            estimated_stepping_batches: None,
            stepping_estimate: None,
            precision: Precision::F32,
            device: tch::Device::Cpu,
            scaler: None,
            automatic_optimization: true,
            global_rank: 0,
            local_rank: 0,
            world_size: 1,
            hparams: serde_json::Value::Null,
            datamodule_hparams: serde_json::Value::Null,
            optimizer_lrs: Vec::new(),
            process_group: None,
            accumulate_grad_batches: None,
            last_loss: None,
            requested_saves: Vec::new(),
            log_dir: std::path::PathBuf::from("."),
            loggers: Default::default(),
        }
    }
}

impl LoopState {
    pub fn shared() -> SharedState {
        Rc::new(RefCell::new(LoopState::default()))
    }

    /// `this.log(name, value, opts)` in the current hook.
    pub fn log(&mut self, name: &str, value: f64, opts: &LogOptions) -> Result<(), String> {
        // sync_dist: reduce the value across ranks with its reduce_fx before recording it.
        let value = match (&self.process_group, opts.sync_dist) {
            (Some(pg), true) if pg.world_size() > 1 => {
                use super::logging::ReduceFx;
                use crate::dist::ReduceOp;
                let op = match opts.reduce_fx {
                    ReduceFx::Mean => ReduceOp::Avg,
                    ReduceFx::Sum => ReduceOp::Sum,
                    ReduceFx::Max => ReduceOp::Max,
                    ReduceFx::Min => ReduceOp::Min,
                };
                let mut t = [tch::Tensor::from(value)];
                pg.all_reduce(&mut t, op).map_err(|e| e.to_string())?;
                f64::try_from(&t[0]).map_err(|e| e.to_string())?
            }
            _ => value,
        };
        // Lightning keeps logged values as float32 tensors: `{val_loss:.1f}` of 0.45 is "0.4"
        let value = value as f32 as f64;
        let hook = self.hook.clone();
        let (bs, dl) = (self.batch_size, self.dataloader_idx);
        let collection =
            if self.stage == RunningStage::Training { &mut self.train_results } else { &mut self.eval_results };
        collection.log(&hook, name, value, opts, bs, dl)
    }

    /// The running loop's values merged into the cached views, as Lightning's
    /// `trainer.callback_metrics` (and `logged_metrics`, `progress_bar_metrics`) do on every read:
    /// a value logged a moment ago is visible at once, in any hook.
    pub fn refresh_views(&mut self) -> Result<&MetricViews, String> {
        let results = if self.training() { &self.train_results } else { &self.eval_results };
        // only the running dataloader's values (after an evaluation epoch: those logged without one)
        let loaders = super::logging::Loaders::Only(self.dataloader_idx);
        let now = if self.in_batch { results.step_metrics_of(loaders) } else { results.epoch_metrics_of(loaders)? };
        self.views.merge(&now);
        Ok(&self.views)
    }

    /// Lightning's `trainer.callback_metrics`, live.
    pub fn callback_metrics(&mut self) -> Result<&BTreeMap<String, f64>, String> {
        Ok(&self.refresh_views()?.callback)
    }

    /// `this.log(name, metric, opts)` of a metric object in the current hook; its compute() at
    /// epoch end syncs across this run's process group.
    pub fn log_metric(
        &mut self,
        name: &str,
        metric: crate::metrics::MetricHandle,
        opts: &LogOptions,
    ) -> Result<(), String> {
        let scalar = metric.0.try_borrow().map(|m| m.spec.scalar_output()).unwrap_or(true);
        if !scalar {
            let class = metric.0.try_borrow().map(|m| m.spec.class_name()).unwrap_or_default();
            return Err(format!(
                "this.log(\"{name}\", metric): {class} computes a tensor of several values; only a metric with a scalar result can be logged (average \"none\" and confusion matrices cannot)"
            ));
        }
        let logged = super::logging::LoggedMetric { metric, process_group: self.process_group.clone() };
        let hook = self.hook.clone();
        let dl = self.dataloader_idx;
        let collection =
            if self.stage == RunningStage::Training { &mut self.train_results } else { &mut self.eval_results };
        collection.log_metric(&hook, name, logged, opts, dl)
    }

    /// Whether the Trainer is in the training loop (rather than an evaluation loop).
    pub fn training(&self) -> bool {
        self.stage == RunningStage::Training
    }
}

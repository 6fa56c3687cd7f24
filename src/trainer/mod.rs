//! The Trainer: Lightning's fit / validate / test / predict loops in plain Rust, driving any
//! [`LightningModule`] (the Rhai script module is one). It owns the loop, precision, gradient
//! accumulation and clipping, LR scheduler stepping, logging and progress; it knows nothing of Rhai.
pub mod api;
pub mod callback;
pub mod checkpointing;
pub mod config;
pub mod counters;
pub mod data_checks;
pub mod deadline;
pub mod hooks;
pub mod logger;
pub mod logger_api;
pub mod logging;
pub mod media;
pub mod module;
pub mod precision;
pub mod profiler;
pub mod progress;
pub mod scaler;
pub mod state;
pub mod tensorboard;
pub mod val_schedule;

// The loops, as Lightning splits them (each an `impl Trainer` block of its own).
mod evaluation_loop;
mod exit;
mod fit_loop;
mod optimization;
mod prediction_loop;
mod training_epoch;

use crate::callbacks::backbone_finetuning::Finetune;
use callback::{Action, Callback};
use checkpointing::PendingWrite;
use config::{ClipAlgorithm, Limit, TrainerConfig};
use hooks::{EvalPhase, Hook, Listeners};
use module::{BatchLoader, HookArgs, Interval, LightningModule, LoaderStage, LoaderTraits, OptimizerSetup, StepKind};
use precision::AutocastGuard;
use progress::Progress;
use state::{LoopState, RunningStage, SharedState};
use std::collections::BTreeMap;

impl<B, O> Clone for HookArgs<'_, B, O> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<B, O> Copy for HookArgs<'_, B, O> {}

/// Results of a validate/test run: one metrics map per dataloader.
pub type EvalResults = Vec<BTreeMap<String, f64>>;

pub struct Trainer {
    pub config: TrainerConfig,
    pub state: SharedState,
    pub callbacks: Vec<Box<dyn Callback>>,
    /// The run's loggers, shared with the script's `this.logger` (and the loop state).
    pub loggers: logger::Loggers,
    progress: Progress,
    /// The validation / test bar, separate from the epoch's bar it may interrupt.
    eval_progress: Progress,
    device: tch::Device,
    /// The optimizers and schedulers of the running fit.
    opt: OptimizerSetup,
    /// Checkpoint writes requested by callbacks, done at the next safe point.
    pending: Vec<checkpointing::PendingWrite>,
    /// Batches each evaluation loop's dataloader has run in this fit / validate / test (the step
    /// its on_step values are logged at).
    eval_seen: std::collections::HashMap<(&'static str, usize), usize>,
    /// global_step before this fit's manual-optimization steps (the optimizers count their own).
    manual_step_base: usize,
    /// The REPL's `:fit N`: the fit pauses when global_step reaches this, mid-epoch if need be (no
    /// epoch end), so the next fit continues exactly where this one paused.
    pub pause_at_step: Option<usize>,
    /// Batches of the first epoch to skip when resuming mid-epoch.
    skip_batches: usize,
    /// Gradient averaging across ranks under DDP.
    grad_sync: crate::dist::GradSync,
    /// A callback took over the learning rate (SWA): the configured schedulers stop stepping.
    schedulers_suspended: bool,
    /// A callback asked for batch-norm statistics to be recomputed after `on_train_end` (SWA).
    update_bn: bool,
    /// The step count (step + 1) of the row at which the loggers were last written to disk in
    /// this run (they write again every `flush_logs_every_n_steps`).
    flushed_upto: usize,
    /// The `profiler` option's profiler, made at the first run (None when the option is off:
    /// then nothing is timed).
    profiler: Option<profiler::Profiler>,
}

/// Clips gradients in place, as the Trainer's `gradient_clip_val` does: by total 2-norm (returns
/// it) or by value.
pub fn clip_gradients(params: &[tch::Tensor], value: f64, algorithm: ClipAlgorithm) -> Result<f64, String> {
    match algorithm {
        ClipAlgorithm::Norm => {
            let total = crate::optim::clip::clip_grad_norm(params, value, 2.0, false)?;
            f64::try_from(&total).map_err(|e| e.to_string())
        }
        ClipAlgorithm::Value => crate::optim::clip::clip_grad_value(params, value).map(|_| 0.0),
    }
}

impl Trainer {
    /// The fit's counters as they are now.
    pub fn progress(&self) -> counters::FitProgress {
        self.state.borrow().progress
    }

    fn progress_mut(&self) -> std::cell::RefMut<'_, counters::FitProgress> {
        std::cell::RefMut::map(self.state.borrow_mut(), |s| &mut s.progress)
    }

    pub fn new(config: TrainerConfig) -> Result<Trainer, String> {
        let device = config.device()?;
        // Lightning's rank_zero_info at Trainer init (the rank from the launcher's environment)
        let rank_zero = std::env::var("RANK").map_or(true, |r| r == "0");
        if config.fast_dev_run > 0 && rank_zero {
            infoln!(
                "Running in `fast_dev_run` mode: will run the requested loop using {} batch(es). Logging and checkpointing is suppressed.",
                config.fast_dev_run
            );
        }
        let state = LoopState::shared();
        let loggers = state.borrow().loggers.clone();
        {
            let mut s = state.borrow_mut();
            s.precision = config.precision;
            s.device = device;
            s.max_epochs = config.max_epochs;
            s.max_steps = config.max_steps;
            if config.precision.uses_scaler() {
                s.scaler = Some(scaler::GradScaler::default());
            }
        }
        Ok(Trainer {
            progress: Progress::new(config.enable_progress_bar),
            eval_progress: Progress::new(config.enable_progress_bar),
            config,
            state,
            callbacks: Vec::new(),
            loggers,
            device,
            opt: OptimizerSetup::default(),
            pending: Vec::new(),
            eval_seen: Default::default(),
            manual_step_base: 0,
            skip_batches: 0,
            pause_at_step: None,
            grad_sync: crate::dist::GradSync::new(),
            schedulers_suspended: false,
            update_bn: false,
            flushed_upto: 0,
            profiler: None,
        })
    }

    pub fn device(&self) -> tch::Device {
        self.device
    }

    /// Runs this Trainer as one rank of a DDP group: the device follows the local rank on CUDA,
    /// loaders get a distributed share, gradients are averaged, rank 0 logs and saves.
    pub fn set_process_group(&mut self, pg: crate::dist::ProcessGroup) {
        if let tch::Device::Cuda(_) = self.device {
            self.device = tch::Device::Cuda(pg.local_rank());
        }
        let mut s = self.state.borrow_mut();
        s.global_rank = pg.rank();
        s.local_rank = pg.local_rank();
        s.world_size = pg.world_size();
        s.device = self.device;
        s.process_group = Some(std::rc::Rc::new(pg));
        if s.global_rank != 0 {
            drop(s);
            self.loggers.clear();
            self.progress = Progress::new(false);
            self.eval_progress = Progress::new(false);
        }
    }

    pub(super) fn process_group(&self) -> Option<std::rc::Rc<crate::dist::ProcessGroup>> {
        self.state.borrow().process_group.clone().filter(|pg| pg.world_size() > 1)
    }

    pub(super) fn distribute<B>(&self, loaders: &mut [Box<dyn BatchLoader<B>>]) -> Result<(), String> {
        if let Some(pg) = self.process_group() {
            for l in loaders.iter_mut() {
                l.set_distributed(pg.rank(), pg.world_size())?;
            }
        }
        Ok(())
    }

    /// Seeds libtorch (and, through the loaders' own seeds, data order), like `seed_everything`,
    /// and applies `deterministic`, `detect_anomaly` and `benchmark`.
    pub(super) fn seed(&mut self) -> Result<(), String> {
        // every entry starts here: publish where this run logs (`trainer.log_dir`)
        self.flushed_upto = 0;
        self.state.borrow_mut().log_dir =
            self.loggers.log_dir().unwrap_or_else(|| self.config.default_root_dir.clone());
        if let Some(s) = self.config.seed {
            tch::manual_seed(s);
        }
        extern "C" {
            fn lt_set_flags(deterministic: i32, detect_anomaly: i32, buf: *mut u8, len: usize) -> i32;
        }
        let mut buf = [0u8; 512];
        // SAFETY: the shim catches every C++ exception and writes at most `len` bytes.
        let rc = unsafe {
            lt_set_flags(
                self.config.deterministic as i32,
                self.config.detect_anomaly as i32,
                buf.as_mut_ptr(),
                buf.len(),
            )
        };
        if rc != 0 {
            let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
            return Err(format!("cannot set deterministic/detect_anomaly: {}", String::from_utf8_lossy(&buf[..end])));
        }
        if tch::Cuda::is_available() {
            tch::Cuda::cudnn_set_benchmark(self.config.benchmark);
        }
        Ok(())
    }

    /// Sets up the profiler (made at the first run) for a run of `stage` ("fit", "validate", …).
    pub(super) fn profiler_setup(&mut self, stage: &str) -> Result<(), String> {
        let Some(cfg) = &self.config.profiler else { return Ok(()) };
        if self.profiler.is_none() {
            self.profiler = Some(profiler::Profiler::new(cfg, matches!(self.device, tch::Device::Cuda(_)))?);
        }
        let (local_rank, world) = {
            let s = self.state.borrow();
            (s.local_rank, s.world_size)
        };
        let log_dir = self.loggers.log_dir().unwrap_or_else(|| self.config.default_root_dir.clone());
        if let Some(p) = self.profiler.as_mut() {
            p.setup(stage, (world > 1).then_some(local_rank), &log_dir);
        }
        Ok(())
    }

    /// The end of a run: the profiler's report (Lightning's `profiler.describe()` at teardown).
    pub(super) fn profiler_describe(&mut self) -> Result<(), String> {
        match self.profiler.as_mut() {
            Some(p) => p.describe(),
            None => Ok(()),
        }
    }

    /// Starts timing the action `name()` makes (only made when a profiler runs).
    pub(super) fn prof_start(&mut self, name: impl FnOnce() -> String) -> Option<String> {
        let p = self.profiler.as_mut()?;
        let name = name();
        p.start(&name);
        Some(name)
    }

    /// Stops timing what [`Trainer::prof_start`] started.
    pub(super) fn prof_stop(&mut self, name: Option<String>) {
        if let (Some(p), Some(n)) = (self.profiler.as_mut(), name) {
            p.stop(&n);
        }
    }

    /// Lightning's strategy name in profiler actions.
    pub(super) fn strategy_name(&self) -> &'static str {
        if self.process_group().is_some() {
            "DDPStrategy"
        } else {
            "SingleDeviceStrategy"
        }
    }

    pub(super) fn set_hook(&self, name: &str) {
        self.state.borrow_mut().hook = name.to_string();
    }

    /// Calls a hook as Lightning does: the callbacks (script callbacks, then the built-in ones;
    /// for `on_train_epoch_end` only the non-monitoring ones), then the module, then (for
    /// `on_train_epoch_end`) the monitoring callbacks. What callbacks ask for is carried out right
    /// after them, so a checkpoint's `on_save_checkpoint` hooks run where Lightning runs them.
    pub(super) fn call<M: LightningModule>(
        &mut self,
        m: &mut M,
        hook: Hook,
        args: HookArgs<'_, M::Batch, M::Output>,
    ) -> Result<Option<i64>, String> {
        let name = hook.name();
        let who = hook.listeners();
        let split = hook.monitors_after_module();
        // (the save hooks a callback's request runs put the hook name back when they are done)
        self.set_hook(name);
        if hook.is_data_hook() {
            m.datamodule_hook(name, args)?;
        }
        if who != Listeners::ModuleOnly {
            if m.has_callback_hook(name) {
                let p = self.prof_start(|| format!("[Callback]script.{name}"));
                m.callback_hook(name, args)?;
                self.prof_stop(p);
            }
            self.run_callbacks(m, name, |c| !split || !c.monitoring())?;
        }
        let mut r = None;
        if who != Listeners::CallbacksOnly && m.has_hook(name) {
            let p = self.prof_start(|| format!("[LightningModule]{}.{name}", m.class_name()));
            r = m.hook(name, args)?;
            self.prof_stop(p);
        }
        if split {
            self.run_callbacks(m, name, |c| c.monitoring())?;
        }
        Ok(r)
    }

    /// Runs hook `name` of the built-in callbacks `which` selects and carries out their actions.
    pub(super) fn run_callbacks<M: LightningModule>(
        &mut self,
        m: &mut M,
        name: &str,
        which: impl Fn(&dyn Callback) -> bool,
    ) -> Result<(), String> {
        let mut actions = Vec::new();
        for cb in self.callbacks.iter_mut().filter(|c| which(c.as_ref())) {
            let action = self.profiler.as_mut().map(|p| {
                let a = format!("[Callback]{}.{name}", cb.state_key());
                p.start(&a);
                a
            });
            actions.extend(cb.on_hook(name, &self.state).map_err(|e| format!("callback {}: {e}", cb.state_key()))?);
            if let (Some(p), Some(a)) = (self.profiler.as_mut(), action) {
                p.stop(&a);
            }
        }
        for a in actions {
            match a {
                Action::Stop => self.state.borrow_mut().should_stop = true,
                Action::Info { message, rank_zero_only } => {
                    let rank = self.state.borrow().global_rank;
                    if rank == 0 {
                        infoln!("{message}");
                    } else if !rank_zero_only {
                        infoln!("[rank: {rank}] {message}");
                    }
                }
                Action::Log(metrics) => {
                    // as LearningRateMonitor logs: straight to the loggers at `_batches_that_stepped`
                    // (no epoch column), and into callback_metrics
                    self.log_rows(&metrics, self.progress().batches_that_stepped, false)?;
                    self.state.borrow_mut().views.callback.extend(metrics);
                }
                Action::LogAt { metrics, step } => self.log_rows(&metrics, step, false)?,
                Action::SetLr(lrs) => {
                    for o in &mut self.opt.optimizers {
                        o.set_lrs(&lrs)?;
                    }
                    self.update_lrs();
                }
                Action::SuspendSchedulers(message) => {
                    if !self.schedulers_suspended && !self.opt.schedulers.is_empty() {
                        self.progress.message(&message);
                    }
                    self.schedulers_suspended = true;
                }
                Action::UpdateBatchNorm => self.update_bn = true,
                Action::FreezeChild { attribute, train_bn } => {
                    m.finetune_child(&attribute, Finetune::Freeze { train_bn })?;
                }
                Action::UnfreezeChild { attribute, lr, train_bn } => {
                    let params = m.finetune_child(&attribute, Finetune::Unfreeze { train_bn })?;
                    let opt = self.opt.optimizers.first_mut().ok_or("there is no optimizer to add a group to")?;
                    if opt.add_param_group(params, lr)? > 0 {
                        // Lightning's filter_on_optimizer warning
                        warnln!("The provided params to be frozen already exist within another group of this optimizer. Those parameters will be skipped.\nHINT: Did you init your optimizer in `configure_optimizers` with only the parameters that require grad (`this.parameters().filter(|p| p.requires_grad)`)?");
                    }
                    self.update_lrs();
                }
                Action::SetLastGroupLr(lr) => {
                    let opt = self.opt.optimizers.first_mut().ok_or("there is no optimizer")?;
                    let last = opt.lrs().len().saturating_sub(1);
                    opt.set_group_lr(last, lr)?;
                    self.update_lrs();
                }
                Action::SaveFinalWeights(name) => {
                    if let Some(dir) = self.callbacks.iter().find_map(|c| c.checkpoint_dir()) {
                        let path = dir.join(name);
                        self.progress.message(&format!("the final model is saved to {}", path.display()));
                        self.pending.push(PendingWrite::Save { path, weights_only: true, extra: None });
                    }
                }
                Action::SaveCheckpoint { path, weights_only } => {
                    // the on_save_checkpoint hooks run now; the file is written at the next safe point
                    let extra = Some(self.save_hooks(m, weights_only)?);
                    self.pending.push(PendingWrite::Save { path, weights_only, extra });
                }
                Action::Remove(path) => self.pending.push(PendingWrite::Remove(path)),
            }
        }
        Ok(())
    }

    /// One row of metrics to every logger at `step`, with the current epoch (Lightning adds
    /// `epoch` to every row it logs at its own step).
    pub(super) fn log_to_loggers(&mut self, metrics: &BTreeMap<String, f64>, step: usize) -> Result<(), String> {
        self.log_rows(metrics, step, true)
    }

    pub(super) fn log_rows(
        &mut self,
        metrics: &BTreeMap<String, f64>,
        step: usize,
        with_epoch: bool,
    ) -> Result<(), String> {
        if metrics.is_empty() || self.loggers.is_empty() {
            return Ok(());
        }
        let mut m = metrics.clone();
        if with_epoch {
            m.entry("epoch".into()).or_insert(self.state.borrow().progress.current_epoch as f64);
        }
        self.loggers.each(|l| l.log_metrics(&m, step))?;
        // Lightning's CSVLogger saves when `(step + 1) % flush_logs_every_n_steps == 0`; here a row
        // at or past the next multiple flushes, so steps that skip the multiple flush too
        let every = self.config.flush_logs_every_n_steps.max(1) as usize;
        if (step + 1) / every > self.flushed_upto / every {
            self.flushed_upto = step + 1;
            self.save_loggers()?;
        }
        Ok(())
    }

    pub(super) fn save_loggers(&mut self) -> Result<(), String> {
        self.loggers.each(|l| l.save())
    }

    pub(super) fn first_loader<B>(
        mut loaders: Vec<Box<dyn BatchLoader<B>>>,
        what: &str,
    ) -> Result<Box<dyn BatchLoader<B>>, String> {
        if loaders.is_empty() {
            return Err(format!("{what} returned no dataloader"));
        }
        if loaders.len() > 1 {
            return Err(format!("{what} returned {} dataloaders; training takes one", loaders.len()));
        }
        Ok(loaders.remove(0))
    }

    /// Lightning's batch transfer: `on_before_batch_transfer`, then `transfer_batch_to_device`
    /// (the module's, which then decides the device; else the Trainer's move and precision cast),
    /// then `on_after_batch_transfer`; each defined hook's return is the batch from then on.
    pub(super) fn transfer<M: LightningModule>(
        &mut self,
        m: &mut M,
        batch: M::Batch,
        dataloader_idx: usize,
        dtype: Option<tch::Kind>,
    ) -> Result<M::Batch, String> {
        let mut batch = batch;
        let strategy = self.strategy_name();
        let p = self.prof_start(|| format!("[Strategy]{strategy}.batch_to_device"));
        for hook in [Hook::OnBeforeBatchTransfer, Hook::TransferBatchToDevice, Hook::OnAfterBatchTransfer] {
            if m.has_hook(hook.name()) {
                self.set_hook(hook.name());
                batch = m.batch_hook(hook.name(), batch, self.device, dataloader_idx)?;
            } else if hook == Hook::TransferBatchToDevice {
                batch = m.batch_to_device(batch, self.device, dtype)?;
            }
        }
        self.prof_stop(p);
        Ok(batch)
    }
}

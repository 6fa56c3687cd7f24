//! The Trainer: Lightning's fit / validate / test / predict loops in plain Rust, driving any
//! [`LightningModule`] (the Rhai script module is one). It owns the loop, precision, gradient
//! accumulation and clipping, LR scheduler stepping, logging and progress; it knows nothing of Rhai.
pub mod api;
pub mod callback;
pub mod checkpointing;
pub mod config;
pub mod deadline;
pub mod hooks;
pub mod logger;
pub mod logging;
pub mod module;
pub mod precision;
pub mod progress;
pub mod scaler;
pub mod state;
pub mod tensorboard;
pub mod val_schedule;

use callback::{Action, Callback};
use checkpointing::PendingWrite;
use config::{ClipAlgorithm, Limit, TrainerConfig};
use hooks::{EvalPhase, Hook, Listeners};
use logger::Logger;
use module::{BatchLoader, HookArgs, Interval, LightningModule, LoaderStage, OptimizerSetup, StepKind};
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
    pub loggers: Vec<Box<dyn Logger>>,
    progress: Progress,
    /// The validation / test bar, separate from the epoch's bar it may interrupt.
    eval_progress: Progress,
    device: tch::Device,
    /// The optimizers and schedulers of the running fit.
    opt: OptimizerSetup,
    /// Checkpoint writes requested by callbacks, done at the next safe point.
    pending: Vec<checkpointing::PendingWrite>,
    /// Position in the current epoch: batches completed.
    batch_in_epoch: usize,
    /// Whether the current epoch's end processing is done (for checkpoints saved at epoch end).
    epoch_done: bool,
    total_batches_seen: usize,
    /// Lightning's `_batches_that_stepped`: batches that ended an accumulation window (every
    /// batch under manual optimization) — the step the loggers write rows at.
    batches_that_stepped: usize,
    /// Batches each evaluation loop's dataloader has run in this fit / validate / test (the step
    /// its on_step values are logged at).
    eval_seen: std::collections::HashMap<(&'static str, usize), usize>,
    /// global_step before this fit's manual-optimization steps (the optimizers count their own).
    manual_step_base: usize,
    /// Batches of the first epoch to skip when resuming mid-epoch.
    skip_batches: usize,
    /// Gradient averaging across ranks under DDP.
    grad_sync: crate::dist::GradSync,
    /// A callback took over the learning rate (SWA): the configured schedulers stop stepping.
    schedulers_suspended: bool,
    /// A callback asked for batch-norm statistics to be recomputed after `on_train_end` (SWA).
    update_bn: bool,
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
    pub fn new(config: TrainerConfig) -> Result<Trainer, String> {
        let device = config.device()?;
        let state = LoopState::shared();
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
            loggers: Vec::new(),
            device,
            opt: OptimizerSetup::default(),
            pending: Vec::new(),
            batch_in_epoch: 0,
            epoch_done: false,
            total_batches_seen: 0,
            batches_that_stepped: 0,
            eval_seen: Default::default(),
            manual_step_base: 0,
            skip_batches: 0,
            grad_sync: crate::dist::GradSync::new(),
            schedulers_suspended: false,
            update_bn: false,
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

    fn process_group(&self) -> Option<std::rc::Rc<crate::dist::ProcessGroup>> {
        self.state.borrow().process_group.clone().filter(|pg| pg.world_size() > 1)
    }

    fn distribute<B>(&self, loaders: &mut [Box<dyn BatchLoader<B>>]) -> Result<(), String> {
        if let Some(pg) = self.process_group() {
            for l in loaders.iter_mut() {
                l.set_distributed(pg.rank(), pg.world_size())?;
            }
        }
        Ok(())
    }

    /// Seeds libtorch (and, through the loaders' own seeds, data order), like `seed_everything`,
    /// and applies `deterministic`, `detect_anomaly` and `benchmark`.
    fn seed(&self) -> Result<(), String> {
        // every entry starts here: publish where this run logs (`trainer.log_dir`)
        self.state.borrow_mut().log_dir =
            self.loggers.first().and_then(|l| l.log_dir()).unwrap_or_else(|| self.config.default_root_dir.clone());
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

    fn set_hook(&self, name: &str) {
        self.state.borrow_mut().hook = name.to_string();
    }

    /// Calls a hook as Lightning does: the callbacks (script callbacks, then the built-in ones;
    /// for `on_train_epoch_end` only the non-monitoring ones), then the module, then (for
    /// `on_train_epoch_end`) the monitoring callbacks. What callbacks ask for is carried out right
    /// after them, so a checkpoint's `on_save_checkpoint` hooks run where Lightning runs them.
    fn call<M: LightningModule>(
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
                m.callback_hook(name, args)?;
            }
            self.run_callbacks(m, name, |c| !split || !c.monitoring())?;
        }
        let mut r = None;
        if who != Listeners::CallbacksOnly && m.has_hook(name) {
            r = m.hook(name, args)?;
        }
        if split {
            self.run_callbacks(m, name, |c| c.monitoring())?;
        }
        Ok(r)
    }

    /// Runs hook `name` of the built-in callbacks `which` selects and carries out their actions.
    fn run_callbacks<M: LightningModule>(
        &mut self,
        m: &mut M,
        name: &str,
        which: impl Fn(&dyn Callback) -> bool,
    ) -> Result<(), String> {
        let mut actions = Vec::new();
        for cb in self.callbacks.iter_mut().filter(|c| which(c.as_ref())) {
            actions.extend(cb.on_hook(name, &self.state).map_err(|e| format!("callback {}: {e}", cb.state_key()))?);
        }
        for a in actions {
            match a {
                Action::Stop => self.state.borrow_mut().should_stop = true,
                Action::Info { message, rank_zero_only } => {
                    let rank = self.state.borrow().global_rank;
                    if rank == 0 {
                        outln!("{message}");
                    } else if !rank_zero_only {
                        outln!("[rank: {rank}] {message}");
                    }
                }
                Action::Log(metrics) => {
                    // as LearningRateMonitor logs: straight to the loggers at `_batches_that_stepped`
                    // (no epoch column), and into callback_metrics
                    self.log_rows(&metrics, self.batches_that_stepped, false)?;
                    self.state.borrow_mut().views.callback.extend(metrics);
                }
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
    fn log_to_loggers(&mut self, metrics: &BTreeMap<String, f64>, step: usize) -> Result<(), String> {
        self.log_rows(metrics, step, true)
    }

    fn log_rows(&mut self, metrics: &BTreeMap<String, f64>, step: usize, with_epoch: bool) -> Result<(), String> {
        if metrics.is_empty() || self.loggers.is_empty() {
            return Ok(());
        }
        let mut m = metrics.clone();
        if with_epoch {
            m.entry("epoch".into()).or_insert(self.state.borrow().current_epoch as f64);
        }
        for l in &mut self.loggers {
            l.log_metrics(&m, step)?;
        }
        Ok(())
    }

    fn save_loggers(&mut self) -> Result<(), String> {
        for l in &mut self.loggers {
            l.save()?;
        }
        Ok(())
    }

    fn first_loader<B>(
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

    /// `trainer.fit(model)`.
    pub fn fit<M: LightningModule>(&mut self, m: &mut M) -> Result<(), String> {
        self.fit_from(m, None)
    }

    /// `trainer.fit(model, ckpt_path=...)`: resumes exactly from a checkpoint when given.
    pub fn fit_from<M: LightningModule>(
        &mut self,
        m: &mut M,
        ckpt: Option<&crate::checkpoint::Checkpoint>,
    ) -> Result<(), String> {
        let _deadline = deadline::Guard::start(self.config.max_time);
        self.seed()?;
        self.eval_seen.clear();
        {
            let mut s = self.state.borrow_mut();
            s.stage = RunningStage::Training;
            s.automatic_optimization = m.automatic_optimization();
            s.hparams = m.hparams();
        }
        m.to_device_dtype(self.device, self.config.precision.module_dtype())?;
        self.attach_model_callbacks(m)?;
        self.call(m, Hook::PrepareData, HookArgs::None)?;
        self.call(m, Hook::Setup, HookArgs::Stage("fit"))?;
        self.call(m, Hook::ConfigureModel, HookArgs::None)?;
        self.set_hook("configure_optimizers");
        self.opt = m.configure_optimizers()?;
        let automatic = m.automatic_optimization();
        self.state.borrow_mut().automatic_optimization = automatic;
        if automatic && self.opt.optimizers.len() > 1 {
            return Err(format!(
                "configure_optimizers returned {} optimizers; automatic optimization uses one. Set `this.automatic_optimization = false` and step them in training_step",
                self.opt.optimizers.len()
            ));
        }
        let info = callback::SetupInfo {
            log_dir: self.loggers.first().and_then(|l| l.log_dir()),
            default_root_dir: self.config.default_root_dir.clone(),
            check_val_every_n_epoch: self.config.check_val_every_n_epoch,
            val_every_epoch_end: self.config.val_check_interval == Limit::Fraction(1.0),
            has_val: m.has_step(StepKind::Validation),
        };
        for cb in &mut self.callbacks {
            cb.setup(&info)?;
        }
        self.schedulers_suspended = false;
        self.update_bn = false;
        if self.callbacks.iter().any(|c| c.wants_weights()) {
            let buffer_names: std::collections::HashSet<String> =
                m.named_buffers()?.into_iter().map(|(n, _)| n).collect();
            for cb in self.callbacks.iter_mut().filter(|c| c.wants_weights()) {
                cb.set_weights(Self::model_weights(m, &buffer_names)?)?;
            }
        }
        if let Some(c) = ckpt {
            self.restore(m, c)?;
        }
        if let Some(pg) = self.process_group() {
            if !automatic {
                return Err(
                    "DDP with manual optimization is not supported yet; use automatic optimization or one device"
                        .into(),
                );
            }
            crate::dist::broadcast_parameters(&pg, &m.parameters()?, &m.buffers()?).map_err(|e| e.to_string())?;
        }
        self.update_lrs();
        if self.config.enable_model_summary {
            if let Some(s) = m.summary() {
                self.progress.message(&s);
            }
        }
        let hparams = m.hparams();
        for l in &mut self.loggers {
            l.log_hyperparams(&hparams)?;
            if let Some(dir) = l.log_dir() {
                self.progress.version = dir
                    .file_name()
                    .and_then(|n| n.to_str())
                    .and_then(|n| n.strip_prefix("version_"))
                    .and_then(|n| n.parse().ok());
            }
        }
        self.call(m, Hook::OnFitStart, HookArgs::None)?;

        // Lightning loads the validation loaders when the sanity check starts, and otherwise
        // after the training loader.
        let val_limit = self.val_limit();
        let has_val =
            m.has_step(StepKind::Validation) && val_limit != Limit::Count(0) && val_limit != Limit::Fraction(0.0);
        let mut val_loaders = Vec::new();
        let sanity = has_val && self.config.num_sanity_val_steps != 0 && ckpt.is_none();
        if sanity {
            // The sanity check must not change what training draws from the RNG.
            let rng = crate::tensor::rng::get_state()?;
            self.state.borrow_mut().stage = RunningStage::SanityChecking;
            self.call(m, Hook::OnSanityCheckStart, HookArgs::None)?;
            val_loaders = m.loaders(LoaderStage::Val)?;
            self.distribute(&mut val_loaders)?;
            let limit = if self.config.num_sanity_val_steps < 0 {
                None
            } else {
                Some(self.config.num_sanity_val_steps as usize)
            };
            if !val_loaders.is_empty() {
                self.eval_loop(m, StepKind::Validation, &mut val_loaders, limit, true)?;
            }
            self.call(m, Hook::OnSanityCheckEnd, HookArgs::None)?;
            {
                // what the sanity check logged is forgotten once it ends
                let mut s = self.state.borrow_mut();
                s.views = logging::MetricViews::default();
                s.stage = RunningStage::Training;
            }
            crate::tensor::rng::set_state(&rng)?;
        }

        let mut train_loaders = m.loaders(LoaderStage::Train)?;
        self.distribute(&mut train_loaders)?;
        let mut train = Self::first_loader(train_loaders, "train_dataloader")?;
        if has_val && !sanity {
            val_loaders = m.loaders(LoaderStage::Val)?;
            self.distribute(&mut val_loaders)?;
        }
        let n_batches = self.train_batches(train.as_ref());
        if let (Some(n), Limit::Count(k), Some(_)) =
            (n_batches, self.config.val_check_interval, self.config.check_val_every_n_epoch)
        {
            if k > n {
                return Err(format!(
                    "`val_check_interval` ({k}) must be less than or equal to the number of the training batches ({n}). \
                     If you want to disable validation set `limit_val_batches` to 0.0 instead. If you want to validate \
                     based on the total training batches, set `check_val_every_n_epoch=None`."
                ));
            }
        }
        if let Some(n) = n_batches {
            let per_epoch = n.div_ceil(self.config.accumulate_grad_batches as usize);
            let by_epochs = self.config.max_epochs.filter(|e| *e >= 0).map(|e| e as usize * per_epoch);
            let est = match (by_epochs, self.config.max_steps) {
                (Some(e), s) if s >= 0 => e.min(s as usize),
                (Some(e), _) => e,
                (None, s) if s >= 0 => s as usize,
                _ => per_epoch,
            };
            self.state.borrow_mut().estimated_stepping_batches = Some(est);
        }
        self.call(m, Hook::OnTrainStart, HookArgs::None)?;
        let result = match self.epochs(m, train.as_mut(), n_batches, &mut val_loaders) {
            // a hook that was still running when max_time passed was stopped: the fit ends there,
            // as it would have at the next step boundary (that step's update is not made)
            Err(e) if e.contains(deadline::STOPPED) => {
                self.progress.message("`Trainer.fit` stopped: `max_time` reached inside a hook (it was abandoned)");
                Ok(())
            }
            other => other,
        };
        let end = result.and_then(|_| {
            self.call(m, Hook::OnTrainEnd, HookArgs::None)?;
            if std::mem::take(&mut self.update_bn) {
                self.update_batch_norm(m, train.as_mut())?;
            }
            self.flush_pending(m)?;
            self.save_loggers()
        });
        // on_fit_end and teardown run even after an error in the loop, as Lightning's teardown does.
        let fit_end = if end.is_ok() { self.call(m, Hook::OnFitEnd, HookArgs::None).map(|_| ()) } else { Ok(()) };
        let teardown = self.call(m, Hook::Teardown, HookArgs::Stage("fit")).map(|_| ());
        end.and(fit_end).and(teardown)
    }

    /// The module's parameters and buffers by name, sharing storage with it; a tensor reachable
    /// under two names (tied weights) is listed once.
    fn model_weights<M: LightningModule>(
        m: &M,
        buffer_names: &std::collections::HashSet<String>,
    ) -> Result<callback::ModelWeights, String> {
        let mut seen = std::collections::HashSet::new();
        let mut w = callback::ModelWeights { parameters: Vec::new(), buffers: Vec::new() };
        for (name, t) in m.state_dict()? {
            if !seen.insert(t.data_ptr() as usize) {
                continue;
            }
            if buffer_names.contains(&name) {
                w.buffers.push((name, t));
            } else {
                w.parameters.push((name, t));
            }
        }
        Ok(w)
    }

    /// PyTorch's `update_bn`: resets the batch-norm running statistics, then runs `forward` over
    /// one epoch of training inputs in training mode without gradients, averaging the batch
    /// statistics cumulatively (for weights that were averaged, which no batch has seen).
    fn update_batch_norm<M: LightningModule>(
        &mut self,
        m: &mut M,
        train: &mut dyn BatchLoader<M::Batch>,
    ) -> Result<(), String> {
        let momenta = m.reset_batch_norm(None)?;
        if momenta.is_empty() {
            return Ok(());
        }
        self.progress.message("Updating batch-norm statistics for the averaged weights");
        m.set_training(true)?;
        let n = self.train_batches(train);
        let epoch = self.state.borrow().current_epoch;
        train.start_epoch(epoch)?;
        let dtype = self.config.precision.module_dtype();
        let _g = tch::no_grad_guard();
        let mut i = 0;
        let r = (|| {
            while n.is_none_or(|n| i < n) {
                let Some(batch) = train.next_batch() else { break };
                let batch = m.batch_to_device(batch?, self.device, dtype)?;
                let _ac = AutocastGuard::enter(self.device, self.config.precision.autocast_dtype())?;
                self.set_hook("forward");
                m.forward_input(&batch)?;
                i += 1;
            }
            Ok::<(), String>(())
        })();
        m.restore_batch_norm_momenta(&momenta)?;
        r
    }

    /// `configure_callbacks()`: the module's callbacks replace the Trainer's of the same kind;
    /// checkpointing callbacks go last, as Lightning orders them.
    fn attach_model_callbacks<M: LightningModule>(&mut self, m: &mut M) -> Result<(), String> {
        self.set_hook(Hook::ConfigureCallbacks.name());
        let added = m.configure_callbacks()?;
        if added.is_empty() {
            return Ok(());
        }
        fn kind(c: &dyn Callback) -> String {
            let key = c.state_key();
            key.split('{').next().unwrap_or(&key).to_string()
        }
        let kinds: std::collections::HashSet<String> = added.iter().map(|c| kind(c.as_ref())).collect();
        self.callbacks.retain(|c| !kinds.contains(&kind(c.as_ref())));
        self.callbacks.extend(added);
        self.callbacks.sort_by_key(|c| kind(c.as_ref()) == "ModelCheckpoint");
        Ok(())
    }

    /// `on_validation_model_zero_grad`: the module's, else the gradients of every parameter are
    /// set to None.
    fn validation_zero_grad<M: LightningModule>(&mut self, m: &mut M) -> Result<(), String> {
        if m.has_hook(Hook::OnValidationModelZeroGrad.name()) {
            return self.call(m, Hook::OnValidationModelZeroGrad, HookArgs::None).map(|_| ());
        }
        for p in m.parameters()? {
            crate::optim::zero_grad_to_none(&p);
        }
        Ok(())
    }

    /// Lightning's batch transfer: `on_before_batch_transfer`, then `transfer_batch_to_device`
    /// (the module's, which then decides the device; else the Trainer's move and precision cast),
    /// then `on_after_batch_transfer`; each defined hook's return is the batch from then on.
    fn transfer<M: LightningModule>(
        &mut self,
        m: &mut M,
        batch: M::Batch,
        dataloader_idx: usize,
        dtype: Option<tch::Kind>,
    ) -> Result<M::Batch, String> {
        let mut batch = batch;
        for hook in [Hook::OnBeforeBatchTransfer, Hook::TransferBatchToDevice, Hook::OnAfterBatchTransfer] {
            if m.has_hook(hook.name()) {
                self.set_hook(hook.name());
                batch = m.batch_hook(hook.name(), batch, self.device, dataloader_idx)?;
            } else if hook == Hook::TransferBatchToDevice {
                batch = m.batch_to_device(batch, self.device, dtype)?;
            }
        }
        Ok(batch)
    }

    /// `on_{validation,test,predict}_model_eval`: the module's, else `eval()`.
    fn model_eval<M: LightningModule>(&mut self, m: &mut M, kind: StepKind) -> Result<(), String> {
        let hook = Hook::model_eval(kind);
        if m.has_hook(hook.name()) {
            self.call(m, hook, HookArgs::None).map(|_| ())
        } else {
            m.set_training(false)
        }
    }

    /// `on_{validation,test}_model_train` after an evaluation loop: the module's, else `train()`.
    fn model_train<M: LightningModule>(&mut self, m: &mut M, kind: StepKind) -> Result<(), String> {
        match Hook::model_train(kind) {
            Some(hook) if m.has_hook(hook.name()) => self.call(m, hook, HookArgs::None).map(|_| ()),
            Some(_) => m.set_training(true),
            None => Ok(()),
        }
    }

    /// Merges the current batch's step-level values into the three metric views; returns them.
    fn merge_step_views(&mut self) -> logging::MetricViews {
        let mut s = self.state.borrow_mut();
        let v = if s.training() { s.train_results.step_metrics() } else { s.eval_results.step_metrics() };
        s.views.callback.extend(v.callback.clone());
        s.views.progress_bar.extend(v.progress_bar.clone());
        s.views.logged.extend(v.logged.clone());
        v
    }

    /// `limit_val_batches`, or `overfit_batches` when set (Lightning overfits validation too).
    fn val_limit(&self) -> Limit {
        match self.config.overfit_batches {
            Limit::Count(n) if n > 0 => Limit::Count(n),
            Limit::Fraction(f) if f > 0.0 => Limit::Fraction(f),
            _ => self.config.limit_val_batches,
        }
    }

    fn train_batches<B>(&self, loader: &dyn BatchLoader<B>) -> Option<usize> {
        match self.config.overfit_batches {
            Limit::Count(n) if n > 0 => Limit::Count(n).apply(loader.len()),
            Limit::Fraction(f) if f > 0.0 => Limit::Fraction(f).apply(loader.len()),
            _ => self.config.limit_train_batches.apply(loader.len()),
        }
    }

    /// Lightning's `_can_stop_early`: min_epochs and min_steps are met.
    fn can_stop_early(&self) -> bool {
        let s = self.state.borrow();
        s.current_epoch as i64 >= self.config.min_epochs.unwrap_or(0)
            && s.global_step as i64 >= self.config.min_steps.unwrap_or(0)
    }

    fn should_stop_fitting(&self) -> bool {
        let s = self.state.borrow();
        let c = &self.config;
        if c.max_steps >= 0 && s.global_step as i64 >= c.max_steps {
            return true;
        }
        // the fit's max_time, on the same clock that stops a hook that never returns
        if deadline::passed() {
            return true;
        }
        let stop_requested = s.should_stop;
        drop(s);
        stop_requested && self.can_stop_early()
    }

    fn epochs<M: LightningModule>(
        &mut self,
        m: &mut M,
        train: &mut dyn BatchLoader<M::Batch>,
        n_batches: Option<usize>,
        val_loaders: &mut Vec<Box<dyn BatchLoader<M::Batch>>>,
    ) -> Result<(), String> {
        loop {
            let epoch = self.state.borrow().current_epoch;
            if let Some(me) = self.config.max_epochs {
                if me >= 0 && epoch as i64 >= me {
                    break;
                }
            }
            if self.should_stop_fitting() {
                break;
            }
            self.train_epoch(m, train, n_batches, val_loaders)?;
            self.state.borrow_mut().current_epoch += 1;
            self.epoch_done = false;
            self.batch_in_epoch = 0;
            if self.should_stop_fitting() {
                break;
            }
        }
        Ok(())
    }

    fn train_epoch<M: LightningModule>(
        &mut self,
        m: &mut M,
        train: &mut dyn BatchLoader<M::Batch>,
        n_batches: Option<usize>,
        val_loaders: &mut Vec<Box<dyn BatchLoader<M::Batch>>>,
    ) -> Result<(), String> {
        let epoch = self.state.borrow().current_epoch;
        train.start_epoch(epoch)?;
        m.set_training(true)?;
        let resuming = std::mem::take(&mut self.skip_batches);
        {
            let mut s = self.state.borrow_mut();
            s.stage = RunningStage::Training;
            if resuming == 0 {
                s.train_results.reset();
            }
            s.dataloader_idx = None;
        }
        self.progress.start(&format!("Epoch {epoch}"), n_batches);
        if resuming == 0 {
            self.call(m, Hook::OnTrainEpochStart, HookArgs::None)?;
        }
        // Resuming mid-epoch: the loader's order is a function of (seed, epoch), so skipping the
        // batches already trained on continues exactly where the checkpoint was taken.
        for _ in 0..resuming {
            match train.next_batch() {
                Some(r) => {
                    r?;
                }
                None => break,
            }
        }
        let accumulate =
            self.state.borrow().accumulate_grad_batches.unwrap_or(self.config.accumulate_grad_batches as usize).max(1);
        let mut batch_idx = resuming;
        self.batch_in_epoch = resuming;
        let dtype = self.config.precision.module_dtype();
        let automatic = m.automatic_optimization();
        let mut completed = n_batches == Some(resuming);
        loop {
            if n_batches.is_some_and(|n| batch_idx >= n) {
                completed = true;
                break;
            }
            if let Some((key, value)) = m.at_step_boundary()? {
                let step = self.state.borrow().global_step;
                let mut metrics = BTreeMap::new();
                metrics.insert(key, value);
                self.log_to_loggers(&metrics, step)?;
            }
            let Some(batch) = train.next_batch() else {
                completed = true;
                break;
            };
            let batch = self.transfer(m, batch?, 0, dtype)?;
            self.state.borrow_mut().batch_size = m.batch_size(&batch);
            let r = self.call(
                m,
                Hook::OnTrainBatchStart,
                HookArgs::BatchStart { batch: &batch, batch_idx, dataloader_idx: None },
            )?;
            if r == Some(-1) {
                break;
            }
            let last_batch = n_batches.is_some_and(|n| batch_idx + 1 == n);
            // Lightning's `_should_accumulate`: a batch that does not end an accumulation window
            // (manual optimization never accumulates).
            let accumulating = automatic && !(batch_idx + 1).is_multiple_of(accumulate) && !last_batch;
            let outputs = if automatic {
                let window_start = batch_idx - batch_idx % accumulate;
                let window = match n_batches {
                    Some(n) => accumulate.min(n - window_start),
                    None => accumulate,
                };
                self.automatic_step(m, &batch, batch_idx, batch_idx == window_start, !accumulating, window)?
            } else {
                let out = {
                    let _ac = AutocastGuard::enter(self.device, self.config.precision.autocast_dtype())?;
                    self.set_hook("training_step");
                    m.step(StepKind::Training, &batch, batch_idx, None)?.1
                };
                // manual optimization: global_step counts optimizer steps, as Lightning's does
                let steps: usize = self.opt.optimizers.iter().map(|o| o.state_step()).sum();
                self.state.borrow_mut().global_step = self.manual_step_base + steps;
                out
            };
            // schedulers: step-interval ones after a stepping batch, epoch-interval ones once the
            // epoch's last batch ran (before its on_train_batch_end, as Lightning does)
            if automatic && !accumulating {
                self.step_schedulers(Interval::Step, false, batch_idx)?;
            }
            if automatic && last_batch {
                self.step_schedulers(Interval::Epoch, false, batch_idx)?;
            }
            self.update_lrs();
            // what the step logged is visible to on_train_batch_end (Lightning's live
            // callback_metrics), and again with what that hook logs
            self.merge_step_views();
            self.call(
                m,
                Hook::OnTrainBatchEnd,
                HookArgs::BatchEnd { outputs: &outputs, batch: &batch, batch_idx, dataloader_idx: None },
            )?;
            // step-level metrics, to the loggers every log_every_n_steps stepping batches (every
            // batch while a stop is pending), at Lightning's `_batches_that_stepped`
            let step_views = self.merge_step_views();
            let should_stop = self.state.borrow().should_stop;
            let log_due = (self.batches_that_stepped + 1).is_multiple_of(self.config.log_every_n_steps.max(1) as usize)
                || should_stop;
            if !(automatic && accumulating) && log_due && !step_views.logged.is_empty() {
                self.log_to_loggers(&step_views.logged, self.batches_that_stepped)?;
            }
            self.state.borrow_mut().train_results.end_step();
            let pb = self.state.borrow().views.progress_bar.clone();
            self.progress.advance(&pb);
            batch_idx += 1;
            self.batch_in_epoch = batch_idx;
            self.total_batches_seen += 1;
            // validation: when due, or once more when a stop request can now be honoured
            let stop_now = self.state.borrow().should_stop && self.can_stop_early();
            if !val_loaders.is_empty()
                && (val_schedule::val_due(&self.config, batch_idx - 1, n_batches, epoch, self.total_batches_seen)
                    || (stop_now && val_schedule::validates_in_epoch(&self.config, epoch)))
            {
                if !(automatic && accumulating) {
                    // Lightning clears the gradients before validating (no memory held meanwhile)
                    self.validation_zero_grad(m)?;
                }
                self.eval_loop(m, StepKind::Validation, val_loaders, None, false)?;
                if automatic && !accumulating {
                    self.step_schedulers(Interval::Step, true, batch_idx - 1)?;
                }
            }
            if !(automatic && accumulating) {
                self.batches_that_stepped += 1;
            }
            let epoch_ends = n_batches.is_some_and(|n| batch_idx >= n);
            if !epoch_ends {
                // a safe point: the batch is fully processed
                self.flush_pending(m)?;
            }
            // max_steps, max_time, or a stop request (once min_epochs / min_steps are reached)
            if self.should_stop_fitting() {
                completed = epoch_ends;
                break;
            }
        }
        if automatic && completed && n_batches.is_none() {
            // a loader without a length: its last batch is known only now
            self.step_schedulers(Interval::Epoch, false, batch_idx.saturating_sub(1))?;
        }
        let pb = self.state.borrow().views.progress_bar.clone();
        self.progress.finish(&pb);
        // the epoch's reduced values are visible from on_train_epoch_end on (Lightning's
        // `epoch_end_reached`), and again with what the hook itself logged
        let epoch_views = self.state.borrow().train_results.epoch_metrics();
        self.state.borrow_mut().views.merge(&epoch_views);
        self.call(m, Hook::OnTrainEpochEnd, HookArgs::None)?;
        let epoch_views = self.state.borrow().train_results.epoch_metrics();
        self.state.borrow_mut().views.merge(&epoch_views);
        self.log_to_loggers(&epoch_views.logged, self.batches_that_stepped.saturating_sub(1))?;
        if automatic && completed {
            self.step_schedulers(Interval::Epoch, true, batch_idx.saturating_sub(1))?;
        }
        self.update_lrs();
        self.epoch_done = true;
        self.flush_pending(m)?;
        self.save_loggers()
    }

    fn automatic_step<M: LightningModule>(
        &mut self,
        m: &mut M,
        batch: &M::Batch,
        batch_idx: usize,
        first_in_window: bool,
        last_in_window: bool,
        window: usize,
    ) -> Result<M::Output, String> {
        let (loss, out) = {
            let _ac = AutocastGuard::enter(self.device, self.config.precision.autocast_dtype())?;
            self.set_hook("training_step");
            m.step(StepKind::Training, batch, batch_idx, None)?
        };
        let Some(loss) = loss else {
            // training_step returned nothing: skip this batch (Lightning does the same).
            return Ok(out);
        };
        if loss.numel() != 1 {
            return Err(format!("training_step must return a scalar loss, got a tensor of shape {:?}", loss.size()));
        }
        let has_opt = !self.opt.optimizers.is_empty();
        if first_in_window && has_opt {
            self.call(m, Hook::OnBeforeZeroGrad, HookArgs::Optimizer(0))?;
            if m.has_hook(Hook::OptimizerZeroGrad.name()) {
                let epoch = self.state.borrow().current_epoch;
                let args = HookArgs::OptimizerZeroGrad { epoch, batch_idx, optimizer: 0 };
                self.call(m, Hook::OptimizerZeroGrad, args)?;
            } else {
                self.opt.optimizers[0].zero_grad(true)?;
            }
        }
        self.state.borrow_mut().last_loss = Some(loss.detach());
        let loss = if window > 1 { loss.f_div_scalar(window as f64).map_err(|e| e.to_string())? } else { loss };
        self.call(m, Hook::OnBeforeBackward, HookArgs::Loss(&loss))?;
        let to_backward = match &self.state.borrow().scaler {
            Some(sc) => sc.scale_loss(&loss).map_err(|e| e.to_string())?,
            None => loss.shallow_clone(),
        };
        if !to_backward.requires_grad() {
            return Err(
                "the loss returned by training_step does not require grad: it is not connected to any parameter".into(),
            );
        }
        if m.has_hook(Hook::Backward.name()) {
            self.call(m, Hook::Backward, HookArgs::Loss(&to_backward))?;
        } else {
            to_backward
                .f_backward()
                .map_err(|e| format!("backward failed: {}", crate::tensor::clean_torch_message(&e.to_string())))?;
        }
        self.call(m, Hook::OnAfterBackward, HookArgs::None)?;
        if last_in_window {
            if let Some(pg) = self.process_group() {
                // DDP: average gradients over ranks once per accumulation window
                self.grad_sync.sync(&pg, &m.parameters()?).map_err(|e| e.to_string())?;
            }
            if has_opt {
                let params = self.opt.optimizers[0].params();
                if let Some(sc) = self.state.borrow_mut().scaler.as_mut() {
                    sc.unscale(&params).map_err(|e| e.to_string())?;
                }
                self.call(m, Hook::OnBeforeOptimizerStep, HookArgs::Optimizer(0))?;
                if m.has_hook(Hook::ConfigureGradientClipping.name()) {
                    let algorithm = self.config.gradient_clip_val.map(|_| match self.config.gradient_clip_algorithm {
                        ClipAlgorithm::Norm => "norm",
                        ClipAlgorithm::Value => "value",
                    });
                    let args =
                        HookArgs::GradientClipping { optimizer: 0, value: self.config.gradient_clip_val, algorithm };
                    self.call(m, Hook::ConfigureGradientClipping, args)?;
                } else if let Some(v) = self.config.gradient_clip_val.filter(|v| *v > 0.0) {
                    clip_gradients(&params, v, self.config.gradient_clip_algorithm)?;
                }
                let skip = self.state.borrow().scaler.as_ref().is_some_and(|s| s.should_skip());
                if !skip {
                    self.opt.optimizers[0].step()?;
                }
                if let Some(sc) = self.state.borrow_mut().scaler.as_mut() {
                    sc.update();
                }
            }
            self.state.borrow_mut().global_step += 1;
        }
        Ok(out)
    }

    /// Records each optimizer's learning rates in the loop state (for LearningRateMonitor).
    fn update_lrs(&mut self) {
        let lrs =
            self.opt.optimizers.iter().map(|o| (o.name(), o.lrs(), o.lrs().iter().map(|_| None).collect())).collect();
        self.state.borrow_mut().optimizer_lrs = lrs;
    }

    /// Steps the schedulers of `interval` whose frequency is due, as Lightning counts it: the
    /// batch index within the epoch (`batch_idx + 1`) for "step", the epoch (`current_epoch + 1`)
    /// for "epoch". Plateau schedulers read their monitored metric from callback_metrics
    /// (`strict`: a missing metric is an error).
    fn step_schedulers(&mut self, interval: Interval, plateau: bool, batch_idx: usize) -> Result<(), String> {
        if self.schedulers_suspended {
            return Ok(());
        }
        let epoch = self.state.borrow().current_epoch;
        for sc in &mut self.opt.schedulers {
            if sc.interval != interval || sc.scheduler.is_plateau() != plateau {
                continue;
            }
            let count = match interval {
                Interval::Step => batch_idx + 1,
                Interval::Epoch => epoch + 1,
            };
            if sc.frequency == 0 || count % sc.frequency != 0 {
                continue;
            }
            let metric = if sc.scheduler.is_plateau() {
                let key = sc.monitor.clone().ok_or("ReduceLROnPlateau needs a `monitor` in its lr_scheduler config")?;
                let v = self.state.borrow().views.callback.get(&key).copied();
                match v {
                    Some(v) => Some(v),
                    None => {
                        if sc.strict {
                            let avail: Vec<String> = self.state.borrow().views.callback.keys().cloned().collect();
                            return Err(format!(
                                "ReduceLROnPlateau conditioned on metric '{key}' which is not available. Available metrics are: [{}]. Condition can be set using `monitor` key in lr scheduler dict",
                                avail.join(", ")
                            ));
                        }
                        continue;
                    }
                }
            } else {
                None
            };
            sc.scheduler.step(metric)?;
        }
        Ok(())
    }

    /// Runs one evaluation pass over `loaders` (validation, test, or the sanity check).
    fn eval_loop<M: LightningModule>(
        &mut self,
        m: &mut M,
        kind: StepKind,
        loaders: &mut [Box<dyn BatchLoader<M::Batch>>],
        limit_override: Option<usize>,
        sanity: bool,
    ) -> Result<EvalResults, String> {
        if kind != StepKind::Validation && kind != StepKind::Test {
            return Err("eval_loop: not an evaluation step".into());
        }
        let prev_stage = self.state.borrow().stage;
        {
            let mut s = self.state.borrow_mut();
            s.stage = if sanity {
                RunningStage::SanityChecking
            } else if kind == StepKind::Test {
                RunningStage::Testing
            } else {
                RunningStage::Validating
            };
            s.eval_results.reset();
        }
        self.model_eval(m, kind)?;
        let _grad = tch::no_grad_guard();
        self.call(m, Hook::eval(kind, EvalPhase::Start), HookArgs::None)?;
        self.call(m, Hook::eval(kind, EvalPhase::EpochStart), HookArgs::None)?;
        let several = loaders.len() > 1;
        let limit = match kind {
            StepKind::Test => self.config.limit_test_batches,
            _ => self.val_limit(),
        };
        let dtype = self.config.precision.module_dtype();
        let epoch = self.state.borrow().current_epoch;
        for (dl, loader) in loaders.iter_mut().enumerate() {
            let dl_idx = if several { Some(dl) } else { None };
            let n = match limit_override {
                Some(k) => Some(limit.apply(loader.len()).map_or(k, |n| n.min(k))),
                None => limit.apply(loader.len()),
            };
            loader.start_epoch(epoch)?;
            self.state.borrow_mut().dataloader_idx = dl_idx;
            let label = match (kind, sanity) {
                (_, true) => "Sanity Checking",
                (StepKind::Test, _) => "Testing",
                _ => "Validation",
            };
            self.eval_progress.version = self.progress.version;
            self.eval_progress.start(&if several { format!("{label} DataLoader {dl}") } else { label.to_string() }, n);
            let mut i = 0;
            loop {
                if n.is_some_and(|n| i >= n) {
                    break;
                }
                let Some(batch) = loader.next_batch() else { break };
                let batch = self.transfer(m, batch?, dl, dtype)?;
                self.state.borrow_mut().batch_size = m.batch_size(&batch);
                self.call(
                    m,
                    Hook::eval(kind, EvalPhase::BatchStart),
                    HookArgs::BatchStart { batch: &batch, batch_idx: i, dataloader_idx: dl_idx },
                )?;
                let out = {
                    let _ac = AutocastGuard::enter(self.device, self.config.precision.autocast_dtype())?;
                    self.set_hook(kind.hook());
                    m.step(kind, &batch, i, dl_idx)?.1
                };
                self.call(
                    m,
                    Hook::eval(kind, EvalPhase::BatchEnd),
                    HookArgs::BatchEnd { outputs: &out, batch: &batch, batch_idx: i, dataloader_idx: dl_idx },
                )?;
                self.merge_step_views();
                if !sanity {
                    // on_step values go to the loggers at once, at the loop's count of batches
                    // of this dataloader (Lightning's `_seen_batches_per_dataloader`), with no epoch
                    let logged = self.state.borrow().eval_results.step_metrics().logged;
                    let seen = self.eval_seen.entry((kind.hook(), dl)).or_insert(0);
                    let step = *seen;
                    *seen += 1;
                    self.log_rows(&logged, step, false)?;
                }
                self.state.borrow_mut().eval_results.end_step();
                self.eval_progress.advance(&BTreeMap::new());
                i += 1;
            }
            let shown = self.state.borrow().eval_results.epoch_metrics().progress_bar;
            self.eval_progress.finish(&shown);
        }
        self.state.borrow_mut().dataloader_idx = None;
        // the epoch's values are visible from on_*_epoch_end on (Lightning's `epoch_end_reached`)
        let views = self.state.borrow().eval_results.epoch_metrics();
        self.state.borrow_mut().views.merge(&views);
        self.call(m, Hook::eval(kind, EvalPhase::EpochEnd), HookArgs::None)?;
        let views = self.state.borrow().eval_results.epoch_metrics();
        self.state.borrow_mut().views.merge(&views);
        // what validate/test return: the epoch's logged values (Lightning's `metrics["log"]`), per
        // dataloader; a value without a dataloader suffix (logged in an epoch-end hook) in each
        let mut results: EvalResults = vec![BTreeMap::new(); loaders.len().max(1)];
        for (k, v) in &views.logged {
            match k.rsplit_once("/dataloader_idx_").and_then(|(_, i)| i.parse::<usize>().ok()) {
                Some(idx) => {
                    if let Some(r) = results.get_mut(idx) {
                        r.insert(k.clone(), *v);
                    }
                }
                None => results.iter_mut().for_each(|r| {
                    r.insert(k.clone(), *v);
                }),
            }
        }
        if !sanity {
            self.log_to_loggers(&views.logged, self.batches_that_stepped)?;
        }
        self.call(m, Hook::eval(kind, EvalPhase::End), HookArgs::None)?;
        drop(_grad);
        self.model_train(m, kind)?;
        self.state.borrow_mut().stage = prev_stage;
        Ok(results)
    }

    /// validate / test: `optional`, no loaders is `None` rather than an error.
    fn eval_entry<M: LightningModule>(
        &mut self,
        m: &mut M,
        kind: StepKind,
        optional: bool,
    ) -> Result<Option<EvalResults>, String> {
        let (stage, loader_stage) = match kind {
            StepKind::Test => ("test", LoaderStage::Test),
            _ => ("validate", LoaderStage::Val),
        };
        self.seed()?;
        self.eval_seen.clear();
        m.to_device_dtype(self.device, self.config.precision.module_dtype())?;
        {
            // a new run: what an earlier fit logged is not this run's callback_metrics
            let mut s = self.state.borrow_mut();
            s.stage = if kind == StepKind::Test { RunningStage::Testing } else { RunningStage::Validating };
            s.views = logging::MetricViews::default();
        }
        self.attach_model_callbacks(m)?;
        self.call(m, Hook::PrepareData, HookArgs::None)?;
        self.call(m, Hook::Setup, HookArgs::Stage(stage))?;
        self.call(m, Hook::ConfigureModel, HookArgs::None)?;
        if !m.has_step(kind) {
            return Err(format!(
                "`{}` needs `fn {}(batch, batch_idx)` in the script",
                if kind == StepKind::Test { "test" } else { "validate" },
                kind.hook()
            ));
        }
        let mut loaders = m.loaders(loader_stage)?;
        let r = if loaders.is_empty() && optional {
            Ok(None)
        } else if loaders.is_empty() {
            Err(format!("{} returned no dataloader", loader_stage.hook()))
        } else {
            self.distribute(&mut loaders).and_then(|_| self.eval_loop(m, kind, &mut loaders, None, false)).and_then(
                |r| {
                    self.save_loggers()?;
                    Ok(Some(r))
                },
            )
        };
        let t = self.call(m, Hook::Teardown, HookArgs::Stage(stage));
        let r = r?;
        t?;
        Ok(r)
    }

    /// `trainer.validate(model)`.
    pub fn validate<M: LightningModule>(&mut self, m: &mut M) -> Result<EvalResults, String> {
        self.eval_entry(m, StepKind::Validation, false).map(|r| r.unwrap_or_default())
    }

    /// `trainer.test(model)`.
    pub fn test<M: LightningModule>(&mut self, m: &mut M) -> Result<EvalResults, String> {
        self.eval_entry(m, StepKind::Test, false).map(|r| r.unwrap_or_default())
    }

    /// `trainer.test(model)` after a fit (`lt run`): `None` when test_dataloader gives no data.
    pub fn test_if_data<M: LightningModule>(&mut self, m: &mut M) -> Result<Option<EvalResults>, String> {
        self.eval_entry(m, StepKind::Test, true)
    }

    /// `trainer.predict(model)`: the outputs of predict_step, per dataloader.
    pub fn predict<M: LightningModule>(&mut self, m: &mut M) -> Result<Vec<Vec<M::Output>>, String> {
        self.seed()?;
        m.to_device_dtype(self.device, self.config.precision.module_dtype())?;
        self.state.borrow_mut().stage = RunningStage::Predicting;
        self.attach_model_callbacks(m)?;
        self.call(m, Hook::PrepareData, HookArgs::None)?;
        self.call(m, Hook::Setup, HookArgs::Stage("predict"))?;
        self.call(m, Hook::ConfigureModel, HookArgs::None)?;
        if !m.has_step(StepKind::Predict) {
            return Err("`predict` needs `fn predict_step(batch, batch_idx)` in the script".into());
        }
        let mut loaders = m.loaders(LoaderStage::Predict)?;
        if loaders.is_empty() {
            return Err("predict_dataloader returned no dataloader".into());
        }
        self.model_eval(m, StepKind::Predict)?;
        let _grad = tch::no_grad_guard();
        let mut all = Vec::new();
        self.call(m, Hook::OnPredictStart, HookArgs::None)?;
        self.call(m, Hook::OnPredictEpochStart, HookArgs::None)?;
        let several = loaders.len() > 1;
        let dtype = self.config.precision.module_dtype();
        for (dl, loader) in loaders.iter_mut().enumerate() {
            let dl_idx = if several { Some(dl) } else { None };
            let n = self.config.limit_predict_batches.apply(loader.len());
            loader.start_epoch(0)?;
            let mut outs = Vec::new();
            let mut i = 0;
            loop {
                if n.is_some_and(|n| i >= n) {
                    break;
                }
                let Some(batch) = loader.next_batch() else { break };
                let batch = self.transfer(m, batch?, dl, dtype)?;
                self.call(
                    m,
                    Hook::OnPredictBatchStart,
                    HookArgs::BatchStart { batch: &batch, batch_idx: i, dataloader_idx: dl_idx },
                )?;
                let out = {
                    let _ac = AutocastGuard::enter(self.device, self.config.precision.autocast_dtype())?;
                    self.set_hook("predict_step");
                    m.step(StepKind::Predict, &batch, i, dl_idx)?.1
                };
                self.call(
                    m,
                    Hook::OnPredictBatchEnd,
                    HookArgs::BatchEnd { outputs: &out, batch: &batch, batch_idx: i, dataloader_idx: dl_idx },
                )?;
                outs.push(out);
                i += 1;
            }
            all.push(outs);
        }
        self.call(m, Hook::OnPredictEpochEnd, HookArgs::None)?;
        self.call(m, Hook::OnPredictEnd, HookArgs::None)?;
        drop(_grad);
        self.call(m, Hook::Teardown, HookArgs::Stage("predict"))?;
        Ok(all)
    }

    /// Lightning's results table after validate/test: `Test metric | DataLoader 0 | …`.
    pub fn results_table(kind: &str, results: &EvalResults) -> String {
        let mut keys: Vec<String> = Vec::new();
        for r in results {
            for k in r.keys() {
                let base = k.rsplit_once("/dataloader_idx_").map(|(b, _)| b.to_string()).unwrap_or_else(|| k.clone());
                if !keys.contains(&base) {
                    keys.push(base);
                }
            }
        }
        keys.sort();
        let mut table = comfy_table::Table::new();
        table.load_preset(comfy_table::presets::UTF8_FULL);
        let mut header = vec![format!("{kind} metric")];
        header.extend((0..results.len()).map(|i| format!("DataLoader {i}")));
        table.set_header(header);
        for k in keys {
            let mut row = vec![k.clone()];
            for (i, r) in results.iter().enumerate() {
                let v = r.get(&k).or_else(|| r.get(&format!("{k}/dataloader_idx_{i}")));
                row.push(v.map(|v| format!("{v}")).unwrap_or_default());
            }
            table.add_row(row);
        }
        table.to_string()
    }
}

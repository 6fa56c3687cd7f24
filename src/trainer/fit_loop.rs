//! The fit loop: `trainer.fit` — setup, the sanity check, the epochs, and their end — as
//! Lightning's `_FitLoop`; the stop conditions (max_epochs / max_steps / max_time / a stop
//! request once min_epochs and min_steps allow).
use super::*;
use serde_json::Value;

impl Trainer {
    /// `trainer.fit(model)`.
    pub fn fit<M: LightningModule>(&mut self, m: &mut M) -> Result<(), String> {
        self.fit_from(m, None)
    }

    /// `trainer.fit(model, ckpt_path=...)`: resumes exactly from a checkpoint when given. Ctrl-C
    /// stops it gracefully; however it ends, the loggers write what they hold.
    pub fn fit_from<M: LightningModule>(
        &mut self,
        m: &mut M,
        ckpt: Option<&crate::checkpoint::Checkpoint>,
    ) -> Result<(), String> {
        self.guarded("fit", |t| t.fit_run(m, ckpt))
    }

    fn fit_run<M: LightningModule>(
        &mut self,
        m: &mut M,
        ckpt: Option<&crate::checkpoint::Checkpoint>,
    ) -> Result<(), String> {
        let _deadline = deadline::Guard::start(self.config.max_time);
        let _bars = progress::BarsGuard;
        self.seed()?;
        self.profiler_setup("fit")?;
        self.eval_seen.clear();
        {
            let mut s = self.state.borrow_mut();
            s.stage = RunningStage::Training;
            s.automatic_optimization = m.automatic_optimization();
            s.hparams = m.hparams();
            s.datamodule_hparams = m.datamodule_hparams();
            // `estimated_stepping_batches` read before the training loader is loaded loads it
            // then (as Lightning's does): what it is computed from
            s.estimated_stepping_batches = None;
            s.stepping_estimate = Some(self.stepping_estimate());
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
            log_dir: self.loggers.log_dir(),
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
        // Lightning's ModelSummary callback (the default one: depth 1) logs the table, an info
        // line after an empty one
        let depth = self.callbacks.iter().find_map(|c| c.summary_depth());
        let depth = depth.or(self.config.enable_model_summary.then_some(1)).unwrap_or(0);
        if depth != 0 && self.state.borrow().global_rank == 0 {
            if let Some(s) = m.summary(depth) {
                infoln!("\n{s}");
            }
        }
        let hparams = logged_hparams(m.hparams(), m.datamodule_hparams())?;
        self.loggers.each(|l| l.log_hyperparams(&hparams, None))?;
        if let Some(dir) = self.loggers.log_dir() {
            self.progress.version = dir
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_prefix("version_"))
                .and_then(|n| n.parse().ok());
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
            self.check_loaders(&val_loaders, LoaderStage::Val);
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
        self.check_loaders(&train_loaders, LoaderStage::Train);
        let mut train = Self::first_loader(train_loaders, "train_dataloader")?;
        if has_val && !sanity {
            val_loaders = m.loaders(LoaderStage::Val)?;
            self.distribute(&mut val_loaders)?;
            self.check_loaders(&val_loaders, LoaderStage::Val);
        }
        let n_batches = self.train_batches(train.as_ref());
        self.check_fit_data(m, n_batches);
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
        if let Some(est) = self.stepping_estimate().estimate(train.len()) {
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
        if result.is_ok() && !self.paused() && self.state.borrow().global_rank == 0 {
            if let Some(why) = self.stop_reason(n_batches) {
                infoln!("`Trainer.fit` stopped: {why}.");
            }
        }
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
    pub(super) fn model_weights<M: LightningModule>(
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
    pub(super) fn update_batch_norm<M: LightningModule>(
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
        let epoch = self.state.borrow().progress.current_epoch;
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
    pub(super) fn attach_model_callbacks<M: LightningModule>(&mut self, m: &mut M) -> Result<(), String> {
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

    /// Lightning's `_can_stop_early`: min_epochs and min_steps are met.
    pub(super) fn can_stop_early(&self) -> bool {
        let s = self.state.borrow();
        s.progress.current_epoch as i64 >= self.config.min_epochs.unwrap_or(0)
            && s.progress.global_step as i64 >= self.config.min_steps.unwrap_or(0)
    }

    /// `max_steps` is set and reached.
    fn max_steps_reached(&self) -> bool {
        self.config.max_steps >= 0 && self.state.borrow().progress.global_step as i64 >= self.config.max_steps
    }

    /// `max_epochs` is set and reached.
    fn max_epochs_reached(&self) -> bool {
        self.config.max_epochs.is_some_and(|me| me >= 0 && self.state.borrow().progress.current_epoch as i64 >= me)
    }

    pub(super) fn should_stop_fitting(&self) -> bool {
        if self.max_steps_reached() {
            return true;
        }
        let s = self.state.borrow();
        // the fit's max_time, on the same clock that stops a hook that never returns
        if deadline::passed() {
            return true;
        }
        let stop_requested = s.should_stop;
        drop(s);
        stop_requested && self.can_stop_early()
    }

    /// What `estimated_stepping_batches` is computed from, but the loader's length.
    pub(super) fn stepping_estimate(&self) -> state::SteppingEstimate {
        let limit = match self.config.overfit_batches {
            Limit::Count(n) if n > 0 => Limit::Count(n),
            Limit::Fraction(f) if f > 0.0 => Limit::Fraction(f),
            _ => self.config.limit_train_batches,
        };
        state::SteppingEstimate {
            limit,
            accumulate: self.config.accumulate_grad_batches.max(1) as usize,
            max_epochs: self.config.max_epochs,
            max_steps: self.config.max_steps,
        }
    }

    /// Why the fit's loop ended, as Lightning's `_FitLoop.done` says it: no training batches,
    /// `max_steps`, then lt's own `max_time`, then `max_epochs` (a stop request: None).
    fn stop_reason(&self, n_batches: Option<usize>) -> Option<String> {
        if n_batches == Some(0) {
            return Some("No training batches".into());
        }
        if self.max_steps_reached() {
            return Some(format!("`max_steps={}` reached", self.config.max_steps));
        }
        // (max_time before max_epochs: a fit that max_time cut short also counts its epoch done)
        match (self.config.max_epochs, self.config.max_time) {
            (_, Some(t)) if deadline::passed() => Some(format!("`max_time={t:?}` reached")),
            (Some(me), _) if self.max_epochs_reached() => Some(format!("`max_epochs={me}` reached")),
            _ => None,
        }
    }

    /// The fit reached the REPL's pause step.
    pub(super) fn paused(&self) -> bool {
        self.pause_at_step == Some(self.state.borrow().progress.global_step)
    }

    pub(super) fn epochs<M: LightningModule>(
        &mut self,
        m: &mut M,
        train: &mut dyn BatchLoader<M::Batch>,
        n_batches: Option<usize>,
        val_loaders: &mut Vec<Box<dyn BatchLoader<M::Batch>>>,
    ) -> Result<(), String> {
        loop {
            if self.max_epochs_reached() || self.should_stop_fitting() || self.paused() {
                break;
            }
            let p = self.prof_start(|| "run_training_epoch".into());
            self.train_epoch(m, train, n_batches, val_loaders)?;
            self.prof_stop(p);
            if self.paused() && !self.progress().epoch_done {
                // paused mid-epoch: the epoch goes on at the next fit
                break;
            }
            self.progress_mut().start_next_epoch();
            if self.should_stop_fitting() {
                break;
            }
        }
        Ok(())
    }
}

/// What the loggers record as hyperparameters: the module's and the DataModule's together, as
/// Lightning's `_log_hyperparams` merges them (a key in both with different values is an error).
fn logged_hparams(module: Value, data: Value) -> Result<Value, String> {
    let Value::Object(data) = data else { return Ok(module) };
    let mut merged = match module {
        Value::Object(m) => m,
        Value::Null => Default::default(),
        other => return Ok(other),
    };
    let clash: Vec<&String> =
        data.iter().filter(|(k, v)| merged.get(*k).is_some_and(|m| m != *v)).map(|(k, _)| k).collect();
    if !clash.is_empty() {
        return Err(format!(
            "Error while merging hparams: the keys {clash:?} are present in both the LightningModule's and LightningDataModule's hparams but have different values."
        ));
    }
    merged.extend(data);
    Ok(Value::Object(merged))
}

//! The training-epoch loop: one epoch's batches — transfer, `on_train_batch_*`, the optimization
//! step, schedulers, step logging, validation when due — as Lightning's `_TrainingEpochLoop`.
use super::*;

impl Trainer {
    /// `on_validation_model_zero_grad`: the module's, else the gradients of every parameter are
    /// set to None.
    pub(super) fn validation_zero_grad<M: LightningModule>(&mut self, m: &mut M) -> Result<(), String> {
        if m.has_hook(Hook::OnValidationModelZeroGrad.name()) {
            return self.call(m, Hook::OnValidationModelZeroGrad, HookArgs::None).map(|_| ());
        }
        for p in m.parameters()? {
            crate::optim::zero_grad_to_none(&p);
        }
        Ok(())
    }

    /// Merges the current batch's step-level values into the three metric views; returns them.
    pub(super) fn merge_step_views(&mut self) -> logging::MetricViews {
        let mut s = self.state.borrow_mut();
        let v = if s.training() { s.train_results.step_metrics() } else { s.eval_results.step_metrics() };
        s.views.callback.extend(v.callback.clone());
        s.views.progress_bar.extend(v.progress_bar.clone());
        s.views.logged.extend(v.logged.clone());
        v
    }

    /// `limit_val_batches`, or `overfit_batches` when set (Lightning overfits validation too).
    pub(super) fn val_limit(&self) -> Limit {
        match self.config.overfit_batches {
            Limit::Count(n) if n > 0 => Limit::Count(n),
            Limit::Fraction(f) if f > 0.0 => Limit::Fraction(f),
            _ => self.config.limit_val_batches,
        }
    }

    /// Lightning's `should_update_logs`: step-level logging is due every `log_every_n_steps`
    /// stepping batches, and at every batch while a stop is pending.
    fn step_log_due(&self) -> bool {
        let every = self.config.log_every_n_steps.max(1) as usize;
        (self.progress().batches_that_stepped + 1).is_multiple_of(every) || self.state.borrow().should_stop
    }

    pub(super) fn train_batches<B>(&self, loader: &dyn BatchLoader<B>) -> Option<usize> {
        self.stepping_estimate().limit.apply(loader.len())
    }

    pub(super) fn train_epoch<M: LightningModule>(
        &mut self,
        m: &mut M,
        train: &mut dyn BatchLoader<M::Batch>,
        n_batches: Option<usize>,
        val_loaders: &mut Vec<Box<dyn BatchLoader<M::Batch>>>,
    ) -> Result<(), String> {
        let epoch = self.state.borrow().progress.current_epoch;
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
            s.in_batch = false;
        }
        self.progress.start(&format!("Epoch {epoch}"), n_batches, progress::Role::Leave);
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
        self.progress_mut().batch_in_epoch = resuming;
        let dtype = self.config.precision.module_dtype();
        let automatic = m.automatic_optimization();
        let mut completed = n_batches == Some(resuming);
        loop {
            if n_batches.is_some_and(|n| batch_idx >= n) {
                completed = true;
                break;
            }
            self.check_interrupt()?;
            if let Some((key, value)) = m.at_step_boundary()? {
                let step = self.state.borrow().progress.global_step;
                let mut metrics = BTreeMap::new();
                metrics.insert(key, value);
                self.log_to_loggers(&metrics, step)?;
            }
            let p = self.prof_start(|| "[_TrainingEpochLoop].train_dataloader_next".into());
            let next = train.next_batch();
            self.prof_stop(p);
            let Some(batch) = next else {
                completed = true;
                break;
            };
            if let Some(profiler::Profiler::PyTorch(p)) = self.profiler.as_mut() {
                p.step_start()?;
            }
            let batch = self.transfer(m, batch?, 0, dtype)?;
            let log_due = self.step_log_due();
            {
                let mut s = self.state.borrow_mut();
                s.batch_size = m.batch_size(&batch);
                s.log_due = log_due;
                s.in_batch = true;
            }
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
            let p = self.prof_start(|| "run_training_batch".into());
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
                    let strategy = self.strategy_name();
                    let p = self.prof_start(|| format!("[Strategy]{strategy}.training_step"));
                    let out = m.step(StepKind::Training, &batch, batch_idx, None)?.1;
                    self.prof_stop(p);
                    out
                };
                // manual optimization: global_step counts optimizer steps, as Lightning's does
                let steps: usize = self.opt.optimizers.iter().map(|o| o.state_step()).sum();
                self.state.borrow_mut().progress.global_step = self.manual_step_base + steps;
                out
            };
            self.prof_stop(p);
            // schedulers: step-interval ones after a stepping batch, epoch-interval ones once the
            // epoch's last batch ran (before its on_train_batch_end, as Lightning does)
            if automatic && !accumulating {
                self.step_schedulers(m, Interval::Step, false, batch_idx)?;
            }
            if automatic && last_batch {
                self.step_schedulers(m, Interval::Epoch, false, batch_idx)?;
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
            if !(automatic && accumulating) && self.step_log_due() && !step_views.logged.is_empty() {
                self.log_to_loggers(&step_views.logged, self.progress().batches_that_stepped)?;
            }
            self.state.borrow_mut().train_results.end_step();
            if let Some(profiler::Profiler::PyTorch(p)) = self.profiler.as_mut() {
                p.step_end()?;
            }
            let pb = self.state.borrow().views.progress_bar.clone();
            self.progress.advance(&pb);
            batch_idx += 1;
            let total_batches_seen = {
                let mut p = self.progress_mut();
                p.batch_in_epoch = batch_idx;
                p.total_batches_seen += 1;
                p.total_batches_seen
            };
            // validation: when due, or once more when a stop request can now be honoured
            let stop_now = self.state.borrow().should_stop && self.can_stop_early();
            if !val_loaders.is_empty()
                && (val_schedule::val_due(&self.config, batch_idx - 1, n_batches, epoch, total_batches_seen)
                    || (stop_now && val_schedule::validates_in_epoch(&self.config, epoch)))
            {
                if !(automatic && accumulating) {
                    // Lightning clears the gradients before validating (no memory held meanwhile)
                    self.validation_zero_grad(m)?;
                }
                self.eval_loop(m, StepKind::Validation, val_loaders, None, false)?;
                if automatic && !accumulating {
                    self.step_schedulers(m, Interval::Step, true, batch_idx - 1)?;
                }
            }
            if !(automatic && accumulating) {
                self.progress_mut().batches_that_stepped += 1;
            }
            let epoch_ends = n_batches.is_some_and(|n| batch_idx >= n);
            if !epoch_ends {
                // a safe point: the batch is fully processed
                self.flush_pending(m)?;
            }
            // the REPL's `:fit N` pauses mid-epoch: no epoch end, the next fit continues here
            if !epoch_ends && self.paused() {
                return Ok(());
            }
            // max_steps, max_time, or a stop request (once min_epochs / min_steps are reached)
            if self.should_stop_fitting() {
                completed = epoch_ends;
                break;
            }
        }
        if automatic && completed && n_batches.is_none() {
            // a loader without a length: its last batch is known only now
            self.step_schedulers(m, Interval::Epoch, false, batch_idx.saturating_sub(1))?;
        }
        let pb = self.state.borrow().views.progress_bar.clone();
        self.progress.finish(&pb);
        // the epoch's reduced values are visible from on_train_epoch_end on (Lightning's
        // `epoch_end_reached`), and again with what the hook itself logged
        let epoch_views = self.state.borrow().train_results.epoch_metrics()?;
        {
            let mut s = self.state.borrow_mut();
            s.in_batch = false;
            s.views.merge(&epoch_views);
        }
        self.call(m, Hook::OnTrainEpochEnd, HookArgs::None)?;
        let epoch_views = self.state.borrow().train_results.epoch_metrics()?;
        self.state.borrow_mut().views.merge(&epoch_views);
        self.log_to_loggers(&epoch_views.logged, self.progress().batches_that_stepped.saturating_sub(1))?;
        // Lightning resets its results after the epoch's values are logged, the metric objects with them
        self.state.borrow_mut().train_results.reset_metric_objects();
        if automatic && completed {
            self.step_schedulers(m, Interval::Epoch, true, batch_idx.saturating_sub(1))?;
        }
        self.update_lrs();
        self.progress_mut().epoch_done = true;
        self.flush_pending(m)?;
        self.save_loggers()
    }
}

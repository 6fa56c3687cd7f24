//! Automatic optimization of one batch — training_step, zero_grad, backward, clipping, the
//! optimizer step with the gradient scaler and DDP's gradient sync — and the LR schedulers, as
//! Lightning's `_AutomaticOptimization` and `_update_learning_rates`.
use super::*;

impl Trainer {
    pub(super) fn automatic_step<M: LightningModule>(
        &mut self,
        m: &mut M,
        batch: &M::Batch,
        batch_idx: usize,
        first_in_window: bool,
        last_in_window: bool,
        window: usize,
    ) -> Result<M::Output, String> {
        let strategy = self.strategy_name();
        let (loss, out) = {
            let _ac = AutocastGuard::enter(self.device, self.config.precision.autocast_dtype())?;
            self.set_hook("training_step");
            let p = self.prof_start(|| format!("[Strategy]{strategy}.training_step"));
            let r = m.step(StepKind::Training, batch, batch_idx, None)?;
            self.prof_stop(p);
            r
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
                let epoch = self.state.borrow().progress.current_epoch;
                let args = HookArgs::OptimizerZeroGrad { epoch, batch_idx, optimizer: 0 };
                self.call(m, Hook::OptimizerZeroGrad, args)?;
            } else {
                let p = self.prof_start(|| format!("[LightningModule]{}.optimizer_zero_grad", m.class_name()));
                self.opt.optimizers[0].zero_grad(true)?;
                self.prof_stop(p);
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
        let p = self.prof_start(|| format!("[Strategy]{strategy}.backward"));
        if m.has_hook(Hook::Backward.name()) {
            self.call(m, Hook::Backward, HookArgs::Loss(&to_backward))?;
        } else {
            to_backward
                .f_backward()
                .map_err(|e| format!("backward failed: {}", crate::tensor::clean_torch_message(&e.to_string())))?;
        }
        self.prof_stop(p);
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
                if m.has_hook(Hook::OptimizerStep.name()) {
                    // the module's optimizer_step steps (or not) with `optimizer.step(optimizer_closure)`;
                    // the closure's work (training_step, backward, clipping) is already done
                    if self.state.borrow().scaler.is_some() {
                        return Err("optimizer_step with precision \"16-mixed\" is not supported (the gradient scaler must make the step); use \"bf16-mixed\" or \"32-true\"".into());
                    }
                    let epoch = self.state.borrow().progress.current_epoch;
                    let args = HookArgs::OptimizerStep { epoch, batch_idx, optimizer: 0, loss: &loss };
                    self.call(m, Hook::OptimizerStep, args)?;
                } else if !skip {
                    let p = self.prof_start(|| format!("[LightningModule]{}.optimizer_step", m.class_name()));
                    self.opt.optimizers[0].step()?;
                    self.prof_stop(p);
                }
                if let Some(sc) = self.state.borrow_mut().scaler.as_mut() {
                    sc.update();
                }
            }
            self.state.borrow_mut().progress.global_step += 1;
        }
        Ok(out)
    }

    /// Records each optimizer's learning rates in the loop state (for LearningRateMonitor).
    pub(super) fn update_lrs(&mut self) {
        let lrs = self
            .opt
            .optimizers
            .iter()
            .enumerate()
            .map(|(i, o)| {
                let groups = 0..o.lrs().len();
                let scheduler =
                    self.opt.schedulers.iter().find(|s| s.optimizer == Some(i)).map(|s| (s.interval, s.name.clone()));
                let momentum = |g| o.group_option(g, "betas").or_else(|| o.group_option(g, "momentum")).unwrap_or(0.0);
                state::OptimizerLrs {
                    name: o.name(),
                    lrs: o.lrs(),
                    momenta: groups.clone().map(momentum).collect(),
                    weight_decays: groups.map(|g| o.group_option(g, "weight_decay").unwrap_or(0.0)).collect(),
                    scheduler,
                }
            })
            .collect();
        self.state.borrow_mut().optimizer_lrs = lrs;
    }

    /// Steps the schedulers of `interval` whose frequency is due, as Lightning counts it: the
    /// batch index within the epoch (`batch_idx + 1`) for "step", the epoch (`current_epoch + 1`)
    /// for "epoch". Plateau schedulers read their monitored metric from callback_metrics
    /// (`strict`: a missing metric is an error).
    /// Steps the schedulers of `interval` that are due (the module's `lr_scheduler_step(scheduler,
    /// metric)` does it when defined, as Lightning's).
    pub(super) fn step_schedulers<M: LightningModule>(
        &mut self,
        m: &mut M,
        interval: Interval,
        plateau: bool,
        batch_idx: usize,
    ) -> Result<(), String> {
        if self.schedulers_suspended {
            return Ok(());
        }
        let epoch = self.state.borrow().progress.current_epoch;
        let mut due = Vec::new();
        for (i, sc) in self.opt.schedulers.iter().enumerate() {
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
                let v = self.state.borrow_mut().callback_metrics()?.get(&key).copied();
                match v {
                    Some(v) => Some(v),
                    None => {
                        if sc.strict {
                            let avail: Vec<String> =
                                self.state.borrow_mut().callback_metrics()?.keys().cloned().collect();
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
            due.push((i, metric));
        }
        let by_module = m.has_hook(Hook::LrSchedulerStep.name());
        for (i, metric) in due {
            if by_module {
                self.call(m, Hook::LrSchedulerStep, HookArgs::LrSchedulerStep { scheduler: i, metric })?;
            } else {
                self.opt.schedulers[i].scheduler.step(metric)?;
            }
        }
        Ok(())
    }
}

//! Weight averaging: Lightning's `WeightAveraging` (an equal-weight average updated after every
//! optimizer step), `EMAWeightAveraging` (an exponential moving average) and
//! `StochasticWeightAveraging` (SWA: an average of the weights at epoch ends, with SWALR's
//! learning-rate annealing and a batch-norm statistics update at the end).
//!
//! The average lives in this callback; it holds the module's own tensors (sharing storage) and
//! updates its copies with PyTorch's `AveragedModel` arithmetic: the first update copies, later
//! ones apply `avg + (current - avg) / (n + 1)` (SWA) or
//! `decay * avg + (1 - decay) * current` (EMA). Integer buffers (`num_batches_tracked`) follow the
//! current model.
//!
//! Differences from Lightning, on purpose:
//! - Validation swaps the averaged weights in only once an average exists (Lightning's
//!   `WeightAveraging` validates a copy of the initial weights until the first update).
//! - SWA averages at the *end* of each epoch from `swa_epoch_start` on, as PyTorch's SWA recipe
//!   does; Lightning's callback averages at epoch starts, so its average includes the weights from
//!   before the SWA learning rate and misses the last epoch.
//! - SWA's batch-norm update is PyTorch's `update_bn` (one pass of `forward` over the training
//!   inputs without gradients), not an extra training epoch that runs `training_step` and logs.
use crate::trainer::callback::{Action, Callback, ModelWeights};
use crate::trainer::state::SharedState;
use serde_json::{json, Value};
use tch::Tensor;

/// How a new value enters the average.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum AvgFn {
    /// Equal weights: `avg + (current - avg) / (n + 1)`.
    Mean,
    /// `decay * avg + (1 - decay) * current`.
    Ema { decay: f64 },
}

/// When the average is updated.
#[derive(Debug, Clone, PartialEq)]
pub enum When {
    /// After optimizer steps (`every_n_steps`, from `start_step`), and at the ends of epochs from
    /// `start_epoch` when given (Lightning's `should_update`).
    Steps { every_n_steps: usize, start_step: Option<usize>, start_epoch: Option<usize> },
    /// SWA: at the ends of epochs from the start epoch on.
    Swa(SwaSchedule),
}

/// SWA's learning-rate annealing (PyTorch's `SWALR`).
#[derive(Debug, Clone, PartialEq)]
pub struct SwaSchedule {
    /// `swa_lrs`: one value for every group, or one per group.
    pub swa_lrs: Vec<f64>,
    /// An epoch, or a fraction of `max_epochs` (Lightning's `swa_epoch_start`).
    pub epoch_start: EpochStart,
    pub annealing_epochs: i64,
    pub cosine: bool,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum EpochStart {
    Epoch(usize),
    Fraction(f64),
}

/// PyTorch's SWALR: the learning rate of one group after `steps` scheduler steps, from the group's
/// current `lr` (its chainable form, in PyTorch's floating-point order).
pub fn swalr_step(lr: f64, swa_lr: f64, steps: i64, anneal_epochs: i64, cosine: bool) -> f64 {
    let anneal = |t: f64| if cosine { (1.0 - (std::f64::consts::PI * t).cos()) / 2.0 } else { t };
    let step = if anneal_epochs == 0 { steps.max(1) } else { steps };
    let denom = anneal_epochs.max(1) as f64;
    let prev_t = ((step - 1) as f64 / denom).clamp(0.0, 1.0);
    let prev_alpha = anneal(prev_t);
    let prev_lr = if prev_alpha == 1.0 { swa_lr } else { (lr - prev_alpha * swa_lr) / (1.0 - prev_alpha) };
    let t = (step as f64 / denom).clamp(0.0, 1.0);
    let alpha = anneal(t);
    swa_lr * alpha + prev_lr * (1.0 - alpha)
}

pub struct WeightAveraging {
    name: &'static str,
    avg_fn: AvgFn,
    /// Average the buffers too (else they follow the current model).
    use_buffers: bool,
    when: When,
    /// The module's tensors (parameters, then buffers), set at fit start.
    model: Vec<(String, Tensor)>,
    n_params: usize,
    /// The averaged copies, in the order of `model`.
    average: Vec<Tensor>,
    n_averaged: i64,
    latest_update_step: usize,
    latest_update_epoch: i64,
    /// The averaged weights are in the module (during validation).
    swapped: bool,
    /// SWA: the resolved start epoch, and how many SWALR steps were taken.
    swa_start: Option<usize>,
    swa_steps: i64,
}

impl WeightAveraging {
    /// Lightning's `WeightAveraging()`: an equal-weight average updated after every step.
    pub fn mean(use_buffers: bool) -> WeightAveraging {
        Self::new(
            "WeightAveraging",
            AvgFn::Mean,
            use_buffers,
            When::Steps { every_n_steps: 1, start_step: None, start_epoch: None },
        )
    }

    /// Lightning's `EMAWeightAveraging(decay, update_every_n_steps, update_starting_at_step,
    /// update_starting_at_epoch, use_buffers)`.
    pub fn ema(
        decay: f64,
        every_n_steps: usize,
        start_step: Option<usize>,
        start_epoch: Option<usize>,
        use_buffers: bool,
    ) -> Result<WeightAveraging, String> {
        if !(0.0..=1.0).contains(&decay) {
            return Err(format!("EMAWeightAveraging: decay must be in [0, 1], got {decay}"));
        }
        Ok(Self::new(
            "EMAWeightAveraging",
            AvgFn::Ema { decay },
            use_buffers,
            When::Steps { every_n_steps, start_step, start_epoch },
        ))
    }

    /// Lightning's `StochasticWeightAveraging(swa_lrs, swa_epoch_start, annealing_epochs,
    /// annealing_strategy)`: parameters only; batch norm is recomputed at the end.
    pub fn swa(s: SwaSchedule) -> Result<WeightAveraging, String> {
        if s.swa_lrs.is_empty() || s.swa_lrs.iter().any(|lr| !lr.is_finite() || *lr <= 0.0) {
            return Err(format!("StochasticWeightAveraging: swa_lrs must be positive numbers, got {:?}", s.swa_lrs));
        }
        match s.epoch_start {
            EpochStart::Fraction(f) if !(f > 0.0 && f <= 1.0) => {
                return Err(format!(
                    "StochasticWeightAveraging: swa_epoch_start as a fraction must be in (0, 1], got {f}"
                ));
            }
            _ => {}
        }
        if s.annealing_epochs < 0 {
            return Err(format!(
                "StochasticWeightAveraging: annealing_epochs must be >= 0, got {}",
                s.annealing_epochs
            ));
        }
        Ok(Self::new("StochasticWeightAveraging", AvgFn::Mean, false, When::Swa(s)))
    }

    fn new(name: &'static str, avg_fn: AvgFn, use_buffers: bool, when: When) -> WeightAveraging {
        WeightAveraging {
            name,
            avg_fn,
            use_buffers,
            when,
            model: Vec::new(),
            n_params: 0,
            average: Vec::new(),
            n_averaged: 0,
            latest_update_step: 0,
            latest_update_epoch: -1,
            swapped: false,
            swa_start: None,
            swa_steps: 0,
        }
    }

    fn is_swa(&self) -> bool {
        matches!(self.when, When::Swa(_))
    }

    /// Folds the current weights into the average (`AveragedModel.update_parameters`).
    fn update(&mut self) -> Result<(), String> {
        let _g = tch::no_grad_guard();
        let first = self.n_averaged == 0;
        for (i, ((_, cur), avg)) in self.model.iter().zip(&self.average).enumerate() {
            let averaged = i < self.n_params || self.use_buffers;
            let floating = crate::tensor::options::is_floating(cur.kind());
            let mut a = avg.shallow_clone();
            let r = if first || !averaged || !floating {
                a.f_copy_(cur)
            } else {
                match self.avg_fn {
                    // in place, with PyTorch's operation order (so the numbers are its own)
                    AvgFn::Mean => {
                        let d = cur.f_sub(&a).and_then(|d| d.f_div_scalar((self.n_averaged + 1) as f64));
                        d.and_then(|d| a.f_add_(&d)).map(|_| ())
                    }
                    AvgFn::Ema { decay } => {
                        let c = cur.f_mul_scalar(1.0 - decay);
                        c.and_then(|c| a.f_mul_scalar_(decay).and_then(|mut a| a.f_add_(&c))).map(|_| ())
                    }
                }
            };
            r.map_err(|e| format!("{}: cannot update the average: {e}", self.name))?;
        }
        self.n_averaged += 1;
        Ok(())
    }

    /// Exchanges the module's weights and the average.
    fn swap(&mut self) -> Result<(), String> {
        let _g = tch::no_grad_guard();
        for ((_, cur), avg) in self.model.iter().zip(&self.average) {
            let tmp = avg.f_detach_copy().map_err(|e| e.to_string())?;
            avg.shallow_clone().f_copy_(cur).map_err(|e| e.to_string())?;
            cur.shallow_clone().f_copy_(&tmp).map_err(|e| e.to_string())?;
        }
        self.swapped = !self.swapped;
        Ok(())
    }

    /// The module's own weights and the average, whichever of them is swapped in now.
    fn current_and_average(&self) -> (Vec<&Tensor>, Vec<&Tensor>) {
        let model: Vec<&Tensor> = self.model.iter().map(|(_, t)| t).collect();
        let avg: Vec<&Tensor> = self.average.iter().collect();
        if self.swapped {
            (avg, model)
        } else {
            (model, avg)
        }
    }

    fn should_update_step(&self, step_idx: usize) -> bool {
        match &self.when {
            When::Steps { every_n_steps, start_step, .. } => {
                start_step.is_none_or(|s| step_idx >= s)
                    && *every_n_steps > 0
                    && step_idx.is_multiple_of(*every_n_steps)
            }
            When::Swa(_) => false,
        }
    }

    fn should_update_epoch(&self, epoch: usize) -> bool {
        match &self.when {
            When::Steps { start_epoch, .. } => start_epoch.is_some_and(|s| epoch >= s),
            When::Swa(_) => self.swa_start.is_some_and(|s| epoch >= s),
        }
    }

    /// Resolves `swa_epoch_start` against `max_epochs` (once).
    fn resolve_swa_start(&mut self, state: &SharedState) -> Result<(), String> {
        let When::Swa(s) = &self.when else { return Ok(()) };
        if self.swa_start.is_some() {
            return Ok(());
        }
        let max_epochs = state.borrow().max_epochs.filter(|e| *e > 0);
        self.swa_start = Some(match s.epoch_start {
            EpochStart::Epoch(e) => e,
            EpochStart::Fraction(f) => {
                let me =
                    max_epochs.ok_or("StochasticWeightAveraging: a fractional swa_epoch_start needs max_epochs")?;
                ((me as f64 * f) as usize).min(me as usize - 1)
            }
        });
        Ok(())
    }

    /// SWALR's next learning rates for optimizer 0, from its current ones.
    fn swa_lrs(&self, state: &SharedState) -> Result<Vec<f64>, String> {
        let When::Swa(s) = &self.when else { return Ok(vec![]) };
        let st = state.borrow();
        let current =
            st.optimizer_lrs.first().map(|o| o.lrs.clone()).ok_or("StochasticWeightAveraging needs an optimizer")?;
        let swa: Vec<f64> = match s.swa_lrs.len() {
            1 => vec![s.swa_lrs[0]; current.len()],
            n if n == current.len() => s.swa_lrs.clone(),
            n => {
                return Err(format!(
                    "StochasticWeightAveraging: {n} swa_lrs given for an optimizer with {} parameter groups",
                    current.len()
                ))
            }
        };
        Ok(current
            .iter()
            .zip(&swa)
            .map(|(lr, swa_lr)| swalr_step(*lr, *swa_lr, self.swa_steps, s.annealing_epochs, s.cosine))
            .collect())
    }
}

impl Callback for WeightAveraging {
    fn state_key(&self) -> String {
        self.name.to_string()
    }

    fn wants_weights(&self) -> bool {
        true
    }

    fn set_weights(&mut self, w: ModelWeights) -> Result<(), String> {
        self.n_params = w.parameters.len();
        self.model = w.parameters.into_iter().chain(w.buffers).collect();
        let _g = tch::no_grad_guard();
        self.average =
            self.model.iter().map(|(_, t)| t.f_detach_copy()).collect::<Result<_, _>>().map_err(|e| e.to_string())?;
        self.n_averaged = 0;
        self.swapped = false;
        Ok(())
    }

    fn on_hook(&mut self, hook: &str, state: &SharedState) -> Result<Vec<Action>, String> {
        let mut actions = Vec::new();
        match hook {
            "on_train_start" => {
                self.resolve_swa_start(state)?;
                let n_opt = state.borrow().optimizer_lrs.len();
                if self.is_swa() && n_opt != 1 {
                    return Err(format!(
                        "StochasticWeightAveraging works with one optimizer; configure_optimizers returned {n_opt}"
                    ));
                }
                // resumed after SWA began: it owns the learning rate again
                if self.is_swa() && self.swa_steps > 0 {
                    actions.push(Action::SuspendSchedulers(
                        "StochasticWeightAveraging: the LR schedulers stay swapped for SWALR".into(),
                    ));
                }
            }
            "on_train_epoch_start" => {
                let epoch = state.borrow().progress.current_epoch;
                if self.is_swa() && self.swa_start.is_some_and(|s| epoch >= s) && self.swa_steps == 0 {
                    // SWALR's construction: its first step leaves the learning rate as it is
                    self.swa_steps = 1;
                    actions.push(Action::SuspendSchedulers(
                        "StochasticWeightAveraging: swapping the LR schedulers for SWALR".into(),
                    ));
                }
            }
            "on_train_batch_end" => {
                let gs = state.borrow().progress.global_step;
                if gs > self.latest_update_step && gs > 0 && self.should_update_step(gs - 1) {
                    self.update()?;
                    self.latest_update_step = gs;
                }
            }
            "on_train_epoch_end" => {
                let epoch = state.borrow().progress.current_epoch;
                if epoch as i64 > self.latest_update_epoch && self.should_update_epoch(epoch) {
                    self.update()?;
                    self.latest_update_epoch = epoch as i64;
                }
                if self.is_swa() && self.swa_steps > 0 {
                    // SWALR steps at each epoch end
                    let lrs = self.swa_lrs(state)?;
                    self.swa_steps += 1;
                    actions.push(Action::SetLr(lrs));
                }
            }
            "on_validation_epoch_start" if !self.is_swa() && self.n_averaged > 0 && !self.swapped => self.swap()?,
            "on_validation_epoch_end" if self.swapped => self.swap()?,
            "on_train_end" if self.n_averaged > 0 => {
                if self.swapped {
                    self.swap()?;
                }
                let _g = tch::no_grad_guard();
                for (i, ((_, cur), avg)) in self.model.iter().zip(&self.average).enumerate() {
                    if i < self.n_params || self.use_buffers {
                        cur.shallow_clone().f_copy_(avg).map_err(|e| e.to_string())?;
                    }
                }
                if self.is_swa() {
                    // batch-norm statistics for the averaged weights (a no-op without batch norm),
                    // and, since the fit's checkpoints hold the trained weights, the final model
                    actions.push(Action::UpdateBatchNorm);
                    actions.push(Action::SaveFinalWeights("swa.ckpt".into()));
                }
            }
            _ => {}
        }
        Ok(actions)
    }

    fn state_dict(&self) -> Value {
        json!({
            "n_averaged": self.n_averaged,
            "latest_update_step": self.latest_update_step,
            "latest_update_epoch": self.latest_update_epoch,
            "swa_steps": self.swa_steps,
        })
    }

    fn load_state_dict(&mut self, state: &Value) -> Result<(), String> {
        let s = crate::callbacks::state::State::new(
            state,
            &["n_averaged", "latest_update_step", "latest_update_epoch", "swa_steps"],
        )?;
        let n_averaged = s.int("n_averaged", 0)?;
        let latest_update_step = s.int("latest_update_step", 0)? as usize;
        let latest_update_epoch = s.int("latest_update_epoch", -1)?;
        let swa_steps = s.int("swa_steps", 0)?;
        self.n_averaged = n_averaged;
        self.latest_update_step = latest_update_step;
        self.latest_update_epoch = latest_update_epoch;
        self.swa_steps = swa_steps;
        Ok(())
    }

    /// SWA keeps the average beside the weights (`average.<name>`); the others store the average
    /// as the checkpoint's weights and keep the module's own here (`current.<name>`), as
    /// Lightning's `current_model_state`.
    fn state_tensors(&self) -> Result<Vec<(String, Tensor)>, String> {
        if self.n_averaged == 0 {
            return Ok(Vec::new());
        }
        let (cur, avg) = self.current_and_average();
        let (prefix, src) = if self.is_swa() { ("average", avg) } else { ("current", cur) };
        Ok(self.model.iter().zip(src).map(|((n, _), t)| (format!("{prefix}.{n}"), t.shallow_clone())).collect())
    }

    fn checkpoint_weights(&self) -> Result<Option<Vec<(String, Tensor)>>, String> {
        if self.is_swa() || self.n_averaged == 0 {
            return Ok(None);
        }
        let (cur, avg) = self.current_and_average();
        let out = self
            .model
            .iter()
            .enumerate()
            .map(|(i, (n, _))| {
                (n.clone(), if i < self.n_params || self.use_buffers { avg[i] } else { cur[i] }.shallow_clone())
            })
            .collect();
        Ok(Some(out))
    }

    fn load_state_tensors(&mut self, tensors: &[(String, Tensor)]) -> Result<(), String> {
        if self.n_averaged == 0 {
            return Ok(());
        }
        let (prefix, missing) = if self.is_swa() { ("average", "averaged") } else { ("current", "current") };
        let find = |name: &str| {
            tensors
                .iter()
                .find(|(k, _)| k.strip_prefix(prefix).and_then(|k| k.strip_prefix('.')) == Some(name))
                .map(|(_, t)| t)
        };
        let _g = tch::no_grad_guard();
        for (i, (name, cur)) in self.model.iter().enumerate() {
            let saved = find(name)
                .ok_or_else(|| format!("{}: the checkpoint lacks the {missing} value of '{name}'", self.name))?;
            if saved.size() != cur.size() {
                return Err(format!(
                    "{}: '{name}' has shape {:?} in the checkpoint, {:?} in the model",
                    self.name,
                    saved.size(),
                    cur.size()
                ));
            }
            let avg = self.average[i].shallow_clone();
            if self.is_swa() {
                avg.shallow_clone().f_copy_(saved).map_err(|e| e.to_string())?;
            } else {
                // the module was loaded with the average; move it here and put the weights back
                avg.shallow_clone().f_copy_(cur).map_err(|e| e.to_string())?;
                cur.shallow_clone().f_copy_(saved).map_err(|e| e.to_string())?;
            }
        }
        Ok(())
    }
}

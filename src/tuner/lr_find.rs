//! Lightning's learning-rate finder (`Tuner.lr_find`). It fits the module for `num_training`
//! optimizer steps with the learning rate of every optimizer group ramped from `min_lr` to `max_lr`
//! (exponentially or linearly; set through [`Action::SetLr`] before each step, so whatever
//! scheduler the script configured is overridden), records the exponentially smoothed loss
//! (β = 0.98, with Lightning's bias correction), stops early when the smoothed loss exceeds
//! `early_stop_threshold` × the best so far, and suggests the learning rate at the steepest
//! descent of the smoothed loss (`torch.gradient` over the LRs, skipping the first 10 and last
//! point). No validation, loggers, checkpoints or other callbacks run, and the module's initial
//! weights are restored afterwards.
use crate::trainer::callback::{Action, Callback};
use crate::trainer::config::Limit;
use crate::trainer::module::LightningModule;
use crate::trainer::state::SharedState;
use crate::trainer::Trainer;
use std::cell::RefCell;
use std::rc::Rc;

/// How the LR grows from `min_lr` to `max_lr`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RampMode {
    Exponential,
    Linear,
}

impl RampMode {
    pub fn parse(s: &str) -> Result<RampMode, String> {
        match s {
            "exponential" => Ok(RampMode::Exponential),
            "linear" => Ok(RampMode::Linear),
            o => Err(format!("--mode must be \"exponential\" or \"linear\", got \"{o}\"")),
        }
    }
}

#[derive(Debug, Clone)]
pub struct LrFindConfig {
    pub min_lr: f64,
    pub max_lr: f64,
    pub num_training: usize,
    pub mode: RampMode,
    /// Stop when the smoothed loss exceeds this × the best smoothed loss (None: never).
    pub early_stop_threshold: Option<f64>,
}

impl Default for LrFindConfig {
    fn default() -> Self {
        LrFindConfig {
            min_lr: 1e-8,
            max_lr: 1.0,
            num_training: 100,
            mode: RampMode::Exponential,
            early_stop_threshold: Some(4.0),
        }
    }
}

impl LrFindConfig {
    fn check(&self) -> Result<(), String> {
        if !(self.min_lr > 0.0 && self.max_lr > self.min_lr && self.max_lr.is_finite()) {
            return Err(format!(
                "lr-find needs 0 < min_lr < max_lr, got min_lr {} and max_lr {}",
                self.min_lr, self.max_lr
            ));
        }
        if self.num_training < 2 {
            return Err("lr-find needs num_training >= 2".into());
        }
        Ok(())
    }

    /// The LR of step `k` (0-based), as Lightning's `_ExponentialLR` / `_LinearLR`.
    pub fn lr_at(&self, k: usize) -> f64 {
        let r = k as f64 / self.num_training as f64;
        match self.mode {
            RampMode::Exponential => self.min_lr * (self.max_lr / self.min_lr).powf(r),
            RampMode::Linear => self.min_lr + r * (self.max_lr - self.min_lr),
        }
    }
}

/// What the finder recorded and suggests.
#[derive(Debug, Clone, Default)]
pub struct LrFindResult {
    pub lrs: Vec<f64>,
    /// Smoothed losses, one per optimizer step.
    pub losses: Vec<f64>,
    /// Index of the suggestion in `lrs`.
    pub optimal_idx: Option<usize>,
    /// Whether the loss diverged before `num_training` steps.
    pub stopped_early: bool,
}

impl LrFindResult {
    /// The suggested LR: steepest negative gradient of the smoothed loss.
    pub fn suggestion(&self) -> Option<f64> {
        self.optimal_idx.and_then(|i| self.lrs.get(i).copied())
    }
}

/// `numpy.gradient(y, x)`: second-order central differences inside (non-uniform spacing), first
/// order at the ends.
pub fn gradient(y: &[f64], x: &[f64]) -> Vec<f64> {
    let n = y.len();
    if n < 2 {
        return vec![0.0; n];
    }
    let mut g = vec![0.0; n];
    g[0] = (y[1] - y[0]) / (x[1] - x[0]);
    g[n - 1] = (y[n - 1] - y[n - 2]) / (x[n - 1] - x[n - 2]);
    for i in 1..n - 1 {
        let (hs, hd) = (x[i] - x[i - 1], x[i + 1] - x[i]);
        g[i] = (hs * hs * y[i + 1] + (hd * hd - hs * hs) * y[i] - hd * hd * y[i - 1]) / (hs * hd * (hd + hs));
    }
    g
}

/// Lightning's `_LRFinder.suggestion(skip_begin=10, skip_end=1)`: the index of the most negative
/// gradient among finite losses, or None with fewer than two.
pub fn suggest(lrs: &[f64], losses: &[f64], skip_begin: usize, skip_end: usize) -> Option<usize> {
    let end = losses.len().checked_sub(skip_end)?;
    if end <= skip_begin {
        return None;
    }
    let idx: Vec<usize> = (skip_begin..end).filter(|&i| losses[i].is_finite()).collect();
    if idx.len() < 2 {
        return None;
    }
    let y: Vec<f64> = idx.iter().map(|&i| losses[i]).collect();
    let x: Vec<f64> = idx.iter().map(|&i| lrs[i]).collect();
    let g = gradient(&y, &x);
    let best = g.iter().enumerate().filter(|(_, v)| v.is_finite()).min_by(|a, b| a.1.total_cmp(b.1))?.0;
    Some(idx[best])
}

/// The callback that ramps the LR and records losses (Lightning's `_LRCallback`).
struct LrCallback {
    cfg: LrFindConfig,
    out: Rc<RefCell<LrFindResult>>,
    start_step: usize,
    avg_loss: f64,
    best_loss: f64,
    current_lr: f64,
}

const BETA: f64 = 0.98;

impl Callback for LrCallback {
    fn state_key(&self) -> String {
        "LRFinder".into()
    }
    fn on_hook(&mut self, hook: &str, state: &SharedState) -> Result<Vec<Action>, String> {
        match hook {
            "on_train_start" => {
                self.start_step = state.borrow().progress.global_step;
                Ok(vec![])
            }
            "on_train_batch_start" => {
                let k = state.borrow().progress.global_step - self.start_step;
                self.current_lr = self.cfg.lr_at(k);
                Ok(vec![Action::SetLr(vec![self.current_lr])])
            }
            "on_train_batch_end" => {
                let (step, loss) = {
                    let s = state.borrow();
                    (
                        s.progress.global_step - self.start_step,
                        s.last_loss.as_ref().map(|t| f64::try_from(t).map_err(|e| e.to_string())),
                    )
                };
                let mut out = self.out.borrow_mut();
                // record once per optimizer step (the end of an accumulation window)
                if step == 0 || step == out.losses.len() {
                    return Ok(vec![]);
                }
                let Some(loss) = loss else {
                    return Err("lr-find needs training_step to return the loss (automatic optimization)".into());
                };
                let loss = loss?;
                self.avg_loss = BETA * self.avg_loss + (1.0 - BETA) * loss;
                let smoothed = self.avg_loss / (1.0 - BETA.powi(step as i32 + 1));
                out.lrs.push(self.current_lr);
                out.losses.push(smoothed);
                if let Some(t) = self.cfg.early_stop_threshold {
                    if step > 1 && (smoothed > t * self.best_loss || !smoothed.is_finite()) {
                        out.stopped_early = true;
                        return Ok(vec![
                            Action::Stop,
                            Action::Info {
                                message: format!("LR finder stopped early after {step} steps due to diverging loss."),
                                rank_zero_only: true,
                            },
                        ]);
                    }
                }
                if smoothed < self.best_loss || step == 1 {
                    self.best_loss = smoothed;
                }
                Ok(vec![])
            }
            _ => Ok(vec![]),
        }
    }
}

/// Runs the finder on `trainer` (configured from the script; its callbacks and loggers are set
/// aside for the run) and restores the module's initial weights.
pub fn lr_find<M: LightningModule>(
    trainer: &mut Trainer,
    m: &mut M,
    cfg: &LrFindConfig,
) -> Result<LrFindResult, String> {
    cfg.check()?;
    if !m.automatic_optimization() {
        return Err("lr-find needs automatic optimization (training_step returning the loss)".into());
    }
    // the initial weights, deep-copied
    let initial: Vec<(String, tch::Tensor)> = m.state_dict()?.into_iter().map(|(k, t)| (k, t.copy())).collect();
    let out = Rc::new(RefCell::new(LrFindResult::default()));
    let saved_callbacks = std::mem::take(&mut trainer.callbacks);
    let saved_loggers = trainer.loggers.take();
    let saved_config = trainer.config.clone();
    trainer.callbacks.push(Box::new(LrCallback {
        cfg: cfg.clone(),
        out: out.clone(),
        start_step: 0,
        avg_loss: 0.0,
        best_loss: f64::INFINITY,
        current_lr: cfg.min_lr,
    }));
    trainer.config.max_steps = cfg.num_training as i64;
    trainer.config.max_epochs = None;
    trainer.config.max_time = None;
    trainer.config.limit_val_batches = Limit::Count(0);
    trainer.config.num_sanity_val_steps = 0;
    trainer.config.enable_checkpointing = false;
    trainer.config.logger = false;
    let r = trainer.fit(m);
    trainer.callbacks = saved_callbacks;
    trainer.loggers.extend(saved_loggers);
    trainer.config = saved_config;
    let restore = m.load_state_dict(&initial, true);
    r?;
    restore?;
    let mut res = out.borrow().clone();
    res.optimal_idx = suggest(&res.lrs, &res.losses, 10, 1);
    Ok(res)
}

/// A chart of the smoothed loss against log10(lr), with the suggestion marked.
pub fn plot(res: &LrFindResult) -> crate::plot::Panel {
    let pts = res.lrs.iter().zip(&res.losses).map(|(lr, l)| (lr.log10(), *l)).collect();
    crate::plot::Panel {
        title: "LR finder".into(),
        x_label: "log10(learning rate)".into(),
        y_label: "smoothed loss".into(),
        log_y: false,
        series: vec![("smoothed loss".into(), pts)],
        marker: res.optimal_idx.map(|i| (res.lrs[i].log10(), res.losses[i], format!("suggestion {:.3e}", res.lrs[i]))),
    }
}

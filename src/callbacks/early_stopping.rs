//! EarlyStopping, as Lightning defines it: stop when the monitored metric has not improved by
//! `min_delta` for `patience` checks, is not finite, reached `stopping_threshold`, or crossed
//! `divergence_threshold`. The reason is printed.
use super::Mode;
use crate::trainer::callback::{Action, Callback, SetupInfo};
use crate::trainer::state::{RunningStage, SharedState};
use serde_json::{json, Value};

#[derive(Debug, Clone)]
pub struct EarlyStoppingConfig {
    pub monitor: String,
    pub min_delta: f64,
    pub patience: i64,
    pub mode: Mode,
    pub strict: bool,
    pub check_finite: bool,
    pub stopping_threshold: Option<f64>,
    pub divergence_threshold: Option<f64>,
    pub check_on_train_epoch_end: Option<bool>,
    /// Print each improvement and the stopping reason (Lightning's `verbose`).
    pub verbose: bool,
    /// Under DDP, only rank 0 prints (else every rank, prefixed `[rank: N]`).
    pub log_rank_zero_only: bool,
}

impl EarlyStoppingConfig {
    pub fn new(monitor: &str) -> Self {
        EarlyStoppingConfig {
            monitor: monitor.to_string(),
            min_delta: 0.0,
            patience: 3,
            mode: Mode::Min,
            strict: true,
            check_finite: true,
            stopping_threshold: None,
            divergence_threshold: None,
            check_on_train_epoch_end: None,
            verbose: false,
            log_rank_zero_only: false,
        }
    }
}

pub struct EarlyStopping {
    pub cfg: EarlyStoppingConfig,
    pub wait_count: i64,
    pub best_score: f64,
    pub stopped_epoch: Option<usize>,
    pub stopping_reason: Option<String>,
    on_train_epoch_end: bool,
}

impl EarlyStopping {
    pub fn new(cfg: EarlyStoppingConfig) -> Result<EarlyStopping, String> {
        if cfg.patience < 0 {
            return Err(format!("EarlyStopping: patience must be >= 0, got {}", cfg.patience));
        }
        let best = cfg.mode.worst();
        Ok(EarlyStopping {
            cfg,
            wait_count: 0,
            best_score: best,
            stopped_epoch: None,
            stopping_reason: None,
            on_train_epoch_end: false,
        })
    }

    /// Lightning's `_evaluate_stopping_criteria`, in float32 as Lightning compares tensors (so
    /// 0.95 + 0.05 is not below 1.0): whether to stop, and the message (an improvement or the
    /// reason to stop).
    pub fn evaluate(&mut self, current: f64) -> (bool, Option<String>) {
        let m = &self.cfg.monitor;
        let cur = current as f32;
        let better = |a: f32, b: f32| match self.cfg.mode {
            Mode::Min => a < b,
            Mode::Max => a > b,
        };
        let op = if self.cfg.mode == Mode::Min { "<" } else { ">" };
        if self.cfg.check_finite && !cur.is_finite() {
            return (
                true,
                Some(format!(
                    "Monitored metric {m} = {current} is not finite. Previous best value was {:.3}. Signaling Trainer to stop.",
                    self.best_score
                )),
            );
        }
        if let Some(t) = self.cfg.stopping_threshold.filter(|t| better(cur, *t as f32)) {
            return (
                true,
                Some(format!("Stopping threshold reached: {m} = {current} {op} {t:?}. Signaling Trainer to stop.")),
            );
        }
        if let Some(t) = self.cfg.divergence_threshold.filter(|t| better(-cur, -(*t as f32))) {
            let op = if self.cfg.mode == Mode::Min { ">" } else { "<" };
            return (
                true,
                Some(format!("Divergence threshold reached: {m} = {current} {op} {t:?}. Signaling Trainer to stop.")),
            );
        }
        // min_delta counts against the metric: subtracted for "max", added for "min"
        let delta = match self.cfg.mode {
            Mode::Max => self.cfg.min_delta.abs() as f32,
            Mode::Min => -(self.cfg.min_delta.abs() as f32),
        };
        let best = self.best_score as f32;
        if better(cur - delta, best) {
            let msg = if best.is_finite() {
                format!(
                    "Metric {m} improved by {:.3} >= min_delta = {:?}. New best score: {current:.3}",
                    (best - cur).abs(),
                    self.cfg.min_delta.abs()
                )
            } else {
                format!("Metric {m} improved. New best score: {current:.3}")
            };
            self.best_score = cur as f64;
            self.wait_count = 0;
            (false, Some(msg))
        } else {
            self.wait_count += 1;
            if self.wait_count >= self.cfg.patience {
                (
                    true,
                    Some(format!(
                        "Monitored metric {m} did not improve in the last {} records. Best score: {:.3}. Signaling Trainer to stop.",
                        self.wait_count, self.best_score
                    )),
                )
            } else {
                (false, None)
            }
        }
    }

    fn check(&mut self, state: &SharedState) -> Result<Vec<Action>, String> {
        let (current, epoch, keys) = {
            let mut s = state.borrow_mut();
            let epoch = s.progress.current_epoch;
            let metrics = s.callback_metrics()?;
            (metrics.get(&self.cfg.monitor).copied(), epoch, metrics.keys().cloned().collect::<Vec<_>>())
        };
        let Some(current) = current else {
            if self.cfg.strict {
                return Err(format!(
                    "Early stopping conditioned on metric `{}` which is not available. Pass in or modify your `EarlyStopping` callback to use any of the following: `{}`",
                    self.cfg.monitor,
                    keys.join("`, `")
                ));
            }
            return Ok(vec![]);
        };
        let (stop, message) = self.evaluate(current);
        let mut actions = Vec::new();
        if stop {
            self.stopped_epoch = Some(epoch);
            self.stopping_reason = message.clone();
            actions.push(Action::Stop);
        }
        if let (Some(message), true) = (message, self.cfg.verbose) {
            actions.push(Action::Info { message, rank_zero_only: self.cfg.log_rank_zero_only });
        }
        Ok(actions)
    }
}

impl Callback for EarlyStopping {
    fn state_key(&self) -> String {
        format!(
            "EarlyStopping{{\"monitor\": \"{}\", \"mode\": \"{}\"}}",
            self.cfg.monitor,
            if self.cfg.mode == Mode::Min { "min" } else { "max" }
        )
    }
    fn monitoring(&self) -> bool {
        true
    }
    fn setup(&mut self, info: &SetupInfo) -> Result<(), String> {
        self.on_train_epoch_end = self
            .cfg
            .check_on_train_epoch_end
            .unwrap_or(info.val_every_epoch_end && info.check_val_every_n_epoch == Some(1));
        Ok(())
    }
    fn on_hook(&mut self, hook: &str, state: &SharedState) -> Result<Vec<Action>, String> {
        let stage = state.borrow().stage;
        match hook {
            "on_train_epoch_end" if self.on_train_epoch_end => self.check(state),
            "on_validation_end" if !self.on_train_epoch_end && stage == RunningStage::Validating => self.check(state),
            _ => Ok(vec![]),
        }
    }
    fn state_dict(&self) -> Value {
        json!({"wait_count": self.wait_count, "stopped_epoch": self.stopped_epoch, "best_score": if self.best_score.is_finite() { json!(self.best_score) } else { Value::Null }, "patience": self.cfg.patience})
    }
    fn load_state_dict(&mut self, s: &Value) -> Result<(), String> {
        let s = super::state::State::new(s, &["wait_count", "stopped_epoch", "best_score", "patience"])?;
        // patience stays this run's setting (the saved one is checked, not restored)
        s.int("patience", i64::MIN)?;
        let wait_count = s.int("wait_count", 0)?;
        let stopped_epoch = s.opt_index("stopped_epoch")?;
        // null: no finite best yet
        let best_score = s.opt_f64("best_score")?.unwrap_or(self.cfg.mode.worst());
        (self.wait_count, self.stopped_epoch, self.best_score) = (wait_count, stopped_epoch, best_score);
        Ok(())
    }
}

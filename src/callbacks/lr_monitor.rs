//! LearningRateMonitor: logs each optimizer's learning rates (`lr-Adam`, `lr-Adam/pg1`, …) and
//! optionally momenta (`lr-Adam-momentum`) and weight decays (`lr-Adam-weight_decay`), every step
//! or every epoch, under Lightning's names.
use crate::trainer::callback::{Action, Callback};
use crate::trainer::state::SharedState;
use std::collections::BTreeMap;

pub struct LearningRateMonitor {
    /// None = at each optimizer step interval ("step"); "epoch" logs at epoch starts.
    pub logging_interval: Option<String>,
    pub log_momentum: bool,
    pub log_weight_decay: bool,
}

impl LearningRateMonitor {
    pub fn new(logging_interval: Option<String>, log_momentum: bool, log_weight_decay: bool) -> Result<Self, String> {
        if let Some(i) = &logging_interval {
            if i != "step" && i != "epoch" {
                return Err(format!(
                    "LearningRateMonitor: logging_interval must be \"step\", \"epoch\" or none, got \"{i}\""
                ));
            }
        }
        Ok(LearningRateMonitor { logging_interval, log_momentum, log_weight_decay })
    }

    /// Lightning's key names: `lr-Name`, `lr-Name/pgN` for several groups, `-1` suffix for repeats.
    pub fn metrics(&self, lrs: &[crate::trainer::state::OptimizerLrs]) -> BTreeMap<String, f64> {
        let mut out = BTreeMap::new();
        let mut seen: BTreeMap<String, usize> = BTreeMap::new();
        for o in lrs {
            let n = seen.entry(o.name.clone()).or_insert(0);
            let base = if *n == 0 { format!("lr-{}", o.name) } else { format!("lr-{}-{n}", o.name) };
            *n += 1;
            for (i, lr) in o.lrs.iter().enumerate() {
                let key = if o.lrs.len() > 1 { format!("{base}/pg{}", i + 1) } else { base.clone() };
                out.insert(key.clone(), *lr);
                if self.log_momentum {
                    out.insert(format!("{key}-momentum"), o.momenta.get(i).copied().unwrap_or(0.0));
                }
                if self.log_weight_decay {
                    out.insert(format!("{key}-weight_decay"), o.weight_decays.get(i).copied().unwrap_or(0.0));
                }
            }
        }
        out
    }
}

impl Callback for LearningRateMonitor {
    fn state_key(&self) -> String {
        "LearningRateMonitor".into()
    }
    fn on_hook(&mut self, hook: &str, state: &SharedState) -> Result<Vec<Action>, String> {
        let want = matches!(
            (self.logging_interval.as_deref(), hook),
            (Some("epoch"), "on_train_epoch_start") | (Some("step") | None, "on_train_batch_start")
        );
        if !want {
            return Ok(vec![]);
        }
        let m = self.metrics(&state.borrow().optimizer_lrs);
        if m.is_empty() {
            return Ok(vec![]);
        }
        Ok(vec![Action::Log(m)])
    }
}

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

    /// Lightning's key names: the scheduler's `name` or `lr-Name`, `/pgN` for several groups, a
    /// `-1` suffix for repeats; only the optimizers `log` picks (the names count all of them).
    pub fn metrics(
        &self,
        lrs: &[crate::trainer::state::OptimizerLrs],
        log: &dyn Fn(&crate::trainer::state::OptimizerLrs) -> bool,
    ) -> BTreeMap<String, f64> {
        let mut out = BTreeMap::new();
        let mut seen: BTreeMap<String, usize> = BTreeMap::new();
        for o in lrs {
            let named = o.scheduler.as_ref().and_then(|(_, n)| n.clone()).unwrap_or_else(|| format!("lr-{}", o.name));
            let n = seen.entry(named.clone()).or_insert(0);
            let base = if *n == 0 { named } else { format!("{named}-{n}") };
            *n += 1;
            if !log(o) {
                continue;
            }
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
    /// As Lightning's: at a training batch's start when logging is due (`log_every_n_steps`) and at
    /// an epoch's start. With `logging_interval` unset, an optimizer with a scheduler is logged at
    /// its scheduler's interval and one without at both; "step" / "epoch" log every optimizer at
    /// that point only.
    fn on_hook(&mut self, hook: &str, state: &SharedState) -> Result<Vec<Action>, String> {
        use crate::trainer::module::Interval;
        let at = match hook {
            "on_train_batch_start" if state.borrow().log_due => Interval::Step,
            "on_train_epoch_start" => Interval::Epoch,
            _ => return Ok(vec![]),
        };
        let every = match self.logging_interval.as_deref() {
            None => false,
            Some("step") if at == Interval::Step => true,
            Some("epoch") if at == Interval::Epoch => true,
            Some(_) => return Ok(vec![]),
        };
        let log = |o: &crate::trainer::state::OptimizerLrs| every || o.scheduler.as_ref().is_none_or(|(i, _)| *i == at);
        let m = self.metrics(&state.borrow().optimizer_lrs, &log);
        if m.is_empty() {
            return Ok(vec![]);
        }
        Ok(vec![Action::Log(m)])
    }
}

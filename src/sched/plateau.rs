//! ReduceLROnPlateau: multiply the learning rates by `factor` when a monitored metric stops
//! improving for `patience` steps (with threshold, cooldown, per-group min_lr and eps).
use super::{group_vals, set_group_val};
use crate::optim::{HValue, Optimizer};
use serde_json::{json, Value};

pub struct Plateau {
    pub mode_max: bool,
    pub factor: f64,
    pub patience: i64,
    pub threshold: f64,
    pub threshold_abs: bool,
    pub cooldown: i64,
    pub min_lrs: Vec<f64>,
    /// set when min_lr was one number (then it follows the group count)
    pub default_min_lr: Option<f64>,
    pub eps: f64,
    pub best: f64,
    pub num_bad_epochs: i64,
    pub cooldown_counter: i64,
}

impl Plateau {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        opt: &Optimizer,
        mode: &str,
        factor: f64,
        patience: i64,
        threshold: f64,
        threshold_mode: &str,
        cooldown: i64,
        min_lr: Vec<f64>,
        min_lr_is_list: bool,
        eps: f64,
    ) -> Result<Plateau, String> {
        if factor >= 1.0 {
            return Err("Factor should be < 1.0.".into());
        }
        let mode_max = match mode {
            "min" => false,
            "max" => true,
            m => return Err(format!("mode {m} is unknown! (use \"min\" or \"max\")")),
        };
        let threshold_abs = match threshold_mode {
            "rel" => false,
            "abs" => true,
            m => return Err(format!("threshold mode {m} is unknown! (use \"rel\" or \"abs\")")),
        };
        let n = opt.num_groups();
        let (min_lrs, default_min_lr) = if min_lr_is_list {
            if min_lr.len() != n {
                return Err(format!("expected {n} min_lrs, got {}", min_lr.len()));
            }
            (min_lr, None)
        } else {
            let v = min_lr.first().copied().unwrap_or(0.0);
            (vec![v; n], Some(v))
        };
        Ok(Plateau {
            mode_max,
            factor,
            patience,
            threshold,
            threshold_abs,
            cooldown,
            min_lrs,
            default_min_lr,
            eps,
            best: if mode_max { f64::NEG_INFINITY } else { f64::INFINITY },
            num_bad_epochs: 0,
            cooldown_counter: 0,
        })
    }

    fn is_better(&self, a: f64, best: f64) -> bool {
        match (self.mode_max, self.threshold_abs) {
            (false, false) => a < best * (1.0 - self.threshold),
            (false, true) => a < best - self.threshold,
            (true, false) => a > best * (self.threshold + 1.0),
            (true, true) => a > best + self.threshold,
        }
    }

    pub fn step(&mut self, opt: &Optimizer, current: f64) -> Result<(), String> {
        if self.is_better(current, self.best) {
            self.best = current;
            self.num_bad_epochs = 0;
        } else {
            self.num_bad_epochs += 1;
        }
        if self.cooldown_counter > 0 {
            self.cooldown_counter -= 1;
            self.num_bad_epochs = 0;
        }
        if self.num_bad_epochs > self.patience {
            self.reduce_lr(opt)?;
            self.cooldown_counter = self.cooldown;
            self.num_bad_epochs = 0;
        }
        Ok(())
    }

    fn reduce_lr(&mut self, opt: &Optimizer) -> Result<(), String> {
        let lrs = group_vals(opt, "lr")?;
        if lrs.len() != self.min_lrs.len() {
            match self.default_min_lr {
                Some(v) => self.min_lrs = vec![v; lrs.len()],
                None => {
                    return Err(format!(
                        "The number of param groups in the optimizer ({}) differs from when ReduceLROnPlateau was initialized ({})",
                        lrs.len(),
                        self.min_lrs.len()
                    ))
                }
            }
        }
        for (i, old) in lrs.iter().enumerate() {
            let new = (old * self.factor).max(self.min_lrs[i]);
            if old - new > self.eps {
                set_group_val(opt, i, "lr", HValue::Num(new))?;
            }
        }
        Ok(())
    }

    pub fn state(&self) -> Value {
        // JSON has no infinity: an untouched `best` is stored as null
        json!({
            "mode": if self.mode_max { "max" } else { "min" },
            "factor": self.factor, "patience": self.patience, "threshold": self.threshold,
            "threshold_mode": if self.threshold_abs { "abs" } else { "rel" },
            "cooldown": self.cooldown, "min_lrs": self.min_lrs, "default_min_lr": self.default_min_lr,
            "eps": self.eps,
            "best": if self.best.is_finite() { json!(self.best) } else { Value::Null },
            "num_bad_epochs": self.num_bad_epochs, "cooldown_counter": self.cooldown_counter,
        })
    }

    pub fn load(&mut self, v: &Value) -> Result<(), String> {
        let int = |k: &str| v.get(k).and_then(Value::as_i64).ok_or_else(|| format!("bad or missing '{k}'"));
        self.best = match v.get("best") {
            Some(Value::Null) | None => {
                if self.mode_max {
                    f64::NEG_INFINITY
                } else {
                    f64::INFINITY
                }
            }
            Some(b) => b.as_f64().ok_or("bad 'best'")?,
        };
        self.num_bad_epochs = int("num_bad_epochs")?;
        self.cooldown_counter = int("cooldown_counter")?;
        if let Some(m) = v.get("min_lrs") {
            self.min_lrs = serde_json::from_value(m.clone()).map_err(|_| "bad 'min_lrs'")?;
        }
        Ok(())
    }
}

//! The cyclical schedules: OneCycleLR (cos/linear annealing, two or three phases) and CyclicLR
//! (triangular, triangular2, exp_range), both optionally cycling momentum (or Adam's beta1)
//! inversely to the learning rate.
use super::{group_vals, per_group, set_group_val, Kind, SchedulerCore};
use crate::optim::{HValue, Optimizer};

pub struct Phase {
    pub end_step: f64,
    pub start_lr: &'static str,
    pub end_lr: &'static str,
    pub start_momentum: &'static str,
    pub end_momentum: &'static str,
}

pub struct OneCycle {
    pub total_steps: i64,
    pub phases: Vec<Phase>,
    pub anneal_cos: bool,
    pub cycle_momentum: bool,
    pub use_beta1: bool,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum CyclicMode {
    Triangular,
    Triangular2,
    ExpRange,
}

pub struct Cyclic {
    pub max_lrs: Vec<f64>,
    pub total_size: f64,
    pub step_ratio: f64,
    pub mode: CyclicMode,
    pub gamma: f64,
    pub cycle_momentum: bool,
    pub use_beta1: bool,
    pub base_momentums: Vec<f64>,
    pub max_momentums: Vec<f64>,
}

/// Options of OneCycleLR (PyTorch's keywords).
pub struct OneCycleOptions {
    pub max_lr: Vec<f64>,
    pub total_steps: i64,
    pub pct_start: f64,
    pub anneal_cos: bool,
    pub cycle_momentum: bool,
    pub base_momentum: Vec<f64>,
    pub max_momentum: Vec<f64>,
    pub div_factor: f64,
    pub final_div_factor: f64,
    pub three_phase: bool,
}

/// Options of CyclicLR (PyTorch's keywords).
pub struct CyclicOptions {
    pub base_lr: Vec<f64>,
    pub max_lr: Vec<f64>,
    pub step_size_up: f64,
    pub step_size_down: Option<f64>,
    pub mode: CyclicMode,
    pub gamma: f64,
    pub cycle_momentum: bool,
    pub base_momentum: Vec<f64>,
    pub max_momentum: Vec<f64>,
}

/// Whether the optimizer cycles `betas` (true) or `momentum` (false); error if neither.
fn momentum_key(opt: &Optimizer) -> Result<bool, String> {
    let core = opt.0.try_borrow().map_err(|_| "the optimizer is busy".to_string())?;
    if core.defaults.contains_key("betas") {
        Ok(true)
    } else if core.defaults.contains_key("momentum") {
        Ok(false)
    } else {
        Err("optimizer must support momentum or beta1 with `cycle_momentum` option enabled".into())
    }
}

fn set_momentum(opt: &Optimizer, i: usize, use_beta1: bool, m: f64) -> Result<(), String> {
    if use_beta1 {
        let b2 = match opt.option(i, "betas") {
            Some(HValue::Pair(_, b)) => b,
            _ => return Err("param group has no betas".into()),
        };
        set_group_val(opt, i, "betas", HValue::Pair(m, b2))
    } else {
        set_group_val(opt, i, "momentum", HValue::Num(m))
    }
}

fn init_momentum(opt: &Optimizer, use_beta1: bool, max_m: &[f64], base_m: &[f64]) -> Result<(), String> {
    for i in 0..opt.num_groups() {
        set_momentum(opt, i, use_beta1, max_m[i])?;
        set_group_val(opt, i, "max_momentum", HValue::Num(max_m[i]))?;
        set_group_val(opt, i, "base_momentum", HValue::Num(base_m[i]))?;
    }
    Ok(())
}

impl SchedulerCore {
    pub fn one_cycle(opt: Optimizer, o: OneCycleOptions) -> Result<Self, String> {
        if o.total_steps <= 0 {
            return Err(format!("Expected positive integer total_steps, but got {}", o.total_steps));
        }
        if !(0.0..=1.0).contains(&o.pct_start) {
            return Err(format!("Expected float between 0 and 1 pct_start, but got {}", o.pct_start));
        }
        let t = o.total_steps as f64;
        let phase = |end_step, start_lr, end_lr, start_momentum, end_momentum| Phase {
            end_step,
            start_lr,
            end_lr,
            start_momentum,
            end_momentum,
        };
        let phases = if o.three_phase {
            vec![
                phase(o.pct_start * t - 1.0, "initial_lr", "max_lr", "max_momentum", "base_momentum"),
                phase(2.0 * o.pct_start * t - 2.0, "max_lr", "initial_lr", "base_momentum", "max_momentum"),
                phase(t - 1.0, "initial_lr", "min_lr", "max_momentum", "max_momentum"),
            ]
        } else {
            vec![
                phase(o.pct_start * t - 1.0, "initial_lr", "max_lr", "max_momentum", "base_momentum"),
                phase(t - 1.0, "max_lr", "min_lr", "base_momentum", "max_momentum"),
            ]
        };
        let max_lrs = per_group("max_lr", &opt, o.max_lr)?;
        for (i, m) in max_lrs.iter().enumerate() {
            let initial = m / o.div_factor;
            set_group_val(&opt, i, "initial_lr", HValue::Num(initial))?;
            set_group_val(&opt, i, "max_lr", HValue::Num(*m))?;
            set_group_val(&opt, i, "min_lr", HValue::Num(initial / o.final_div_factor))?;
        }
        let mut use_beta1 = false;
        if o.cycle_momentum {
            use_beta1 = momentum_key(&opt)?;
            let max_m = per_group("max_momentum", &opt, o.max_momentum)?;
            let base_m = per_group("base_momentum", &opt, o.base_momentum)?;
            init_momentum(&opt, use_beta1, &max_m, &base_m)?;
        }
        let kind = Kind::OneCycle(OneCycle {
            total_steps: o.total_steps,
            phases,
            anneal_cos: o.anneal_cos,
            cycle_momentum: o.cycle_momentum,
            use_beta1,
        });
        SchedulerCore::new(opt, kind, &mut super::no_eval)
    }

    pub fn cyclic(opt: Optimizer, o: CyclicOptions) -> Result<Self, String> {
        let base_lrs = per_group("base_lr", &opt, o.base_lr)?;
        for (i, b) in base_lrs.iter().enumerate() {
            set_group_val(&opt, i, "lr", HValue::Num(*b))?;
        }
        let max_lrs = per_group("max_lr", &opt, o.max_lr)?;
        let up = o.step_size_up;
        let down = o.step_size_down.unwrap_or(up);
        let total_size = up + down;
        if total_size.is_nan() || total_size <= 0.0 || up <= 0.0 {
            return Err("CyclicLR: step_size_up and step_size_down must be positive".into());
        }
        let step_ratio = up / total_size;
        let (mut use_beta1, mut base_m, mut max_m) = (false, vec![], vec![]);
        if o.cycle_momentum {
            use_beta1 = momentum_key(&opt)?;
            base_m = per_group("base_momentum", &opt, o.base_momentum)?;
            max_m = per_group("max_momentum", &opt, o.max_momentum)?;
            init_momentum(&opt, use_beta1, &max_m, &base_m)?;
        }
        let kind = Kind::Cyclic(Cyclic {
            max_lrs,
            total_size,
            step_ratio,
            mode: o.mode,
            gamma: o.gamma,
            cycle_momentum: o.cycle_momentum,
            use_beta1,
            base_momentums: base_m,
            max_momentums: max_m,
        });
        let mut s = SchedulerCore::new(opt, kind, &mut super::no_eval)?;
        s.base_lrs = base_lrs;
        Ok(s)
    }
}

fn anneal(cos: bool, start: f64, end: f64, pct: f64) -> f64 {
    if cos {
        let cos_out = (std::f64::consts::PI * pct).cos() + 1.0;
        end + (start - end) / 2.0 * cos_out
    } else {
        (end - start) * pct + start
    }
}

fn group_f(opt: &Optimizer, i: usize, key: &str) -> Result<f64, String> {
    match opt.option(i, key) {
        Some(HValue::Num(x)) => Ok(x),
        _ => Err(format!("param group {i} has no number '{key}'")),
    }
}

pub(crate) fn get_lr(s: &SchedulerCore) -> Result<Vec<f64>, String> {
    let opt = &s.optimizer;
    let n = opt.num_groups();
    match &s.kind {
        Kind::OneCycle(c) => {
            let step_num = s.last_epoch;
            if step_num > c.total_steps {
                return Err(format!(
                    "Tried to step {step_num} times. The specified number of total steps is {}",
                    c.total_steps
                ));
            }
            let mut lrs = Vec::with_capacity(n);
            for i in 0..n {
                let mut start_step = 0.0;
                let mut out = None;
                for (k, ph) in c.phases.iter().enumerate() {
                    if step_num as f64 <= ph.end_step || k == c.phases.len() - 1 {
                        let pct = (step_num as f64 - start_step) / (ph.end_step - start_step);
                        let lr = anneal(c.anneal_cos, group_f(opt, i, ph.start_lr)?, group_f(opt, i, ph.end_lr)?, pct);
                        let m = if c.cycle_momentum {
                            Some(anneal(
                                c.anneal_cos,
                                group_f(opt, i, ph.start_momentum)?,
                                group_f(opt, i, ph.end_momentum)?,
                                pct,
                            ))
                        } else {
                            None
                        };
                        out = Some((lr, m));
                        break;
                    }
                    start_step = ph.end_step;
                }
                let (lr, m) = out.ok_or("OneCycleLR has no phases")?;
                lrs.push(lr);
                if let Some(m) = m {
                    set_momentum(opt, i, c.use_beta1, m)?;
                }
            }
            Ok(lrs)
        }
        Kind::Cyclic(c) => {
            let e = s.last_epoch as f64;
            let cycle = (1.0 + e / c.total_size).floor();
            let x = 1.0 + e / c.total_size - cycle;
            let scale_factor = if x <= c.step_ratio { x / c.step_ratio } else { (x - 1.0) / (c.step_ratio - 1.0) };
            let scale = match c.mode {
                CyclicMode::Triangular => 1.0,
                CyclicMode::Triangular2 => 1.0 / 2.0f64.powf(cycle - 1.0),
                CyclicMode::ExpRange => c.gamma.powf(e),
            };
            let lrs: Vec<f64> =
                s.base_lrs.iter().zip(&c.max_lrs).map(|(b, m)| b + (m - b) * scale_factor * scale).collect();
            if c.cycle_momentum {
                for i in 0..n {
                    let (Some(&bm), Some(&mm)) = (c.base_momentums.get(i), c.max_momentums.get(i)) else {
                        return Err(format!(
                            "CyclicLR was built for {} param groups, the optimizer now has {n}",
                            c.max_lrs.len()
                        ));
                    };
                    let base_height = (mm - bm) * scale_factor;
                    set_momentum(opt, i, c.use_beta1, mm - base_height * scale)?;
                }
            }
            Ok(lrs)
        }
        _ => {
            let _ = group_vals(opt, "lr")?;
            Err(format!("{} is not a cyclical schedule", s.name()))
        }
    }
}

//! The epoch-indexed schedules: StepLR, MultiStepLR, ConstantLR, LinearLR, ExponentialLR,
//! PolynomialLR, CosineAnnealingLR, CosineAnnealingWarmRestarts, LambdaLR and MultiplicativeLR.
//! `get_lr` is PyTorch's chainable form (computed from the groups' current lrs), `closed_form`
//! its `_get_closed_form_lr`, both in the same f64 operation order as PyTorch.
use super::{group_vals, Kind, LrEval, SchedulerCore};
use std::f64::consts::PI;

/// Python's `%` for ints (the sign of the divisor).
fn py_mod(a: i64, b: i64) -> i64 {
    ((a % b) + b) % b
}

pub(crate) fn get_lr(s: &SchedulerCore, eval: LrEval) -> Result<Vec<f64>, String> {
    let lrs = group_vals(&s.optimizer, "lr")?;
    let e = s.last_epoch;
    let all = |f: &dyn Fn(f64) -> f64| lrs.iter().map(|&lr| f(lr)).collect::<Vec<f64>>();
    Ok(match &s.kind {
        Kind::Step { step_size, gamma } => {
            if e == 0 || py_mod(e, *step_size) != 0 {
                lrs
            } else {
                all(&|lr| lr * gamma)
            }
        }
        Kind::MultiStep { milestones, gamma } => {
            let count = milestones.iter().filter(|&&m| m == e).count();
            if count == 0 {
                lrs
            } else {
                all(&|lr| lr * gamma.powf(count as f64))
            }
        }
        Kind::Constant { factor, total_iters } => {
            if e == 0 {
                all(&|lr| lr * factor)
            } else if e != *total_iters {
                lrs
            } else {
                all(&|lr| lr * (1.0 / factor))
            }
        }
        Kind::Linear { start_factor, end_factor, total_iters } => {
            if e == 0 {
                all(&|lr| lr * start_factor)
            } else if s.is_initial || e > *total_iters {
                lrs
            } else {
                let f = 1.0
                    + (end_factor - start_factor)
                        / (*total_iters as f64 * start_factor + (e - 1) as f64 * (end_factor - start_factor));
                all(&|lr| lr * f)
            }
        }
        Kind::Exponential { gamma } => {
            if s.is_initial {
                lrs
            } else {
                all(&|lr| lr * gamma)
            }
        }
        Kind::Polynomial { total_iters, power } => {
            if s.is_initial || e > *total_iters {
                lrs
            } else {
                let t = *total_iters as f64;
                let f = ((1.0 - e as f64 / t) / (1.0 - (e - 1) as f64 / t)).powf(*power);
                all(&|lr| lr * f)
            }
        }
        Kind::Cosine { t_max, eta_min } => {
            let (tm, eta) = (*t_max as f64, *eta_min);
            if s.is_initial {
                lrs
            } else if s.step_count == 1 && e > 0 {
                s.base_lrs.iter().map(|b| eta + (b - eta) * (1.0 + (e as f64 * PI / tm).cos()) / 2.0).collect()
            } else if py_mod(e - 1 - t_max, 2 * t_max) == 0 {
                lrs.iter().zip(&s.base_lrs).map(|(lr, b)| lr + (b - eta) * (1.0 - (PI / tm).cos()) / 2.0).collect()
            } else {
                let f = (1.0 + (PI * e as f64 / tm).cos()) / (1.0 + (PI * (e - 1) as f64 / tm).cos());
                all(&|lr| f * (lr - eta) + eta)
            }
        }
        Kind::WarmRestarts { t_i, eta_min, t_cur, .. } => {
            let eta = *eta_min;
            s.base_lrs
                .iter()
                .map(|b| eta + (b - eta) * (1.0 + (PI * *t_cur as f64 / *t_i as f64).cos()) / 2.0)
                .collect()
        }
        Kind::Lambda { fns } => {
            let mut out = Vec::with_capacity(fns.len());
            for (f, b) in fns.iter().zip(&s.base_lrs) {
                out.push(b * eval(f, e)?);
            }
            out
        }
        Kind::Multiplicative { fns } => {
            if s.is_initial {
                lrs
            } else {
                let mut out = Vec::with_capacity(fns.len());
                for (f, lr) in fns.iter().zip(&lrs) {
                    out.push(lr * eval(f, e)?);
                }
                out
            }
        }
        _ => return Err(format!("{} has no epoch schedule", s.name())),
    })
}

/// `_get_closed_form_lr`, for the schedulers that have one (used by SequentialLR at milestones).
pub(crate) fn closed_form(s: &SchedulerCore) -> Result<Option<Vec<f64>>, String> {
    let e = s.last_epoch;
    let all = |f: &dyn Fn(f64) -> f64| Some(s.base_lrs.iter().map(|&b| f(b)).collect::<Vec<f64>>());
    Ok(match &s.kind {
        Kind::Step { step_size, gamma } => all(&|b| b * gamma.powf(e.div_euclid(*step_size) as f64)),
        Kind::MultiStep { milestones, gamma } => {
            let k = milestones.partition_point(|&m| m <= e) as f64;
            all(&|b| b * gamma.powf(k))
        }
        Kind::Constant { factor, total_iters } => {
            let on = if e >= *total_iters { 1.0 } else { 0.0 };
            all(&|b| b * (factor + on * (1.0 - factor)))
        }
        Kind::Linear { start_factor, end_factor, total_iters } => all(&|b| {
            b * (start_factor + (end_factor - start_factor) * (*total_iters).min(e) as f64 / *total_iters as f64)
        }),
        Kind::Exponential { gamma } => all(&|b| b * gamma.powf(e as f64)),
        Kind::Polynomial { total_iters, power } => {
            all(&|b| b * (1.0 - (*total_iters).min(e) as f64 / *total_iters as f64).powf(*power))
        }
        Kind::Cosine { t_max, eta_min } => {
            all(&|b| eta_min + (b - eta_min) * (1.0 + (PI * e as f64 / *t_max as f64).cos()) / 2.0)
        }
        _ => None,
    })
}

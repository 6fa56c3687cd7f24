//! Metrics of a confusion matrix, reduced as torchmetrics 1.9 does: accuracy, precision, recall,
//! F-beta (from per-class true/false positives/negatives and the `average` over classes),
//! the confusion matrix itself, Matthews' correlation and Cohen's kappa.
use super::{host_i64, result, Average, Classification, KappaWeights, Kind, Normalize, State, Task};
use crate::tensor::Result;
use crate::tensor_err;
use tch::{Kind as K, Tensor};

/// Per-class (per-label) counts; one entry for binary.
struct Stats {
    tp: Vec<f64>,
    fp: Vec<f64>,
    tn: Vec<f64>,
    fn_: Vec<f64>,
}

fn stats(c: &Classification, cm: &[i64]) -> Stats {
    let mut s = Stats { tp: vec![], fp: vec![], tn: vec![], fn_: vec![] };
    let mut push = |tp: i64, fp: i64, tn: i64, fn_: i64| {
        s.tp.push(tp as f64);
        s.fp.push(fp as f64);
        s.tn.push(tn as f64);
        s.fn_.push(fn_ as f64);
    };
    match c.task {
        // [target][pred]: [[tn, fp], [fn, tp]]
        Task::Binary => push(cm[3], cm[1], cm[0], cm[2]),
        Task::Multilabel => {
            for l in cm.chunks(4) {
                push(l[3], l[1], l[0], l[2]);
            }
        }
        Task::Multiclass => {
            let n = c.num_classes as usize;
            let total: i64 = cm.iter().sum();
            for k in 0..n {
                let tp = cm[k * n + k];
                let col: i64 = (0..n).map(|r| cm[r * n + k]).sum();
                let row: i64 = cm[k * n..(k + 1) * n].iter().sum();
                let (fp, fn_) = (col - tp, row - tp);
                push(tp, fp, total - tp - fp - fn_, fn_);
            }
        }
    }
    s
}

fn div(num: f64, den: f64, zero_division: f64) -> f64 {
    if den != 0.0 {
        num / den
    } else {
        zero_division
    }
}

/// torchmetrics' `_adjust_weights_safe_divide`: the macro / weighted mean of per-class scores.
/// Macro leaves out, except for multilabel, the classes that never occur in target nor preds
/// (with top_k > 1: that never occur in target).
fn average(c: &Classification, s: &Stats, score: &[f64]) -> f64 {
    let w: Vec<f64> = (0..score.len())
        .map(|i| match c.average {
            Average::Weighted => s.tp[i] + s.fn_[i],
            _ if c.task == Task::Multilabel => 1.0,
            _ => {
                let absent = if c.top_k == 1 { s.tp[i] + s.fp[i] + s.fn_[i] == 0.0 } else { s.tp[i] + s.fn_[i] == 0.0 };
                if absent {
                    0.0
                } else {
                    1.0
                }
            }
        })
        .collect();
    let total: f64 = w.iter().sum();
    w.iter().zip(score).map(|(w, x)| div(w * x, total, 0.0)).sum()
}

/// A stat-score metric from (tp, fp, tn, fn): per class, then averaged.
fn stat_metric(c: &Classification, s: &Stats, f: impl Fn(f64, f64, f64, f64) -> f64) -> (Vec<f64>, bool) {
    let sum = |v: &[f64]| v.iter().sum::<f64>();
    if c.task == Task::Binary {
        return (vec![f(s.tp[0], s.fp[0], s.tn[0], s.fn_[0])], false);
    }
    match c.average {
        Average::Micro => (vec![f(sum(&s.tp), sum(&s.fp), sum(&s.tn), sum(&s.fn_))], false),
        avg => {
            let scores: Vec<f64> = (0..s.tp.len()).map(|i| f(s.tp[i], s.fp[i], s.tn[i], s.fn_[i])).collect();
            if avg == Average::None {
                (scores, true)
            } else {
                (vec![average(c, s, &scores)], false)
            }
        }
    }
}

pub fn compute(kind: &Kind, c: &Classification, state: &State) -> Result<Tensor> {
    let State::Confusion(cm_t) = state else { return Err(tensor_err!("internal: not a confusion state")) };
    let dev = cm_t.device();
    let cm = host_i64(cm_t)?;
    let s = stats(c, &cm);
    let multilabel = c.task == Task::Multilabel;
    let (values, vector) = match kind {
        Kind::Accuracy => {
            // binary and multilabel: (tp + tn) / all; multiclass: tp / (tp + fn)
            let with_tn = c.task == Task::Binary || multilabel;
            let f = move |tp: f64, fp: f64, tn: f64, fn_: f64| {
                if with_tn {
                    div(tp + tn, tp + tn + fp + fn_, 0.0)
                } else {
                    div(tp, tp + fn_, 0.0)
                }
            };
            stat_metric(c, &s, f)
        }
        Kind::Precision { zero_division } => {
            let z = *zero_division;
            stat_metric(c, &s, move |tp, fp, _, _| div(tp, tp + fp, z))
        }
        Kind::Recall { zero_division } => {
            let z = *zero_division;
            stat_metric(c, &s, move |tp, _, _, fn_| div(tp, tp + fn_, z))
        }
        Kind::FBeta { beta, zero_division } => {
            let (b2, z) = (beta * beta, *zero_division);
            stat_metric(c, &s, move |tp, fp, _, fn_| div((1.0 + b2) * tp, (1.0 + b2) * tp + b2 * fn_ + fp, z))
        }
        Kind::ConfusionMatrix { normalize } => return confusion_matrix(cm_t, *normalize),
        Kind::MatthewsCorrcoef => (vec![matthews(c, &cm)], false),
        Kind::CohenKappa { weights } => (vec![kappa(c, &cm, *weights)], false),
        other => return Err(tensor_err!("internal: {other:?} is not a confusion-matrix metric")),
    };
    result(&values, vector, dev)
}

fn confusion_matrix(cm: &Tensor, normalize: Normalize) -> Result<Tensor> {
    let dims: &[i64] = match normalize {
        Normalize::None => return Ok(cm.shallow_clone()),
        Normalize::True => &[-1],
        Normalize::Pred => &[-2],
        Normalize::All => &[-2, -1],
    };
    let f = cm.f_to_kind(K::Float)?;
    let n = f.f_div(&f.f_sum_dim_intlist(dims, true, K::Float)?)?;
    // 0/0 entries (a class absent) are zeros, as torchmetrics
    Ok(n.f_nan_to_num(0.0, None, None)?)
}

/// torchmetrics' `_matthews_corrcoef_reduce`, with its special cases of a 2×2 matrix.
fn matthews(c: &Classification, cm: &[i64]) -> f64 {
    let m: Vec<f64> = match c.task {
        Task::Multilabel => {
            let mut s = vec![0.0; 4];
            for l in cm.chunks(4) {
                for i in 0..4 {
                    s[i] += l[i] as f64;
                }
            }
            s
        }
        _ => cm.iter().map(|x| *x as f64).collect(),
    };
    let n = (m.len() as f64).sqrt().round() as usize;
    if n == 2 {
        let (tn, fp, fn_, tp) = (m[0], m[1], m[2], m[3]);
        if tp + tn != 0.0 && fp + fn_ == 0.0 {
            return 1.0;
        }
        if tp + tn == 0.0 && fp + fn_ != 0.0 {
            return -1.0;
        }
    }
    let tk: Vec<f64> = (0..n).map(|r| (0..n).map(|k| m[r * n + k]).sum()).collect();
    let pk: Vec<f64> = (0..n).map(|k| (0..n).map(|r| m[r * n + k]).sum()).collect();
    let trace: f64 = (0..n).map(|k| m[k * n + k]).sum();
    let s: f64 = m.iter().sum();
    let dot = |a: &[f64], b: &[f64]| a.iter().zip(b).map(|(x, y)| x * y).sum::<f64>();
    let mut numerator = trace * s - dot(&tk, &pk);
    let mut denom = (s * s - dot(&pk, &pk)) * (s * s - dot(&tk, &tk));
    if denom == 0.0 && n == 2 {
        let (tn, fp, fn_, tp) = (m[0], m[1], m[2], m[3]);
        let eps = f32::EPSILON as f64;
        numerator = if fn_ == 0.0 && tn == 0.0 {
            eps.sqrt() * (tp - fp)
        } else if fp == 0.0 && tn == 0.0 {
            eps.sqrt() * (tp - fn_)
        } else if tp == 0.0 && fn_ == 0.0 {
            eps.sqrt() * (tn - fp)
        } else if tp == 0.0 && fp == 0.0 {
            eps.sqrt() * (tn - fn_)
        } else if tp == 0.0 {
            tn - fp * fn_
        } else if tn == 0.0 {
            tp - fp * fn_
        } else if fp == 0.0 || fn_ == 0.0 {
            tp * tn
        } else {
            return 0.0;
        };
        denom = (tp + fp + eps) * (tp + fn_ + eps) * (tn + fp + eps) * (tn + fn_ + eps);
    } else if denom == 0.0 {
        return 0.0;
    }
    numerator / denom.sqrt()
}

/// torchmetrics' `_cohen_kappa_reduce`.
fn kappa(c: &Classification, cm: &[i64], weights: KappaWeights) -> f64 {
    let n = if c.task == Task::Binary { 2 } else { c.num_classes as usize };
    let m: Vec<f64> = cm.iter().map(|x| *x as f64).collect();
    let sum0: Vec<f64> = (0..n).map(|k| (0..n).map(|r| m[r * n + k]).sum()).collect();
    let sum1: Vec<f64> = (0..n).map(|r| (0..n).map(|k| m[r * n + k]).sum()).collect();
    let total: f64 = sum0.iter().sum();
    let (mut num, mut den) = (0.0, 0.0);
    for r in 0..n {
        for k in 0..n {
            let d = r.abs_diff(k) as f64;
            let w = match weights {
                KappaWeights::None => {
                    if r == k {
                        0.0
                    } else {
                        1.0
                    }
                }
                KappaWeights::Linear => d,
                KappaWeights::Quadratic => d * d,
            };
            num += w * m[r * n + k];
            den += w * sum1[r] * sum0[k] / total;
        }
    }
    1.0 - num / den
}

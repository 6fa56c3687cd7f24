//! AUROC and average precision over exact (unbinned) curves, as torchmetrics 1.9 computes them
//! with `thresholds=None`: one threshold per distinct score (ties share one), trapezoidal area
//! under the ROC curve (McClish-corrected partial area with `max_fpr`), and average precision as
//! the step sum `Σ (R_n − R_{n−1}) P_n`. Multiclass is one-vs-rest per class; multilabel per label.
use super::state::cat;
use super::{host_f64, host_i64, result, Average, Classification, Kind, State, Task};
use crate::tensor::Result;
use crate::tensor_err;
use tch::Tensor;

/// False and true positives at each distinct threshold, scores descending (torchmetrics'
/// `_binary_clf_curve`).
fn clf_curve(scores: &[f64], positive: &[bool]) -> (Vec<f64>, Vec<f64>) {
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|a, b| scores[*b].total_cmp(&scores[*a]));
    let (mut fps, mut tps) = (vec![], vec![]);
    let mut tp = 0.0;
    for (i, &k) in order.iter().enumerate() {
        if positive[k] {
            tp += 1.0;
        }
        let last = i + 1 == order.len() || scores[order[i + 1]] != scores[k];
        if last {
            tps.push(tp);
            fps.push((i + 1) as f64 - tp);
        }
    }
    (fps, tps)
}

fn trapezoid(x: &[f64], y: &[f64]) -> f64 {
    x.windows(2).zip(y.windows(2)).map(|(x, y)| (x[1] - x[0]) * (y[0] + y[1]) / 2.0).sum()
}

fn binary_auroc(scores: &[f64], positive: &[bool], max_fpr: Option<f64>) -> f64 {
    let (fps, tps) = clf_curve(scores, positive);
    let (fl, tl) = (fps.last().copied().unwrap_or(0.0), tps.last().copied().unwrap_or(0.0));
    let fpr: Vec<f64> = std::iter::once(0.0).chain(fps.iter().map(|f| if fl > 0.0 { f / fl } else { 0.0 })).collect();
    let tpr: Vec<f64> = std::iter::once(0.0).chain(tps.iter().map(|t| if tl > 0.0 { t / tl } else { 0.0 })).collect();
    let full = || trapezoid(&fpr, &tpr);
    let Some(max) = max_fpr else { return full() };
    if max == 1.0 || fpr.iter().sum::<f64>() == 0.0 || tpr.iter().sum::<f64>() == 0.0 {
        return full();
    }
    // the partial area up to max_fpr, with tpr interpolated at max_fpr, McClish-standardized
    let stop = fpr.iter().filter(|f| **f <= max).count().min(fpr.len() - 1);
    let w = (max - fpr[stop - 1]) / (fpr[stop] - fpr[stop - 1]);
    let at = tpr[stop - 1] + w * (tpr[stop] - tpr[stop - 1]);
    let mut x = fpr[..stop].to_vec();
    let mut y = tpr[..stop].to_vec();
    x.push(max);
    y.push(at);
    let partial = trapezoid(&x, &y);
    let min_area = 0.5 * max * max;
    0.5 * (1.0 + (partial - min_area) / (max - min_area))
}

/// `ones_recall`: torchmetrics sets the recall to one when every target is 0 (for a multiclass
/// class that is "every target is class 0", so another class without positives has a NaN recall);
/// `clean`: NaNs count as 0 (binary and micro), else an undefined class stays NaN (and is left out
/// of the macro / weighted mean).
fn binary_average_precision(scores: &[f64], positive: &[bool], ones_recall: bool, clean: bool) -> f64 {
    let (fps, tps) = clf_curve(scores, positive);
    let tl = tps.last().copied().unwrap_or(0.0);
    let none_positive = ones_recall;
    // thresholds ascending, then the (recall 0, precision 1) end point
    let mut precision: Vec<f64> = fps.iter().zip(&tps).rev().map(|(f, t)| t / (t + f)).collect();
    let mut recall: Vec<f64> = tps.iter().rev().map(|t| if none_positive { 1.0 } else { t / tl }).collect();
    precision.push(1.0);
    recall.push(0.0);
    let clean = |v: f64| if clean && v.is_nan() { 0.0 } else { v };
    -(0..precision.len() - 1).map(|i| (clean(recall[i + 1]) - clean(recall[i])) * clean(precision[i])).sum::<f64>()
}

/// torchmetrics' `_reduce_auroc` / `_reduce_average_precision`: NaN scores left out of the mean.
fn reduce(scores: Vec<f64>, average: Average, weights: &[f64]) -> (Vec<f64>, bool) {
    let valid: Vec<usize> = (0..scores.len()).filter(|i| !scores[*i].is_nan()).collect();
    match average {
        Average::None => (scores, true),
        Average::Weighted => {
            let total: f64 = valid.iter().map(|i| weights[*i]).sum();
            let v = valid.iter().map(|i| scores[*i] * if total != 0.0 { weights[*i] / total } else { 0.0 }).sum();
            (vec![v], false)
        }
        _ => {
            let v = valid.iter().map(|i| scores[*i]).sum::<f64>() / valid.len() as f64;
            (vec![v], false)
        }
    }
}

pub fn compute(kind: &Kind, c: &Classification, state: &State) -> Result<Tensor> {
    let State::Curve { preds, target } = state else { return Err(tensor_err!("internal: not a curve state")) };
    let (Some(p), Some(t)) = (cat(preds)?, cat(target)?) else {
        return Err(tensor_err!("compute() before any update: there are no samples to compute from"));
    };
    let dev = p.device();
    let scores = host_f64(&p)?;
    let labels = host_i64(&t)?;
    let all_zero = labels.iter().all(|l| *l == 0);
    // the per-class curves of multiclass see "all targets are 0", not "no positives" (torchmetrics)
    let multiclass = c.task == Task::Multiclass;
    let one = |s: &[f64], pos: &[bool]| match kind {
        Kind::Auroc { max_fpr } => binary_auroc(s, pos, *max_fpr),
        _ if multiclass => binary_average_precision(s, pos, all_zero, false),
        _ => binary_average_precision(
            s,
            pos,
            !pos.iter().any(|p| *p),
            c.task == Task::Binary || c.average == Average::Micro,
        ),
    };
    let n = c.num_classes as usize;
    let (values, vector) = match c.task {
        Task::Binary => {
            let pos: Vec<bool> = labels.iter().map(|l| *l == 1).collect();
            (vec![one(&scores, &pos)], false)
        }
        Task::Multiclass => {
            let m = labels.len();
            let per: Vec<f64> = (0..n)
                .map(|k| {
                    let s: Vec<f64> = (0..m).map(|i| scores[i * n + k]).collect();
                    let pos: Vec<bool> = labels.iter().map(|l| *l == k as i64).collect();
                    one(&s, &pos)
                })
                .collect();
            let support: Vec<f64> = (0..n).map(|k| labels.iter().filter(|l| **l == k as i64).count() as f64).collect();
            reduce(per, c.average, &support)
        }
        Task::Multilabel => {
            let m = labels.len() / n.max(1);
            let ignored = |l: i64| c.ignore_index == Some(l);
            if c.average == Average::Micro {
                let (s, pos): (Vec<f64>, Vec<bool>) =
                    (0..m * n).filter(|i| !ignored(labels[*i])).map(|i| (scores[i], labels[i] == 1)).unzip();
                (vec![one(&s, &pos)], false)
            } else {
                let mut per = vec![];
                let mut support = vec![];
                for k in 0..n {
                    let (s, pos): (Vec<f64>, Vec<bool>) = (0..m)
                        .map(|i| i * n + k)
                        .filter(|i| !ignored(labels[*i]))
                        .map(|i| (scores[i], labels[i] == 1))
                        .unzip();
                    support.push(pos.iter().filter(|p| **p).count() as f64);
                    per.push(one(&s, &pos));
                }
                reduce(per, c.average, &support)
            }
        }
    };
    result(&values, vector, dev)
}

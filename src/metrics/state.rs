//! A metric's accumulated states and their reductions across batches and DDP ranks, as
//! torchmetrics' `add_state(..., dist_reduce_fx)`: sums ("sum"), concatenations ("cat") and, for
//! Pearson's extremes, "min" / "max".
use super::{Kind, Spec, Task};
use crate::dist::{ProcessGroup, ReduceOp};
use crate::tensor::Result;
use crate::tensor_err;
use tch::{Kind as K, Tensor};

#[derive(Debug)]
pub enum State {
    /// Counts: binary `[2, 2]`, multiclass `[C, C]`, multilabel `[L, 2, 2]` (rows: target).
    Confusion(Tensor),
    /// Predictions and targets, concatenated along dim 0.
    Curve { preds: Vec<Tensor>, target: Vec<Tensor> },
    /// Float64 sums, and for Pearson the extremes of preds and target (`[2]` each).
    Sums { sums: Tensor, min: Option<Tensor>, max: Option<Tensor> },
}

fn dist<T>(r: std::result::Result<T, crate::dist::DistError>) -> Result<T> {
    r.map_err(|e| tensor_err!("metric sync across ranks: {e}"))
}

impl State {
    /// The states before any update (torchmetrics' defaults).
    pub fn empty(spec: &Spec) -> Result<State> {
        if let (Kind::Auroc { .. } | Kind::AveragePrecision, Some(_)) = (&spec.kind, &spec.cls) {
            return Ok(State::Curve { preds: vec![], target: vec![] });
        }
        if let Some(c) = &spec.cls {
            let shape: Vec<i64> = match c.task {
                Task::Binary => vec![2, 2],
                Task::Multiclass => vec![c.num_classes, c.num_classes],
                Task::Multilabel => vec![c.num_classes, 2, 2],
            };
            return Ok(State::Confusion(Tensor::f_zeros(shape.as_slice(), (K::Int64, tch::Device::Cpu))?));
        }
        super::regression::empty_state(&spec.kind)
    }

    /// This state with a later batch's added.
    pub fn merge(self, b: State) -> Result<State> {
        Ok(match (self, b) {
            (State::Confusion(a), State::Confusion(b)) => State::Confusion(a.f_to_device(b.device())?.f_add(&b)?),
            (State::Curve { mut preds, mut target }, State::Curve { preds: p, target: t }) => {
                if let (Some(a), Some(b)) = (preds.first(), p.first()) {
                    if a.size()[1..] != b.size()[1..] {
                        return Err(tensor_err!(
                            "preds of shape {:?} after earlier batches of shape {:?}",
                            b.size(),
                            a.size()
                        ));
                    }
                }
                preds.extend(p);
                target.extend(t);
                State::Curve { preds, target }
            }
            (State::Sums { sums: a, min: amin, max: amax }, State::Sums { sums: b, min: bmin, max: bmax }) => {
                if a.size() != b.size() {
                    return Err(tensor_err!(
                        "inputs with {} outputs after earlier batches with {}",
                        b.size().last().copied().unwrap_or(1),
                        a.size().last().copied().unwrap_or(1)
                    ));
                }
                let dev = b.device();
                let pair = |x: Option<Tensor>, y: Option<Tensor>, max: bool| -> Result<Option<Tensor>> {
                    Ok(match (x, y) {
                        (Some(x), Some(y)) => {
                            let x = x.f_to_device(dev)?;
                            Some(if max { x.f_maximum(&y)? } else { x.f_minimum(&y)? })
                        }
                        (x, y) => x.or(y),
                    })
                };
                State::Sums {
                    sums: a.f_to_device(dev)?.f_add(&b)?,
                    min: pair(amin, bmin, false)?,
                    max: pair(amax, bmax, true)?,
                }
            }
            _ => return Err(tensor_err!("internal: metric states of different kinds")),
        })
    }

    /// A handle on the same states (the tensors are never modified in place).
    pub fn clone_state(&self) -> Result<State> {
        Ok(match self {
            State::Confusion(t) => State::Confusion(t.shallow_clone()),
            State::Curve { preds, target } => State::Curve {
                preds: preds.iter().map(|t| t.shallow_clone()).collect(),
                target: target.iter().map(|t| t.shallow_clone()).collect(),
            },
            State::Sums { sums, min, max } => State::Sums {
                sums: sums.shallow_clone(),
                min: min.as_ref().map(|t| t.shallow_clone()),
                max: max.as_ref().map(|t| t.shallow_clone()),
            },
        })
    }

    /// The states of every rank together: sums all-reduced, concatenations gathered in rank order.
    pub fn synced(self, pg: &ProcessGroup) -> Result<State> {
        let reduce = |t: &Tensor, op: ReduceOp| -> Result<Tensor> {
            let mut v = [t.f_detach_copy()?.f_contiguous()?];
            dist(pg.all_reduce(&mut v, op))?;
            let [v] = v;
            Ok(v)
        };
        Ok(match self {
            State::Confusion(t) => State::Confusion(reduce(&t, ReduceOp::Sum)?),
            State::Curve { preds, target } => {
                let (p, t) = (cat(&preds)?, cat(&target)?);
                match (p, t) {
                    (Some(p), Some(t)) => State::Curve { preds: vec![gather(pg, &p)?], target: vec![gather(pg, &t)?] },
                    _ => {
                        return Err(tensor_err!(
                            "compute() on a rank that has no samples: every rank must update the metric before it is synced"
                        ))
                    }
                }
            }
            State::Sums { sums, min, max } => State::Sums {
                sums: reduce(&sums, ReduceOp::Sum)?,
                min: min.map(|t| reduce(&t, ReduceOp::Min)).transpose()?,
                max: max.map(|t| reduce(&t, ReduceOp::Max)).transpose()?,
            },
        })
    }
}

/// The chunks concatenated along dim 0 (None when there are none).
pub(crate) fn cat(chunks: &[Tensor]) -> Result<Option<Tensor>> {
    if chunks.is_empty() {
        return Ok(None);
    }
    let dev = chunks[0].device();
    let moved: Vec<Tensor> = chunks.iter().map(|t| t.f_to_device(dev)).collect::<std::result::Result<_, _>>()?;
    Ok(Some(Tensor::f_cat(&moved, 0)?))
}

/// Every rank's `t` concatenated along dim 0 in rank order; the ranks may hold different lengths
/// (padded to the longest for the gather, as torchmetrics' `gather_all_tensors`).
fn gather(pg: &ProcessGroup, t: &Tensor) -> Result<Tensor> {
    let dev = t.device();
    let n = t.size()[0];
    let sizes = dist(pg.all_gather(&Tensor::f_from_slice(&[n])?.f_to_device(dev)?))?;
    let sizes: Vec<i64> = sizes.iter().map(|s| s.f_int64_value(&[0])).collect::<std::result::Result<_, _>>()?;
    let longest = sizes.iter().copied().max().unwrap_or(n);
    let mut shape = t.size();
    shape[0] = longest - n;
    let padded = Tensor::f_cat(&[t.shallow_clone(), Tensor::f_zeros(shape.as_slice(), (t.kind(), dev))?], 0)?;
    let parts = dist(pg.all_gather(&padded.f_contiguous()?))?;
    let parts: Vec<Tensor> =
        parts.iter().zip(&sizes).map(|(p, s)| p.f_narrow(0, 0, *s)).collect::<std::result::Result<_, _>>()?;
    Ok(Tensor::f_cat(&parts, 0)?)
}

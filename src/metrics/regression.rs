//! Regression metrics, perplexity and MeanMetric as float64 sums (each all-reduced by sum across
//! ranks): mean squared / absolute error, R², Pearson's correlation (sums of products, with the
//! extremes for torchmetrics' variance check), perplexity, and the weighted mean.
use super::{host_f64, result, Kind, Multioutput, NanStrategy, State};
use crate::tensor::Result;
use crate::tensor_err;
use tch::{Kind as K, Tensor};

fn stack(v: &[Tensor]) -> Result<Tensor> {
    let parts: Vec<Tensor> = v.iter().map(|t| t.f_to_kind(K::Double)).collect::<std::result::Result<_, _>>()?;
    Ok(Tensor::f_stack(&parts, 0)?)
}

fn sums(v: &[Tensor]) -> Result<State> {
    Ok(State::Sums { sums: stack(v)?, min: None, max: None })
}

fn count(t: &Tensor, n: i64) -> Result<Tensor> {
    Ok(Tensor::f_scalar_tensor(n as f64, (K::Double, t.device()))?)
}

fn floats(preds: &Tensor, target: &Tensor) -> Result<(Tensor, Tensor)> {
    if preds.size() != target.size() {
        return Err(tensor_err!(
            "preds and target must have the same shape, got {:?} and {:?}",
            preds.size(),
            target.size()
        ));
    }
    Ok((preds.f_detach()?.f_to_kind(K::Double)?, target.f_detach()?.f_to_kind(K::Double)?))
}

pub fn empty_state(kind: &Kind) -> Result<State> {
    let zeros = |n: i64| Tensor::f_zeros([n], (K::Double, tch::Device::Cpu));
    Ok(match kind {
        Kind::R2Score { .. } => State::Sums { sums: zeros(4)?, min: None, max: None },
        Kind::PearsonCorrcoef => State::Sums {
            sums: zeros(6)?,
            min: Some(Tensor::f_full([2], f64::INFINITY, (K::Double, tch::Device::Cpu))?),
            max: Some(Tensor::f_full([2], f64::NEG_INFINITY, (K::Double, tch::Device::Cpu))?),
        },
        _ => State::Sums { sums: zeros(2)?, min: None, max: None },
    })
}

pub fn batch_state(kind: &Kind, preds: &Tensor, target: &Tensor) -> Result<State> {
    match kind {
        Kind::MeanSquaredError { .. } | Kind::MeanAbsoluteError => {
            let (p, t) = floats(preds, target)?;
            let d = p.f_sub(&t)?;
            let e = if matches!(kind, Kind::MeanAbsoluteError) { d.f_abs()? } else { d.f_square()? };
            sums(&[e.f_sum(K::Double)?, count(&t, t.numel() as i64)?])
        }
        Kind::R2Score { .. } => {
            let (p, t) = floats(preds, target)?;
            if p.dim() == 0 || p.dim() > 2 {
                return Err(tensor_err!("r2_score takes 1D or 2D preds and target, got shape {:?}", p.size()));
            }
            let r = t.f_sub(&p)?;
            let n = t.size()[0];
            let ones = t.f_select(0, 0)?.f_ones_like()?.f_mul_scalar(n as f64)?;
            let parts = [
                t.f_square()?.f_sum_dim_intlist(0, false, K::Double)?,
                t.f_sum_dim_intlist(0, false, K::Double)?,
                r.f_square()?.f_sum_dim_intlist(0, false, K::Double)?,
                ones,
            ];
            sums(&parts)
        }
        Kind::PearsonCorrcoef => {
            let (p, t) = floats(preds, target)?;
            if p.dim() != 1 {
                return Err(tensor_err!("pearson_corrcoef takes 1D preds and target, got shape {:?}", p.size()));
            }
            if p.numel() == 0 {
                return empty_state(kind);
            }
            let s = |x: &Tensor| x.f_sum(K::Double);
            let sm = stack(&[
                count(&t, t.numel() as i64)?,
                s(&p)?,
                s(&t)?,
                s(&p.f_square()?)?,
                s(&t.f_square()?)?,
                s(&p.f_mul(&t)?)?,
            ])?;
            let min = Tensor::f_stack(&[p.f_min()?, t.f_min()?], 0)?;
            let max = Tensor::f_stack(&[p.f_max()?, t.f_max()?], 0)?;
            Ok(State::Sums { sums: sm, min: Some(min), max: Some(max) })
        }
        Kind::Perplexity { ignore_index } => {
            if preds.dim() != 3 || target.dim() != 2 || preds.size()[..2] != target.size()[..] {
                return Err(tensor_err!(
                    "perplexity takes preds [batch_size, seq_len, vocab_size] and target [batch_size, seq_len], got {:?} and {:?}",
                    preds.size(),
                    target.size()
                ));
            }
            if !preds.is_floating_point() {
                return Err(tensor_err!("perplexity: preds must be float logits, got {:?}", preds.kind()));
            }
            if target.kind() != K::Int64 {
                return Err(tensor_err!("perplexity: target must be an int64 tensor, got {:?}", target.kind()));
            }
            let v = preds.size()[2];
            let probs = preds.f_detach()?.f_reshape([-1, v])?.f_softmax(1, preds.kind())?;
            let t = target.f_reshape([-1])?;
            let mask = match ignore_index {
                Some(i) => t.f_ne(*i)?,
                None => t.f_ones_like()?.f_to_kind(K::Bool)?,
            };
            let t = t.f_where_self(&mask, &t.f_zeros_like()?)?;
            let bad = t.f_lt(0)?.f_logical_or(&t.f_ge(v)?)?.f_any()?;
            if bad.f_int64_value(&[])? != 0 {
                return Err(tensor_err!("perplexity: target holds token ids outside [0, {}]", v - 1));
            }
            let picked = probs.f_gather(1, &t.f_unsqueeze(1)?, false)?.f_squeeze_dim(1)?.f_masked_select(&mask)?;
            let total = picked.f_to_kind(K::Double)?.f_log()?.f_sum(K::Double)?.f_neg()?;
            sums(&[total, mask.f_sum(K::Double)?])
        }
        Kind::Mean { .. } => Err(tensor_err!("internal: mean takes (value, weight)")),
        other => Err(tensor_err!("internal: {other:?} is not a regression metric")),
    }
}

/// MeanMetric's batch state: `Σ value·weight` and `Σ weight`, NaNs handled by `nan_strategy`.
pub fn mean_state(nan: NanStrategy, value: &Tensor, weight: Option<&Tensor>) -> Result<State> {
    let v = value.f_detach()?.f_to_kind(K::Double)?;
    let w = match weight {
        Some(w) => w.f_detach()?.f_to_kind(K::Double)?.f_broadcast_to(v.size())?,
        None => v.f_ones_like()?,
    };
    let nans = v.f_isnan()?.f_logical_or(&w.f_isnan()?)?;
    let any = nans.f_any()?.f_int64_value(&[])? != 0;
    let (v, w) = match nan {
        _ if !any => (v, w),
        NanStrategy::Disable => (v, w),
        NanStrategy::Error => return Err(tensor_err!("Encountered `nan` values in tensor")),
        NanStrategy::Impute(x) => (v.f_nan_to_num(x, None, None)?, w.f_nan_to_num(x, None, None)?),
        NanStrategy::Warn | NanStrategy::Ignore => {
            if nan == NanStrategy::Warn {
                crate::errln!("warning: Encountered `nan` values in tensor. Will be removed.");
            }
            let keep = nans.f_logical_not()?;
            (v.f_masked_select(&keep)?, w.f_masked_select(&keep)?)
        }
    };
    sums(&[v.f_mul(&w)?.f_sum(K::Double)?, w.f_sum(K::Double)?])
}

pub fn compute(kind: &Kind, state: &State) -> Result<Tensor> {
    let State::Sums { sums, min, max } = state else { return Err(tensor_err!("internal: not a sums state")) };
    let dev = sums.device();
    let s = host_f64(sums)?;
    let scalar = |v: f64| result(&[v], false, dev);
    match kind {
        Kind::MeanSquaredError { squared } => {
            let m = s[0] / s[1];
            scalar(if *squared { m } else { m.sqrt() })
        }
        Kind::MeanAbsoluteError | Kind::Mean { .. } => scalar(s[0] / s[1]),
        Kind::Perplexity { .. } => scalar((s[0] / s[1]).exp()),
        Kind::R2Score { adjusted, multioutput } => {
            let outputs = s.len() / 4;
            let row = |r: usize| &s[r * outputs..(r + 1) * outputs];
            let (sq, sum, rss, n) = (row(0), row(1), row(2), row(3)[0]);
            if n < 2.0 {
                return Err(tensor_err!("Needs at least two samples to calculate r2 score."));
            }
            let tss: Vec<f64> = (0..outputs).map(|i| sq[i] - sum[i] * (sum[i] / n)).collect();
            let raw: Vec<f64> = (0..outputs)
                .map(|i| match (rss[i].abs() > 1e-4, tss[i].abs() > 1e-4) {
                    (true, true) => 1.0 - rss[i] / tss[i],
                    (true, false) => 0.0,
                    _ => 1.0,
                })
                .collect();
            let r2 = match multioutput {
                Multioutput::RawValues => {
                    let vector = sums.dim() == 2;
                    let raw = adjust_all(&raw, *adjusted, n);
                    return result(&raw, vector, dev);
                }
                Multioutput::UniformAverage => raw.iter().sum::<f64>() / outputs as f64,
                Multioutput::VarianceWeighted => {
                    let total: f64 = tss.iter().sum();
                    (0..outputs).map(|i| tss[i] / total * raw[i]).sum()
                }
            };
            scalar(adjust_all(&[r2], *adjusted, n)[0])
        }
        Kind::PearsonCorrcoef => {
            let (min, max) = match (min, max) {
                (Some(a), Some(b)) => (host_f64(a)?, host_f64(b)?),
                _ => return Err(tensor_err!("internal: pearson state without extremes")),
            };
            let [n, sx, sy, sxx, syy, sxy] = [s[0], s[1], s[2], s[3], s[4], s[5]];
            let (mx, my) = (sx / n, sy / n);
            let dev_x = (max[0] - mx).max(mx - min[0]);
            let dev_y = (max[1] - my).max(my - min[1]);
            let var_x = (sxx - sx * mx) / (n - 1.0) / (dev_x * dev_x);
            let var_y = (syy - sy * my) / (n - 1.0) / (dev_y * dev_y);
            let cov = (sxy - sx * my) / (n - 1.0) / (dev_x * dev_y);
            // torchmetrics' check for a (nearly) constant input: NaN rather than a wrong value
            let bound = (f32::EPSILON as f64).sqrt();
            let bad = |v: f64| !v.is_finite() || v < bound;
            if bad(var_x) || bad(var_y) || !cov.is_finite() {
                return scalar(f64::NAN);
            }
            scalar((cov / (var_x * var_y).sqrt()).clamp(-1.0, 1.0))
        }
        other => Err(tensor_err!("internal: {other:?} is not a regression metric")),
    }
}

/// Adjusted R² (`1 − (1 − r²)(n − 1)/(n − k − 1)`), standard R² when k ≥ n − 1 (as torchmetrics).
fn adjust_all(r2: &[f64], k: i64, n: f64) -> Vec<f64> {
    let k = k as f64;
    if k == 0.0 || k >= n - 1.0 {
        return r2.to_vec();
    }
    r2.iter().map(|r| 1.0 - (1.0 - r) * (n - 1.0) / (n - k - 1.0)).collect()
}

//! Functional forms (`torch.nn.functional`): losses, dropout, padding, one-hot, normalize,
//! interpolate, embedding lookup and scaled dot-product attention, over ATen's own ops.
use crate::tensor::Result;
use crate::tensor_err;
use tch::Reduction;

/// Parses PyTorch's `reduction` keyword.
pub fn reduction(s: &str) -> Result<Reduction> {
    match s {
        "mean" => Ok(Reduction::Mean),
        "sum" => Ok(Reduction::Sum),
        "none" => Ok(Reduction::None),
        other => {
            Err(tensor_err!("{other} is not a valid value for reduction (expected \"mean\", \"sum\" or \"none\")"))
        }
    }
}

/// Options of `cross_entropy` / `nll_loss`.
pub struct ClassLossOpts {
    pub weight: Option<tch::Tensor>,
    pub ignore_index: i64,
    pub reduction: Reduction,
    pub label_smoothing: f64,
}

impl Default for ClassLossOpts {
    fn default() -> Self {
        ClassLossOpts { weight: None, ignore_index: -100, reduction: Reduction::Mean, label_smoothing: 0.0 }
    }
}

/// Cross entropy between logits `input` (N, C, …) and class indices (N, …) or class
/// probabilities (same shape as `input`).
pub fn cross_entropy(input: &tch::Tensor, target: &tch::Tensor, o: &ClassLossOpts) -> Result<tch::Tensor> {
    if !(0.0..=1.0).contains(&o.label_smoothing) {
        return Err(tensor_err!("label_smoothing must be between 0.0 and 1.0. Got: {}", o.label_smoothing));
    }
    Ok(input.f_cross_entropy_loss(target, o.weight.as_ref(), o.reduction, o.ignore_index, o.label_smoothing)?)
}

/// Negative log likelihood of log-probabilities `input` (N, C, …) at class indices `target`.
pub fn nll_loss(input: &tch::Tensor, target: &tch::Tensor, o: &ClassLossOpts) -> Result<tch::Tensor> {
    if input.dim() > 2 {
        // ATen's nll_loss takes (N, C); nll_loss_nd handles (N, C, d1, …)
        return Ok(input.f_nll_loss_nd(target, o.weight.as_ref(), o.reduction, o.ignore_index)?);
    }
    Ok(input.f_nll_loss(target, o.weight.as_ref(), o.reduction, o.ignore_index)?)
}

fn same_shape(input: &tch::Tensor, target: &tch::Tensor, what: &str) -> Result<()> {
    if input.size() != target.size() {
        return Err(tensor_err!(
            "{what}: target size {:?} must be the same as input size {:?}",
            target.size(),
            input.size()
        ));
    }
    Ok(())
}

pub fn mse_loss(input: &tch::Tensor, target: &tch::Tensor, r: Reduction) -> Result<tch::Tensor> {
    Ok(input.f_mse_loss(target, r)?)
}

pub fn l1_loss(input: &tch::Tensor, target: &tch::Tensor, r: Reduction) -> Result<tch::Tensor> {
    Ok(input.f_l1_loss(target, r)?)
}

pub fn smooth_l1_loss(input: &tch::Tensor, target: &tch::Tensor, r: Reduction, beta: f64) -> Result<tch::Tensor> {
    if beta < 0.0 {
        return Err(tensor_err!("smooth_l1_loss does not support negative values for beta."));
    }
    Ok(input.f_smooth_l1_loss(target, r, beta)?)
}

pub fn huber_loss(input: &tch::Tensor, target: &tch::Tensor, r: Reduction, delta: f64) -> Result<tch::Tensor> {
    if delta <= 0.0 {
        return Err(tensor_err!("huber_loss does not support non-positive values for delta."));
    }
    Ok(input.f_huber_loss(target, r, delta)?)
}

/// Binary cross entropy of probabilities `input` against `target` (same shape).
pub fn binary_cross_entropy(
    input: &tch::Tensor,
    target: &tch::Tensor,
    weight: Option<&tch::Tensor>,
    r: Reduction,
) -> Result<tch::Tensor> {
    same_shape(input, target, "binary_cross_entropy")?;
    Ok(input.f_binary_cross_entropy(target, weight, r)?)
}

/// Binary cross entropy on logits (numerically stable), with optional `pos_weight` per class.
pub fn binary_cross_entropy_with_logits(
    input: &tch::Tensor,
    target: &tch::Tensor,
    weight: Option<&tch::Tensor>,
    pos_weight: Option<&tch::Tensor>,
    r: Reduction,
) -> Result<tch::Tensor> {
    same_shape(input, target, "binary_cross_entropy_with_logits")?;
    Ok(input.f_binary_cross_entropy_with_logits(target, weight, pos_weight, r)?)
}

/// KL divergence with `input` as log-probabilities; `reduction` may also be `"batchmean"`.
pub fn kl_div(
    input: &tch::Tensor,
    target: &tch::Tensor,
    reduction_name: &str,
    log_target: bool,
) -> Result<tch::Tensor> {
    if reduction_name == "batchmean" {
        let s = input.f_kl_div(target, Reduction::Sum, log_target)?;
        let n = if input.dim() > 0 { input.size()[0] } else { 1 };
        return Ok(s.f_div_scalar(n as f64)?);
    }
    Ok(input.f_kl_div(target, reduction(reduction_name)?, log_target)?)
}

/// Zeroes elements with probability `p` and scales the rest by 1/(1-p) when `training`.
pub fn dropout(x: &tch::Tensor, p: f64, training: bool) -> Result<tch::Tensor> {
    check_p(p)?;
    Ok(x.f_dropout(p, training)?)
}

/// Dropout in place (`F.dropout(x, inplace=True)`): `x` itself is changed and returned.
pub fn dropout_(x: &tch::Tensor, p: f64, training: bool) -> Result<tch::Tensor> {
    check_p(p)?;
    let mut y = x.shallow_clone();
    Ok(y.f_dropout_(p, training)?)
}

pub fn check_p(p: f64) -> Result<()> {
    if !(0.0..=1.0).contains(&p) {
        return Err(tensor_err!("dropout probability has to be between 0 and 1, but got {p}"));
    }
    Ok(())
}

/// Pads the last dimensions: `pad` = [left, right, top, bottom, …]; modes "constant",
/// "reflect", "replicate", "circular".
pub fn pad(x: &tch::Tensor, pad: &[i64], mode: &str, value: f64) -> Result<tch::Tensor> {
    if !pad.len().is_multiple_of(2) {
        return Err(tensor_err!("Padding length must be divisible by 2, got {}", pad.len()));
    }
    if !matches!(mode, "constant" | "reflect" | "replicate" | "circular") {
        return Err(tensor_err!(
            "Unrecognised padding mode {mode} (expected constant, reflect, replicate or circular)"
        ));
    }
    let value = if mode == "constant" { Some(value) } else { None };
    Ok(x.f_pad(pad, mode, value)?)
}

pub fn one_hot(x: &tch::Tensor, num_classes: i64) -> Result<tch::Tensor> {
    Ok(x.f_one_hot(num_classes)?)
}

/// `x / max(‖x‖_p, eps)` along `dim`.
pub fn normalize(x: &tch::Tensor, p: f64, dim: i64, eps: f64) -> Result<tch::Tensor> {
    let denom = x.f_norm_scalaropt_dim(p, [dim], true)?.f_clamp_min(eps)?.f_expand_as(x)?;
    Ok(x.f_div(&denom)?)
}

/// Resizes the spatial dims of (N, C, …) input to `size`, or by `scale` (output = floor(in·scale)).
pub fn interpolate(
    x: &tch::Tensor,
    size: Option<&[i64]>,
    scale: Option<&[f64]>,
    mode: &str,
    align_corners: Option<bool>,
) -> Result<tch::Tensor> {
    let sp = x.dim() as i64 - 2;
    if sp < 1 {
        return Err(tensor_err!(
            "interpolate: expected an input of shape (N, C, …) with at least one spatial dim, got {:?}",
            x.size()
        ));
    }
    let in_sp: Vec<i64> = x.size()[2..].to_vec();
    let expand_f = |v: &[f64]| -> Result<Vec<f64>> {
        match v.len() {
            1 => Ok(vec![v[0]; sp as usize]),
            n if n as i64 == sp => Ok(v.to_vec()),
            n => Err(tensor_err!("interpolate: scale_factor has {n} values for {sp} spatial dims")),
        }
    };
    let (out, scales): (Vec<i64>, Vec<Option<f64>>) = match (size, scale) {
        (Some(s), None) => {
            let s = match s.len() {
                1 => vec![s[0]; sp as usize],
                n if n as i64 == sp => s.to_vec(),
                n => return Err(tensor_err!("interpolate: size has {n} values for {sp} spatial dims")),
            };
            (s, vec![None; sp as usize])
        }
        (None, Some(f)) => {
            let f = expand_f(f)?;
            (
                in_sp.iter().zip(&f).map(|(i, s)| (*i as f64 * s).floor() as i64).collect(),
                f.into_iter().map(Some).collect(),
            )
        }
        _ => return Err(tensor_err!("interpolate: give exactly one of size and scale_factor")),
    };
    let linear = matches!(mode, "linear" | "bilinear" | "bicubic" | "trilinear");
    if align_corners.is_some() && !linear {
        return Err(tensor_err!("align_corners option can only be set with the interpolating modes: linear | bilinear | bicubic | trilinear"));
    }
    let ac = align_corners.unwrap_or(false);
    Ok(match (mode, sp) {
        ("nearest", 1) => x.f_upsample_nearest1d(&out, scales[0])?,
        ("nearest", 2) => x.f_upsample_nearest2d(&out, scales[0], scales[1])?,
        ("nearest", 3) => x.f_upsample_nearest3d(&out, scales[0], scales[1], scales[2])?,
        ("linear", 1) => x.f_upsample_linear1d(&out, ac, scales[0])?,
        ("bilinear", 2) => x.f_upsample_bilinear2d(&out, ac, scales[0], scales[1])?,
        ("bicubic", 2) => x.f_upsample_bicubic2d(&out, ac, scales[0], scales[1])?,
        ("trilinear", 3) => x.f_upsample_trilinear3d(&out, ac, scales[0], scales[1], scales[2])?,
        (m, n) => {
            return Err(tensor_err!(
                "interpolate: mode '{m}' does not apply to {}D input (nearest: 3-5D, linear: 3D, bilinear/bicubic: 4D, trilinear: 5D)",
                n + 2
            ))
        }
    })
}

/// Rows of `weight` at `indices`; the `padding_idx` row gets no gradient.
pub fn embedding(indices: &tch::Tensor, weight: &tch::Tensor, padding_idx: Option<i64>) -> Result<tch::Tensor> {
    let n = weight.size().first().copied().unwrap_or(0);
    let pi = match padding_idx {
        Some(p) if p >= n || p < -n => {
            return Err(tensor_err!("Padding_idx must be within num_embeddings ({n}), got {p}"))
        }
        Some(p) if p < 0 => n + p,
        Some(p) => p,
        None => -1,
    };
    if crate::tensor::options::is_floating(indices.kind()) {
        return Err(tensor_err!("embedding: indices must be an integer tensor, got {:?}", indices.kind()));
    }
    Ok(tch::Tensor::f_embedding(weight, indices, pi, false, false)?)
}

/// The options of [`scaled_dot_product_attention`] (PyTorch's keywords and defaults).
#[derive(Default)]
pub struct AttentionOptions {
    pub attn_mask: Option<tch::Tensor>,
    pub dropout_p: f64,
    pub is_causal: bool,
    /// Default 1/√d.
    pub scale: Option<f64>,
    /// Key/value with fewer heads than the query, each serving a group of query heads.
    pub enable_gqa: bool,
}

/// softmax(QKᵀ·scale + mask)·V with optional causal masking and dropout.
pub fn scaled_dot_product_attention(
    q: &tch::Tensor,
    k: &tch::Tensor,
    v: &tch::Tensor,
    o: &AttentionOptions,
) -> Result<tch::Tensor> {
    check_p(o.dropout_p)?;
    if o.attn_mask.is_some() && o.is_causal {
        return Err(tensor_err!("scaled_dot_product_attention: give attn_mask or is_causal, not both"));
    }
    Ok(tch::Tensor::f_scaled_dot_product_attention(
        q,
        k,
        v,
        o.attn_mask.as_ref(),
        o.dropout_p,
        o.is_causal,
        o.scale,
        o.enable_gqa,
    )?)
}

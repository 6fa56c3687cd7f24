//! `nn.Linear`, `nn.Bilinear`, `nn.Identity`, `nn.Flatten`, `nn.Unflatten`.
use super::{empty, expect_dim, Opts};
use crate::nn::init;
use crate::tensor::Result;

/// Linear weights as PyTorch draws them: weight ~ kaiming_uniform(a=√5) (that is
/// U(-1/√in, 1/√in)), then bias ~ U(-1/√in, 1/√in).
pub fn init(in_features: i64, out_features: i64, bias: bool, o: Opts) -> Result<(tch::Tensor, Option<tch::Tensor>)> {
    let w = empty(&[out_features, in_features], o)?;
    init::kaiming_uniform_(&w, 5f64.sqrt(), "fan_in", "leaky_relu")?;
    let b = if bias {
        let b = empty(&[out_features], o)?;
        let bound = if in_features > 0 { 1.0 / (in_features as f64).sqrt() } else { 0.0 };
        init::uniform_(&b, -bound, bound)?;
        Some(b)
    } else {
        None
    };
    Ok((w, b))
}

/// `x @ wᵀ + b` over the last dimension.
pub fn forward(x: &tch::Tensor, w: &tch::Tensor, b: Option<&tch::Tensor>) -> Result<tch::Tensor> {
    expect_dim(x, -1, w.size().get(1).copied().unwrap_or(0), "last dim")?;
    Ok(x.f_linear(w, b)?)
}

/// Bilinear weights: weight (out, in1, in2) and bias ~ U(-1/√in1, 1/√in1).
pub fn bilinear_init(in1: i64, in2: i64, out: i64, bias: bool, o: Opts) -> Result<(tch::Tensor, Option<tch::Tensor>)> {
    let bound = if in1 > 0 { 1.0 / (in1 as f64).sqrt() } else { 0.0 };
    let w = empty(&[out, in1, in2], o)?;
    init::uniform_(&w, -bound, bound)?;
    let b = if bias {
        let b = empty(&[out], o)?;
        init::uniform_(&b, -bound, bound)?;
        Some(b)
    } else {
        None
    };
    Ok((w, b))
}

/// `y = x1ᵀ A x2 + b`.
pub fn bilinear(x1: &tch::Tensor, x2: &tch::Tensor, w: &tch::Tensor, b: Option<&tch::Tensor>) -> Result<tch::Tensor> {
    let s = w.size();
    expect_dim(x1, -1, s[1], "input1 last dim")?;
    expect_dim(x2, -1, s[2], "input2 last dim")?;
    Ok(tch::Tensor::f_bilinear(x1, x2, w, b)?)
}

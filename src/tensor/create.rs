//! Tensor creation with PyTorch's defaults: float32 for floating values, int64 for integers.
use super::options::TensorOptions;
use super::{Result, Tensor};
use crate::tensor_err;
use tch::Kind;

/// Flat values of a nested literal, with the element type PyTorch would infer.
pub enum Literal {
    Float(Vec<f64>),
    Int(Vec<i64>),
    Bool(Vec<bool>),
}

/// `torch.tensor(data)` from flat values and a shape.
pub fn from_literal(lit: Literal, shape: &[i64], opts: &TensorOptions) -> Result<Tensor> {
    let t = match lit {
        Literal::Float(v) => tch::Tensor::f_from_slice(&v)?.f_to_kind(opts.kind_or(Kind::Float))?,
        Literal::Int(v) => tch::Tensor::f_from_slice(&v)?.f_to_kind(opts.kind_or(Kind::Int64))?,
        Literal::Bool(v) => {
            let b: Vec<u8> = v.into_iter().map(u8::from).collect();
            tch::Tensor::f_from_slice(&b)?.f_to_kind(opts.kind_or(Kind::Bool))?
        }
    };
    let t = t.f_reshape(shape)?.f_to_device(opts.device)?;
    Ok(Tensor::new(opts.finish(t)?))
}

fn check_shape(shape: &[i64]) -> Result<()> {
    if let Some(d) = shape.iter().find(|d| **d < 0) {
        return Err(tensor_err!("negative dimension {d} in shape {shape:?}"));
    }
    Ok(())
}

fn opts_tuple(o: &TensorOptions) -> (Kind, tch::Device) {
    (o.kind(), o.device)
}

pub fn zeros(shape: &[i64], o: &TensorOptions) -> Result<Tensor> {
    check_shape(shape)?;
    Ok(Tensor::new(o.finish(tch::Tensor::f_zeros(shape, opts_tuple(o))?)?))
}

pub fn ones(shape: &[i64], o: &TensorOptions) -> Result<Tensor> {
    check_shape(shape)?;
    Ok(Tensor::new(o.finish(tch::Tensor::f_ones(shape, opts_tuple(o))?)?))
}

pub fn empty(shape: &[i64], o: &TensorOptions) -> Result<Tensor> {
    check_shape(shape)?;
    Ok(Tensor::new(o.finish(tch::Tensor::f_empty(shape, opts_tuple(o))?)?))
}

/// `torch.full(shape, value)`: dtype inferred from the value (int → int64) unless given.
pub fn full(shape: &[i64], value: f64, value_is_int: bool, o: &TensorOptions) -> Result<Tensor> {
    check_shape(shape)?;
    let kind = o.dtype.unwrap_or(if value_is_int { Kind::Int64 } else { Kind::Float });
    Ok(Tensor::new(o.finish(tch::Tensor::f_full(shape, value, (kind, o.device))?)?))
}

/// `torch.arange(start, end, step)`: int64 when every bound is an int, else float32.
pub fn arange(start: f64, end: f64, step: f64, all_int: bool, o: &TensorOptions) -> Result<Tensor> {
    if step == 0.0 {
        return Err(tensor_err!("arange: step must be nonzero"));
    }
    if (end - start) * step < 0.0 {
        return Err(tensor_err!("arange: upper bound and larger bound inconsistent with step sign"));
    }
    let kind = o.dtype.unwrap_or(if all_int { Kind::Int64 } else { Kind::Float });
    let t = tch::Tensor::f_arange_start_step(start, end, step, (kind, o.device))?;
    Ok(Tensor::new(o.finish(t)?))
}

pub fn linspace(start: f64, end: f64, steps: i64, o: &TensorOptions) -> Result<Tensor> {
    if steps < 0 {
        return Err(tensor_err!("linspace: number of steps must be non-negative, got {steps}"));
    }
    Ok(Tensor::new(o.finish(tch::Tensor::f_linspace(start, end, steps, opts_tuple(o))?)?))
}

pub fn eye(n: i64, m: i64, o: &TensorOptions) -> Result<Tensor> {
    if n < 0 || m < 0 {
        return Err(tensor_err!("eye: n and m must be non-negative, got {n} and {m}"));
    }
    Ok(Tensor::new(o.finish(tch::Tensor::f_eye_m(n, m, opts_tuple(o))?)?))
}

pub fn rand(shape: &[i64], o: &TensorOptions) -> Result<Tensor> {
    check_shape(shape)?;
    Ok(Tensor::new(o.finish(tch::Tensor::f_rand(shape, opts_tuple(o))?)?))
}

pub fn randn(shape: &[i64], o: &TensorOptions) -> Result<Tensor> {
    check_shape(shape)?;
    Ok(Tensor::new(o.finish(tch::Tensor::f_randn(shape, opts_tuple(o))?)?))
}

pub fn randint(low: i64, high: i64, shape: &[i64], o: &TensorOptions) -> Result<Tensor> {
    check_shape(shape)?;
    if high <= low {
        return Err(tensor_err!("randint: expected low < high, got low={low}, high={high}"));
    }
    let kind = o.kind_or(Kind::Int64);
    Ok(Tensor::new(o.finish(tch::Tensor::f_randint_low(low, high, shape, (kind, o.device))?)?))
}

pub fn randperm(n: i64, o: &TensorOptions) -> Result<Tensor> {
    if n < 0 {
        return Err(tensor_err!("randperm: n must be non-negative, got {n}"));
    }
    let kind = o.kind_or(Kind::Int64);
    Ok(Tensor::new(o.finish(tch::Tensor::f_randperm(n, (kind, o.device))?)?))
}

/// Options of a `*_like` call: the source's dtype and device unless overridden.
pub fn like_opts(t: &Tensor, o: &TensorOptions, dtype_given: bool, device_given: bool) -> TensorOptions {
    TensorOptions {
        dtype: if dtype_given { o.dtype } else { Some(t.kind()) },
        device: if device_given { o.device } else { t.device() },
        requires_grad: o.requires_grad,
    }
}

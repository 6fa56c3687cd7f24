//! Python-style indexing on the first dimension: `x[i]` (negative counts from the end),
//! `x[a..b]` (clamped like a Python slice), `x[mask]` / `x[idx]` (boolean mask or integer index
//! tensor), and the matching assignments, which write through to the shared storage.
use super::{Result, Tensor};
use crate::tensor_err;

/// Resolves a possibly negative index against `size`, with PyTorch's error message.
pub fn wrap_index(i: i64, size: i64, dim: i64) -> Result<i64> {
    let j = if i < 0 { i + size } else { i };
    if j < 0 || j >= size {
        return Err(tensor_err!("index {i} is out of bounds for dimension {dim} with size {size}"));
    }
    Ok(j)
}

/// Python slice clamping of `start..end` on a dimension of `size` (negatives count from the end).
pub fn clamp_range(start: i64, end: i64, size: i64) -> (i64, i64) {
    let fix = |v: i64| -> i64 {
        let v = if v < 0 { v + size } else { v };
        v.clamp(0, size)
    };
    let (s, e) = (fix(start), fix(end));
    (s, e.max(s))
}

fn check_dim(t: &Tensor) -> Result<i64> {
    if t.dim() == 0 {
        return Err(tensor_err!("invalid index of a 0-dim tensor; use item() to get its value"));
    }
    Ok(t.size()[0])
}

/// `x[i]`.
pub fn get_int(t: &Tensor, i: i64) -> Result<Tensor> {
    let n = check_dim(t)?;
    Ok(Tensor::new(t.f_select(0, wrap_index(i, n, 0)?)?))
}

/// `x[a..b]`.
pub fn get_range(t: &Tensor, start: i64, end: i64) -> Result<Tensor> {
    let n = check_dim(t)?;
    let (s, e) = clamp_range(start, end, n);
    Ok(Tensor::new(t.f_slice(0, s, e, 1)?))
}

/// `x[mask]` (bool) or `x[idx]` (integer tensor).
pub fn get_tensor(t: &Tensor, idx: &Tensor) -> Result<Tensor> {
    check_index_tensor(idx)?;
    Ok(Tensor::new(t.f_index(&[Some(idx.0.shallow_clone())])?))
}

fn check_index_tensor(idx: &Tensor) -> Result<()> {
    match idx.kind() {
        tch::Kind::Bool | tch::Kind::Int64 | tch::Kind::Int | tch::Kind::Uint8 => Ok(()),
        k => Err(tensor_err!(
            "tensors used as indices must be bool or integer tensors, got {}",
            super::options::dtype_name(k)
        )),
    }
}

/// Copies `value` (broadcast) into `dst` in place; autograd records it as PyTorch does.
fn assign(dst: &mut tch::Tensor, value: &tch::Tensor) -> Result<()> {
    let v = value.f_to_kind(dst.kind())?.f_to_device(dst.device())?;
    dst.f_copy_(&v)?;
    Ok(())
}

/// `x[i] = v`.
pub fn set_int(t: &Tensor, i: i64, value: &tch::Tensor) -> Result<()> {
    let mut row = get_int(t, i)?.handle();
    assign(&mut row, value)
}

/// `x[a..b] = v`.
pub fn set_range(t: &Tensor, start: i64, end: i64, value: &tch::Tensor) -> Result<()> {
    let mut part = get_range(t, start, end)?.handle();
    assign(&mut part, value)
}

/// `x[mask] = v` / `x[idx] = v`.
pub fn set_tensor(t: &Tensor, idx: &Tensor, value: &tch::Tensor) -> Result<()> {
    check_index_tensor(idx)?;
    let v = value.f_to_kind(t.kind())?.f_to_device(t.device())?;
    let mut dst = t.0.shallow_clone();
    let _ = dst.f_index_put_(&[Some(idx.0.shallow_clone())], &v, false)?;
    Ok(())
}

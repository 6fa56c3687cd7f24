//! Layer math in plain Rust over `tch::Tensor`s: each file has the layer's default
//! initialization (the same draws as PyTorch's `reset_parameters`) and its forward through
//! ATen's own ops. Shape problems come back as `TensorError`s saying what was expected; the
//! script surface prefixes the layer's path and configuration.
pub mod activation;
pub mod attention;
pub mod conv;
pub mod embedding;
pub mod linear;
pub mod norm;
pub mod pool;
pub mod resample;
pub mod rnn;

use crate::tensor::Result;
use crate::tensor_err;

/// Options for new parameters: dtype and device.
pub type Opts = (tch::Kind, tch::Device);

/// An uninitialized parameter tensor.
pub fn empty(shape: &[i64], o: Opts) -> Result<tch::Tensor> {
    Ok(tch::Tensor::f_empty(shape, o)?)
}

/// Checks that `x` has `dim` as its size at `axis` (negative counts from the end).
pub fn expect_dim(x: &tch::Tensor, axis: i64, want: i64, what: &str) -> Result<()> {
    let s = x.size();
    let n = s.len() as i64;
    let i = if axis < 0 { n + axis } else { axis };
    if i < 0 || i >= n {
        return Err(tensor_err!("expected {what} {want}, got an input of shape {s:?}"));
    }
    if s[i as usize] != want {
        return Err(tensor_err!("expected {what} {want}, got {} (input shape {s:?})", s[i as usize]));
    }
    Ok(())
}

/// Checks the number of dimensions of `x` against the accepted ones.
pub fn expect_ndim(x: &tch::Tensor, accepted: &[usize], what: &str) -> Result<()> {
    let n = x.dim();
    if accepted.contains(&n) {
        return Ok(());
    }
    let list = accepted.iter().map(|d| format!("{d}D")).collect::<Vec<_>>().join(" or ");
    Err(tensor_err!("expected {list} input {what}, got {n}D input of shape {:?}", x.size()))
}

//! `nn.Embedding`.
use super::{empty, Opts};
use crate::nn::init;
use crate::tensor::Result;
use crate::tensor_err;

/// Weight ~ N(0, 1) with the `padding_idx` row zeroed, as `Embedding.reset_parameters`.
/// Returns the weight and the padding index made non-negative.
pub fn init(num: i64, dim: i64, padding_idx: Option<i64>, o: Opts) -> Result<(tch::Tensor, Option<i64>)> {
    let pi = match padding_idx {
        Some(p) if p >= num || p < -num => {
            return Err(tensor_err!("Padding_idx must be within num_embeddings ({num}), got {p}"))
        }
        Some(p) if p < 0 => Some(num + p),
        p => p,
    };
    let w = empty(&[num, dim], o)?;
    init::normal_(&w, 0.0, 1.0)?;
    if let Some(p) = pi {
        let _g = tch::no_grad_guard();
        let _ = w.f_get(p)?.f_fill_(0.0)?;
    }
    Ok((w, pi))
}

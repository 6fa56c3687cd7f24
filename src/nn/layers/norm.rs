//! Normalization: `nn.BatchNorm1d/2d`, `nn.LayerNorm`, `nn.GroupNorm`, `nn.RMSNorm`.
use super::{expect_ndim, Opts};
use crate::tensor::Result;
use crate::tensor_err;

/// BatchNorm parameters and buffers: weight 1, bias 0, running_mean 0, running_var 1,
/// num_batches_tracked 0 (int64).
pub struct BatchNormState {
    pub weight: Option<tch::Tensor>,
    pub bias: Option<tch::Tensor>,
    pub running_mean: Option<tch::Tensor>,
    pub running_var: Option<tch::Tensor>,
    pub num_batches_tracked: Option<tch::Tensor>,
}

pub fn batch_norm_init(num_features: i64, affine: bool, track: bool, o: Opts) -> Result<BatchNormState> {
    let (w, b) = if affine {
        (Some(tch::Tensor::f_ones([num_features], o)?), Some(tch::Tensor::f_zeros([num_features], o)?))
    } else {
        (None, None)
    };
    let (rm, rv, nbt) = if track {
        (
            Some(tch::Tensor::f_zeros([num_features], o)?),
            Some(tch::Tensor::f_ones([num_features], o)?),
            Some(tch::Tensor::f_zeros([] as [i64; 0], (tch::Kind::Int64, o.1))?),
        )
    } else {
        (None, None, None)
    };
    Ok(BatchNormState { weight: w, bias: b, running_mean: rm, running_var: rv, num_batches_tracked: nbt })
}

/// BatchNorm forward as `_BatchNorm.forward`: batch statistics in training (updating the running
/// ones with `momentum`, or a cumulative average when it is `None`), running statistics in eval.
/// With `track_running_stats` off (also when turned off on a layer that has running statistics)
/// training neither counts batches nor updates the running statistics, and eval still uses them
/// when they exist.
#[allow(clippy::too_many_arguments)]
pub fn batch_norm(
    x: &tch::Tensor,
    accepted_dims: &[usize],
    num_features: i64,
    s: &BatchNormState,
    training: bool,
    track_running_stats: bool,
    momentum: Option<f64>,
    eps: f64,
) -> Result<tch::Tensor> {
    expect_ndim(x, accepted_dims, "")?;
    let c = x.size()[1];
    if c != num_features {
        return Err(tensor_err!(
            "expected input with {num_features} channels (dim 1), got {c} (input shape {:?})",
            x.size()
        ));
    }
    let mut factor = momentum.unwrap_or(0.0);
    if training && track_running_stats {
        if let Some(n) = &s.num_batches_tracked {
            let _g = tch::no_grad_guard();
            let _ = n.shallow_clone().f_add_scalar_(1)?;
            if momentum.is_none() {
                factor = 1.0 / n.f_double_value(&[])?;
            }
        }
    }
    let use_batch_stats = training || (s.running_mean.is_none() && s.running_var.is_none());
    if use_batch_stats {
        let n: i64 = x.size().iter().enumerate().filter(|(i, _)| *i != 1).map(|(_, v)| *v).product();
        if n <= 1 {
            return Err(tensor_err!(
                "Expected more than 1 value per channel when training, got input size {:?}",
                x.size()
            ));
        }
    }
    // the running statistics are read in eval, and updated in training only when tracked
    let running = !training || track_running_stats;
    Ok(x.f_batch_norm(
        s.weight.as_ref(),
        s.bias.as_ref(),
        s.running_mean.as_ref().filter(|_| running),
        s.running_var.as_ref().filter(|_| running),
        use_batch_stats,
        factor,
        eps,
        true,
    )?)
}

/// Checks that the trailing dims of `x` are `shape`.
pub fn expect_trailing(x: &tch::Tensor, shape: &[i64]) -> Result<()> {
    let s = x.size();
    if s.len() < shape.len() || s[s.len() - shape.len()..] != *shape {
        return Err(tensor_err!("expected input with trailing dims {shape:?}, got input of shape {s:?}"));
    }
    Ok(())
}

pub fn layer_norm(
    x: &tch::Tensor,
    shape: &[i64],
    w: Option<&tch::Tensor>,
    b: Option<&tch::Tensor>,
    eps: f64,
) -> Result<tch::Tensor> {
    expect_trailing(x, shape)?;
    Ok(x.f_layer_norm(shape, w, b, eps, true)?)
}

pub fn group_norm(
    x: &tch::Tensor,
    groups: i64,
    channels: i64,
    w: Option<&tch::Tensor>,
    b: Option<&tch::Tensor>,
    eps: f64,
) -> Result<tch::Tensor> {
    if x.dim() < 2 || x.size()[1] != channels {
        return Err(tensor_err!("expected input with {channels} channels (dim 1), got input of shape {:?}", x.size()));
    }
    Ok(x.f_group_norm(groups, w, b, eps, true)?)
}

pub fn rms_norm(x: &tch::Tensor, shape: &[i64], w: Option<&tch::Tensor>, eps: Option<f64>) -> Result<tch::Tensor> {
    expect_trailing(x, shape)?;
    Ok(x.f_rms_norm(shape, w, eps)?)
}

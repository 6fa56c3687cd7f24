//! Adam and AdamW (decoupled weight decay), with amsgrad and maximize
//! (PyTorch's `_single_tensor_adam`; AdamW is the same rule with `decoupled_weight_decay`).
use super::aten;
use super::{zeros_like, ParamGroup, ParamState, TchResult};
use tch::Tensor;

pub fn step(
    group: &ParamGroup,
    state: &mut ParamState,
    p: &Tensor,
    grad: &Tensor,
    decoupled: bool,
) -> Result<(), String> {
    let (lr, eps, wd) = (group.f("lr")?, group.f("eps")?, group.f("weight_decay")?);
    let (beta1, beta2) = group.pair("betas")?;
    let (amsgrad, maximize) = (group.b("amsgrad")?, group.b("maximize")?);
    if state.buffers.is_empty() {
        state.step = 0.0;
        state.buffers.insert("exp_avg".into(), zeros_like(p)?);
        state.buffers.insert("exp_avg_sq".into(), zeros_like(p)?);
    }
    if amsgrad && !state.buffers.contains_key("max_exp_avg_sq") {
        state.buffers.insert("max_exp_avg_sq".into(), zeros_like(p)?);
    }
    let mut g = if maximize { grad.f_neg().e()? } else { grad.shallow_clone() };
    state.step += 1.0;
    let step = state.step;
    if wd != 0.0 {
        if decoupled {
            let mut p = p.shallow_clone();
            let _ = p.f_mul_scalar_(1.0 - lr * wd).e()?;
        } else {
            g = aten::add(&g, p, wd).e()?;
        }
    }
    let mut exp_avg = state.buf("exp_avg")?.shallow_clone();
    let mut exp_avg_sq = state.buf("exp_avg_sq")?.shallow_clone();
    let _ = exp_avg.f_lerp_(&g, 1.0 - beta1).e()?;
    let _ = exp_avg_sq.f_mul_scalar_(beta2).e()?;
    aten::addcmul_(&exp_avg_sq, &g, &g, 1.0 - beta2).e()?;
    let bias_correction1 = 1.0 - beta1.powf(step);
    let bias_correction2 = 1.0 - beta2.powf(step);
    let step_size = lr / bias_correction1;
    let bias_correction2_sqrt = bias_correction2.powf(0.5);
    let mut denom = if amsgrad {
        let max = state.buf("max_exp_avg_sq")?;
        let _ = max.f_maximum_out(max, &exp_avg_sq).e()?;
        max.f_sqrt().e()?.f_div_scalar(bias_correction2_sqrt).e()?
    } else {
        exp_avg_sq.f_sqrt().e()?.f_div_scalar(bias_correction2_sqrt).e()?
    };
    let _ = denom.f_add_scalar_(eps).e()?;
    aten::addcdiv_(p, &exp_avg, &denom, -step_size).e()
}

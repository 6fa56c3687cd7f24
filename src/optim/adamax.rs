//! Adamax (Adam with the infinity norm) with weight decay and maximize
//! (PyTorch's `_single_tensor_adamax`).
use super::aten;
use super::{zeros_like, ParamGroup, ParamState, TchResult};
use tch::Tensor;

pub fn step(group: &ParamGroup, state: &mut ParamState, p: &Tensor, grad: &Tensor) -> Result<(), String> {
    let (lr, eps, wd) = (group.f("lr")?, group.f("eps")?, group.f("weight_decay")?);
    let (beta1, beta2) = group.pair("betas")?;
    let maximize = group.b("maximize")?;
    if state.buffers.is_empty() {
        state.step = 0.0;
        state.buffers.insert("exp_avg".into(), zeros_like(p)?);
        state.buffers.insert("exp_inf".into(), zeros_like(p)?);
    }
    let mut g = if maximize { grad.f_neg().e()? } else { grad.shallow_clone() };
    state.step += 1.0;
    if wd != 0.0 {
        g = aten::add(&g, p, wd).e()?;
    }
    let mut exp_avg = state.buf("exp_avg")?.shallow_clone();
    let mut exp_inf = state.buf("exp_inf")?.shallow_clone();
    let _ = exp_avg.f_lerp_(&g, 1.0 - beta1).e()?;
    let _ = exp_inf.f_mul_scalar_(beta2).e()?;
    let mut abs = g.f_abs().e()?;
    let _ = abs.f_add_scalar_(eps).e()?;
    let _ = exp_inf.f_maximum_out(&exp_inf, &abs).e()?;
    let bias_correction = 1.0 - beta1.powf(state.step);
    let clr = lr / bias_correction;
    aten::addcdiv_(p, &exp_avg, &exp_inf, -clr).e()
}

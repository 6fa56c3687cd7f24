//! RAdam (rectified Adam), with L2 or decoupled weight decay and maximize
//! (PyTorch's `_single_tensor_radam`).
use super::aten;
use super::{zeros_like, ParamGroup, ParamState, TchResult};
use tch::Tensor;

pub fn step(group: &ParamGroup, state: &mut ParamState, p: &Tensor, grad: &Tensor) -> Result<(), String> {
    let (lr, eps, wd) = (group.f("lr")?, group.f("eps")?, group.f("weight_decay")?);
    let (beta1, beta2) = group.pair("betas")?;
    let (decoupled, maximize) = (group.b("decoupled_weight_decay")?, group.b("maximize")?);
    if state.buffers.is_empty() {
        state.step = 0.0;
        state.buffers.insert("exp_avg".into(), zeros_like(p)?);
        state.buffers.insert("exp_avg_sq".into(), zeros_like(p)?);
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
    let bias_corrected_exp_avg = exp_avg.f_div_scalar(bias_correction1).e()?;
    let rho_inf = 2.0 / (1.0 - beta2) - 1.0;
    let rho_t = rho_inf - 2.0 * step * beta2.powf(step) / bias_correction2;
    let scaled = bias_corrected_exp_avg.f_mul_scalar(lr).e()?;
    let update = if rho_t > 5.0 {
        let rect = ((rho_t - 4.0) * (rho_t - 2.0) * rho_inf / ((rho_inf - 4.0) * (rho_inf - 2.0) * rho_t)).powf(0.5);
        let mut sq = exp_avg_sq.f_sqrt().e()?;
        let _ = sq.f_add_scalar_(eps).e()?;
        // Python's `float / tensor` is `tensor.reciprocal() * float`
        let adaptive_lr = sq.f_reciprocal().e()?.f_mul_scalar(bias_correction2.powf(0.5)).e()?;
        scaled.f_mul(&adaptive_lr).e()?.f_mul_scalar(rect).e()?
    } else {
        scaled
    };
    aten::add_(p, &update, -1.0).e()
}

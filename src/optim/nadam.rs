//! NAdam (Adam with Nesterov momentum and momentum decay), with L2 or decoupled weight decay and
//! maximize (PyTorch's `_single_tensor_nadam`). `mu_product` is a float32 scalar, as in PyTorch.
use super::aten;
use super::{zeros_like, ParamGroup, ParamState, TchResult};
use tch::Tensor;

pub fn step(group: &ParamGroup, state: &mut ParamState, p: &Tensor, grad: &Tensor) -> Result<(), String> {
    let (lr, eps, wd, momentum_decay) =
        (group.f("lr")?, group.f("eps")?, group.f("weight_decay")?, group.f("momentum_decay")?);
    let (beta1, beta2) = group.pair("betas")?;
    let (decoupled, maximize) = (group.b("decoupled_weight_decay")?, group.b("maximize")?);
    if state.buffers.is_empty() {
        state.step = 0.0;
        state.buffers.insert("mu_product".into(), Tensor::f_ones([], (tch::Kind::Float, tch::Device::Cpu)).e()?);
        state.buffers.insert("exp_avg".into(), zeros_like(p)?);
        state.buffers.insert("exp_avg_sq".into(), zeros_like(p)?);
    }
    let mut g = if maximize { grad.f_neg().e()? } else { grad.shallow_clone() };
    state.step += 1.0;
    let step = state.step;
    let bias_correction2 = 1.0 - beta2.powf(step);
    if wd != 0.0 {
        if decoupled {
            let mut p = p.shallow_clone();
            let _ = p.f_mul_scalar_(1.0 - lr * wd).e()?;
        } else {
            g = aten::add(&g, p, wd).e()?;
        }
    }
    let mu = beta1 * (1.0 - 0.5 * 0.96f64.powf(step * momentum_decay));
    let mu_next = beta1 * (1.0 - 0.5 * 0.96f64.powf((step + 1.0) * momentum_decay));
    let mut mu_product = state.buf("mu_product")?.shallow_clone();
    let _ = mu_product.f_mul_scalar_(mu).e()?;
    let mu_product_v = mu_product.f_double_value(&[]).e()?;
    let mut exp_avg = state.buf("exp_avg")?.shallow_clone();
    let mut exp_avg_sq = state.buf("exp_avg_sq")?.shallow_clone();
    let _ = exp_avg.f_lerp_(&g, 1.0 - beta1).e()?;
    let _ = exp_avg_sq.f_mul_scalar_(beta2).e()?;
    aten::addcmul_(&exp_avg_sq, &g, &g, 1.0 - beta2).e()?;
    let mut denom = exp_avg_sq.f_div_scalar(bias_correction2).e()?.f_sqrt().e()?;
    let mu_product_next = mu_product_v * mu_next;
    let _ = denom.f_add_scalar_(eps).e()?;
    aten::addcdiv_(p, &g, &denom, -lr * (1.0 - mu) / (1.0 - mu_product_v)).e()?;
    aten::addcdiv_(p, &exp_avg, &denom, (-lr * mu_next) / (1.0 - mu_product_next)).e()
}

//! RMSprop with alpha, centered, momentum, weight decay and maximize
//! (PyTorch's `_single_tensor_rmsprop`).
use super::aten;
use super::{zeros_like, ParamGroup, ParamState, TchResult};
use tch::Tensor;

pub fn step(group: &ParamGroup, state: &mut ParamState, p: &Tensor, grad: &Tensor) -> Result<(), String> {
    let (lr, alpha, eps, wd, momentum) =
        (group.f("lr")?, group.f("alpha")?, group.f("eps")?, group.f("weight_decay")?, group.f("momentum")?);
    let (centered, maximize) = (group.b("centered")?, group.b("maximize")?);
    if state.buffers.is_empty() {
        state.step = 0.0;
        state.buffers.insert("square_avg".into(), zeros_like(p)?);
    }
    if momentum > 0.0 && !state.buffers.contains_key("momentum_buffer") {
        state.buffers.insert("momentum_buffer".into(), zeros_like(p)?);
    }
    if centered && !state.buffers.contains_key("grad_avg") {
        state.buffers.insert("grad_avg".into(), zeros_like(p)?);
    }
    let mut g = if maximize { grad.f_neg().e()? } else { grad.shallow_clone() };
    state.step += 1.0;
    if wd != 0.0 {
        g = aten::add(&g, p, wd).e()?;
    }
    let mut square_avg = state.buf("square_avg")?.shallow_clone();
    let _ = square_avg.f_mul_scalar_(alpha).e()?;
    aten::addcmul_(&square_avg, &g, &g, 1.0 - alpha).e()?;
    let mut avg = if centered {
        let mut grad_avg = state.buf("grad_avg")?.shallow_clone();
        let _ = grad_avg.f_lerp_(&g, 1.0 - alpha).e()?;
        let mut a = aten::addcmul(&square_avg, &grad_avg, &grad_avg, -1.0).e()?;
        let _ = a.f_sqrt_().e()?;
        a
    } else {
        square_avg.f_sqrt().e()?
    };
    let _ = avg.f_add_scalar_(eps).e()?;
    if momentum > 0.0 {
        let mut buf = state.buf("momentum_buffer")?.shallow_clone();
        let _ = buf.f_mul_scalar_(momentum).e()?;
        aten::addcdiv_(&buf, &g, &avg, 1.0).e()?;
        aten::add_(p, &buf, -lr).e()
    } else {
        aten::addcdiv_(p, &g, &avg, -lr).e()
    }
}

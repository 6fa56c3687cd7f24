//! SGD with momentum, dampening, Nesterov momentum, weight decay and maximize
//! (PyTorch's `_single_tensor_sgd`).
use super::aten;
use super::{ParamGroup, ParamState, TchResult};
use tch::Tensor;

pub fn step(group: &ParamGroup, state: &mut ParamState, p: &Tensor, grad: &Tensor) -> Result<(), String> {
    let (lr, momentum, dampening, wd) =
        (group.f("lr")?, group.f("momentum")?, group.f("dampening")?, group.f("weight_decay")?);
    let (nesterov, maximize) = (group.b("nesterov")?, group.b("maximize")?);
    let mut g = if maximize { grad.f_neg().e()? } else { grad.shallow_clone() };
    if wd != 0.0 {
        g = aten::add(&g, p, wd).e()?;
    }
    if momentum != 0.0 {
        let buf = match state.buffers.get("momentum_buffer") {
            None => {
                let b = g.f_detach_copy().e()?;
                state.buffers.insert("momentum_buffer".into(), b.shallow_clone());
                b
            }
            Some(b) => {
                let mut b = b.shallow_clone();
                let _ = b.f_mul_scalar_(momentum).e()?;
                aten::add_(&b, &g, 1.0 - dampening).e()?;
                b
            }
        };
        g = if nesterov { aten::add(&g, &buf, momentum).e()? } else { buf };
    }
    aten::add_(p, &g, -lr).e()
}

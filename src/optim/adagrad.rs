//! Adagrad with lr_decay, weight decay, initial accumulator and maximize
//! (PyTorch's `_single_tensor_adagrad`, dense gradients).
use super::aten;
use super::{ParamGroup, ParamState, TchResult};
use tch::Tensor;

pub fn step(group: &ParamGroup, state: &mut ParamState, p: &Tensor, grad: &Tensor) -> Result<(), String> {
    let (lr, lr_decay, wd, eps) = (group.f("lr")?, group.f("lr_decay")?, group.f("weight_decay")?, group.f("eps")?);
    let init = group.f("initial_accumulator_value")?;
    let maximize = group.b("maximize")?;
    if state.buffers.is_empty() {
        state.step = 0.0;
        state.buffers.insert("sum".into(), p.f_full_like(init).e()?);
    }
    state.step += 1.0;
    let step = state.step;
    let mut g = if maximize { grad.f_neg().e()? } else { grad.shallow_clone() };
    if wd != 0.0 {
        g = aten::add(&g, p, wd).e()?;
    }
    let clr = lr / (1.0 + (step - 1.0) * lr_decay);
    let sum = state.buf("sum")?;
    aten::addcmul_(sum, &g, &g, 1.0).e()?;
    let mut std = sum.f_sqrt().e()?;
    let _ = std.f_add_scalar_(eps).e()?;
    aten::addcdiv_(p, &g, &std, -clr).e()
}

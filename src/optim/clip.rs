//! Gradient clipping, as `torch.nn.utils.clip_grad_norm_` / `clip_grad_value_`: the Trainer's
//! `gradient_clip_val` uses these over `Optimizer::params()`.
use super::aten;
use super::TchResult;
use tch::Tensor;

/// Scales the gradients of `params` in place so that their total `norm_type`-norm is at most
/// `max_norm`, and returns the total norm before clipping (a 0-dim tensor). `norm_type` may be
/// any p, `f64::INFINITY` included. Parameters without a gradient are skipped.
/// With `error_if_nonfinite`, a NaN or infinite total norm is an error (gradients untouched).
pub fn clip_grad_norm(
    params: &[Tensor],
    max_norm: f64,
    norm_type: f64,
    error_if_nonfinite: bool,
) -> Result<Tensor, String> {
    let _guard = tch::no_grad_guard();
    let grads: Vec<Tensor> = params.iter().map(|p| p.grad()).filter(|g| g.defined()).collect();
    if grads.is_empty() {
        return Tensor::f_scalar_tensor(0.0, (tch::Kind::Float, tch::Device::Cpu)).e();
    }
    let first = grads[0].device();
    let mut norms = Vec::with_capacity(grads.len());
    for g in &grads {
        norms.push(aten::vector_norm(g, norm_type).e()?.f_to_device(first).e()?);
    }
    let total = aten::vector_norm(&Tensor::f_stack(&norms, 0).e()?, norm_type).e()?;
    if error_if_nonfinite {
        let v = total.f_double_value(&[]).e()?;
        if !v.is_finite() {
            return Err(format!(
                "the total norm of order {norm_type} for gradients from `parameters` is non-finite, so it cannot be clipped"
            ));
        }
    }
    // Python's `max_norm / (total_norm + 1e-6)` is `(total_norm + 1e-6).reciprocal() * max_norm`
    let coef = total.f_add_scalar(1e-6).e()?.f_reciprocal().e()?.f_mul_scalar(max_norm).e()?;
    let coef = coef.f_clamp_max(1.0).e()?;
    for g in &grads {
        let c = coef.f_to_device(g.device()).e()?;
        let mut g = g.shallow_clone();
        let _ = g.f_mul_(&c).e()?;
    }
    Ok(total)
}

/// Clamps every gradient of `params` into `[-clip_value, clip_value]` in place.
pub fn clip_grad_value(params: &[Tensor], clip_value: f64) -> Result<(), String> {
    let _guard = tch::no_grad_guard();
    for p in params {
        let mut g = p.grad();
        if g.defined() {
            let _ = g.f_clamp_(-clip_value, clip_value).e()?;
        }
    }
    Ok(())
}

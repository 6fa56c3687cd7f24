//! Activation functions by name, with PyTorch's parameters, shared by the activation layers
//! (`nn::relu()`) and the functional forms (`F::relu(x)`).
use crate::tensor::Result;
use crate::tensor_err;

/// An activation and its parameters.
#[derive(Clone, Debug, PartialEq)]
pub enum Act {
    Relu,
    Relu6,
    Gelu { tanh: bool },
    Silu,
    Mish,
    Tanh,
    Sigmoid,
    Hardtanh { min: f64, max: f64 },
    Hardsigmoid,
    Hardswish,
    LeakyRelu { slope: f64 },
    Elu { alpha: f64 },
    Celu { alpha: f64 },
    Selu,
    Softplus { beta: f64, threshold: f64 },
    Softsign,
    Logsigmoid,
    Tanhshrink,
    Softmax { dim: i64 },
    LogSoftmax { dim: i64 },
    Glu { dim: i64 },
}

/// PyTorch's class name of an activation (`"ReLU"`).
pub fn type_name(a: &Act) -> &'static str {
    match a {
        Act::Relu => "ReLU",
        Act::Relu6 => "ReLU6",
        Act::Gelu { .. } => "GELU",
        Act::Silu => "SiLU",
        Act::Mish => "Mish",
        Act::Tanh => "Tanh",
        Act::Sigmoid => "Sigmoid",
        Act::Hardtanh { .. } => "Hardtanh",
        Act::Hardsigmoid => "Hardsigmoid",
        Act::Hardswish => "Hardswish",
        Act::LeakyRelu { .. } => "LeakyReLU",
        Act::Elu { .. } => "ELU",
        Act::Celu { .. } => "CELU",
        Act::Selu => "SELU",
        Act::Softplus { .. } => "Softplus",
        Act::Softsign => "Softsign",
        Act::Logsigmoid => "LogSigmoid",
        Act::Tanhshrink => "Tanhshrink",
        Act::Softmax { .. } => "Softmax",
        Act::LogSoftmax { .. } => "LogSoftmax",
        Act::Glu { .. } => "GLU",
    }
}

fn where_pos(x: &tch::Tensor, neg: &tch::Tensor) -> Result<tch::Tensor> {
    Ok(x.f_where_self(&x.f_gt(0.0)?, neg)?)
}

/// Applies the activation.
pub fn apply(a: &Act, x: &tch::Tensor) -> Result<tch::Tensor> {
    Ok(match a {
        Act::Relu => x.f_relu()?,
        Act::Relu6 => x.f_relu6()?,
        Act::Gelu { tanh } => x.f_gelu(if *tanh { "tanh" } else { "none" })?,
        Act::Silu => x.f_silu()?,
        Act::Mish => x.f_mish()?,
        Act::Tanh => x.f_tanh()?,
        Act::Sigmoid => x.f_sigmoid()?,
        Act::Hardtanh { min, max } if *min == -1.0 && *max == 1.0 => x.f_hardtanh()?,
        Act::Hardtanh { min, max } => x.f_clamp(*min, *max)?,
        Act::Hardsigmoid => x.f_hardsigmoid()?,
        Act::Hardswish => x.f_hardswish()?,
        Act::LeakyRelu { slope } if *slope == 0.01 => x.f_leaky_relu()?,
        Act::LeakyRelu { slope } => where_pos(x, &x.f_mul_scalar(*slope)?)?,
        Act::Elu { alpha } if *alpha == 1.0 => x.f_elu()?,
        Act::Elu { alpha } => where_pos(x, &x.f_expm1()?.f_mul_scalar(*alpha)?)?,
        Act::Celu { alpha } if *alpha == 1.0 => x.f_celu()?,
        Act::Celu { alpha } => {
            if *alpha == 0.0 {
                return Err(tensor_err!("ZeroDivisionError from celu: alpha cannot be 0"));
            }
            where_pos(x, &x.f_div_scalar(*alpha)?.f_expm1()?.f_mul_scalar(*alpha)?)?
        }
        Act::Selu => x.f_selu()?,
        Act::Softplus { beta, threshold } if *beta == 1.0 && *threshold == 20.0 => x.f_softplus()?,
        Act::Softplus { beta, threshold } => {
            // (1/β)·log(1 + exp(βx)), linear where βx > threshold
            let bx = x.f_mul_scalar(*beta)?;
            let soft = bx.f_exp()?.f_log1p()?.f_div_scalar(*beta)?;
            x.f_where_self(&bx.f_gt(*threshold)?, &soft)?
        }
        Act::Softsign => x.f_div(&x.f_abs()?.f_add_scalar(1.0)?)?,
        Act::Logsigmoid => x.f_log_sigmoid()?,
        Act::Tanhshrink => x.f_sub(&x.f_tanh()?)?,
        Act::Softmax { dim } => x.f_softmax(*dim, None::<tch::Kind>)?,
        Act::LogSoftmax { dim } => x.f_log_softmax(*dim, None::<tch::Kind>)?,
        Act::Glu { dim } => x.f_glu(*dim)?,
    })
}

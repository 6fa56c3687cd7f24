//! Parameter initialization, the same algorithms (and the same sequence of random draws from
//! libtorch's generator) as `torch.nn.init`, so a seeded lt model starts where PyTorch would.
//! Every function fills the tensor in place under no_grad.
use crate::tensor::{Result, TensorError};
use crate::tensor_err;

/// `(fan_in, fan_out)` as `torch.nn.init._calculate_fan_in_and_fan_out` computes them.
pub fn fans(t: &tch::Tensor) -> Result<(f64, f64)> {
    let s = t.size();
    if s.len() < 2 {
        return Err(tensor_err!(
            "Fan in and fan out can not be computed for tensor with fewer than 2 dimensions (got shape {s:?})"
        ));
    }
    let receptive: i64 = s[2..].iter().product();
    Ok(((s[1] * receptive) as f64, (s[0] * receptive) as f64))
}

/// The recommended gain for a nonlinearity (`torch.nn.init.calculate_gain`).
pub fn calculate_gain(nonlinearity: &str, param: Option<f64>) -> Result<f64> {
    Ok(match nonlinearity {
        "linear" | "conv1d" | "conv2d" | "conv3d" | "conv_transpose1d" | "conv_transpose2d" | "conv_transpose3d"
        | "sigmoid" => 1.0,
        "tanh" => 5.0 / 3.0,
        "relu" => 2f64.sqrt(),
        "leaky_relu" => {
            let slope = param.unwrap_or(0.01);
            (2.0 / (1.0 + slope * slope)).sqrt()
        }
        "selu" => 0.75,
        other => return Err(tensor_err!("Unsupported nonlinearity {other}")),
    })
}

fn mode_fan(t: &tch::Tensor, mode: &str) -> Result<f64> {
    let (fan_in, fan_out) = fans(t)?;
    match mode {
        "fan_in" => Ok(fan_in),
        "fan_out" => Ok(fan_out),
        other => Err(tensor_err!("Mode {other} not supported, please use one of fan_in, fan_out")),
    }
}

fn guarded<F: FnOnce(&mut tch::Tensor) -> std::result::Result<tch::Tensor, tch::TchError>>(
    t: &tch::Tensor,
    f: F,
) -> Result<()> {
    let _g = tch::no_grad_guard();
    let mut h = t.shallow_clone();
    f(&mut h).map(|_| ()).map_err(TensorError::from)
}

pub fn uniform_(t: &tch::Tensor, a: f64, b: f64) -> Result<()> {
    guarded(t, |h| h.f_uniform_(a, b))
}

pub fn normal_(t: &tch::Tensor, mean: f64, std: f64) -> Result<()> {
    guarded(t, |h| h.f_normal_(mean, std))
}

pub fn constant_(t: &tch::Tensor, v: f64) -> Result<()> {
    guarded(t, |h| h.f_fill_(v))
}

/// Kaiming (He) uniform: U(-b, b), b = gain·sqrt(3 / fan).
pub fn kaiming_uniform_(t: &tch::Tensor, a: f64, mode: &str, nonlinearity: &str) -> Result<()> {
    if t.numel() == 0 {
        return Ok(());
    }
    let fan = mode_fan(t, mode)?;
    let gain = calculate_gain(nonlinearity, Some(a))?;
    let bound = 3f64.sqrt() * gain / fan.sqrt();
    uniform_(t, -bound, bound)
}

/// Kaiming (He) normal: N(0, std²), std = gain / sqrt(fan).
pub fn kaiming_normal_(t: &tch::Tensor, a: f64, mode: &str, nonlinearity: &str) -> Result<()> {
    if t.numel() == 0 {
        return Ok(());
    }
    let fan = mode_fan(t, mode)?;
    let std = calculate_gain(nonlinearity, Some(a))? / fan.sqrt();
    normal_(t, 0.0, std)
}

/// Xavier (Glorot) uniform: U(-a, a), a = gain·sqrt(6 / (fan_in + fan_out)).
pub fn xavier_uniform_(t: &tch::Tensor, gain: f64) -> Result<()> {
    let (fi, fo) = fans(t)?;
    let a = gain * (2.0 / (fi + fo)).sqrt() * 3f64.sqrt();
    uniform_(t, -a, a)
}

/// Xavier (Glorot) normal: N(0, std²), std = gain·sqrt(2 / (fan_in + fan_out)).
pub fn xavier_normal_(t: &tch::Tensor, gain: f64) -> Result<()> {
    let (fi, fo) = fans(t)?;
    normal_(t, 0.0, gain * (2.0 / (fi + fo)).sqrt())
}

/// Normal truncated to [a, b] by inverse-CDF sampling (PyTorch's algorithm).
pub fn trunc_normal_(t: &tch::Tensor, mean: f64, std: f64, a: f64, b: f64) -> Result<()> {
    let norm_cdf = |x: f64| (1.0 + erf(x / 2f64.sqrt())) / 2.0;
    let l = norm_cdf((a - mean) / std);
    let u = norm_cdf((b - mean) / std);
    guarded(t, |h| {
        let _ = h.f_uniform_(2.0 * l - 1.0, 2.0 * u - 1.0)?;
        let _ = h.f_erfinv_()?;
        let _ = h.f_mul_scalar_(std * 2f64.sqrt())?;
        let _ = h.f_add_scalar_(mean)?;
        h.f_clamp_(a, b)
    })
}

/// A (semi-)orthogonal matrix from the QR decomposition of a normal sample, scaled by `gain`.
pub fn orthogonal_(t: &tch::Tensor, gain: f64) -> Result<()> {
    let s = t.size();
    if s.len() < 2 {
        return Err(tensor_err!("Only tensors with 2 or more dimensions are supported"));
    }
    if t.numel() == 0 {
        return Ok(());
    }
    let rows = s[0];
    let cols = t.numel() as i64 / rows;
    guarded(t, |h| {
        let mut flat = tch::Tensor::f_empty([rows, cols], (h.kind(), h.device()))?;
        let _ = flat.f_normal_(0.0, 1.0)?;
        if rows < cols {
            flat = flat.f_t_()?;
        }
        let (mut q, r) = tch::Tensor::f_linalg_qr(&flat, "reduced")?;
        let ph = r.f_diag(0)?.f_sign()?;
        q = q.f_mul(&ph)?;
        if rows < cols {
            q = q.f_t_()?;
        }
        h.f_copy_(&q.f_view_as(h)?)?;
        h.f_mul_scalar_(gain)
    })
}

/// erf in double precision, computed by libtorch (as exact as Python's `math.erf`).
fn erf(x: f64) -> f64 {
    tch::Tensor::from(x).f_erf().and_then(|t| t.f_double_value(&[])).unwrap_or(if x >= 0.0 { 1.0 } else { -1.0 })
}

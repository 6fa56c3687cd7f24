//! Tensor options as scripts pass them: `#{dtype: "float32", device: "cpu", requires_grad: true}`.
use super::{Result, TensorError};
use crate::tensor_err;
use tch::{Device, Kind};

/// Every dtype name a script may use, with its libtorch kind. The first name is canonical.
const DTYPES: &[(&str, Kind)] = &[
    ("float32", Kind::Float),
    ("float", Kind::Float),
    ("float64", Kind::Double),
    ("double", Kind::Double),
    ("float16", Kind::Half),
    ("half", Kind::Half),
    ("bfloat16", Kind::BFloat16),
    ("int64", Kind::Int64),
    ("long", Kind::Int64),
    ("int32", Kind::Int),
    ("int", Kind::Int),
    ("int16", Kind::Int16),
    ("int8", Kind::Int8),
    ("uint8", Kind::Uint8),
    ("bool", Kind::Bool),
    ("complex64", Kind::ComplexFloat),
    ("complex128", Kind::ComplexDouble),
];

/// Parses a dtype name (`"float32"`, also PyTorch's `"torch.float32"` spelling).
pub fn parse_dtype(name: &str) -> Result<Kind> {
    let n = name.trim().strip_prefix("torch.").unwrap_or(name.trim());
    DTYPES.iter().find(|(s, _)| *s == n).map(|(_, k)| *k).ok_or_else(|| {
        let names: Vec<&str> = DTYPES.iter().map(|(s, _)| *s).collect();
        tensor_err!("unknown dtype '{name}'; expected one of: {}", names.join(", "))
    })
}

/// Canonical script name of a dtype (`Kind::Float` → `"float32"`).
pub fn dtype_name(kind: Kind) -> &'static str {
    DTYPES.iter().find(|(_, k)| *k == kind).map(|(s, _)| *s).unwrap_or("unknown")
}

/// Parses `"cpu"`, `"cuda"`, `"cuda:1"`, `"gpu"`, `"mps"`. Asking for a CUDA device that is not
/// present is an error here rather than a crash later.
pub fn parse_device(name: &str) -> Result<Device> {
    let n = name.trim().to_ascii_lowercase();
    let dev = match n.as_str() {
        "cpu" => Device::Cpu,
        "cuda" | "gpu" => Device::Cuda(0),
        "mps" => Device::Mps,
        other => match other.strip_prefix("cuda:") {
            Some(i) => {
                Device::Cuda(i.parse::<usize>().map_err(|_| tensor_err!("bad device '{name}': expected cuda:<index>"))?)
            }
            None => {
                return Err(tensor_err!("unknown device '{name}'; expected \"cpu\", \"cuda\", \"cuda:N\" or \"mps\""))
            }
        },
    };
    if let Device::Cuda(i) = dev {
        let n = tch::Cuda::device_count() as usize;
        if i >= n {
            return Err(tensor_err!("device '{name}' is not available: this machine has {n} CUDA device(s)"));
        }
    }
    Ok(dev)
}

/// Script name of a device (`cpu`, `cuda:0`).
pub fn device_name(d: Device) -> String {
    match d {
        Device::Cpu => "cpu".into(),
        Device::Cuda(i) => format!("cuda:{i}"),
        Device::Mps => "mps".into(),
        Device::Vulkan => "vulkan".into(),
    }
}

/// Creation options with PyTorch's keyword names.
#[derive(Debug, Clone, Copy)]
pub struct TensorOptions {
    pub dtype: Option<Kind>,
    pub device: Device,
    pub requires_grad: bool,
}

impl Default for TensorOptions {
    fn default() -> Self {
        TensorOptions { dtype: None, device: Device::Cpu, requires_grad: false }
    }
}

impl TensorOptions {
    pub fn kind_or(&self, default: Kind) -> Kind {
        self.dtype.unwrap_or(default)
    }
    pub fn kind(&self) -> Kind {
        self.dtype.unwrap_or(Kind::Float)
    }
    /// Applies `requires_grad` to a freshly created tensor.
    pub fn finish(&self, t: tch::Tensor) -> Result<tch::Tensor> {
        if self.requires_grad {
            if !is_floating(t.kind()) {
                return Err(tensor_err!(
                    "only floating point tensors can require gradients, not {}",
                    dtype_name(t.kind())
                ));
            }
            Ok(t.set_requires_grad(true))
        } else {
            Ok(t)
        }
    }
}

/// True for float, double, half, bfloat16 (and complex) kinds.
pub fn is_floating(k: Kind) -> bool {
    matches!(k, Kind::Float | Kind::Double | Kind::Half | Kind::BFloat16 | Kind::ComplexFloat | Kind::ComplexDouble)
}

/// A validated set of option keys: reading a key not in `allowed` is a programming error, and a
/// key given by the user that is not allowed is reported with the list of valid ones.
pub fn check_keys<'a>(what: &str, keys: impl Iterator<Item = &'a str>, allowed: &[&str]) -> Result<()> {
    for k in keys {
        if !allowed.contains(&k) {
            return Err(TensorError(format!("unknown option '{k}' for {what}; valid options: {}", allowed.join(", "))));
        }
    }
    Ok(())
}

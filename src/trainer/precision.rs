//! Precision modes with Lightning's names: "32-true", "64-true", "16-mixed", "bf16-mixed",
//! "16-true", "bf16-true" (and the aliases 32, 64, 16, "bf16", "32", "64", "16"). Mixed modes run
//! the forward pass under libtorch autocast for the module's device type; 16-mixed adds a dynamic
//! gradient scaler (see `scaler.rs`); true modes cast the module.
use tch::{Device, Kind};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Precision {
    /// float32 everywhere ("32-true").
    F32,
    /// float64 module and inputs ("64-true").
    F64,
    /// autocast to float16 with gradient scaling ("16-mixed").
    F16Mixed,
    /// autocast to bfloat16 ("bf16-mixed").
    Bf16Mixed,
    /// module and inputs cast to float16 ("16-true").
    F16True,
    /// module and inputs cast to bfloat16 ("bf16-true").
    Bf16True,
}

pub const PRECISION_NAMES: &[&str] = &[
    "32-true",
    "64-true",
    "16-mixed",
    "bf16-mixed",
    "16-true",
    "bf16-true",
    "32",
    "64",
    "16",
    "bf16",
    "transformer-engine",
];

impl Precision {
    /// Parses Lightning's precision strings and aliases.
    pub fn parse(s: &str) -> Result<Precision, String> {
        Ok(match s.trim() {
            "32-true" | "32" => Precision::F32,
            "64-true" | "64" => Precision::F64,
            "16-mixed" | "16" => Precision::F16Mixed,
            "bf16-mixed" | "bf16" => Precision::Bf16Mixed,
            "16-true" => Precision::F16True,
            "bf16-true" => Precision::Bf16True,
            other => {
                return Err(format!(
                    "unknown precision '{other}'; expected one of: 32-true, 64-true, 16-mixed, bf16-mixed, 16-true, bf16-true (or 32, 64, 16, bf16)"
                ))
            }
        })
    }

    /// Lightning's canonical name.
    pub fn name(self) -> &'static str {
        match self {
            Precision::F32 => "32-true",
            Precision::F64 => "64-true",
            Precision::F16Mixed => "16-mixed",
            Precision::Bf16Mixed => "bf16-mixed",
            Precision::F16True => "16-true",
            Precision::Bf16True => "bf16-true",
        }
    }

    /// The dtype the module's floating parameters are cast to, for true modes.
    pub fn module_dtype(self) -> Option<Kind> {
        match self {
            Precision::F64 => Some(Kind::Double),
            Precision::F16True => Some(Kind::Half),
            Precision::Bf16True => Some(Kind::BFloat16),
            _ => None,
        }
    }

    /// The autocast dtype, for mixed modes.
    pub fn autocast_dtype(self) -> Option<Kind> {
        match self {
            Precision::F16Mixed => Some(Kind::Half),
            Precision::Bf16Mixed => Some(Kind::BFloat16),
            _ => None,
        }
    }

    pub fn uses_scaler(self) -> bool {
        self == Precision::F16Mixed
    }
}

fn scalar_type_code(k: Kind) -> i32 {
    // c10::ScalarType codes
    match k {
        Kind::Half => 5,
        Kind::Float => 6,
        Kind::Double => 7,
        Kind::BFloat16 => 15,
        _ => 6,
    }
}

/// Autocast on for a device while alive (torch.autocast(device_type, dtype)).
pub struct AutocastGuard {
    device: i32,
    active: bool,
}

extern "C" {
    fn lt_autocast_set(device: i32, enabled: i32, dtype: i32, prev: *mut i32, buf: *mut u8, len: usize) -> i32;
}

impl AutocastGuard {
    /// Enters autocast with `dtype` for `device`'s type; `None` dtype gives an inactive guard.
    pub fn enter(device: Device, dtype: Option<Kind>) -> Result<AutocastGuard, String> {
        let dev = if matches!(device, Device::Cuda(_)) { 1 } else { 0 };
        let Some(k) = dtype else { return Ok(AutocastGuard { device: dev, active: false }) };
        let mut prev = 0;
        let mut buf = [0u8; 512];
        // SAFETY: the shim catches every C++ exception and writes at most `len` bytes.
        let rc = unsafe { lt_autocast_set(dev, 1, scalar_type_code(k), &mut prev, buf.as_mut_ptr(), buf.len()) };
        if rc != 0 {
            let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
            return Err(format!("cannot enable autocast: {}", String::from_utf8_lossy(&buf[..end])));
        }
        Ok(AutocastGuard { device: dev, active: true })
    }
}

impl Drop for AutocastGuard {
    fn drop(&mut self) {
        if self.active {
            let mut prev = 0;
            let mut buf = [0u8; 256];
            // SAFETY: as above; a failure here leaves autocast on, which the next enter resets.
            unsafe { lt_autocast_set(self.device, 0, 6, &mut prev, buf.as_mut_ptr(), buf.len()) };
        }
    }
}

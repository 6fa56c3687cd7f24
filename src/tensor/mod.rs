//! Tensors as scripts see them: a cheap-to-clone handle on a libtorch tensor (cloning shares
//! storage and autograd identity, like a Python reference), plus options, creation, indexing and
//! PyTorch-style printing. `api.rs` registers the script surface.
pub mod api;
pub mod create;
pub mod format;
pub mod index;
pub mod options;
pub mod rng;

use std::fmt;
use std::rc::Rc;

/// A script-visible tensor. `Clone` is a shallow clone: both handles name the same tensor (the
/// same libtorch TensorImpl), and cloning costs one reference-count increment, no FFI call.
#[derive(Clone)]
pub struct Tensor(pub Rc<tch::Tensor>);

impl Tensor {
    pub fn new(t: tch::Tensor) -> Self {
        Tensor(Rc::new(t))
    }
    /// A new handle on the same tensor that can be passed to tch's `&mut self` in-place ops.
    pub fn handle(&self) -> tch::Tensor {
        self.0.shallow_clone()
    }
}

impl From<tch::Tensor> for Tensor {
    fn from(t: tch::Tensor) -> Self {
        Tensor::new(t)
    }
}

impl std::ops::Deref for Tensor {
    type Target = tch::Tensor;
    fn deref(&self) -> &tch::Tensor {
        &self.0
    }
}

impl fmt::Debug for Tensor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&format::tensor_repr(&self.0))
    }
}

impl fmt::Display for Tensor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&format::tensor_repr(&self.0))
    }
}

/// Error of a tensor operation: libtorch's message without its C++ backtrace.
#[derive(Debug, Clone)]
pub struct TensorError(pub String);

impl fmt::Display for TensorError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for TensorError {}

impl From<tch::TchError> for TensorError {
    fn from(e: tch::TchError) -> Self {
        TensorError(clean_torch_message(&e.to_string()))
    }
}

pub type Result<T> = std::result::Result<T, TensorError>;

/// Builds a [`TensorError`] from a format string.
#[macro_export]
macro_rules! tensor_err {
    ($($arg:tt)*) => { $crate::tensor::TensorError(format!($($arg)*)) };
}

/// Keeps the first, human part of a libtorch error: drops the C++ backtrace and tch's prefix.
pub fn clean_torch_message(msg: &str) -> String {
    let msg = msg.strip_prefix("Internal torch error: ").unwrap_or(msg);
    let mut out = Vec::new();
    for line in msg.lines() {
        let l = line.trim();
        if l.starts_with("Exception raised from") || l.starts_with("frame #") {
            break;
        }
        if !l.is_empty() {
            out.push(l);
        }
    }
    if out.is_empty() {
        msg.trim().to_string()
    } else {
        out.join(" ")
    }
}

/// Name of the autograd node that produced `t` (`"AddBackward0"`), or `None` for a leaf.
pub fn grad_fn_name(t: &tch::Tensor) -> Option<String> {
    extern "C" {
        fn lt_grad_fn_name(t: *const std::ffi::c_void, buf: *mut u8, len: usize) -> i32;
    }
    let mut buf = [0u8; 256];
    // SAFETY: tch's C_tensor pointer is an `at::Tensor*`; the shim catches all C++ exceptions.
    let rc = unsafe { lt_grad_fn_name(t.as_ptr() as *const _, buf.as_mut_ptr(), buf.len()) };
    if rc != 0 {
        return None;
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    let name = String::from_utf8_lossy(&buf[..end]).to_string();
    if name.is_empty() {
        None
    } else {
        // autograd names carry a namespace ("torch::autograd::AccumulateGrad"): keep the last part
        Some(name.rsplit("::").next().unwrap_or(&name).to_string())
    }
}

//! Safe wrappers over the few ATen calls in `csrc/optim.cpp`: the `alpha` / `value` forms of
//! add, addcmul and addcdiv that torch.optim uses (a single kernel each, so results round exactly
//! as in PyTorch; composing them from tch's ops would round twice).
use std::ffi::c_void;
use tch::{TchError, Tensor};

extern "C" {
    fn lt_add_alpha_(s: *mut c_void, o: *const c_void, alpha: f64, err: *mut u8, len: usize) -> i32;
    fn lt_add_alpha(
        out: *mut *mut c_void,
        s: *const c_void,
        o: *const c_void,
        alpha: f64,
        err: *mut u8,
        len: usize,
    ) -> i32;
    fn lt_addcmul_(s: *mut c_void, a: *const c_void, b: *const c_void, v: f64, err: *mut u8, len: usize) -> i32;
    fn lt_addcmul(
        out: *mut *mut c_void,
        s: *const c_void,
        a: *const c_void,
        b: *const c_void,
        v: f64,
        err: *mut u8,
        len: usize,
    ) -> i32;
    fn lt_vector_norm(out: *mut *mut c_void, s: *const c_void, ord: f64, err: *mut u8, len: usize) -> i32;
    fn lt_addcdiv_(s: *mut c_void, a: *const c_void, b: *const c_void, v: f64, err: *mut u8, len: usize) -> i32;
}

pub(crate) fn ptr(t: &Tensor) -> *mut c_void {
    t.as_ptr() as *mut c_void
}

/// Runs a C++ entry point with an error buffer.
pub(crate) fn call(f: impl FnOnce(*mut u8, usize) -> i32) -> Result<(), TchError> {
    let mut buf = vec![0u8; 1024];
    if f(buf.as_mut_ptr(), buf.len()) == 0 {
        return Ok(());
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    Err(TchError::Torch(crate::tensor::clean_torch_message(&String::from_utf8_lossy(&buf[..end]))))
}

fn owned(out: *mut c_void) -> Result<Tensor, TchError> {
    if out.is_null() {
        return Err(TchError::Torch("internal error: no result tensor".into()));
    }
    // SAFETY: the C++ side allocated a new `at::Tensor` for us; tch takes ownership and frees it.
    Ok(unsafe { Tensor::from_ptr(out as *mut torch_sys::C_tensor) })
}

/// `s.add_(o, alpha=alpha)`
pub fn add_(s: &Tensor, o: &Tensor, alpha: f64) -> Result<(), TchError> {
    // SAFETY: valid tensor handles; exceptions are caught in C++.
    call(|e, l| unsafe { lt_add_alpha_(ptr(s), ptr(o), alpha, e, l) })
}

/// `s.add(o, alpha=alpha)`
pub fn add(s: &Tensor, o: &Tensor, alpha: f64) -> Result<Tensor, TchError> {
    let mut out: *mut c_void = std::ptr::null_mut();
    // SAFETY: as above.
    call(|e, l| unsafe { lt_add_alpha(&mut out, ptr(s), ptr(o), alpha, e, l) })?;
    owned(out)
}

/// `s.addcmul_(a, b, value=v)`
pub fn addcmul_(s: &Tensor, a: &Tensor, b: &Tensor, v: f64) -> Result<(), TchError> {
    // SAFETY: as above.
    call(|e, l| unsafe { lt_addcmul_(ptr(s), ptr(a), ptr(b), v, e, l) })
}

/// `s.addcmul(a, b, value=v)`
pub fn addcmul(s: &Tensor, a: &Tensor, b: &Tensor, v: f64) -> Result<Tensor, TchError> {
    let mut out: *mut c_void = std::ptr::null_mut();
    // SAFETY: as above.
    call(|e, l| unsafe { lt_addcmul(&mut out, ptr(s), ptr(a), ptr(b), v, e, l) })?;
    owned(out)
}

/// `s.addcdiv_(a, b, value=v)`
pub fn addcdiv_(s: &Tensor, a: &Tensor, b: &Tensor, v: f64) -> Result<(), TchError> {
    // SAFETY: as above.
    call(|e, l| unsafe { lt_addcdiv_(ptr(s), ptr(a), ptr(b), v, e, l) })
}

/// `torch.linalg.vector_norm(s, ord)` (any p, including inf and -inf)
pub fn vector_norm(s: &Tensor, ord: f64) -> Result<Tensor, TchError> {
    let mut out: *mut c_void = std::ptr::null_mut();
    // SAFETY: as above.
    call(|e, l| unsafe { lt_vector_norm(&mut out, ptr(s), ord, e, l) })?;
    owned(out)
}

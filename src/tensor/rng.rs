//! libtorch's default CPU random generator state, for exact resume (torch.get_rng_state /
//! torch.set_rng_state).
use tch::Tensor;

extern "C" {
    fn lt_rng_get_state(out: *mut *mut std::ffi::c_void, buf: *mut u8, len: usize) -> i32;
    fn lt_rng_set_state(state: *const std::ffi::c_void, buf: *mut u8, len: usize) -> i32;
}

fn message(buf: &[u8]) -> String {
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).to_string()
}

/// The generator state as a uint8 tensor.
pub fn get_state() -> Result<Tensor, String> {
    let mut out: *mut std::ffi::c_void = std::ptr::null_mut();
    let mut buf = [0u8; 512];
    // SAFETY: the shim allocates a new at::Tensor on success; tch takes ownership of it.
    let rc = unsafe { lt_rng_get_state(&mut out, buf.as_mut_ptr(), buf.len()) };
    if rc != 0 || out.is_null() {
        return Err(format!("cannot read the random generator state: {}", message(&buf)));
    }
    Ok(unsafe { Tensor::from_ptr(out as *mut _) })
}

/// Restores a state read by [`get_state`].
pub fn set_state(state: &Tensor) -> Result<(), String> {
    let mut buf = [0u8; 512];
    // SAFETY: `state` is a live at::Tensor; the shim catches every C++ exception.
    let rc = unsafe { lt_rng_set_state(state.as_ptr() as *const _, buf.as_mut_ptr(), buf.len()) };
    if rc != 0 {
        return Err(format!("cannot restore the random generator state: {}", message(&buf)));
    }
    Ok(())
}

//! lt: Lightning-style training of Rhai-scripted models on libtorch.
//!
//! Folders are concepts: `tensor` (the tensor type and its script surface), `script` (the Rhai
//! engine, errors, docs), `bench` (figures), `cli` (the `lt` command), `dist` (data-parallel processes).
#[macro_use]
pub mod console;
pub mod bench;
pub mod callbacks;
pub mod checkpoint;
pub mod checksum;
pub mod cli;
pub mod data;
pub mod dist;
pub mod fs;
pub mod golden;
pub mod metrics;
pub mod nn;
pub mod optim;
pub mod plot;
pub mod pyfmt;
pub mod repl;
pub mod sched;
pub mod script;
pub mod tensor;
pub mod trainer;
pub mod tuner;

/// Version of libtorch this binary runs on, as the library reports it.
pub fn libtorch_version() -> String {
    extern "C" {
        fn lt_torch_version() -> *const std::os::raw::c_char;
    }
    // SAFETY: returns a pointer to a static NUL-terminated string literal.
    unsafe { std::ffi::CStr::from_ptr(lt_torch_version()) }.to_string_lossy().into_owned()
}

/// The `lt --version` text: lt and libtorch versions, CUDA devices, threads, distributed backends.
pub fn version_text() -> String {
    let cuda = if tch::Cuda::is_available() {
        format!("available ({} device(s))", tch::Cuda::device_count())
    } else {
        "not available".to_string()
    };
    let dist = if crate::dist::process_group::Backend::nccl_built() { "gloo, nccl" } else { "gloo (nccl not built)" };
    format!(
        "lt {}\nlibtorch {}\ncuda {}\nthreads {}\ndistributed {}",
        env!("CARGO_PKG_VERSION"),
        libtorch_version(),
        cuda,
        tch::get_num_threads(),
        dist
    )
}

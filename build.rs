//! Build script: give the `lt` binaries an rpath to libtorch (torch-sys does not), and compile the
//! small C++ shim that reaches ATen APIs tch does not expose, and the distributed backend
//! (csrc/dist.cpp: c10d Gloo; csrc/dist_nccl.cpp: c10d NCCL as a separate, dlopen'd shared object).
use std::{
    env,
    path::{Path, PathBuf},
};

fn main() {
    println!("cargo:rerun-if-changed=csrc/shim.cpp");
    println!("cargo:rerun-if-changed=csrc/guard.h");
    println!("cargo:rerun-if-changed=csrc/optim.cpp");
    println!("cargo:rerun-if-changed=csrc/profiler.cpp");
    println!("cargo:rerun-if-changed=csrc/dist.cpp");
    println!("cargo:rerun-if-changed=csrc/dist_nccl.cpp");
    println!("cargo:rerun-if-env-changed=LT_GLOO_INCLUDE");
    println!("cargo:rerun-if-env-changed=LT_NCCL");
    println!("cargo:rerun-if-env-changed=LT_CUDA_EXTRA_INCLUDE");
    // torch-sys has `links = "tch"`, so its `cargo:libtorch_lib=` reaches us as DEP_TCH_LIBTORCH_LIB.
    let lib = match env::var("DEP_TCH_LIBTORCH_LIB") {
        Ok(lib) => PathBuf::from(lib),
        Err(_) => {
            println!("cargo:warning=DEP_TCH_LIBTORCH_LIB is not set; build through tools/cargo");
            return;
        }
    };
    println!("cargo:rustc-link-arg=-Wl,-rpath,{}", lib.display());
    println!("cargo:rustc-env=LT_LIBTORCH_LIB={}", lib.display());

    let root = lib.parent().map(PathBuf::from).unwrap_or_else(|| lib.clone());
    let include = root.join("include");
    cc::Build::new()
        .cpp(true)
        .file("csrc/shim.cpp")
        .file("csrc/optim.cpp")
        .file("csrc/profiler.cpp")
        .include(&include)
        .include(include.join("torch/csrc/api/include"))
        .flag("-std=c++17")
        .flag("-w")
        .define("_GLIBCXX_USE_CXX11_ABI", "1")
        .compile("lt_shim");
    build_dist(&root, &include);
    build_nccl(&root, &include, &lib);
    println!("cargo:rustc-link-search=native={}", lib.display());
    println!("cargo:rustc-link-lib=dylib=torch_cpu");
    println!("cargo:rustc-link-lib=dylib=c10");
}

/// csrc/dist.cpp: TCPStore + ProcessGroupGloo. Needs gloo's headers (the torch wheel lacks them;
/// tools/gloo.sh installs Debian's libgloo-dev and tools/cargo passes LT_GLOO_INCLUDE).
fn build_dist(root: &Path, include: &Path) {
    let gloo = env::var("LT_GLOO_INCLUDE").map(PathBuf::from).unwrap_or_else(|_| PathBuf::from("/usr/include"));
    if !gloo.join("gloo/config.h").exists() {
        panic!(
            "gloo's C++ headers are missing ({} has no gloo/config.h). Build through tools/cargo, which \
             installs them (apt-get install libgloo-dev) when run as root, or set LT_GLOO_INCLUDE.",
            gloo.display()
        );
    }
    let _ = root;
    let mut b = cc::Build::new();
    b.cpp(true)
        .file("csrc/dist.cpp")
        .include(include)
        .include(include.join("torch/csrc/api/include"))
        .flag("-std=c++17")
        .flag("-w")
        .define("_GLIBCXX_USE_CXX11_ABI", "1")
        .define("USE_C10D_GLOO", None);
    if gloo != Path::new("/usr/include") {
        b.include(&gloo);
    }
    b.compile("lt_dist");
    println!("cargo:rustc-link-lib=dylib=dl");
}

/// csrc/dist_nccl.cpp as liblt_dist_nccl.so, when this libtorch has CUDA (libtorch_cuda.so), the
/// CUDA runtime headers and nccl.h (the nvidia-* wheels beside torch/). Its path reaches the crate
/// as LT_NCCL_LIB. Any failure here only leaves NCCL out (with a warning): the CPU build never
/// depends on it. LT_NCCL=0 skips it.
fn build_nccl(root: &Path, include: &Path, lib: &Path) {
    if env::var("LT_NCCL").map(|v| v == "0").unwrap_or(false) || !lib.join("libtorch_cuda.so").exists() {
        return;
    }
    let Some(site) = root.parent() else { return };
    let nvidia = site.join("nvidia");
    let nccl_inc = nvidia.join("nccl/include");
    if !nccl_inc.join("nccl.h").exists() {
        return;
    }
    let cuda_inc = ["cu13", "cuda_runtime", "cu12"]
        .iter()
        .map(|d| nvidia.join(d).join("include"))
        .find(|d| d.join("cuda_runtime_api.h").exists());
    let Some(cuda_inc) = cuda_inc else { return };
    // nv/target and crt/ (tools/cuda_headers.sh): the runtime wheel's headers include them.
    let extra = env::var("LT_CUDA_EXTRA_INCLUDE").map(PathBuf::from).ok().filter(|p| p.join("nv/target").exists());
    let Some(extra) = extra else { return };
    let out = match env::var("OUT_DIR") {
        Ok(o) => PathBuf::from(o).join("liblt_dist_nccl.so"),
        Err(_) => return,
    };
    let compiler = cc::Build::new().cpp(true).get_compiler();
    let mut cmd = compiler.to_command();
    cmd.arg("-shared")
        .arg("-fPIC")
        .arg("-O2")
        .arg("-std=c++17")
        .arg("-w")
        .arg("-D_GLIBCXX_USE_CXX11_ABI=1")
        .arg("-DUSE_C10D_NCCL")
        .arg("-DUSE_CUDA")
        .arg(format!("-I{}", include.display()))
        .arg(format!("-I{}", include.join("torch/csrc/api/include").display()))
        .arg(format!("-I{}", cuda_inc.display()))
        .arg(format!("-I{}", extra.display()))
        .arg(format!("-I{}", nccl_inc.display()))
        .arg("csrc/dist_nccl.cpp")
        .arg("-o")
        .arg(&out)
        .arg(format!("-L{}", lib.display()))
        .arg(format!("-Wl,-rpath,{}", lib.display()))
        .args(["-ltorch_cuda", "-ltorch_cpu", "-lc10_cuda", "-lc10"]);
    match cmd.output() {
        Ok(o) if o.status.success() => println!("cargo:rustc-env=LT_NCCL_LIB={}", out.display()),
        Ok(o) => {
            let err = String::from_utf8_lossy(&o.stderr);
            let first = err.lines().find(|l| l.contains("error")).unwrap_or("").to_string();
            println!("cargo:warning=NCCL backend left out: compiling csrc/dist_nccl.cpp failed: {first}");
        }
        Err(e) => println!("cargo:warning=NCCL backend left out: cannot run the C++ compiler: {e}"),
    }
}

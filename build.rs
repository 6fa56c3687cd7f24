//! Build script: give the `lt` binaries an rpath to libtorch (torch-sys does not), and compile the
//! small C++ shim that reaches ATen APIs tch does not expose.
use std::{env, path::PathBuf};

fn main() {
    println!("cargo:rerun-if-changed=csrc/shim.cpp");
    println!("cargo:rerun-if-changed=csrc/optim.cpp");
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
        .include(&include)
        .include(include.join("torch/csrc/api/include"))
        .flag("-std=c++17")
        .flag("-w")
        .define("_GLIBCXX_USE_CXX11_ABI", "1")
        .compile("lt_shim");
    println!("cargo:rustc-link-search=native={}", lib.display());
    println!("cargo:rustc-link-lib=dylib=torch_cpu");
    println!("cargo:rustc-link-lib=dylib=c10");
}

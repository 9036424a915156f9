//! Linker flags only.
//!
//! * An rpath to libtorch's `lib/`, so binaries, tests and benches start without LD_LIBRARY_PATH.
//!   torch-sys exports that folder as `DEP_TCH_LIBTORCH_LIB`, which cargo hands only to crates that
//!   depend on torch-sys directly: that is why Cargo.toml lists it.
//! * `--no-as-needed` around `-ltorch_cuda` (when libtorch has it), so the linker keeps libtorch_cuda
//!   even though no symbol of it is referenced; otherwise CUDA is never detected at run time.

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let lib = match std::env::var("DEP_TCH_LIBTORCH_LIB") {
        Ok(lib) => lib,
        Err(_) => {
            println!("cargo:warning=torch-sys did not report libtorch's lib folder; set LD_LIBRARY_PATH to run");
            return;
        }
    };
    println!("cargo:rustc-link-arg=-Wl,-rpath,{lib}");
    println!("cargo:rustc-env=MTT_LIBTORCH_LIB={lib}");
    let root = std::path::Path::new(&lib).parent().unwrap_or(std::path::Path::new(&lib));
    println!("cargo:rustc-env=MTT_LIBTORCH_VERSION={}", libtorch_version_at(root).unwrap_or_else(|| "unknown".into()));
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    if os == "linux" && std::path::Path::new(&lib).join("libtorch_cuda.so").exists() {
        println!("cargo:rustc-link-arg=-Wl,--no-as-needed");
        println!("cargo:rustc-link-arg=-ltorch_cuda");
        println!("cargo:rustc-link-arg=-Wl,--as-needed");
    }
}

include!("src/torch_version.rs");

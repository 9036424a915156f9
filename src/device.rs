//! Owns device selection (`--device auto|cpu|cuda|cuda:N`), thread settings, and which libtorch
//! this process runs on.

use crate::error::{invalid, Result};
use tch::Device;

/// Parses a device name. `auto` picks CUDA device 0 when libtorch sees a GPU, else the CPU.
/// Asking for CUDA where none is available is an error, never a silent fall-back.
pub fn parse_device(name: &str) -> Result<Device> {
    tch::maybe_init_cuda();
    let name = name.trim().to_ascii_lowercase();
    let count = tch::Cuda::device_count();
    let cuda = |i: usize| -> Result<Device> {
        if count == 0 {
            return Err(invalid(format!(
                "`device` {name}: CUDA is not available (libtorch {} sees no GPU; run `mtt doctor`)",
                libtorch_version()
            )));
        }
        if i as i64 >= count {
            return Err(invalid(format!("`device` {name}: only {count} CUDA device(s) present")));
        }
        Ok(Device::Cuda(i))
    };
    match name.as_str() {
        "auto" => Ok(Device::cuda_if_available()),
        "cpu" => Ok(Device::Cpu),
        "cuda" | "gpu" => cuda(0),
        other => match other.strip_prefix("cuda:").map(str::parse::<usize>) {
            Some(Ok(i)) => cuda(i),
            _ => Err(invalid(format!("unknown device '{name}': expected auto, cpu, cuda or cuda:N"))),
        },
    }
}

/// Sets libtorch's intra-op thread count when `threads` is given (0 or None keeps the default).
pub fn set_threads(threads: Option<usize>) {
    if let Some(n) = threads.filter(|&n| n > 0) {
        tch::set_num_threads(n as i32);
    }
}

/// Sets libtorch's intra-op thread count until dropped, then restores the previous count.
pub struct ThreadsGuard(i32);

impl ThreadsGuard {
    /// Sets the count to `n` (0 counts as 1) and remembers the one it replaces.
    pub fn set(n: usize) -> Self {
        let prev = tch::get_num_threads();
        tch::set_num_threads(n.max(1) as i32);
        ThreadsGuard(prev)
    }
}

impl Drop for ThreadsGuard {
    fn drop(&mut self) {
        tch::set_num_threads(self.0);
    }
}

/// What the CPU offers the fp32, bf16 and int8 kernels, from `/proc/cpuinfo`'s first processor.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CpuFeatures {
    /// The processor's `model name` field (`unknown` when absent).
    pub model: String,
    /// AVX2 (the `avx2` flag).
    pub avx2: bool,
    /// AVX-512 Foundation (the `avx512f` flag).
    pub avx512: bool,
    /// AVX512-BF16 or AMX-BF16: bf16 matrix multiplies run natively.
    pub bf16: bool,
    /// AMX tiles for bf16 or int8 (the `amx_bf16` or `amx_int8` flag).
    pub amx: bool,
    /// AVX512-VNNI or AVX-VNNI: int8 dot products in one instruction.
    pub vnni: bool,
}

impl CpuFeatures {
    /// Parses the text of `/proc/cpuinfo`.
    pub fn parse(cpuinfo: &str) -> Self {
        let field = |name: &str| {
            cpuinfo.lines().find(|l| l.split(':').next().is_some_and(|k| k.trim() == name)).and_then(|l| l.split_once(':')).map(|(_, v)| v.trim().to_string())
        };
        let flags = field("flags").unwrap_or_default();
        let has = |f: &str| flags.split_whitespace().any(|x| x == f);
        CpuFeatures {
            model: field("model name").unwrap_or_else(|| "unknown".into()),
            avx2: has("avx2"),
            avx512: has("avx512f"),
            bf16: has("avx512_bf16") || has("amx_bf16"),
            amx: has("amx_bf16") || has("amx_int8"),
            vnni: has("avx512_vnni") || has("avx_vnni"),
        }
    }

    /// This machine's, or `None` where `/proc/cpuinfo` cannot be read.
    pub fn detect() -> Option<Self> {
        std::fs::read_to_string("/proc/cpuinfo").ok().map(|t| Self::parse(&t))
    }

    /// One line for `mtt doctor`.
    pub fn describe(&self) -> String {
        let yes = |b: bool| if b { "yes" } else { "no" };
        format!(
            "{}; AVX2 {}, AVX-512 {}, bf16 matmul in hardware (AVX512-BF16/AMX) {}, int8 VNNI {}",
            self.model,
            yes(self.avx2),
            yes(self.avx512),
            yes(self.bf16),
            yes(self.vnni)
        )
    }
}

/// The libtorch version this binary was built against (read by build.rs from libtorch's folder).
pub fn libtorch_version() -> &'static str {
    option_env!("MTT_LIBTORCH_VERSION").unwrap_or("unknown")
}

/// libtorch's `lib/` folder this binary was linked against (its rpath).
pub fn libtorch_lib() -> &'static str {
    option_env!("MTT_LIBTORCH_LIB").unwrap_or("unknown")
}

/// The libtorch this process has actually loaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadedLibtorch {
    /// Path of the loaded `libtorch_cpu.so`.
    pub path: std::path::PathBuf,
    /// The version its folder declares, when it declares one.
    pub version: Option<String>,
    /// Whether libtorch's CUDA library is loaded too (a CUDA build of the binaries).
    pub cuda: bool,
}

/// Finds the loaded libtorch in this process's memory map (Linux); `None` elsewhere.
pub fn loaded_libtorch() -> Option<LoadedLibtorch> {
    let maps = std::fs::read_to_string("/proc/self/maps").ok()?;
    let paths: Vec<&str> = maps.lines().filter_map(|l| l.split_whitespace().nth(5)).collect();
    let path = std::path::PathBuf::from(paths.iter().find(|p| p.ends_with("/libtorch_cpu.so"))?);
    let root = path.parent().and_then(|lib| lib.parent());
    let version = root.and_then(crate::torch_version::libtorch_version_at);
    let cuda = paths.iter().any(|p| p.ends_with("/libtorch_cuda.so"));
    Some(LoadedLibtorch { path, version, cuda })
}

/// A short name for a device, as printed by the CLI.
pub fn device_name(d: Device) -> String {
    match d {
        Device::Cpu => "cpu".into(),
        Device::Cuda(i) => format!("cuda:{i}"),
        other => format!("{other:?}").to_lowercase(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_flags_are_read_from_cpuinfo() {
        let epyc = "processor\t: 0\nmodel name\t: AMD EPYC 7B13\nflags\t\t: fpu sse avx avx2 fma\n\nprocessor\t: 1\n";
        let f = CpuFeatures::parse(epyc);
        assert_eq!((f.model.as_str(), f.avx2, f.avx512, f.bf16, f.vnni), ("AMD EPYC 7B13", true, false, false, false));
        let xeon = "model name\t: Intel(R) Xeon(R) Platinum 8481C\nflags\t: avx2 avx512f avx512_vnni avx512_bf16 amx_bf16 amx_tile amx_int8\n";
        let f = CpuFeatures::parse(xeon);
        assert!(f.avx512 && f.bf16 && f.amx && f.vnni);
        assert!(f.describe().contains("bf16 matmul in hardware (AVX512-BF16/AMX) yes"));
    }
    use tch::Tensor;

    #[test]
    fn parses_cpu_and_rejects_unknown() {
        assert_eq!(parse_device("cpu").unwrap(), Device::Cpu);
        assert_eq!(parse_device(" CPU ").unwrap(), Device::Cpu);
        let e = parse_device("tpu").unwrap_err().to_string();
        assert!(e.contains("unknown device 'tpu'"), "{e}");
        assert!(parse_device("cuda:x").is_err());
    }

    #[test]
    fn the_loaded_libtorch_is_found_with_its_version() {
        let _ = Tensor::zeros([1], (tch::Kind::Float, Device::Cpu));
        let l = loaded_libtorch().expect("libtorch_cpu.so is mapped");
        assert!(l.path.is_file(), "{l:?}");
        assert_eq!(l.version.as_deref().map(|v| v.split('+').next().unwrap()), Some("2.4.0"), "{l:?}");
    }

    #[test]
    fn cuda_without_gpu_is_an_error() {
        if tch::Cuda::device_count() == 0 {
            let e = parse_device("cuda").unwrap_err().to_string();
            assert!(e.contains("CUDA is not available"), "{e}");
            assert_eq!(parse_device("auto").unwrap(), Device::Cpu);
        } else {
            assert_eq!(parse_device("cuda").unwrap(), Device::Cuda(0));
        }
    }
}

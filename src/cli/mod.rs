//! Owns the command-line layer shared by the `mtt` and `taskN` binaries: clap argument types,
//! flag wording, and the command bodies that print. It is the only part of the crate that prints;
//! everything below it returns values and errors.
//!
//! * [`embed`]: `mtt embed`, `task1`, `mtt doctor`
//! * [`train`]: `mtt train`, `task3`, `task4`
//! * [`experiment`]: `mtt experiment`
//! * [`predict`]: `mtt eval`, `mtt predict`, `task2`, `mtt export`, `mtt import`
//! * [`serve`]: `mtt serve`

pub mod embed;
pub mod experiment;
pub mod predict;
pub mod serve;
pub mod train;

pub use embed::{run_doctor, run_embed, run_task1, DoctorArgs, EmbedArgs};
pub use experiment::{run_experiment, ExperimentArgs};
pub use predict::{run_eval, run_export, run_import, run_predict, run_task2, EvalArgs, ExportArgs, ImportArgs, PredictArgs, Task2Args};
pub use serve::{run_serve, ServeArgs};
pub use train::{run_train, TrainArgs, TrainDefaults};

use crate::classifier::Classifier;
use crate::infer::{self, Batching};
use crate::precision::Precision;
use crate::device::{parse_device, set_threads};
use crate::params::LoadReport;
use anyhow::{Context, Result};
use clap::Args;
use std::path::Path;
use tch::Device;

/// Padded tokens in flight when neither `--batch-size` nor `--token-budget` is given: shared by
/// the inference workers (two workers: 512 per forward pass).
pub const DEFAULT_TOKEN_BUDGET: usize = 1024;
/// [`DEFAULT_TOKEN_BUDGET`] for an int8 encoder (384 per forward pass with two workers). An int8
/// batch's feed-forward sums (`tokens x 1,536` int32) then stay within a core's 2 MB L2 cache
/// between the product, the rescale, GELU and the next quantisation: 8-10% more texts/s in
/// process than 512 tokens per pass (2,000 texts of each bundled set, alternated runs; fp32
/// showed no difference, see docs/performance.md).
pub const INT8_TOKEN_BUDGET: usize = 768;
/// Most sentences per forward pass under a token budget alone.
pub const MAX_BUDGET_ROWS: usize = 1024;

/// How inference batches its inputs and at what precision: `mtt embed`, `task1`, `mtt predict`,
/// `mtt eval`.
#[derive(Args, Debug, Clone)]
pub struct InferArgs {
    /// Most sentences per forward pass. Alone, batches have exactly this many sentences (the
    /// last fewer); by default batches fill a token budget instead.
    #[arg(long, value_parser = at_least_one)]
    pub batch_size: Option<usize>,
    /// Most padded tokens (sentences times the longest one) per forward pass [default: 1024
    /// shared by the workers (512 each with two), 768 with --precision int8, unless
    /// --batch-size is given]. Length-sorted inputs then run in batches of similar cost: many
    /// short sentences or few long ones.
    #[arg(long, value_parser = at_least_one)]
    pub token_budget: Option<usize>,
    /// Batches run at once, each on its share of the threads [default: 2 on a CPU with two or
    /// more threads, else 1]. libtorch spreads one batch over two threads poorly; two one-thread
    /// workers keep both cores busy. Each batch then runs on one thread: its vectors equal a
    /// one-thread run's bitwise and differ from a multi-thread pass by float rounding (~1e-6).
    #[arg(long, value_parser = at_least_one)]
    pub workers: Option<usize>,
    /// Encoder precision: fp32 (reference), int8 (quantised linear layers; CPU only) or bf16
    /// (fast only where the CPU has AVX512-BF16 or AMX: see `mtt doctor`).
    #[arg(long, default_value = "fp32")]
    pub precision: Precision,
    /// Run --precision even where it is slower than fp32 (bf16 without AVX512-BF16 or AMX, int8
    /// without AVX2), which is refused otherwise.
    #[arg(long)]
    pub precision_anyway: bool,
}

impl InferArgs {
    /// The precision to run at on `device`, refused where it would be slower than fp32 (unless
    /// `--precision-anyway`).
    pub fn precision_for(&self, device: Device) -> Result<Precision> {
        self.precision.check_speed(device, crate::device::CpuFeatures::detect().as_ref(), self.precision_anyway)?;
        Ok(self.precision)
    }

    /// Batches run at once on `device`: `--workers`, else [`infer::default_workers`] for
    /// libtorch's thread count.
    pub fn workers_on(&self, device: Device) -> usize {
        self.workers.unwrap_or_else(|| infer::default_workers(device, tch::get_num_threads().max(1) as usize))
    }

    /// `(most sentences, most padded tokens)` per forward pass with `workers` workers.
    pub fn limits(&self, workers: usize) -> (usize, Option<usize>) {
        match (self.batch_size, self.token_budget) {
            (Some(rows), budget) => (rows, budget),
            (None, Some(budget)) => (MAX_BUDGET_ROWS, Some(budget)),
            (None, None) => default_limits(workers, self.precision),
        }
    }

    /// The batching on `device` for a tokenizer with `[PAD]` id `pad_id`.
    pub fn batching(&self, pad_id: i64, device: Device) -> Batching {
        let workers = self.workers_on(device);
        let (batch_size, token_budget) = self.limits(workers);
        Batching { batch_size, token_budget, pad_id, workers }
    }
}

/// `(most sentences, most padded tokens)` per forward pass when neither `--batch-size` nor
/// `--token-budget` is given: [`DEFAULT_TOKEN_BUDGET`] ([`INT8_TOKEN_BUDGET`] for int8) shared by
/// `workers` workers.
pub fn default_limits(workers: usize, precision: Precision) -> (usize, Option<usize>) {
    let budget = if precision == Precision::Int8 { INT8_TOKEN_BUDGET } else { DEFAULT_TOKEN_BUDGET };
    (MAX_BUDGET_ROWS, Some((budget / workers.max(1)).max(1)))
}

/// Where and how to run: shared by every command that loads a model.
#[derive(Args, Debug, Clone)]
pub struct RunArgs {
    /// Device: auto (CUDA if present, else CPU), cpu, cuda or cuda:N.
    #[arg(long, default_value = "auto")]
    pub device: String,
    /// libtorch intra-op threads (default: libtorch's choice, usually the number of cores).
    #[arg(long)]
    pub threads: Option<usize>,
}

impl RunArgs {
    /// Applies the thread count and resolves the device.
    pub fn setup(&self) -> Result<Device> {
        set_threads(self.threads);
        Ok(parse_device(&self.device)?)
    }
}

/// Prepares the process; every binary calls it first, before any thread exists.
///
/// * SIGPIPE gets its default action back (Rust programs ignore it): then `mtt embed | head`
///   ends quietly as Unix tools do, instead of `println!` panicking on the closed pipe.
/// * glibc's allocator keeps freed memory instead of returning it to the kernel. libtorch frees
///   and reallocates the same multi-megabyte activations for every layer of every batch; with
///   glibc's defaults each one is a fresh `mmap` whose pages fault in again. Measured on
///   `mtt embed` of 2,000 TREC-6 texts (2 threads): page faults 457,000 -> 104,000 (fp32) and
///   900,000 -> 106,000 (int8), CPU time -12% and -16%. Peak memory grows a little (the heap
///   keeps its high-water mark).
pub fn init_process() {
    #[cfg(unix)]
    // SAFETY: called at the start of main, before any thread exists; SIG_DFL is a valid action.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator parameters; called before any thread exists.
    unsafe {
        // Requests up to 32 MiB (glibc's largest mmap threshold) come from the heap...
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
        // ...and the heap is not trimmed back to the kernel below 1 GiB of free space at its top.
        libc::mallopt(libc::M_TRIM_THRESHOLD, 1 << 30);
    }
}

/// How a binary ends: status 0, or the error's message chain on stderr (in anyhow's layout) and
/// status 1. Never a stack backtrace, whatever `RUST_BACKTRACE` says: errors that reach here
/// are the user's (a missing file, a bad value), and say what to do; panics keep theirs.
pub fn exit_code(r: Result<()>) -> std::process::ExitCode {
    match r {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{}", error_report(&e));
            std::process::ExitCode::FAILURE
        }
    }
}

/// The library names settings by their field, in backticks (`` `overwrite` ``, `` `device` ``);
/// on the command line they are flags. Fields whose flag is not `--` plus the field in kebab case.
const FLAG_OF_FIELD: &[(&str, &str)] = &[("cache", "--no-cache"), ("resume", "--resume DIR")];

/// `message` with every `` `field` `` that is one of `mtt`'s flags written as that flag
/// (`` `batch_size` `` → `--batch-size`); other backticked words are left as they are.
pub fn with_flag_names(message: &str) -> String {
    let flags: std::collections::BTreeSet<String> = flag_names();
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    while let Some(start) = rest.find('`') {
        let Some(len) = rest[start + 1..].find('`') else { break };
        let word = &rest[start + 1..start + 1 + len];
        let kebab = format!("--{}", word.replace('_', "-"));
        let flag = FLAG_OF_FIELD.iter().find(|(f, _)| *f == word).map(|(_, flag)| flag.to_string()).or_else(|| flags.contains(&kebab).then_some(kebab));
        out.push_str(&rest[..start]);
        match flag {
            Some(f) => out.push_str(&f),
            None => out.push_str(&rest[start..start + len + 2]),
        }
        rest = &rest[start + len + 2..];
    }
    out.push_str(rest);
    out
}

/// Every long flag of `mtt train`, `mtt embed` and `mtt serve` (`--batch-size`, ...).
fn flag_names() -> std::collections::BTreeSet<String> {
    use clap::{Args as _, Command};
    let mut names = std::collections::BTreeSet::new();
    for cmd in [TrainArgs::augment_args(Command::new("t")), EmbedArgs::augment_args(Command::new("e")), ServeArgs::augment_args(Command::new("s"))] {
        names.extend(cmd.get_arguments().filter_map(|a| a.get_long()).map(|l| format!("--{l}")));
    }
    names
}

/// `Error: message`, then its causes under `Caused by:` (numbered when there are several); the
/// settings they name are written as flags ([`with_flag_names`]).
pub fn error_report(e: &anyhow::Error) -> String {
    let mut s = format!("Error: {}", with_flag_names(&e.to_string()));
    let causes: Vec<String> = e.chain().skip(1).map(|c| with_flag_names(&c.to_string())).collect();
    if !causes.is_empty() {
        s.push_str("\n\nCaused by:");
        for (i, c) in causes.iter().enumerate() {
            if causes.len() == 1 {
                s.push_str(&format!("\n    {c}"));
            } else {
                s.push_str(&format!("\n    {i}: {c}"));
            }
        }
    }
    s
}

/// Prints a warning for tensors of a weights file that no variable took.
pub fn warn_unexpected(report: &LoadReport) {
    if !report.unexpected.is_empty() {
        eprintln!(
            "warning: {} tensor(s) in the weights file match no variable and were ignored: {}",
            report.unexpected.len(),
            report.unexpected.join(", ")
        );
    }
}

/// Loads a checkpoint, warning about unexpected tensors.
pub fn load_checkpoint(dir: &Path, device: Device) -> Result<Classifier> {
    load_checkpoint_at(dir, device, Precision::Fp32)
}

/// [`load_checkpoint`], then switches its encoder to `precision`.
pub fn load_checkpoint_at(dir: &Path, device: Device, precision: Precision) -> Result<Classifier> {
    let (mut c, report) = Classifier::load(dir, device).with_context(|| format!("loading checkpoint {}", dir.display()))?;
    warn_unexpected(&report);
    c.set_precision(precision)?;
    Ok(c)
}

/// clap parser for counts that must be at least 1.
pub fn at_least_one(s: &str) -> std::result::Result<usize, String> {
    match s.parse::<usize>() {
        Ok(0) => Err("must be at least 1".into()),
        Ok(n) => Ok(n),
        Err(e) => Err(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_named_by_the_library_are_shown_as_flags() {
        assert_eq!(with_flag_names("pass `overwrite` to replace it, or continue the run (`resume`)"), "pass --overwrite to replace it, or continue the run (--resume DIR)");
        assert_eq!(with_flag_names("`batch_size` and `device` cuda:3; `cache` off"), "--batch-size and --device cuda:3; --no-cache off");
        assert_eq!(with_flag_names("run `mtt doctor`; a lone ` stays"), "run `mtt doctor`; a lone ` stays");
        assert_eq!(with_flag_names("`precision` int8"), "--precision int8");
    }

    #[test]
    fn the_default_budget_is_shared_by_the_workers_and_flags_win() {
        let args = |batch_size, token_budget, workers| InferArgs { batch_size, token_budget, precision: Precision::Fp32, precision_anyway: false, workers };
        assert_eq!(args(None, None, None).limits(1), (MAX_BUDGET_ROWS, Some(1024)));
        assert_eq!(args(None, None, None).limits(2), (MAX_BUDGET_ROWS, Some(512)));
        assert_eq!(args(None, Some(300), None).limits(2), (MAX_BUDGET_ROWS, Some(300)), "--token-budget is per batch");
        assert_eq!(args(Some(8), None, None).limits(2), (8, None), "--batch-size alone: fixed batches");
        let int8 = InferArgs { precision: Precision::Int8, ..args(None, None, None) };
        assert_eq!(int8.limits(2), (MAX_BUDGET_ROWS, Some(384)), "int8 batches stay within L2");
        assert_eq!(InferArgs { token_budget: Some(1000), ..int8.clone() }.limits(2), (MAX_BUDGET_ROWS, Some(1000)));
        assert_eq!(args(None, None, Some(3)).batching(0, Device::Cpu).workers, 3);
        assert_eq!(args(None, None, None).workers_on(Device::Cuda(0)), 1, "one worker on a GPU");
    }
}

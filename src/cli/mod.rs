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
use crate::device::{parse_device, set_threads};
use crate::params::LoadReport;
use anyhow::{Context, Result};
use clap::Args;
use std::path::Path;
use tch::Device;

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

/// Restores the default action of SIGPIPE, which Rust programs ignore: then `mtt embed | head`
/// ends quietly as Unix tools do, instead of `println!` panicking on the closed pipe. Every
/// binary calls it first.
pub fn restore_sigpipe() {
    #[cfg(unix)]
    // SAFETY: called at the start of main, before any thread exists; SIG_DFL is a valid action.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
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
    let (c, report) = Classifier::load(dir, device).with_context(|| format!("loading checkpoint {}", dir.display()))?;
    warn_unexpected(&report);
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

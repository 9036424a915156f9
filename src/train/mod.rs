//! Owns Tasks 3 and 4's training run: cross-entropy per task over the rows that carry its label,
//! combined with fixed weights or learned uncertainty weights, one optimizer per trainable
//! subset, batches drawn by the chosen task-sampling scheme, per-epoch dev evaluation, early
//! stopping, `metrics.json`, the checkpoint folder and the state for resuming.
//!
//! * [`config`]: [`TrainConfig`] in four parts, and every rule it must meet.
//! * [`setup`]: the run's data, model and output folder; [`output`]: the folder's rules and lock.
//! * [`step`]: one optimisation step; [`progress`]: bar or lines; [`metrics`]: `metrics.json`.
//! * [`state`]: the resume state; [`stop`]: stop requests (a signal handler's side).
//! * [`trainer`]: the [`Trainer`] that goes through a run's phases.
//!
//! When nothing in the encoder trains, the encoder runs with dropout off (a frozen encoder is a
//! fixed feature extractor), and by default its pooled vectors are computed once
//! ([`crate::cache`]) and the heads train on them.
//!
//! Losses and gradient norms stay on the device and are read back at sync points (every step on
//! the CPU, where reading costs nothing; every [`CUDA_SYNC_EVERY`] steps on a GPU), where a
//! non-finite value stops the run without saving anything.

pub mod config;
pub mod metrics;
pub mod output;
pub mod progress;
pub mod setup;
pub mod state;
pub mod step;
pub mod stop;
pub mod trainer;

pub use config::{DataConfig, LossWeighting, OptimizerConfig, OutputConfig, ScheduleConfig, TrainConfig, LOSS_WEIGHTING_LR};
pub use metrics::{EpochRecord, RunMetrics};
pub use progress::{fmt_duration, Progress};
pub use setup::steps_per_epoch;
pub use step::{train_step, LossMix, StepLosses};
pub use stop::StopFlag;
pub use trainer::Trainer;

use crate::classifier::Classifier;
use crate::error::{invalid, Result};
use std::path::Path;
use std::sync::Arc;

/// Steps between reads of the losses on a CUDA device (each read waits for the GPU).
pub const CUDA_SYNC_EVERY: usize = 32;

/// The libtorch seed of training step `step` (0-based) of a run seeded `seed`.
pub fn step_seed(seed: u64, step: usize) -> i64 {
    (seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ (step as u64).wrapping_mul(0xBF58_476D_1CE4_E5B9)) as i64 & i64::MAX
}

/// How a run is watched and stopped from outside; none of it changes what the run computes.
#[derive(Debug, Clone)]
pub struct RunControl {
    /// How progress within an epoch is shown (a bar, periodic lines, or nothing).
    pub progress: Progress,
    /// Stop requests (e.g. from a signal handler): after a step during training, at once before.
    pub stop: Option<Arc<StopFlag>>,
    /// Stop as if requested right after this optimizer step (tests of resuming).
    pub interrupt_after: Option<usize>,
}

impl RunControl {
    /// Progress shown as `progress`; no stop requests.
    pub fn new(progress: Progress) -> RunControl {
        RunControl { progress, stop: None, interrupt_after: None }
    }
}

/// What a finished run returns: its metrics and the trained model (the last epoch's weights,
/// whatever `save_best` kept on disk).
pub struct TrainOutcome {
    /// The run's metrics, as written to the output folder's `metrics.json`.
    pub metrics: RunMetrics,
    /// The model with its weights after the last step taken, and its tokenizer.
    pub classifier: Classifier,
}

/// Trains as `cfg` says, reporting through `log`, and writes the output folder.
pub fn train(cfg: &TrainConfig, progress: Progress, log: &mut dyn FnMut(&str)) -> Result<TrainOutcome> {
    train_with(cfg, &RunControl::new(progress), log)
}

/// [`train`], watched and stoppable through `ctl`.
pub fn train_with(cfg: &TrainConfig, ctl: &RunControl, log: &mut dyn FnMut(&str)) -> Result<TrainOutcome> {
    Trainer::start(cfg, None, ctl, log)?.run(log)
}

/// Continues the run whose output folder is `out` from its resume state (`out/resume/`), with
/// the configuration it was started with. The finished run equals an uninterrupted one bitwise
/// on the CPU.
pub fn resume(out: &Path, progress: Progress, log: &mut dyn FnMut(&str)) -> Result<TrainOutcome> {
    resume_with(out, None, &RunControl::new(progress), log)
}

/// [`resume`] through `ctl`, on `device` (`auto`, `cpu`, `cuda[:N]`) instead of the device the
/// run was started with when given: the run goes on elsewhere (bitwise equality holds only on
/// the same device).
pub fn resume_with(out: &Path, device: Option<&str>, ctl: &RunControl, log: &mut dyn FnMut(&str)) -> Result<TrainOutcome> {
    let (st, tensors) = state::read(out)?;
    if st.finished {
        return Err(invalid(format!(
            "{}: the run finished ({} epoch(s), {} steps): nothing to resume",
            out.display(),
            st.metrics.epochs.len(),
            st.position.step
        )));
    }
    let mut cfg = st.config.clone();
    cfg.output.out = out.to_path_buf();
    if let Some(d) = device {
        cfg.device = d.to_string();
    }
    log(&format!(
        "resuming {} at epoch {}/{}, batch {}, after {} optimizer steps",
        out.display(),
        st.position.epoch + 1,
        cfg.schedule.epochs,
        st.position.next_draw + 1,
        st.position.step
    ));
    Trainer::start(&cfg, Some((st, tensors)), ctl, log)?.run(log)
}

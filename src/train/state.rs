//! Owns resumable training: the state a run needs to continue exactly where it stopped, written
//! into `OUT/resume/` at the end of every epoch and when a stop signal interrupts a step (the
//! request to stop comes through [`super::StopFlag`]).
//!
//! `OUT/resume/` holds `weights.safetensors` (every model variable, plus uncertainty weighting's
//! log-variances), `optimizer.safetensors` (each subset's Adam moments) and `state.json` (the
//! run's configuration, its position: epoch, next batch, optimizer step; the epoch's running
//! sums, early-stopping state, the metrics so far, Adam's step counts, and the SHA-256 of both
//! tensor files). Batches are a function of (seed, epoch) and the random stream is reseeded from
//! (seed, step) before every step, so nothing else is needed for the resumed run to end with
//! weights bitwise equal to an uninterrupted one on the CPU.
//!
//! The folder is written whole under `resume.tmp/`, then swapped in by renames (the previous one
//! kept as `resume.old/` until the swap is done), so a crash leaves a complete state behind.

use super::config::TrainConfig;
use super::metrics::RunMetrics;
use crate::error::{invalid, Error, Result};
use crate::fsutil::file_sha256;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use tch::{Device, Tensor};

/// The folder inside a run's output folder.
pub const RESUME_DIR: &str = "resume";
/// The state's JSON file in [`RESUME_DIR`]: configuration, position, metrics and checksums.
pub const STATE_FILE: &str = "state.json";
/// The file in [`RESUME_DIR`] holding every model variable and uncertainty weighting's
/// log-variances.
pub const WEIGHTS_FILE: &str = "weights.safetensors";
/// The file in [`RESUME_DIR`] holding each subset's Adam moments.
pub const OPTIMIZER_FILE: &str = "optimizer.safetensors";
const FORMAT: &str = "mtt-resume-1";

/// Running sums of the epoch in progress.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct EpochSums {
    /// Per task (by index): the sum of its step losses (each a step's mean over its rows) read
    /// back so far.
    #[serde(default)]
    pub sum: Vec<f64>,
    /// Per task: steps that had a loss for it (the divisor of `sum`).
    #[serde(default)]
    pub n: Vec<usize>,
    /// The weighted total loss of the latest step read back (0 before the first).
    pub last_total: f64,
}

impl EpochSums {
    /// Adds one step's task losses (by task index).
    pub fn add(&mut self, losses: &[Option<f64>]) {
        if self.sum.len() < losses.len() {
            self.sum.resize(losses.len(), 0.0);
            self.n.resize(losses.len(), 0);
        }
        for (t, l) in losses.iter().enumerate() {
            if let Some(l) = l {
                self.sum[t] += l;
                self.n[t] += 1;
            }
        }
    }

    /// Task `t`'s mean step loss and its step count (`NaN`, 0 when it had no step).
    pub fn mean(&self, t: usize) -> (f64, usize) {
        match self.n.get(t) {
            Some(&n) if n > 0 => (self.sum[t] / n as f64, n),
            _ => (f64::NAN, 0),
        }
    }
}

/// Where a run stands: the part of its state a training loop moves forward.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Position {
    /// The epoch in progress (0-based) and the index of its next batch; `next_draw` 0 with
    /// `epoch` k means epochs 0..k are complete.
    pub epoch: usize,
    /// Index (0-based) of the epoch's next batch to draw: batches before it are done.
    pub next_draw: usize,
    /// Optimizer steps taken.
    pub step: usize,
    /// Loss sums of the epoch in progress (reset at each epoch start).
    pub sums: EpochSums,
    /// Rows seen, steps taken and seconds spent in the epoch in progress.
    pub seen: usize,
    /// Optimizer steps taken in the epoch in progress.
    pub steps_this_epoch: usize,
    /// Wall-clock seconds spent in the epoch in progress, summed over resumed sessions.
    pub epoch_seconds: f64,
    /// Early stopping: best mean dev accuracy so far and epochs since it.
    pub best: Option<f64>,
    /// Completed epochs since the best one (0 when the last epoch improved on `best`, and
    /// always 0 without a dev set).
    pub since_best: usize,
}

impl Position {
    /// The start of epoch `epoch` after `step` steps, early stopping's record kept.
    pub fn epoch_start(&self, epoch: usize) -> Position {
        Position { epoch, next_draw: 0, step: self.step, best: self.best, since_best: self.since_best, ..Position::default() }
    }
}

/// Where a run stands, and everything besides tensors that it needs to go on.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunState {
    /// The state's format tag, `mtt-resume-1` (set by [`write()`], checked by [`read()`]).
    pub format: String,
    /// The run's configuration, as it started.
    pub config: TrainConfig,
    /// Where the run stands (written flattened into `state.json`).
    #[serde(flatten)]
    pub position: Position,
    /// The run ended (all epochs, the step limit or early stopping): nothing to resume.
    pub finished: bool,
    /// The run's metrics so far (every completed epoch, every step's losses).
    pub metrics: RunMetrics,
    /// Adam's step count per `subset/variable`.
    pub adam_steps: BTreeMap<String, i64>,
    /// SHA-256 of [`WEIGHTS_FILE`], lowercase hex (set by [`write()`], checked by [`read()`]).
    pub weights_sha256: String,
    /// SHA-256 of [`OPTIMIZER_FILE`], lowercase hex (set by [`write()`], checked by [`read()`]).
    pub optimizer_sha256: String,
}

/// Tensors of a state: the model's variables by name, and the optimizer's moments.
pub struct StateTensors {
    /// Every model variable by its name, plus uncertainty weighting's log-variances when on.
    pub weights: Vec<(String, Tensor)>,
    /// Adam's moments, named `subset/variable/exp_avg` and `subset/variable/exp_avg_sq`.
    pub optimizer: Vec<(String, Tensor)>,
}

fn on_cpu(v: Vec<(String, Tensor)>) -> Vec<(String, Tensor)> {
    v.into_iter().map(|(n, t)| (n, t.detach().to_device(Device::Cpu).contiguous())).collect()
}

/// Writes `state` and `tensors` as `out/resume/`, replacing a previous state only once the new
/// one is complete.
pub fn write(out: &Path, mut state: RunState, tensors: StateTensors) -> Result<()> {
    let dir = out.join(RESUME_DIR);
    let tmp = out.join(format!("{RESUME_DIR}.tmp"));
    let old = out.join(format!("{RESUME_DIR}.old"));
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).map_err(|e| Error::io(&tmp, e))?;
    }
    std::fs::create_dir_all(&tmp).map_err(|e| Error::io(&tmp, e))?;
    let save = |name: &str, t: Vec<(String, Tensor)>| -> Result<String> {
        let p = tmp.join(name);
        Tensor::write_safetensors(&on_cpu(t), &p).map_err(|e| Error::Weights { path: p.clone(), msg: e.to_string() })?;
        file_sha256(&p)
    };
    state.format = FORMAT.into();
    state.weights_sha256 = save(WEIGHTS_FILE, tensors.weights)?;
    state.optimizer_sha256 = save(OPTIMIZER_FILE, tensors.optimizer)?;
    let json = serde_json::to_vec_pretty(&state).expect("state serialises");
    let p = tmp.join(STATE_FILE);
    std::fs::write(&p, json).map_err(|e| Error::io(&p, e))?;
    if dir.exists() {
        if old.exists() {
            std::fs::remove_dir_all(&old).map_err(|e| Error::io(&old, e))?;
        }
        std::fs::rename(&dir, &old).map_err(|e| Error::io(&dir, e))?;
    }
    std::fs::rename(&tmp, &dir).map_err(|e| Error::io(&dir, e))?;
    if old.exists() {
        std::fs::remove_dir_all(&old).map_err(|e| Error::io(&old, e))?;
    }
    Ok(())
}

/// The state folder of run folder `out`: `resume/`, or `resume.old/` when a crash came between
/// the two renames of [`write()`].
pub fn state_dir(out: &Path) -> Result<PathBuf> {
    for name in [RESUME_DIR.to_string(), format!("{RESUME_DIR}.old")] {
        let d = out.join(name);
        if d.join(STATE_FILE).is_file() {
            return Ok(d);
        }
    }
    Err(invalid(format!(
        "{}: no resume state ({RESUME_DIR}/{STATE_FILE}): only runs of `mtt train` write one, at the end of each epoch and when interrupted",
        out.display()
    )))
}

/// Reads the state of run folder `out`, checking both tensor files against their checksums.
pub fn read(out: &Path) -> Result<(RunState, StateTensors)> {
    let dir = state_dir(out)?;
    let p = dir.join(STATE_FILE);
    let text = std::fs::read(&p).map_err(|e| Error::io(&p, e))?;
    let state: RunState = serde_json::from_slice(&text).map_err(|e| Error::config(&p, format!("not a resume state: {e}")))?;
    if state.format != FORMAT {
        return Err(Error::config(&p, format!("format '{}', expected '{FORMAT}'", state.format)));
    }
    let load = |name: &str, want: &str| -> Result<Vec<(String, Tensor)>> {
        let p = dir.join(name);
        let got = file_sha256(&p)?;
        if got != want {
            return Err(Error::Weights { path: p, msg: format!("SHA-256 {got} differs from the {want} recorded in {STATE_FILE}: the file is damaged or truncated") });
        }
        Tensor::read_safetensors(&p).map_err(|e| Error::Weights { path: p.clone(), msg: format!("cannot read: {e}") })
    };
    let weights = load(WEIGHTS_FILE, &state.weights_sha256)?;
    let optimizer = load(OPTIMIZER_FILE, &state.optimizer_sha256)?;
    Ok((state, StateTensors { weights, optimizer }))
}

/// Copies saved values into `vars` (by name). Every variable must be in the file with its shape,
/// and the file may hold nothing else.
pub fn restore_vars(path: &Path, saved: Vec<(String, Tensor)>, vars: &[(String, Tensor)]) -> Result<()> {
    let werr = |msg: String| Error::Weights { path: path.to_path_buf(), msg };
    let mut saved: BTreeMap<String, Tensor> = saved.into_iter().collect();
    for (name, var) in vars {
        let value = saved.remove(name).ok_or_else(|| werr(format!("no tensor {name}: the state is from another model")))?;
        crate::params::copy_checked(path, name, name, var, &value)?;
    }
    if let Some(extra) = saved.keys().next() {
        return Err(werr(format!("tensor {extra} matches no variable of the model: the state is from another model")));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_damaged_state_is_refused_naming_the_file_and_a_crash_between_renames_keeps_one() {
        let d = tempfile::tempdir().unwrap();
        let cfg = TrainConfig::new("m".into(), d.path().into());
        let state = RunState {
            format: String::new(),
            config: cfg,
            position: Position { epoch: 1, next_draw: 3, step: 7, ..Position::default() },
            finished: false,
            metrics: RunMetrics::default(),
            adam_steps: BTreeMap::new(),
            weights_sha256: String::new(),
            optimizer_sha256: String::new(),
        };
        let t = || StateTensors { weights: vec![("w".into(), Tensor::from_slice(&[1f32, 2.0]))], optimizer: vec![] };
        write(d.path(), state.clone(), t()).unwrap();
        write(d.path(), state, t()).unwrap();
        let (back, tensors) = read(d.path()).unwrap();
        assert_eq!((back.position.epoch, back.position.next_draw, back.position.step), (1, 3, 7));
        // The position is stored flat, as before it was a struct of its own.
        let json: serde_json::Value = serde_json::from_slice(&std::fs::read(d.path().join(RESUME_DIR).join(STATE_FILE)).unwrap()).unwrap();
        assert_eq!((json["epoch"].as_u64(), json["next_draw"].as_u64(), json["step"].as_u64()), (Some(1), Some(3), Some(7)));
        assert_eq!(tensors.weights[0].0, "w");
        // A crash after the first rename: only resume.old is there.
        std::fs::rename(d.path().join(RESUME_DIR), d.path().join("resume.old")).unwrap();
        assert!(read(d.path()).is_ok());
        std::fs::rename(d.path().join("resume.old"), d.path().join(RESUME_DIR)).unwrap();
        // A flipped byte in the weights.
        let w = d.path().join(RESUME_DIR).join(WEIGHTS_FILE);
        let mut bytes = std::fs::read(&w).unwrap();
        let n = bytes.len();
        bytes[n - 1] ^= 1;
        std::fs::write(&w, bytes).unwrap();
        let e = read(d.path()).err().unwrap().to_string();
        assert!(e.contains("weights.safetensors") && e.contains("differs"), "{e}");
        let e = read(&d.path().join("nothing")).err().unwrap().to_string();
        assert!(e.contains("no resume state"), "{e}");
    }
}

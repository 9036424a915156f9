//! Owns Tasks 3 and 4's training run: [`TrainConfig`] and its validation (every rule lives in
//! [`TrainConfig::validate`]), the loop (cross-entropy per task over the rows that carry its
//! label, combined with fixed weights or learned uncertainty weights, one optimizer per trainable
//! subset, batches drawn by the chosen task-sampling scheme), per-epoch dev evaluation, early
//! stopping, `metrics.json` and the checkpoint folder.
//!
//! When nothing in the encoder trains, the encoder runs with dropout off (a frozen encoder is a
//! fixed feature extractor), and by default its pooled vectors are computed once
//! ([`crate::cache`]) and the heads train on them.
//!
//! Losses and gradient norms stay on the device and are read back at sync points (every step on
//! the CPU, where reading costs nothing; every [`CUDA_SYNC_EVERY`] steps on a GPU), where a
//! non-finite value stops the run without saving anything.

use crate::batch::{self, Batch, Inputs, TaskSampling, IGNORE};
use crate::cache::FeatureCache;
use crate::classifier::Classifier;
use crate::config::PoolingConfig;
use crate::data::{self, Example, Labels, Source, Task};
use crate::device::{device_name, parse_device, ThreadsGuard};
use crate::error::{invalid, Error, Result};
use crate::freeze::Freeze;
use crate::fsutil::{prepare_output_dir, write_atomic};
use crate::infer::{self, Batching};
use crate::metrics::TaskMetrics;
use crate::model::MultiTask;
use crate::optim::{check_rate, learning_rates, LrPreset, OptimConfig, Optimizers};
use crate::params::ENCODER;
use crate::output::{self, Existing, OutputLock};
use crate::resume::{self, EpochSums, RunState, StateTensors, RESUME_DIR};
use crate::signals;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::{Duration, Instant};
use tch::{nn, Device, Kind, Reduction, Tensor};

/// Steps between reads of the losses on a CUDA device (each read waits for the GPU).
pub const CUDA_SYNC_EVERY: usize = 32;

/// Default learning rate of uncertainty weighting's log-variances (their own Adam optimizer).
pub const LOSS_WEIGHTING_LR: f64 = 1e-2;

/// How the two tasks' losses are combined into the one that is minimised.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LossWeighting {
    /// `weight_a * loss_a + weight_b * loss_b`.
    Fixed,
    /// Kendall, Gal and Cipolla (2018): `sum_t exp(-s_t) * weight_t * loss_t + s_t / 2`, with the
    /// log-variances `s_a`, `s_b` learned alongside the model.
    Uncertainty,
}

impl LossWeighting {
    /// The names users type.
    pub const NAMES: [&'static str; 2] = ["fixed", "uncertainty"];
}

impl FromStr for LossWeighting {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        match s {
            "fixed" => Ok(LossWeighting::Fixed),
            "uncertainty" => Ok(LossWeighting::Uncertainty),
            _ => Err(invalid(format!("loss weighting '{s}': expected fixed or uncertainty"))),
        }
    }
}

impl fmt::Display for LossWeighting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LossWeighting::Fixed => "fixed",
            LossWeighting::Uncertainty => "uncertainty",
        })
    }
}

fn default_sampling() -> TaskSampling {
    TaskSampling::Proportional
}

fn default_loss_weighting() -> LossWeighting {
    LossWeighting::Fixed
}

fn default_loss_weighting_lr() -> f64 {
    LOSS_WEIGHTING_LR
}

fn yes() -> bool {
    true
}

/// Everything that defines a training run; saved in the checkpoint's `config.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TrainConfig {
    /// Base sentence-transformers folder (or a multi-task checkpoint to continue from).
    pub model: PathBuf,
    pub out: PathBuf,
    pub task_a: Option<PathBuf>,
    pub task_b: Option<PathBuf>,
    /// Joint files with `text`, `label_a`, `label_b`.
    pub joint: Vec<PathBuf>,
    pub dev_a: Option<PathBuf>,
    pub dev_b: Option<PathBuf>,
    pub dev_joint: Vec<PathBuf>,
    pub freeze: Freeze,
    pub lr_plan: LrPreset,
    pub lr_overrides: Vec<(String, f64)>,
    pub layer_decay: Option<f64>,
    pub optim: OptimConfig,
    pub epochs: usize,
    pub batch_size: usize,
    pub eval_batch_size: usize,
    pub seed: u64,
    pub max_steps: Option<usize>,
    /// Use only the first N rows of each training file.
    pub limit: Option<usize>,
    pub weight_a: f64,
    pub weight_b: f64,
    /// Dropout on the pooled vector before the heads. `None`: 0 for a base model, the
    /// checkpoint's own value when continuing from one.
    pub head_dropout: Option<f64>,
    pub save_best: bool,
    pub device: String,
    /// Pooling the heads read (`mean`, `max`, `cls`); `None`: the model folder's own.
    #[serde(default)]
    pub pooling: Option<String>,
    /// How batches are drawn from the two tasks.
    #[serde(default = "default_sampling")]
    pub sampling: TaskSampling,
    #[serde(default = "default_loss_weighting")]
    pub loss_weighting: LossWeighting,
    /// Learning rate of the uncertainty log-variances.
    #[serde(default = "default_loss_weighting_lr")]
    pub loss_weighting_lr: f64,
    /// Stop after this many epochs without a better mean dev accuracy.
    #[serde(default)]
    pub patience: Option<usize>,
    /// Train the heads on cached pooled vectors when nothing in the encoder trains.
    #[serde(default = "yes")]
    pub cache: bool,
    /// Keep cached vectors on disk here (shared between runs); `None`: in memory only.
    #[serde(default)]
    pub cache_dir: Option<PathBuf>,
    /// Length-bucketed batches (rows of similar token length together, batch order shuffled)
    /// for proportional sampling; `false`: every batch a uniform draw.
    #[serde(default)]
    pub bucketing: bool,
    /// An extra Task B file evaluated after each epoch and never used to pick a checkpoint
    /// (out-of-domain check).
    #[serde(default)]
    pub ood_b: Option<PathBuf>,
    /// Train one task only: the other task's rows are left out (its head keeps its initial
    /// weights). The single-task baseline for "does sharing the encoder help?".
    #[serde(default)]
    pub only_task: Option<Task>,
    /// Write `OUT/resume/` (weights, optimizer moments, position) at the end of every epoch, so
    /// that `--resume` can continue the run; a stop signal writes it mid-epoch too.
    #[serde(default = "yes")]
    pub resume_state: bool,
    /// Write the checkpoint (weights, config, vocabulary) to `out` after each epoch; `false`
    /// writes `config.json` without weights or checksums and `metrics.json` (the experiment
    /// runner, which keeps weights only on request).
    #[serde(default = "yes")]
    pub save_weights: bool,
    /// Replace the checkpoint an earlier run left in `out` (refused otherwise). Never replaces
    /// anything else: a non-empty folder that holds no checkpoint is always refused.
    #[serde(skip)]
    pub overwrite: bool,
    /// Act as if a stop signal arrived right after this optimizer step (tests of resuming).
    #[serde(skip)]
    pub interrupt_after: Option<usize>,
}

impl TrainConfig {
    /// Defaults of the seed's Task 3/4, training `model` and writing to `out`; no data yet.
    pub fn new(model: PathBuf, out: PathBuf) -> Self {
        TrainConfig {
            model,
            out,
            task_a: None,
            task_b: None,
            joint: vec![],
            dev_a: None,
            dev_b: None,
            dev_joint: vec![],
            freeze: Freeze::None,
            lr_plan: LrPreset::Layerwise,
            lr_overrides: vec![],
            layer_decay: None,
            optim: OptimConfig::default(),
            epochs: 1,
            batch_size: 32,
            eval_batch_size: 64,
            seed: 0,
            max_steps: None,
            limit: None,
            weight_a: 1.0,
            weight_b: 1.0,
            head_dropout: None,
            save_best: false,
            device: "auto".into(),
            pooling: None,
            sampling: TaskSampling::Proportional,
            loss_weighting: LossWeighting::Fixed,
            loss_weighting_lr: LOSS_WEIGHTING_LR,
            patience: None,
            cache: true,
            cache_dir: None,
            ood_b: None,
            bucketing: true,
            only_task: None,
            resume_state: true,
            save_weights: true,
            overwrite: false,
            interrupt_after: None,
        }
    }

    /// Checks every rule a run's settings must meet, before anything is loaded. Errors name the
    /// field (the command line maps fields to flags one to one: `batch_size` is `--batch-size`).
    pub fn validate(&self) -> Result<()> {
        let at_least_1 = |name: &str, v: usize| if v == 0 { Err(invalid(format!("{name} must be at least 1"))) } else { Ok(()) };
        at_least_1("batch_size", self.batch_size)?;
        at_least_1("eval_batch_size", self.eval_batch_size)?;
        at_least_1("epochs", self.epochs)?;
        if let Some(m) = self.max_steps {
            at_least_1("max_steps", m)?;
        }
        if let Some(l) = self.limit {
            at_least_1("limit", l)?;
        }
        if self.task_a.is_none() && self.task_b.is_none() && self.joint.is_empty() {
            return Err(invalid("no training data: give task_a and task_b files, or a joint file"));
        }
        if let Some(p) = self.head_dropout {
            if !(0.0..1.0).contains(&p) {
                return Err(invalid(format!("head_dropout {p}: must be in [0, 1)")));
            }
        }
        if let Some(f) = self.layer_decay {
            if !(f > 0.0 && f <= 1.0) {
                return Err(invalid(format!("layer_decay {f}: must be in (0, 1]")));
            }
        }
        for (prefix, rate) in &self.lr_overrides {
            check_rate(prefix, *rate)?;
        }
        for (name, w) in [("weight_a", self.weight_a), ("weight_b", self.weight_b)] {
            if !w.is_finite() || w < 0.0 {
                return Err(invalid(format!("{name} {w}: must be finite and >= 0")));
            }
        }
        if self.weight_a == 0.0 && self.weight_b == 0.0 {
            return Err(invalid("weight_a and weight_b are both 0: nothing would be learned"));
        }
        self.optim.validate()?;
        if let Some(p) = &self.pooling {
            PoolingConfig::from_name(p)?;
        }
        if let Some(p) = self.patience {
            at_least_1("patience", p)?;
            if self.dev_a.is_none() && self.dev_b.is_none() && self.dev_joint.is_empty() {
                return Err(invalid("patience needs dev data (dev_a, dev_b or a joint dev file) to watch"));
            }
        }
        if !(self.loss_weighting_lr.is_finite() && self.loss_weighting_lr > 0.0) {
            return Err(invalid(format!("loss_weighting_lr {}: must be finite and > 0", self.loss_weighting_lr)));
        }
        if self.out.as_os_str().is_empty() {
            return Err(invalid("out: an output folder is required"));
        }
        Ok(())
    }
}

/// One epoch's record in `metrics.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EpochRecord {
    pub epoch: usize,
    pub steps: usize,
    /// Mean Task A / Task B loss over the batches that had labels for that task (NaN, written
    /// as `null`, when there were none).
    #[serde(deserialize_with = "nan_if_null")]
    pub loss_a: f64,
    #[serde(deserialize_with = "nan_if_null")]
    pub loss_b: f64,
    pub seconds: f64,
    pub sentences_per_s: f64,
    pub dev: BTreeMap<String, TaskMetrics>,
    /// Out-of-domain Task B evaluation (`ood_b`), keyed `b`.
    #[serde(default)]
    pub ood: BTreeMap<String, TaskMetrics>,
    /// Uncertainty weighting's log-variances (Task A, Task B) at the end of the epoch.
    #[serde(default)]
    pub loss_log_vars: Option<[f64; 2]>,
}

/// JSON has no NaN: serde_json writes it as `null`, read back here as NaN.
fn nan_if_null<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<f64, D::Error> {
    Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::NAN))
}

/// `metrics.json`: the whole run.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RunMetrics {
    pub epochs: Vec<EpochRecord>,
    /// Epoch whose weights are in the folder.
    pub saved_epoch: Option<usize>,
    /// Every step's summed loss, in order.
    pub step_losses: Vec<f64>,
    /// Every step's Task A / Task B loss (`None` where the batch had no label for the task).
    #[serde(default)]
    pub step_losses_a: Vec<Option<f64>>,
    #[serde(default)]
    pub step_losses_b: Vec<Option<f64>>,
    pub trainable_subsets: Vec<(String, f64)>,
    pub frozen_subsets: Vec<String>,
    pub train_rows: usize,
    /// The step limit ended the run before the planned epochs were done.
    pub stopped_early: bool,
    /// Parameters that received updates.
    #[serde(default)]
    pub trainable_params: usize,
    /// The heads trained on cached pooled vectors (frozen encoder).
    #[serde(default)]
    pub cached: bool,
    /// Time spent computing (or loading) the cached vectors of the training, dev and ood sets.
    #[serde(default)]
    pub cache_seconds: f64,
    /// `patience` ended the run after this epoch.
    #[serde(default)]
    pub early_stopped_epoch: Option<usize>,
    /// Wall time of the whole run: loading, caching, training, evaluation, saving.
    #[serde(default)]
    pub wall_seconds: f64,
}

/// How a run shows its progress.
#[derive(Debug, Clone, Copy)]
pub enum Progress {
    /// An `indicatif` bar on stderr (for terminals).
    Bar,
    /// A plain line through the log at most this often (for logs and pipes).
    Lines(Duration),
    /// Nothing between the epoch lines.
    Off,
}

/// The model to train: a checkpoint to continue from, or a base folder with fresh heads.
fn build_classifier(cfg: &TrainConfig, labels_a: Labels, labels_b: Labels, device: Device, log: &mut dyn FnMut(&str)) -> Result<Classifier> {
    tch::manual_seed(cfg.seed as i64);
    let (mut clf, report) = if MultiTask::is_checkpoint(&cfg.model) {
        let (mut clf, report) = Classifier::load(&cfg.model, device)?;
        let c = &clf.model.config;
        if c.labels_a != labels_a || c.labels_b != labels_b {
            return Err(invalid(format!(
                "{}: the checkpoint's labels ({:?} / {:?}) differ from the training files' ({:?} / {:?})",
                cfg.model.display(),
                c.labels_a.0,
                c.labels_b.0,
                labels_a.0,
                labels_b.0
            )));
        }
        if let Some(p) = cfg.head_dropout {
            clf.model.set_head_dropout(p)?;
        }
        (clf, report)
    } else {
        Classifier::from_base(&cfg.model, labels_a, labels_b, cfg.head_dropout.unwrap_or(0.0), device)?
    };
    if !report.unexpected.is_empty() {
        log(&format!("warning: tensors in the weights file that match no variable were ignored: {}", report.unexpected.join(", ")));
    }
    if let Some(p) = &cfg.pooling {
        clf.model.set_pooling(PoolingConfig::from_name(p)?)?;
    }
    clf.model.config.training = Some(serde_json::to_value(cfg).expect("config serialises"));
    Ok(clf)
}

fn read_sources(per_task: &[(Option<&PathBuf>, Task)], joint: &[PathBuf], limit: Option<usize>) -> Result<Vec<Source>> {
    let mut out = Vec::new();
    for (path, task) in per_task {
        if let Some(p) = path {
            out.push(data::read_labelled(p, Some(*task))?);
        }
    }
    for p in joint {
        out.push(data::read_labelled(p, None)?);
    }
    if let Some(n) = limit {
        for s in &mut out {
            s.rows.truncate(n);
        }
    }
    Ok(out)
}

/// The libtorch seed of training step `step` (0-based) of a run seeded `seed`.
pub fn step_seed(seed: u64, step: usize) -> i64 {
    (seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ (step as u64).wrapping_mul(0xBF58_476D_1CE4_E5B9)) as i64 & i64::MAX
}

/// Optimizer steps in one epoch of `cfg` (training rows of the kept tasks over the batch size),
/// from the files alone: for schedules that are set in steps.
pub fn steps_per_epoch(cfg: &TrainConfig) -> Result<usize> {
    let sources = read_sources(&[(cfg.task_a.as_ref(), Task::A), (cfg.task_b.as_ref(), Task::B)], &cfg.joint, cfg.limit)?;
    let rows = sources
        .iter()
        .flat_map(|s| &s.rows)
        .filter(|r| match cfg.only_task {
            Some(Task::A) => r.label_a.is_some(),
            Some(Task::B) => r.label_b.is_some(),
            None => true,
        })
        .count();
    Ok(rows.div_ceil(cfg.batch_size.max(1)))
}

/// One task's mean cross-entropy over the rows that have its label, or `None` if none has.
fn task_loss(logits: &Tensor, targets: &Tensor, n: usize) -> Option<Tensor> {
    (n > 0).then(|| logits.cross_entropy_loss::<Tensor>(targets, None, Reduction::Mean, IGNORE, 0.0))
}

/// Losses of one training step, as detached device scalars (reading them waits for the device).
pub struct StepLosses {
    pub loss_a: Option<Tensor>,
    pub loss_b: Option<Tensor>,
    /// The weighted sum that was minimised.
    pub total: Tensor,
    /// Global gradient norm before clipping, when clipping is on.
    pub grad_norm: Option<Tensor>,
}

impl StepLosses {
    /// The values on the CPU: Task A loss, Task B loss, weighted total.
    pub fn read(&self) -> Result<(Option<f64>, Option<f64>, f64)> {
        let read = |t: &Tensor| -> Result<f64> { Ok(f64::try_from(t)?) };
        Ok((self.loss_a.as_ref().map(read).transpose()?, self.loss_b.as_ref().map(read).transpose()?, read(&self.total)?))
    }
}

/// How one step combines the two tasks' losses.
#[derive(Clone, Copy)]
pub struct LossMix<'a> {
    pub weight_a: f64,
    pub weight_b: f64,
    /// Uncertainty weighting's `[2]` log-variances, when it is on.
    pub log_vars: Option<&'a Tensor>,
}

impl LossMix<'_> {
    /// Fixed weights.
    pub fn fixed(weight_a: f64, weight_b: f64) -> LossMix<'static> {
        LossMix { weight_a, weight_b, log_vars: None }
    }

    fn term(&self, loss: &Tensor, task: i64) -> Tensor {
        let w = if task == 0 { self.weight_a } else { self.weight_b };
        match self.log_vars {
            None => loss * w,
            Some(s) => {
                let s = s.get(task);
                loss * w * (-&s).exp() + s * 0.5
            }
        }
    }
}

/// One optimisation step on `b`: forward (dropout in the heads, and in the encoder when
/// `encoder_dropout`), per-task cross-entropy over the rows that have that task's label, combined
/// by `mix`, backward and every optimizer's step. Returns `None` (and changes nothing) when the
/// batch has no label at all. Reads nothing back from the device, so it does not check the loss:
/// the caller does, at its sync points.
pub fn train_step(model: &MultiTask, opts: &mut Optimizers, b: &Batch, mix: &LossMix, encoder_dropout: bool, step: usize) -> Option<StepLosses> {
    let logits = match &b.inputs {
        Inputs::Tokens { ids, mask } => model.heads_t(&model.pooled_t(ids, mask, encoder_dropout), true),
        Inputs::Pooled(p) => model.heads_t(p, true),
    };
    let la = task_loss(&logits.a, &b.labels_a, b.n_a);
    let lb = task_loss(&logits.b, &b.labels_b, b.n_b);
    let total = match (&la, &lb) {
        (Some(a), Some(b)) => mix.term(a, 0) + mix.term(b, 1),
        (Some(a), None) => mix.term(a, 0),
        (None, Some(b)) => mix.term(b, 1),
        (None, None) => return None,
    };
    let grad_norm = opts.step(&total, step);
    Some(StepLosses { loss_a: la.map(|t| t.detach()), loss_b: lb.map(|t| t.detach()), total: total.detach(), grad_norm })
}

/// Step results not yet read from the device.
#[derive(Default)]
struct Pending {
    steps: Vec<usize>,
    totals: Vec<Tensor>,
    a: Vec<Tensor>,
    b: Vec<Tensor>,
    /// Whether each pending step had a Task A / Task B loss.
    has_a: Vec<bool>,
    has_b: Vec<bool>,
    norms: Vec<(usize, Tensor)>,
}


impl Pending {
    fn push(&mut self, step: usize, s: StepLosses) {
        self.steps.push(step);
        self.totals.push(s.total);
        self.has_a.push(s.loss_a.is_some());
        self.has_b.push(s.loss_b.is_some());
        self.a.extend(s.loss_a);
        self.b.extend(s.loss_b);
        if let Some(n) = s.grad_norm {
            self.norms.push((step, n));
        }
    }

    fn len(&self) -> usize {
        self.steps.len()
    }

    /// Reads every pending value in one transfer, checks it, and adds it to `metrics` and `sums`.
    fn flush(&mut self, epoch: usize, metrics: &mut RunMetrics, sums: &mut EpochSums, out: &Path) -> Result<()> {
        if self.steps.is_empty() {
            return Ok(());
        }
        let all: Vec<Tensor> =
            self.totals.iter().chain(&self.a).chain(&self.b).chain(self.norms.iter().map(|(_, n)| n)).map(|t| t.reshape([1])).collect();
        let values = Vec::<f64>::try_from(Tensor::cat(&all, 0).to_kind(Kind::Double).to_device(Device::Cpu))?;
        let (totals, rest) = values.split_at(self.totals.len());
        let (a, rest) = rest.split_at(self.a.len());
        let (b, norms) = rest.split_at(self.b.len());
        let saved = saved_note(out, metrics.saved_epoch);
        let stop = |what: &str, v: f64, step: usize| {
            Error::NonFinite(format!(
                "{what} became {v} at step {step} (epoch {}); training stopped and nothing more was saved: {saved}. Try a lower learning rate or gradient clipping",
                epoch + 1,
            ))
        };
        if let Some((&step, &v)) = self.steps.iter().zip(totals).find(|(_, v)| !v.is_finite()) {
            return Err(stop("loss", v, step));
        }
        if let Some(((step, _), &v)) = self.norms.iter().zip(norms).find(|(_, v)| !v.is_finite()) {
            return Err(stop("gradient norm", v, *step));
        }
        metrics.step_losses.extend_from_slice(totals);
        for (has, values, out) in [(&self.has_a, a, &mut metrics.step_losses_a), (&self.has_b, b, &mut metrics.step_losses_b)] {
            let mut v = values.iter();
            out.extend(has.iter().map(|&h| if h { v.next().copied() } else { None }));
        }
        sums.sum_a += a.iter().sum::<f64>();
        sums.n_a += a.len();
        sums.sum_b += b.iter().sum::<f64>();
        sums.n_b += b.len();
        sums.last_total = *totals.last().expect("not empty");
        *self = Pending::default();
        Ok(())
    }
}

/// Progress display of one epoch.
struct EpochProgress {
    bar: ProgressBar,
    every: Option<Duration>,
    last_line: Instant,
    start: Instant,
    len: usize,
    epoch: usize,
    epochs: usize,
}

impl EpochProgress {
    fn new(progress: Progress, len: usize, epoch: usize, epochs: usize) -> Self {
        let bar = match progress {
            Progress::Bar => {
                let bar = ProgressBar::with_draw_target(Some(len as u64), ProgressDrawTarget::stderr());
                bar.set_style(
                    ProgressStyle::with_template("epoch {prefix} [{bar:30}] {pos}/{len} {msg} eta {eta}")
                        .expect("valid template")
                        .progress_chars("=> "),
                );
                bar.set_prefix(format!("{}/{}", epoch + 1, epochs));
                bar
            }
            _ => ProgressBar::hidden(),
        };
        let every = match progress {
            Progress::Lines(d) => Some(d),
            _ => None,
        };
        let now = Instant::now();
        EpochProgress { bar, every, last_line: now, start: now, len, epoch, epochs }
    }

    /// Whether a plain progress line is due (so the losses should be read now).
    fn due(&self) -> bool {
        self.every.is_some_and(|e| self.last_line.elapsed() >= e)
    }

    fn update(&mut self, done: usize, seen: usize, loss: f64, log: &mut dyn FnMut(&str)) {
        let elapsed = self.start.elapsed().as_secs_f64();
        let rate = seen as f64 / elapsed.max(1e-9);
        self.bar.set_position(done as u64);
        self.bar.set_message(format!("loss {loss:.4}  {rate:.0} sent/s"));
        if self.due() {
            let eta = elapsed / done.max(1) as f64 * (self.len - done) as f64;
            log(&format!(
                "  epoch {}/{} step {done}/{}: loss {loss:.4}, {rate:.1} sentences/s, epoch ETA {}",
                self.epoch + 1,
                self.epochs,
                self.len,
                fmt_duration(eta)
            ));
            self.last_line = Instant::now();
        }
    }
}

/// `75` → `1m15s`, `4000` → `1h06m40s`.
pub fn fmt_duration(secs: f64) -> String {
    let s = secs.max(0.0).round() as u64;
    match (s / 3600, s / 60 % 60, s % 60) {
        (0, 0, s) => format!("{s}s"),
        (0, m, s) => format!("{m}m{s:02}s"),
        (h, m, s) => format!("{h}h{m:02}m{s:02}s"),
    }
}

/// What a finished run returns: its metrics and the trained model (the last epoch's weights,
/// whatever `save_best` kept on disk).
pub struct TrainOutcome {
    pub metrics: RunMetrics,
    pub classifier: Classifier,
}

/// Trains as `cfg` says, reporting through `log`, and writes the output folder.
pub fn train(cfg: &TrainConfig, progress: Progress, log: &mut dyn FnMut(&str)) -> Result<TrainOutcome> {
    run(cfg, None, progress, log)
}

/// Continues the run whose output folder is `out` from its resume state (`out/resume/`), with
/// the configuration it was started with. The finished run equals an uninterrupted one bitwise
/// on the CPU.
pub fn resume(out: &Path, progress: Progress, log: &mut dyn FnMut(&str)) -> Result<TrainOutcome> {
    resume_on(out, None, progress, log)
}

/// [`resume`] on `device` (`auto`, `cpu`, `cuda[:N]`) instead of the device the run was started
/// with, when given: the run goes on elsewhere (bitwise equality holds only on the same device).
pub fn resume_on(out: &Path, device: Option<&str>, progress: Progress, log: &mut dyn FnMut(&str)) -> Result<TrainOutcome> {
    let (state, tensors) = resume::read(out)?;
    if state.finished {
        return Err(invalid(format!(
            "{}: the run finished ({} epoch(s), {} steps): nothing to resume",
            out.display(),
            state.metrics.epochs.len(),
            state.step
        )));
    }
    let mut cfg = state.config.clone();
    cfg.out = out.to_path_buf();
    if let Some(d) = device {
        cfg.device = d.to_string();
    }
    log(&format!(
        "resuming {} at epoch {}/{}, batch {}, after {} optimizer steps",
        out.display(),
        state.epoch + 1,
        cfg.epochs,
        state.next_draw + 1,
        state.step
    ));
    run(&cfg, Some((state, tensors)), progress, log)
}

/// Where a run stands: the position part of a [`RunState`].
struct Position<'a> {
    epoch: usize,
    next_draw: usize,
    step: usize,
    sums: &'a EpochSums,
    seen: usize,
    steps_this_epoch: usize,
    epoch_seconds: f64,
    best: Option<f64>,
    since_best: usize,
}

/// The run's state and tensors at `at`, for [`resume::write`].
fn run_state(cfg: &TrainConfig, clf: &Classifier, opts: &Optimizers, log_vars: Option<&Tensor>, at: Position, metrics: &RunMetrics, finished: bool) -> (RunState, StateTensors) {
    let mut weights = clf.model.params().named_variables();
    if let Some(v) = log_vars {
        weights.push((LOG_VARS.to_string(), v.shallow_clone()));
    }
    let (optimizer, adam_steps) = opts.state();
    let state = RunState {
        format: String::new(),
        config: cfg.clone(),
        epoch: at.epoch,
        next_draw: at.next_draw,
        step: at.step,
        finished,
        sums: at.sums.clone(),
        seen: at.seen,
        steps_this_epoch: at.steps_this_epoch,
        epoch_seconds: at.epoch_seconds,
        best: at.best,
        since_best: at.since_best,
        metrics: metrics.clone(),
        adam_steps,
        weights_sha256: String::new(),
        optimizer_sha256: String::new(),
    };
    (state, StateTensors { weights, optimizer })
}

/// Name of uncertainty weighting's log-variances in a resume state.
const LOG_VARS: &str = "loss_weighting/log_vars";

fn run(cfg: &TrainConfig, resumed: Option<(RunState, StateTensors)>, progress: Progress, log: &mut dyn FnMut(&str)) -> Result<TrainOutcome> {
    let started = Instant::now();
    cfg.validate()?;
    // The output folder's rules, checked before anything is read or written; the folder itself
    // is created and locked once the data and the model are loaded.
    if resumed.is_none() {
        output::check(&cfg.out, &cfg.model, cfg.overwrite)?;
    }
    let device = parse_device(&cfg.device)?;
    let train_sources = read_sources(&[(cfg.task_a.as_ref(), Task::A), (cfg.task_b.as_ref(), Task::B)], &cfg.joint, cfg.limit)?;
    let dev_sources = read_sources(&[(cfg.dev_a.as_ref(), Task::A), (cfg.dev_b.as_ref(), Task::B)], &cfg.dev_joint, None)?;
    let labels_a = Labels::collect(&train_sources, Task::A);
    let labels_b = Labels::collect(&train_sources, Task::B);
    for (l, t, what) in [(&labels_a, Task::A, "task_a file or a joint file with label_a"), (&labels_b, Task::B, "task_b file or a joint file with label_b")] {
        if l.is_empty() {
            return Err(invalid(format!("no {} labels in the training data: give a {what}", t.key())));
        }
    }
    let mut clf = build_classifier(cfg, labels_a.clone(), labels_b.clone(), device, log)?;
    let mut train_ex = data::examples(&train_sources, &labels_a, &labels_b, &clf.tokenizer)?;
    if let Some(task) = cfg.only_task {
        for e in &mut train_ex {
            match task {
                Task::A => e.label_b = None,
                Task::B => e.label_a = None,
            }
        }
        train_ex.retain(|e| e.label_a.is_some() || e.label_b.is_some());
        log(&format!("single-task run: training {} only ({} rows)", task.key(), train_ex.len()));
    }
    let dev_ex = data::examples(&dev_sources, &labels_a, &labels_b, &clf.tokenizer)?;
    let ood_ex = match &cfg.ood_b {
        Some(p) => data::examples(&[data::read_labelled(p, Some(Task::B))?], &labels_a, &labels_b, &clf.tokenizer)?,
        None => vec![],
    };
    let created = !cfg.out.exists();
    prepare_output_dir(&cfg.out)?;
    // A folder this run made goes again if the run ends (by an error) before writing into it.
    let _made = created.then(|| output::RemoveIfEmpty(cfg.out.clone()));
    let lock = OutputLock::acquire(&cfg.out)?;
    let _remove = signals::remove_on_signal(Some(lock.path()), created.then_some(cfg.out.as_path()));
    // Again under the lock: another run may have written a checkpoint since the first check.
    if resumed.is_none() && output::check(&cfg.out, &cfg.model, cfg.overwrite)? == Existing::Checkpoint {
        log(&format!("replacing the checkpoint of an earlier run in {} (--overwrite)", cfg.out.display()));
        // Its resume state belongs to the earlier run: `--resume` must never mix the two.
        for name in [RESUME_DIR.to_string(), format!("{RESUME_DIR}.old"), format!("{RESUME_DIR}.tmp")] {
            let d = cfg.out.join(name);
            if d.exists() {
                std::fs::remove_dir_all(&d).map_err(|e| Error::io(&d, e))?;
            }
        }
    }
    let params = clf.model.params();
    cfg.freeze.apply(params)?;
    let encoder_trains = params.under(ENCODER).iter().any(|s| s.is_trainable());
    let rates = learning_rates(params, cfg.lr_plan, cfg.layer_decay, &cfg.lr_overrides)?;
    let steps_per_epoch = train_ex.len().div_ceil(cfg.batch_size);
    let full = steps_per_epoch * cfg.epochs;
    let planned = cfg.max_steps.map_or(full, |m| m.min(full));
    let mut opts = Optimizers::new(params, &rates, cfg.optim.clone(), planned)?;
    let eval_batching = Batching::fixed(cfg.eval_batch_size, clf.tokenizer.pad_id());
    let mut metrics = RunMetrics {
        trainable_subsets: opts.subsets(),
        frozen_subsets: params.subsets().iter().filter(|s| !s.is_trainable()).map(|s| s.name.clone()).collect(),
        train_rows: train_ex.len(),
        trainable_params: params.subsets().iter().filter(|s| s.is_trainable()).map(|s| s.numel()).sum(),
        ..Default::default()
    };
    // Uncertainty weighting: two log-variances (from the checkpoint when continuing from one).
    let uncertainty = match cfg.loss_weighting {
        LossWeighting::Fixed => None,
        LossWeighting::Uncertainty => {
            let vs = nn::VarStore::new(device);
            let init = clf.model.config.loss_log_vars.unwrap_or([0.0, 0.0]);
            let s = vs.root().var_copy("log_vars", &Tensor::from_slice(&init).to_kind(Kind::Float));
            opts.bind_extra("loss_weighting", &vs, cfg.loss_weighting_lr)?;
            metrics.trainable_params += 2;
            metrics.trainable_subsets = opts.subsets();
            Some((vs, s))
        }
    };
    let mix = LossMix { weight_a: cfg.weight_a, weight_b: cfg.weight_b, log_vars: uncertainty.as_ref().map(|(_, s)| s) };
    // Resuming: weights, optimizer moments and the run's position from the state.
    let mut position = None;
    if let Some((state, tensors)) = resumed {
        let dir = resume::state_dir(&cfg.out)?;
        let mut vars = params.named_variables();
        if let Some((_, s)) = &uncertainty {
            vars.push((LOG_VARS.to_string(), s.shallow_clone()));
        }
        resume::restore_vars(&dir.join(resume::WEIGHTS_FILE), tensors.weights, &vars)?;
        opts.restore(tensors.optimizer, state.adam_steps.clone())
            .map_err(|e| Error::Weights { path: dir.join(resume::OPTIMIZER_FILE), msg: e.to_string() })?;
        let trainable = metrics.trainable_params;
        metrics = state.metrics.clone();
        metrics.trainable_params = trainable;
        position = Some(state);
    }
    log(&format!(
        "training on {} rows ({} Task A labels, {} Task B labels), {} steps/epoch, device {}, freeze '{}', {} trainable parameters",
        train_ex.len(),
        train_ex.iter().filter(|e| e.label_a.is_some()).count(),
        train_ex.iter().filter(|e| e.label_b.is_some()).count(),
        steps_per_epoch,
        device_name(device),
        cfg.freeze,
        metrics.trainable_params,
    ));

    // A frozen encoder's pooled vectors, computed once, when nothing in it trains.
    let cache = if !encoder_trains && cfg.cache {
        let t0 = Instant::now();
        let fc = FeatureCache::new(&clf.model, cfg.cache_dir.as_deref())?;
        let mut hits = 0;
        let mut get = |ex: &[Example]| -> Result<Tensor> {
            let (t, hit) = fc.pooled(&clf.model, ex, eval_batching, log)?;
            hits += usize::from(hit);
            Ok(t)
        };
        let sets = (get(&train_ex)?, get(&dev_ex)?, get(&ood_ex)?);
        metrics.cached = true;
        metrics.cache_seconds = t0.elapsed().as_secs_f64();
        log(&format!(
            "frozen encoder: pooled vectors of {} texts {} in {} (--no-cache recomputes the encoder every step)",
            train_ex.len() + dev_ex.len() + ood_ex.len(),
            if hits == 3 { "loaded from the cache" } else { "computed once" },
            fmt_duration(metrics.cache_seconds)
        ));
        Some(sets)
    } else {
        None
    };
    let eval_all = |model: &MultiTask, log: &mut dyn FnMut(&str)| -> Result<(BTreeMap<String, TaskMetrics>, BTreeMap<String, TaskMetrics>)> {
        let dev = evaluate(model, &dev_ex, cache.as_ref().map(|c| &c.1), eval_batching)?;
        report_dev("dev", &dev, log);
        let ood = evaluate(model, &ood_ex, cache.as_ref().map(|c| &c.2), eval_batching)?;
        report_dev("ood", &ood, log);
        Ok((dev, ood))
    };
    if opts.is_empty() {
        log("nothing is trainable (freeze 'all'): the feature-extractor baseline; evaluation only, no training steps");
        let (dev, ood) = eval_all(&clf.model, log)?;
        metrics.epochs.push(EpochRecord {
            epoch: 0,
            steps: 0,
            loss_a: f64::NAN,
            loss_b: f64::NAN,
            seconds: 0.0,
            sentences_per_s: 0.0,
            dev,
            ood,
            loss_log_vars: None,
        });
        metrics.saved_epoch = Some(0);
        metrics.wall_seconds = started.elapsed().as_secs_f64();
        save(&clf, cfg, &metrics)?;
        return Ok(TrainOutcome { metrics, classifier: clf });
    }
    for (name, rate) in opts.subsets() {
        log(&format!("  optimizer for {name}: lr {rate:e}"));
    }
    // Heads on cached vectors are tiny matrix products: one thread runs them faster than a team
    // (measured: 0.07 s against 0.3-6.9 s per epoch of 2,000 rows on 2 cores).
    let _one_thread = (cache.is_some() && device == Device::Cpu).then(|| ThreadsGuard::set(1));
    let source = match &cache {
        Some((t, _, _)) => batch::Source::Cache(t),
        None => batch::Source::Tokens { pad_id: clf.tokenizer.pad_id() },
    };
    let sync_every = if device.is_cuda() { CUDA_SYNC_EVERY } else { 1 };
    let wall_before = position.as_ref().map_or(0.0, |p| p.metrics.wall_seconds);
    let wall = |started: &Instant| wall_before + started.elapsed().as_secs_f64();
    let (start_epoch, mut step) = position.as_ref().map_or((0, 0), |p| (p.epoch, p.step));
    let mut best: Option<f64> = position.as_ref().and_then(|p| p.best);
    let mut since_best = position.as_ref().map_or(0, |p| p.since_best);
    // From here a first stop signal ends the run after a step, with a checkpoint.
    let _training = signals::training();
    for epoch in start_epoch..cfg.epochs {
        // The same batches with or without the cache (where bucketing saves nothing but keeps the
        // run identical to recomputing the encoder).
        let draws = batch::epoch_draws(&train_ex, cfg.batch_size, cfg.seed, epoch, cfg.sampling, cfg.bucketing);
        let mut ui = EpochProgress::new(progress, draws.len(), epoch, cfg.epochs);
        let start = Instant::now();
        let mut pending = Pending::default();
        // The epoch's running figures: zero, or where the interrupted run left them.
        let (first, mut sums, mut seen, mut steps_this_epoch, seconds_before) = match position.take() {
            Some(p) => (p.next_draw, p.sums, p.seen, p.steps_this_epoch, p.epoch_seconds),
            None => (0, EpochSums::default(), 0, 0, 0.0),
        };
        let mut at_limit = false;
        for (i, draw) in draws.iter().enumerate().skip(first) {
            let b = batch::make_batch(&train_ex, draw, source, device);
            // The random stream (dropout) restarts from (seed, step) at every step, so a run
            // resumed at any step draws what the uninterrupted run drew.
            tch::manual_seed(step_seed(cfg.seed, step));
            let Some(out) = train_step(&clf.model, &mut opts, &b, &mix, encoder_trains, step) else { continue };
            step += 1;
            steps_this_epoch += 1;
            seen += b.size;
            pending.push(step, out);
            at_limit = cfg.max_steps == Some(step);
            let stop = !at_limit && (signals::stop_requested() || cfg.interrupt_after == Some(step));
            if pending.len() >= sync_every || ui.due() || at_limit || stop || i + 1 == draws.len() {
                if let Err(e) = pending.flush(epoch, &mut metrics, &mut sums, &cfg.out) {
                    ui.bar.finish_and_clear();
                    return Err(e);
                }
                ui.update(i + 1, seen, sums.last_total, log);
            }
            if stop {
                ui.bar.finish_and_clear();
                let seconds = seconds_before + start.elapsed().as_secs_f64();
                metrics.wall_seconds = wall(&started);
                let at = Position { epoch, next_draw: i + 1, step, sums: &sums, seen, steps_this_epoch, epoch_seconds: seconds, best, since_best };
                let (state, tensors) = run_state(cfg, &clf, &opts, mix.log_vars, at, &metrics, false);
                resume::write(&cfg.out, state, tensors)?;
                if !cfg.save_best {
                    save(&clf, cfg, &metrics)?;
                }
                return Err(Error::Interrupted { out: cfg.out.clone(), step, epoch: epoch + 1, batch: i + 1, batches: draws.len() });
            }
            if at_limit {
                break;
            }
        }
        // Whatever a skipped, label-less last batch left unread (a no-op otherwise).
        if let Err(e) = pending.flush(epoch, &mut metrics, &mut sums, &cfg.out) {
            ui.bar.finish_and_clear();
            return Err(e);
        }
        ui.bar.finish_and_clear();
        let seconds = seconds_before + start.elapsed().as_secs_f64();
        let mean = |s: f64, n: usize| if n == 0 { f64::NAN } else { s / n as f64 };
        let (loss_a, loss_b) = (mean(sums.sum_a, sums.n_a), mean(sums.sum_b, sums.n_b));
        // A task with no rows in the epoch has no loss to show (never "NaN").
        let shown = |n: usize, l: f64| if n == 0 { "no rows".to_string() } else { format!("{l:.4}") };
        log(&format!("Epoch [{}/{}], Loss Task A: {}, Loss Task B: {}", epoch + 1, cfg.epochs, shown(sums.n_a, loss_a), shown(sums.n_b, loss_b)));
        let log_vars = match &mix.log_vars {
            Some(s) => {
                let v = Vec::<f64>::try_from(s.to_kind(Kind::Double).to_device(Device::Cpu))?;
                log(&format!("  uncertainty weighting: log-variance A {:.4}, B {:.4}", v[0], v[1]));
                Some([v[0], v[1]])
            }
            None => None,
        };
        clf.model.config.loss_log_vars = log_vars;
        let (dev, ood) = eval_all(&clf.model, log)?;
        let score = (!dev.is_empty()).then(|| dev.values().map(|m| m.accuracy).sum::<f64>() / dev.len() as f64);
        metrics.epochs.push(EpochRecord {
            epoch: epoch + 1,
            steps: steps_this_epoch,
            loss_a,
            loss_b,
            seconds,
            sentences_per_s: seen as f64 / seconds.max(1e-9),
            dev,
            ood,
            loss_log_vars: log_vars,
        });
        metrics.stopped_early = at_limit && step < full;
        let improved = match (score, best) {
            (Some(s), Some(b)) => s > b,
            _ => true,
        };
        if improved {
            best = score.or(best);
            since_best = 0;
        } else {
            since_best += 1;
        }
        let patience_over = cfg.patience.is_some_and(|p| since_best >= p) && epoch + 1 < cfg.epochs;
        if patience_over {
            metrics.early_stopped_epoch = Some(epoch + 1);
        }
        metrics.wall_seconds = wall(&started);
        if !cfg.save_best || improved {
            metrics.saved_epoch = Some(epoch + 1);
            save(&clf, cfg, &metrics)?;
        } else {
            write_metrics(&cfg.out, &metrics)?;
            log(&format!("  (dev not better than epoch {}: checkpoint kept)", metrics.saved_epoch.unwrap_or(0)));
        }
        if cfg.resume_state {
            let finished = at_limit || patience_over || epoch + 1 == cfg.epochs;
            let sums = EpochSums::default();
            let at = Position { epoch: epoch + 1, next_draw: 0, step, sums: &sums, seen: 0, steps_this_epoch: 0, epoch_seconds: 0.0, best, since_best };
            let (state, tensors) = run_state(cfg, &clf, &opts, mix.log_vars, at, &metrics, finished);
            resume::write(&cfg.out, state, tensors)?;
        }
        if at_limit {
            if metrics.stopped_early {
                log(&format!("stopped at the step limit ({step} optimizer steps)"));
            }
            break;
        }
        if patience_over {
            log(&format!("early stop: mean dev accuracy has not improved for {since_best} epoch(s) (patience {})", cfg.patience.unwrap_or(0)));
            break;
        }
    }
    log(&format!("saved to {}", cfg.out.display()));
    Ok(TrainOutcome { metrics, classifier: clf })
}

/// Metrics of `ex` from cached pooled vectors when there are, else through the whole model.
fn evaluate(model: &MultiTask, ex: &[Example], cached: Option<&Tensor>, b: Batching) -> Result<BTreeMap<String, TaskMetrics>> {
    match cached {
        _ if ex.is_empty() => Ok(BTreeMap::new()),
        Some(p) => infer::evaluate_pooled(model, ex, p, b.batch_size),
        None => infer::evaluate(model, ex, b),
    }
}

fn report_dev(set: &str, dev: &BTreeMap<String, TaskMetrics>, log: &mut dyn FnMut(&str)) {
    for (task, m) in dev {
        log(&format!("  {set} {task}: accuracy {:.4}, macro-F1 {:.4} (n={})", m.accuracy, m.macro_f1, m.n));
    }
}

/// The checkpoint (unless `cfg.save_weights` is off) and `metrics.json`.
fn save(clf: &Classifier, cfg: &TrainConfig, metrics: &RunMetrics) -> Result<()> {
    if cfg.save_weights {
        clf.save(&cfg.out)?;
    } else {
        clf.model.save_config(&cfg.out)?;
    }
    write_metrics(&cfg.out, metrics)
}

/// What a run stopped by a non-finite value leaves in `out`, in words.
fn saved_note(out: &Path, saved_epoch: Option<usize>) -> String {
    match (MultiTask::is_checkpoint(out), saved_epoch) {
        (true, Some(e)) => format!("the checkpoint of epoch {e} in {} is left as it was", out.display()),
        (true, None) => format!("{} still holds an earlier run's checkpoint, left as it was", out.display()),
        (false, _) => format!("{} holds no checkpoint: the run stopped before the end of its first epoch", out.display()),
    }
}

fn write_metrics(out: &Path, metrics: &RunMetrics) -> Result<()> {
    write_atomic(&out.join("metrics.json"), &serde_json::to_vec_pretty(metrics).expect("metrics serialise"))
}


#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> TrainConfig {
        let mut c = TrainConfig::new("m".into(), "out".into());
        c.task_a = Some("a.tsv".into());
        c
    }

    #[test]
    fn validation_names_the_field_of_each_rule() {
        base().validate().unwrap();
        type Change = Box<dyn Fn(&mut TrainConfig)>;
        let cases: Vec<(Change, &str)> = vec![
            (Box::new(|c| c.batch_size = 0), "batch_size must be at least 1"),
            (Box::new(|c| c.eval_batch_size = 0), "eval_batch_size must be at least 1"),
            (Box::new(|c| c.epochs = 0), "epochs must be at least 1"),
            (Box::new(|c| c.max_steps = Some(0)), "max_steps must be at least 1"),
            (Box::new(|c| c.task_a = None), "no training data"),
            (Box::new(|c| c.head_dropout = Some(1.0)), "head_dropout 1: must be in [0, 1)"),
            (Box::new(|c| c.layer_decay = Some(1.5)), "layer_decay 1.5"),
            (Box::new(|c| c.lr_overrides = vec![("x".into(), f64::NAN)]), "the rate must be finite"),
            (Box::new(|c| c.weight_b = f64::INFINITY), "weight_b inf"),
            (Box::new(|c| (c.weight_a, c.weight_b) = (0.0, 0.0)), "both 0"),
            (Box::new(|c| c.optim.clip_norm = Some(-1.0)), "clip_norm -1"),
        ];
        for (change, want) in cases {
            let mut c = base();
            change(&mut c);
            let e = c.validate().unwrap_err().to_string();
            assert!(e.contains(want), "want '{want}', got '{e}'");
        }
    }

    #[test]
    fn durations_read_well() {
        assert_eq!(fmt_duration(42.4), "42s");
        assert_eq!(fmt_duration(75.0), "1m15s");
        assert_eq!(fmt_duration(4000.0), "1h06m40s");
    }

    #[test]
    fn a_non_finite_value_stops_at_the_flush_naming_the_step() {
        let mut p = Pending::default();
        let scalar = |v: f32| Tensor::from_slice(&[v]).reshape([]);
        for (step, v) in [(1, 0.5f32), (2, f32::NAN)] {
            p.push(step, StepLosses { loss_a: Some(scalar(v)), loss_b: None, total: scalar(v), grad_norm: None });
        }
        let mut m = RunMetrics::default();
        let e = p.flush(0, &mut m, &mut EpochSums::default(), Path::new("o")).unwrap_err().to_string();
        assert!(e.starts_with("loss became NaN at step 2 (epoch 1)"), "{e}");
        let mut p = Pending::default();
        p.push(3, StepLosses { loss_a: None, loss_b: Some(scalar(1.0)), total: scalar(1.0), grad_norm: Some(scalar(f32::INFINITY)) });
        let e = p.flush(1, &mut m, &mut EpochSums::default(), Path::new("o")).unwrap_err().to_string();
        assert!(e.starts_with("gradient norm became inf at step 3 (epoch 2)"), "{e}");
        let mut p = Pending::default();
        p.push(4, StepLosses { loss_a: Some(scalar(2.0)), loss_b: Some(scalar(1.0)), total: scalar(3.0), grad_norm: Some(scalar(0.5)) });
        let mut sums = EpochSums::default();
        p.flush(0, &mut m, &mut sums, Path::new("o")).unwrap();
        assert_eq!((sums.sum_a, sums.n_a, sums.sum_b, sums.n_b, sums.last_total), (2.0, 1, 1.0, 1, 3.0));
        assert_eq!(m.step_losses, vec![3.0]);
        assert_eq!((m.step_losses_a.clone(), m.step_losses_b.clone()), (vec![Some(2.0)], vec![Some(1.0)]));
        assert_eq!(p.len(), 0);
    }
}

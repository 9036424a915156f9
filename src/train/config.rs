//! A run's settings: [`TrainConfig`], in four parts (what data, how the model is optimised, the
//! schedule of steps and epochs, what is written where), and every rule they must meet
//! ([`TrainConfig::validate`]). The parts are flattened when serialised, so `config.json`'s
//! `training` record and the resume state keep one flat object of named fields.

use crate::batch::TaskSampling;
use crate::config::PoolingConfig;
use crate::data::Task;
use crate::error::{invalid, Error, Result};
use crate::freeze::Freeze;
use crate::optim::{check_rate, LrPreset, OptimConfig};
use crate::task::TaskSpec;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

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
    /// `auto`, `cpu`, `cuda` or `cuda:N`.
    pub device: String,
    /// Dropout on the pooled vector before the heads. `None`: 0 for a base model, the
    /// checkpoint's own value when continuing from one.
    pub head_dropout: Option<f64>,
    /// Pooling the heads read (`mean`, `max`, `cls`); `None`: the model folder's own.
    #[serde(default)]
    pub pooling: Option<String>,
    /// The files the run learns from and is measured on.
    #[serde(flatten)]
    pub data: DataConfig,
    /// What trains, at which rates, towards which combined loss.
    #[serde(flatten)]
    pub optimizer: OptimizerConfig,
    /// Epochs, batches, seed and stopping rules.
    #[serde(flatten)]
    pub schedule: ScheduleConfig,
    /// The output folder and what is written into it.
    #[serde(flatten)]
    pub output: OutputConfig,
}

/// The files a run learns from and is measured on.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct DataConfig {
    /// Task A training file (TSV, CSV or JSON Lines with `text` and `label`); `None`: Task A
    /// labels come from joint files only.
    pub task_a: Option<PathBuf>,
    /// Task B training file (columns `text` and `label`); `None`: Task B labels come from joint
    /// files only.
    pub task_b: Option<PathBuf>,
    /// Joint files with `text`, `label_a`, `label_b`.
    pub joint: Vec<PathBuf>,
    /// Task A dev file, evaluated after each epoch; `None`: no Task A dev metrics (unless a
    /// joint dev file has Task A labels).
    pub dev_a: Option<PathBuf>,
    /// Task B dev file, evaluated after each epoch; `None`: no Task B dev metrics (unless a
    /// joint dev file has Task B labels).
    pub dev_b: Option<PathBuf>,
    /// Joint dev files (`text`, `label_a`, `label_b`), evaluated with `dev_a` and `dev_b`.
    pub dev_joint: Vec<PathBuf>,
    /// An extra Task B file evaluated after each epoch and never used to pick a checkpoint
    /// (out-of-domain check).
    #[serde(default)]
    pub ood_b: Option<PathBuf>,
    /// Use only the first N rows of each training file.
    pub limit: Option<usize>,
    /// Train one task only: the other task's rows are left out (its head keeps its initial
    /// weights). The single-task baseline for "does sharing the encoder help?".
    #[serde(default)]
    pub only_task: Option<Task>,
    /// Named tasks beside (or instead of) the seed's two: `--task NAME=KIND:TRAIN[:DEV]` or a
    /// tasks file. Their heads follow `task_a` and `task_b` (when those have data) in this order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tasks: Vec<TaskSpec>,
    /// Score the encoder's own embeddings on this file of scored pairs (STS-B dev) after the
    /// run, zero-shot: what the fine-tune kept of sentence similarity (`metrics.json`'s `sts`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sts_eval: Option<PathBuf>,
}

/// What trains, at which rates, towards which combined loss.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OptimizerConfig {
    /// The freezing scenario: which subsets receive no updates (default: none frozen).
    pub freeze: Freeze,
    /// The preset per-subset learning rates, before `layer_decay` and `lr_overrides` (default:
    /// layer-wise).
    pub lr_plan: LrPreset,
    /// `(name prefix, rate)` pairs over the preset, later ones winning.
    pub lr_overrides: Vec<(String, f64)>,
    /// Per-layer decay of the rates (head rate times decay to the power of the depth).
    pub layer_decay: Option<f64>,
    /// Adam or AdamW, weight decay, warm-up, decay and gradient clipping.
    pub optim: OptimConfig,
    /// Factor on Task A's loss in the combined loss (finite, >= 0; default 1).
    pub weight_a: f64,
    /// Factor on Task B's loss in the combined loss (finite, >= 0, not 0 together with
    /// `weight_a`; default 1).
    pub weight_b: f64,
    /// How the two losses combine: fixed weights (the default) or uncertainty weighting.
    #[serde(default = "default_loss_weighting")]
    pub loss_weighting: LossWeighting,
    /// Learning rate of the uncertainty log-variances.
    #[serde(default = "default_loss_weighting_lr")]
    pub loss_weighting_lr: f64,
}

/// How many steps and epochs, in which batches, and when to stop.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ScheduleConfig {
    /// Passes over the training data (at least 1; default 1).
    pub epochs: usize,
    /// Training rows per batch, one optimizer step each (at least 1; default 32).
    pub batch_size: usize,
    /// Rows per batch when evaluating dev and out-of-domain files (at least 1; default 64).
    pub eval_batch_size: usize,
    /// Seed of the heads' initial weights, the batch draws and dropout (default 0).
    pub seed: u64,
    /// Stop after this many optimizer steps in all (at least 1; a linear decay then reaches 0
    /// there, if that comes before the last epoch's end); `None`: run every epoch.
    pub max_steps: Option<usize>,
    /// How batches are drawn from the two tasks.
    #[serde(default = "default_sampling")]
    pub sampling: TaskSampling,
    /// Length-bucketed batches (rows of similar token length together, batch order shuffled)
    /// for proportional sampling; `false` (the default): every batch a uniform draw. The encoder
    /// packs real tokens in training, so bucketing no longer buys speed on CPU, and it cost
    /// TREC-6 accuracy (docs/performance.md, "Bucketing and accuracy").
    #[serde(default)]
    pub bucketing: bool,
    /// Stop after this many epochs without a better mean dev accuracy.
    #[serde(default)]
    pub patience: Option<usize>,
    /// Train the heads on cached pooled vectors when nothing in the encoder trains.
    #[serde(default = "yes")]
    pub cache: bool,
    /// Keep cached vectors on disk here (shared between runs); `None`: in memory only.
    #[serde(default)]
    pub cache_dir: Option<PathBuf>,
}

/// What a run writes, and where.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OutputConfig {
    /// The checkpoint folder.
    pub out: PathBuf,
    /// Keep the checkpoint of the best dev epoch (mean dev accuracy) instead of the last.
    pub save_best: bool,
    /// Write `OUT/resume/` (weights, optimizer moments, position) at the end of every epoch, so
    /// that a run can be resumed; a stop request writes it mid-epoch too.
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
}

impl TrainConfig {
    /// Defaults of the seed's Task 3/4, training `model` and writing to `out`; no data yet.
    pub fn new(model: PathBuf, out: PathBuf) -> Self {
        TrainConfig {
            model,
            device: "auto".into(),
            head_dropout: None,
            pooling: None,
            data: DataConfig::default(),
            optimizer: OptimizerConfig {
                freeze: Freeze::None,
                lr_plan: LrPreset::Layerwise,
                lr_overrides: vec![],
                layer_decay: None,
                optim: OptimConfig::default(),
                weight_a: 1.0,
                weight_b: 1.0,
                loss_weighting: LossWeighting::Fixed,
                loss_weighting_lr: LOSS_WEIGHTING_LR,
            },
            schedule: ScheduleConfig {
                epochs: 1,
                batch_size: 32,
                eval_batch_size: 64,
                seed: 0,
                max_steps: None,
                sampling: TaskSampling::Proportional,
                bucketing: false,
                patience: None,
                cache: true,
                cache_dir: None,
            },
            output: OutputConfig { out, save_best: false, resume_state: true, save_weights: true, overwrite: false },
        }
    }

    /// Checks every rule a run's settings must meet, before anything is loaded. Errors name the
    /// field (`batch_size`, `weight_a`, ...): the command line maps them to its flags.
    pub fn validate(&self) -> Result<()> {
        self.data.validate()?;
        self.optimizer.validate()?;
        self.schedule.validate()?;
        if let Some(p) = self.head_dropout {
            if !(0.0..1.0).contains(&p) {
                return Err(invalid(format!("head_dropout {p}: must be in [0, 1)")));
            }
        }
        if let Some(p) = &self.pooling {
            PoolingConfig::from_name(p)?;
        }
        if self.schedule.patience.is_some() && !self.data.has_dev() {
            return Err(invalid("patience needs dev data (dev_a, dev_b or a joint dev file) to watch"));
        }
        if self.output.out.as_os_str().is_empty() {
            return Err(invalid("out: an output folder is required"));
        }
        Ok(())
    }
}

fn at_least_1(name: &str, v: usize) -> Result<()> {
    if v == 0 {
        Err(invalid(format!("{name} must be at least 1")))
    } else {
        Ok(())
    }
}

impl DataConfig {
    /// Whether any dev file is given.
    pub fn has_dev(&self) -> bool {
        self.dev_a.is_some() || self.dev_b.is_some() || !self.dev_joint.is_empty() || self.tasks.iter().any(|t| t.dev.is_some())
    }

    /// Whether the seed's Task A / Task B files (or joint files) are given.
    pub fn has_seed_tasks(&self) -> bool {
        self.task_a.is_some() || self.task_b.is_some() || !self.joint.is_empty()
    }

    fn validate(&self) -> Result<()> {
        if let Some(l) = self.limit {
            at_least_1("limit", l)?;
        }
        if !self.has_seed_tasks() && self.tasks.is_empty() {
            return Err(invalid("no training data: give task_a and task_b files, a joint file, or tasks"));
        }
        for t in &self.tasks {
            t.validate()?;
        }
        let seed = if self.has_seed_tasks() { vec![crate::task::TASK_A, crate::task::TASK_B] } else { vec![] };
        crate::task::check_unique(seed.into_iter().chain(self.tasks.iter().map(|t| t.name.as_str())))?;
        if self.only_task.is_some() && !self.tasks.is_empty() {
            return Err(invalid("only_task picks one of the seed's two tasks: with named tasks, list only the tasks to train"));
        }
        Ok(())
    }
}

impl OptimizerConfig {
    fn validate(&self) -> Result<()> {
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
        if !(self.loss_weighting_lr.is_finite() && self.loss_weighting_lr > 0.0) {
            return Err(invalid(format!("loss_weighting_lr {}: must be finite and > 0", self.loss_weighting_lr)));
        }
        Ok(())
    }
}

impl ScheduleConfig {
    fn validate(&self) -> Result<()> {
        at_least_1("batch_size", self.batch_size)?;
        at_least_1("eval_batch_size", self.eval_batch_size)?;
        at_least_1("epochs", self.epochs)?;
        if let Some(m) = self.max_steps {
            at_least_1("max_steps", m)?;
        }
        if let Some(p) = self.patience {
            at_least_1("patience", p)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> TrainConfig {
        let mut c = TrainConfig::new("m".into(), "out".into());
        c.data.task_a = Some("a.tsv".into());
        c
    }

    #[test]
    fn validation_names_the_field_of_each_rule() {
        base().validate().unwrap();
        type Change = Box<dyn Fn(&mut TrainConfig)>;
        let cases: Vec<(Change, &str)> = vec![
            (Box::new(|c| c.schedule.batch_size = 0), "batch_size must be at least 1"),
            (Box::new(|c| c.schedule.eval_batch_size = 0), "eval_batch_size must be at least 1"),
            (Box::new(|c| c.schedule.epochs = 0), "epochs must be at least 1"),
            (Box::new(|c| c.schedule.max_steps = Some(0)), "max_steps must be at least 1"),
            (Box::new(|c| c.data.task_a = None), "no training data"),
            (Box::new(|c| c.head_dropout = Some(1.0)), "head_dropout 1: must be in [0, 1)"),
            (Box::new(|c| c.optimizer.layer_decay = Some(1.5)), "layer_decay 1.5"),
            (Box::new(|c| c.optimizer.lr_overrides = vec![("x".into(), f64::NAN)]), "the rate must be finite"),
            (Box::new(|c| c.optimizer.weight_b = f64::INFINITY), "weight_b inf"),
            (Box::new(|c| (c.optimizer.weight_a, c.optimizer.weight_b) = (0.0, 0.0)), "both 0"),
            (Box::new(|c| c.optimizer.optim.clip_norm = Some(-1.0)), "clip_norm -1"),
            (Box::new(|c| c.schedule.patience = Some(2)), "patience needs dev data"),
            (Box::new(|c| c.output.out = PathBuf::new()), "out: an output folder is required"),
        ];
        for (change, want) in cases {
            let mut c = base();
            change(&mut c);
            let e = c.validate().unwrap_err().to_string();
            assert!(e.contains(want), "want '{want}', got '{e}'");
        }
    }

    #[test]
    fn the_parts_serialise_as_one_flat_object_as_before() {
        let mut c = base();
        c.schedule.seed = 7;
        c.optimizer.optim.clip_norm = Some(1.0);
        let v = serde_json::to_value(&c).unwrap();
        let keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
        for k in ["model", "out", "task_a", "seed", "epochs", "freeze", "lr_plan", "optim", "save_best", "resume_state", "sampling", "cache_dir", "only_task"] {
            assert!(keys.contains(&k), "{k} missing from {keys:?}");
        }
        assert!(!keys.contains(&"data") && !keys.contains(&"schedule") && !keys.contains(&"overwrite"), "{keys:?}");
        let back: TrainConfig = serde_json::from_value(v.clone()).unwrap();
        assert_eq!(serde_json::to_value(&back).unwrap(), v);
        // A record written before the split (flat, some fields absent) still reads.
        let old = serde_json::json!({"model": "m", "out": "o", "task_a": "a.tsv", "task_b": null, "joint": [], "dev_a": null, "dev_b": null,
            "dev_joint": [], "freeze": "None", "lr_plan": "Layerwise", "lr_overrides": [], "layer_decay": null,
            "optim": {"adamw": false, "weight_decay": 0.0, "warmup_steps": 0, "linear_decay": false, "clip_norm": null},
            "epochs": 2, "batch_size": 32, "eval_batch_size": 64, "seed": 3, "max_steps": null, "limit": null,
            "weight_a": 1.0, "weight_b": 1.0, "head_dropout": null, "save_best": false, "device": "cpu"});
        let old: TrainConfig = serde_json::from_value(old).unwrap();
        assert_eq!((old.schedule.epochs, old.schedule.seed, old.schedule.cache, old.output.resume_state), (2, 3, true, true));
    }
}

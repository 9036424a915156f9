//! Owns Task 2's model: the shared encoder plus one `nn::Linear` head per classification task
//! (the seed's two, `classification_head` for Task A and `sentiment_head` for Task B, by
//! default; `heads.<name>` for any other task), with all of their parameters, and the checkpoint
//! format (`model.safetensors` + `config.json`) it is saved in and recognised by.
//!
//! A classification head reads the pooled vector `u`; a pair-classification head reads
//! `(u, v, |u - v|)` of the pair's two vectors; a similarity task has no head (the cosine of the
//! two vectors is its prediction).
//!
//! Variable names are the seed's PyTorch `named_parameters()`; there is no pooler.

use crate::config::{EncoderConfig, PoolingConfig};
use crate::data::Labels;
use crate::task::{TaskInfo, TaskKind, TASK_A, TASK_B};
use crate::error::{check_path, invalid, Error, Result, Want};
use crate::fsutil::{file_sha256, sha256_hex, write_atomic};
use crate::model::Encoder;
use crate::params::{LoadReport, Params, HEADS};
use crate::tokenizer::SentenceTokenizer;
use serde::{Deserialize, Serialize};
use std::path::Path;
use tch::{nn, nn::Module, Device, Tensor};

/// The model description saved as `config.json` next to `model.safetensors`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MultiTaskConfig {
    /// The checkpoint format tag, [`FORMAT`].
    pub format: String,
    /// The encoder's architecture, tokenizer settings and pooling.
    pub encoder: EncoderConfig,
    /// Task A's label names, in the order of `classification_head`'s outputs (written when the
    /// model has the seed's `task_a`, so that two-task readers of the format keep working).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels_a: Option<Labels>,
    /// Task B's label names, in the order of `sentiment_head`'s outputs (when the model has
    /// `task_b`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels_b: Option<Labels>,
    /// Dropout probability on the pooled vector before the heads (training only).
    pub head_dropout: f64,
    /// Learned uncertainty weighting's log-variances, one per task in `tasks` order, when the
    /// run used it.
    #[serde(default)]
    pub loss_log_vars: Option<Vec<f64>>,
    /// The training run that produced the weights, if any.
    #[serde(default)]
    pub training: Option<serde_json::Value>,
    /// Every task of the model, in head order (checkpoints from before tasks were named have
    /// only `labels_a` and `labels_b`: they read as `task_a` and `task_b`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tasks: Vec<TaskInfo>,
    /// Checksums written by [`MultiTask::save`] and checked by [`MultiTask::load`] (absent in
    /// checkpoints from before they existed, which load unchecked).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub integrity: Option<Integrity>,
}

/// SHA-256 checksums that tie a checkpoint's two files together.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Integrity {
    /// Of `model.safetensors`, byte for byte.
    pub weights_sha256: String,
    /// Of this config's content without the `integrity` field (compact JSON, so formatting
    /// does not matter but every value does).
    pub config_sha256: String,
}

impl MultiTaskConfig {
    /// The task named `name`, with its index.
    pub fn task(&self, name: &str) -> Option<(usize, &TaskInfo)> {
        self.tasks.iter().enumerate().find(|(_, t)| t.name == name)
    }

    /// The task names, in head order.
    pub fn task_names(&self) -> Vec<&str> {
        self.tasks.iter().map(|t| t.name.as_str()).collect()
    }

    /// A config read from a file written before tasks were named gets its two seed tasks.
    fn fill_tasks(&mut self) {
        if self.tasks.is_empty() {
            let seed = [(TASK_A, &self.labels_a), (TASK_B, &self.labels_b)];
            self.tasks = seed.iter().filter_map(|(n, l)| l.as_ref().map(|l| TaskInfo::classes(n, TaskKind::Classification, l.clone()))).collect();
        }
    }

    /// Checksum of the content without the `integrity` field.
    fn content_sha256(&self) -> String {
        let mut c = self.clone();
        c.integrity = None;
        sha256_hex(&serde_json::to_vec(&c).expect("config serialises"))
    }
}

/// Tag in `config.json` that marks a multi-task checkpoint folder.
pub const FORMAT: &str = "multi-task-transformer/v1";
/// The weights file of a checkpoint folder.
pub const WEIGHTS_FILE: &str = "model.safetensors";
/// The vocabulary file of a checkpoint folder (written by `Classifier::save`).
pub const VOCAB_FILE: &str = "vocab.txt";
/// The model description of a checkpoint folder.
pub const CONFIG_FILE: &str = "config.json";

/// A linear layer initialised as PyTorch's `nn.Linear` is: weight and bias uniform in
/// ±1/sqrt(fan_in). (tch's default weight init is Kaiming-uniform for ReLU, √6 times wider.)
pub fn torch_linear(p: nn::Path, in_dim: i64, out_dim: i64) -> nn::Linear {
    let bound = 1.0 / (in_dim as f64).sqrt();
    let init = nn::Init::Uniform { lo: -bound, up: bound };
    nn::linear(p, in_dim, out_dim, nn::LinearConfig { ws_init: init, bs_init: Some(init), bias: true })
}

/// A pooled-vector dropout probability must lie in [0, 1).
fn check_dropout(p: f64) -> Result<()> {
    if (0.0..1.0).contains(&p) {
        Ok(())
    } else {
        Err(invalid(format!("head_dropout {p}: must be in [0, 1)")))
    }
}

/// Encoder plus one head per classification task, owning every parameter (as subsets of one
/// [`Params`]).
pub struct MultiTask {
    params: Params,
    encoder: Encoder,
    /// One entry per task in `config.tasks` order; `None` for a similarity task (no head).
    heads: Vec<Option<nn::Linear>>,
    /// The model's description, saved as the checkpoint's `config.json`.
    pub config: MultiTaskConfig,
}

impl MultiTask {
    /// A randomly initialised model on `device`: the encoder first, then the heads in task order
    /// (initialised like PyTorch's `nn.Linear`), so a given `tch::manual_seed` always draws the
    /// same heads.
    pub fn new(encoder: &EncoderConfig, tasks: Vec<TaskInfo>, head_dropout: f64, device: Device) -> Result<Self> {
        if tasks.is_empty() {
            return Err(invalid("a multi-task model needs at least one task"));
        }
        crate::task::check_unique(tasks.iter().map(|t| t.name.as_str()))?;
        for t in &tasks {
            crate::task::check_name(&t.name)?;
            if t.kind.has_head() && t.labels.is_empty() {
                return Err(invalid(format!("task {}: each classification task needs at least one label", t.name)));
            }
        }
        check_dropout(head_dropout)?;
        let mut params = Params::new(device);
        let enc = Encoder::new(&mut params, encoder);
        let dim = encoder.embedding_dim();
        let mut heads = Vec::with_capacity(tasks.len());
        for t in &tasks {
            if !t.kind.has_head() {
                heads.push(None);
                continue;
            }
            let name = t.subset();
            let input = if t.kind.is_pair() { 3 * dim } else { dim };
            let vs = params.new_store();
            let mut p = vs.root();
            for part in name.split('.') {
                p = p / part;
            }
            heads.push(Some(torch_linear(p, input, t.labels.len() as i64)));
            params.push(&name, vs);
        }
        let seed_labels = |n: &str| tasks.iter().find(|t| t.name == n && t.kind == TaskKind::Classification).map(|t| t.labels.clone());
        let config = MultiTaskConfig {
            format: FORMAT.into(),
            encoder: encoder.clone(),
            labels_a: seed_labels(TASK_A),
            labels_b: seed_labels(TASK_B),
            head_dropout,
            loss_log_vars: None,
            training: None,
            tasks,
            integrity: None,
        };
        Ok(MultiTask { params, encoder: enc, heads, config })
    }

    /// The seed's model: `task_a` and `task_b`, both classification.
    pub fn two_task(encoder: &EncoderConfig, labels_a: Labels, labels_b: Labels, head_dropout: f64, device: Device) -> Result<Self> {
        Self::new(encoder, crate::task::seed_tasks(labels_a, labels_b), head_dropout, device)
    }

    /// The model's tasks, in head order.
    pub fn tasks(&self) -> &[TaskInfo] {
        &self.config.tasks
    }

    /// Fills the encoder from a base model's weights file; the heads keep their initial values.
    pub fn load_encoder_weights(&self, path: &Path) -> Result<LoadReport> {
        self.params.load(path, &HEADS)
    }

    /// All parameters, as named subsets.
    pub fn params(&self) -> &Params {
        &self.params
    }

    /// The shared encoder.
    pub fn encoder(&self) -> &Encoder {
        &self.encoder
    }

    /// Switches the encoder to `precision` for inference (see [`Encoder::set_precision`]); the
    /// heads stay float32.
    pub fn set_precision(&mut self, precision: crate::precision::Precision, tokenizer: &SentenceTokenizer) -> Result<()> {
        self.encoder.set_precision(&mut self.params, precision, tokenizer)
    }

    /// The device the model lives on.
    pub fn device(&self) -> Device {
        self.params.device()
    }

    /// Sets the pooled-vector dropout used when training.
    pub fn set_head_dropout(&mut self, p: f64) -> Result<()> {
        check_dropout(p)?;
        self.config.head_dropout = p;
        Ok(())
    }

    /// Changes the pooling the heads read (for instance `max` or `cls` instead of the folder's
    /// `mean`). The pooled width must stay the same: the heads are already built for it.
    pub fn set_pooling(&mut self, pooling: PoolingConfig) -> Result<()> {
        let (old, new) = (self.config.encoder.pooling.n_modes(), pooling.n_modes());
        if old != new {
            return Err(invalid(format!(
                "pooling '{}' gives {new} vector(s) per sentence but the heads read {old} ('{}')",
                pooling.describe(),
                self.config.encoder.pooling.describe()
            )));
        }
        self.config.encoder.pooling = pooling;
        self.encoder.set_pooling(pooling);
        Ok(())
    }

    /// Pooled sentence vectors `[batch, dim]` (dropout inside the encoder when training).
    pub fn pooled_t(&self, ids: &Tensor, mask: &Tensor, train: bool) -> Tensor {
        self.encoder.embed_t(ids, mask, train)
    }

    /// Task `t`'s logits from the pooled vectors `u` (and `v`, the second texts', for a pair
    /// task), with the pooled-vector dropout when training; `None` for a similarity task.
    pub fn logits_t(&self, t: usize, u: &Tensor, v: Option<&Tensor>, train: bool) -> Option<Tensor> {
        let head = self.heads.get(t)?.as_ref()?;
        let x = match v {
            Some(v) => Tensor::cat(&[u.shallow_clone(), v.shallow_clone(), (u - v).abs()], 1),
            None => u.shallow_clone(),
        };
        Some(head.forward(&x.dropout(self.config.head_dropout, train)))
    }

    /// The one-text classification heads' logits on pooled vectors `[batch, dim]`: `(task index,
    /// [batch, n_labels])` in task order.
    pub fn text_heads_t(&self, pooled: &Tensor, train: bool) -> Vec<(usize, Tensor)> {
        (0..self.heads.len())
            .filter(|&t| self.config.tasks[t].kind == TaskKind::Classification)
            .filter_map(|t| Some((t, self.logits_t(t, pooled, None, train)?)))
            .collect()
    }

    /// Whether `dir` holds a multi-task checkpoint: a `config.json` whose `format` is [`FORMAT`].
    pub fn is_checkpoint(dir: &Path) -> bool {
        std::fs::read_to_string(dir.join(CONFIG_FILE))
            .ok()
            .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
            .is_some_and(|v| v.get("format").and_then(|f| f.as_str()) == Some(FORMAT))
    }

    /// Reads and checks a checkpoint's `config.json` (its own checksum included, when it has one,
    /// and every setting of the encoder, the labels and the head dropout: see
    /// [`EncoderConfig::check`]).
    pub fn read_config(dir: &Path) -> Result<MultiTaskConfig> {
        check_path(dir, "checkpoint folder", Want::Folder)?;
        let path = dir.join(CONFIG_FILE);
        let bytes = std::fs::read(&path).map_err(|e| Error::io(&path, e))?;
        let text = String::from_utf8(bytes).map_err(|e| Error::config(&path, format!("not UTF-8 text ({e}): the file is damaged")))?;
        let config: MultiTaskConfig = serde_json::from_str(&text)
            .map_err(|e| Error::config(&path, format!("not a multi-task checkpoint config ({e}); train one with `mtt train`")))?;
        if config.format != FORMAT {
            return Err(Error::config(&path, format!("format '{}' is not {FORMAT}", config.format)));
        }
        if let Some(i) = &config.integrity {
            if config.content_sha256() != i.config_sha256 {
                return Err(Error::config(
                    &path,
                    "content does not match its checksum (integrity.config_sha256): the file is damaged or was edited after saving",
                ));
            }
        }
        let vocab = dir.join(VOCAB_FILE);
        config.encoder.check(&path, "encoder.", vocab.is_file().then_some(vocab.as_path()))?;
        let mut config = config;
        config.fill_tasks();
        if config.tasks.is_empty() {
            return Err(Error::config(&path, "no tasks: the config has neither 'tasks' nor 'labels_a'/'labels_b'"));
        }
        for t in &config.tasks {
            crate::task::check_name(&t.name).map_err(|e| Error::config(&path, format!("tasks: {e}")))?;
            if t.kind.has_head() && t.labels.is_empty() {
                let field = match t.name.as_str() {
                    TASK_A => "labels_a".to_string(),
                    TASK_B => "labels_b".to_string(),
                    n => format!("task {n}'s labels"),
                };
                return Err(Error::config(&path, format!("{field} is empty: each task needs at least one label")));
            }
        }
        crate::task::check_unique(config.tasks.iter().map(|t| t.name.as_str())).map_err(|e| Error::config(&path, e.to_string()))?;
        for (field, name, labels) in [("labels_a", TASK_A, &config.labels_a), ("labels_b", TASK_B, &config.labels_b)] {
            if let (Some(l), Some((_, t))) = (labels, config.task(name)) {
                if &t.labels != l {
                    return Err(Error::config(&path, format!("{field} {:?} differs from task {name}'s labels {:?}", l.0, t.labels.0)));
                }
            }
        }
        if !(0.0..1.0).contains(&config.head_dropout) {
            return Err(Error::config(&path, format!("head_dropout is {}: must be in [0, 1)", config.head_dropout)));
        }
        Ok(config)
    }

    /// The checkpoint's weights file, after checking it against the checksum in `config` (when
    /// the config has one).
    pub fn checked_weights(dir: &Path, config: &MultiTaskConfig) -> Result<std::path::PathBuf> {
        let weights = dir.join(WEIGHTS_FILE);
        if let Some(i) = &config.integrity {
            let got = file_sha256(&weights)?;
            if got != i.weights_sha256 {
                return Err(Error::Weights {
                    path: weights,
                    msg: format!(
                        "SHA-256 {got} differs from the {} recorded in {CONFIG_FILE}: the file is damaged, truncated or from another checkpoint",
                        i.weights_sha256
                    ),
                });
            }
        }
        Ok(weights)
    }

    /// Loads the model of a checkpoint folder written by [`MultiTask::save`].
    pub fn load(dir: &Path, device: Device) -> Result<(Self, LoadReport)> {
        let config = Self::read_config(dir)?;
        let weights = Self::checked_weights(dir, &config)?;
        let mut model = MultiTask::new(&config.encoder, config.tasks.clone(), config.head_dropout, device)?;
        model.config = config;
        let report = model.params.load(&weights, &[])?;
        Ok((model, report))
    }

    /// Writes `model.safetensors` and `config.json` into `dir`, each atomically, the config
    /// carrying the checksums of both.
    pub fn save(&self, dir: &Path) -> Result<()> {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let weights = dir.join(WEIGHTS_FILE);
        self.params.save(&weights)?;
        self.write_config(dir, true)
    }

    /// Writes `config.json` alone: a record of the model (labels, pooling, head dropout) without
    /// weights or checksums, which does not load as a checkpoint (the experiment runner's run
    /// folders).
    pub fn save_config(&self, dir: &Path) -> Result<()> {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        self.write_config(dir, false)
    }

    fn write_config(&self, dir: &Path, with_weights: bool) -> Result<()> {
        let mut config = self.config.clone();
        config.integrity = None;
        if with_weights {
            config.integrity = Some(Integrity { weights_sha256: file_sha256(&dir.join(WEIGHTS_FILE))?, config_sha256: config.content_sha256() });
        }
        let json = serde_json::to_vec_pretty(&config).expect("config serialises");
        write_atomic(&dir.join(CONFIG_FILE), &json)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heads_are_initialised_like_pytorch_linear() {
        tch::manual_seed(0);
        let vs = nn::VarStore::new(Device::Cpu);
        let l = torch_linear(vs.root() / "h", 384, 6);
        let bound = 1.0 / 384f64.sqrt();
        let max = f64::try_from(l.ws.abs().max()).unwrap();
        assert!(max <= bound && max > 0.9 * bound, "max |w| {max} vs bound {bound}");
        assert!(f64::try_from(l.bs.unwrap().abs().max()).unwrap() <= bound);
    }

    #[test]
    fn checkpoint_detection_reads_the_format_field_not_the_text() {
        let d = tempfile::tempdir().unwrap();
        assert!(!MultiTask::is_checkpoint(d.path()));
        std::fs::write(d.path().join(CONFIG_FILE), format!(r#"{{"note": "{FORMAT}"}}"#)).unwrap();
        assert!(!MultiTask::is_checkpoint(d.path()), "a mention of the tag is not a checkpoint");
        let labels = |v: &[&str]| Labels(v.iter().map(|s| s.to_string()).collect());
        let m = MultiTask::two_task(&EncoderConfig::tiny(40), labels(&["x", "y"]), labels(&["p"]), 0.0, Device::Cpu).unwrap();
        m.save(d.path()).unwrap();
        assert!(MultiTask::is_checkpoint(d.path()));
        let (back, report) = MultiTask::load(d.path(), Device::Cpu).unwrap();
        assert!(report.missing.is_empty() && report.unexpected.is_empty());
        assert_eq!(back.params().names(), m.params().names());
    }
}

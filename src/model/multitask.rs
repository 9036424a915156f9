//! Task 2: the multi-task model. The shared encoder, mask-aware pooling, optional dropout, then
//! two `nn::Linear` heads: `classification_head` (Task A) and `sentiment_head` (Task B).
//! Variable names are the seed's PyTorch `named_parameters()`; there is no pooler.

use crate::config::EncoderConfig;
use crate::data::Labels;
use crate::embed::SentenceEncoder;
use crate::error::{Error, Result};
use crate::params::{write_atomic, LoadReport, HEAD_A, HEAD_B};
use crate::tokenizer::SentenceTokenizer;
use serde::{Deserialize, Serialize};
use std::path::Path;
use tch::{nn, nn::Module, Device, Tensor};

/// The model description saved as `config.json` next to `model.safetensors`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MultiTaskConfig {
    pub format: String,
    pub encoder: EncoderConfig,
    pub labels_a: Labels,
    pub labels_b: Labels,
    /// Dropout probability on the pooled vector before the heads (training only).
    pub head_dropout: f64,
    /// The training run that produced the weights, if any.
    #[serde(default)]
    pub training: Option<serde_json::Value>,
}

/// Tag in `config.json` that marks a multi-task checkpoint folder.
pub const FORMAT: &str = "multi-task-transformer/v1";

/// Both tasks' logits: `[batch, n_labels_a]` and `[batch, n_labels_b]`.
pub struct Logits {
    pub a: Tensor,
    pub b: Tensor,
}

/// Encoder plus two heads.
pub struct MultiTask {
    pub base: SentenceEncoder,
    head_a: nn::Linear,
    head_b: nn::Linear,
    pub config: MultiTaskConfig,
}

impl MultiTask {
    /// Adds freshly initialised heads (PyTorch's default `Linear` init) to `base`.
    pub fn new(mut base: SentenceEncoder, labels_a: Labels, labels_b: Labels, head_dropout: f64) -> Result<Self> {
        if labels_a.is_empty() || labels_b.is_empty() {
            return Err(crate::error::invalid("each task needs at least one label"));
        }
        let dim = base.config().embedding_dim();
        let vs = base.params.new_store();
        let head_a = nn::linear(vs.root() / HEAD_A, dim, labels_a.len() as i64, Default::default());
        base.params.push(HEAD_A, vs);
        let vs = base.params.new_store();
        let head_b = nn::linear(vs.root() / HEAD_B, dim, labels_b.len() as i64, Default::default());
        base.params.push(HEAD_B, vs);
        let config = MultiTaskConfig {
            format: FORMAT.into(),
            encoder: base.config().clone(),
            labels_a,
            labels_b,
            head_dropout,
            training: None,
        };
        Ok(MultiTask { base, head_a, head_b, config })
    }

    /// Pooled vectors `[batch, dim]`, with dropout when training.
    pub fn pooled_t(&self, ids: &Tensor, mask: &Tensor, train: bool) -> Tensor {
        self.base.encoder.embed_t(ids, mask, train).dropout(self.config.head_dropout, train)
    }

    /// Both tasks' logits; `train` turns dropout on.
    pub fn forward_t(&self, ids: &Tensor, mask: &Tensor, train: bool) -> Logits {
        let pooled = self.pooled_t(ids, mask, train);
        Logits { a: self.head_a.forward(&pooled), b: self.head_b.forward(&pooled) }
    }

    /// Writes `model.safetensors`, `config.json` and the tokenizer files into `dir`, each atomically.
    pub fn save(&self, dir: &Path, vocab_src: &Path) -> Result<()> {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        self.base.params.save(&dir.join("model.safetensors"))?;
        let vocab = std::fs::read(vocab_src).map_err(|e| Error::io(vocab_src, e))?;
        if vocab_src != dir.join("vocab.txt") {
            write_atomic(&dir.join("vocab.txt"), &vocab)?;
        }
        let json = serde_json::to_vec_pretty(&self.config).expect("config serialises");
        write_atomic(&dir.join("config.json"), &json)
    }

    /// Loads a folder written by [`MultiTask::save`].
    pub fn load(dir: &Path, device: Device) -> Result<(Self, LoadReport)> {
        let cfg_path = dir.join("config.json");
        let text = std::fs::read_to_string(&cfg_path).map_err(|e| Error::io(&cfg_path, e))?;
        let config: MultiTaskConfig = serde_json::from_str(&text)
            .map_err(|e| Error::config(&cfg_path, format!("not a multi-task checkpoint config ({e}); train one with `mtt train`")))?;
        if config.format != FORMAT {
            return Err(Error::config(&cfg_path, format!("format '{}' is not {FORMAT}", config.format)));
        }
        let tok = SentenceTokenizer::from_vocab(&dir.join("vocab.txt"), &config.encoder.tokenizer, config.encoder.max_seq_length)?;
        let base = SentenceEncoder::random(&config.encoder, tok, device);
        let mut model = MultiTask::new(base, config.labels_a.clone(), config.labels_b.clone(), config.head_dropout)?;
        model.config = config;
        let report = model.base.params.load(&dir.join("model.safetensors"), &[])?;
        Ok((model, report))
    }
}

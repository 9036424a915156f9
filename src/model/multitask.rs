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

/// A linear layer initialised as PyTorch's `nn.Linear` is: weight and bias uniform in
/// ±1/sqrt(fan_in). (tch's default weight init is Kaiming-uniform for ReLU, √6 times wider.)
pub fn torch_linear(p: nn::Path, in_dim: i64, out_dim: i64) -> nn::Linear {
    let bound = 1.0 / (in_dim as f64).sqrt();
    let init = nn::Init::Uniform { lo: -bound, up: bound };
    nn::linear(p, in_dim, out_dim, nn::LinearConfig { ws_init: init, bs_init: Some(init), bias: true })
}

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
    /// Adds freshly initialised heads to `base`, initialised like PyTorch's `nn.Linear`.
    pub fn new(mut base: SentenceEncoder, labels_a: Labels, labels_b: Labels, head_dropout: f64) -> Result<Self> {
        if labels_a.is_empty() || labels_b.is_empty() {
            return Err(crate::error::invalid("each task needs at least one label"));
        }
        let dim = base.config().embedding_dim();
        let vs = base.params.new_store();
        let head_a = torch_linear(vs.root() / HEAD_A, dim, labels_a.len() as i64);
        base.params.push(HEAD_A, vs);
        let vs = base.params.new_store();
        let head_b = torch_linear(vs.root() / HEAD_B, dim, labels_b.len() as i64);
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
}

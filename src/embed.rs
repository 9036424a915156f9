//! Owns Task 1's text-in front: [`SentenceEncoder`] = tokenizer + encoder (with its parameters),
//! loaded from a sentence-transformers folder; text in, fixed-size vectors out.

use crate::config::{EncoderConfig, ModelFiles};
use crate::error::Result;
use crate::infer::{self, Batching};
use crate::model::{Encoder, MultiTask};
use crate::params::{is_head, LoadReport, Params};
use crate::tokenizer::SentenceTokenizer;
use std::path::Path;
use tch::{Device, Tensor};

/// Options of [`SentenceEncoder::encode`].
#[derive(Debug, Clone, Copy)]
pub struct EncodeOptions {
    /// Sentences per forward pass.
    pub batch_size: usize,
    /// L2-normalise each vector (sentence-transformers does for all-MiniLM-L6-v2).
    pub normalize: bool,
    /// Most padded tokens per forward pass, if set (see [`Batching::token_budget`]).
    pub token_budget: Option<usize>,
    /// Batches run at once on the CPU (see [`Batching::workers`]).
    pub workers: usize,
}

impl Default for EncodeOptions {
    fn default() -> Self {
        EncodeOptions { batch_size: 32, normalize: false, token_budget: None, workers: 1 }
    }
}

/// A tokenizer plus encoder plus pooling: text in, fixed-size vectors out.
pub struct SentenceEncoder {
    /// The encoder's variables (`encoder.embeddings`, `encoder.encoder.layer.{i}`), on the
    /// device it was loaded onto.
    pub params: Params,
    /// Embeddings, transformer layers and the folder's pooling.
    pub encoder: Encoder,
    /// The folder's WordPiece tokenizer, truncating to its `max_seq_length`.
    pub tokenizer: SentenceTokenizer,
}

impl SentenceEncoder {
    /// Loads a sentence-transformers folder onto `device`. The report lists file tensors left
    /// unused (the pooler is expected to be).
    pub fn load(dir: &Path, device: Device) -> Result<(Self, LoadReport)> {
        let files = ModelFiles::locate(dir)?;
        let config = files.encoder_config()?;
        let tokenizer = SentenceTokenizer::from_vocab(&files.vocab, &config.tokenizer, config.max_seq_length)?;
        let mut params = Params::new(device);
        let encoder = Encoder::new(&mut params, &config);
        let report = params.load(&files.weights, &[])?;
        Ok((SentenceEncoder { params, encoder, tokenizer }, report))
    }

    /// Loads the (fine-tuned) encoder of a multi-task checkpoint folder (checksums checked); its
    /// heads are left out of the report.
    pub fn from_checkpoint(dir: &Path, device: Device) -> Result<(Self, LoadReport)> {
        let config = MultiTask::read_config(dir)?;
        let weights = MultiTask::checked_weights(dir, &config)?;
        let enc = &config.encoder;
        let tokenizer = SentenceTokenizer::from_vocab(&dir.join(crate::model::multitask::VOCAB_FILE), &enc.tokenizer, enc.max_seq_length)?;
        let mut params = Params::new(device);
        let encoder = Encoder::new(&mut params, enc);
        let mut report = params.load(&weights, &[])?;
        report.unexpected.retain(|n| !is_head(n));
        Ok((SentenceEncoder { params, encoder, tokenizer }, report))
    }

    /// A sentence-transformers folder or a multi-task checkpoint (see
    /// [`MultiTask::is_checkpoint`]).
    pub fn load_any(dir: &Path, device: Device) -> Result<(Self, LoadReport)> {
        if MultiTask::is_checkpoint(dir) {
            Self::from_checkpoint(dir, device)
        } else {
            Self::load(dir, device)
        }
    }

    /// A randomly initialised encoder (tests, or training from scratch).
    pub fn random(config: &EncoderConfig, tokenizer: SentenceTokenizer, device: Device) -> Self {
        let mut params = Params::new(device);
        let encoder = Encoder::new(&mut params, config);
        SentenceEncoder { params, encoder, tokenizer }
    }

    /// Switches the encoder to `precision` for inference (see [`Encoder::set_precision`]).
    pub fn set_precision(&mut self, precision: crate::precision::Precision) -> Result<()> {
        self.encoder.set_precision(&mut self.params, precision, &self.tokenizer)
    }

    /// [`SentenceEncoder::set_precision`] with an explicit int8 plan (see
    /// [`Encoder::set_precision_with_plan`]).
    pub fn set_precision_with_plan(&mut self, precision: crate::precision::Precision, plan: crate::precision::Int8Plan) -> Result<()> {
        self.encoder.set_precision_with_plan(&mut self.params, precision, plan, &self.tokenizer)
    }

    /// The encoder's configuration.
    pub fn config(&self) -> &EncoderConfig {
        self.encoder.config()
    }

    /// Encodes `texts` into `[n, embedding_dim]` float32 vectors on the CPU, rows in input order.
    /// Texts are sorted by token length so each batch pads little.
    pub fn encode<S: AsRef<str>>(&self, texts: &[S], opts: EncodeOptions) -> Result<Tensor> {
        self.encode_ids(&self.tokenizer.encode_all(texts), opts)
    }

    /// Like [`SentenceEncoder::encode`] for already tokenized inputs.
    pub fn encode_ids(&self, ids: &[Vec<i64>], opts: EncodeOptions) -> Result<Tensor> {
        let b = Batching { batch_size: opts.batch_size, token_budget: opts.token_budget, pad_id: self.tokenizer.pad_id(), workers: opts.workers };
        infer::embeddings(&self.encoder, ids, b, self.params.device(), opts.normalize)
    }
}

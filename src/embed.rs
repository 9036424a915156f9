//! Task 1: sentence embeddings from a sentence-transformers folder.

use crate::batch;
use crate::config::{EncoderConfig, ModelFiles};
use crate::error::{invalid, Result};
use crate::model::{pooling, Encoder};
use crate::params::{LoadReport, Params};
use crate::tokenizer::SentenceTokenizer;
use std::path::Path;
use tch::{Device, Kind, Tensor};

/// Options of [`SentenceEncoder::encode`].
#[derive(Debug, Clone, Copy)]
pub struct EncodeOptions {
    /// Sentences per forward pass.
    pub batch_size: usize,
    /// L2-normalise each vector (sentence-transformers does for all-MiniLM-L6-v2).
    pub normalize: bool,
}

impl Default for EncodeOptions {
    fn default() -> Self {
        EncodeOptions { batch_size: 32, normalize: false }
    }
}

/// A tokenizer plus encoder plus pooling: text in, fixed-size vectors out.
pub struct SentenceEncoder {
    pub params: Params,
    pub encoder: Encoder,
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

    /// A randomly initialised encoder (tests, or training from scratch).
    pub fn random(config: &EncoderConfig, tokenizer: SentenceTokenizer, device: Device) -> Self {
        let mut params = Params::new(device);
        let encoder = Encoder::new(&mut params, config);
        SentenceEncoder { params, encoder, tokenizer }
    }

    /// The encoder's configuration.
    pub fn config(&self) -> &EncoderConfig {
        self.encoder.config()
    }

    /// Encodes `texts` into `[n, embedding_dim]` float32 vectors on the CPU, rows in input order.
    /// Texts are sorted by token length so each batch pads little; runs without gradients and
    /// with dropout off.
    pub fn encode<S: AsRef<str>>(&self, texts: &[S], opts: EncodeOptions) -> Result<Tensor> {
        if opts.batch_size == 0 {
            return Err(invalid("batch size must be at least 1"));
        }
        let ids = self.tokenizer.encode_all(texts);
        self.encode_ids(&ids, opts)
    }

    /// Like [`SentenceEncoder::encode`] for already tokenized inputs.
    pub fn encode_ids(&self, ids: &[Vec<i64>], opts: EncodeOptions) -> Result<Tensor> {
        let dim = self.config().embedding_dim();
        let device = self.params.device();
        let lens: Vec<usize> = ids.iter().map(Vec::len).collect();
        let mut out = Tensor::zeros([ids.len() as i64, dim], (Kind::Float, Device::Cpu));
        let _guard = tch::no_grad_guard();
        for rows in batch::length_sorted_batches(&lens, opts.batch_size) {
            let seqs: Vec<&[i64]> = rows.iter().map(|&i| ids[i].as_slice()).collect();
            let (input, mask) = batch::pad(&seqs, self.tokenizer.pad_id(), device);
            let mut v = self.encoder.embed_t(&input, &mask, false);
            if opts.normalize {
                v = pooling::l2_normalize(&v);
            }
            let index = Tensor::from_slice(&rows.iter().map(|&i| i as i64).collect::<Vec<_>>());
            let _ = out.index_copy_(0, &index, &v.to_kind(Kind::Float).to_device(Device::Cpu));
        }
        Ok(out)
    }
}

/// Rows of a `[n, d]` float tensor as vectors.
pub fn rows(t: &Tensor) -> Result<Vec<Vec<f32>>> {
    let t = t.to_kind(Kind::Float).to_device(Device::Cpu).contiguous();
    let (n, d) = t.size2()?;
    let flat: Vec<f32> = Vec::<f32>::try_from(t.flatten(0, -1))?;
    Ok((0..n as usize).map(|i| flat[i * d as usize..(i + 1) * d as usize].to_vec()).collect())
}

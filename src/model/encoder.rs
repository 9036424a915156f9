//! Owns the BERT encoder: rust-bert's `BertEmbeddings`, then [`Layer`]s (our re-implementation of
//! a BERT layer on fused kernels, with the same variables as rust-bert's `BertLayer`), one
//! parameter subset (one `VarStore`) for the embeddings and one per layer, and pooling.
//!
//! Mirrors Hugging Face `BertModel` (SDPA attention) without its pooler: padding gets an additive
//! mask of the float minimum.

use crate::config::EncoderConfig;
use crate::model::layer::Layer;
use crate::model::pooling;
use crate::params::{layer_name, Params, EMBEDDINGS};
use rust_bert::bert::{BertEmbedding, BertEmbeddings};
use tch::Tensor;

/// Embeddings plus transformer layers.
pub struct Encoder {
    embeddings: BertEmbeddings,
    layers: Vec<Layer>,
    config: EncoderConfig,
}

impl Encoder {
    /// Creates the encoder's variables (randomly initialised) as subsets of `params`:
    /// `encoder.embeddings` and `encoder.encoder.layer.{i}` for each layer.
    pub fn new(params: &mut Params, config: &EncoderConfig) -> Self {
        let vs = params.new_store();
        let embeddings = BertEmbeddings::new(vs.root() / "encoder" / "embeddings", &config.bert);
        params.push(EMBEDDINGS, vs);
        let mut layers = Vec::with_capacity(config.n_layers());
        for i in 0..config.n_layers() {
            let vs = params.new_store();
            layers.push(Layer::new(vs.root() / "encoder" / "encoder" / "layer" / i, &config.bert));
            params.push(&layer_name(i), vs);
        }
        Encoder { embeddings, layers, config: config.clone() }
    }

    /// The configuration the encoder was built from.
    pub fn config(&self) -> &EncoderConfig {
        &self.config
    }

    /// Changes how token vectors are pooled (the pooled width may change: callers check).
    pub fn set_pooling(&mut self, pooling: crate::config::PoolingConfig) {
        self.config.pooling = pooling;
    }

    /// Token vectors `[batch, seq, hidden]` for `input_ids` and `mask` (both `[batch, seq]`,
    /// int64; mask 1 = token, 0 = padding). `train` turns dropout on.
    pub fn forward_t(&self, input_ids: &Tensor, mask: &Tensor, train: bool) -> Tensor {
        let mut hidden = self
            .embeddings
            .forward_t(Some(input_ids), None, None, None, train)
            .expect("input ids are given, so embeddings cannot fail");
        let additive = additive_mask(mask, hidden.kind());
        for layer in &self.layers {
            hidden = layer.forward_t(&hidden, &additive, train);
        }
        hidden
    }

    /// Pooled sentence vectors `[batch, embedding_dim]` (not normalised).
    pub fn embed_t(&self, input_ids: &Tensor, mask: &Tensor, train: bool) -> Tensor {
        let hidden = self.forward_t(input_ids, mask, train);
        pooling::pool(&self.config.pooling, &hidden, mask)
    }
}

/// `[batch, 1, 1, seq]` additive mask: 0 keep, float minimum drop (Hugging Face's SDPA form).
fn additive_mask(mask: &Tensor, kind: tch::Kind) -> Tensor {
    (mask.eq(0).to_kind(kind) * f32::MIN as f64).unsqueeze(1).unsqueeze(1)
}

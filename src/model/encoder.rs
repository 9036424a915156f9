//! The BERT encoder, built from rust-bert's public `BertEmbeddings` and `BertLayer`, one parameter
//! subset (one `VarStore`) for the embeddings and one per layer.
//!
//! Mirrors Hugging Face `BertModel` without its pooler: rust-bert's self-attention adds the mask
//! to the scores, so it gets the additive form `(1 - mask) * -10000`, as `BertModel` builds it.

use crate::config::EncoderConfig;
use crate::model::pooling;
use crate::params::{layer_name, Params, EMBEDDINGS};
use rust_bert::bert::{BertEmbedding, BertEmbeddings, BertLayer};
use tch::Tensor;

/// Embeddings plus transformer layers.
pub struct Encoder {
    embeddings: BertEmbeddings,
    layers: Vec<BertLayer>,
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
            layers.push(BertLayer::new(vs.root() / "encoder" / "encoder" / "layer" / i, &config.bert));
            params.push(&layer_name(i), vs);
        }
        Encoder { embeddings, layers, config: config.clone() }
    }

    /// The configuration the encoder was built from.
    pub fn config(&self) -> &EncoderConfig {
        &self.config
    }

    /// Token vectors `[batch, seq, hidden]` for `input_ids` and `mask` (both `[batch, seq]`,
    /// int64; mask 1 = token, 0 = padding). `train` turns dropout on.
    pub fn forward_t(&self, input_ids: &Tensor, mask: &Tensor, train: bool) -> Tensor {
        let mut hidden = self
            .embeddings
            .forward_t(Some(input_ids), None, None, None, train)
            .expect("input ids are given, so embeddings cannot fail");
        let keep = mask.to_kind(hidden.kind());
        let additive: Tensor = ((keep.ones_like() - keep) * -10000.0).unsqueeze(1).unsqueeze(1);
        for layer in &self.layers {
            hidden = layer.forward_t(&hidden, Some(&additive), None, None, train).hidden_state;
        }
        hidden
    }

    /// Pooled sentence vectors `[batch, embedding_dim]` (not normalised).
    pub fn embed_t(&self, input_ids: &Tensor, mask: &Tensor, train: bool) -> Tensor {
        let hidden = self.forward_t(input_ids, mask, train);
        pooling::pool(&self.config.pooling, &hidden, mask)
    }
}

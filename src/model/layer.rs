//! Owns one BERT transformer layer: our re-implementation on libtorch's fused kernels.
//!
//! Same variables, names and mathematics as rust-bert's `BertLayer` (and Hugging Face's
//! `BertLayer` with SDPA attention, transformers 4.46): self-attention through
//! `scaled_dot_product_attention`, GELU through `Tensor::gelu` instead of rust-bert's five-op erf
//! formula, linear layers through `addmm`. Fewer kernels and intermediate tensors make encoding
//! and training faster; a test checks outputs against rust-bert's `BertLayer` with shared weights.

use rust_bert::bert::BertConfig;
use rust_bert::Activation;
use tch::{nn, nn::Module, Tensor};

/// LayerNorm epsilon of BERT (Hugging Face `layer_norm_eps`).
pub const LAYER_NORM_EPS: f64 = 1e-12;

/// Applies the configured activation with libtorch's fused kernels.
fn activate(act: Activation, x: &Tensor) -> Tensor {
    match act {
        Activation::gelu => x.gelu("none"),
        Activation::gelu_new => x.gelu("tanh"),
        Activation::relu => x.relu(),
        Activation::swish => x.silu(),
        Activation::mish => x.mish(),
        Activation::tanh => x.tanh(),
        Activation::identity => x.shallow_clone(),
    }
}

/// Self-attention, its output projection, the feed-forward block and both LayerNorms.
pub struct Layer {
    query: nn::Linear,
    key: nn::Linear,
    value: nn::Linear,
    attention_out: nn::Linear,
    attention_norm: nn::LayerNorm,
    intermediate: nn::Linear,
    output: nn::Linear,
    output_norm: nn::LayerNorm,
    heads: i64,
    head_dim: i64,
    attention_dropout: f64,
    hidden_dropout: f64,
    act: Activation,
}

impl Layer {
    /// Creates the layer's variables under `p` with Hugging Face's names
    /// (`attention.self.query`, ..., `output.LayerNorm`).
    pub fn new(p: nn::Path, cfg: &BertConfig) -> Self {
        let (h, i) = (cfg.hidden_size, cfg.intermediate_size);
        let lin = |p: nn::Path, a, b| nn::linear(p, a, b, Default::default());
        let norm = |p: nn::Path| nn::layer_norm(p, vec![h], nn::LayerNormConfig { eps: LAYER_NORM_EPS, ..Default::default() });
        let attn = &p / "attention";
        Layer {
            query: lin(&attn / "self" / "query", h, h),
            key: lin(&attn / "self" / "key", h, h),
            value: lin(&attn / "self" / "value", h, h),
            attention_out: lin(&attn / "output" / "dense", h, h),
            attention_norm: norm(&attn / "output" / "LayerNorm"),
            intermediate: lin(&p / "intermediate" / "dense", h, i),
            output: lin(&p / "output" / "dense", i, h),
            output_norm: norm(&p / "output" / "LayerNorm"),
            heads: cfg.num_attention_heads,
            head_dim: h / cfg.num_attention_heads,
            attention_dropout: cfg.attention_probs_dropout_prob,
            hidden_dropout: cfg.hidden_dropout_prob,
            act: cfg.hidden_act,
        }
    }

    fn split_heads(&self, x: Tensor, b: i64) -> Tensor {
        x.view([b, -1, self.heads, self.head_dim]).transpose(1, 2)
    }

    /// `x` `[batch, seq, hidden]`; `mask` is additive, `[batch, 1, 1, seq]` (0 keep, very
    /// negative drop). (tch passes a `None` mask as an undefined tensor, which SDPA rejects.)
    pub fn forward_t(&self, x: &Tensor, mask: &Tensor, train: bool) -> Tensor {
        let b = x.size()[0];
        let q = self.split_heads(x.apply(&self.query), b);
        let k = self.split_heads(x.apply(&self.key), b);
        let v = self.split_heads(x.apply(&self.value), b);
        let p_drop = if train { self.attention_dropout } else { 0.0 };
        let ctx = Tensor::scaled_dot_product_attention(&q, &k, &v, Some(mask), p_drop, false, None::<f64>);
        let ctx = ctx.transpose(1, 2).contiguous().view([b, -1, self.heads * self.head_dim]);
        let attended = (self.attention_out.forward(&ctx).dropout(self.hidden_dropout, train) + x).apply(&self.attention_norm);
        let inner = activate(self.act, &attended.apply(&self.intermediate));
        (self.output.forward(&inner).dropout(self.hidden_dropout, train) + &attended).apply(&self.output_norm)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::EncoderConfig;
    use tch::{Device, Kind};

    /// Our layer and rust-bert's `BertLayer`, same weights, same padded input: same output.
    #[test]
    fn matches_rust_bert_bert_layer() {
        tch::manual_seed(3);
        let cfg = EncoderConfig::tiny(40).bert;
        let theirs_vs = nn::VarStore::new(Device::Cpu);
        let theirs = rust_bert::bert::BertLayer::new(theirs_vs.root() / "l", &cfg);
        let mut ours_vs = nn::VarStore::new(Device::Cpu);
        let ours = Layer::new(ours_vs.root() / "l", &cfg);
        let mut names: Vec<String> = ours_vs.variables().keys().cloned().collect();
        names.sort();
        let mut theirs_names: Vec<String> = theirs_vs.variables().keys().cloned().collect();
        theirs_names.sort();
        assert_eq!(names, theirs_names, "variable names must be rust-bert's");
        ours_vs.copy(&theirs_vs).unwrap();

        let x = Tensor::randn([2, 5, cfg.hidden_size], (Kind::Float, Device::Cpu));
        let keep = Tensor::from_slice(&[1f32, 1., 1., 1., 1., 1., 1., 1., 0., 0.]).view([2, 5]);
        let additive = |v: f64| ((keep.ones_like() - &keep) * v).view([2, 1, 1, 5]);
        let want = theirs.forward_t(&x, Some(&additive(-10000.0)), None, None, false).hidden_state;
        let got = ours.forward_t(&x, &additive(f32::MIN as f64), false);
        // Padded positions' outputs are not used by pooling; compare real tokens.
        let real = keep.view([2, 5, 1]);
        let diff = f64::try_from(((got - want) * real).abs().max()).unwrap();
        assert!(diff < 1e-5, "max |diff| {diff}");
    }
}

//! Owns one BERT transformer layer: our re-implementation on libtorch's fused kernels.
//!
//! Same variables, names and mathematics as rust-bert's `BertLayer` (and Hugging Face's
//! `BertLayer` with SDPA attention, transformers 4.46): self-attention through
//! `scaled_dot_product_attention`, GELU through `Tensor::gelu` instead of rust-bert's five-op erf
//! formula, linear layers through `addmm`. Fewer kernels and intermediate tensors make encoding
//! and training faster; a test checks outputs against rust-bert's `BertLayer` with shared weights.

use super::encoder::masked_value;
use crate::precision::{ActivationQuant, Int8Linear, Int8Plan};
use rust_bert::bert::BertConfig;
use rust_bert::Activation;
use tch::{nn, nn::Module, Tensor};

/// LayerNorm epsilon of BERT (Hugging Face `layer_norm_eps`).
pub const LAYER_NORM_EPS: f64 = 1e-12;

/// Inference attention pads shorter key sequences to this many keys (see `Layer::attend`).
const MIN_KEYS: i64 = 16;

/// From this many keys on, inference attention goes through libtorch's fused SDPA (see `Layer::attend`).
const SDPA_FROM_KEYS: i64 = 64;

/// `a + b`, written into `a` where nothing needs `a`'s gradient (inference: one tensor fewer,
/// the same bits). `a` must be a fresh result that nothing else reads.
fn add(mut a: Tensor, b: &Tensor) -> Tensor {
    if a.requires_grad() {
        a + b
    } else {
        a.g_add_(b)
    }
}

/// `a * factor`, in place under the same rule as [`add`].
fn scale(mut a: Tensor, factor: f64) -> Tensor {
    if a.requires_grad() {
        a * factor
    } else {
        a.g_mul_scalar_(factor)
    }
}

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

/// Where a layer's forward time goes: per-stage wall time on the calling thread, collected only
/// between [`profile::start`] and [`profile::take`] (the bench's `profile`; libtorch runs the
/// stages synchronously on the CPU, so wall time between them is their cost).
pub mod profile {
    use std::cell::RefCell;
    use std::time::Instant;

    /// The stages of a layer, in order.
    pub const STAGES: [&str; 5] = [
        "query/key/value projection",
        "attention (SDPA, head reshapes)",
        "attention output projection + residual + LayerNorm",
        "feed-forward in + GELU",
        "feed-forward out + residual + LayerNorm",
    ];

    thread_local! {
        static TIMES: RefCell<Option<(Instant, [f64; STAGES.len()])>> = const { RefCell::new(None) };
    }

    /// Starts collecting (from zero).
    pub fn start() {
        TIMES.with(|t| *t.borrow_mut() = Some((Instant::now(), [0.0; STAGES.len()])));
    }

    /// Stops collecting; seconds per stage since [`start`] (`None` if it was not started).
    pub fn take() -> Option<[f64; STAGES.len()]> {
        TIMES.with(|t| t.borrow_mut().take().map(|(_, s)| s))
    }

    /// Restarts the stage clock (a layer's forward begins).
    pub(crate) fn begin() {
        TIMES.with(|t| {
            if let Some((last, _)) = t.borrow_mut().as_mut() {
                *last = Instant::now();
            }
        });
    }

    /// Charges the time since the last mark to `stage`.
    pub(crate) fn mark(stage: usize) {
        TIMES.with(|t| {
            if let Some((last, times)) = t.borrow_mut().as_mut() {
                let now = Instant::now();
                times[stage] += (now - *last).as_secs_f64();
                *last = now;
            }
        });
    }
}

/// A linear layer: the trainable float one, or its int8 copy for inference.
enum Proj {
    Float(nn::Linear),
    Int8(Int8Linear),
}

impl Proj {
    fn forward(&self, x: &Tensor) -> Tensor {
        match self {
            Proj::Float(l) => l.forward(x),
            Proj::Int8(q) => q.forward(x),
        }
    }
}

/// Largest absolute input per channel of the linear layers that read a LayerNorm's output (the
/// ones whose inputs carry BERT's outlier channels), over real tokens of the calibration batches
/// (merged by maximum, batch after batch).
#[derive(Debug, Default)]
pub struct InputMaxima {
    /// Input of query, key and value: `[hidden]`.
    pub attention: Option<Tensor>,
    /// Input of the feed-forward block's first linear layer: `[hidden]`.
    pub intermediate: Option<Tensor>,
}

impl InputMaxima {
    fn record(slot: &mut Option<Tensor>, x: &Tensor, tokens: &Tensor) {
        let m = (x * tokens).abs().amax([0, 1].as_slice(), false).to_kind(tch::Kind::Float);
        *slot = Some(match slot.take() {
            Some(old) => old.maximum(&m),
            None => m,
        });
    }
}

/// Self-attention, its output projection, the feed-forward block and both LayerNorms.
pub struct Layer {
    query: nn::Linear,
    key: nn::Linear,
    value: nn::Linear,
    /// Query, key and value as one int8 layer (`[3 * hidden]` outputs) once quantised.
    qkv_int8: Option<Int8Linear>,
    attention_out: Proj,
    attention_norm: nn::LayerNorm,
    intermediate: Proj,
    /// The feed-forward block's second layer (int8 only where the [`Int8Plan`] says so).
    output: Proj,
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
            qkv_int8: None,
            attention_out: Proj::Float(lin(&attn / "output" / "dense", h, h)),
            attention_norm: norm(&attn / "output" / "LayerNorm"),
            intermediate: Proj::Float(lin(&p / "intermediate" / "dense", h, i)),
            output: Proj::Float(lin(&p / "output" / "dense", i, h)),
            output_norm: norm(&p / "output" / "LayerNorm"),
            heads: cfg.num_attention_heads,
            head_dim: h / cfg.num_attention_heads,
            attention_dropout: cfg.attention_probs_dropout_prob,
            hidden_dropout: cfg.hidden_dropout_prob,
            act: cfg.hidden_act,
        }
    }

    /// Replaces the attention's linear layers and the feed-forward block's first one (and its
    /// second one, where `plan` says so) by int8 copies for inference (the variables are left as
    /// they are; the layer can no longer be trained). Query, key and value become one fused layer.
    /// `maxima` (from [`Layer::forward_recording`]) smooths the LayerNorm-fed layers' inputs:
    /// each input channel j is divided by `s_j = sqrt(max|x_j| / max|w_j|)` and the weights'
    /// column j multiplied by it (SmoothQuant with alpha 0.5), which moves outlier channels'
    /// range from the activations (quantised per token) into the weights.
    pub fn quantize_int8(&mut self, maxima: &InputMaxima, plan: Int8Plan) {
        if self.qkv_int8.is_some() {
            return;
        }
        let levels = plan.weight_levels;
        let (q, k, v) = (&self.query, &self.key, &self.value);
        let w = Tensor::cat(&[&q.ws, &k.ws, &v.ws], 0);
        let bias = match (&q.bs, &k.bs, &v.bs) {
            (Some(a), Some(b), Some(c)) => Some(Tensor::cat(&[a, b, c], 0)),
            _ => None,
        };
        self.qkv_int8 = Some(Int8Linear::new(&w, bias.as_ref(), maxima.attention.as_ref(), levels, ActivationQuant::Symmetric));
        let mut layers = vec![(&mut self.attention_out, None, ActivationQuant::Symmetric), (&mut self.intermediate, maxima.intermediate.as_ref(), ActivationQuant::Symmetric)];
        // The feed-forward block's second layer reads GELU outputs over 1,536 channels, which
        // quantise worst; it goes int8 only with the plan's finer weights and a shifted scale.
        if plan.ffn_output {
            layers.push((&mut self.output, None, ActivationQuant::Shifted));
        }
        for (p, m, activations) in layers {
            if let Proj::Float(l) = p {
                *p = Proj::Int8(Int8Linear::new(&l.ws, l.bs.as_ref(), m, levels, activations));
            }
        }
    }

    /// Attention of `q`, `k`, `v` (`[batch, heads, seq, head_dim]`) under the additive `mask`.
    /// Training goes through libtorch's fused `scaled_dot_product_attention` (with dropout, and
    /// memory-lean backward). Inference spells it out below [`SDPA_FROM_KEYS`] keys: two batched
    /// products and a softmax ran faster on CPU for this model's short sequences (the profile
    /// bench on 2,000 TREC-6 questions, 2 threads: attention's share of encode time fell from
    /// 12.5% to 8.4% in fp32 and from 31% to 18% in int8, where it had been the largest stage).
    /// From 64 keys on, SDPA is faster again (5-10% on attention alone at 64-200 keys, 25% at
    /// 256; `mtt embed` of 600 paragraphs of ~170 tokens 2% faster).
    ///
    /// With fewer than [`MIN_KEYS`] keys, libtorch's softmax over the last dimension falls back
    /// to a scalar loop (one vector register holds 16 floats with AVX-512, 8 with AVX2) that costs
    /// 10-12 times as much per score as at 16 keys on AVX-512 and 4-6 times on AVX2. Such batches
    /// (short questions, search queries) get their keys and values padded with zeros to 16 and
    /// the padded keys masked out: they weigh exp(-inf) = 0, and the result keeps `q`'s shape.
    fn attend(&self, q: &Tensor, k: &Tensor, v: &Tensor, mask: &Tensor, train: bool) -> Tensor {
        let keys = k.size()[2];
        if train || keys >= SDPA_FROM_KEYS {
            let dropout = if train { self.attention_dropout } else { 0.0 };
            return Tensor::scaled_dot_product_attention(q, k, v, Some(mask), dropout, false, None::<f64>);
        }
        let pad = MIN_KEYS - keys;
        let padded;
        let (k, v, mask) = if pad > 0 {
            padded = [k.constant_pad_nd([0, 0, 0, pad]), v.constant_pad_nd([0, 0, 0, pad]), mask.pad([0, pad], "constant", masked_value(mask.kind()))];
            (&padded[0], &padded[1], &padded[2])
        } else {
            (k, v, mask)
        };
        let scores = q.matmul(&k.transpose(-1, -2));
        let scores = add(scale(scores, 1.0 / (self.head_dim as f64).sqrt()), mask);
        scores.softmax(-1, scores.kind()).matmul(v)
    }

    fn split_heads(&self, x: Tensor, b: i64) -> Tensor {
        x.reshape([b, -1, self.heads, self.head_dim]).transpose(1, 2)
    }

    /// `x` `[batch, seq, hidden]`; `mask` is additive, `[batch, 1, 1, seq]` (0 keep, very
    /// negative drop). (tch passes a `None` mask as an undefined tensor, which SDPA rejects.)
    pub fn forward_t(&self, x: &Tensor, mask: &Tensor, train: bool) -> Tensor {
        self.forward_inner(x, mask, train, None)
    }

    /// The layer on packed tokens: `x` `[n, hidden]` holds only the real tokens of a padded
    /// `[batch, seq]` grid, in grid order, and `index` `[n]` (int64) their positions in the
    /// flattened grid. Every linear layer, residual and LayerNorm runs on the `n` real rows only;
    /// attention alone needs the grid, so query, key and value are scattered into it (padding
    /// rows zero, masked out as keys by `mask`, `[batch, 1, 1, seq]` additive) and the context
    /// gathered back. Same result per real token as [`Layer::forward_t`], at the cost of the
    /// real tokens rather than the padded grid; `train` turns dropout on (the same rates, drawn
    /// over the real tokens only), and gradients flow through the scatter and gather.
    pub fn forward_packed(&self, x: &Tensor, index: &Tensor, grid: (i64, i64), mask: &Tensor, train: bool) -> Tensor {
        let (b, s) = grid;
        let h = self.heads * self.head_dim;
        profile::begin();
        let qkv = match &self.qkv_int8 {
            Some(qkv) => qkv.forward(x),
            None => Tensor::cat(&[self.query.forward(x), self.key.forward(x), self.value.forward(x)], -1),
        };
        let padded = Tensor::zeros([b * s, 3 * h], (qkv.kind(), qkv.device())).index_copy(0, index, &qkv);
        let parts = padded.view([b, s, 3 * h]).chunk(3, -1);
        profile::mark(0);
        let (q, k, v) = (self.split_heads(parts[0].shallow_clone(), b), self.split_heads(parts[1].shallow_clone(), b), self.split_heads(parts[2].shallow_clone(), b));
        let ctx = self.attend(&q, &k, &v, mask, train);
        let ctx = ctx.transpose(1, 2).contiguous().view([b * s, h]).index_select(0, index);
        profile::mark(1);
        let attended = self.attention_output(&ctx, x, train);
        profile::mark(2);
        self.feed_forward(&attended, train)
    }

    /// The attention block's output projection, dropout, residual and LayerNorm (padded or packed).
    fn attention_output(&self, ctx: &Tensor, x: &Tensor, train: bool) -> Tensor {
        add(self.attention_out.forward(ctx).dropout(self.hidden_dropout, train), x).apply(&self.attention_norm)
    }

    /// The feed-forward block (GELU, output projection, dropout, residual, LayerNorm), marking the
    /// profile's stages 3 and 4.
    fn feed_forward(&self, attended: &Tensor, train: bool) -> Tensor {
        let mut inner = self.intermediate.forward(attended);
        // Where nothing needs gradients (inference), GELU goes in place, as the residual does in `add`.
        let inner = match self.act {
            Activation::gelu if !inner.requires_grad() => inner.gelu_("none"),
            act => activate(act, &inner),
        };
        profile::mark(3);
        let out = add(self.output.forward(&inner).dropout(self.hidden_dropout, train), attended).apply(&self.output_norm);
        profile::mark(4);
        out
    }

    /// [`Layer::forward_t`] without dropout that also records the largest input per channel of
    /// the LayerNorm-fed linear layers over real tokens (`tokens`: `[batch, seq, 1]`, 1 = token).
    pub fn forward_recording(&self, x: &Tensor, mask: &Tensor, tokens: &Tensor, maxima: &mut InputMaxima) -> Tensor {
        self.forward_inner(x, mask, false, Some((tokens, maxima)))
    }

    fn forward_inner(&self, x: &Tensor, mask: &Tensor, train: bool, mut record: Option<(&Tensor, &mut InputMaxima)>) -> Tensor {
        let b = x.size()[0];
        profile::begin();
        if let Some((tokens, m)) = record.as_mut() {
            InputMaxima::record(&mut m.attention, x, tokens);
        }
        let (q, k, v) = match &self.qkv_int8 {
            Some(qkv) => {
                let parts = qkv.forward(x).chunk(3, -1);
                (parts[0].shallow_clone(), parts[1].shallow_clone(), parts[2].shallow_clone())
            }
            None => (self.query.forward(x), self.key.forward(x), self.value.forward(x)),
        };
        profile::mark(0);
        let (q, k, v) = (self.split_heads(q, b), self.split_heads(k, b), self.split_heads(v, b));
        let ctx = self.attend(&q, &k, &v, mask, train);
        let ctx = ctx.transpose(1, 2).contiguous().view([b, -1, self.heads * self.head_dim]);
        profile::mark(1);
        let attended = self.attention_output(&ctx, x, train);
        profile::mark(2);
        if let Some((tokens, m)) = record.as_mut() {
            InputMaxima::record(&mut m.intermediate, &attended, tokens);
        }
        self.feed_forward(&attended, train)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::EncoderConfig;
    use tch::{Device, Kind};

    /// Packed inference gives each real token what the padded forward gives it, in fp32 and
    /// int8 (the portable plan and this CPU's).
    #[test]
    fn packed_tokens_match_the_padded_forward() {
        tch::manual_seed(5);
        let cfg = EncoderConfig::tiny(40).bert;
        let vs = nn::VarStore::new(Device::Cpu);
        let mut layer = Layer::new(vs.root() / "l", &cfg);
        let x = Tensor::randn([3, 6, cfg.hidden_size], (Kind::Float, Device::Cpu));
        let keep = Tensor::from_slice(&[1i64, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 1, 1, 1, 1, 1, 0]).view([3, 6]);
        let additive = ((keep.ones_like() - &keep).to_kind(Kind::Float) * f32::MIN as f64).view([3, 1, 1, 6]);
        let index = keep.view([-1]).nonzero().view([-1]);
        let packed_in = x.view([18, -1]).index_select(0, &index);
        for plan in [None, Some(Int8Plan::PORTABLE), Some(Int8Plan::detect())] {
            if let Some(plan) = plan {
                let mut fresh = Layer::new(vs.root() / "l", &cfg);
                let m = InputMaxima { attention: Some(x.abs().amax([0, 1].as_slice(), false)), intermediate: None };
                fresh.quantize_int8(&m, plan);
                layer = fresh;
            }
            let want = layer.forward_t(&x, &additive, false).view([18, -1]).index_select(0, &index);
            let got = layer.forward_packed(&packed_in, &index, (3, 6), &additive, false);
            let diff = f64::try_from((got - want).abs().max()).unwrap();
            assert!(diff < 1e-5, "{plan:?}: max |diff| {diff}");
        }
    }

    /// Packed training (dropout rates 0 so that both sides are deterministic): the same output
    /// per real token as the padded training forward, and the same gradients for the input and
    /// every weight; with dropout on, the packed forward drops units.
    #[test]
    fn packed_training_matches_the_padded_forward_and_its_gradients() {
        tch::manual_seed(6);
        let mut cfg = EncoderConfig::tiny(40).bert;
        cfg.hidden_dropout_prob = 0.0;
        cfg.attention_probs_dropout_prob = 0.0;
        let vs = nn::VarStore::new(Device::Cpu);
        let layer = Layer::new(vs.root() / "l", &cfg);
        let keep = Tensor::from_slice(&[1i64, 1, 1, 0, 0, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0]).view([3, 5]);
        let additive = ((keep.ones_like() - &keep).to_kind(Kind::Float) * f32::MIN as f64).view([3, 1, 1, 5]);
        let index = keep.view([-1]).nonzero().view([-1]);
        let x0 = Tensor::randn([3, 5, cfg.hidden_size], (Kind::Float, Device::Cpu));
        let weights = Tensor::randn([index.size()[0], cfg.hidden_size], (Kind::Float, Device::Cpu));
        let grads = |packed: bool| {
            let x = x0.detach().set_requires_grad(true);
            let out = if packed {
                layer.forward_packed(&x.view([15, -1]).index_select(0, &index), &index, (3, 5), &additive, true)
            } else {
                layer.forward_t(&x, &additive, true).view([15, -1]).index_select(0, &index)
            };
            let mut g: Vec<Tensor> = Vec::new();
            for (_, mut v) in vs.variables() {
                v.zero_grad();
            }
            (&out * &weights).sum(Kind::Float).backward();
            g.push(out.detach());
            g.push(x.grad().view([15, -1]).index_select(0, &index));
            let mut vars: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
            vars.sort_by(|a, b| a.0.cmp(&b.0));
            g.extend(vars.into_iter().map(|(_, v)| v.grad().copy()));
            g
        };
        let (padded, packed) = (grads(false), grads(true));
        assert_eq!(padded.len(), packed.len());
        for (i, (a, b)) in padded.iter().zip(&packed).enumerate() {
            let diff = f64::try_from((a - b).abs().max()).unwrap();
            assert!(diff < 1e-4, "tensor {i}: max |diff| {diff}");
        }
        cfg.hidden_dropout_prob = 0.5;
        let dropping = Layer::new(vs.root() / "d", &cfg);
        let packed_in = x0.view([15, -1]).index_select(0, &index);
        let (a, b) = (
            dropping.forward_packed(&packed_in, &index, (3, 5), &additive, true),
            dropping.forward_packed(&packed_in, &index, (3, 5), &additive, false),
        );
        assert!(!a.allclose(&b, 1e-3, 1e-3, false), "dropout did nothing in packed training");
    }

    /// Inference attention (padded to 16 keys below 16, spelled out up to 64) gives libtorch's
    /// fused attention's result for every key count around both thresholds, masked keys
    /// included, in fp32 and bf16.
    #[test]
    fn inference_attention_with_few_keys_matches_libtorchs_sdpa() {
        tch::manual_seed(7);
        let cfg = EncoderConfig::tiny(40).bert;
        let vs = nn::VarStore::new(Device::Cpu);
        let layer = Layer::new(vs.root() / "l", &cfg);
        let (heads, dim) = (layer.heads, layer.head_dim);
        for kind in [Kind::Float, Kind::BFloat16] {
            for keys in [1i64, 2, 7, 15, 16, 17, 20, 63, 64, 70] {
                let qkv = |_| Tensor::randn([3, heads, keys, dim], (Kind::Float, Device::Cpu)).to_kind(kind);
                let (q, k, v) = (qkv(0), qkv(1), qkv(2));
                // Sequence 0 keeps every key, 1 drops its last, 2 keeps only its first.
                let keep = Tensor::ones([3, keys], (Kind::Float, Device::Cpu));
                if keys > 1 {
                    let _ = keep.get(1).narrow(0, keys - 1, 1).fill_(0.0);
                    let _ = keep.get(2).narrow(0, 1, keys - 1).fill_(0.0);
                }
                let mask = ((keep.ones_like() - &keep) * masked_value(kind)).to_kind(kind).view([3, 1, 1, keys]);
                let got = layer.attend(&q, &k, &v, &mask, false);
                assert_eq!(got.size(), q.size());
                let want = Tensor::scaled_dot_product_attention(&q, &k, &v, Some(&mask), 0.0, false, None::<f64>);
                let diff = f64::try_from((got - want).to_kind(Kind::Float).abs().max()).unwrap();
                let tolerance = if kind == Kind::Float { 1e-5 } else { 5e-2 };
                assert!(diff < tolerance, "{kind:?}, {keys} keys: max |diff| {diff}");
            }
        }
    }

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

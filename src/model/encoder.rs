//! Owns the BERT encoder: rust-bert's `BertEmbeddings`, then [`Layer`]s (our re-implementation of
//! a BERT layer on fused kernels, with the same variables as rust-bert's `BertLayer`), one
//! parameter subset (one `VarStore`) for the embeddings and one per layer, and pooling.
//!
//! Mirrors Hugging Face `BertModel` (SDPA attention) without its pooler: padding gets an additive
//! mask of the float minimum.

use crate::config::EncoderConfig;
use crate::model::calibration::{self, CalibrationSource};
use crate::model::layer::{InputMaxima, Layer};
use crate::model::pooling;
use crate::error::{invalid, Result};
use crate::params::{layer_name, Params, EMBEDDINGS, ENCODER};
use crate::precision::{calibration_batches, Int8Plan, Precision};
use crate::tokenizer::SentenceTokenizer;
use rust_bert::bert::{BertEmbedding, BertEmbeddings};
use std::path::Path;
use tch::{Kind, Tensor};

/// Embeddings plus transformer layers.
pub struct Encoder {
    embeddings: BertEmbeddings,
    layers: Vec<Layer>,
    config: EncoderConfig,
    precision: Precision,
    /// Where the int8 calibration came from (`None` until the encoder goes int8).
    calibration: Option<CalibrationSource>,
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
        Encoder { embeddings, layers, config: config.clone(), precision: Precision::Fp32, calibration: None }
    }

    /// The configuration the encoder was built from.
    pub fn config(&self) -> &EncoderConfig {
        &self.config
    }

    /// The inference precision (fp32 unless [`Encoder::set_precision`] changed it).
    pub fn precision(&self) -> Precision {
        self.precision
    }

    /// Where the int8 calibration came from (stored or computed), once the encoder runs in int8.
    pub fn calibration(&self) -> Option<&CalibrationSource> {
        self.calibration.as_ref()
    }

    /// Switches the encoder to `precision` for inference; `params` must be the ones the encoder
    /// was built on (bf16 converts its variables). int8 first runs the calibration texts
    /// ([`crate::precision::CALIBRATION_TEXTS`], tokenized by `tokenizer`) once in fp32 to measure
    /// each layer's input ranges (see [`Layer::quantize_int8`]), or reads them where an earlier
    /// start stored them ([`crate::model::calibration`], in the user cache). One-way: an int8 or bf16 encoder can no
    /// longer be trained or go back to fp32 (reload the model instead).
    /// int8 follows this CPU's [`Int8Plan`].
    pub fn set_precision(&mut self, params: &mut Params, precision: Precision, tokenizer: &SentenceTokenizer) -> Result<()> {
        self.set_precision_with_plan(params, precision, Int8Plan::detect(), tokenizer)
    }

    /// [`Encoder::set_precision`] with int8 quantised as `plan` says (tests compare plans; a plan
    /// with 8-bit weights is exact only on CPUs with VNNI).
    pub fn set_precision_with_plan(&mut self, params: &mut Params, precision: Precision, plan: Int8Plan, tokenizer: &SentenceTokenizer) -> Result<()> {
        self.set_precision_stored(params, precision, plan, tokenizer, calibration::default_dir().as_deref())
    }

    /// [`Encoder::set_precision_with_plan`] with int8 calibrations stored in `store` (`None`:
    /// calibrate and store nothing).
    pub fn set_precision_stored(&mut self, params: &mut Params, precision: Precision, plan: Int8Plan, tokenizer: &SentenceTokenizer, store: Option<&Path>) -> Result<()> {
        precision.check_device(params.device())?;
        if precision == self.precision {
            return Ok(());
        }
        if self.precision != Precision::Fp32 {
            return Err(invalid(format!("the encoder already runs in {}; reload the model for {precision}", self.precision)));
        }
        match precision {
            Precision::Fp32 => {}
            Precision::Int8 => {
                let batches = calibration_batches(tokenizer, params.device());
                let (maxima, source) = self.calibrate(params, &batches, store)?;
                self.calibration = Some(source);
                for (layer, m) in self.layers.iter_mut().zip(&maxima) {
                    layer.quantize_int8(m, plan);
                }
            }
            Precision::Bf16 => params.set_kind(ENCODER, Kind::BFloat16),
        }
        self.precision = precision;
        Ok(())
    }

    /// Each layer's [`InputMaxima`] over the calibration `batches`: read from `store` when it
    /// holds them for these weights, else measured (and stored there).
    fn calibrate(&self, params: &Params, batches: &[(Tensor, Tensor)], store: Option<&Path>) -> Result<(Vec<InputMaxima>, CalibrationSource)> {
        let Some(dir) = store else {
            return Ok((self.input_maxima(batches), CalibrationSource::Computed("no cache folder ($MTT_CACHE_DIR or $HOME)".into())));
        };
        let key = calibration::key(&self.config, params, batches)?;
        if let Some(m) = calibration::load(dir, &key, self.layers.len(), self.config.bert.hidden_size) {
            return Ok((m, CalibrationSource::Stored(dir.join(format!("{key}.safetensors")))));
        }
        let maxima = self.input_maxima(batches);
        let source = match calibration::store(dir, &key, &maxima) {
            Ok(path) => CalibrationSource::ComputedAndStored(path),
            Err(e) => CalibrationSource::Computed(e.to_string()),
        };
        Ok((maxima, source))
    }

    /// Each layer's [`InputMaxima`] over `batches` (token ids and mask), in fp32 without gradients.
    fn input_maxima(&self, batches: &[(Tensor, Tensor)]) -> Vec<InputMaxima> {
        let _guard = tch::no_grad_guard();
        let mut out: Vec<InputMaxima> = self.layers.iter().map(|_| InputMaxima::default()).collect();
        for (input_ids, mask) in batches {
            let _ = self.run(input_ids, mask, false, Some(&mut out));
        }
        out
    }

    /// Changes how token vectors are pooled (the pooled width may change: callers check).
    pub fn set_pooling(&mut self, pooling: crate::config::PoolingConfig) {
        self.config.pooling = pooling;
    }

    /// Token vectors `[batch, seq, hidden]` for `input_ids` and `mask` (both `[batch, seq]`,
    /// int64; mask 1 = token, 0 = padding). `train` turns dropout on.
    pub fn forward_t(&self, input_ids: &Tensor, mask: &Tensor, train: bool) -> Tensor {
        self.run(input_ids, mask, train, None)
    }

    /// The embeddings and every layer; with `maxima` (one per layer), without dropout, also
    /// records each layer's input ranges over real tokens.
    fn run(&self, input_ids: &Tensor, mask: &Tensor, train: bool, mut maxima: Option<&mut [InputMaxima]>) -> Tensor {
        let mut hidden = self
            .embeddings
            .forward_t(Some(input_ids), None, None, None, train && maxima.is_none())
            .expect("input ids are given, so embeddings cannot fail");
        let additive = additive_mask(mask, hidden.kind());
        if maxima.is_none() {
            if let Some(index) = packing_index(mask) {
                let (b, s, h) = hidden.size3().expect("[batch, seq, hidden]");
                let mut x = hidden.view([b * s, h]).index_select(0, &index);
                for layer in &self.layers {
                    x = layer.forward_packed(&x, &index, (b, s), &additive, train);
                }
                return Tensor::zeros([b * s, h], (x.kind(), x.device())).index_copy(0, &index, &x).view([b, s, h]);
            }
        }
        let tokens = maxima.is_some().then(|| mask.unsqueeze(-1).to_kind(hidden.kind()));
        for (i, layer) in self.layers.iter().enumerate() {
            hidden = match (maxima.as_deref_mut(), &tokens) {
                (Some(m), Some(tokens)) => layer.forward_recording(&hidden, &additive, tokens, &mut m[i]),
                _ => layer.forward_t(&hidden, &additive, train),
            };
        }
        hidden
    }

    /// Pooled sentence vectors `[batch, embedding_dim]`, float32 whatever the precision (not
    /// normalised).
    pub fn embed_t(&self, input_ids: &Tensor, mask: &Tensor, train: bool) -> Tensor {
        let hidden = self.forward_t(input_ids, mask, train);
        pooling::pool(&self.config.pooling, &hidden.to_kind(Kind::Float), mask)
    }
}

/// Share of padding in a batch from which the encoder packs the real tokens, in inference and
/// in training (see [`Layer::forward_packed`]): below it, the gathers and scatters would cost
/// more than the padded rows they save.
pub const PACK_FROM_PADDING: f64 = 0.05;

/// Whether the encoder packs real tokens at all (on by default; the benches turn it off to
/// compare).
static PACKING: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(true);

/// Turns packing on or off for the whole process (see [`PACK_FROM_PADDING`]).
pub fn set_packing(on: bool) {
    PACKING.store(on, std::sync::atomic::Ordering::Relaxed);
}

/// The flattened positions of the real tokens of `mask` (`[batch, seq]`, 1 = token), when the
/// batch has at least [`PACK_FROM_PADDING`] padding.
fn packing_index(mask: &Tensor) -> Option<Tensor> {
    if !PACKING.load(std::sync::atomic::Ordering::Relaxed) {
        return None;
    }
    let flat = mask.reshape([-1]);
    let grid = flat.size()[0];
    let real = flat.count_nonzero(0).int64_value(&[]);
    if grid == 0 || (1.0 - real as f64 / grid as f64) < PACK_FROM_PADDING {
        return None;
    }
    Some(flat.nonzero().view([-1]))
}

/// `[batch, 1, 1, seq]` additive mask: 0 keep, the kind's most negative finite value drop
/// (Hugging Face's SDPA form).
fn additive_mask(mask: &Tensor, kind: Kind) -> Tensor {
    (mask.eq(0).to_kind(kind) * masked_value(kind)).unsqueeze(1).unsqueeze(1)
}

/// The additive mask's value for a dropped key: the kind's most negative finite value.
pub(crate) fn masked_value(kind: Kind) -> f64 {
    // bf16 has float32's exponent range but rounds float32's minimum to -inf.
    if kind == Kind::BFloat16 {
        -3.3895313892515355e38
    } else {
        f32::MIN as f64
    }
}

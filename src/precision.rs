//! Owns the numeric precision of inference: fp32 (the reference), int8 (dynamically quantised
//! linear layers) and bf16 (the whole encoder in bfloat16). Training always runs in fp32.
//!
//! * **int8**: the transformer's linear layers keep their weights as int8 with one scale per
//!   output row (symmetric); each call quantises its input with one scale per token row (8 bits)
//!   and runs libtorch's int8 matrix multiply (`_int_mm`, int32 accumulation), then rescales and
//!   adds the fp32 bias. Query, key and value run as one fused layer, and the inputs of the layers
//!   that read a LayerNorm (query/key/value, the first feed-forward layer) are smoothed per
//!   channel (SmoothQuant), with maxima measured once at load on [`CALIBRATION_TEXTS`] in fp32.
//!   How far it goes depends on the CPU ([`Int8Plan`]): with VNNI, 8-bit weights and the
//!   feed-forward block's second layer in int8 too (its GELU input quantised with a shift, see
//!   [`ActivationQuant::Shifted`]); without, 7-bit weights (exact there) and that layer in fp32.
//!   Embeddings, LayerNorms, attention scores and pooling stay fp32. It is PyTorch's "dynamic
//!   quantisation" of linear layers with finer (per-row) scales and smoothing.
//! * **bf16**: every encoder variable is converted to bfloat16 and the encoder runs in it
//!   (libtorch's oneDNN kernels; fast only where the CPU has AVX512-BF16 or AMX, see
//!   `mtt doctor`); pooling runs in fp32 on the bf16 token vectors.

use crate::padding::{length_sorted_batches, pad};
use crate::device::CpuFeatures;
use crate::error::{invalid, Error, Result};
use crate::tokenizer::SentenceTokenizer;
use std::fmt;
use std::str::FromStr;
use tch::{Device, Kind, Tensor};

/// Inference precision of the encoder.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Precision {
    /// float32 everywhere (the reference; parity with sentence-transformers).
    #[default]
    Fp32,
    /// int8 weights and per-row quantised activations in the linear layers.
    Int8,
    /// bfloat16 encoder.
    Bf16,
}

impl Precision {
    /// Every mode, in the order `mtt` lists them.
    pub const ALL: [Precision; 3] = [Precision::Fp32, Precision::Int8, Precision::Bf16];

    /// Whether `device` can run this mode (int8 runs on the CPU only).
    pub fn check_device(self, device: Device) -> Result<()> {
        if self == Precision::Int8 && device != Device::Cpu {
            return Err(invalid("`precision` int8 runs on the CPU only (use `device` cpu, or bf16 on CUDA)"));
        }
        Ok(())
    }
}

impl fmt::Display for Precision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Precision::Fp32 => "fp32",
            Precision::Int8 => "int8",
            Precision::Bf16 => "bf16",
        })
    }
}

impl FromStr for Precision {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "fp32" | "float32" => Ok(Precision::Fp32),
            "int8" => Ok(Precision::Int8),
            "bf16" | "bfloat16" => Ok(Precision::Bf16),
            other => Err(invalid(format!("unknown precision '{other}': fp32, int8 or bf16"))),
        }
    }
}

/// The texts an int8 encoder is calibrated on when it is created (128 lines: the last 64 of the
/// bundled TREC-6 and of the SST training files; neither dev nor test data).
pub const CALIBRATION_TEXTS: &str = include_str!("int8_calibration.txt");

/// Padded tokens per calibration batch: the calibration texts run length-sorted in batches of at
/// most this many (one batch padded to the longest text took ~2 s at load, 3x the real tokens).
const CALIBRATION_BUDGET: usize = 1024;

/// Token ids and masks of [`CALIBRATION_TEXTS`] in length-sorted batches on `device` (what an int8
/// encoder is calibrated on).
pub fn calibration_batches(tokenizer: &SentenceTokenizer, device: Device) -> Vec<(Tensor, Tensor)> {
    let ids: Vec<Vec<i64>> = CALIBRATION_TEXTS.lines().filter(|l| !l.trim().is_empty()).map(|l| tokenizer.encode(l)).collect();
    let lens: Vec<usize> = ids.iter().map(Vec::len).collect();
    length_sorted_batches(&lens, lens.len(), Some(CALIBRATION_BUDGET))
        .iter()
        .map(|rows| {
            let seqs: Vec<&[i64]> = rows.iter().map(|&i| ids[i].as_slice()).collect();
            pad(&seqs, tokenizer.pad_id(), device)
        })
        .collect()
}

/// Largest quantised weight magnitude where the CPU has no VNNI. Such CPUs multiply int8
/// through 16-bit pair sums that saturate: measured with libtorch 2.4.0 on AVX2, `_int_mm`
/// returned wrong sums (errors over 10^4) once both operands used the full ±127 range, and exact
/// ones with weights within ±63 and activations within ±127 (`int8_linear_is_close_to_float`
/// checks exactness on the CPU it runs on).
pub const PORTABLE_WEIGHT_LEVELS: f64 = 63.0;
/// Largest quantised weight magnitude with VNNI (AVX512-VNNI or AVX-VNNI), whose int8 dot
/// products accumulate in 32 bits: the full 8-bit range is exact there (measured on AVX512-VNNI).
pub const VNNI_WEIGHT_LEVELS: f64 = 127.0;
/// Largest quantised activation magnitude (the kernels' [`mtt_kernels::LEVELS`]).
pub const ACTIVATION_LEVELS: f64 = mtt_kernels::LEVELS as f64;

/// What `--precision int8` quantises, and how finely: chosen from the CPU's features.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Int8Plan {
    /// Largest quantised weight magnitude ([`PORTABLE_WEIGHT_LEVELS`] or [`VNNI_WEIGHT_LEVELS`]).
    pub weight_levels: f64,
    /// Whether the feed-forward block's second layer runs in int8 too (its input quantised with
    /// [`ActivationQuant::Shifted`]) or stays fp32.
    pub ffn_output: bool,
}

impl Int8Plan {
    /// Any x86-64 CPU: 7-bit weights, the feed-forward block's second layer in fp32. With 7-bit
    /// weights that layer in int8 costs too much: worst cosine to fp32 0.9896 (golden, symmetric
    /// scale) and 0.9878 (an SST-3 sentence, shifted scale), against 0.9943 with it in fp32.
    pub const PORTABLE: Int8Plan = Int8Plan { weight_levels: PORTABLE_WEIGHT_LEVELS, ffn_output: false };
    /// CPUs with VNNI: 8-bit weights and every linear layer of the transformer in int8, the
    /// feed-forward output layer through the shifted scale (with a symmetric one the golden
    /// empty string fell to cosine 0.9885; shifted, the worst text is at 0.9934).
    pub const VNNI: Int8Plan = Int8Plan { weight_levels: VNNI_WEIGHT_LEVELS, ffn_output: true };

    /// The plan for a CPU with these features (the portable one where they are unknown).
    pub fn for_cpu(cpu: Option<&CpuFeatures>) -> Self {
        if cpu.is_some_and(|c| c.vnni) {
            Int8Plan::VNNI
        } else {
            Int8Plan::PORTABLE
        }
    }

    /// The plan for this machine's CPU.
    pub fn detect() -> Self {
        Self::for_cpu(CpuFeatures::detect().as_ref())
    }

    /// One line for `mtt doctor`.
    pub fn describe(&self) -> String {
        format!(
            "{}-bit weights, {}",
            if self.weight_levels > PORTABLE_WEIGHT_LEVELS { 8 } else { 7 },
            if self.ffn_output { "every linear layer of the transformer in int8" } else { "the feed-forward output layer in fp32" }
        )
    }
}

/// What each `--precision` mode does on a CPU with these features, one line each (for `mtt doctor`).
pub fn describe_modes(cpu: &CpuFeatures) -> [String; 3] {
    let plan = Int8Plan::for_cpu(Some(cpu));
    [
        "fp32: the reference (sentence-transformers parity)".to_string(),
        format!(
            "int8: {}; {}",
            plan.describe(),
            if cpu.vnni {
                "VNNI int8 dot products (expect the largest speed-up)"
            } else if cpu.avx2 {
                "AVX2 without VNNI (a moderate speed-up of the linear layers)"
            } else {
                "no AVX2 (likely no faster than fp32)"
            }
        ),
        format!(
            "bf16: {}",
            if cpu.bf16 {
                "bf16 matrix multiplies in hardware (AVX512-BF16 or AMX)"
            } else {
                "NOT accelerated on this CPU (emulated: slower than fp32, refused without --precision-anyway; use int8)"
            }
        ),
    ]
}

impl Precision {
    /// Refuses a mode that runs slower than fp32 on the CPU `cpu` (when `device` is the CPU):
    /// bf16 without AVX512-BF16 or AMX (emulated: measured more than 20 times slower than fp32
    /// on an AVX2 machine), int8 without AVX2. The error names the CPU, its features and the
    /// faster mode; `anyway` runs it all the same.
    pub fn check_speed(self, device: Device, cpu: Option<&crate::device::CpuFeatures>, anyway: bool) -> Result<()> {
        let Some(cpu) = cpu.filter(|_| device == Device::Cpu && !anyway) else { return Ok(()) };
        let faster = match self {
            Precision::Bf16 if !cpu.bf16 => if cpu.avx2 { "int8 (or fp32)" } else { "fp32" },
            Precision::Int8 if !cpu.avx2 => "fp32",
            _ => return Ok(()),
        };
        Err(invalid(format!(
            "`precision` {self} would run slower than fp32 on this CPU ({}): use `precision` {faster}, or pass `precision_anyway` to run it all the same",
            cpu.describe()
        )))
    }
}

/// How a layer's input is quantised, one scale per token row, before the int8 product.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActivationQuant {
    /// `q = round(x / s)` with `s = max|x| / 127` per row: for inputs spread around zero
    /// (LayerNorm outputs, attention context).
    Symmetric,
    /// `x - m` (m: the smallest value of the whole input) mapped onto [-127, 127] per row, the
    /// shift added back exactly through the weights' row sums: for inputs bounded below near
    /// zero, such as GELU outputs (>= -0.17), on which a symmetric scale leaves half of its levels
    /// unused.
    Shifted,
}

/// A linear layer with int8 weights (one scale per output row) for inference.
///
/// The passes around the int8 product run as one loop per row each ([`mtt_kernels`]): written
/// as libtorch operations (seven passes over the input before the product, four over the output
/// after it, each allocating a tensor) they cost more than the product on 512 rows. The
/// arithmetic is the same, operation for operation, so the vectors are the same bits
/// (`fused_passes_give_the_libtorch_formulations_bits`).
#[derive(Debug)]
pub struct Int8Linear {
    /// `[in, out]` int8: the transposed view `_int_mm` takes as its second operand.
    weight_t: Tensor,
    /// `[in]` factors the input is multiplied by first (1 / smoothing), if smoothed.
    input_factor: Option<Vec<f32>>,
    /// `[out]` weight scales.
    scale: Vec<f32>,
    /// `[out]` bias (zeros when the layer has none).
    bias: Vec<f32>,
    /// With [`ActivationQuant::Shifted`]: each output row's sum of quantised weights, as int32
    /// times 127 (`[out]`, added to the int32 product) and as float times the row's scale.
    shifted: Option<(Vec<i32>, Vec<f32>)>,
    in_features: i64,
}

/// A CPU tensor's values of kind `T`, flattened.
fn to_vec<T: tch::kind::Element + Copy>(t: &Tensor) -> Vec<T> {
    Vec::<T>::try_from(t.contiguous().view(-1)).expect("a CPU tensor of the element's kind")
}

impl Int8Linear {
    /// Quantises `weight` `[out, in]` (float) symmetrically per output row to at most
    /// `weight_levels` in magnitude. With `input_max` (`[in]`: the largest |input| per channel
    /// seen on calibration data), input channel j is first divided by
    /// `s_j = sqrt(input_max_j / max_i |w_ij|)` and weight column j multiplied by it (SmoothQuant,
    /// alpha 0.5): the product is unchanged, the activations' outlier channels shrink and
    /// per-token quantisation loses less.
    pub fn new(weight: &Tensor, bias: Option<&Tensor>, input_max: Option<&Tensor>, weight_levels: f64, activations: ActivationQuant) -> Self {
        let mut w = weight.detach().to_kind(Kind::Float).to_device(Device::Cpu);
        let (out_f, in_f) = w.size2().expect("a linear weight is 2-D");
        let input_factor = input_max.map(|m| {
            let col_max = w.abs().amax([0].as_slice(), false).clamp_min(1e-5);
            let s = (m.to_kind(Kind::Float).to_device(Device::Cpu).clamp_min(1e-5) / col_max).sqrt();
            w = &w * &s;
            to_vec::<f32>(&s.reciprocal())
        });
        let scale = w.abs().amax([1].as_slice(), false).clamp_min(1e-12) / weight_levels;
        let q = (&w / scale.unsqueeze(1)).round().clamp(-weight_levels, weight_levels).to_kind(Kind::Int8);
        let bias = match bias {
            Some(b) => to_vec::<f32>(&b.detach().to_kind(Kind::Float).to_device(Device::Cpu)),
            None => vec![0.0; out_f as usize],
        };
        let shifted = (activations == ActivationQuant::Shifted).then(|| {
            let row_sum = q.to_kind(Kind::Int64).sum_dim_intlist([1].as_slice(), false, Kind::Int64);
            (to_vec::<i32>(&(&row_sum * ACTIVATION_LEVELS as i64).to_kind(Kind::Int)), to_vec::<f32>(&(row_sum.to_kind(Kind::Float) * &scale)))
        });
        Int8Linear { weight_t: q.tr(), input_factor, scale: to_vec::<f32>(&scale), bias, shifted, in_features: in_f }
    }

    /// `x` `[..., in]` float32 on the CPU to `[..., out]` float32.
    ///
    /// Each token row is quantised with its own scale (and, with [`ActivationQuant::Shifted`],
    /// its own minimum as the shift, its share of the product, `m * sum_j w_cj`, going into that
    /// row's bias), so a text's vector does not depend on the texts (and padding) beside it in
    /// the batch. The product uses libtorch's threads; the passes around it run on the calling
    /// thread (see [`mtt_kernels::quantize`]).
    pub fn forward(&self, x: &Tensor) -> Tensor {
        let mut shape = x.size();
        let out = self.scale.len();
        *shape.last_mut().expect("at least 1-D") = out as i64;
        let x2 = x.reshape([-1, self.in_features]).to_kind(Kind::Float).contiguous();
        let rows = x2.size()[0] as usize;
        if rows == 0 {
            return Tensor::zeros(shape.as_slice(), (Kind::Float, x.device()));
        }
        let cols = self.in_features as usize;
        let q = Tensor::empty([rows as i64, self.in_features], (Kind::Int8, Device::Cpu));
        let mut row_scale = vec![0f32; rows];
        let mut row_min = vec![0f32; if self.shifted.is_some() { rows } else { 0 }];
        {
            // SAFETY: `x2` is a contiguous float32 CPU tensor of rows * cols values and `q` a new
            // contiguous int8 one of as many; both live to the end of this block and nothing else
            // writes to them meanwhile (`x2` may share storage with the caller's tensor, which is
            // only read).
            let xs = unsafe { std::slice::from_raw_parts(x2.data_ptr() as *const f32, rows * cols) };
            let qs = unsafe { std::slice::from_raw_parts_mut(q.data_ptr() as *mut i8, rows * cols) };
            let out = match self.shifted {
                Some(_) => mtt_kernels::RowScales::Shifted { scale: &mut row_scale, min: &mut row_min },
                None => mtt_kernels::RowScales::Symmetric { scale: &mut row_scale },
            };
            mtt_kernels::quantize(xs, cols, self.input_factor.as_deref(), qs, out);
        }
        let acc = q.internal_int_mm(&self.weight_t);
        assert!(acc.is_contiguous() && acc.kind() == Kind::Int, "_int_mm returns a contiguous int32 tensor");
        {
            // SAFETY: `acc` is a new contiguous int32 CPU tensor of rows * out values, owned here.
            let accs = unsafe { std::slice::from_raw_parts_mut(acc.data_ptr() as *mut i32, rows * out) };
            let shift = self.shifted.as_ref().map(|(sums, scaled)| (sums.as_slice(), row_min.as_slice(), scaled.as_slice()));
            mtt_kernels::dequantize(accs, out, &row_scale, &self.scale, &self.bias, shift);
        }
        // The int32 sums were overwritten by their rescaled float32 bits.
        acc.view_dtype(Kind::Float).view(shape.as_slice())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rows_result_does_not_depend_on_the_other_rows() {
        // The same text must get the same vector whatever shares its batch: every scale and shift
        // is the row's own (a batch-wide minimum once made the shifted layer depend on it).
        let w = Tensor::randn([64, 1536], (Kind::Float, Device::Cpu)) * 0.05;
        let b = Tensor::randn([64], (Kind::Float, Device::Cpu));
        let x = (Tensor::randn([6, 1536], (Kind::Float, Device::Cpu)) * 1.5).gelu("none");
        // One row with a much lower minimum than the others.
        let x = Tensor::cat(&[x.narrow(0, 0, 5), x.narrow(0, 5, 1) - 3.0], 0);
        for activations in [ActivationQuant::Symmetric, ActivationQuant::Shifted] {
            let layer = Int8Linear::new(&w, Some(&b), None, 127.0, activations);
            let together = layer.forward(&x);
            for r in 0..6 {
                let alone = layer.forward(&x.narrow(0, r, 1));
                let diff = f64::try_from((together.narrow(0, r, 1) - alone).abs().max()).unwrap();
                assert!(diff < 1e-5, "{activations:?}, row {r}: {diff}");
            }
        }
    }

    #[test]
    fn modes_slower_than_fp32_are_refused_naming_the_cpu_and_the_faster_mode() {
        let cpu = |avx2: bool, bf16: bool| crate::device::CpuFeatures { model: "Test CPU".into(), avx2, avx512: false, bf16, amx: false, vnni: false };
        let avx2_only = cpu(true, false);
        let e = Precision::Bf16.check_speed(Device::Cpu, Some(&avx2_only), false).unwrap_err().to_string();
        assert!(e.contains("`precision` bf16 would run slower than fp32 on this CPU (Test CPU;") && e.contains("use `precision` int8"), "{e}");
        assert!(Precision::Bf16.check_speed(Device::Cpu, Some(&avx2_only), true).is_ok(), "anyway");
        assert!(Precision::Bf16.check_speed(Device::Cpu, Some(&cpu(true, true)), false).is_ok());
        assert!(Precision::Bf16.check_speed(Device::Cuda(0), Some(&avx2_only), false).is_ok(), "bf16 on a GPU is not the CPU's business");
        assert!(Precision::Int8.check_speed(Device::Cpu, Some(&avx2_only), false).is_ok());
        let e = Precision::Int8.check_speed(Device::Cpu, Some(&cpu(false, false)), false).unwrap_err().to_string();
        assert!(e.contains("use `precision` fp32"), "{e}");
        assert!(Precision::Fp32.check_speed(Device::Cpu, Some(&cpu(false, false)), false).is_ok());
        assert!(Precision::Bf16.check_speed(Device::Cpu, None, false).is_ok(), "an unknown CPU is not refused");
    }

    #[test]
    fn parses_and_prints_every_mode() {
        for p in Precision::ALL {
            assert_eq!(p.to_string().parse::<Precision>().unwrap(), p);
        }
        assert!("fp16".parse::<Precision>().unwrap_err().to_string().contains("fp32, int8 or bf16"));
        assert!(Precision::Int8.check_device(Device::Cuda(0)).is_err());
        assert!(Precision::Bf16.check_device(Device::Cuda(0)).is_ok());
    }

    /// The weight ranges this CPU multiplies exactly: 7 bits everywhere, 8 bits with VNNI.
    fn exact_levels() -> Vec<f64> {
        let mut l = vec![PORTABLE_WEIGHT_LEVELS];
        if Int8Plan::detect() == Int8Plan::VNNI {
            l.push(VNNI_WEIGHT_LEVELS);
        }
        l
    }

    #[test]
    fn plans_follow_the_cpu() {
        let cpu = |flags: &str| CpuFeatures::parse(&format!("model name\t: X\nflags\t\t: {flags}\n"));
        assert_eq!(Int8Plan::for_cpu(Some(&cpu("avx2 fma"))), Int8Plan::PORTABLE);
        assert_eq!(Int8Plan::for_cpu(Some(&cpu("avx2 avx512f avx512_vnni"))), Int8Plan::VNNI);
        assert_eq!(Int8Plan::for_cpu(Some(&cpu("avx2 avx_vnni"))), Int8Plan::VNNI);
        assert_eq!(Int8Plan::for_cpu(None), Int8Plan::PORTABLE);
        assert!(Int8Plan::VNNI.describe().starts_with("8-bit") && Int8Plan::PORTABLE.describe().starts_with("7-bit"));
        let modes = describe_modes(&cpu("avx2 avx512f avx512_vnni avx512_bf16"));
        assert!(modes[1].contains("8-bit weights") && modes[1].contains("VNNI") && modes[2].contains("in hardware"), "{modes:?}");
        let modes = describe_modes(&cpu("avx2"));
        assert!(modes[1].contains("7-bit weights") && modes[2].contains("NOT accelerated"), "{modes:?}");
    }

    /// The int8 layer written as libtorch operations, as it was before the fused passes.
    fn libtorch_formulation(l: &Int8Linear, x: &Tensor) -> Tensor {
        let t = |v: &[f32]| Tensor::from_slice(v);
        let mut shape = x.size();
        let x2 = x.reshape([-1, l.in_features]);
        let x2 = match &l.input_factor {
            Some(f) => x2 * t(f),
            None => x2,
        };
        let bias = t(&l.bias);
        let (xq, x_scale, row_bias) = match &l.shifted {
            None => {
                let x_scale = x2.abs().amax([1].as_slice(), true).clamp_min(1e-12) / ACTIVATION_LEVELS;
                ((&x2 / &x_scale).round_().to_kind(Kind::Int8), x_scale, None)
            }
            Some((_, scaled_sum)) => {
                let m = x2.amin([1].as_slice(), true);
                let shifted = &x2 - &m;
                let x_scale = shifted.amax([1].as_slice(), true).clamp_min(1e-12) / (2.0 * ACTIVATION_LEVELS);
                let mut q = &shifted / &x_scale;
                q -= ACTIVATION_LEVELS;
                (q.round_().to_kind(Kind::Int8), x_scale, Some(&bias + &m * t(scaled_sum)))
            }
        };
        let mut acc = xq.internal_int_mm(&l.weight_t);
        if let Some((levels_sum, _)) = &l.shifted {
            acc += Tensor::from_slice(levels_sum);
        }
        let mut y = acc.to_kind(Kind::Float);
        y *= &x_scale;
        y *= t(&l.scale);
        y += row_bias.as_ref().unwrap_or(&bias);
        *shape.last_mut().unwrap() = l.scale.len() as i64;
        y.view(shape.as_slice())
    }

    #[test]
    fn fused_passes_give_the_libtorch_formulations_bits() {
        tch::manual_seed(5);
        let threads = tch::get_num_threads();
        for (inp, out, activations) in [(384, 1152, ActivationQuant::Symmetric), (1536, 384, ActivationQuant::Shifted), (40, 24, ActivationQuant::Shifted)] {
            let w = Tensor::randn([out, inp], (Kind::Float, Device::Cpu)) * 0.05;
            let b = Tensor::randn([out], (Kind::Float, Device::Cpu));
            let max = Tensor::rand([inp], (Kind::Float, Device::Cpu)) * 6.0;
            // GELU outputs for the shifted layer, with one all-equal row (a zero range).
            let mut x = Tensor::randn([3, 300, inp], (Kind::Float, Device::Cpu)) * 2.0;
            if activations == ActivationQuant::Shifted {
                x = x.gelu("none");
                let _ = x.narrow(1, 7, 1).fill_(0.25);
            }
            for (smooth, levels) in [(None, PORTABLE_WEIGHT_LEVELS), (Some(&max), VNNI_WEIGHT_LEVELS)] {
                let layer = Int8Linear::new(&w, Some(&b), smooth, levels, activations);
                let want = libtorch_formulation(&layer, &x);
                for t in [1, 2] {
                    tch::set_num_threads(t);
                    let got = layer.forward(&x);
                    assert_eq!(got.size(), want.size());
                    let same = got.view_dtype(Kind::Int).eq_tensor(&want.view_dtype(Kind::Int)).all();
                    let diff = f64::try_from((&got - &want).abs().max()).unwrap();
                    assert!(bool::try_from(same).unwrap(), "{inp}->{out} {activations:?}, {t} threads: max |diff| {diff}");
                }
                tch::set_num_threads(threads);
                // A non-contiguous input (a transposed view) and an empty one.
                let xt = x.transpose(0, 1).contiguous().transpose(0, 1);
                assert!(!xt.is_contiguous());
                assert!(bool::try_from(layer.forward(&xt).eq_tensor(&want).all()).unwrap());
                assert_eq!(layer.forward(&x.narrow(1, 0, 0)).size(), vec![3, 0, out]);
            }
        }
    }

    #[test]
    fn int8_linear_is_close_to_float() {
        tch::manual_seed(1);
        let w = Tensor::randn([96, 384], (Kind::Float, Device::Cpu)) * 0.1;
        let b = Tensor::randn([96], (Kind::Float, Device::Cpu));
        let x = Tensor::randn([3, 7, 384], (Kind::Float, Device::Cpu));
        let want = x.linear(&w, Some(&b));
        for levels in exact_levels() {
            let got = Int8Linear::new(&w, Some(&b), None, levels, ActivationQuant::Symmetric).forward(&x);
            assert_eq!(got.size(), vec![3, 7, 96]);
            let cos = Tensor::cosine_similarity(&want.view([21, 96]), &got.view([21, 96]), 1, 1e-8);
            let worst = f64::try_from(cos.min()).unwrap();
            assert!(worst > 0.995, "{levels} levels: worst row cosine {worst}");

            // Exactly the float product of the dequantised operands (int32 accumulation is exact;
            // a saturating int8 kernel would be off by thousands of units).
            let x2 = x.view([21, 384]);
            let xs = x2.abs().amax([1].as_slice(), true) / ACTIVATION_LEVELS;
            let ws = w.abs().amax([1].as_slice(), true) / levels;
            let xd = (&x2 / &xs).round() * &xs;
            let wd = (&w / &ws).round() * &ws;
            let exact = xd.linear(&wd, Some(&b));
            let diff = f64::try_from((exact - got.view([21, 96])).abs().max()).unwrap();
            assert!(diff < 1e-4, "{levels} levels: max |diff| to the dequantised product {diff}");
        }

        // Smoothing keeps the product: an outlier input channel no longer ruins the other ones.
        let outlier = Tensor::ones([384], (Kind::Float, Device::Cpu)).index_fill(0, &Tensor::from_slice(&[5i64]), 60.0);
        let xo = &x * &outlier;
        let want = xo.linear(&w, Some(&b)).view([21, 96]);
        let cos_of = |q: &Int8Linear| f64::try_from(Tensor::cosine_similarity(&want, &q.forward(&xo).view([21, 96]), 1, 1e-8).min()).unwrap();
        let sym = ActivationQuant::Symmetric;
        let plain = cos_of(&Int8Linear::new(&w, Some(&b), None, PORTABLE_WEIGHT_LEVELS, sym));
        let max = xo.abs().amax([0, 1].as_slice(), false);
        let smoothed = cos_of(&Int8Linear::new(&w, Some(&b), Some(&max), PORTABLE_WEIGHT_LEVELS, sym));
        assert!(smoothed > plain && smoothed > 0.995, "plain {plain}, smoothed {smoothed}");
    }

    #[test]
    fn shifted_activations_are_exact_and_finer_on_gelu_outputs() {
        tch::manual_seed(2);
        let w = Tensor::randn([64, 1536], (Kind::Float, Device::Cpu)) * 0.05;
        let b = Tensor::randn([64], (Kind::Float, Device::Cpu));
        let x = (Tensor::randn([2, 9, 1536], (Kind::Float, Device::Cpu)) * 1.5).gelu("none");
        let want = x.linear(&w, Some(&b)).view([18, 64]);
        for levels in exact_levels() {
            let shifted = Int8Linear::new(&w, Some(&b), None, levels, ActivationQuant::Shifted);
            let got = shifted.forward(&x).view([18, 64]);
            // The dequantised operands: x = s (q + 127) + m per row, m the row's minimum.
            let x2 = x.view([18, 1536]);
            let m = x2.amin([1].as_slice(), true);
            let xs = (&x2 - &m).amax([1].as_slice(), true) / (2.0 * ACTIVATION_LEVELS);
            let xd = (((&x2 - &m) / &xs) - ACTIVATION_LEVELS).round() * &xs + ACTIVATION_LEVELS * &xs + &m;
            let ws = w.abs().amax([1].as_slice(), true) / levels;
            let wd = (&w / &ws).round() * &ws;
            let diff = f64::try_from((xd.linear(&wd, Some(&b)) - &got).abs().max()).unwrap();
            assert!(diff < 1e-3, "{levels} levels: max |diff| to the dequantised product {diff}");
            // Twice the levels on a one-sided input: the activations' rounding error falls to about
            // a quarter of the symmetric scale's, and the layer's error falls with it.
            let sq = |a: &Tensor, b: &Tensor| f64::try_from((a - b).square().sum(Kind::Float)).unwrap();
            let ss = x2.abs().amax([1].as_slice(), true) / ACTIVATION_LEVELS;
            let xd_sym = (&x2 / &ss).round() * &ss;
            let (e_shift, e_sym) = (sq(&xd, &x2), sq(&xd_sym, &x2));
            assert!(e_shift < 0.4 * e_sym, "activation rounding error shifted {e_shift} vs symmetric {e_sym}");
            let symmetric = Int8Linear::new(&w, Some(&b), None, levels, ActivationQuant::Symmetric).forward(&x).view([18, 64]);
            assert!(sq(&got, &want) < sq(&symmetric, &want), "{levels} levels: layer error shifted {} vs symmetric {}", sq(&got, &want), sq(&symmetric, &want));
        }
    }
}

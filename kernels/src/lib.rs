//! Elementwise passes that libtorch runs as chains of whole-tensor operations, each fused here
//! into one loop: the passes around an int8 matrix product, and the Adam update ([`adam`]).
//!
//! `multi-task-transformer`'s int8 linear layer quantises its input one token row at a time,
//! multiplies in int8 (libtorch's `_int_mm`) and rescales the int32 sums. Written as libtorch
//! operations that took seven passes before the product and four after it, each allocating a
//! tensor, and on 512 rows they cost more than the product itself. Here each side is one pass per
//! row, with the row in cache, and the rescaled floats are written over the int32 sums in place.
//!
//! The int8 passes' arithmetic is the libtorch formulation's, operation for operation in the same
//! order (no fused multiply-add), so the results are the same bits (the Adam update's differs in
//! the last bit at most: see its module). This crate is compiled with full
//! optimisation in every profile (the loops must be vectorised; see the workspace's
//! `Cargo.toml`), and on x86-64 with AVX2 when the CPU has it, chosen at run time.

mod adam;
pub use adam::{adam, AdamStep};

/// Largest quantised activation magnitude.
pub const LEVELS: f32 = 127.0;

/// Where [`quantize`] writes each row's scale (and shift), which also says how a row is mapped
/// onto the int8 levels.
#[derive(Debug)]
pub enum RowScales<'a> {
    /// `q = round(x / s)`, `s = max|x| / 127`: one scale per row.
    Symmetric {
        /// One scale per row: a level is worth this much.
        scale: &'a mut [f32],
    },
    /// `q = round((x - m) / s - 127)`, `m = min x`, `s = max(x - m) / 254`: the whole int8 range
    /// for a row bounded below (GELU outputs).
    Shifted {
        /// One scale per row.
        scale: &'a mut [f32],
        /// One minimum per row (the shift).
        min: &'a mut [f32],
    },
}

/// Quantises the rows of `x` (row-major, `cols` values per row, each first multiplied by
/// `factor[j]` when given) into `q`, writing each row's scale (and with [`RowScales::Shifted`]
/// its minimum) into `out`.
///
/// One thread: the callers run on libtorch's threads, whose OpenMP workers keep spinning between
/// parallel regions; threads spawned beside them to share this pass made it 2-5 times slower on
/// two cores (measured).
///
/// Panics when the lengths disagree.
pub fn quantize(x: &[f32], cols: usize, factor: Option<&[f32]>, q: &mut [i8], out: RowScales<'_>) {
    assert!(cols > 0 && x.len() % cols == 0, "x is not a whole number of rows of {cols}");
    let rows = x.len() / cols;
    assert_eq!(q.len(), x.len(), "q and x differ in length");
    let (scale, min) = match out {
        RowScales::Symmetric { scale } => (scale, None),
        RowScales::Shifted { scale, min } => (scale, Some(min)),
    };
    assert_eq!(scale.len(), rows, "one scale per row");
    if let Some(m) = &min {
        assert_eq!(m.len(), rows, "one minimum per row");
    }
    if let Some(f) = factor {
        assert_eq!(f.len(), cols, "one factor per column");
    }
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU has AVX2 (checked just above).
        return unsafe { quantize_rows_avx2(x, cols, factor, q, scale, min) };
    }
    quantize_rows_any(x, cols, factor, q, scale, min)
}

/// Rescales int32 products in place to float32, written as their bits over the same memory:
/// `acc[r, c]` (row-major, `cols` per row) becomes
/// `(acc[r, c] as f32 * row_scale[r]) * col_scale[c] + bias[c]`. With
/// `shift = Some((level_sums, row_min, scaled_sums))` (a [`RowScales::Shifted`] input), `level_sums[c]`
/// is added to the int32 sum first and the bias is `bias[c] + row_min[r] * scaled_sums[c]`.
///
/// One thread, as [`quantize`]. Panics when the lengths disagree.
pub fn dequantize(acc: &mut [i32], cols: usize, row_scale: &[f32], col_scale: &[f32], bias: &[f32], shift: Option<(&[i32], &[f32], &[f32])>) {
    assert!(cols > 0 && acc.len() % cols == 0, "acc is not a whole number of rows of {cols}");
    let rows = acc.len() / cols;
    assert_eq!(row_scale.len(), rows, "one scale per row");
    assert!(col_scale.len() == cols && bias.len() == cols, "one scale and bias per column");
    if let Some((sums, min, scaled)) = shift {
        assert!(sums.len() == cols && scaled.len() == cols && min.len() == rows, "shift lengths");
    }
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU has AVX2 (checked just above).
        return unsafe { dequantize_rows_avx2(acc, cols, row_scale, col_scale, bias, shift) };
    }
    dequantize_rows_any(acc, cols, row_scale, col_scale, bias, shift)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn quantize_rows_avx2(x: &[f32], cols: usize, factor: Option<&[f32]>, q: &mut [i8], scale: &mut [f32], min: Option<&mut [f32]>) {
    quantize_rows_any(x, cols, factor, q, scale, min)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn dequantize_rows_avx2(acc: &mut [i32], cols: usize, row_scale: &[f32], col_scale: &[f32], bias: &[f32], shift: Option<(&[i32], &[f32], &[f32])>) {
    dequantize_rows_any(acc, cols, row_scale, col_scale, bias, shift)
}

/// Lanes of the running minima and maxima: independent accumulators, so that the compiler can
/// keep them in one vector register without reordering anything.
const LANES: usize = 16;

/// The smallest and the largest value of `row`, in one pass.
#[inline(always)]
fn lane_min_max(row: &[f32]) -> (f32, f32) {
    let mut lo = [f32::INFINITY; LANES];
    let mut hi = [f32::NEG_INFINITY; LANES];
    let mut chunks = row.chunks_exact(LANES);
    for c in &mut chunks {
        for i in 0..LANES {
            lo[i] = if c[i] < lo[i] { c[i] } else { lo[i] };
            hi[i] = if c[i] > hi[i] { c[i] } else { hi[i] };
        }
    }
    let (mut min, mut max) = (f32::INFINITY, f32::NEG_INFINITY);
    for &v in lo.iter().chain(chunks.remainder()) {
        min = if v < min { v } else { min };
    }
    for &v in hi.iter().chain(chunks.remainder()) {
        max = if v > max { v } else { max };
    }
    (min, max)
}

/// The rows one by one; a row minimum buffer (`min`) means [`RowScales::Shifted`].
#[inline(always)]
fn quantize_rows_any(x: &[f32], cols: usize, factor: Option<&[f32]>, q: &mut [i8], scale: &mut [f32], mut min: Option<&mut [f32]>) {
    // The row after the factor; a scratch row, in cache.
    let mut row = vec![0f32; cols];
    for (r, (xr, qr)) in x.chunks_exact(cols).zip(q.chunks_exact_mut(cols)).enumerate() {
        match factor {
            Some(f) => row.iter_mut().zip(xr).zip(f).for_each(|((y, &v), &f)| *y = v * f),
            None => row.copy_from_slice(xr),
        }
        match min.as_deref_mut() {
            None => {
                let (lo, hi) = lane_min_max(&row);
                let amax = if -lo > hi { -lo } else { hi };
                let s = clamp_min(amax) / LEVELS;
                scale[r] = s;
                qr.iter_mut().zip(&row).for_each(|(q, &v)| *q = round_to_i8(v / s));
            }
            Some(min) => {
                let (m, max) = lane_min_max(&row);
                let s = clamp_min(max - m) / (2.0 * LEVELS);
                scale[r] = s;
                min[r] = m;
                qr.iter_mut().zip(&row).for_each(|(q, &v)| *q = round_to_i8((v - m) / s - LEVELS));
            }
        }
    }
}

/// `v` rounded to the nearest integer, ties to even (as libtorch's `round`), as an int8: `v` is
/// within [-127.5, 127.5] here (a row divided by its own range). Adding 1.5 * 2^23 moves `v` to
/// where floats are one apart, so the addition itself rounds (to nearest, ties to even, as the
/// even 1.5 * 2^23 keeps parity), and the integer is read from the sum's low bits: plain integer
/// arithmetic, which vectorises where a float-to-int conversion with saturation does not.
#[inline(always)]
fn round_to_i8(v: f32) -> i8 {
    const MAGIC: f32 = 12_582_912.0;
    ((v + MAGIC).to_bits() as i32).wrapping_sub(MAGIC.to_bits() as i32) as i8
}

/// libtorch's `clamp_min(1e-12)` on a float32 (NaN passes through, as there).
#[inline(always)]
fn clamp_min(v: f32) -> f32 {
    if v < 1e-12 {
        1e-12
    } else {
        v
    }
}

#[inline(always)]
fn dequantize_rows_any(acc: &mut [i32], cols: usize, row_scale: &[f32], col_scale: &[f32], bias: &[f32], shift: Option<(&[i32], &[f32], &[f32])>) {
    match shift {
        None => {
            for (ar, &rs) in acc.chunks_exact_mut(cols).zip(row_scale) {
                for ((a, &cs), &b) in ar.iter_mut().zip(col_scale).zip(bias) {
                    *a = ((*a as f32 * rs) * cs + b).to_bits() as i32;
                }
            }
        }
        Some((sums, min, scaled)) => {
            for ((ar, &rs), &m) in acc.chunks_exact_mut(cols).zip(row_scale).zip(min) {
                for ((((a, &cs), &b), &sum), &ss) in ar.iter_mut().zip(col_scale).zip(bias).zip(sums).zip(scaled) {
                    *a = ((a.wrapping_add(sum) as f32 * rs) * cs + (b + m * ss)).to_bits() as i32;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(n: usize, seed: u32) -> Vec<f32> {
        // A small deterministic generator: values in about [-3, 5), a few large ones.
        let mut s = seed.wrapping_mul(2654435761).max(1);
        (0..n)
            .map(|i| {
                s ^= s << 13;
                s ^= s >> 17;
                s ^= s << 5;
                let v = (s % 8000) as f32 / 1000.0 - 3.0;
                if i % 97 == 0 { v * 9.0 } else { v }
            })
            .collect()
    }

    #[test]
    fn each_row_on_its_own_and_the_vector_path_give_the_same_bits() {
        // 700 rows of 390 values: the lanes' remainder is exercised too.
        let cols = 390;
        let rows = 700;
        let x = data(rows * cols, 3);
        let f = data(cols, 4).iter().map(|v| v.abs() + 0.1).collect::<Vec<_>>();
        for shifted in [false, true] {
            let mode = if shifted { "shifted" } else { "symmetric" };
            let mut q = vec![0i8; x.len()];
            let mut s = vec![0f32; rows];
            let mut m = vec![0f32; rows];
            let out = if shifted { RowScales::Shifted { scale: &mut s, min: &mut m } } else { RowScales::Symmetric { scale: &mut s } };
            quantize(&x, cols, Some(&f), &mut q, out);
            assert!(q.contains(&127) && q.contains(&-127), "the full range is used");
            // The portable loop (no AVX2), row by row.
            for r in [0, 1, 350, rows - 1] {
                let mut qr = vec![0i8; cols];
                let (mut sr, mut mr) = ([0f32], [0f32]);
                quantize_rows_any(&x[r * cols..(r + 1) * cols], cols, Some(&f), &mut qr, &mut sr, shifted.then_some(mr.as_mut_slice()));
                assert_eq!(qr, &q[r * cols..(r + 1) * cols], "{mode}, row {r}");
                assert_eq!(sr[0].to_bits(), s[r].to_bits());
                if shifted {
                    assert_eq!(mr[0], m[r]);
                }
            }
            // Rounding, as libtorch's round: half to even.
            let r = 5;
            for (j, &q) in q[r * cols..(r + 1) * cols].iter().enumerate() {
                let v = x[r * cols + j] * f[j];
                let want = if shifted { (v - m[r]) / s[r] - LEVELS } else { v / s[r] };
                assert_eq!(q as f32, want.round_ties_even(), "{mode}, column {j}");
            }
        }
        let acc0: Vec<i32> = data(rows * cols, 5).iter().map(|v| (v * 1000.0) as i32).collect();
        let rs = data(rows, 6);
        let cs = data(cols, 7);
        let b = data(cols, 8);
        let sums: Vec<i32> = (0..cols as i32).collect();
        let min = data(rows, 9);
        for shift in [None, Some((sums.as_slice(), min.as_slice(), cs.as_slice()))] {
            let mut acc = acc0.clone();
            dequantize(&mut acc, cols, &rs, &cs, &b, shift);
            let mut portable = acc0.clone();
            dequantize_rows_any(&mut portable, cols, &rs, &cs, &b, shift);
            assert_eq!(acc, portable);
            for (r, c) in [(17, 40), (rows - 1, cols - 1)] {
                let expect = match shift {
                    None => (acc0[r * cols + c] as f32 * rs[r]) * cs[c] + b[c],
                    Some(_) => ((acc0[r * cols + c] + sums[c]) as f32 * rs[r]) * cs[c] + (b[c] + min[r] * cs[c]),
                };
                assert_eq!(f32::from_bits(acc[r * cols + c] as u32), expect);
            }
        }
    }

    #[test]
    fn a_row_is_mapped_onto_the_full_range() {
        let x = [0.5f32, -2.0, 1.0, 0.0];
        let mut q = [0i8; 4];
        let mut s = [0f32];
        quantize(&x, 4, None, &mut q, RowScales::Symmetric { scale: &mut s });
        assert_eq!(q, [32, -127, 64, 0]);
        assert_eq!(s[0], 2.0 / 127.0);
        let mut m = [0f32];
        quantize(&x, 4, None, &mut q, RowScales::Shifted { scale: &mut s, min: &mut m });
        assert_eq!((q[1], q[2], q[0], m[0]), (-127, 127, 85, -2.0));
        // An all-zero row: the floor of the scale, zeros out.
        quantize(&[0.0; 4], 4, None, &mut q, RowScales::Symmetric { scale: &mut s });
        assert_eq!((q, s[0]), ([0; 4], 1e-12 / 127.0));
    }
}

//! One Adam (or AdamW) update of a float32 variable as a single pass over its values.
//!
//! Written as libtorch operations the update reads and writes the variable's values a dozen
//! times and allocates five temporaries of its size; over all-MiniLM-L6-v2's 22.7M values that
//! took longer than a batch's forward and backward passes together. Here each value is read once,
//! updated in registers and written once. The arithmetic is the libtorch formulation's
//! (`multi_task_transformer::optim::Adam`), operation for operation and in the same order, with
//! each scalar rounded to float32 as libtorch rounds it; the results still differ from libtorch's
//! in the last bit for a few values (its vectorised kernels may contract a multiply and an add),
//! 3e-8 at most on all-MiniLM-L6-v2's weights after a step.

/// The scalars of one update, in float64 as the caller computes them.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdamStep {
    /// The learning rate at this step.
    pub lr: f64,
    /// β1, the first moment's decay rate.
    pub beta1: f64,
    /// β2, the second moment's decay rate.
    pub beta2: f64,
    /// ε, added to the denominator.
    pub eps: f64,
    /// Weight decay (0: none).
    pub weight_decay: f64,
    /// AdamW's decoupled decay (`p *= 1 - lr·wd`) rather than Adam's (`g += wd·p`).
    pub decoupled: bool,
    /// This variable's step count, 1 on its first update.
    pub step: i32,
}

/// Updates `p` with gradient `g` and moments `m`, `v` in place:
/// `m = β1·m + (1−β1)·g`, `v = β2·v + g·((1−β2)·g)`,
/// `p += (m·(−lr/(1−β1^t))) / (sqrt(v)/sqrt(1−β2^t) + ε)`, with weight decay as
/// [`AdamStep::decoupled`] says.
///
/// One thread, as the crate's other passes (libtorch's OpenMP workers spin beside it).
/// Panics when the lengths disagree.
pub fn adam(p: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32], s: AdamStep) {
    assert!(g.len() == p.len() && m.len() == p.len() && v.len() == p.len(), "p, g, m and v differ in length");
    let k = Scalars::new(s);
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU has AVX2 (checked just above).
        return unsafe { adam_avx2(p, g, m, v, &k) };
    }
    adam_any(p, g, m, v, &k)
}

/// The update's scalars in float32, as libtorch converts a double scalar for a float tensor.
struct Scalars {
    beta1: f32,
    one_minus_beta1: f32,
    beta2: f32,
    one_minus_beta2: f32,
    sqrt_bc2: f32,
    eps: f32,
    step_size: f32,
    /// Adam's L2 term `wd` (added to the gradient as `g + p·wd`), when on.
    l2: Option<f32>,
    /// AdamW's factor `1 − lr·wd`, when on.
    decay: Option<f32>,
}

impl Scalars {
    fn new(s: AdamStep) -> Self {
        let (bc1, bc2) = (1.0 - s.beta1.powi(s.step), 1.0 - s.beta2.powi(s.step));
        let wd = s.weight_decay != 0.0;
        Scalars {
            beta1: s.beta1 as f32,
            one_minus_beta1: (1.0 - s.beta1) as f32,
            beta2: s.beta2 as f32,
            one_minus_beta2: (1.0 - s.beta2) as f32,
            sqrt_bc2: bc2.sqrt() as f32,
            eps: s.eps as f32,
            step_size: (-s.lr / bc1) as f32,
            l2: (wd && !s.decoupled).then_some(s.weight_decay as f32),
            decay: (wd && s.decoupled).then_some((1.0 - s.lr * s.weight_decay) as f32),
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn adam_avx2(p: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32], k: &Scalars) {
    adam_any(p, g, m, v, k)
}

#[inline(always)]
fn adam_any(p: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32], k: &Scalars) {
    // One loop per weight-decay variant, so that each is a straight line the compiler vectorises.
    match (k.l2, k.decay) {
        (None, None) => update(p, g, m, v, k, |_, g| g, |p| p),
        (Some(wd), _) => update(p, g, m, v, k, |p, g| g + p * wd, |p| p),
        (None, Some(d)) => update(p, g, m, v, k, |_, g| g, |p| p * d),
    }
}

#[inline(always)]
fn update(p: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32], k: &Scalars, grad: impl Fn(f32, f32) -> f32, decay: impl Fn(f32) -> f32) {
    for (((p, &g), m), v) in p.iter_mut().zip(g).zip(m.iter_mut()).zip(v.iter_mut()) {
        let g = grad(*p, g);
        let pd = decay(*p);
        *m = *m * k.beta1 + g * k.one_minus_beta1;
        *v = *v * k.beta2 + g * (g * k.one_minus_beta2);
        let denom = v.sqrt() / k.sqrt_bc2 + k.eps;
        *p = pd + (*m * k.step_size) / denom;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_vector_path_and_the_plain_loop_agree_bitwise_and_follow_the_formula() {
        let n = 1003;
        let p0: Vec<f32> = (0..n).map(|i| ((i * 37 % 101) as f32 - 50.0) / 40.0).collect();
        let g: Vec<f32> = (0..n).map(|i| ((i * 53 % 89) as f32 - 44.0) / 300.0).collect();
        for (wd, decoupled) in [(0.0, false), (0.01, false), (0.01, true)] {
            let s = AdamStep { lr: 1e-3, beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: wd, decoupled, step: 3 };
            let (mut p, mut m, mut v) = (p0.clone(), vec![0.01f32; n], vec![0.002f32; n]);
            adam(&mut p, &g, &mut m, &mut v, s);
            let (mut p2, mut m2, mut v2) = (p0.clone(), vec![0.01f32; n], vec![0.002f32; n]);
            adam_any(&mut p2, &g, &mut m2, &mut v2, &Scalars::new(s));
            assert_eq!((&p, &m, &v), (&p2, &m2, &v2));
            // Element 7 by the formula, in float64: within float32 rounding.
            let i = 7;
            let (p0, g0) = (p0[i] as f64, g[i] as f64);
            let gg = if wd != 0.0 && !decoupled { g0 + wd * p0 } else { g0 };
            let pd = if decoupled { p0 * (1.0 - 1e-3 * wd) } else { p0 };
            let m1 = 0.9 * 0.01f32 as f64 + 0.1 * gg;
            let v1 = 0.999 * 0.002f32 as f64 + 0.001 * gg * gg;
            let want = pd - 1e-3 / (1.0 - 0.9f64.powi(3)) * m1 / (v1.sqrt() / (1.0 - 0.999f64.powi(3)).sqrt() + 1e-8);
            assert!((p[i] as f64 - want).abs() < 1e-6, "{} against {want}", p[i]);
            assert!((m[i] as f64 - m1).abs() < 1e-8 && (v[i] as f64 - v1).abs() < 1e-9);
        }
    }
}

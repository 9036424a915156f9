//! Owns Task 4's optimisation: learning-rate plans per parameter subset (presets, per-layer
//! decay, overrides), one Adam/AdamW per trainable subset, the warm-up / linear-decay schedule
//! that scales each subset's own rate, and global-norm gradient clipping.
//!
//! Adam is this module's own [`Adam`] (libtorch's C++ update rule, step for step) rather than
//! `tch::nn::Adam`, whose moments cannot be read or restored: ours can be saved and resumed.
//!
//! Nothing here reads a tensor back to the CPU: the clipped norm is returned as a device tensor
//! for the trainer to check at its sync points.

use crate::error::{invalid, Error, Result};
use crate::params::{under_prefix, Params, EMBEDDINGS, LAYERS, NAMED_HEADS};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use tch::{nn, nn::OptimizerConfig, Tensor};

/// Preset rate tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum LrPreset {
    /// Every subset 1e-4 (the seed's Task 3).
    Uniform,
    /// Embeddings 1e-6, encoder layers 1e-5, heads 1e-4 (the seed's Task 4).
    Layerwise,
}

impl LrPreset {
    /// The preset names as users type them.
    pub const NAMES: [&'static str; 2] = ["uniform", "layerwise"];
}

impl FromStr for LrPreset {
    type Err = Error;

    fn from_str(s: &str) -> Result<LrPreset> {
        match s.trim().to_ascii_lowercase().as_str() {
            "uniform" => Ok(LrPreset::Uniform),
            "layerwise" => Ok(LrPreset::Layerwise),
            other => Err(invalid(format!("unknown learning-rate preset '{other}': expected uniform or layerwise"))),
        }
    }
}

impl fmt::Display for LrPreset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LrPreset::Uniform => "uniform",
            LrPreset::Layerwise => "layerwise",
        })
    }
}

/// The seed's head rate, also the uniform rate.
pub const HEAD_LR: f64 = 1e-4;
/// The seed's Task 4 rate for the encoder layers.
pub const LAYER_LR: f64 = 1e-5;
/// The seed's Task 4 rate for the embeddings.
pub const EMBEDDINGS_LR: f64 = 1e-6;

/// Parses `PREFIX=RATE` (a rate override).
pub fn parse_lr_override(s: &str) -> Result<(String, f64)> {
    let (p, r) = s
        .split_once('=')
        .ok_or_else(|| invalid(format!("learning-rate override '{s}': expected PREFIX=RATE, e.g. encoder.encoder.layer=2e-5")))?;
    let rate: f64 = r.trim().parse().map_err(|_| invalid(format!("learning-rate override '{s}': '{r}' is not a number")))?;
    check_rate(p, rate)?;
    Ok((p.trim().trim_end_matches('.').to_string(), rate))
}

/// A rate must be finite and not negative.
pub fn check_rate(prefix: &str, rate: f64) -> Result<()> {
    if !rate.is_finite() || rate < 0.0 {
        return Err(invalid(format!("learning-rate override '{prefix}={rate}': the rate must be finite and >= 0")));
    }
    Ok(())
}

/// The learning rate of every subset, from a preset, an optional per-layer decay and overrides
/// applied in order (later wins).
///
/// With `layer_decay` F and L layers, layer i (0-based) gets `HEAD_LR * F^(L - i)` and the
/// embeddings `HEAD_LR * F^(L + 1)`. An override addresses whole subsets by name prefix; one that
/// matches no subset, or names something inside a single subset (rates are per subset), is an
/// error listing the subsets. Heads are addressed by task as well (see [`override_targets`]):
/// `heads` is every head, the seed's two included, and `heads.task_a` / `heads.task_b` are
/// `classification_head` / `sentiment_head`.
pub fn learning_rates(
    params: &Params,
    preset: LrPreset,
    layer_decay: Option<f64>,
    overrides: &[(String, f64)],
) -> Result<BTreeMap<String, f64>> {
    let n_layers = params.n_layers() as i32;
    let mut rates = BTreeMap::new();
    for s in params.subsets() {
        let name = s.name.as_str();
        let rate = match preset {
            LrPreset::Uniform => HEAD_LR,
            LrPreset::Layerwise if name == EMBEDDINGS => EMBEDDINGS_LR,
            LrPreset::Layerwise if under_prefix(name, LAYERS) => LAYER_LR,
            LrPreset::Layerwise => HEAD_LR,
        };
        rates.insert(s.name.clone(), rate);
    }
    if let Some(f) = layer_decay {
        if !(f > 0.0 && f <= 1.0) {
            return Err(invalid(format!("layer decay {f}: must be in (0, 1]")));
        }
        for (name, rate) in rates.iter_mut() {
            if let Some(i) = name.strip_prefix(&format!("{LAYERS}.")).and_then(|i| i.parse::<i32>().ok()) {
                *rate = HEAD_LR * f.powi(n_layers - i);
            } else if name == EMBEDDINGS {
                *rate = HEAD_LR * f.powi(n_layers + 1);
            }
        }
    }
    for (prefix, rate) in overrides {
        check_rate(prefix, *rate)?;
        let hits = override_targets(params, prefix);
        if hits.is_empty() {
            let why = match params.containing(prefix) {
                Some(s) => format!(
                    "'{prefix}' lies inside the subset {} and rates apply to whole subsets; use {} (or a coarser prefix)",
                    s.name, s.name
                ),
                None => format!("'{prefix}' matches no subset"),
            };
            return Err(invalid(format!("learning-rate override {prefix}={rate}: {why} (subsets: {})", params.names())));
        }
        for h in hits {
            rates.insert(h, *rate);
        }
    }
    Ok(rates)
}

/// The subsets a rate override's prefix sets. Besides plain name prefixes, heads go by task:
/// `heads` means every head (the seed's `classification_head` and `sentiment_head` as well as
/// `heads.*`, as `--freeze heads` does), and `heads.NAME` the head of task NAME wherever it
/// lives (`heads.task_a` is `classification_head`).
pub fn override_targets(params: &Params, prefix: &str) -> Vec<String> {
    let prefix = prefix.trim_end_matches('.');
    let names = |p: &str| params.under(p).into_iter().map(|s| s.name.clone()).collect::<Vec<_>>();
    if prefix == NAMED_HEADS {
        return params.head_names();
    }
    match prefix.strip_prefix(NAMED_HEADS).and_then(|r| r.strip_prefix('.')) {
        Some(task) if !task.contains('.') => names(&crate::task::head_subset(task)),
        _ => names(prefix),
    }
}

/// Optimizer settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OptimConfig {
    /// Use AdamW (decoupled weight decay) instead of Adam.
    pub adamw: bool,
    /// Weight decay factor (finite, >= 0; 0 = none): added to the gradient as `weight_decay·p`
    /// with Adam, applied as `p *= 1 − lr·weight_decay` with AdamW.
    pub weight_decay: f64,
    /// Linear warm-up steps (0 = none).
    pub warmup_steps: usize,
    /// Linear decay to 0 at the last step.
    pub linear_decay: bool,
    /// Global gradient-norm clip (None = off).
    pub clip_norm: Option<f64>,
}

impl Default for OptimConfig {
    fn default() -> Self {
        OptimConfig { adamw: false, weight_decay: 0.0, warmup_steps: 0, linear_decay: false, clip_norm: None }
    }
}

impl OptimConfig {
    /// Checks every setting; errors name the field.
    pub fn validate(&self) -> Result<()> {
        if !self.weight_decay.is_finite() || self.weight_decay < 0.0 {
            return Err(invalid(format!("weight_decay {}: must be finite and >= 0", self.weight_decay)));
        }
        if let Some(c) = self.clip_norm {
            if !c.is_finite() || c <= 0.0 {
                return Err(invalid(format!("clip_norm {c}: must be finite and > 0")));
            }
        }
        Ok(())
    }
}

/// Adam (or AdamW with `decoupled`) over one subset's variables, with libtorch's C++ update:
/// per variable, on its own step count, `m = β1·m + (1−β1)·g`, `v = β2·v + (1−β2)·g²`,
/// `p −= lr/(1−β1^t) · m / (sqrt(v)/sqrt(1−β2^t) + ε)`; Adam's weight decay adds `wd·p` to the
/// gradient, AdamW's multiplies `p` by `1 − lr·wd` first. A variable without a gradient this step
/// (`None`, not zero) is left alone: no momentum leaks into a head whose task had no labels.
pub struct Adam {
    /// The variables by name (sorted), so that their state can be saved and restored.
    names: Vec<String>,
    vars: Vec<Tensor>,
    exp_avg: Vec<Option<Tensor>>,
    exp_avg_sq: Vec<Option<Tensor>>,
    steps: Vec<i64>,
    weight_decay: f64,
    decoupled: bool,
    /// libtorch's optimizer object, used only to reset gradients to undefined (tch has no
    /// per-tensor call for it).
    grads: nn::Optimizer,
}

impl Adam {
    /// β1, the decay rate of the first moment (the running mean of gradients).
    pub const BETA1: f64 = 0.9;
    /// β2, the decay rate of the second moment (the running mean of squared gradients).
    pub const BETA2: f64 = 0.999;
    /// ε, added to the denominator so that it is never 0.
    pub const EPS: f64 = 1e-8;

    /// Adam over the variables of `vs` that require gradients.
    pub fn new(vs: &nn::VarStore, weight_decay: f64, decoupled: bool) -> Result<Self> {
        let mut named: Vec<(String, Tensor)> = vs.variables().into_iter().filter(|(_, t)| t.requires_grad()).collect();
        named.sort_by(|a, b| a.0.cmp(&b.0));
        let (names, vars): (Vec<String>, Vec<Tensor>) = named.into_iter().unzip();
        let n = vars.len();
        let grads = nn::Sgd::default().build(vs, 0.0)?;
        Ok(Adam {
            names,
            vars,
            exp_avg: (0..n).map(|_| None).collect(),
            exp_avg_sq: (0..n).map(|_| None).collect(),
            steps: vec![0; n],
            weight_decay,
            decoupled,
            grads,
        })
    }

    /// The moments (`{prefix}/{variable}/exp_avg`, `.../exp_avg_sq`, only for variables that
    /// have been updated) and every variable's step count (`{prefix}/{variable}`).
    pub fn state(&self, prefix: &str, tensors: &mut Vec<(String, Tensor)>, steps: &mut BTreeMap<String, i64>) {
        for (i, name) in self.names.iter().enumerate() {
            let key = format!("{prefix}/{name}");
            if let (Some(m), Some(v)) = (&self.exp_avg[i], &self.exp_avg_sq[i]) {
                tensors.push((format!("{key}/exp_avg"), m.shallow_clone()));
                tensors.push((format!("{key}/exp_avg_sq"), v.shallow_clone()));
            }
            steps.insert(key, self.steps[i]);
        }
    }

    /// Restores what [`Adam::state`] gave, taking this optimizer's entries out of `tensors` and
    /// `steps`. A variable with steps but no moments, or moments of the wrong shape, is an error
    /// naming the tensor.
    pub fn restore(&mut self, prefix: &str, tensors: &mut BTreeMap<String, Tensor>, steps: &mut BTreeMap<String, i64>) -> Result<()> {
        for (i, name) in self.names.iter().enumerate() {
            let key = format!("{prefix}/{name}");
            let n = steps.remove(&key).ok_or_else(|| invalid(format!("optimizer state: no step count for {key}")))?;
            let (m, v) = (tensors.remove(&format!("{key}/exp_avg")), tensors.remove(&format!("{key}/exp_avg_sq")));
            let var = &self.vars[i];
            let fit = |t: Option<Tensor>, what: &str| -> Result<Option<Tensor>> {
                match t {
                    None if n > 0 => Err(invalid(format!("optimizer state: {key} took {n} steps but has no {what}"))),
                    None => Ok(None),
                    Some(t) if t.size() != var.size() => Err(invalid(format!("optimizer state: {key}/{what} has shape {:?}, the variable {:?}", t.size(), var.size()))),
                    Some(t) => Ok(Some(t.to_device(var.device()))),
                }
            };
            self.exp_avg[i] = fit(m, "exp_avg")?;
            self.exp_avg_sq[i] = fit(v, "exp_avg_sq")?;
            self.steps[i] = n;
        }
        Ok(())
    }

    /// Resets every gradient to undefined.
    pub fn zero_grad(&mut self) {
        self.grads.zero_grad();
    }

    /// One update at `lr` of every variable that has a gradient: on the CPU in one pass over a
    /// float32 variable's values ([`mtt_kernels::adam`], the same arithmetic), elsewhere as
    /// libtorch operations.
    pub fn step(&mut self, lr: f64) {
        let (b1, b2, wd) = (Self::BETA1, Self::BETA2, self.weight_decay);
        tch::no_grad(|| {
            for (i, p) in self.vars.iter_mut().enumerate() {
                let g = p.grad();
                if !g.defined() {
                    continue;
                }
                let m = self.exp_avg[i].get_or_insert_with(|| p.zeros_like());
                let v = self.exp_avg_sq[i].get_or_insert_with(|| p.zeros_like());
                self.steps[i] += 1;
                let t = self.steps[i] as i32;
                if fused_on_cpu(p, &g, m, v) {
                    let s = mtt_kernels::AdamStep { lr, beta1: b1, beta2: b2, eps: Self::EPS, weight_decay: wd, decoupled: self.decoupled, step: t };
                    let n = p.numel();
                    // SAFETY: `fused_on_cpu` checked that all four are contiguous float32 CPU
                    // tensors of `n` values; the moments are this optimizer's own, the gradient
                    // is only read, and nothing else touches the variable during the update (no
                    // autograd: `no_grad`, and the graph that produced the gradient is gone).
                    unsafe {
                        mtt_kernels::adam(
                            std::slice::from_raw_parts_mut(p.data_ptr() as *mut f32, n),
                            std::slice::from_raw_parts(g.data_ptr() as *const f32, n),
                            std::slice::from_raw_parts_mut(m.data_ptr() as *mut f32, n),
                            std::slice::from_raw_parts_mut(v.data_ptr() as *mut f32, n),
                            s,
                        );
                    }
                    continue;
                }
                let (bc1, bc2) = (1.0 - b1.powi(t), 1.0 - b2.powi(t));
                let g = if wd != 0.0 && !self.decoupled { &g + &*p * wd } else { g };
                if wd != 0.0 && self.decoupled {
                    let _ = p.g_mul_scalar_(1.0 - lr * wd);
                }
                let _ = m.g_mul_scalar_(b1).g_add_(&(&g * (1.0 - b1)));
                let _ = v.g_mul_scalar_(b2).addcmul_(&g, &(&g * (1.0 - b2)));
                let denom = (v.sqrt() / bc2.sqrt()).g_add_scalar_(Self::EPS);
                let _ = p.addcdiv_(&(&*m * (-lr / bc1)), &denom);
            }
        });
    }
}

/// Whether the fused CPU update applies: the variable, its gradient and both moments contiguous
/// float32 CPU tensors of one size, none sharing memory with another.
fn fused_on_cpu(p: &Tensor, g: &Tensor, m: &Tensor, v: &Tensor) -> bool {
    let all = [p, g, m, v];
    all.iter().all(|t| t.device() == tch::Device::Cpu && t.kind() == tch::Kind::Float && t.is_contiguous() && t.size() == p.size())
        && {
            let ptrs = all.map(|t| t.data_ptr() as usize);
            (0..4).all(|i| (i + 1..4).all(|j| ptrs[i] != ptrs[j]))
        }
}

struct Bound {
    subset: String,
    rate: f64,
    opt: Adam,
}

/// One optimizer per trainable subset.
pub struct Optimizers {
    bound: Vec<Bound>,
    cfg: OptimConfig,
    total_steps: usize,
    trainable: Vec<Tensor>,
}

impl Optimizers {
    /// Binds an optimizer to each subset that still has a trainable variable, at its rate.
    /// `total_steps` is the planned number of steps (for linear decay).
    pub fn new(params: &Params, rates: &BTreeMap<String, f64>, cfg: OptimConfig, total_steps: usize) -> Result<Self> {
        cfg.validate()?;
        let mut bound = Vec::new();
        for s in params.subsets().iter().filter(|s| s.is_trainable()) {
            let rate = *rates.get(&s.name).ok_or_else(|| invalid(format!("no learning rate for subset {}", s.name)))?;
            let opt = Adam::new(&s.vs, cfg.weight_decay, cfg.adamw)?;
            bound.push(Bound { subset: s.name.clone(), rate, opt });
        }
        let trainable = params.named_variables().into_iter().map(|(_, t)| t).filter(|t| t.requires_grad()).collect();
        Ok(Optimizers { bound, cfg, total_steps, trainable })
    }

    /// Binds one more Adam optimizer, at `rate` and on the same schedule, to variables that live
    /// outside the model's parameters (uncertainty weighting's log-variances).
    pub fn bind_extra(&mut self, name: &str, vs: &nn::VarStore, rate: f64) -> Result<()> {
        check_rate(name, rate)?;
        let opt = Adam::new(vs, 0.0, false)?;
        self.bound.push(Bound { subset: name.to_string(), rate, opt });
        Ok(())
    }

    /// Whether anything trains.
    pub fn is_empty(&self) -> bool {
        self.bound.is_empty()
    }

    /// The subsets that have an optimizer, with their base rates.
    pub fn subsets(&self) -> Vec<(String, f64)> {
        self.bound.iter().map(|b| (b.subset.clone(), b.rate)).collect()
    }

    /// Schedule factor at `step` (0-based): linear warm-up, then optional linear decay to 0.
    pub fn factor(&self, step: usize) -> f64 {
        let w = self.cfg.warmup_steps;
        if step < w {
            return (step + 1) as f64 / w as f64;
        }
        if self.cfg.linear_decay && self.total_steps > w {
            return ((self.total_steps - step) as f64 / (self.total_steps - w) as f64).clamp(0.0, 1.0);
        }
        1.0
    }

    /// Each subset's effective rate at `step`: its base rate times the schedule factor.
    pub fn rates_at(&self, step: usize) -> Vec<(String, f64)> {
        let f = self.factor(step);
        self.bound.iter().map(|b| (b.subset.clone(), b.rate * f)).collect()
    }

    /// Every optimizer's moments and step counts, keyed by subset and variable name.
    pub fn state(&self) -> (Vec<(String, Tensor)>, BTreeMap<String, i64>) {
        let (mut tensors, mut steps) = (Vec::new(), BTreeMap::new());
        for b in &self.bound {
            b.opt.state(&b.subset, &mut tensors, &mut steps);
        }
        (tensors, steps)
    }

    /// Restores [`Optimizers::state`]'s output into optimizers bound the same way; anything left
    /// over (a subset trainable then but not now) is an error.
    pub fn restore(&mut self, tensors: Vec<(String, Tensor)>, mut steps: BTreeMap<String, i64>) -> Result<()> {
        let mut tensors: BTreeMap<String, Tensor> = tensors.into_iter().collect();
        for b in &mut self.bound {
            b.opt.restore(&b.subset, &mut tensors, &mut steps)?;
        }
        if let Some(k) = tensors.keys().next().or(steps.keys().next()) {
            return Err(invalid(format!("optimizer state: {k} belongs to no optimizer of this run")));
        }
        Ok(())
    }

    /// Backward pass, optional clipping, and one step of every optimizer at its scheduled rate.
    /// Returns the global gradient norm before clipping (a device scalar) when clipping is on.
    pub fn step(&mut self, loss: &Tensor, step: usize) -> Option<Tensor> {
        if self.bound.is_empty() {
            return None;
        }
        let f = self.factor(step);
        for b in &mut self.bound {
            b.opt.zero_grad();
        }
        loss.backward();
        let norm = self.cfg.clip_norm.and_then(|max| clip_global_norm(&self.trainable, max));
        for b in &mut self.bound {
            b.opt.step(b.rate * f);
        }
        norm
    }
}

/// Scales all gradients of `vars` so that their joint L2 norm is at most `max`, without reading
/// anything back to the CPU. Returns the norm before clipping, or `None` when no variable has a
/// gradient. A non-finite norm makes the gradients non-finite or zero: callers must check it.
pub fn clip_global_norm(vars: &[Tensor], max: f64) -> Option<Tensor> {
    tch::no_grad(|| {
        let grads: Vec<Tensor> = vars.iter().map(Tensor::grad).filter(Tensor::defined).collect();
        if grads.is_empty() {
            return None;
        }
        let norms: Vec<Tensor> = grads.iter().map(|g| g.norm()).collect();
        let total = Tensor::stack(&norms, 0).norm();
        // min(1, max / (total + 1e-6)); multiplying by exactly 1 leaves a gradient bitwise as is.
        let coef = ((&total + 1e-6).reciprocal() * max).clamp_max(1.0);
        for mut g in grads {
            let _ = g.g_mul_(&coef);
        }
        Some(total)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::params::{HEAD_A, HEAD_B};
    use tch::{nn::Module, Device, Kind};

    fn heads_only() -> Params {
        let mut p = Params::new(Device::Cpu);
        for name in [HEAD_A, HEAD_B] {
            let vs = p.new_store();
            let _ = nn::linear(vs.root() / name, 4, 2, Default::default());
            p.push(name, vs);
        }
        p
    }

    #[test]
    fn lr_overrides_parse() {
        assert_eq!(parse_lr_override("encoder.encoder.layer=2e-5").unwrap(), ("encoder.encoder.layer".into(), 2e-5));
        assert!(parse_lr_override("x").is_err());
        assert!(parse_lr_override("x=abc").is_err());
        assert!(parse_lr_override("x=-1").is_err());
        assert!(parse_lr_override("x=inf").is_err());
    }

    #[test]
    fn preset_names_round_trip() {
        for n in LrPreset::NAMES {
            assert_eq!(n.parse::<LrPreset>().unwrap().to_string(), n);
        }
        assert!("fast".parse::<LrPreset>().is_err());
    }

    #[test]
    fn an_override_finer_than_a_subset_is_an_error_naming_the_subsets() {
        let p = heads_only();
        let e = learning_rates(&p, LrPreset::Uniform, None, &[("classification_head.weight".into(), 1e-3)]).unwrap_err().to_string();
        assert!(e.contains("lies inside the subset classification_head"), "{e}");
        assert!(e.contains("subsets: classification_head, sentiment_head"), "{e}");
        let r = learning_rates(&p, LrPreset::Uniform, None, &[("sentiment_head".into(), 1e-3)]).unwrap();
        assert_eq!((r[HEAD_A], r[HEAD_B]), (HEAD_LR, 1e-3));
    }

    #[test]
    fn heads_overrides_reach_the_seed_heads_too() {
        let mut p = heads_only();
        let vs = p.new_store();
        let _ = nn::linear(vs.root() / "heads" / "paraphrase", 4, 2, Default::default());
        p.push("heads.paraphrase", vs);
        let r = learning_rates(&p, LrPreset::Uniform, None, &[("heads".into(), 1e-3)]).unwrap();
        assert_eq!((r[HEAD_A], r[HEAD_B], r["heads.paraphrase"]), (1e-3, 1e-3, 1e-3));
        let r = learning_rates(&p, LrPreset::Uniform, None, &[("heads.task_b".into(), 5e-4), ("heads.paraphrase".into(), 2e-4)]).unwrap();
        assert_eq!((r[HEAD_A], r[HEAD_B], r["heads.paraphrase"]), (HEAD_LR, 5e-4, 2e-4));
        let e = learning_rates(&p, LrPreset::Uniform, None, &[("heads.topic".into(), 1e-3)]).unwrap_err().to_string();
        assert!(e.contains("'heads.topic' matches no subset"), "{e}");
    }

    #[test]
    fn clipping_scales_the_global_norm_down_to_the_limit_and_leaves_smaller_ones_alone() {
        let a = Tensor::from_slice(&[3f32, 0.0]).set_requires_grad(true);
        let b = Tensor::from_slice(&[4f32]).set_requires_grad(true);
        let vars = [a.shallow_clone(), b.shallow_clone()];
        let grad_norm = |vars: &[Tensor]| {
            let sq: f64 = vars.iter().map(|v| f64::try_from(v.grad().square().sum(Kind::Double)).unwrap()).sum();
            sq.sqrt()
        };
        // loss = a·a/2 + b·b/2 has gradient (a, b): norm 5.
        let loss = || (a.square().sum(Kind::Float) + b.square().sum(Kind::Float)) * 0.5;
        loss().backward();
        let before = f64::try_from(clip_global_norm(&vars, 1.0).unwrap()).unwrap();
        assert!((before - 5.0).abs() < 1e-6);
        assert!((grad_norm(&vars) - 1.0).abs() < 1e-5, "norm after clipping {}", grad_norm(&vars));
        for v in &vars {
            let _ = v.grad().zero_();
        }
        loss().backward();
        let g_before: Vec<f32> = Vec::try_from(a.grad()).unwrap();
        let _ = clip_global_norm(&vars, 10.0).unwrap();
        assert_eq!(Vec::<f32>::try_from(a.grad()).unwrap(), g_before, "a norm under the limit must not change");
    }

    #[test]
    fn clipping_reports_a_non_finite_norm() {
        // sqrt at 0 has an infinite derivative: finite loss, infinite gradient norm.
        let w = Tensor::zeros([3], (Kind::Float, Device::Cpu)).set_requires_grad(true);
        w.sqrt().sum(Kind::Float).backward();
        let n = f64::try_from(clip_global_norm(&[w.shallow_clone()], 1.0).unwrap()).unwrap();
        assert!(n.is_infinite());
        let _ = w.grad().zero_();
        (w.sqrt() * 0.0).sum(Kind::Float).backward();
        let n = f64::try_from(clip_global_norm(&[w.shallow_clone()], 1.0).unwrap()).unwrap();
        assert!(n.is_nan());
    }

    /// One variable w = 1 with a zero loss gradient, rate 0.1, weight decay 0.5, one step.
    fn after_one_step(adamw: bool) -> f32 {
        let mut p = Params::new(Device::Cpu);
        let vs = p.new_store();
        let w = (vs.root() / HEAD_A).ones("w", &[3]);
        p.push(HEAD_A, vs);
        let rates = BTreeMap::from([(HEAD_A.to_string(), 0.1)]);
        let cfg = OptimConfig { adamw, weight_decay: 0.5, ..Default::default() };
        let mut opts = Optimizers::new(&p, &rates, cfg, 1).unwrap();
        opts.step(&(&w * 0.0).sum(Kind::Float), 0);
        f32::try_from(w.get(0)).unwrap()
    }

    /// Our Adam against libtorch's (through tch) on the same gradients: `(max |diff|, equal bitwise)`.
    fn ours_vs_libtorch(wd: f64, decoupled: bool) -> (f64, bool) {
        tch::manual_seed(3);
        let make = || {
            let vs = nn::VarStore::new(Device::Cpu);
            let l = nn::linear(vs.root() / "l", 16, 8, Default::default());
            (vs, l)
        };
        let (vs_a, la) = make();
        let (mut vs_b, lb) = make();
        vs_b.copy(&vs_a).unwrap();
        let mut ours = Adam::new(&vs_a, wd, decoupled).unwrap();
        let mut theirs = if decoupled { nn::AdamW { wd, ..Default::default() }.build(&vs_b, 1e-2).unwrap() } else { nn::Adam { wd, ..Default::default() }.build(&vs_b, 1e-2).unwrap() };
        for step in 0..20 {
            let x = Tensor::randn([4, 16], (Kind::Float, Device::Cpu));
            ours.zero_grad();
            la.forward(&x).pow_tensor_scalar(2).sum(Kind::Float).backward();
            ours.step(1e-2);
            theirs.zero_grad();
            lb.forward(&x).pow_tensor_scalar(2).sum(Kind::Float).backward();
            theirs.step();
            let _ = step;
        }
        let (a, b) = (la.ws.flatten(0, -1), lb.ws.flatten(0, -1));
        (f64::try_from((&a - &b).abs().max()).unwrap(), a.equal(&b) && la.bs.as_ref().unwrap().equal(lb.bs.as_ref().unwrap()))
    }

    #[test]
    fn our_adam_follows_libtorchs() {
        for (wd, decoupled) in [(0.0, false), (0.1, false), (0.1, true)] {
            let (diff, same) = ours_vs_libtorch(wd, decoupled);
            println!("wd {wd} decoupled {decoupled}: max diff {diff:e}, bitwise {same}");
            assert!(diff < 1e-6, "wd {wd} decoupled {decoupled}: {diff}");
        }
    }

    #[test]
    fn adamw_decays_weights_decoupled_from_the_adam_update() {
        // AdamW: w <- w * (1 - lr * wd) = 0.95; the zero gradient adds no Adam move.
        assert!((after_one_step(true) - 0.95).abs() < 1e-6, "{}", after_one_step(true));
        // Adam's L2 decay goes through the gradient (wd * w = 0.5), which Adam's first step
        // normalises to a move of about lr: w -> 0.9.
        assert!((after_one_step(false) - 0.9).abs() < 1e-5, "{}", after_one_step(false));
    }

    #[test]
    fn validation_names_the_field() {
        let c = OptimConfig { clip_norm: Some(0.0), ..Default::default() };
        assert!(c.validate().unwrap_err().to_string().starts_with("clip_norm 0"));
        let c = OptimConfig { weight_decay: f64::NAN, ..Default::default() };
        assert!(c.validate().unwrap_err().to_string().starts_with("weight_decay NaN"));
    }
}

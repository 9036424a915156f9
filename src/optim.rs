//! Task 3 and 4: freezing scenarios and per-subset learning rates.
//!
//! Every parameter subset (see [`crate::params`]) is frozen as a whole or trained by its own
//! `nn::Adam` (or AdamW) optimizer with its own rate. Warm-up and decay scale each subset's own
//! rate; clipping uses the global gradient norm over all trainable variables.

use crate::error::{invalid, Result};
use crate::params::{under_prefix, Params, EMBEDDINGS, HEAD_A, HEAD_B, LAYERS};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use tch::{nn, nn::OptimizerConfig, Tensor};

/// A named freezing scenario.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Freeze {
    /// Everything trains.
    None,
    /// Nothing trains: the feature-extractor baseline (evaluation only).
    All,
    /// Embeddings and all layers frozen: heads only.
    Encoder,
    /// Only the embeddings frozen.
    Embeddings,
    /// Embeddings plus the first K layers frozen.
    Layers(usize),
    /// Task A's head frozen.
    HeadA,
    /// Task B's head frozen.
    HeadB,
}

impl Freeze {
    /// The scenario names `--freeze` accepts.
    pub const NAMES: &'static str = "none, all, encoder, embeddings, layers:K, head-a, head-b";

    /// Parses a scenario name.
    pub fn parse(s: &str) -> Result<Freeze> {
        let s = s.trim().to_ascii_lowercase();
        Ok(match s.as_str() {
            "none" => Freeze::None,
            "all" => Freeze::All,
            "encoder" => Freeze::Encoder,
            "embeddings" => Freeze::Embeddings,
            "head-a" | "head_a" => Freeze::HeadA,
            "head-b" | "head_b" => Freeze::HeadB,
            other => match other.strip_prefix("layers:").map(str::parse::<usize>) {
                Some(Ok(k)) => Freeze::Layers(k),
                _ => return Err(invalid(format!("unknown freezing scenario '{s}': expected one of {}", Self::NAMES))),
            },
        })
    }

    /// The name as `--freeze` takes it.
    pub fn name(&self) -> String {
        match self {
            Freeze::None => "none".into(),
            Freeze::All => "all".into(),
            Freeze::Encoder => "encoder".into(),
            Freeze::Embeddings => "embeddings".into(),
            Freeze::Layers(k) => format!("layers:{k}"),
            Freeze::HeadA => "head-a".into(),
            Freeze::HeadB => "head-b".into(),
        }
    }

    /// The variable-name prefixes this scenario freezes, for a model with `n_layers` layers.
    pub fn prefixes(&self, n_layers: usize) -> Result<Vec<String>> {
        Ok(match *self {
            Freeze::None => vec![],
            Freeze::All => vec!["encoder".into(), HEAD_A.into(), HEAD_B.into()],
            Freeze::Encoder => vec!["encoder".into()],
            Freeze::Embeddings => vec![EMBEDDINGS.into()],
            Freeze::Layers(k) => {
                if k > n_layers {
                    return Err(invalid(format!("--freeze layers:{k}: the model has only {n_layers} layers")));
                }
                let mut v = vec![EMBEDDINGS.to_string()];
                v.extend((0..k).map(crate::params::layer_name));
                v
            }
            Freeze::HeadA => vec![HEAD_A.into()],
            Freeze::HeadB => vec![HEAD_B.into()],
        })
    }

    /// Freezes the scenario's variables in `params`; returns how many were frozen.
    pub fn apply(&self, params: &Params, n_layers: usize) -> Result<usize> {
        let mut n = 0;
        for p in self.prefixes(n_layers)? {
            n += params.freeze(&p)?;
        }
        Ok(n)
    }
}

/// Preset rate tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
pub enum LrPreset {
    /// Every subset 1e-4 (the seed's Task 3).
    Uniform,
    /// Embeddings 1e-6, encoder layers 1e-5, heads 1e-4 (the seed's Task 4).
    Layerwise,
}

/// The seed's head rate, also the uniform rate.
pub const HEAD_LR: f64 = 1e-4;
/// The seed's Task 4 rate for the encoder layers.
pub const LAYER_LR: f64 = 1e-5;
/// The seed's Task 4 rate for the embeddings.
pub const EMBEDDINGS_LR: f64 = 1e-6;

/// Parses `PREFIX=RATE`.
pub fn parse_lr_override(s: &str) -> Result<(String, f64)> {
    let (p, r) = s.split_once('=').ok_or_else(|| invalid(format!("--lr '{s}': expected PREFIX=RATE, e.g. encoder.encoder.layer=2e-5")))?;
    let rate: f64 = r.trim().parse().map_err(|_| invalid(format!("--lr '{s}': '{r}' is not a number")))?;
    if !rate.is_finite() || rate < 0.0 {
        return Err(invalid(format!("--lr '{s}': the rate must be finite and >= 0")));
    }
    Ok((p.trim().trim_end_matches('.').to_string(), rate))
}

/// The learning rate of every subset, from a preset, an optional per-layer decay and overrides
/// applied in order (later wins). Overrides address subsets by name prefix; one that matches no
/// subset is an error.
///
/// With `layer_decay` F and L layers, layer i (0-based) gets `head_rate * F^(L - i)` and the
/// embeddings `head_rate * F^(L + 1)`.
pub fn learning_rates(
    params: &Params,
    preset: LrPreset,
    layer_decay: Option<f64>,
    overrides: &[(String, f64)],
) -> Result<BTreeMap<String, f64>> {
    let n_layers = params.subsets().iter().filter(|s| under_prefix(&s.name, LAYERS)).count();
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
            return Err(invalid(format!("--layer-decay {f}: must be in (0, 1]")));
        }
        for (name, rate) in rates.iter_mut() {
            if let Some(i) = name.strip_prefix(&format!("{LAYERS}.")).and_then(|i| i.parse::<i32>().ok()) {
                *rate = HEAD_LR * f.powi(n_layers as i32 - i);
            } else if name == EMBEDDINGS {
                *rate = HEAD_LR * f.powi(n_layers as i32 + 1);
            }
        }
    }
    for (prefix, rate) in overrides {
        let hits: Vec<String> = params.matching(prefix).iter().map(|s| s.name.clone()).collect();
        if hits.is_empty() {
            let names: Vec<&str> = params.subsets().iter().map(|s| s.name.as_str()).collect();
            return Err(invalid(format!("--lr {prefix}={rate}: prefix matches no subset (subsets: {})", names.join(", "))));
        }
        for h in hits {
            rates.insert(h, *rate);
        }
    }
    Ok(rates)
}

/// Optimizer settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OptimConfig {
    /// Use AdamW (decoupled weight decay) instead of Adam.
    pub adamw: bool,
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

struct Bound {
    subset: String,
    rate: f64,
    opt: nn::Optimizer,
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
        let mut bound = Vec::new();
        for s in params.subsets().iter().filter(|s| s.is_trainable()) {
            let rate = *rates.get(&s.name).ok_or_else(|| invalid(format!("no learning rate for subset {}", s.name)))?;
            let opt = if cfg.adamw {
                nn::AdamW { wd: cfg.weight_decay, ..Default::default() }.build(&s.vs, rate)?
            } else {
                nn::Adam { wd: cfg.weight_decay, ..Default::default() }.build(&s.vs, rate)?
            };
            bound.push(Bound { subset: s.name.clone(), rate, opt });
        }
        let trainable = params.named_variables().into_iter().map(|(_, t)| t).filter(|t| t.requires_grad()).collect();
        Ok(Optimizers { bound, cfg, total_steps, trainable })
    }

    /// Whether anything trains.
    pub fn is_empty(&self) -> bool {
        self.bound.is_empty()
    }

    /// The subsets that have an optimizer, with their base rates.
    pub fn subsets(&self) -> Vec<(String, f64)> {
        self.bound.iter().map(|b| (b.subset.clone(), b.rate)).collect()
    }

    /// Schedule factor at `step` (0-based): linear warm-up, then optional linear decay.
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

    /// Backward pass and one step of every optimizer, each at its own scheduled rate.
    pub fn step(&mut self, loss: &Tensor, step: usize) {
        if self.bound.is_empty() {
            return;
        }
        let f = self.factor(step);
        for b in &mut self.bound {
            b.opt.zero_grad();
            b.opt.set_lr(b.rate * f);
        }
        loss.backward();
        if let Some(max) = self.cfg.clip_norm {
            clip_global_norm(&self.trainable, max);
        }
        for b in &mut self.bound {
            b.opt.step();
        }
    }
}

/// Scales all gradients so that their joint L2 norm is at most `max`.
fn clip_global_norm(vars: &[Tensor], max: f64) {
    tch::no_grad(|| {
        let grads: Vec<Tensor> = vars.iter().map(Tensor::grad).filter(Tensor::defined).collect();
        if grads.is_empty() {
            return;
        }
        let norms: Vec<Tensor> = grads.iter().map(|g| g.norm()).collect();
        let total = f64::try_from(Tensor::stack(&norms, 0).norm()).unwrap_or(f64::INFINITY);
        let coef = max / (total + 1e-6);
        if coef < 1.0 {
            for mut g in grads {
                let _ = g.g_mul_scalar_(coef);
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scenario_names_round_trip() {
        for name in ["none", "all", "encoder", "embeddings", "layers:3", "head-a", "head-b"] {
            assert_eq!(Freeze::parse(name).unwrap().name(), name);
        }
        assert!(Freeze::parse("heads").unwrap_err().to_string().contains("unknown freezing scenario"));
        assert!(Freeze::Layers(7).prefixes(6).is_err());
        assert_eq!(Freeze::Layers(2).prefixes(6).unwrap(), vec![EMBEDDINGS, "encoder.encoder.layer.0", "encoder.encoder.layer.1"]);
    }

    #[test]
    fn lr_overrides_parse() {
        assert_eq!(parse_lr_override("encoder.encoder.layer=2e-5").unwrap(), ("encoder.encoder.layer".into(), 2e-5));
        assert!(parse_lr_override("x").is_err());
        assert!(parse_lr_override("x=abc").is_err());
        assert!(parse_lr_override("x=-1").is_err());
    }
}

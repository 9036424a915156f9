//! [`Overrides`]: the training settings a configuration of a grid changes, applied to the
//! grid's base [`TrainConfig`]. Each is named as its `TrainConfig` field, and values with a
//! textual form are written as users type them on the command line (`freeze = "layers:3"`,
//! `lr_plan = "uniform"`, `sampling = "temperature:2"`).

use crate::batch::TaskSampling;
use crate::data::Task;
use crate::freeze::Freeze;
use crate::optim::LrPreset;
use crate::train::{LossWeighting, TrainConfig};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

/// The settings one configuration changes; `None` keeps the base's. Serialised (grid files,
/// `grid.json`, `results.json`, `search/*.json`) with only the settings it has.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Overrides {
    /// Freezing scenario: `none`, `all`, `encoder`, `embeddings`, `layers:K`, `head-a`, `head-b`.
    #[serde(default, skip_serializing_if = "Option::is_none", with = "text")]
    pub freeze: Option<Freeze>,
    /// Learning-rate preset: `uniform` or `layerwise`.
    #[serde(default, skip_serializing_if = "Option::is_none", with = "text")]
    pub lr_plan: Option<LrPreset>,
    /// One rate for every parameter subset (`mtt train --lr =RATE`). With `lr` or
    /// `lr_overrides` the base's overrides are replaced: `lr` first, then `lr_overrides`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lr: Option<f64>,
    /// Rates of the subsets under a name prefix, `["PREFIX=RATE", ...]`, later ones winning.
    #[serde(default, skip_serializing_if = "Option::is_none", with = "rate_list")]
    pub lr_overrides: Option<Vec<(String, f64)>>,
    /// Per-layer decay of the learning rates, in (0, 1]: the head rate times the decay to the
    /// power of the depth.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub layer_decay: Option<f64>,
    /// AdamW (decoupled weight decay) instead of Adam.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub adamw: Option<bool>,
    /// Weight decay factor (>= 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight_decay: Option<f64>,
    /// Linear warm-up, in optimizer steps (0 = none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warmup_steps: Option<usize>,
    /// Linear decay of the learning rates to 0 at the last step.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub linear_decay: Option<bool>,
    /// Global gradient-norm clip (> 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clip_norm: Option<f64>,
    /// Factor on Task A's loss (>= 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight_a: Option<f64>,
    /// Factor on Task B's loss (>= 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight_b: Option<f64>,
    /// `fixed` or `uncertainty`.
    #[serde(default, skip_serializing_if = "Option::is_none", with = "text")]
    pub loss_weighting: Option<LossWeighting>,
    /// Learning rate of uncertainty weighting's log-variances (> 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loss_weighting_lr: Option<f64>,
    /// Dropout on the pooled vector before the heads, in [0, 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub head_dropout: Option<f64>,
    /// `mean`, `max` or `cls`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pooling: Option<String>,
    /// Passes over the training data (>= 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub epochs: Option<usize>,
    /// Training rows per batch (>= 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch_size: Option<usize>,
    /// Rows per batch when evaluating (>= 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eval_batch_size: Option<usize>,
    /// Stop after this many optimizer steps in all (>= 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_steps: Option<usize>,
    /// Only the first N rows of each training file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<usize>,
    /// Early stopping: stop after this many epochs without a better mean dev accuracy (>= 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub patience: Option<usize>,
    /// `proportional`, `round-robin` or `temperature:T`.
    #[serde(default, skip_serializing_if = "Option::is_none", with = "text")]
    pub sampling: Option<TaskSampling>,
    /// Length-bucketed batches (rows of similar token length together) with proportional
    /// sampling.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bucketing: Option<bool>,
    /// Train the heads on cached pooled vectors when nothing in the encoder trains.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache: Option<bool>,
    /// `a` or `b`: train that task only.
    #[serde(default, skip_serializing_if = "Option::is_none", with = "task")]
    pub only_task: Option<Task>,
    /// Keep the checkpoint of the best dev epoch (mean dev accuracy) instead of the last.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub save_best: Option<bool>,
    /// The task set, by bundled data set: `trec6` (Task A), `sst5_3class` (Task B), `stsb` (the
    /// similarity task `sts`), `mrpc` (the pair-classification task `paraphrase`). Task A and B
    /// keep the grid's own files when listed and are dropped otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none", with = "task_set")]
    pub tasks: Option<Vec<String>>,
    /// Loss weights by task name (`task_a`, `task_b`, `sts`, `paraphrase`), each finite and at
    /// least 0: `task_weights = { sts = 10 }`. Set after `tasks`; a name must be one of the
    /// run's tasks (checked by [`Overrides::check_tasks`]).
    #[serde(default, skip_serializing_if = "Option::is_none", with = "weight_map")]
    pub task_weights: Option<BTreeMap<String, f64>>,
}

impl Overrides {
    /// Whether it changes nothing.
    pub fn is_empty(&self) -> bool {
        *self == Overrides::default()
    }

    /// Sets every setting this holds in `cfg`.
    pub fn apply(&self, cfg: &mut TrainConfig) {
        fn set<T: Clone>(field: &mut T, value: &Option<T>) {
            if let Some(v) = value {
                *field = v.clone();
            }
        }
        let (o, s) = (&mut cfg.optimizer, &mut cfg.schedule);
        set(&mut o.freeze, &self.freeze);
        set(&mut o.lr_plan, &self.lr_plan);
        if self.lr.is_some() || self.lr_overrides.is_some() {
            o.lr_overrides = self.lr.map(|r| (String::new(), r)).into_iter().chain(self.lr_overrides.iter().flatten().cloned()).collect();
        }
        if self.layer_decay.is_some() {
            o.layer_decay = self.layer_decay;
        }
        set(&mut o.optim.adamw, &self.adamw);
        set(&mut o.optim.weight_decay, &self.weight_decay);
        set(&mut o.optim.warmup_steps, &self.warmup_steps);
        set(&mut o.optim.linear_decay, &self.linear_decay);
        if self.clip_norm.is_some() {
            o.optim.clip_norm = self.clip_norm;
        }
        set(&mut o.weight_a, &self.weight_a);
        set(&mut o.weight_b, &self.weight_b);
        set(&mut o.loss_weighting, &self.loss_weighting);
        set(&mut o.loss_weighting_lr, &self.loss_weighting_lr);
        set(&mut s.epochs, &self.epochs);
        set(&mut s.batch_size, &self.batch_size);
        set(&mut s.eval_batch_size, &self.eval_batch_size);
        if self.max_steps.is_some() {
            s.max_steps = self.max_steps;
        }
        if self.patience.is_some() {
            s.patience = self.patience;
        }
        set(&mut s.sampling, &self.sampling);
        set(&mut s.bucketing, &self.bucketing);
        set(&mut s.cache, &self.cache);
        if self.limit.is_some() {
            cfg.data.limit = self.limit;
        }
        if self.only_task.is_some() {
            cfg.data.only_task = self.only_task;
        }
        if self.head_dropout.is_some() {
            cfg.head_dropout = self.head_dropout;
        }
        if self.pooling.is_some() {
            cfg.pooling = self.pooling.clone();
        }
        set(&mut cfg.output.save_best, &self.save_best);
        if let Some(ts) = &self.tasks {
            let has = |n: &str| ts.iter().any(|t| t == n);
            if !has("trec6") {
                (cfg.data.task_a, cfg.data.dev_a) = (None, None);
            }
            if !has("sst5_3class") {
                (cfg.data.task_b, cfg.data.dev_b, cfg.data.ood_b) = (None, None, None);
            }
            cfg.data.tasks = ts.iter().filter_map(|t| crate::task::bundled_task(t)).collect();
        }
        for (name, &w) in self.task_weights.iter().flatten() {
            match name.as_str() {
                crate::task::TASK_A => o.weight_a = w,
                crate::task::TASK_B => o.weight_b = w,
                _ => cfg.data.tasks.iter_mut().filter(|t| t.name == *name).for_each(|t| t.weight = w),
            }
        }
    }

    /// Checks that every task `task_weights` names is one `cfg` (this applied) trains.
    pub fn check_tasks(&self, cfg: &TrainConfig) -> crate::error::Result<()> {
        for name in self.task_weights.iter().flatten().map(|(n, _)| n.as_str()) {
            let trains = match name {
                crate::task::TASK_A => cfg.data.task_a.is_some() && cfg.data.only_task != Some(Task::B),
                crate::task::TASK_B => cfg.data.task_b.is_some() && cfg.data.only_task != Some(Task::A),
                _ => cfg.data.tasks.iter().any(|t| t.name == name),
            };
            if !trains {
                return Err(crate::error::invalid(format!("task_weights: '{name}' is not a task of this run")));
            }
        }
        Ok(())
    }

    /// These settings, then `later`'s over them: applying the result is applying `self` then
    /// `later` (`lr` and `lr_overrides` go together, as [`Overrides::apply`] sets them).
    pub fn then(&self, later: &Overrides) -> Overrides {
        // Through JSON objects, so that a new field cannot be forgotten here.
        let (mut a, b) = (to_object(self), to_object(later));
        if b.contains_key("lr") || b.contains_key("lr_overrides") {
            a.remove("lr");
            a.remove("lr_overrides");
        }
        a.extend(b);
        serde_json::from_value(serde_json::Value::Object(a)).expect("merged settings are settings")
    }
}

fn to_object(o: &Overrides) -> serde_json::Map<String, serde_json::Value> {
    match serde_json::to_value(o).expect("settings serialise") {
        serde_json::Value::Object(m) => m,
        _ => unreachable!("a struct serialises as an object"),
    }
}

/// `name=value` pairs in field order, separated by spaces (`lr_plan=uniform freeze=encoder`);
/// `lr_overrides=PREFIX=RATE,...`. Empty when nothing is set.
impl fmt::Display for Overrides {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts: Vec<String> = Vec::new();
        macro_rules! show {
            ($($field:ident),*) => {$(
                if let Some(v) = &self.$field {
                    parts.push(format!("{}={}", stringify!($field), v));
                }
            )*};
        }
        show!(freeze, lr_plan, lr);
        if let Some(v) = &self.lr_overrides {
            parts.push(format!("lr_overrides={}", v.iter().map(|(p, r)| format!("{p}={r}")).collect::<Vec<_>>().join(",")));
        }
        show!(layer_decay, adamw, weight_decay, warmup_steps, linear_decay, clip_norm, weight_a, weight_b, loss_weighting, loss_weighting_lr);
        show!(head_dropout, pooling, epochs, batch_size, eval_batch_size, max_steps, limit, patience, sampling, bucketing, cache);
        if let Some(t) = self.only_task {
            parts.push(format!("only_task={}", task::name(t)));
        }
        show!(save_best);
        if let Some(t) = &self.tasks {
            parts.push(format!("tasks={}", t.join("+")));
        }
        if let Some(w) = &self.task_weights {
            parts.push(format!("task_weights={}", w.iter().map(|(n, w)| format!("{n}={w}")).collect::<Vec<_>>().join(",")));
        }
        f.write_str(&parts.join(" "))
    }
}

/// Serde for `Option<T>` through `T`'s `FromStr` and `Display`: the names users type.
mod text {
    use serde::{de::Error as _, Deserialize, Deserializer, Serializer};
    use std::fmt::Display;
    use std::str::FromStr;

    pub fn serialize<T: Display, S: Serializer>(v: &Option<T>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(v) => s.collect_str(v),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, T, D>(d: D) -> Result<Option<T>, D::Error>
    where
        T: FromStr,
        T::Err: Display,
        D: Deserializer<'de>,
    {
        Option::<String>::deserialize(d)?.map(|s| s.parse().map_err(D::Error::custom)).transpose()
    }
}

/// Serde for rate overrides as `"PREFIX=RATE"` strings (`mtt train --lr`'s form).
mod rate_list {
    use crate::optim::parse_lr_override;
    use serde::{de::Error as _, Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &Option<Vec<(String, f64)>>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(v) => s.collect_seq(v.iter().map(|(p, r)| format!("{p}={r}"))),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<(String, f64)>>, D::Error> {
        let Some(v) = Option::<Vec<String>>::deserialize(d)? else { return Ok(None) };
        v.iter().map(|s| parse_lr_override(s).map_err(D::Error::custom)).collect::<Result<Vec<_>, _>>().map(Some)
    }
}

/// Serde for `only_task`: `a` or `b`, as `mtt train --only-task` takes it.
mod task {
    use crate::data::Task;
    use serde::{de::Error as _, Deserialize, Deserializer, Serializer};

    pub fn name(t: Task) -> &'static str {
        match t {
            Task::A => "a",
            Task::B => "b",
        }
    }

    pub fn serialize<S: Serializer>(v: &Option<Task>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(t) => s.serialize_str(name(*t)),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Task>, D::Error> {
        match Option::<String>::deserialize(d)?.as_deref() {
            None => Ok(None),
            Some("a") => Ok(Some(Task::A)),
            Some("b") => Ok(Some(Task::B)),
            Some(other) => Err(D::Error::custom(format!("only_task '{other}': expected a or b"))),
        }
    }
}

/// Serde for `tasks`: a list of bundled data set names, each checked.
mod task_set {
    use crate::data::bundled::SETS;
    use serde::{de::Error as _, Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &Option<Vec<String>>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(v) => s.collect_seq(v),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<String>>, D::Error> {
        let Some(v) = Option::<Vec<String>>::deserialize(d)? else { return Ok(None) };
        if v.is_empty() {
            return Err(D::Error::custom("tasks: list at least one of ".to_string() + &SETS.join(", ")));
        }
        for (i, t) in v.iter().enumerate() {
            if !SETS.contains(&t.as_str()) {
                return Err(D::Error::custom(format!("tasks: '{t}' is not a bundled data set (expected {})", SETS.join(", "))));
            }
            if v[..i].contains(t) {
                return Err(D::Error::custom(format!("tasks: '{t}' is listed twice")));
            }
        }
        Ok(Some(v))
    }
}

/// Serde for `task_weights`: a table of task names to weights, each checked.
mod weight_map {
    use serde::{de::Error as _, Deserialize, Deserializer, Serialize, Serializer};
    use std::collections::BTreeMap;

    pub fn serialize<S: Serializer>(v: &Option<BTreeMap<String, f64>>, s: S) -> Result<S::Ok, S::Error> {
        v.serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<BTreeMap<String, f64>>, D::Error> {
        let Some(v) = Option::<BTreeMap<String, f64>>::deserialize(d)? else { return Ok(None) };
        if v.is_empty() {
            return Err(D::Error::custom("task_weights: name at least one task (`{ sts = 10 }`)"));
        }
        for (name, w) in &v {
            if !(w.is_finite() && *w >= 0.0) {
                return Err(D::Error::custom(format!("task_weights: {name} = {w} must be finite and >= 0")));
            }
        }
        Ok(Some(v))
    }
}

//! Owns `mtt experiment`: grids of training configurations (built-in `default` and `extended`,
//! or a TOML/JSON file), running each over several seeds on the same data, the dev-only searches
//! behind the `tuned` and `heads-only:tuned` recipes, resuming, and the results page
//! (`results.json`, `results.csv`, `results.md`, PNG plots).
//!
//! Experiments are data. A configuration ([`Entry`]) is a name plus the training settings it
//! changes ([`Overrides`], named as the [`TrainConfig`] fields), applied to the grid's base
//! `TrainConfig` (data files, epochs, limit, device... from the command line); a search adds the
//! settings it chose. A run's folder gets `result.json` when it finishes, recording the
//! configuration it trained with; a later invocation skips a run whose recorded configuration
//! resolves to the same [`run_key`] (so reordered or equivalent settings do not rerun) unless
//! `force`.
//!
//! - `grid`: the built-in grids and grid files;
//! - `overrides`: [`Overrides`], its file form and how it applies to a `TrainConfig`;
//! - `search`: the two searches;
//! - `report`: summarising seeds into rows, and the results page.

mod grid;
mod overrides;
mod report;
mod search;
#[cfg(test)]
mod tests;

pub use grid::{builtin_grid, read_grid, FromArgs};
pub use overrides::Overrides;
pub use report::{loss_curve, results_csv, summarise, write_results, EpochPoint, GridResults, LossPoint, Row, Stat};
pub use search::{SearchRecord, Trial};

use crate::error::{invalid, Error, Result};
use crate::fsutil::write_atomic;
use crate::metrics::TaskMetrics;
use crate::train::{fmt_duration, train, Progress, RunMetrics, TrainConfig};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// A search the runner performs to pick a recipe's settings on dev data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Search {
    /// Everything trainable, warm-up and linear decay: rate, batch size, then epochs.
    Tuned,
    /// Encoder frozen (and cached): head rate and epochs.
    HeadsOnly,
}

/// One configuration of a grid. Serialised (in `grid.json`) as a grid file's entry: `name`,
/// `search`, then the settings' keys.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Entry {
    /// The configuration's name: its row in the results and (as a [`slug`]) its runs' folder.
    pub name: String,
    /// Pick further settings by a search first (`tuned` or `heads-only`); the entry's own
    /// settings come first, the search's over them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub search: Option<Search>,
    /// What the configuration changes in the base.
    #[serde(flatten)]
    pub set: Overrides,
}

/// Settings of a grid run.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The grid's name (`default`, `extended`, or the grid file's path as given), recorded in
    /// `results.json`.
    pub grid_name: String,
    /// The configurations, run and reported in this order.
    pub entries: Vec<Entry>,
    /// Runs per configuration, seeded 0, 1, ..., `seeds - 1`.
    pub seeds: usize,
    /// What every run starts from: data files, epochs, limit, device, cache folder... Its
    /// `seed`, `out` and `save_weights` are set per run.
    pub base: TrainConfig,
    /// The results folder: the results page, and each run in `runs/NAME/seed-N/`.
    pub out: PathBuf,
    /// Run again even where a stored result has the same configuration.
    pub force: bool,
    /// Write each run's weights into its folder (otherwise only its config and metrics).
    pub keep_weights: bool,
    /// Small searches (for smoke runs).
    pub quick: bool,
}

/// One finished run, as saved in its folder's `result.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunResult {
    /// The configuration's name ([`Entry::name`]).
    pub name: String,
    /// The run's training seed (0-based, one of the plan's `seeds`).
    pub seed: u64,
    /// The configuration the run trained with. `None` in a `result.json` written before it was
    /// recorded (it had the `mtt train` options instead): the run folder's `config.json`
    /// stands in.
    #[serde(default)]
    pub config: Option<TrainConfig>,
    /// Dev metrics of the kept epoch per task (`task_a`, `task_b`) and the out-of-domain set.
    pub dev: BTreeMap<String, TaskMetrics>,
    /// Out-of-domain metrics of the kept epoch (`task_b` on the `ood_b` file; empty without
    /// one).
    pub ood: BTreeMap<String, TaskMetrics>,
    /// Tasks the run trained (a single-task run reports only its own).
    pub trained_tasks: Vec<String>,
    /// Parameters that received updates (scalars; 0 when nothing trained).
    pub trainable_params: usize,
    /// Wall-clock seconds of the whole run: loading, caching, training, evaluation, saving.
    pub wall_seconds: f64,
    /// Seconds spent in training loops, summed over the epochs (evaluation not included).
    pub train_seconds: f64,
    /// Training rows per second over all epochs (0 when nothing trained).
    pub sentences_per_s: f64,
    /// Seconds spent computing (or loading) a frozen encoder's cached vectors (0 without a cache).
    pub cache_seconds: f64,
    /// Training epochs completed (fewer than planned after early stopping or a step limit; 0
    /// when nothing trained).
    pub epochs_run: usize,
    /// Dev metrics of the similarity tasks it trained (Spearman, Pearson), keyed by task.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub dev_similarity: BTreeMap<String, crate::metrics::SimilarityMetrics>,
    /// The encoder's own embeddings on STS-B dev after the run (zero-shot), when scored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sts: Option<crate::metrics::SimilarityMetrics>,
}

/// The [`TrainConfig`] fields that never change a run's result: where it writes (`out`,
/// `save_weights`, `resume_state`), where frozen-encoder vectors are cached (`cache_dir`) and the
/// device (so a results folder can be moved, and a grid resumed on another machine).
pub const IGNORED_FIELDS: [&str; 5] = ["out", "save_weights", "resume_state", "cache_dir", "device"];

/// What identifies a run's result: its configuration as serialised (flat, by field name) without
/// [`IGNORED_FIELDS`]. Two configurations with equal keys train the same run.
pub fn run_key(cfg: &TrainConfig) -> serde_json::Value {
    let mut v = serde_json::to_value(cfg).expect("a configuration serialises");
    if let Some(m) = v.as_object_mut() {
        for k in IGNORED_FIELDS {
            m.remove(k);
        }
    }
    v
}

/// The fields whose values differ between two run keys, as `name: old → new`.
fn key_changes(old: &serde_json::Value, new: &serde_json::Value) -> Vec<String> {
    let (Some(a), Some(b)) = (old.as_object(), new.as_object()) else { return vec!["the whole configuration".into()] };
    let null = serde_json::Value::Null;
    let mut keys: Vec<&String> = a.keys().chain(b.keys()).collect();
    keys.sort();
    keys.dedup();
    keys.into_iter()
        .filter_map(|k| {
            let (x, y) = (a.get(k).unwrap_or(&null), b.get(k).unwrap_or(&null));
            (x != y).then(|| format!("{k}: {x} → {y}"))
        })
        .collect()
}

/// Folder-safe form of a configuration name (`freeze:layers:3` → `freeze-layers-3`).
pub fn slug(name: &str) -> String {
    let mut s = String::with_capacity(name.len());
    for c in name.chars() {
        let c = if c.is_ascii_alphanumeric() || c == '.' || c == '_' { c } else { '-' };
        if !(c == '-' && s.ends_with('-')) {
            s.push(c);
        }
    }
    s.trim_matches('-').to_string()
}

fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Option<T> {
    std::fs::read(path).ok().and_then(|b| serde_json::from_slice(&b).ok())
}

fn write_json<T: Serialize>(path: &Path, v: &T) -> Result<()> {
    write_atomic(path, &serde_json::to_vec_pretty(v).expect("results serialise"))
}

/// A run folder's stored result, its metrics and the configuration it trained with (from
/// `result.json`, or for an older one from `config.json`'s `training` record).
fn stored_run(dir: &Path) -> Option<(RunResult, RunMetrics, TrainConfig)> {
    let r: RunResult = read_json(&dir.join("result.json"))?;
    let m: RunMetrics = read_json(&dir.join("metrics.json"))?;
    let cfg = match &r.config {
        Some(c) => c.clone(),
        None => {
            let v: serde_json::Value = read_json(&dir.join("config.json"))?;
            serde_json::from_value(v.get("training")?.clone()).ok()?
        }
    };
    Some((r, m, cfg))
}

/// Mean dev accuracy over the tasks an epoch record has.
fn mean_accuracy(dev: &BTreeMap<String, TaskMetrics>) -> f64 {
    if dev.is_empty() {
        return f64::NAN;
    }
    dev.values().map(|m| m.accuracy).sum::<f64>() / dev.len() as f64
}

/// Runs the grid, reporting through `log`, and writes the results page into `plan.out`.
pub struct Runner<'a> {
    plan: &'a Plan,
    progress: Progress,
    /// Seconds of the runs done in this invocation, for the ETA.
    timings: Vec<f64>,
    total_runs: usize,
    done_runs: usize,
}

impl<'a> Runner<'a> {
    /// A runner of `plan`'s configurations and seeds, each run showing its progress as
    /// `progress`; nothing runs before [`Runner::run`].
    pub fn new(plan: &'a Plan, progress: Progress) -> Self {
        let total_runs = plan.entries.len() * plan.seeds;
        Runner { plan, progress, timings: vec![], total_runs, done_runs: 0 }
    }

    /// The configuration of one run: the base, then each of `sets` in order, then the run's
    /// seed and folder; checked.
    pub fn config(&self, sets: &[&Overrides], seed: u64, dir: &Path) -> Result<TrainConfig> {
        let mut cfg = self.plan.base.clone();
        for s in sets {
            s.apply(&mut cfg);
        }
        cfg.schedule.seed = seed;
        cfg.output.out = dir.to_path_buf();
        cfg.output.save_weights = self.plan.keep_weights;
        // The runner resumes whole runs (a stored result.json); per-epoch resume states of a
        // few hundred MB each would only be written and deleted.
        cfg.output.resume_state = false;
        cfg.validate()?;
        for s in sets {
            s.check_tasks(&cfg)?;
        }
        Ok(cfg)
    }

    /// Checks every configuration's settings before anything trains.
    pub fn check(&self) -> Result<()> {
        for e in &self.plan.entries {
            self.config(&[&e.set], 0, &self.plan.out.join("check")).map_err(|err| invalid(format!("configuration '{}': {err}", e.name)))?;
        }
        Ok(())
    }

    /// Trains `cfg` (a run of configuration `name`) into its folder, or returns the result
    /// stored there when it was trained with the same [`run_key`]; the weights are written only
    /// when they are to be kept. The third value says whether the result was stored.
    fn run_one(&mut self, name: &str, cfg: &TrainConfig, log: &mut dyn FnMut(&str)) -> Result<(RunResult, RunMetrics, bool)> {
        let dir = cfg.output.out.as_path();
        let seed = cfg.schedule.seed;
        if !self.plan.force {
            if let Some((r, m, stored)) = stored_run(dir) {
                let (old, new) = (run_key(&stored), run_key(cfg));
                if old == new {
                    return Ok((r, m, true));
                }
                log(&format!("  {name} seed {seed}: settings changed since the stored result ({}); running again", key_changes(&old, &new).join(", ")));
            }
        }
        if dir.exists() {
            std::fs::remove_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        }
        let t0 = Instant::now();
        let outcome = train(cfg, self.progress, &mut |l: &str| log(&format!("    {l}")))?;
        let m = outcome.metrics;
        let kept = m.saved_epoch.and_then(|e| m.epochs.iter().find(|r| r.epoch == e)).or(m.epochs.last());
        let (dev, ood, dev_similarity) = kept.map(|r| (r.dev.clone(), r.ood.clone(), r.dev_similarity.clone())).unwrap_or_default();
        let trained_tasks = match cfg.data.only_task {
            Some(t) => vec![t.key().to_string()],
            None => m.tasks.clone(),
        };
        let train_seconds: f64 = m.epochs.iter().map(|e| e.seconds).sum();
        let rows_seen: f64 = m.epochs.iter().map(|e| e.sentences_per_s * e.seconds).sum();
        let result = RunResult {
            name: name.into(),
            seed,
            config: Some(cfg.clone()),
            dev,
            ood,
            trained_tasks,
            trainable_params: m.trainable_params,
            wall_seconds: t0.elapsed().as_secs_f64(),
            train_seconds,
            sentences_per_s: if train_seconds > 0.0 { rows_seen / train_seconds } else { 0.0 },
            cache_seconds: m.cache_seconds,
            epochs_run: m.epochs.iter().filter(|e| e.epoch > 0).count(),
            dev_similarity,
            sts: m.sts,
        };
        write_json(&dir.join("result.json"), &result)?;
        self.timings.push(result.wall_seconds);
        Ok((result, m, false))
    }

    fn eta(&self) -> String {
        if self.timings.is_empty() {
            return "unknown".into();
        }
        let mean = self.timings.iter().sum::<f64>() / self.timings.len() as f64;
        fmt_duration(mean * (self.total_runs - self.done_runs) as f64)
    }

    fn results(&self, rows: &[Row], searches: &BTreeMap<String, SearchRecord>) -> GridResults {
        let mut base = self.plan.base.clone();
        base.output.out = self.plan.out.clone();
        GridResults { grid: self.plan.grid_name.clone(), seeds: self.plan.seeds, base, rows: rows.to_vec(), searches: searches.clone() }
    }

    /// Runs every configuration and seed, then writes the results page.
    pub fn run(&mut self, log: &mut dyn FnMut(&str)) -> Result<GridResults> {
        self.check()?;
        std::fs::create_dir_all(&self.plan.out).map_err(|e| Error::io(&self.plan.out, e))?;
        let mut rows = Vec::new();
        let mut searches = BTreeMap::new();
        for e in self.plan.entries.clone() {
            let mut set = e.set.clone();
            if let Some(kind) = e.search {
                let rec = self.search(&e, kind, log)?;
                set = set.then(&rec.chosen);
                searches.insert(e.name.clone(), rec);
            }
            let mut results = Vec::new();
            let mut metrics = Vec::new();
            for seed in 0..self.plan.seeds as u64 {
                let dir = self.plan.out.join("runs").join(slug(&e.name)).join(format!("seed-{seed}"));
                let cfg = self.config(&[&set], seed, &dir)?;
                let (r, m, stored) = self.run_one(&e.name, &cfg, log)?;
                self.done_runs += 1;
                let acc = |k: &str| r.dev.get(k).map_or("–".to_string(), |m| format!("{:.4}", m.accuracy));
                let sts = r.sts.map_or(String::new(), |s| format!(", STS-B {:.4}", s.spearman));
                log(&format!(
                    "[{}/{}] {} seed {seed}: dev A {}, B {}{sts} ({}{}), grid ETA {}",
                    self.done_runs,
                    self.total_runs,
                    e.name,
                    acc("task_a"),
                    acc("task_b"),
                    fmt_duration(r.wall_seconds),
                    if stored { ", stored" } else { "" },
                    self.eta()
                ));
                results.push(r);
                metrics.push(m);
            }
            rows.push(summarise(&e.name, &set, &results, &metrics));
            // The page so far, after each configuration: a long grid shows its results as it goes.
            write_results(&self.plan.out, &self.results(&rows, &searches))?;
        }
        Ok(self.results(&rows, &searches))
    }
}

//! Owns `mtt experiment`: grids of training configurations (built-in `default` and `extended`,
//! or a TOML/JSON file), running each over several seeds on the same data, the dev-only searches
//! behind the `tuned` and `heads-only:tuned` recipes, resuming, and the results page
//! (`results.json`, `results.csv`, `results.md`, PNG plots).
//!
//! A configuration is a name plus `mtt train` options. The command line turns option lists into
//! [`TrainConfig`]s (this module sees only the [`MakeConfig`] it is given), so a grid file takes
//! exactly the options `mtt train` documents. A run's folder gets `result.json` when it finishes;
//! a run whose `result.json` records the same options is skipped unless `force`.

use crate::error::{invalid, Error, Result};
use crate::fsutil::write_atomic;
use crate::metrics::TaskMetrics;
use crate::plot::{self, BarGroup, Series};
use crate::train::{fmt_duration, train, Progress, RunMetrics, TrainConfig};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Turns a list of `mtt train` options into a training configuration.
pub type MakeConfig<'a> = dyn Fn(&[String]) -> Result<TrainConfig> + 'a;

/// A search the runner performs to pick a recipe's settings on dev data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Search {
    /// Everything trainable, warm-up and linear decay: rate, batch size, then epochs.
    Tuned,
    /// Encoder frozen (and cached): head rate and epochs.
    HeadsOnly,
}

/// One configuration of a grid.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    pub name: String,
    /// `mtt train` options (after the runner's own data, epochs and seed options, so they win).
    #[serde(default)]
    pub args: Vec<String>,
    /// Pick further options by a search first (`tuned` or `heads-only`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub search: Option<Search>,
}

fn entry(name: &str, args: &str) -> Entry {
    Entry { name: name.into(), args: args.split_whitespace().map(String::from).collect(), search: None }
}

fn searched(name: &str, search: Search) -> Entry {
    Entry { name: name.into(), args: vec![], search: Some(search) }
}

/// The built-in grids: `default` (the seed's questions and the tuned recipes) and `extended`
/// (plus task sampling, loss weighting, single-task models and pooling).
pub fn builtin_grid(name: &str) -> Option<Vec<Entry>> {
    let default = vec![
        entry("uniform", "--lr-plan uniform"),
        entry("layerwise", "--lr-plan layerwise"),
        entry("freeze:encoder", "--lr-plan uniform --freeze encoder"),
        entry("freeze:all", "--freeze all"),
        entry("freeze:head-a", "--lr-plan uniform --freeze head-a"),
        entry("freeze:head-b", "--lr-plan uniform --freeze head-b"),
        entry("freeze:layers:3", "--lr-plan uniform --freeze layers:3"),
        entry("layer-decay:0.8", "--lr-plan uniform --layer-decay 0.8"),
        searched("tuned", Search::Tuned),
        searched("heads-only:tuned", Search::HeadsOnly),
    ];
    match name {
        "default" => Some(default),
        "extended" => {
            let mut g = default;
            g.extend([
                entry("sampling:round-robin", "--lr-plan uniform --task-sampling round-robin"),
                entry("sampling:temperature:2", "--lr-plan uniform --task-temperature 2"),
                entry("loss:uncertainty", "--lr-plan uniform --loss-weighting uncertainty"),
                entry("single-task:a", "--lr-plan uniform --only-task a"),
                entry("single-task:b", "--lr-plan uniform --only-task b"),
                entry("pooling:max", "--lr-plan uniform --pooling max"),
                entry("pooling:cls", "--lr-plan uniform --pooling cls"),
            ]);
            Some(g)
        }
        _ => None,
    }
}

/// A grid file: `[[config]]` tables (TOML) or `{"config": [...]}` (JSON), each with `name` and
/// `args` (a list, or one string split on whitespace) or `search = "tuned" | "heads-only"`.
pub fn read_grid(path: &Path) -> Result<Vec<Entry>> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct RawEntry {
        name: String,
        #[serde(default)]
        args: Option<RawArgs>,
        #[serde(default)]
        search: Option<Search>,
    }
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum RawArgs {
        List(Vec<String>),
        Line(String),
    }
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct RawGrid {
        config: Vec<RawEntry>,
    }
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    let json = path.extension().is_some_and(|e| e.eq_ignore_ascii_case("json"));
    let raw: RawGrid = if json {
        serde_json::from_str(&text).map_err(|e| Error::data(path, e.line(), format!("not a grid file: {e}")))?
    } else {
        toml::from_str(&text).map_err(|e| {
            let line = e.span().map_or(0, |s| text[..s.start].matches('\n').count() + 1);
            Error::data(path, line, format!("not a grid file: {}", e.message()))
        })?
    };
    let mut out = Vec::new();
    for (i, r) in raw.config.into_iter().enumerate() {
        let args = match r.args {
            Some(RawArgs::List(v)) => v,
            Some(RawArgs::Line(s)) => s.split_whitespace().map(String::from).collect(),
            None => vec![],
        };
        if r.name.trim().is_empty() {
            return Err(Error::config(path, format!("configuration {} has an empty name", i + 1)));
        }
        if out.iter().any(|e: &Entry| e.name == r.name) {
            return Err(Error::config(path, format!("configuration '{}' appears twice", r.name)));
        }
        out.push(Entry { name: r.name, args, search: r.search });
    }
    if out.is_empty() {
        return Err(Error::config(path, "the grid lists no configuration"));
    }
    Ok(out)
}

/// Settings of a grid run.
#[derive(Debug, Clone)]
pub struct Plan {
    pub grid_name: String,
    pub entries: Vec<Entry>,
    pub seeds: usize,
    /// Options every run gets first: data files, epochs, limit, device...
    pub base_args: Vec<String>,
    pub out: PathBuf,
    pub force: bool,
    pub keep_weights: bool,
    /// Small searches (for smoke runs).
    pub quick: bool,
}

/// Mean and standard deviation (sample, n-1; 0 for one value) of the finite values; NaN if none.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
pub struct Stat {
    pub mean: f64,
    pub std: f64,
    pub n: usize,
}

impl Stat {
    pub fn of(values: &[f64]) -> Stat {
        let v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
        let n = v.len();
        if n == 0 {
            return Stat { mean: f64::NAN, std: f64::NAN, n: 0 };
        }
        let mean = v.iter().sum::<f64>() / n as f64;
        let std = if n > 1 { (v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1) as f64).sqrt() } else { 0.0 };
        Stat { mean, std, n }
    }

    fn cell(&self, digits: usize) -> String {
        if self.n == 0 {
            "–".into()
        } else {
            format!("{:.digits$} ± {:.digits$}", self.mean, self.std)
        }
    }
}

/// One finished run, as saved in its folder's `result.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunResult {
    pub name: String,
    pub seed: u64,
    /// The options the run was made from (base, then the configuration's).
    pub args: Vec<String>,
    /// Dev metrics of the kept epoch per task (`task_a`, `task_b`) and the out-of-domain set.
    pub dev: BTreeMap<String, TaskMetrics>,
    pub ood: BTreeMap<String, TaskMetrics>,
    /// Tasks the run trained (a single-task run reports only its own).
    pub trained_tasks: Vec<String>,
    pub trainable_params: usize,
    pub wall_seconds: f64,
    pub train_seconds: f64,
    pub sentences_per_s: f64,
    pub cache_seconds: f64,
    pub epochs_run: usize,
}

/// A configuration's row of the results table.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Row {
    pub name: String,
    pub args: Vec<String>,
    pub seeds: Vec<u64>,
    pub a_accuracy: Stat,
    pub a_macro_f1: Stat,
    pub b_accuracy: Stat,
    pub b_macro_f1: Stat,
    pub ood_b_accuracy: Stat,
    pub ood_b_macro_f1: Stat,
    pub trainable_params: usize,
    pub wall_seconds: Stat,
    pub train_sentences_per_s: Stat,
    pub epochs: usize,
    /// Mean over seeds per epoch: (epoch, loss A, loss B, dev accuracy A, dev accuracy B).
    pub per_epoch: Vec<[f64; 5]>,
    /// Mean over seeds of the per-task training loss in tenths of an epoch: (x in epochs, A, B).
    pub loss_curve: Vec<[f64; 3]>,
}

/// `results.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GridResults {
    pub grid: String,
    pub seeds: usize,
    pub base_args: Vec<String>,
    pub rows: Vec<Row>,
    /// Each search: its trials and winner.
    pub searches: BTreeMap<String, SearchRecord>,
}

/// One trial of a search.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Trial {
    pub args: Vec<String>,
    /// Mean dev accuracy over the tasks, per epoch.
    pub dev_by_epoch: Vec<f64>,
    pub dev_a: f64,
    pub dev_b: f64,
    pub score: f64,
    pub wall_seconds: f64,
}

/// What a search tried and chose (`search/<name>.json`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SearchRecord {
    pub name: String,
    pub procedure: String,
    pub trials: Vec<Trial>,
    /// The options the recipe runs with.
    pub chosen: Vec<String>,
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

/// Mean dev accuracy over the tasks an epoch record has.
fn mean_accuracy(dev: &BTreeMap<String, TaskMetrics>) -> f64 {
    if dev.is_empty() {
        return f64::NAN;
    }
    dev.values().map(|m| m.accuracy).sum::<f64>() / dev.len() as f64
}

/// Whether two runs' options are the same but for where the frozen-encoder cache lives (which
/// never changes a result), so a results folder can be moved and still resumed.
fn same_options(a: &[String], b: &[String]) -> bool {
    let strip = |v: &[String]| -> Vec<String> {
        let mut out = Vec::with_capacity(v.len());
        let mut it = v.iter();
        while let Some(x) = it.next() {
            if x == "--cache-dir" {
                it.next();
            } else {
                out.push(x.clone());
            }
        }
        out
    };
    strip(a) == strip(b)
}

/// Runs the grid, reporting through `log`, and writes the results page into `plan.out`.
pub struct Runner<'a> {
    plan: &'a Plan,
    make: &'a MakeConfig<'a>,
    progress: Progress,
    /// Seconds of the runs done in this invocation, for the ETA.
    timings: Vec<f64>,
    total_runs: usize,
    done_runs: usize,
}

impl<'a> Runner<'a> {
    pub fn new(plan: &'a Plan, make: &'a MakeConfig<'a>, progress: Progress) -> Self {
        let total_runs = plan.entries.len() * plan.seeds;
        Runner { plan, make, progress, timings: vec![], total_runs, done_runs: 0 }
    }

    /// Checks every configuration's options before anything trains.
    pub fn check(&self) -> Result<()> {
        for e in &self.plan.entries {
            let mut args = self.plan.base_args.clone();
            args.extend(e.args.iter().cloned());
            args.extend(["--out".into(), "check".into()]);
            (self.make)(&args).map_err(|err| invalid(format!("configuration '{}': {err}", e.name)))?;
        }
        Ok(())
    }

    /// Trains one run into `dir` (or returns its stored result); the weights are written only
    /// when they are to be kept.
    /// The third value says whether the result was stored from an earlier invocation.
    fn run_one(&mut self, name: &str, seed: u64, args: &[String], dir: &Path, log: &mut dyn FnMut(&str)) -> Result<(RunResult, RunMetrics, bool)> {
        let result_file = dir.join("result.json");
        if !self.plan.force {
            if let (Some(r), Some(m)) = (read_json::<RunResult>(&result_file), read_json::<RunMetrics>(&dir.join("metrics.json"))) {
                if same_options(&r.args, args) {
                    return Ok((r, m, true));
                }
                log(&format!("  {name} seed {seed}: options changed since the stored result; running again"));
            }
        }
        if dir.exists() {
            std::fs::remove_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        }
        let mut full = args.to_vec();
        full.extend(["--out".into(), dir.display().to_string()]);
        let mut cfg = (self.make)(&full)?;
        cfg.save_weights = self.plan.keep_weights;
        let t0 = Instant::now();
        let outcome = train(&cfg, self.progress, &mut |l: &str| log(&format!("    {l}")))?;
        let m = outcome.metrics;
        let kept = m.saved_epoch.and_then(|e| m.epochs.iter().find(|r| r.epoch == e)).or(m.epochs.last());
        let (dev, ood) = kept.map(|r| (r.dev.clone(), r.ood.clone())).unwrap_or_default();
        let trained_tasks = match cfg.only_task {
            Some(t) => vec![t.key().to_string()],
            None => vec!["task_a".into(), "task_b".into()],
        };
        let train_seconds: f64 = m.epochs.iter().map(|e| e.seconds).sum();
        let rows_seen: f64 = m.epochs.iter().map(|e| e.sentences_per_s * e.seconds).sum();
        let result = RunResult {
            name: name.into(),
            seed,
            args: args.to_vec(),
            dev,
            ood,
            trained_tasks,
            trainable_params: m.trainable_params,
            wall_seconds: t0.elapsed().as_secs_f64(),
            train_seconds,
            sentences_per_s: if train_seconds > 0.0 { rows_seen / train_seconds } else { 0.0 },
            cache_seconds: m.cache_seconds,
            epochs_run: m.epochs.iter().filter(|e| e.epoch > 0).count(),
        };
        write_json(&result_file, &result)?;
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

    /// Runs a search's trials (each a seed-0 run under `search/<name>/`) and returns its record.
    fn search(&mut self, e: &Entry, kind: Search, log: &mut dyn FnMut(&str)) -> Result<SearchRecord> {
        let dir = self.plan.out.join("search").join(slug(&e.name));
        let mut trials = Vec::new();
        let trial = |me: &mut Self, args: Vec<String>, log: &mut dyn FnMut(&str)| -> Result<Trial> {
            let mut full = me.plan.base_args.clone();
            full.extend(e.args.iter().cloned());
            full.extend(args.iter().cloned());
            let tdir = dir.join(format!("trial-{}", slug(&args.join("_"))));
            log(&format!("  search {}: trial {}", e.name, args.join(" ")));
            let (r, m, _) = me.run_one(&e.name, 0, &full, &tdir, log)?;
            let dev_by_epoch: Vec<f64> = m.epochs.iter().filter(|x| x.epoch > 0).map(|x| mean_accuracy(&x.dev)).collect();
            let acc = |k: &str| r.dev.get(k).map_or(f64::NAN, |m| m.accuracy);
            let t = Trial { args, score: mean_accuracy(&r.dev), dev_a: acc("task_a"), dev_b: acc("task_b"), dev_by_epoch, wall_seconds: r.wall_seconds };
            log(&format!("    dev accuracy A {:.4}, B {:.4} (mean {:.4})", t.dev_a, t.dev_b, t.score));
            Ok(t)
        };
        let quick = self.plan.quick;
        let best = |ts: &[Trial]| -> usize { (0..ts.len()).fold(0, |b, i| if ts[i].score > ts[b].score { i } else { b }) };
        let (procedure, chosen) = match kind {
            Search::Tuned => {
                // Stage 1: rate x batch size at one epoch on a subset; stage 2: epochs for the winner.
                let limit = if quick { 64 } else { 1000 };
                let rates: &[&str] = if quick { &["1e-4", "3e-4"] } else { &["5e-5", "1e-4", "2e-4"] };
                let batches: &[&str] = if quick { &["16"] } else { &["16", "32"] };
                let recipe = |rate: &str, batch: &str, epochs: usize| -> Vec<String> {
                    let b: usize = batch.parse().expect("listed batch size");
                    // Warm-up over the first ~10% of the steps of one epoch of the subset (both tasks).
                    let warmup = (2 * limit / b / 10).max(1);
                    format!("--lr-plan uniform --lr ={rate} --warmup-steps {warmup} --linear-decay --batch-size {batch} --epochs {epochs}")
                        .split_whitespace()
                        .map(String::from)
                        .collect()
                };
                for r in rates {
                    for b in batches {
                        let mut a = recipe(r, b, 1);
                        a.extend(["--limit".into(), limit.to_string()]);
                        trials.push(trial(self, a, log)?);
                    }
                }
                let w = best(&trials);
                let (rate, batch) = {
                    let a = &trials[w].args;
                    let get = |flag: &str| a[a.iter().position(|x| x == flag).expect("flag") + 1].clone();
                    (get("--lr").trim_start_matches('=').to_string(), get("--batch-size"))
                };
                let mut best_epochs = 1;
                if !quick {
                    let mut a = recipe(&rate, &batch, 2);
                    a.extend(["--limit".into(), limit.to_string()]);
                    let t = trial(self, a, log)?;
                    if t.score > trials[w].score {
                        best_epochs = 2;
                    }
                    trials.push(t);
                }
                // The full-data recipe: warm-up over ~10% of its first epoch's steps.
                let mut chosen = recipe(&rate, &batch, best_epochs);
                let wpos = chosen.iter().position(|x| x == "--warmup-steps").expect("flag") + 1;
                chosen[wpos] = "auto".into();
                (
                    format!(
                        "uniform rate in {rates:?} x batch size in {batches:?}, one epoch each on the first {limit} rows of each training file, \
                         warm-up 10% of the first epoch then linear decay; then the winner at 2 epochs (kept if its dev score is higher). \
                         Score: mean dev accuracy of the two tasks, seed 0."
                    ),
                    chosen,
                )
            }
            Search::HeadsOnly => {
                let rates: &[&str] = if quick { &["1e-2"] } else { &["1e-3", "3e-3", "1e-2", "3e-2"] };
                let max_epochs = if quick { 3 } else { 40 };
                for r in rates {
                    let a: Vec<String> = format!("--freeze encoder --lr-plan uniform --lr ={r} --epochs {max_epochs} --patience 5")
                        .split_whitespace()
                        .map(String::from)
                        .collect();
                    trials.push(trial(self, a, log)?);
                }
                // Best (rate, epoch) over every trial's per-epoch dev curve.
                let mut best_score = f64::NEG_INFINITY;
                let (mut rate, mut epochs) = (String::new(), 1);
                for t in &trials {
                    for (i, &s) in t.dev_by_epoch.iter().enumerate() {
                        if s > best_score {
                            best_score = s;
                            epochs = i + 1;
                            rate = t.args[t.args.iter().position(|x| x == "--lr").expect("flag") + 1].trim_start_matches('=').to_string();
                        }
                    }
                }
                let chosen = format!("--freeze encoder --lr-plan uniform --lr ={rate} --epochs {epochs}").split_whitespace().map(String::from).collect();
                (
                    format!(
                        "encoder frozen (cached vectors); head rate in {rates:?}, constant, up to {max_epochs} epochs with patience 5 on all training data; \
                         the (rate, epoch) with the best mean dev accuracy, seed 0."
                    ),
                    chosen,
                )
            }
        };
        let record = SearchRecord { name: e.name.clone(), procedure, trials, chosen };
        write_json(&self.plan.out.join("search").join(format!("{}.json", slug(&e.name))), &record)?;
        log(&format!("  search {} chose: {}", e.name, record.chosen.join(" ")));
        Ok(record)
    }

    /// Runs every configuration and seed, then writes the results page.
    pub fn run(&mut self, log: &mut dyn FnMut(&str)) -> Result<GridResults> {
        self.check()?;
        std::fs::create_dir_all(&self.plan.out).map_err(|e| Error::io(&self.plan.out, e))?;
        let mut rows = Vec::new();
        let mut searches = BTreeMap::new();
        for e in self.plan.entries.clone() {
            let mut args = self.plan.base_args.clone();
            args.extend(e.args.iter().cloned());
            if let Some(kind) = e.search {
                let rec = self.search(&e, kind, log)?;
                let mut chosen = rec.chosen.clone();
                if let Some(p) = chosen.iter().position(|x| x == "auto") {
                    // Warm-up: 10% of one epoch of the full run's steps.
                    let mut probe = args.clone();
                    probe.extend(chosen.iter().filter(|x| *x != "auto").cloned());
                    probe.retain(|x| x != "--warmup-steps");
                    probe.extend(["--out".into(), "probe".into()]);
                    let cfg = (self.make)(&probe)?;
                    chosen[p] = (crate::train::steps_per_epoch(&cfg)? / 10).max(1).to_string();
                }
                args.extend(chosen);
                searches.insert(e.name.clone(), rec);
            }
            let mut results = Vec::new();
            let mut metrics = Vec::new();
            for seed in 0..self.plan.seeds as u64 {
                let mut a = args.clone();
                a.extend(["--seed".into(), seed.to_string()]);
                let dir = self.plan.out.join("runs").join(slug(&e.name)).join(format!("seed-{seed}"));
                let (r, m, stored) = self.run_one(&e.name, seed, &a, &dir, log)?;
                self.done_runs += 1;
                let acc = |k: &str| r.dev.get(k).map_or("–".to_string(), |m| format!("{:.4}", m.accuracy));
                log(&format!(
                    "[{}/{}] {} seed {seed}: dev A {}, B {} ({}{}), grid ETA {}",
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
            rows.push(summarise(&e.name, &args, &results, &metrics));
            // The page so far, after each configuration: a long grid shows its results as it goes.
            let so_far = GridResults {
                grid: self.plan.grid_name.clone(),
                seeds: self.plan.seeds,
                base_args: self.plan.base_args.clone(),
                rows: rows.clone(),
                searches: searches.clone(),
            };
            write_results(&self.plan.out, &so_far)?;
        }
        Ok(GridResults { grid: self.plan.grid_name.clone(), seeds: self.plan.seeds, base_args: self.plan.base_args.clone(), rows, searches })
    }
}

/// Aggregates one configuration's seeds into a table row.
fn summarise(name: &str, args: &[String], results: &[RunResult], metrics: &[RunMetrics]) -> Row {
    // A task's numbers count only from runs that trained it (a single-task run's other head is
    // untrained); the tweets are Task B's.
    let get = |ood: bool, task: &str, f: fn(&TaskMetrics) -> f64| -> Stat {
        let v: Vec<f64> = results
            .iter()
            .filter(|r| r.trained_tasks.iter().any(|t| t == task))
            .map(|r| if ood { &r.ood } else { &r.dev }.get(task).map_or(f64::NAN, f))
            .collect();
        Stat::of(&v)
    };
    let epochs = metrics.iter().map(|m| m.epochs.iter().filter(|e| e.epoch > 0).count()).max().unwrap_or(0);
    let mut per_epoch = Vec::new();
    for ep in 1..=epochs {
        let col = |f: &dyn Fn(&crate::train::EpochRecord) -> f64| -> f64 {
            Stat::of(&metrics.iter().filter_map(|m| m.epochs.iter().find(|e| e.epoch == ep)).map(f).collect::<Vec<_>>()).mean
        };
        let acc = |k: &'static str| move |e: &crate::train::EpochRecord| e.dev.get(k).map_or(f64::NAN, |m| m.accuracy);
        per_epoch.push([ep as f64, col(&|e| e.loss_a), col(&|e| e.loss_b), col(&acc("task_a")), col(&acc("task_b"))]);
    }
    Row {
        name: name.into(),
        args: args.to_vec(),
        seeds: results.iter().map(|r| r.seed).collect(),
        a_accuracy: get(false, "task_a", |m| m.accuracy),
        a_macro_f1: get(false, "task_a", |m| m.macro_f1),
        b_accuracy: get(false, "task_b", |m| m.accuracy),
        b_macro_f1: get(false, "task_b", |m| m.macro_f1),
        ood_b_accuracy: get(true, "task_b", |m| m.accuracy),
        ood_b_macro_f1: get(true, "task_b", |m| m.macro_f1),
        trainable_params: results.first().map_or(0, |r| r.trainable_params),
        wall_seconds: Stat::of(&results.iter().map(|r| r.wall_seconds).collect::<Vec<_>>()),
        train_sentences_per_s: Stat::of(&results.iter().filter(|r| r.train_seconds > 0.0).map(|r| r.sentences_per_s).collect::<Vec<_>>()),
        epochs,
        per_epoch,
        loss_curve: loss_curve(metrics),
    }
}

/// Per-task training loss averaged in bins of a tenth of an epoch, then over seeds.
fn loss_curve(metrics: &[RunMetrics]) -> Vec<[f64; 3]> {
    const BINS: usize = 10;
    let mut acc: BTreeMap<usize, [(f64, usize); 2]> = BTreeMap::new();
    for m in metrics {
        let mut start = 0;
        for e in m.epochs.iter().filter(|e| e.epoch > 0) {
            let n = e.steps;
            for i in 0..n {
                let bin = (e.epoch - 1) * BINS + i * BINS / n.max(1);
                let slot = acc.entry(bin).or_insert([(0.0, 0); 2]);
                for (k, v) in [m.step_losses_a.get(start + i), m.step_losses_b.get(start + i)].into_iter().enumerate() {
                    if let Some(Some(x)) = v {
                        slot[k].0 += x;
                        slot[k].1 += 1;
                    }
                }
            }
            start += n;
        }
    }
    let mean = |(s, n): (f64, usize)| if n == 0 { f64::NAN } else { s / n as f64 };
    acc.into_iter().map(|(bin, [a, b])| [(bin as f64 + 0.5) / BINS as f64, mean(a), mean(b)]).collect()
}

/// Writes `results.json`, `results.csv`, `results.md` and the plots.
pub fn write_results(dir: &Path, r: &GridResults) -> Result<()> {
    write_json(&dir.join("results.json"), r)?;
    let mut csv = String::from(
        "config,seeds,a_accuracy_mean,a_accuracy_std,a_macro_f1_mean,a_macro_f1_std,b_accuracy_mean,b_accuracy_std,b_macro_f1_mean,b_macro_f1_std,\
         ood_b_accuracy_mean,ood_b_accuracy_std,ood_b_macro_f1_mean,ood_b_macro_f1_std,trainable_params,wall_seconds_mean,train_sentences_per_s_mean,epochs,args\n",
    );
    let num = |x: f64| if x.is_finite() { format!("{x:.6}") } else { String::new() };
    for row in &r.rows {
        let mut cells = vec![row.name.clone(), row.seeds.len().to_string()];
        for s in [row.a_accuracy, row.a_macro_f1, row.b_accuracy, row.b_macro_f1, row.ood_b_accuracy, row.ood_b_macro_f1] {
            cells.push(num(s.mean));
            cells.push(num(s.std));
        }
        cells.push(row.trainable_params.to_string());
        cells.push(num(row.wall_seconds.mean));
        cells.push(num(row.train_sentences_per_s.mean));
        cells.push(row.epochs.to_string());
        cells.push(format!("\"{}\"", row.args.join(" ").replace('"', "\"\"")));
        csv.push_str(&cells.join(","));
        csv.push('\n');
    }
    write_atomic(&dir.join("results.csv"), csv.as_bytes())?;
    let mut md = format!(
        "# Results: grid `{}`, {} seed(s)\n\nDev accuracy and macro-F1 per task, mean ± standard deviation over seeds. \
         Tweets: Task B on TweetEval sentiment dev (out of domain, never trained on). \
         Time: wall time of one run (loading, caching, training, evaluation); sent/s: training sentences per second.\n\n\
         | configuration | Task A acc | Task A F1 | Task B acc | Task B F1 | tweets acc | tweets F1 | trainable | epochs | time | sent/s |\n\
         |---|---|---|---|---|---|---|---:|---:|---:|---:|\n",
        r.grid, r.seeds
    );
    for row in &r.rows {
        md.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
            row.name,
            row.a_accuracy.cell(4),
            row.a_macro_f1.cell(4),
            row.b_accuracy.cell(4),
            row.b_macro_f1.cell(4),
            row.ood_b_accuracy.cell(4),
            row.ood_b_macro_f1.cell(4),
            fmt_count(row.trainable_params),
            row.epochs,
            fmt_duration(row.wall_seconds.mean),
            if row.train_sentences_per_s.n == 0 { "–".into() } else { format!("{:.0}", row.train_sentences_per_s.mean) },
        ));
    }
    md.push_str("\nOptions per configuration (after the common ones: ");
    md.push_str(&format!("`{}`):\n\n", r.base_args.join(" ")));
    for row in &r.rows {
        let own: Vec<String> = row.args[r.base_args.len().min(row.args.len())..].to_vec();
        md.push_str(&format!("- {}: `{}`\n", row.name, own.join(" ")));
    }
    for (name, s) in &r.searches {
        md.push_str(&format!("\n## Search for `{name}`\n\n{}\n\n| trial | dev A | dev B | mean | time |\n|---|---:|---:|---:|---:|\n", s.procedure));
        for t in &s.trials {
            md.push_str(&format!(
                "| `{}` | {:.4} | {:.4} | {:.4} | {} |\n",
                t.args.join(" "),
                t.dev_a,
                t.dev_b,
                t.score,
                fmt_duration(t.wall_seconds)
            ));
        }
        md.push_str(&format!("\nChosen: `{}`\n", s.chosen.join(" ")));
    }
    md.push_str("\nPlots: `final_accuracy.png`, `dev_accuracy.png`, `training_loss.png`.\n");
    write_atomic(&dir.join("results.md"), md.as_bytes())?;
    plots(dir, r)
}

fn fmt_count(n: usize) -> String {
    match n {
        0 => "0".into(),
        n if n >= 1_000_000 => format!("{:.1}M", n as f64 / 1e6),
        n if n >= 1_000 => format!("{:.1}k", n as f64 / 1e3),
        n => n.to_string(),
    }
}

fn plots(dir: &Path, r: &GridResults) -> Result<()> {
    let names = vec!["Task A (TREC-6)".to_string(), "Task B (SST-3)".to_string(), "Task B on tweets (out of domain)".to_string()];
    let groups: Vec<BarGroup> = r
        .rows
        .iter()
        .map(|row| BarGroup {
            label: row.name.clone(),
            values: [row.a_accuracy, row.b_accuracy, row.ood_b_accuracy].iter().map(|s| (s.mean, s.std)).collect(),
        })
        .collect();
    plot::bar_groups(
        &dir.join("final_accuracy.png"),
        &format!("Dev accuracy per configuration (mean ± std over {} seed(s))", r.seeds),
        "accuracy",
        &names,
        &groups,
    )?;
    let series = |f: &dyn Fn(&Row) -> Vec<(f64, f64)>| -> Vec<Series> {
        r.rows.iter().map(|row| Series { label: row.name.clone(), points: f(row) }).filter(|s| !s.points.is_empty()).collect()
    };
    let dev_a = series(&|row| row.per_epoch.iter().map(|p| (p[0], p[3])).collect());
    let dev_b = series(&|row| row.per_epoch.iter().map(|p| (p[0], p[4])).collect());
    plot::line_panels(
        &dir.join("dev_accuracy.png"),
        "Dev accuracy after each epoch (mean over seeds)",
        "epoch",
        "accuracy",
        &[("Task A (TREC-6)".into(), dev_a), ("Task B (SST-3)".into(), dev_b)],
    )?;
    // Loss curves: configurations that train; heads-only runs with many epochs would stretch the
    // axis, so the x axis shows epochs as they are.
    let loss_a = series(&|row| row.loss_curve.iter().map(|p| (p[0], p[1])).filter(|p| p.1.is_finite()).collect());
    let loss_b = series(&|row| row.loss_curve.iter().map(|p| (p[0], p[2])).filter(|p| p.1.is_finite()).collect());
    plot::line_panels(
        &dir.join("training_loss.png"),
        "Training loss per task (tenth-of-an-epoch means, mean over seeds)",
        "epoch",
        "cross-entropy",
        &[("Task A (TREC-6)".into(), loss_a), ("Task B (SST-3)".into(), loss_b)],
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cache_folder_does_not_count_as_an_option() {
        let v = |s: &str| s.split_whitespace().map(String::from).collect::<Vec<_>>();
        assert!(same_options(&v("--epochs 1 --cache-dir a/cache --seed 0"), &v("--epochs 1 --cache-dir b/cache --seed 0")));
        assert!(!same_options(&v("--epochs 1 --cache-dir a --seed 0"), &v("--epochs 2 --cache-dir a --seed 0")));
    }

    #[test]
    fn stats_and_slugs() {
        let s = Stat::of(&[1.0, 2.0, 3.0, f64::NAN]);
        assert_eq!((s.mean, s.std, s.n), (2.0, 1.0, 3));
        assert_eq!(Stat::of(&[0.5]).std, 0.0);
        assert!(Stat::of(&[]).mean.is_nan());
        assert_eq!(slug("freeze:layers:3"), "freeze-layers-3");
        assert_eq!(slug("heads-only:tuned"), "heads-only-tuned");
        assert_eq!(slug("--lr =1e-4"), "lr-1e-4");
    }

    #[test]
    fn grid_files_in_toml_and_json() {
        let d = tempfile::tempdir().unwrap();
        let t = d.path().join("g.toml");
        std::fs::write(&t, "[[config]]\nname = \"a\"\nargs = [\"--lr-plan\", \"uniform\"]\n\n[[config]]\nname = \"b\"\nargs = \"--freeze encoder --epochs 3\"\n\n[[config]]\nname = \"t\"\nsearch = \"heads-only\"\n").unwrap();
        let g = read_grid(&t).unwrap();
        assert_eq!(g[1].args, vec!["--freeze", "encoder", "--epochs", "3"]);
        assert_eq!(g[2].search, Some(Search::HeadsOnly));
        let j = d.path().join("g.json");
        std::fs::write(&j, r#"{"config": [{"name": "x", "args": ["--freeze", "all"]}]}"#).unwrap();
        assert_eq!(read_grid(&j).unwrap()[0].name, "x");
        std::fs::write(&t, "[[config]]\nname = \"a\"\nargz = []\n").unwrap();
        let e = read_grid(&t).unwrap_err().to_string();
        assert!(e.contains("g.toml:3:") && e.contains("argz"), "{e}");
        std::fs::write(&t, "[[config]]\nname = \"a\"\n[[config]]\nname = \"a\"\n").unwrap();
        assert!(read_grid(&t).unwrap_err().to_string().contains("'a' appears twice"));
        assert_eq!(builtin_grid("default").unwrap().len(), 10);
        assert!(builtin_grid("extended").unwrap().iter().any(|e| e.name == "single-task:b"));
    }
}

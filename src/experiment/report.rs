//! Summarising a configuration's seeds into a [`Row`], and the results page: `results.json`,
//! `results.csv`, `results.md` and the plots.

use super::{write_json, Overrides, RunResult, SearchRecord};
use crate::error::{invalid, Result};
use crate::fsutil::write_atomic;
use crate::metrics::TaskMetrics;
use crate::plot::{self, BarGroup, CostPoint, Series};
use crate::train::{fmt_duration, EpochRecord, RunMetrics, TrainConfig};
use serde::{Deserialize, Deserializer, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

/// JSON has no NaN: serde_json writes it as `null`, read back here as NaN.
fn nan_if_null<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<f64, D::Error> {
    Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::NAN))
}

/// Mean and standard deviation (sample, n-1; 0 for one value) of the finite values; NaN if none.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
pub struct Stat {
    /// Mean of the finite values (NaN, `null` in JSON, when there are none).
    #[serde(deserialize_with = "nan_if_null")]
    pub mean: f64,
    /// Sample standard deviation of the finite values (0 for one value, NaN for none).
    #[serde(deserialize_with = "nan_if_null")]
    pub std: f64,
    /// Finite values summarised (NaN and infinite values left out).
    pub n: usize,
}

impl Default for Stat {
    /// No values.
    fn default() -> Self {
        Stat { mean: f64::NAN, std: f64::NAN, n: 0 }
    }
}

impl Stat {
    /// The statistics of `values`, skipping those that are not finite.
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

/// One epoch of a row: means over the seeds that ran it (NaN, `null` in JSON, when none had a
/// value).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct EpochPoint {
    /// The epoch, counted from 1.
    pub epoch: usize,
    /// Mean Task A training loss over the epoch.
    #[serde(deserialize_with = "nan_if_null")]
    pub loss_a: f64,
    /// Mean Task B training loss over the epoch.
    #[serde(deserialize_with = "nan_if_null")]
    pub loss_b: f64,
    /// Task A dev accuracy after the epoch, in [0, 1].
    #[serde(deserialize_with = "nan_if_null")]
    pub dev_a_accuracy: f64,
    /// Task B dev accuracy after the epoch, in [0, 1].
    #[serde(deserialize_with = "nan_if_null")]
    pub dev_b_accuracy: f64,
}

/// A point of a row's training-loss curve: the per-task loss over a tenth of an epoch, mean over
/// the steps in it and then over seeds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LossPoint {
    /// The middle of the tenth, in epochs (0.05, 0.15, ...).
    pub epoch: f64,
    /// Mean Task A training loss in the tenth (NaN when no step in it had Task A labels).
    #[serde(deserialize_with = "nan_if_null")]
    pub loss_a: f64,
    /// Mean Task B training loss in the tenth (NaN when no step in it had Task B labels).
    #[serde(deserialize_with = "nan_if_null")]
    pub loss_b: f64,
}

/// A configuration's row of the results table.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Row {
    /// The configuration's name.
    pub name: String,
    /// What the configuration changes in the base: its own settings, then its search's choice.
    pub settings: Overrides,
    /// The seeds of the runs summarised, in run order.
    pub seeds: Vec<u64>,
    /// Task A dev accuracy of each run's kept epoch, over the runs that trained Task A.
    pub a_accuracy: Stat,
    /// Task A dev macro-F1 of each run's kept epoch, over the runs that trained Task A.
    pub a_macro_f1: Stat,
    /// Task B dev accuracy of each run's kept epoch, over the runs that trained Task B.
    pub b_accuracy: Stat,
    /// Task B dev macro-F1 of each run's kept epoch, over the runs that trained Task B.
    pub b_macro_f1: Stat,
    /// Task B out-of-domain accuracy of each run's kept epoch, over the runs that trained Task B.
    pub ood_b_accuracy: Stat,
    /// Task B out-of-domain macro-F1 of each run's kept epoch, over the runs that trained Task B.
    pub ood_b_macro_f1: Stat,
    /// Parameters that received updates, in the first run (0 with no run).
    pub trainable_params: usize,
    /// Wall-clock seconds per run (loading, caching, training, evaluation, saving).
    pub wall_seconds: Stat,
    /// Training rows per second, over the runs that trained.
    pub train_sentences_per_s: Stat,
    /// The most training epochs any run completed.
    pub epochs: usize,
    /// Per epoch, means over seeds.
    pub per_epoch: Vec<EpochPoint>,
    /// Per tenth of an epoch, means over seeds.
    pub loss_curve: Vec<LossPoint>,
    /// The encoder's own embeddings on STS-B dev after each run (zero-shot Spearman), over the
    /// runs that were scored.
    #[serde(default)]
    pub sts_spearman: Stat,
    /// Each named classification task's dev accuracy, over the runs that trained it.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tasks: BTreeMap<String, Stat>,
    /// Each similarity task's dev Spearman, over the runs that trained it.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub similarity: BTreeMap<String, Stat>,
}

/// `results.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GridResults {
    /// The grid's name (`default`, `extended`, or the grid file's path as given).
    pub grid: String,
    /// Runs per configuration.
    pub seeds: usize,
    /// The configuration every run starts from (its `out` is the results folder; each run's is
    /// its own folder).
    pub base: TrainConfig,
    /// One row per configuration, in the grid's order (so far, while the grid runs).
    pub rows: Vec<Row>,
    /// Each search: its trials and winner.
    pub searches: BTreeMap<String, SearchRecord>,
}

/// Aggregates one configuration's seeds into a table row.
pub fn summarise(name: &str, settings: &Overrides, results: &[RunResult], metrics: &[RunMetrics]) -> Row {
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
    let per_epoch = (1..=epochs)
        .map(|ep| {
            let mean = |f: &dyn Fn(&EpochRecord) -> f64| -> f64 {
                Stat::of(&metrics.iter().filter_map(|m| m.epochs.iter().find(|e| e.epoch == ep)).map(f).collect::<Vec<_>>()).mean
            };
            let acc = |k: &'static str| move |e: &EpochRecord| e.dev.get(k).map_or(f64::NAN, |m| m.accuracy);
            EpochPoint {
                epoch: ep,
                loss_a: mean(&|e| e.loss_a),
                loss_b: mean(&|e| e.loss_b),
                dev_a_accuracy: mean(&acc("task_a")),
                dev_b_accuracy: mean(&acc("task_b")),
            }
        })
        .collect();
    Row {
        name: name.into(),
        settings: settings.clone(),
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
        sts_spearman: Stat::of(&results.iter().filter_map(|r| r.sts.map(|m| m.spearman)).collect::<Vec<_>>()),
        tasks: named_task_scores(results, |r, t| r.dev.get(t).map(|m| m.accuracy)),
        similarity: named_task_scores(results, |r, t| r.dev_similarity.get(t).map(|m| m.spearman)),
    }
}

/// Each named task's (not `task_a`/`task_b`) dev score by `score` over the runs that trained it
/// (tasks `score` never finds are left out).
fn named_task_scores(results: &[RunResult], score: fn(&RunResult, &str) -> Option<f64>) -> BTreeMap<String, Stat> {
    let mut names: Vec<&String> = results.iter().flat_map(|r| &r.trained_tasks).filter(|t| !["task_a", "task_b"].contains(&t.as_str())).collect();
    names.sort();
    names.dedup();
    names
        .into_iter()
        .map(|t| {
            let v: Vec<f64> = results
                .iter()
                .filter(|r| r.trained_tasks.contains(t))
                .filter_map(|r| score(r, t))
                .collect();
            (t.clone(), Stat::of(&v))
        })
        .filter(|(_, s)| s.n > 0)
        .collect()
}

/// Per-task training loss averaged in bins of a tenth of an epoch (over the steps in a bin that
/// had the task's labels, then over seeds, each step counting once).
pub fn loss_curve(metrics: &[RunMetrics]) -> Vec<LossPoint> {
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
    acc.into_iter().map(|(bin, [a, b])| LossPoint { epoch: (bin as f64 + 0.5) / BINS as f64, loss_a: mean(a), loss_b: mean(b) }).collect()
}

/// The columns of `results.csv`.
const CSV_HEADER: [&str; 19] = [
    "config",
    "seeds",
    "a_accuracy_mean",
    "a_accuracy_std",
    "a_macro_f1_mean",
    "a_macro_f1_std",
    "b_accuracy_mean",
    "b_accuracy_std",
    "b_macro_f1_mean",
    "b_macro_f1_std",
    "ood_b_accuracy_mean",
    "ood_b_accuracy_std",
    "ood_b_macro_f1_mean",
    "ood_b_macro_f1_std",
    "trainable_params",
    "wall_seconds_mean",
    "train_sentences_per_s_mean",
    "epochs",
    "args",
];

/// `results.csv`: one row per configuration (numbers with 6 decimals, empty when missing; `args`
/// is the configuration's settings as `name=value` pairs), quoted where a cell needs it.
pub fn results_csv(r: &GridResults) -> Result<Vec<u8>> {
    let num = |x: f64| if x.is_finite() { format!("{x:.6}") } else { String::new() };
    let mut w = csv::Writer::from_writer(Vec::new());
    let fail = |e: csv::Error| invalid(format!("results.csv: {e}"));
    w.write_record(CSV_HEADER).map_err(fail)?;
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
        cells.push(row.settings.to_string());
        w.write_record(&cells).map_err(fail)?;
    }
    w.into_inner().map_err(|e| invalid(format!("results.csv: {e}")))
}

/// Cell text for a Markdown table: `|` escaped, no line breaks.
fn md_cell(s: &str) -> String {
    s.replace('|', "\\|").replace(['\n', '\r'], " ")
}

/// `settings` as inline code (`–` when empty).
fn code(settings: &Overrides) -> String {
    if settings.is_empty() {
        "–".into()
    } else {
        format!("`{}`", md_cell(&settings.to_string()))
    }
}

/// `results.md`: the table, each configuration's settings, the searches.
fn results_md(r: &GridResults) -> String {
    let mut md = format!(
        "# Results: grid `{}`, {} seed(s)\n\nDev accuracy and macro-F1 per task, mean ± standard deviation over seeds. \
         Tweets: Task B on TweetEval sentiment dev (out of domain, never trained on). \
         Time: wall time of one run (loading, caching, training, evaluation); sent/s: training sentences per second. \
         STS-B after: Spearman of the encoder's own cosine similarities on STS-B dev after the run (the base model: 0.810), \
         what the fine-tune kept of the embeddings; zero-shot unless STS-B is one of the run's tasks (then also under other tasks). Other tasks: dev accuracy, or Spearman for a similarity task.\n\n\
         | configuration | Task A acc | Task A F1 | Task B acc | Task B F1 | tweets acc | tweets F1 | STS-B after | other tasks | trainable | epochs | time | sent/s |\n\
         |---|---|---|---|---|---|---|---|---|---:|---:|---:|---:|\n",
        r.grid, r.seeds
    );
    for row in &r.rows {
        md.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
            md_cell(&row.name),
            row.a_accuracy.cell(4),
            row.a_macro_f1.cell(4),
            row.b_accuracy.cell(4),
            row.b_macro_f1.cell(4),
            row.ood_b_accuracy.cell(4),
            row.ood_b_macro_f1.cell(4),
            row.sts_spearman.cell(4),
            {
                let cells: Vec<String> = row.tasks.iter().chain(&row.similarity).map(|(t, s)| format!("{t} {}", s.cell(4))).collect();
                if cells.is_empty() { "–".to_string() } else { cells.join("; ") }
            },
            fmt_count(row.trainable_params),
            row.epochs,
            fmt_duration(row.wall_seconds.mean),
            if row.train_sentences_per_s.n == 0 { "–".into() } else { format!("{:.0}", row.train_sentences_per_s.mean) },
        ));
    }
    let b = &r.base;
    let file = |p: &Option<std::path::PathBuf>| p.as_ref().map_or("–".to_string(), |p| format!("`{}`", p.display()));
    md.push_str(&format!(
        "\nEvery run starts from the same base settings (`base` in `results.json`): model `{}`, training files {} and {}, \
         dev files {} and {}, out-of-domain {}, {} epoch(s), {}, batch size {}, learning rates `{}`, freezing `{}`. \
         Settings per configuration, over the base:\n\n",
        b.model.display(),
        file(&b.data.task_a),
        file(&b.data.task_b),
        file(&b.data.dev_a),
        file(&b.data.dev_b),
        file(&b.data.ood_b),
        b.schedule.epochs,
        b.data.limit.map_or("all rows".to_string(), |l| format!("the first {l} rows of each training file")),
        b.schedule.batch_size,
        b.optimizer.lr_plan,
        b.optimizer.freeze,
    ));
    for row in &r.rows {
        md.push_str(&format!("- {}: {}\n", md_cell(&row.name), code(&row.settings)));
    }
    for (name, s) in &r.searches {
        md.push_str(&format!(
            "\n## Search for `{}`\n\n{}\n\n| trial | dev A | dev B | mean | time |\n|---|---:|---:|---:|---:|\n",
            md_cell(name),
            s.procedure
        ));
        for t in &s.trials {
            md.push_str(&format!("| {} | {:.4} | {:.4} | {:.4} | {} |\n", code(&t.settings), t.dev_a, t.dev_b, t.score, fmt_duration(t.wall_seconds)));
        }
        md.push_str(&format!("\nChosen: {}\n", code(&s.chosen)));
    }
    md.push_str("\nPlots: `final_accuracy.png`, `dev_accuracy.png`, `training_loss.png`, `accuracy_vs_time.png`, `accuracy_vs_sts.png`.\n");
    md
}

/// Writes `results.json`, `results.csv`, `results.md` and the plots.
pub fn write_results(dir: &Path, r: &GridResults) -> Result<()> {
    write_json(&dir.join("results.json"), r)?;
    write_atomic(&dir.join("results.csv"), &results_csv(r)?)?;
    write_atomic(&dir.join("results.md"), results_md(r).as_bytes())?;
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

/// A row's point on the accuracy-against-time chart: mean wall time per run, and the mean over
/// the tasks it trained of their dev accuracy (and standard deviation).
fn cost_point(row: &Row) -> CostPoint {
    // Every classification task the run trained: the seed's two and the named ones.
    let tasks: Vec<&Stat> = [&row.a_accuracy, &row.b_accuracy].into_iter().filter(|s| s.n > 0).chain(row.tasks.values()).collect();
    let mean = |f: fn(&Stat) -> f64| if tasks.is_empty() { f64::NAN } else { tasks.iter().map(|s| f(s)).sum::<f64>() / tasks.len() as f64 };
    CostPoint { label: row.name.clone(), seconds: row.wall_seconds.mean, accuracy: mean(|s| s.mean), accuracy_std: mean(|s| s.std) }
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
    let dev_a = series(&|row| row.per_epoch.iter().map(|p| (p.epoch as f64, p.dev_a_accuracy)).collect());
    let dev_b = series(&|row| row.per_epoch.iter().map(|p| (p.epoch as f64, p.dev_b_accuracy)).collect());
    plot::line_panels(
        &dir.join("dev_accuracy.png"),
        "Dev accuracy after each epoch (mean over seeds)",
        "epoch",
        "accuracy",
        &[("Task A (TREC-6)".into(), dev_a), ("Task B (SST-3)".into(), dev_b)],
    )?;
    // Loss curves: configurations that train; heads-only runs with many epochs would stretch the
    // axis, so the x axis shows epochs as they are.
    let loss_a = series(&|row| row.loss_curve.iter().map(|p| (p.epoch, p.loss_a)).filter(|p| p.1.is_finite()).collect());
    let loss_b = series(&|row| row.loss_curve.iter().map(|p| (p.epoch, p.loss_b)).filter(|p| p.1.is_finite()).collect());
    plot::line_panels(
        &dir.join("training_loss.png"),
        "Training loss per task (tenth-of-an-epoch means, mean over seeds)",
        "epoch",
        "cross-entropy",
        &[("Task A (TREC-6)".into(), loss_a), ("Task B (SST-3)".into(), loss_b)],
    )?;
    plot::accuracy_vs_time(
        &dir.join("accuracy_vs_time.png"),
        "Dev accuracy against time per run (mean over seeds)",
        "dev accuracy (mean over the trained classification tasks)",
        &r.rows.iter().map(cost_point).collect::<Vec<_>>(),
    )?;
    // What each configuration buys (task accuracy) against what it costs the embeddings (STS-B).
    let sts_points: Vec<CostPoint> =
        r.rows.iter().map(|row| CostPoint { seconds: row.sts_spearman.mean, ..cost_point(row) }).filter(|p| p.accuracy.is_finite()).collect();
    plot::accuracy_vs_measure(
        &dir.join("accuracy_vs_sts.png"),
        "Task accuracy against what the embeddings keep (mean over seeds)",
        "STS-B dev Spearman of the encoder's own embeddings after the run (base model 0.810; zero-shot unless STS-B is trained)",
        "dev accuracy (mean over the trained classification tasks)",
        &sts_points,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The accuracy plotted for a run is the mean over every classification task it trained:
    /// the seed's two and the named ones (a 4-task run's MRPC included), and the named ones alone
    /// in a run without the seed's tasks.
    #[test]
    fn the_plotted_accuracy_averages_every_trained_classification_task() {
        let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/results/grid-goal1/results.json")).unwrap();
        let r: GridResults = serde_json::from_str(&text).unwrap();
        let row = |name: &str| r.rows.iter().find(|row| row.name == name).unwrap();
        let four = row("4-task:half:sts-x10:temperature-2:paraphrase-head-1e-3");
        let want = (four.a_accuracy.mean + four.b_accuracy.mean + four.tasks["paraphrase"].mean) / 3.0;
        assert!((cost_point(four).accuracy - want).abs() < 1e-12);
        assert!((cost_point(row("single:mrpc")).accuracy - row("single:mrpc").tasks["paraphrase"].mean).abs() < 1e-12);
        assert!(cost_point(row("single:stsb")).accuracy.is_nan(), "a similarity-only run has no accuracy to plot");
    }
}

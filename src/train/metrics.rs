//! What a run records: [`RunMetrics`] (`metrics.json`), one [`EpochRecord`] per epoch.

use crate::metrics::{SimilarityMetrics, TaskMetrics};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// One epoch's record in `metrics.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EpochRecord {
    /// The epoch, counted from 1; 0 for the evaluation-only record of a run where nothing
    /// trains (freeze `all`).
    pub epoch: usize,
    /// Optimizer steps taken in the epoch (batches without any label take none).
    pub steps: usize,
    /// Mean Task A / Task B loss over the batches that had labels for that task (NaN, written
    /// as `null`, when there were none).
    #[serde(deserialize_with = "nan_if_null")]
    pub loss_a: f64,
    /// Mean Task B loss over the batches that had Task B labels (NaN when there were none).
    #[serde(deserialize_with = "nan_if_null")]
    pub loss_b: f64,
    /// Wall-clock seconds of the epoch's training loop, summed over resumed sessions (the
    /// end-of-epoch evaluation and saving not included).
    pub seconds: f64,
    /// Training throughput: rows in the epoch's batches divided by `seconds`.
    pub sentences_per_s: f64,
    /// Dev metrics at the end of the epoch, keyed `task_a` / `task_b`; a task without labelled
    /// dev rows is absent (the map is empty without dev files).
    pub dev: BTreeMap<String, TaskMetrics>,
    /// Out-of-domain Task B evaluation (`ood_b`), keyed `task_b`.
    #[serde(default)]
    pub ood: BTreeMap<String, TaskMetrics>,
    /// Uncertainty weighting's log-variances (one per task, in task order) at the end of the
    /// epoch.
    #[serde(default)]
    pub loss_log_vars: Option<Vec<f64>>,
    /// Every task's mean loss over the batches that had rows for it, keyed by task name (a task
    /// without such batches is absent). `loss_a`/`loss_b` repeat the seed's two.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub losses: BTreeMap<String, f64>,
    /// Dev metrics of similarity tasks (Spearman and Pearson of the cosines), keyed by task.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub dev_similarity: BTreeMap<String, SimilarityMetrics>,
}

impl EpochRecord {
    /// The epoch's dev score: the mean over tasks of accuracy (classification kinds) and
    /// Spearman correlation (similarity); `None` without dev metrics.
    pub fn dev_score(&self) -> Option<f64> {
        let values: Vec<f64> = self.dev.values().map(|m| m.accuracy).chain(self.dev_similarity.values().map(|m| m.spearman)).collect();
        (!values.is_empty()).then(|| values.iter().sum::<f64>() / values.len() as f64)
    }
}

/// JSON has no NaN: serde_json writes it as `null`, read back here as NaN.
fn nan_if_null<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<f64, D::Error> {
    Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::NAN))
}

/// `metrics.json`: the whole run.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RunMetrics {
    /// One record per completed epoch, in order (a single epoch-0 record when nothing trains).
    pub epochs: Vec<EpochRecord>,
    /// Epoch whose weights are in the folder.
    pub saved_epoch: Option<usize>,
    /// Every step's summed loss, in order.
    pub step_losses: Vec<f64>,
    /// Every step's Task A / Task B loss (`None` where the batch had no label for the task).
    #[serde(default)]
    pub step_losses_a: Vec<Option<f64>>,
    /// Every step's Task B loss (`None` where the batch had no Task B label).
    #[serde(default)]
    pub step_losses_b: Vec<Option<f64>>,
    /// The subsets that were trained, each with its base learning rate (before warm-up and
    /// decay); uncertainty weighting's log-variances appear as `loss_weighting`.
    pub trainable_subsets: Vec<(String, f64)>,
    /// The subsets left frozen (no variable receives a gradient), in model order.
    pub frozen_subsets: Vec<String>,
    /// Training examples: rows of all training files together (in a single-task run, only
    /// those with that task's label).
    pub train_rows: usize,
    /// The step limit ended the run before the planned epochs were done.
    pub stopped_early: bool,
    /// Parameters that received updates.
    #[serde(default)]
    pub trainable_params: usize,
    /// The heads trained on cached pooled vectors (frozen encoder).
    #[serde(default)]
    pub cached: bool,
    /// Time spent computing (or loading) the cached vectors of the training, dev and ood sets.
    #[serde(default)]
    pub cache_seconds: f64,
    /// `patience` ended the run after this epoch.
    #[serde(default)]
    pub early_stopped_epoch: Option<usize>,
    /// Wall time of the whole run: loading, caching, training, evaluation, saving.
    #[serde(default)]
    pub wall_seconds: f64,
    /// The run's task names, in task (head) order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tasks: Vec<String>,
    /// Every step's loss of each task other than the seed's two (`None` where the batch had no
    /// row of it), keyed by task name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub step_losses_by_task: BTreeMap<String, Vec<Option<f64>>>,
    /// The encoder's own embeddings scored on STS-B dev after the run (zero-shot: what the
    /// fine-tune kept of sentence similarity), when the run asked for it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sts: Option<SimilarityMetrics>,
}

impl RunMetrics {
    /// Records one step's task losses (by task index, names in `tasks`).
    pub fn push_step_losses(&mut self, losses: &[Option<f64>]) {
        for (t, name) in self.tasks.clone().iter().enumerate() {
            let l = losses.get(t).copied().flatten();
            match name.as_str() {
                crate::task::TASK_A => self.step_losses_a.push(l),
                crate::task::TASK_B => self.step_losses_b.push(l),
                _ => self.step_losses_by_task.entry(name.clone()).or_default().push(l),
            }
        }
    }
}

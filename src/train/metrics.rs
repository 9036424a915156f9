//! What a run records: [`RunMetrics`] (`metrics.json`), one [`EpochRecord`] per epoch.

use crate::metrics::TaskMetrics;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// One epoch's record in `metrics.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EpochRecord {
    pub epoch: usize,
    pub steps: usize,
    /// Mean Task A / Task B loss over the batches that had labels for that task (NaN, written
    /// as `null`, when there were none).
    #[serde(deserialize_with = "nan_if_null")]
    pub loss_a: f64,
    #[serde(deserialize_with = "nan_if_null")]
    pub loss_b: f64,
    pub seconds: f64,
    pub sentences_per_s: f64,
    pub dev: BTreeMap<String, TaskMetrics>,
    /// Out-of-domain Task B evaluation (`ood_b`), keyed `b`.
    #[serde(default)]
    pub ood: BTreeMap<String, TaskMetrics>,
    /// Uncertainty weighting's log-variances (Task A, Task B) at the end of the epoch.
    #[serde(default)]
    pub loss_log_vars: Option<[f64; 2]>,
}

/// JSON has no NaN: serde_json writes it as `null`, read back here as NaN.
fn nan_if_null<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<f64, D::Error> {
    Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::NAN))
}

/// `metrics.json`: the whole run.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RunMetrics {
    pub epochs: Vec<EpochRecord>,
    /// Epoch whose weights are in the folder.
    pub saved_epoch: Option<usize>,
    /// Every step's summed loss, in order.
    pub step_losses: Vec<f64>,
    /// Every step's Task A / Task B loss (`None` where the batch had no label for the task).
    #[serde(default)]
    pub step_losses_a: Vec<Option<f64>>,
    #[serde(default)]
    pub step_losses_b: Vec<Option<f64>>,
    pub trainable_subsets: Vec<(String, f64)>,
    pub frozen_subsets: Vec<String>,
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
}

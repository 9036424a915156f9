//! Owns classification metrics: accuracy, macro-F1 and the confusion matrix.

use serde::{Deserialize, Serialize};

/// Metrics of one task on one evaluation set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskMetrics {
    /// Fraction of rows predicted right, in [0, 1] (0 when there are no rows).
    pub accuracy: f64,
    /// Mean F1 over the classes present in the gold labels (the Python peer's definition).
    pub macro_f1: f64,
    /// Rows evaluated (those with a gold label for the task).
    pub n: usize,
    /// Row = gold label, column = predicted label, in `labels` order.
    pub confusion: Vec<Vec<usize>>,
    /// The task's label names, in class-index order (every class of the task, whether or not
    /// it occurs in the gold labels).
    pub labels: Vec<String>,
}

/// Computes the metrics of `pred` against `gold` (label indices into `labels`).
pub fn task_metrics(gold: &[usize], pred: &[usize], labels: &[String]) -> TaskMetrics {
    assert_eq!(gold.len(), pred.len(), "one prediction per gold label");
    let k = labels.len();
    let mut confusion = vec![vec![0usize; k]; k];
    for (&g, &p) in gold.iter().zip(pred) {
        confusion[g][p] += 1;
    }
    let n = gold.len();
    let correct: usize = (0..k).map(|c| confusion[c][c]).sum();
    let mut f1s = Vec::new();
    for (c, row) in confusion.iter().enumerate() {
        let support: usize = row.iter().sum();
        if support == 0 {
            continue;
        }
        let tp = row[c];
        let predicted: usize = confusion.iter().map(|r| r[c]).sum();
        let (fp, fn_) = (predicted - tp, support - tp);
        f1s.push(if tp == 0 { 0.0 } else { 2.0 * tp as f64 / (2 * tp + fp + fn_) as f64 });
    }
    TaskMetrics {
        accuracy: if n == 0 { 0.0 } else { correct as f64 / n as f64 },
        macro_f1: if f1s.is_empty() { 0.0 } else { f1s.iter().sum::<f64>() / f1s.len() as f64 },
        n,
        confusion,
        labels: labels.to_vec(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accuracy_f1_and_confusion() {
        let labels: Vec<String> = ["a", "b", "c"].iter().map(|s| s.to_string()).collect();
        let m = task_metrics(&[0, 0, 1, 1], &[0, 1, 1, 1], &labels);
        assert_eq!(m.accuracy, 0.75);
        assert_eq!(m.confusion, vec![vec![1, 1, 0], vec![0, 2, 0], vec![0, 0, 0]]);
        // class a: tp1 fp0 fn1 -> 2/3; class b: tp2 fp1 fn0 -> 4/5; c absent from gold.
        assert!((m.macro_f1 - (2.0 / 3.0 + 0.8) / 2.0).abs() < 1e-12);
    }
}

//! Owns evaluation metrics: accuracy, macro-F1 and the confusion matrix for classification;
//! Pearson and Spearman correlation for similarity scores.

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

/// Metrics of similarity scores (cosine of two texts' embeddings) against gold scores.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SimilarityMetrics {
    /// Spearman's rank correlation, in [-1, 1] (NaN when either side is constant).
    pub spearman: f64,
    /// Pearson's linear correlation, in [-1, 1] (NaN when either side is constant).
    pub pearson: f64,
    /// Pairs scored.
    pub n: usize,
}

/// Pearson's correlation of `x` and `y` (NaN for fewer than 2 values or a constant side).
pub fn pearson(x: &[f64], y: &[f64]) -> f64 {
    assert_eq!(x.len(), y.len(), "one value per value");
    let n = x.len() as f64;
    if x.len() < 2 {
        return f64::NAN;
    }
    let (mx, my) = (x.iter().sum::<f64>() / n, y.iter().sum::<f64>() / n);
    let (mut sxy, mut sxx, mut syy) = (0.0, 0.0, 0.0);
    for (a, b) in x.iter().zip(y) {
        let (dx, dy) = (a - mx, b - my);
        sxy += dx * dy;
        sxx += dx * dx;
        syy += dy * dy;
    }
    if sxx == 0.0 || syy == 0.0 {
        return f64::NAN;
    }
    sxy / (sxx * syy).sqrt()
}

/// Ranks from 1, tied values sharing the mean of their ranks.
fn ranks(v: &[f64]) -> Vec<f64> {
    let mut order: Vec<usize> = (0..v.len()).collect();
    order.sort_by(|&a, &b| v[a].total_cmp(&v[b]));
    let mut r = vec![0.0; v.len()];
    let mut i = 0;
    while i < order.len() {
        let mut j = i;
        while j + 1 < order.len() && v[order[j + 1]] == v[order[i]] {
            j += 1;
        }
        let mean = (i + j) as f64 / 2.0 + 1.0;
        for &k in &order[i..=j] {
            r[k] = mean;
        }
        i = j + 1;
    }
    r
}

/// Spearman's rank correlation of `x` and `y`: Pearson's of their ranks (ties get mean ranks,
/// as scipy's `spearmanr` does).
pub fn spearman(x: &[f64], y: &[f64]) -> f64 {
    pearson(&ranks(x), &ranks(y))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn correlations_match_scipy() {
        // scipy.stats.pearsonr / spearmanr (scipy in the project's venv) of these values.
        let x = [1.0, 2.0, 3.0, 4.0, 5.0, 5.0];
        let y = [2.0, 1.0, 4.0, 3.0, 7.0, 6.0];
        assert!((pearson(&x, &y) - 0.863_511_536_641_545_6).abs() < 1e-12, "{}", pearson(&x, &y));
        assert!((spearman(&x, &y) - 0.869_656_553_478_672_7).abs() < 1e-12, "{}", spearman(&x, &y));
        assert_eq!(ranks(&[3.0, 1.0, 3.0, 2.0]), vec![3.5, 1.0, 3.5, 2.0]);
        assert!((spearman(&[1.0, 2.0, 3.0], &[10.0, 20.0, 30.0]) - 1.0).abs() < 1e-12);
        assert!((spearman(&[1.0, 2.0, 3.0], &[3.0, 2.0, 1.0]) + 1.0).abs() < 1e-12);
        assert!(pearson(&[1.0, 1.0], &[1.0, 2.0]).is_nan());
    }

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

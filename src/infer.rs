//! Owns batched inference over token ids: one sort–pad–run–copy-back loop, used for embeddings,
//! class probabilities and evaluation by `embed`, `predict`, `eval`, `task2` and the trainer's
//! dev pass. Runs without gradients and with dropout off; rows come back in input order.

use crate::padding;
use crate::data::{Example, Task};
use crate::error::{invalid, Result};
use crate::metrics::{task_metrics, TaskMetrics};
use crate::model::{pooling, Encoder, MultiTask};
use std::collections::BTreeMap;
use tch::{Device, Kind, Tensor};

/// How inputs are cut into forward passes.
#[derive(Debug, Clone, Copy)]
pub struct Batching {
    /// Most sentences per forward pass.
    pub batch_size: usize,
    /// Most padded tokens (rows times the longest row) per forward pass, if set: short texts then
    /// go in large batches and long ones in small batches, so each matrix multiply has about the
    /// same number of rows.
    pub token_budget: Option<usize>,
    /// The tokenizer's `[PAD]` id.
    pub pad_id: i64,
}

impl Batching {
    /// `batch_size` sentences per forward pass, no token budget.
    pub fn fixed(batch_size: usize, pad_id: i64) -> Self {
        Batching { batch_size, token_budget: None, pad_id }
    }
}

/// Runs `f` on length-sorted, dynamically padded batches of `ids` on `device` and gathers each of
/// its outputs (`[batch, widths[k]]`) into an `[n, widths[k]]` float tensor on the CPU, rows in
/// input order.
pub fn batched(
    ids: &[Vec<i64>],
    b: Batching,
    device: Device,
    widths: &[i64],
    mut f: impl FnMut(&Tensor, &Tensor) -> Vec<Tensor>,
) -> Result<Vec<Tensor>> {
    if b.batch_size == 0 || b.token_budget == Some(0) {
        return Err(invalid("batch size and token budget must be at least 1"));
    }
    let n = ids.len() as i64;
    let mut out: Vec<Tensor> = widths.iter().map(|&w| Tensor::zeros([n, w], (Kind::Float, Device::Cpu))).collect();
    let _guard = tch::no_grad_guard();
    let lens: Vec<usize> = ids.iter().map(Vec::len).collect();
    for rows in padding::length_sorted_batches(&lens, b.batch_size, b.token_budget) {
        let seqs: Vec<&[i64]> = rows.iter().map(|&i| ids[i].as_slice()).collect();
        let (input, mask) = padding::pad(&seqs, b.pad_id, device);
        let index = Tensor::from_slice(&rows.iter().map(|&i| i as i64).collect::<Vec<_>>());
        for (dst, v) in out.iter_mut().zip(f(&input, &mask)) {
            let _ = dst.index_copy_(0, &index, &v.to_kind(Kind::Float).to_device(Device::Cpu));
        }
    }
    Ok(out)
}

/// Pooled sentence vectors `[n, embedding_dim]`, L2-normalised when `normalize`.
pub fn embeddings(encoder: &Encoder, ids: &[Vec<i64>], b: Batching, device: Device, normalize: bool) -> Result<Tensor> {
    let dim = encoder.config().embedding_dim();
    let mut out = batched(ids, b, device, &[dim], |x, m| {
        let v = encoder.embed_t(x, m, false);
        vec![if normalize { pooling::l2_normalize(&v) } else { v }]
    })?;
    Ok(out.remove(0))
}

/// Class probabilities of both tasks: `[n, k_a]` and `[n, k_b]`.
pub fn probabilities(model: &MultiTask, ids: &[Vec<i64>], b: Batching) -> Result<(Tensor, Tensor)> {
    let widths = [model.config.labels_a.len() as i64, model.config.labels_b.len() as i64];
    let mut out = batched(ids, b, model.device(), &widths, |x, m| {
        let l = model.forward_t(x, m, false);
        vec![l.a.softmax(-1, Kind::Float), l.b.softmax(-1, Kind::Float)]
    })?;
    let pb = out.pop().expect("two outputs");
    Ok((out.pop().expect("two outputs"), pb))
}

/// Accuracy, macro-F1 and confusion of each task on the examples that carry its label (tasks
/// without any labelled example are left out).
pub fn evaluate(model: &MultiTask, examples: &[Example], b: Batching) -> Result<BTreeMap<String, TaskMetrics>> {
    let ids: Vec<Vec<i64>> = examples.iter().map(|e| e.ids.clone()).collect();
    let (pa, pb) = probabilities(model, &ids, b)?;
    task_scores(model, examples, &pa, &pb)
}

/// [`evaluate`] from the examples' pooled vectors `[n, dim]` (a frozen encoder's cache): only the
/// heads run, `batch_size` rows at a time.
pub fn evaluate_pooled(model: &MultiTask, examples: &[Example], pooled: &Tensor, batch_size: usize) -> Result<BTreeMap<String, TaskMetrics>> {
    if batch_size == 0 {
        return Err(invalid("batch size must be at least 1"));
    }
    let _guard = tch::no_grad_guard();
    let (mut pa, mut pb) = (Vec::new(), Vec::new());
    for chunk in pooled.split(batch_size as i64, 0) {
        let l = model.heads_t(&chunk, false);
        pa.push(l.a.to_device(Device::Cpu));
        pb.push(l.b.to_device(Device::Cpu));
    }
    task_scores(model, examples, &Tensor::cat(&pa, 0), &Tensor::cat(&pb, 0))
}

/// Per-task metrics from both tasks' scores (probabilities or logits: only the argmax counts).
fn task_scores(model: &MultiTask, examples: &[Example], pa: &Tensor, pb: &Tensor) -> Result<BTreeMap<String, TaskMetrics>> {
    let argmax = |p: &Tensor| -> Result<Vec<i64>> { Ok(Vec::<i64>::try_from(p.argmax(-1, false))?) };
    let (ya, yb) = (argmax(pa)?, argmax(pb)?);
    let mut out = BTreeMap::new();
    for (task, pred, labels) in [(Task::A, &ya, &model.config.labels_a), (Task::B, &yb, &model.config.labels_b)] {
        let (gold, p): (Vec<usize>, Vec<usize>) = examples
            .iter()
            .zip(pred.iter())
            .filter_map(|(e, &p)| if task == Task::A { e.label_a } else { e.label_b }.map(|g| (g, p as usize)))
            .unzip();
        if !gold.is_empty() {
            out.insert(task.key().to_string(), task_metrics(&gold, &p, &labels.0));
        }
    }
    Ok(out)
}

/// Rows of a `[n, d]` float tensor as vectors.
pub fn rows(t: &Tensor) -> Result<Vec<Vec<f32>>> {
    let t = t.to_kind(Kind::Float).to_device(Device::Cpu).contiguous();
    let (n, d) = t.size2()?;
    let flat: Vec<f32> = Vec::<f32>::try_from(t.flatten(0, -1))?;
    Ok((0..n as usize).map(|i| flat[i * d as usize..(i + 1) * d as usize].to_vec()).collect())
}

/// Index of the largest value (the first of ties).
pub fn argmax(v: &[f32]) -> usize {
    v.iter().enumerate().fold(0, |b, (i, &p)| if p > v[b] { i } else { b })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batched_outputs_come_back_in_input_order() {
        let ids = vec![vec![1, 2], vec![1, 2, 3, 4], vec![1], vec![1, 2, 3]];
        let b = Batching::fixed(2, 0);
        // Output per row: its number of real tokens, so the order can be checked.
        let out = batched(&ids, b, Device::Cpu, &[1], |_, m| vec![m.sum_dim_intlist([1].as_slice(), true, Kind::Float)]).unwrap();
        assert_eq!(Vec::<f32>::try_from(out[0].flatten(0, -1)).unwrap(), vec![2., 4., 1., 3.]);
        assert!(batched(&ids, Batching::fixed(0, 0), Device::Cpu, &[1], |_, m| vec![m.shallow_clone()]).is_err());
        assert_eq!(argmax(&[0.1, 0.7, 0.7]), 1);
    }
}

//! Owns batched inference over token ids: one sort–pad–run–copy-back loop, used for embeddings,
//! class probabilities and evaluation by `embed`, `predict`, `eval`, `task2` and the trainer's
//! dev pass. Runs without gradients and with dropout off; rows come back in input order.

use crate::padding;
use crate::data::{Example, Target};
use crate::error::{invalid, Result};
use crate::metrics::{pearson, spearman, task_metrics, SimilarityMetrics, TaskMetrics};
use crate::task::TaskKind;
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
    /// Batches run at once on the CPU, each on its share of libtorch's threads (1 = one at a
    /// time on all of them).
    pub workers: usize,
}

impl Batching {
    /// `batch_size` sentences per forward pass, no token budget, one batch at a time.
    pub fn fixed(batch_size: usize, pad_id: i64) -> Self {
        Batching { batch_size, token_budget: None, pad_id, workers: 1 }
    }
}

/// Runs `f` on length-sorted, dynamically padded batches of `ids` on `device` and gathers each of
/// its outputs (`[batch, widths[k]]`) into an `[n, widths[k]]` float tensor on the CPU, rows in
/// input order. On the CPU with [`Batching::workers`] above 1, that many threads take the
/// batches in turn, each running libtorch on its share of the threads.
pub fn batched(
    ids: &[Vec<i64>],
    b: Batching,
    device: Device,
    widths: &[i64],
    f: impl Fn(&Tensor, &Tensor) -> Vec<Tensor>,
) -> Result<Vec<Tensor>> {
    if b.batch_size == 0 || b.token_budget == Some(0) {
        return Err(invalid("batch size and token budget must be at least 1"));
    }
    let n = ids.len() as i64;
    let mut out: Vec<Tensor> = widths.iter().map(|&w| Tensor::zeros([n, w], (Kind::Float, Device::Cpu))).collect();
    let lens: Vec<usize> = ids.iter().map(Vec::len).collect();
    let batches = padding::length_sorted_batches(&lens, b.batch_size, b.token_budget);
    let run = |rows: &[usize]| -> Vec<Tensor> {
        let seqs: Vec<&[i64]> = rows.iter().map(|&i| ids[i].as_slice()).collect();
        let (input, mask) = padding::pad(&seqs, b.pad_id, device);
        f(&input, &mask).into_iter().map(|v| v.to_kind(Kind::Float).to_device(Device::Cpu)).collect()
    };
    let mut put = |rows: &[usize], values: Vec<Tensor>| {
        let index = Tensor::from_slice(&rows.iter().map(|&i| i as i64).collect::<Vec<_>>());
        for (dst, v) in out.iter_mut().zip(values) {
            let _ = dst.index_copy_(0, &index, &v);
        }
    };
    let workers = b.workers.clamp(1, batches.len().max(1));
    if workers == 1 || device != Device::Cpu {
        let _guard = tch::no_grad_guard();
        for rows in &batches {
            put(rows, run(rows));
        }
        return Ok(out);
    }
    let before = tch::get_num_threads();
    let threads = (before / workers as i32).max(1);
    let next = std::sync::atomic::AtomicUsize::new(0);
    let run = ForwardOnly(&run);
    let done: Vec<Vec<(usize, Vec<Tensor>)>> = std::thread::scope(|scope| {
        let work = || {
            // OpenMP's thread count and autograd's mode are per thread.
            tch::set_num_threads(threads);
            let _guard = tch::no_grad_guard();
            let mut mine = Vec::new();
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some(rows) = batches.get(i) else { break mine };
                mine.push((i, run.get()(rows)));
            }
        };
        let handles: Vec<_> = (1..workers).map(|_| scope.spawn(work)).collect();
        let mut all = vec![work()];
        all.extend(handles.into_iter().map(|h| h.join().expect("an inference worker panicked")));
        all
    });
    tch::set_num_threads(before);
    for (i, values) in done.into_iter().flatten() {
        put(&batches[i], values);
    }
    Ok(out)
}

/// The inference workers (and `mtt serve`'s model workers) by default: two on a CPU with two or
/// more libtorch threads, each running its own batches on half of them; one otherwise and on a
/// GPU. libtorch spreads one batch of a small encoder over two threads poorly: in-process
/// encoding of 2,000 texts ran 1.13-1.24x (fp32) and 1.12-1.61x (int8) faster with two
/// one-thread workers of 512 padded tokens than with one two-thread pass of 1,024 (two sessions
/// of four alternated runs, TREC-6 and SST-3; 2026-12-03, 2-core Intel Xeon with AVX-512 VNNI
/// and BF16; `cargo bench --bench throughput -- workers`).
pub fn default_workers(device: Device, threads: usize) -> usize {
    if device == Device::Cpu && threads >= 2 {
        2
    } else {
        1
    }
}

/// A model (or a forward pass over one) shared by threads that only run inference on it: the
/// inference workers here and `mtt serve`'s model workers.
pub(crate) struct ForwardOnly<T>(pub(crate) T);

impl<T> ForwardOnly<T> {
    /// What is shared (a method, so that closures capture the whole wrapper, not its field).
    pub(crate) fn get(&self) -> &T {
        &self.0
    }
}

// SAFETY: the threads only run forward passes without gradients, which read the model's tensors
// and never change them; libtorch's reads and reference counts are thread-safe (how PyTorch runs
// one module from several inference threads). tch marks `Tensor` `Send` but not `Sync` only
// because it wraps a raw pointer.
unsafe impl<T> Sync for ForwardOnly<T> {}

/// Pooled sentence vectors `[n, embedding_dim]`, L2-normalised when `normalize`.
pub fn embeddings(encoder: &Encoder, ids: &[Vec<i64>], b: Batching, device: Device, normalize: bool) -> Result<Tensor> {
    let dim = encoder.config().embedding_dim();
    let mut out = batched(ids, b, device, &[dim], |x, m| {
        let v = encoder.embed_t(x, m, false);
        vec![if normalize { pooling::l2_normalize(&v) } else { v }]
    })?;
    Ok(out.remove(0))
}

/// Class probabilities of every one-text classification head: `(task index, [n, k])` in task
/// order.
pub fn probabilities(model: &MultiTask, ids: &[Vec<i64>], b: Batching) -> Result<Vec<(usize, Tensor)>> {
    let heads: Vec<(usize, i64)> = model
        .tasks()
        .iter()
        .enumerate()
        .filter(|(_, t)| t.kind == TaskKind::Classification)
        .map(|(i, t)| (i, t.labels.len() as i64))
        .collect();
    let widths: Vec<i64> = heads.iter().map(|&(_, w)| w).collect();
    let out = batched(ids, b, model.device(), &widths, |x, m| {
        let pooled = model.pooled_t(x, m, false);
        model.text_heads_t(&pooled, false).into_iter().map(|(_, l)| l.softmax(-1, Kind::Float)).collect()
    })?;
    Ok(heads.into_iter().map(|(i, _)| i).zip(out).collect())
}

/// Pair tasks' outputs for pairs of pooled vectors `u`, `v` (`[n, dim]` each): class
/// probabilities `[n, k]` for a pair-classification task, cosine similarities `[n]` for a
/// similarity task.
pub fn pair_outputs(model: &MultiTask, t: usize, u: &Tensor, v: &Tensor) -> Tensor {
    let _guard = tch::no_grad_guard();
    match model.logits_t(t, u, Some(v), false) {
        Some(l) => l.softmax(-1, Kind::Float),
        None => Tensor::cosine_similarity(u, v, 1, 1e-8),
    }
}

/// Every task's dev (or test) metrics: classification kinds by accuracy, macro-F1 and
/// confusion; similarity by Spearman and Pearson correlation of the cosines.
#[derive(Debug, Clone, Default)]
pub struct Evaluation {
    /// Classification and pair-classification tasks, keyed by task name.
    pub classes: BTreeMap<String, TaskMetrics>,
    /// Similarity tasks, keyed by task name.
    pub similarity: BTreeMap<String, SimilarityMetrics>,
}

impl Evaluation {
    /// Whether no task had a labelled example.
    pub fn is_empty(&self) -> bool {
        self.classes.is_empty() && self.similarity.is_empty()
    }
}

/// The pooled vectors of every text of `examples` (see [`crate::batch::sequences`]) on the
/// model's device, and each example's second-text row.
pub fn pooled_sequences(model: &MultiTask, examples: &[Example], b: Batching) -> Result<(Tensor, Vec<Option<usize>>)> {
    let (seqs, second) = crate::batch::sequences(examples);
    let ids: Vec<Vec<i64>> = seqs.into_iter().map(<[i64]>::to_vec).collect();
    let dim = model.config.encoder.embedding_dim();
    let t = batched(&ids, b, model.device(), &[dim], |x, m| vec![model.pooled_t(x, m, false)])?.remove(0);
    Ok((t.to_device(model.device()), second))
}

/// Each task's metrics on the examples that carry its target (tasks without any are left out).
pub fn evaluate(model: &MultiTask, examples: &[Example], b: Batching) -> Result<Evaluation> {
    if examples.is_empty() {
        return Ok(Evaluation::default());
    }
    let (pooled, second) = pooled_sequences(model, examples, b)?;
    evaluate_pooled(model, examples, &pooled, &second, b.batch_size)
}

/// [`evaluate`] from the pooled vectors of the examples' texts (a frozen encoder's cache, laid
/// out as [`crate::batch::sequences`] does): only the heads run, `batch_size` rows at a time.
pub fn evaluate_pooled(model: &MultiTask, examples: &[Example], pooled: &Tensor, second: &[Option<usize>], batch_size: usize) -> Result<Evaluation> {
    if batch_size == 0 {
        return Err(invalid("batch size must be at least 1"));
    }
    let _guard = tch::no_grad_guard();
    let mut out = Evaluation::default();
    for (t, info) in model.tasks().iter().enumerate() {
        let rows: Vec<usize> = (0..examples.len()).filter(|&i| examples[i].has(t) && (second[i].is_some() == info.kind.is_pair())).collect();
        if rows.is_empty() {
            continue;
        }
        let mut outputs = Vec::new();
        for chunk in rows.chunks(batch_size) {
            let index = |f: &dyn Fn(usize) -> usize| Tensor::from_slice(&chunk.iter().map(|&i| f(i) as i64).collect::<Vec<_>>()).to_device(pooled.device());
            let u = pooled.index_select(0, &index(&|i| i));
            let o = if info.kind.is_pair() {
                let v = pooled.index_select(0, &index(&|i| second[i].expect("a pair example")));
                pair_outputs(model, t, &u, &v)
            } else {
                model.logits_t(t, &u, None, false).expect("a classification head")
            };
            outputs.push(o.to_device(Device::Cpu));
        }
        let o = Tensor::cat(&outputs, 0);
        if info.kind == TaskKind::Similarity {
            let cos = Vec::<f64>::try_from(o.to_kind(Kind::Double))?;
            let gold: Vec<f64> = rows
                .iter()
                .map(|&i| match examples[i].targets[t] {
                    Some(Target::Score(s)) => s as f64,
                    _ => f64::NAN,
                })
                .collect();
            out.similarity.insert(info.name.clone(), SimilarityMetrics { spearman: spearman(&cos, &gold), pearson: pearson(&cos, &gold), n: rows.len() });
        } else {
            let pred: Vec<usize> = Vec::<i64>::try_from(o.argmax(-1, false))?.into_iter().map(|p| p as usize).collect();
            let gold: Vec<usize> = rows.iter().map(|&i| examples[i].class(t).expect("labelled")).collect();
            out.classes.insert(info.name.clone(), task_metrics(&gold, &pred, &info.labels.0));
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

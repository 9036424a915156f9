//! Owns training batches: the shuffled per-epoch order under each task-sampling scheme (with
//! length bucketing), and the labelled training [`Batch`] (token ids, or cached pooled vectors
//! when the encoder is frozen). Padding and inference batches are [`crate::padding`]'s.

use crate::data::{Example, Target};
use crate::task::{TaskInfo, TaskKind};
use crate::padding::pad;
use crate::error::{invalid, Error, Result};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;
use tch::{Device, Tensor};

/// Label value for "no label for this task" in a batch's target tensor.
pub const IGNORE: i64 = -100;

/// Row indices of one epoch, shuffled deterministically from `seed` and `epoch`, in batches.
pub fn epoch_batches(n: usize, batch_size: usize, seed: u64, epoch: usize) -> Vec<Vec<usize>> {
    let mut order: Vec<usize> = (0..n).collect();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed.wrapping_mul(1_000_003).wrapping_add(epoch as u64));
    order.shuffle(&mut rng);
    order.chunks(batch_size.max(1)).map(<[usize]>::to_vec).collect()
}

/// How a training epoch draws its batches from the tasks.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(into = "String", try_from = "String")]
pub enum TaskSampling {
    /// All rows shuffled together: each batch mixes the tasks in proportion to their data.
    Proportional,
    /// Each batch from one task, taking the tasks in turn (A, B, C, A, ...).
    RoundRobin,
    /// Each batch from one task, drawn with probability proportional to `n_task^(1/T)`: T = 1 is
    /// proportional to the data, large T approaches equal shares.
    Temperature(f64),
}

impl TaskSampling {
    /// The names users type.
    pub const NAMES: [&'static str; 3] = ["proportional", "round-robin", "temperature:T"];
}

impl FromStr for TaskSampling {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        match s {
            "proportional" => Ok(TaskSampling::Proportional),
            "round-robin" => Ok(TaskSampling::RoundRobin),
            _ => {
                let t = s.strip_prefix("temperature:").and_then(|t| t.parse::<f64>().ok()).ok_or_else(|| {
                    invalid(format!("task sampling '{s}': expected proportional, round-robin or temperature:T (T > 0)"))
                })?;
                if !(t.is_finite() && t > 0.0) {
                    return Err(invalid(format!("task sampling temperature {t}: must be finite and > 0")));
                }
                Ok(TaskSampling::Temperature(t))
            }
        }
    }
}

impl fmt::Display for TaskSampling {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TaskSampling::Proportional => f.write_str("proportional"),
            TaskSampling::RoundRobin => f.write_str("round-robin"),
            TaskSampling::Temperature(t) => write!(f, "temperature:{t}"),
        }
    }
}

impl From<TaskSampling> for String {
    fn from(s: TaskSampling) -> String {
        s.to_string()
    }
}

impl TryFrom<String> for TaskSampling {
    type Error = Error;

    fn try_from(s: String) -> Result<Self> {
        s.parse()
    }
}

/// One training batch's rows, and the task it was drawn for (`None`: mixed, every label counts).
#[derive(Debug, Clone, PartialEq)]
pub struct Draw {
    /// Indices of the batch's rows in the epoch's examples.
    pub rows: Vec<usize>,
    /// The task (index) the batch was drawn for (round-robin and temperature sampling): only
    /// its labels count. `None` under proportional sampling.
    pub task: Option<usize>,
}

/// A task's rows, shuffled and dealt out in batches, reshuffled whenever they run out (so a
/// smaller task is revisited within an epoch).
struct Pool {
    rows: Vec<usize>,
    next: usize,
}

impl Pool {
    fn take(&mut self, n: usize, rng: &mut impl Rng) -> Vec<usize> {
        let mut out = Vec::with_capacity(n);
        while out.len() < n.min(self.rows.len()) {
            if self.next == self.rows.len() {
                self.rows.shuffle(rng);
                self.next = 0;
            }
            let k = (n - out.len()).min(self.rows.len() - self.next);
            out.extend_from_slice(&self.rows[self.next..self.next + k]);
            self.next += k;
        }
        out
    }
}

/// Batches per bucketing window: the shuffled rows are cut into windows of this many batches,
/// each window sorted by length and cut into batches, and the batches shuffled.
pub const BUCKET_WINDOW_BATCHES: usize = 50;

/// Width in tokens of the length bins that rows of the shorter groups are sorted by (see
/// [`bucketed_batches`]).
pub const BUCKET_BIN_TOKENS: usize = 16;

/// One epoch's row indices in length-bucketed batches: every row exactly once, rows of similar
/// token length together (less padding), the batch order shuffled; deterministic in `seed` and
/// `epoch`.
///
/// `strata[i]` is row `i`'s group (which tasks it is labelled for, as a bit set). Bucketing keeps each batch's
/// mix of groups what a random batch would have: inside a window every group is sorted on its
/// own, the groups are merged by relative rank and cut into batches, so every batch holds a run
/// from each group in the groups' proportion. Sorting the window as a whole would instead put
/// short questions and long reviews in different batches, turning mixed batches into
/// single-task ones, which halves each task's updates per epoch.
///
/// Only the group with the longest mean length in the window (the one whose rows set each
/// batch's padded length) is sorted by exact length. The other groups are sorted by length bins
/// of [`BUCKET_BIN_TOKENS`] tokens, in random order inside a bin: their short rows rarely set the
/// padded length, and sorting them exactly only makes a batch's rows of that task alike in length
/// and so, where labels follow length (TREC-6 question types do), alike in label. On the bundled
/// data this costs 3% more padded tokens than exact sorting (356k against 346k per epoch; random
/// batches: 656k) and leaves TREC-6 batches as mixed in label as random ones.
pub fn bucketed_batches(lens: &[usize], strata: &[u64], batch_size: usize, seed: u64, epoch: usize) -> Vec<Vec<usize>> {
    assert_eq!(lens.len(), strata.len(), "one stratum per row");
    let bs = batch_size.max(1);
    let mut order: Vec<usize> = (0..lens.len()).collect();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed.wrapping_mul(1_000_003).wrapping_add(epoch as u64) ^ 0xb0c3);
    order.shuffle(&mut rng);
    let mut batches = Vec::with_capacity(lens.len().div_ceil(bs));
    for window in order.chunks(bs * BUCKET_WINDOW_BATCHES) {
        let mut groups: Vec<(u64, Vec<usize>)> = Vec::new();
        for &i in window {
            match groups.iter_mut().find(|(g, _)| *g == strata[i]) {
                Some((_, rows)) => rows.push(i),
                None => groups.push((strata[i], vec![i])),
            }
        }
        groups.sort_unstable_by_key(|(g, _)| *g);
        // The pacing group: the longest mean length (compared as total * other count, exactly).
        let total = |rows: &[usize]| rows.iter().map(|&i| lens[i]).sum::<usize>();
        let pace = (0..groups.len())
            .max_by(|&x, &y| {
                let (gx, gy) = (&groups[x].1, &groups[y].1);
                (total(gx) * gy.len()).cmp(&(total(gy) * gx.len())).then(y.cmp(&x))
            })
            .unwrap_or(0);
        // Each row's place within its group's order, as a fraction; merging the groups on it and
        // cutting into batches gives every batch its share of each group. The sorts are stable,
        // so rows of one bin stay in their shuffled order.
        let mut placed: Vec<(f64, usize)> = Vec::with_capacity(window.len());
        for (k, (_, mut rows)) in groups.into_iter().enumerate() {
            if k == pace {
                rows.sort_by_key(|&i| lens[i]);
            } else {
                rows.sort_by_key(|&i| lens[i] / BUCKET_BIN_TOKENS);
            }
            let n = rows.len() as f64;
            placed.extend(rows.into_iter().enumerate().map(|(r, i)| ((r as f64 + 0.5) / n, i)));
        }
        placed.sort_by(|x, y| x.0.total_cmp(&y.0));
        let merged: Vec<usize> = placed.into_iter().map(|(_, i)| i).collect();
        batches.extend(merged.chunks(bs).map(<[usize]>::to_vec));
    }
    batches.shuffle(&mut rng);
    batches
}

/// One epoch's batches under `sampling`, deterministic in `seed` and `epoch`. `labelled[i]` is
/// the set of tasks row `i` has a target for (bit `t` for task `t`). Every scheme yields as many
/// batches as the mixed one (`ceil(n / batch_size)`, or a few more when bucketing leaves short
/// batches at window ends); per-task schemes take a batch's rows from one task only. `bucket_lens`
/// (the rows' token lengths) turns on length bucketing for the proportional scheme.
pub fn sampled_batches(
    labelled: &[u64],
    batch_size: usize,
    seed: u64,
    epoch: usize,
    sampling: TaskSampling,
    bucket_lens: Option<&[usize]>,
) -> Vec<Draw> {
    if sampling == TaskSampling::Proportional {
        let batches = match bucket_lens {
            Some(lens) => bucketed_batches(lens, labelled, batch_size, seed, epoch),
            None => epoch_batches(labelled.len(), batch_size, seed, epoch),
        };
        return batches.into_iter().map(|rows| Draw { rows, task: None }).collect();
    }
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed.wrapping_mul(1_000_003).wrapping_add(epoch as u64) ^ 0x5eed);
    let n_tasks = labelled.iter().map(|&m| 64 - m.leading_zeros() as usize).max().unwrap_or(0);
    let mut pools: Vec<Pool> = (0..n_tasks)
        .map(|t| {
            let mut rows: Vec<usize> = (0..labelled.len()).filter(|&i| labelled[i] >> t & 1 == 1).collect();
            rows.shuffle(&mut rng);
            Pool { rows, next: 0 }
        })
        .collect();
    let live: Vec<usize> = (0..n_tasks).filter(|&t| !pools[t].rows.is_empty()).collect();
    if live.is_empty() {
        return vec![];
    }
    let n_batches = labelled.len().div_ceil(batch_size.max(1));
    let mut out = Vec::with_capacity(n_batches);
    for i in 0..n_batches {
        let t = if live.len() == 1 {
            live[0]
        } else {
            match sampling {
                TaskSampling::RoundRobin => live[i % live.len()],
                TaskSampling::Temperature(temp) => {
                    let w: Vec<f64> = live.iter().map(|&t| (pools[t].rows.len() as f64).powf(1.0 / temp)).collect();
                    let r = rng.gen::<f64>() * w.iter().sum::<f64>();
                    let mut acc = 0.0;
                    let mut pick = *live.last().expect("live tasks");
                    for (k, &t) in live.iter().enumerate() {
                        acc += w[k];
                        if r < acc {
                            pick = t;
                            break;
                        }
                    }
                    pick
                }
                TaskSampling::Proportional => unreachable!("handled above"),
            }
        };
        let rows = pools[t].take(batch_size.max(1), &mut rng);
        if !rows.is_empty() {
            out.push(Draw { rows, task: Some(t) });
        }
    }
    out
}

/// One epoch's draws over `examples` under `sampling` (see [`sampled_batches`]), length-bucketed
/// by the examples' token counts (both texts of a pair) when `bucketing` is on: what `mtt train`
/// and the training bench feed the model.
pub fn epoch_draws(examples: &[Example], batch_size: usize, seed: u64, epoch: usize, sampling: TaskSampling, bucketing: bool) -> Vec<Draw> {
    let labelled: Vec<u64> = examples.iter().map(Example::task_bits).collect();
    let lens: Vec<usize> = examples.iter().map(|e| e.ids.len().max(e.ids_b.as_ref().map_or(0, Vec::len))).collect();
    sampled_batches(&labelled, batch_size, seed, epoch, sampling, bucketing.then_some(lens.as_slice()))
}

/// What a training batch feeds the model.
pub enum Inputs {
    /// `[batch, seq]` token ids and attention mask (1 = token).
    Tokens {
        /// `[batch, seq]` token ids (int64), padded with `[PAD]` to the batch's longest row.
        ids: Tensor,
        /// `[batch, seq]` attention mask (int64): 1 on tokens, 0 on padding.
        mask: Tensor,
    },
    /// `[batch, dim]` pooled vectors from a frozen encoder's cache.
    Pooled(Tensor),
}

/// One task's share of a training batch: which of the batch's sequences it reads and its
/// targets.
pub struct TaskPart {
    /// The task's index in the model.
    pub task: usize,
    /// Its kind.
    pub kind: TaskKind,
    /// `[k]` indices of the first (or only) texts among the batch's sequences.
    pub u: Tensor,
    /// Pair kinds: `[k]` indices of the second texts.
    pub v: Option<Tensor>,
    /// `[k]` class indices (int64, [`IGNORE`] where a row has none) or similarity scores
    /// rescaled to [0, 1] (float).
    pub target: Tensor,
    /// Rows with a target that counts.
    pub n: usize,
}

/// A training batch on the model's device.
pub struct Batch {
    /// Token ids and mask, or cached pooled vectors, of the batch's sequences: the rows' (first)
    /// texts in draw order, then the second texts of its pair rows.
    pub inputs: Inputs,
    /// Each task with at least one target in the batch, in task order.
    pub parts: Vec<TaskPart>,
    /// Rows in the batch, labelled or not.
    pub size: usize,
}

impl Batch {
    /// Rows of task `t` that count in this batch (0 if it has none).
    pub fn n(&self, t: usize) -> usize {
        self.parts.iter().find(|p| p.task == t).map_or(0, |p| p.n)
    }
}

/// Where a training batch's inputs come from.
#[derive(Clone, Copy)]
pub enum Source<'a> {
    /// Token ids, padded with this `[PAD]` id.
    Tokens {
        /// The tokenizer's `[PAD]` id.
        pad_id: i64,
    },
    /// Cached pooled vectors on the model's device (see [`sequences`]).
    Cache {
        /// `[n_sequences, dim]`: the examples' first texts, then their second texts.
        all: &'a Tensor,
        /// Each example's second text's row in `all`, for pair examples.
        second: &'a [Option<usize>],
    },
}

/// Every text of `examples` in the order a cache holds them: the first texts of all examples,
/// then the second texts of pair examples; and each example's second-text position.
pub fn sequences(examples: &[Example]) -> (Vec<&[i64]>, Vec<Option<usize>>) {
    let mut seqs: Vec<&[i64]> = examples.iter().map(|e| e.ids.as_slice()).collect();
    let mut second = Vec::with_capacity(examples.len());
    for e in examples {
        second.push(e.ids_b.as_ref().map(|b| {
            seqs.push(b);
            seqs.len() - 1
        }));
    }
    (seqs, second)
}

/// A similarity score rescaled from `range` to [0, 1].
pub fn rescale(score: f32, range: [f64; 2]) -> f32 {
    ((score as f64 - range[0]) / (range[1] - range[0])) as f32
}

/// The batch of `draw`'s rows of `data` for a model with `tasks`: padded token ids or cached
/// vectors, and each task's targets (only the drawn task's when the draw is for one task).
pub fn make_batch(data: &[Example], draw: &Draw, tasks: &[TaskInfo], source: Source, device: Device) -> Batch {
    let rows = &draw.rows;
    // Sequence positions: the rows' first texts, then the pair rows' second texts.
    let mut second_pos = vec![None; rows.len()];
    let mut next = rows.len();
    for (k, &i) in rows.iter().enumerate() {
        if data[i].ids_b.is_some() {
            second_pos[k] = Some(next);
            next += 1;
        }
    }
    let inputs = match source {
        Source::Tokens { pad_id } => {
            let mut seqs: Vec<&[i64]> = rows.iter().map(|&i| data[i].ids.as_slice()).collect();
            seqs.extend(rows.iter().filter_map(|&i| data[i].ids_b.as_deref()));
            let (ids, mask) = pad(&seqs, pad_id, device);
            Inputs::Tokens { ids, mask }
        }
        Source::Cache { all, second } => {
            let mut index: Vec<i64> = rows.iter().map(|&i| i as i64).collect();
            index.extend(rows.iter().filter_map(|&i| second[i].map(|j| j as i64)));
            let index = Tensor::from_slice(&index).to_device(all.device());
            Inputs::Pooled(all.index_select(0, &index))
        }
    };
    let idx = |v: &[i64]| Tensor::from_slice(v).to_device(device);
    let mut parts = Vec::new();
    for (t, info) in tasks.iter().enumerate() {
        if draw.task.is_some_and(|d| d != t) {
            continue;
        }
        match info.kind {
            TaskKind::Classification => {
                // Every one-text row, the ones without this task's label ignored (as the seed's
                // two heads read the whole batch).
                let (mut u, mut y) = (Vec::new(), Vec::new());
                for (k, &i) in rows.iter().enumerate() {
                    if data[i].ids_b.is_none() {
                        u.push(k as i64);
                        y.push(data[i].class(t).map_or(IGNORE, |c| c as i64));
                    }
                }
                let n = y.iter().filter(|&&l| l != IGNORE).count();
                if n > 0 {
                    parts.push(TaskPart { task: t, kind: info.kind, u: idx(&u), v: None, target: idx(&y), n });
                }
            }
            TaskKind::PairClassification | TaskKind::Similarity => {
                let (mut u, mut v, mut classes, mut scores) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
                for (k, &i) in rows.iter().enumerate() {
                    let (Some(target), Some(j)) = (data[i].targets.get(t).copied().flatten(), second_pos[k]) else { continue };
                    u.push(k as i64);
                    v.push(j as i64);
                    match target {
                        Target::Class(c) => classes.push(c as i64),
                        Target::Score(s) => scores.push(rescale(s, info.score_range.unwrap_or([0.0, 1.0]))),
                    }
                }
                if u.is_empty() {
                    continue;
                }
                let target = if info.kind == TaskKind::Similarity { Tensor::from_slice(&scores).to_device(device) } else { idx(&classes) };
                parts.push(TaskPart { task: t, kind: info.kind, n: u.len(), u: idx(&u), v: Some(idx(&v)), target });
            }
        }
    }
    Batch { inputs, parts, size: rows.len() }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::Labels;

    /// Row labelled for Task A / Task B, as a task bit set.
    fn bits(a: bool, b: bool) -> u64 {
        u64::from(a) | (u64::from(b) << 1)
    }

    fn ex(ids: Vec<i64>, a: Option<usize>, b: Option<usize>) -> Example {
        let mut e = Example::text("", ids, 2);
        e.targets = vec![a.map(Target::Class), b.map(Target::Class)];
        e
    }

    fn two_tasks() -> Vec<TaskInfo> {
        let l = |n: usize| Labels((0..n).map(|i| i.to_string()).collect());
        crate::task::seed_tasks(l(6), l(3))
    }

    fn part(b: &Batch, t: usize) -> Vec<i64> {
        b.parts.iter().find(|p| p.task == t).map(|p| Vec::<i64>::try_from(&p.target).unwrap()).unwrap_or_default()
    }

    #[test]
    fn shuffling_is_deterministic_per_seed_and_epoch() {
        assert_eq!(epoch_batches(10, 3, 7, 0), epoch_batches(10, 3, 7, 0));
        assert_ne!(epoch_batches(10, 3, 7, 0), epoch_batches(10, 3, 7, 1));
        let mut all: Vec<usize> = epoch_batches(10, 3, 7, 0).concat();
        all.sort();
        assert_eq!(all, (0..10).collect::<Vec<_>>());
    }

    #[test]
    fn training_batches_mark_missing_labels() {
        let data = vec![ex(vec![2, 9, 3], Some(1), None), ex(vec![2, 9, 3], None, Some(2)), ex(vec![2, 9, 3], Some(0), Some(0))];
        let tokens = Source::Tokens { pad_id: 0 };
        let tasks = two_tasks();
        let b = make_batch(&data, &Draw { rows: vec![0, 1, 2], task: None }, &tasks, tokens, Device::Cpu);
        assert_eq!((b.n(0), b.n(1), b.size), (2, 2, 3));
        assert_eq!(part(&b, 0), vec![1, IGNORE, 0]);
        assert_eq!(part(&b, 1), vec![IGNORE, 2, 0]);
        // A draw for Task A ignores the Task B label of a joint row.
        let b = make_batch(&data, &Draw { rows: vec![2, 0], task: Some(0) }, &tasks, tokens, Device::Cpu);
        assert_eq!((b.n(0), b.n(1)), (2, 0));
        assert!(part(&b, 1).is_empty());
        // Cached vectors: the rows' vectors in draw order.
        let cache = Tensor::from_slice(&[0f32, 1., 2.]).view([3, 1]);
        let second = vec![None; 3];
        let b = make_batch(&data, &Draw { rows: vec![2, 0], task: None }, &tasks, Source::Cache { all: &cache, second: &second }, Device::Cpu);
        let Inputs::Pooled(p) = &b.inputs else { panic!("cached batch") };
        assert_eq!(Vec::<f32>::try_from(p.flatten(0, -1)).unwrap(), vec![2., 0.]);
    }

    #[test]
    fn bucketing_uses_every_row_once_and_groups_similar_lengths() {
        let lens: Vec<usize> = (0..1000).map(|i| (i * 37) % 61 + 3).collect();
        let one = vec![0u64; 1000];
        let b = bucketed_batches(&lens, &one, 8, 5, 2);
        let mut all: Vec<usize> = b.concat();
        all.sort();
        assert_eq!(all, (0..1000).collect::<Vec<_>>(), "every row exactly once");
        assert_eq!(b, bucketed_batches(&lens, &one, 8, 5, 2), "deterministic");
        assert_ne!(b, bucketed_batches(&lens, &one, 8, 5, 3), "another epoch, another order");
        // Padding: the longest row of each batch over the rows' own lengths.
        let padded = |bs: &[Vec<usize>]| -> f64 {
            let pad: usize = bs.iter().map(|r| r.iter().map(|&i| lens[i]).max().unwrap() * r.len()).sum();
            pad as f64 / lens.iter().sum::<usize>() as f64
        };
        let (bucketed, random) = (padded(&b), padded(&epoch_batches(1000, 8, 5, 2)));
        assert!(bucketed < 1.1 && random > 1.4, "padding factor bucketed {bucketed:.2}, random {random:.2}");
        let draws = sampled_batches(&vec![bits(true, false); 1000], 8, 5, 2, TaskSampling::Proportional, Some(&lens));
        assert_eq!(draws.iter().map(|d| d.rows.clone()).collect::<Vec<_>>(), b);
    }

    #[test]
    fn bucketed_training_batches_carry_each_row_once_with_its_own_tokens_and_labels() {
        // Row i: tokens [101, i, i, ..., 102] of a length that varies with i; Task A label i % 6
        // on two rows in three, Task B label i % 3 on the others.
        let data: Vec<Example> = (0..500)
            .map(|i| {
                let mut ids = vec![101];
                ids.extend(std::iter::repeat(1000 + i as i64).take(1 + (i * 7) % 40));
                ids.push(102);
                let a = i % 3 != 2;
                ex(ids, a.then_some(i % 6), (!a).then_some(i % 3))
            })
            .collect();
        let labelled: Vec<u64> = data.iter().map(Example::task_bits).collect();
        let lens: Vec<usize> = data.iter().map(|e| e.ids.len()).collect();
        let mut seen = vec![0usize; data.len()];
        for draw in sampled_batches(&labelled, 32, 4, 1, TaskSampling::Proportional, Some(&lens)) {
            let b = make_batch(&data, &draw, &two_tasks(), Source::Tokens { pad_id: 0 }, Device::Cpu);
            let Inputs::Tokens { ids, mask } = &b.inputs else { panic!("token inputs") };
            let (ids, mask) = (Vec::<Vec<i64>>::try_from(ids).unwrap(), Vec::<Vec<i64>>::try_from(mask).unwrap());
            let (la, lb) = (part(&b, 0), part(&b, 1));
            for (k, &i) in draw.rows.iter().enumerate() {
                seen[i] += 1;
                let n = mask[k].iter().sum::<i64>() as usize;
                assert_eq!(ids[k][..n], data[i].ids[..], "row {i}: its own tokens");
                assert!(ids[k][n..].iter().all(|&t| t == 0), "row {i}: then padding");
                assert_eq!(la[k], data[i].class(0).map_or(IGNORE, |l| l as i64), "row {i}: Task A label");
                assert_eq!(lb[k], data[i].class(1).map_or(IGNORE, |l| l as i64), "row {i}: Task B label");
            }
        }
        assert!(seen.iter().all(|&c| c == 1), "every row exactly once per epoch");
    }

    #[test]
    fn bucketing_keeps_the_task_mix_of_random_batches() {
        // 600 short Task A rows and 300 long Task B rows: sorting them together would make
        // single-task batches; each bucketed batch must hold both, in the 2:1 proportion.
        let labelled: Vec<u64> = (0..900).map(|i| bits(i % 3 != 2, i % 3 == 2)).collect();
        let lens: Vec<usize> = (0..900).map(|i| if i % 3 == 2 { 30 + i % 17 } else { 5 + i % 7 }).collect();
        let draws = sampled_batches(&labelled, 12, 9, 0, TaskSampling::Proportional, Some(&lens));
        let mut all: Vec<usize> = draws.iter().flat_map(|d| d.rows.clone()).collect();
        all.sort();
        assert_eq!(all, (0..900).collect::<Vec<_>>(), "every row exactly once");
        assert_eq!(draws.len(), 75);
        for d in &draws {
            assert_eq!(d.task, None, "mixed batches: both labels count");
            let b = d.rows.iter().filter(|&&i| labelled[i] & 2 != 0).count();
            assert!((3..=5).contains(&b) && d.rows.len() == 12, "batch of {} rows with {b} Task B rows", d.rows.len());
        }
        // The long Task B rows set each batch's padded length and are sorted exactly: their
        // lengths inside a batch spread far less than in random batches. The short Task A rows
        // (5-11 tokens, one length bin) keep their random order, so a batch's Task A rows spread
        // over lengths as in random batches (where labels follow length, they stay mixed too).
        let spread = |draws: &[Vec<usize>], task_b: bool| -> usize {
            draws.iter().filter_map(|r| {
                let l: Vec<usize> = r.iter().filter(|&&i| (labelled[i] & 2 != 0) == task_b).map(|&i| lens[i]).collect();
                Some(l.iter().max()? - l.iter().min()?)
            }).sum()
        };
        let rows: Vec<Vec<usize>> = draws.iter().map(|d| d.rows.clone()).collect();
        let random = epoch_batches(900, 12, 9, 0);
        assert!(spread(&rows, true) * 3 < spread(&random, true), "task B: {} vs {}", spread(&rows, true), spread(&random, true));
        let (a, a_random) = (spread(&rows, false) as f64, spread(&random, false) as f64);
        assert!(a > 0.8 * a_random, "task A rows keep a random batch's length spread: {a} vs {a_random}");
        // Padding is set by the sorted Task B rows: each batch's longest row is one of them, so
        // unsorted Task A rows add no padding.
        for r in &rows {
            let longest = |b: bool| r.iter().filter(|&&i| (labelled[i] & 2 != 0) == b).map(|&i| lens[i]).max().unwrap();
            assert!(longest(true) > longest(false), "batch {r:?}: its longest row is a Task B row");
        }
        let padded = |bs: &[Vec<usize>]| bs.iter().map(|r| r.iter().map(|&i| lens[i]).max().unwrap() * r.len()).sum::<usize>();
        assert!(padded(&rows) < padded(&random), "padded tokens {} vs random {}", padded(&rows), padded(&random));
    }

    #[test]
    fn shorter_groups_are_sorted_by_length_bins_only() {
        // Group 1 (longer on average) is sorted exactly; group 0's rows of 3-40 tokens fall into
        // bins of 16 tokens: inside a batch its rows share a bin, and in a window a bin's rows
        // keep their shuffled order.
        let n = 1600;
        let strata: Vec<u64> = (0..n).map(|i| u64::from(i % 2 == 1)).collect();
        let lens: Vec<usize> = (0..n).map(|i| if i % 2 == 1 { 20 + (i * 13) % 41 } else { 3 + (i * 7) % 38 }).collect();
        let batches = bucketed_batches(&lens, &strata, 16, 3, 0);
        let mut all = batches.concat();
        all.sort();
        assert_eq!(all, (0..n).collect::<Vec<_>>(), "every row exactly once");
        let mut unsorted = 0;
        for b in &batches {
            let g0: Vec<usize> = b.iter().filter(|&&i| strata[i] == 0).map(|&i| lens[i]).collect();
            let bins: Vec<usize> = g0.iter().map(|l| l / BUCKET_BIN_TOKENS).collect();
            assert!(bins.iter().max().unwrap() - bins.iter().min().unwrap() <= 1, "group 0 rows span at most two adjacent bins: {g0:?}");
            unsorted += usize::from(g0.windows(2).any(|w| w[0] > w[1]) && g0.windows(2).any(|w| w[0] < w[1]));
            let g1: Vec<usize> = b.iter().filter(|&&i| strata[i] == 1).map(|&i| lens[i]).collect();
            assert!(g1.iter().max().unwrap() - g1.iter().min().unwrap() <= 3, "group 1 rows of nearly one length: {g1:?}");
        }
        assert!(unsorted * 2 > batches.len(), "group 0 rows are not in length order inside most batches ({unsorted} of {})", batches.len());
    }

    #[test]
    fn task_sampling_schemes() {
        // 30 rows: 20 Task A only, 10 Task B only.
        let labelled: Vec<u64> = (0..30).map(|i| bits(i < 20, i >= 20)).collect();
        let mixed = sampled_batches(&labelled, 4, 1, 0, TaskSampling::Proportional, None);
        assert_eq!(mixed.len(), 8);
        assert!(mixed.iter().all(|d| d.task.is_none()));
        let rr = sampled_batches(&labelled, 4, 1, 0, TaskSampling::RoundRobin, None);
        assert_eq!(rr.len(), 8);
        for (i, d) in rr.iter().enumerate() {
            let want = i % 2;
            assert_eq!(d.task, Some(want));
            assert_eq!(d.rows.len(), 4);
            assert!(d.rows.iter().all(|&r| (r < 20) == (want == 0)), "rows of the drawn task only");
        }
        // Task B (10 rows) was dealt 16: every row at least once, then reshuffled.
        let b_rows: std::collections::BTreeSet<usize> = rr.iter().filter(|d| d.task == Some(1)).flat_map(|d| d.rows.clone()).collect();
        assert_eq!(b_rows.len(), 10);
        assert_eq!(rr, sampled_batches(&labelled, 4, 1, 0, TaskSampling::RoundRobin, None), "deterministic");
        // Temperature: T = 1 follows the data (2:1), a large T approaches 1:1.
        let share_a = |t: f64| {
            let n: usize = (0..200).map(|e| sampled_batches(&labelled, 4, 3, e, TaskSampling::Temperature(t), None).iter().filter(|d| d.task == Some(0)).count()).sum();
            n as f64 / (200.0 * 8.0)
        };
        let (p1, p100) = (share_a(1.0), share_a(100.0));
        assert!((p1 - 2.0 / 3.0).abs() < 0.04, "T=1 share of A {p1}");
        assert!((p100 - 0.5).abs() < 0.04, "T=100 share of A {p100}");
        // One task without rows: every batch from the other.
        let only_a: Vec<u64> = (0..9).map(|_| bits(true, false)).collect();
        assert!(sampled_batches(&only_a, 4, 0, 0, TaskSampling::RoundRobin, None).iter().all(|d| d.task == Some(0)));
        assert_eq!("temperature:2".parse::<TaskSampling>().unwrap(), TaskSampling::Temperature(2.0));
        assert_eq!(TaskSampling::Temperature(2.0).to_string(), "temperature:2");
        assert!("temperature:0".parse::<TaskSampling>().is_err());
        assert!("roundrobin".parse::<TaskSampling>().unwrap_err().to_string().contains("round-robin"));
    }

    #[test]
    fn pair_rows_add_their_second_texts_after_the_first_ones() {
        // Task 0 classification, task 1 pair-classification, task 2 similarity (range 0-5).
        let tasks = vec![
            TaskInfo::classes("a", TaskKind::Classification, Labels(vec!["x".into(), "y".into()])),
            TaskInfo::classes("p", TaskKind::PairClassification, Labels(vec!["no".into(), "yes".into()])),
            TaskInfo { name: "s".into(), kind: TaskKind::Similarity, labels: Labels::default(), score_range: Some([0.0, 5.0]) },
        ];
        let mut one = Example::text("", vec![2, 7, 3], 3);
        one.targets[0] = Some(Target::Class(1));
        let pair = |first: i64, second: i64, t: usize, target: Target| {
            let mut e = Example::text("", vec![2, first, 3], 3);
            e.ids_b = Some(vec![2, second, second, 3]);
            e.targets[t] = Some(target);
            e
        };
        let data = vec![one, pair(10, 11, 1, Target::Class(1)), pair(20, 21, 2, Target::Score(4.0))];
        let b = make_batch(&data, &Draw { rows: vec![2, 0, 1], task: None }, &tasks, Source::Tokens { pad_id: 0 }, Device::Cpu);
        let Inputs::Tokens { ids, .. } = &b.inputs else { panic!("token inputs") };
        let ids = Vec::<Vec<i64>>::try_from(ids).unwrap();
        // Sequences: the rows' first texts in draw order, then the pairs' second texts.
        let firsts: Vec<i64> = ids.iter().map(|r| r[1]).collect();
        assert_eq!(firsts, [20, 7, 10, 21, 11]);
        let v = |t: &Tensor| Vec::<i64>::try_from(t).unwrap();
        let part = |t: usize| b.parts.iter().find(|p| p.task == t).unwrap();
        assert_eq!((v(&part(0).u), v(&part(0).target), part(0).n), (vec![1], vec![1], 1));
        assert_eq!((v(&part(1).u), v(part(1).v.as_ref().unwrap()), v(&part(1).target)), (vec![2], vec![4], vec![1]));
        assert_eq!((v(&part(2).u), v(part(2).v.as_ref().unwrap())), (vec![0], vec![3]));
        assert_eq!(Vec::<f32>::try_from(&part(2).target).unwrap(), [0.8], "4 on 0-5 is 0.8");
        // The cache holds the same layout: first texts, then second texts in example order.
        let (seqs, second) = sequences(&data);
        assert_eq!((seqs.len(), second.clone()), (5, vec![None, Some(3), Some(4)]));
        let all = Tensor::from_slice(&[0f32, 1., 2., 3., 4.]).view([5, 1]);
        let b = make_batch(&data, &Draw { rows: vec![2, 0, 1], task: None }, &tasks, Source::Cache { all: &all, second: &second }, Device::Cpu);
        let Inputs::Pooled(p) = &b.inputs else { panic!("cached batch") };
        assert_eq!(Vec::<f32>::try_from(p.flatten(0, -1)).unwrap(), [2., 0., 1., 4., 3.]);
        // Round-robin takes the three tasks in turn.
        let labelled: Vec<u64> = (0..30).map(|i| 1 << (i % 3)).collect();
        let rr = sampled_batches(&labelled, 2, 0, 0, TaskSampling::RoundRobin, None);
        assert_eq!(rr.iter().take(6).map(|d| d.task.unwrap()).collect::<Vec<_>>(), [0, 1, 2, 0, 1, 2]);
        assert!(rr.iter().all(|d| d.rows.iter().all(|&r| r % 3 == d.task.unwrap())));
    }
}

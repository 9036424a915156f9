//! The model thread: the [`Engine`] (a base encoder or a multi-task checkpoint), the jobs the
//! handlers queue, and the batching of all waiting jobs' texts by length under a token budget.

use super::*;

/// One text's probabilities of Task A and Task B.
pub(super) type TaskProbs = Vec<Vec<f32>>;

/// A pair task of the served model, for `/similarity`.
#[derive(Debug, Clone)]
pub struct PairTask {
    /// The task's name.
    pub name: String,
    /// Its labels (empty for a similarity task).
    pub labels: Vec<String>,
    /// A pair-classification head: its weight `[k, 3 * dim]` (row-major) and bias `[k]`;
    /// `None` for a similarity task (the cosine is its prediction).
    pub head: Option<(Vec<f32>, Vec<f32>)>,
}

impl PairTask {
    /// Class probabilities of the head on the pair's pooled vectors `u`, `v`: softmax of
    /// `W (u, v, |u - v|) + b`.
    pub fn probabilities(&self, u: &[f32], v: &[f32]) -> Vec<f32> {
        let Some((w, b)) = &self.head else { return vec![] };
        let x: Vec<f32> = u.iter().chain(v).copied().chain(u.iter().zip(v).map(|(a, c)| (a - c).abs())).collect();
        let logits: Vec<f32> = b.iter().enumerate().map(|(k, bias)| bias + w[k * x.len()..(k + 1) * x.len()].iter().zip(&x).map(|(a, c)| a * c).sum::<f32>()).collect();
        let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let e: Vec<f32> = logits.iter().map(|l| (l - max).exp()).collect();
        let sum: f32 = e.iter().sum();
        e.into_iter().map(|x| x / sum).collect()
    }
}

/// The cosine similarity of two vectors (0 when either is zero).
pub fn cosine(u: &[f32], v: &[f32]) -> f32 {
    let dot: f32 = u.iter().zip(v).map(|(a, b)| a * b).sum();
    let n = (u.iter().map(|a| a * a).sum::<f32>() * v.iter().map(|b| b * b).sum::<f32>()).sqrt();
    if n > 0.0 {
        dot / n
    } else {
        0.0
    }
}

/// What the model thread computes for one request.
pub(super) enum Output {
    Embeddings(Vec<Vec<f32>>),
    Probabilities(Vec<TaskProbs>),
}

pub(super) struct Job {
    /// [`Route::Predict`] for both heads' probabilities, [`Route::Embed`] for vectors.
    pub(super) route: Route,
    /// Each text's token ids (`[CLS] ... [SEP]`), tokenized by the handler.
    pub(super) ids: Vec<Vec<i64>>,
    pub(super) normalize: bool,
    pub(super) reply: oneshot::Sender<std::result::Result<Output, String>>,
}

/// The model the service runs: a base encoder (embeddings only) or a multi-task checkpoint.
pub enum Engine {
    /// A sentence-transformers folder: `/embed` only (`/predict` answers 404).
    Base(Box<SentenceEncoder>),
    /// A multi-task checkpoint: `/embed` from its fine-tuned encoder, and `/predict`.
    Multi(Box<Classifier>),
}

impl Engine {
    /// A sentence-transformers folder or a multi-task checkpoint, its encoder at `precision`.
    pub fn load(dir: &Path, device: Device, precision: crate::precision::Precision) -> Result<Engine> {
        Ok(if MultiTask::is_checkpoint(dir) {
            let mut c = Classifier::load(dir, device)?.0;
            c.set_precision(precision)?;
            Engine::Multi(Box::new(c))
        } else {
            let mut e = SentenceEncoder::load(dir, device)?.0;
            e.set_precision(precision)?;
            Engine::Base(Box::new(e))
        })
    }

    pub(super) fn tokenizer(&self) -> &SentenceTokenizer {
        match self {
            Engine::Base(e) => &e.tokenizer,
            Engine::Multi(c) => &c.tokenizer,
        }
    }

    fn device(&self) -> Device {
        match self {
            Engine::Base(e) => e.params.device(),
            Engine::Multi(c) => c.model.device(),
        }
    }

    /// The longest input in tokens (`max_seq_length`, `[CLS]` and `[SEP]` included).
    pub fn max_seq_length(&self) -> usize {
        self.tokenizer().max_len()
    }

    /// Each one-text classification head's task name and label names, in task order
    /// (multi-task checkpoints only).
    pub fn labels(&self) -> Option<Vec<(String, Vec<String>)>> {
        match self {
            Engine::Base(_) => None,
            Engine::Multi(c) => Some(
                c.model
                    .tasks()
                    .iter()
                    .filter(|t| t.kind == crate::task::TaskKind::Classification)
                    .map(|t| (t.name.clone(), t.labels.0.clone()))
                    .collect(),
            ),
        }
    }

    /// The model's pair tasks: each pair-classification head's weights (copied to the CPU, for
    /// the handlers) and each similarity task.
    pub fn pair_tasks(&self) -> Vec<PairTask> {
        let Engine::Multi(c) = self else { return vec![] };
        let vars: BTreeMap<String, Tensor> = c.model.params().named_variables().into_iter().collect();
        let floats = |name: &str| -> Vec<f32> {
            vars.get(name).map_or_else(Vec::new, |t| Vec::<f32>::try_from(t.to_kind(Kind::Float).to_device(Device::Cpu).flatten(0, -1)).unwrap_or_default())
        };
        c.model
            .tasks()
            .iter()
            .filter(|t| t.kind.is_pair())
            .map(|t| {
                let head = (t.kind == crate::task::TaskKind::PairClassification).then(|| {
                    let subset = t.subset();
                    (floats(&format!("{subset}.weight")), floats(&format!("{subset}.bias")))
                });
                PairTask { name: t.name.clone(), labels: t.labels.0.clone(), head }
            })
            .collect()
    }

    /// Pooled vectors, and every one-text head's probabilities when asked and available.
    fn run(&self, ids: &Tensor, mask: &Tensor, heads: bool) -> (Tensor, Option<Vec<Tensor>>) {
        match self {
            Engine::Base(e) => (e.encoder.embed_t(ids, mask, false), None),
            Engine::Multi(c) => {
                let pooled = c.model.pooled_t(ids, mask, false);
                let probs = heads.then(|| c.model.text_heads_t(&pooled, false).into_iter().map(|(_, l)| l.softmax(-1, Kind::Float)).collect());
                (pooled, probs)
            }
        }
    }
}

/// What the model computed for one row (one text of one job).
pub(super) enum RowResult {
    /// The pooled vector, L2-normalised when its job asked.
    Embedding(Vec<f32>),
    /// Every head's probabilities, in task order.
    Probabilities(TaskProbs),
}

/// One batch's results: one per row, in the batch's row order.
pub(super) struct BatchResult(Vec<RowResult>);

/// A row of the jobs being processed: (job index, text index within the job).
type RowRef = (usize, usize);

/// Runs one batch of rows (`ids` of each job's texts): one encoder pass, and each form of output
/// read back only when a row of the batch asks for it.
fn run_batch(engine: &Engine, jobs: &[Job], batch: &[RowRef]) -> std::result::Result<BatchResult, String> {
    let tok = engine.tokenizer();
    let seqs: Vec<&[i64]> = batch.iter().map(|&(j, r)| jobs[j].ids[r].as_slice()).collect();
    let (x, m) = crate::padding::pad(&seqs, tok.pad_id(), engine.device());
    let wants = |route: Route, normalize: bool| batch.iter().any(|&(j, _)| jobs[j].route == route && jobs[j].normalize == normalize);
    let heads = wants(Route::Predict, false);
    let (pooled, probs) = engine.run(&x, &m, heads);
    let to_rows = |t: &Tensor| crate::infer::rows(&t.to_kind(Kind::Float).to_device(Device::Cpu)).map_err(|e| e.to_string());
    let plain = if wants(Route::Embed, false) { to_rows(&pooled)? } else { vec![] };
    let normal = if wants(Route::Embed, true) { to_rows(&pooling::l2_normalize(&pooled))? } else { vec![] };
    let (mut plain, mut normal) = (plain.into_iter(), normal.into_iter());
    let mut heads_out = match probs {
        Some(ps) => {
            let per_head: Vec<Vec<Vec<f32>>> = ps.iter().map(&to_rows).collect::<std::result::Result<_, String>>()?;
            // Row-major: each batch row's probabilities of every head.
            let rows: Vec<TaskProbs> = (0..batch.len()).map(|r| per_head.iter().map(|h| h[r].clone()).collect()).collect();
            Some(rows.into_iter())
        }
        None => None,
    };
    // Every form has one row per batch row: take each row's from the form it asked for, in order.
    let mut out = Vec::with_capacity(batch.len());
    for &(j, _) in batch {
        let (v, n, h) = (plain.next(), normal.next(), heads_out.as_mut().and_then(Iterator::next));
        out.push(match jobs[j].route {
            Route::Predict => RowResult::Probabilities(h.ok_or("this model has no task heads")?),
            _ => RowResult::Embedding(if jobs[j].normalize { n } else { v }.ok_or("a batch row has no vector")?),
        });
    }
    Ok(BatchResult(out))
}

/// Runs `jobs` through the model: all their rows (token ids, tokenized by the handlers) sorted by
/// length in token-budget batches. Once `stop` is set (the shutdown grace period is over) the
/// batches left are not run.
pub(super) fn process(engine: &Engine, jobs: Vec<Job>, budget: usize, max_padding: f64, metrics: &Metrics, stop: &AtomicBool) {
    let ids: Vec<&Vec<Vec<i64>>> = jobs.iter().map(|j| &j.ids).collect();
    let mut rows: Vec<RowRef> = ids.iter().enumerate().flat_map(|(j, v)| (0..v.len()).map(move |r| (j, r))).collect();
    rows.sort_by_key(|&(j, r)| ids[j][r].len());
    let lens: Vec<usize> = rows.iter().map(|&(j, r)| ids[j][r].len()).collect();
    // Each job's rows, filled in as their batches finish.
    let mut results: Vec<Vec<Option<RowResult>>> = ids.iter().map(|v| v.iter().map(|_| None).collect()).collect();
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| -> std::result::Result<(), String> {
        let _g = tch::no_grad_guard();
        for range in crate::padding::snug_ranges(&lens, budget, max_padding) {
            if stop.load(Ordering::SeqCst) {
                return Err(SHUTTING_DOWN.to_string());
            }
            let batch = &rows[range];
            metrics.observe_batch(batch.len());
            let t0 = std::time::Instant::now();
            let BatchResult(done) = run_batch(engine, &jobs, batch)?;
            metrics.observe_forward(t0.elapsed().as_secs_f64());
            for (&(j, r), result) in batch.iter().zip(done) {
                results[j][r] = Some(result);
            }
        }
        Ok(())
    }));
    let failure = match outcome {
        Ok(Ok(())) => None,
        Ok(Err(e)) => Some(e),
        Err(_) => Some("the model failed on this batch".to_string()),
    };
    for (job, rows) in jobs.into_iter().zip(results) {
        let reply = match &failure {
            Some(e) => Err(e.clone()),
            None => Ok(output_of(job.route, rows)),
        };
        let _ = job.reply.send(reply);
    }
}

/// A job's reply from its rows' results (every row computed, each of the job's kind).
fn output_of(route: Route, rows: Vec<Option<RowResult>>) -> Output {
    let rows = rows.into_iter().map(|r| r.expect("every row computed"));
    match route {
        Route::Predict => Output::Probabilities(
            rows.map(|r| match r {
                RowResult::Probabilities(p) => p,
                RowResult::Embedding(_) => unreachable!("a /predict row holds probabilities"),
            })
            .collect(),
        ),
        _ => Output::Embeddings(
            rows.map(|r| match r {
                RowResult::Embedding(v) => v,
                RowResult::Probabilities(_) => unreachable!("an /embed row holds a vector"),
            })
            .collect(),
        ),
    }
}

pub(super) const SHUTTING_DOWN: &str = "the server is shutting down";

/// A model worker: takes every waiting job (up to the token budget's worth of tokens),
/// runs them together, replies, and repeats until every sender is gone. Once `stop` is set, jobs
/// still queued are refused instead of run, so that the thread ends promptly.
/// With several workers, they share `rx`: one at a time waits for the next job and takes what
/// is queued behind it, then runs its batches while the next worker takes the following jobs.
pub(super) fn model_loop(engine: &Engine, rx: &std::sync::Mutex<mpsc::Receiver<Job>>, budget: usize, max_padding: f64, metrics: &Metrics, stop: &AtomicBool) {
    loop {
        let jobs = {
            // A worker that panicked while holding the lock left the queue itself intact.
            let mut rx = rx.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            let Some(first) = rx.blocking_recv() else { break };
            let mut tokens: usize = first.ids.iter().map(Vec::len).sum();
            let mut jobs = vec![first];
            while tokens < budget {
                match rx.try_recv() {
                    Ok(j) => {
                        tokens += j.ids.iter().map(Vec::len).sum::<usize>();
                        jobs.push(j);
                    }
                    Err(_) => break,
                }
            }
            jobs
        };
        metrics.queue_depth.fetch_sub(jobs.len(), Ordering::SeqCst);
        if stop.load(Ordering::SeqCst) {
            for j in jobs {
                let _ = j.reply.send(Err(SHUTTING_DOWN.to_string()));
            }
            continue;
        }
        process(engine, jobs, budget, max_padding, metrics, stop);
    }
}

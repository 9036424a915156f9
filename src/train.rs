//! Tasks 3 and 4: the training loop. Cross-entropy per task (rows without a label for a task add
//! nothing to that task's loss), summed with optional weights; one optimizer per trainable subset;
//! per-epoch dev accuracy and macro-F1; atomic checkpoints.

use crate::data::{self, Example, Labels, Source, Task};
use crate::device::{device_name, parse_device};
use crate::embed::SentenceEncoder;
use crate::error::{invalid, Error, Result};
use crate::metrics::{task_metrics, TaskMetrics};
use crate::model::MultiTask;
use crate::optim::{learning_rates, Freeze, LrPreset, OptimConfig, Optimizers};
use crate::params::write_atomic;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;
use tch::{Kind, Reduction, Tensor};

/// Everything that defines a training run; saved in the checkpoint's `config.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TrainConfig {
    /// Base sentence-transformers folder (or a multi-task checkpoint to continue from).
    pub model: PathBuf,
    pub out: PathBuf,
    pub task_a: Option<PathBuf>,
    pub task_b: Option<PathBuf>,
    /// Joint files with `text`, `label_a`, `label_b`.
    pub joint: Vec<PathBuf>,
    pub dev_a: Option<PathBuf>,
    pub dev_b: Option<PathBuf>,
    pub dev_joint: Vec<PathBuf>,
    pub freeze: Freeze,
    pub lr_plan: LrPreset,
    pub lr_overrides: Vec<(String, f64)>,
    pub layer_decay: Option<f64>,
    pub optim: OptimConfig,
    pub epochs: usize,
    pub batch_size: usize,
    pub eval_batch_size: usize,
    pub seed: u64,
    pub max_steps: Option<usize>,
    /// Use only the first N rows of each training file.
    pub limit: Option<usize>,
    pub weight_a: f64,
    pub weight_b: f64,
    pub head_dropout: f64,
    pub save_best: bool,
    pub device: String,
}

impl TrainConfig {
    /// Defaults of the seed's Task 3/4 on the bundled data, writing to `out`.
    pub fn new(model: PathBuf, out: PathBuf) -> Self {
        TrainConfig {
            model,
            out,
            task_a: None,
            task_b: None,
            joint: vec![],
            dev_a: None,
            dev_b: None,
            dev_joint: vec![],
            freeze: Freeze::None,
            lr_plan: LrPreset::Layerwise,
            lr_overrides: vec![],
            layer_decay: None,
            optim: OptimConfig::default(),
            epochs: 1,
            batch_size: 32,
            eval_batch_size: 64,
            seed: 0,
            max_steps: None,
            limit: None,
            weight_a: 1.0,
            weight_b: 1.0,
            head_dropout: 0.0,
            save_best: false,
            device: "auto".into(),
        }
    }
}

/// One epoch's record in `metrics.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EpochRecord {
    pub epoch: usize,
    pub steps: usize,
    /// Mean Task A / Task B loss over the batches that had labels for that task.
    pub loss_a: f64,
    pub loss_b: f64,
    pub seconds: f64,
    pub sentences_per_s: f64,
    pub dev: BTreeMap<String, TaskMetrics>,
}

/// `metrics.json`: the whole run.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RunMetrics {
    pub epochs: Vec<EpochRecord>,
    /// Epoch whose weights are in the folder.
    pub saved_epoch: Option<usize>,
    /// Every step's summed loss, in order.
    pub step_losses: Vec<f64>,
    pub trainable_subsets: Vec<(String, f64)>,
    pub frozen_subsets: Vec<String>,
    pub train_rows: usize,
    pub stopped_early: bool,
}

/// Loads the base encoder and adds heads for the labels found in the training files.
fn build_model(cfg: &TrainConfig, labels_a: Labels, labels_b: Labels) -> Result<(MultiTask, PathBuf)> {
    let device = parse_device(&cfg.device)?;
    tch::manual_seed(cfg.seed as i64);
    let is_checkpoint = cfg.model.join("config.json").is_file()
        && std::fs::read_to_string(cfg.model.join("config.json")).map(|t| t.contains(crate::model::multitask::FORMAT)).unwrap_or(false);
    if is_checkpoint {
        let (model, _) = MultiTask::load(&cfg.model, device)?;
        if model.config.labels_a != labels_a || model.config.labels_b != labels_b {
            return Err(invalid(format!(
                "{}: the checkpoint's labels ({:?} / {:?}) differ from the training files' ({:?} / {:?})",
                cfg.model.display(),
                model.config.labels_a.0,
                model.config.labels_b.0,
                labels_a.0,
                labels_b.0
            )));
        }
        return Ok((model, cfg.model.join("vocab.txt")));
    }
    let (base, _report) = SentenceEncoder::load(&cfg.model, device)?;
    let vocab = crate::config::ModelFiles::locate(&cfg.model)?.vocab;
    Ok((MultiTask::new(base, labels_a, labels_b, cfg.head_dropout)?, vocab))
}

fn read_sources(per_task: &[(Option<&PathBuf>, Task)], joint: &[PathBuf], limit: Option<usize>) -> Result<Vec<Source>> {
    let mut out = Vec::new();
    for (path, task) in per_task {
        if let Some(p) = path {
            out.push(data::read_labelled(p, Some(*task))?);
        }
    }
    for p in joint {
        out.push(data::read_labelled(p, None)?);
    }
    if let Some(n) = limit {
        for s in &mut out {
            s.rows.truncate(n);
        }
    }
    Ok(out)
}

/// Class probabilities of both tasks for tokenized inputs, in input order: `[n, k_a]`, `[n, k_b]`.
pub fn predict_probs(model: &MultiTask, ids: &[Vec<i64>], batch_size: usize) -> (Tensor, Tensor) {
    let device = model.base.params.device();
    let n = ids.len() as i64;
    let (ka, kb) = (model.config.labels_a.len() as i64, model.config.labels_b.len() as i64);
    let mut pa = Tensor::zeros([n, ka], (Kind::Float, tch::Device::Cpu));
    let mut pb = Tensor::zeros([n, kb], (Kind::Float, tch::Device::Cpu));
    let _guard = tch::no_grad_guard();
    let lens: Vec<usize> = ids.iter().map(Vec::len).collect();
    for rows in crate::batch::length_sorted_batches(&lens, batch_size) {
        let seqs: Vec<&[i64]> = rows.iter().map(|&i| ids[i].as_slice()).collect();
        let (x, m) = crate::batch::pad(&seqs, model.base.tokenizer.pad_id(), device);
        let logits = model.forward_t(&x, &m, false);
        let index = Tensor::from_slice(&rows.iter().map(|&i| i as i64).collect::<Vec<_>>());
        let _ = pa.index_copy_(0, &index, &logits.a.softmax(-1, Kind::Float).to_device(tch::Device::Cpu));
        let _ = pb.index_copy_(0, &index, &logits.b.softmax(-1, Kind::Float).to_device(tch::Device::Cpu));
    }
    (pa, pb)
}

/// Accuracy, macro-F1 and confusion of each task on the examples that carry its label.
pub fn evaluate(model: &MultiTask, examples: &[Example], batch_size: usize) -> BTreeMap<String, TaskMetrics> {
    let ids: Vec<Vec<i64>> = examples.iter().map(|e| e.ids.clone()).collect();
    let (pa, pb) = predict_probs(model, &ids, batch_size);
    let argmax = |p: &Tensor| Vec::<i64>::try_from(p.argmax(-1, false)).expect("argmax to vec");
    let (ya, yb) = (argmax(&pa), argmax(&pb));
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
    out
}

/// One task's mean cross-entropy over the rows that have its label, or `None` if none has.
fn task_loss(logits: &Tensor, targets: &Tensor, n: usize) -> Option<Tensor> {
    (n > 0).then(|| logits.cross_entropy_loss::<Tensor>(targets, None, Reduction::Mean, data::IGNORE, 0.0))
}

/// Losses of one training step.
pub struct StepLosses {
    pub loss_a: Option<f64>,
    pub loss_b: Option<f64>,
    /// The weighted sum that was minimised.
    pub total: f64,
}

/// One optimisation step on `b`: forward with dropout, per-task cross-entropy over the rows that
/// have that task's label, weighted sum, backward and every optimizer's step. Returns `None`
/// (and changes nothing) when the batch has no label at all. A non-finite loss is returned
/// without updating any weight.
pub fn train_step(model: &MultiTask, opts: &mut Optimizers, b: &data::Batch, weight_a: f64, weight_b: f64, step: usize) -> Option<StepLosses> {
    let logits = model.forward_t(&b.ids, &b.mask, true);
    let la = task_loss(&logits.a, &b.labels_a, b.n_a);
    let lb = task_loss(&logits.b, &b.labels_b, b.n_b);
    let loss_a = la.as_ref().map(|l| f64::try_from(l).unwrap_or(f64::NAN));
    let loss_b = lb.as_ref().map(|l| f64::try_from(l).unwrap_or(f64::NAN));
    let total = match (la, lb) {
        (Some(a), Some(b)) => a * weight_a + b * weight_b,
        (Some(a), None) => a * weight_a,
        (None, Some(b)) => b * weight_b,
        (None, None) => return None,
    };
    let value = loss_a.unwrap_or(0.0) * weight_a + loss_b.unwrap_or(0.0) * weight_b;
    if value.is_finite() {
        opts.step(&total, step);
    }
    Some(StepLosses { loss_a, loss_b, total: value })
}

/// What a finished run returns.
pub struct TrainOutcome {
    pub metrics: RunMetrics,
    pub model: MultiTask,
}

/// Trains as `cfg` says, reporting progress lines through `log`, and writes the output folder.
pub fn train(cfg: &TrainConfig, show_progress: bool, log: &mut dyn FnMut(&str)) -> Result<TrainOutcome> {
    data::check_batch_size(cfg.batch_size)?;
    data::check_batch_size(cfg.eval_batch_size)?;
    if cfg.epochs == 0 {
        return Err(invalid("--epochs must be at least 1"));
    }
    let train_sources = read_sources(&[(cfg.task_a.as_ref(), Task::A), (cfg.task_b.as_ref(), Task::B)], &cfg.joint, cfg.limit)?;
    if train_sources.is_empty() {
        return Err(invalid("no training data: pass --task-a FILE and --task-b FILE (or a joint file)"));
    }
    let dev_sources = read_sources(&[(cfg.dev_a.as_ref(), Task::A), (cfg.dev_b.as_ref(), Task::B)], &cfg.dev_joint, None)?;
    let labels_a = Labels::collect(&train_sources, Task::A);
    let labels_b = Labels::collect(&train_sources, Task::B);
    for (l, t, flag) in [(&labels_a, Task::A, "--task-a"), (&labels_b, Task::B, "--task-b")] {
        if l.is_empty() {
            return Err(invalid(format!("no {} labels in the training data: pass {flag} FILE", t.key())));
        }
    }
    let (mut model, vocab) = build_model(cfg, labels_a.clone(), labels_b.clone())?;
    let tok = &model.base.tokenizer;
    let train_ex = data::examples(&train_sources, &labels_a, &labels_b, tok)?;
    let dev_ex = data::examples(&dev_sources, &labels_a, &labels_b, tok)?;
    let n_layers = model.config.encoder.n_layers();
    cfg.freeze.apply(&model.base.params, n_layers)?;
    let rates = learning_rates(&model.base.params, cfg.lr_plan, cfg.layer_decay, &cfg.lr_overrides)?;
    let steps_per_epoch = train_ex.len().div_ceil(cfg.batch_size);
    let planned = cfg.max_steps.map_or(steps_per_epoch * cfg.epochs, |m| m.min(steps_per_epoch * cfg.epochs));
    let mut opts = Optimizers::new(&model.base.params, &rates, cfg.optim.clone(), planned)?;
    model.config.training = Some(serde_json::to_value(cfg).expect("config serialises"));

    let device = model.base.params.device();
    let mut metrics = RunMetrics {
        trainable_subsets: opts.subsets(),
        frozen_subsets: model.base.params.subsets().iter().filter(|s| !s.is_trainable()).map(|s| s.name.clone()).collect(),
        train_rows: train_ex.len(),
        ..Default::default()
    };
    log(&format!(
        "training on {} rows ({} Task A labels, {} Task B labels), {} steps/epoch, device {}, freeze '{}'",
        train_ex.len(),
        train_ex.iter().filter(|e| e.label_a.is_some()).count(),
        train_ex.iter().filter(|e| e.label_b.is_some()).count(),
        steps_per_epoch,
        device_name(device),
        cfg.freeze.name()
    ));
    if opts.is_empty() {
        log("nothing is trainable (freeze 'all'): the feature-extractor baseline; evaluation only, no training steps");
        let dev = evaluate(&model, &dev_ex, cfg.eval_batch_size);
        report_dev(&dev, log);
        metrics.epochs.push(EpochRecord { epoch: 0, steps: 0, loss_a: f64::NAN, loss_b: f64::NAN, seconds: 0.0, sentences_per_s: 0.0, dev });
        metrics.saved_epoch = Some(0);
        save(&model, &vocab, &cfg.out, &metrics)?;
        return Ok(TrainOutcome { metrics, model });
    }
    for (name, rate) in opts.subsets() {
        log(&format!("  optimizer for {name}: lr {rate:e}"));
    }
    let mut step = 0usize;
    let mut best: Option<f64> = None;
    'epochs: for epoch in 0..cfg.epochs {
        let batches = data::epoch_batches(train_ex.len(), cfg.batch_size, cfg.seed, epoch);
        let bar = progress_bar(batches.len(), epoch, cfg.epochs, show_progress);
        let start = Instant::now();
        let (mut sum_a, mut n_a, mut sum_b, mut n_b, mut seen) = (0.0, 0usize, 0.0, 0usize, 0usize);
        let mut steps_this_epoch = 0;
        for rows in &batches {
            if cfg.max_steps.is_some_and(|m| step >= m) {
                metrics.stopped_early = true;
                break;
            }
            let b = data::make_batch(&train_ex, rows, model.base.tokenizer.pad_id(), device);
            let Some(out) = train_step(&model, &mut opts, &b, cfg.weight_a, cfg.weight_b, step) else { continue };
            let (va, vb, value) = (out.loss_a, out.loss_b, out.total);
            if !value.is_finite() {
                bar.finish_and_clear();
                return Err(Error::NonFinite(format!(
                    "loss became {value} at step {} (epoch {}); training stopped before the update, the last checkpoint in {} is left as it was. Try a lower learning rate or --clip-norm",
                    step + 1,
                    epoch + 1,
                    cfg.out.display()
                )));
            }
            step += 1;
            steps_this_epoch += 1;
            seen += b.size;
            metrics.step_losses.push(value);
            if let Some(v) = va {
                sum_a += v;
                n_a += 1;
            }
            if let Some(v) = vb {
                sum_b += v;
                n_b += 1;
            }
            bar.inc(1);
            if step % 10 == 0 {
                let rate = seen as f64 / start.elapsed().as_secs_f64();
                bar.set_message(format!("loss {:.4}  {rate:.0} sent/s", value));
            }
        }
        bar.finish_and_clear();
        let seconds = start.elapsed().as_secs_f64();
        let mean = |s: f64, n: usize| if n == 0 { f64::NAN } else { s / n as f64 };
        let (loss_a, loss_b) = (mean(sum_a, n_a), mean(sum_b, n_b));
        log(&format!("Epoch [{}/{}], Loss Task A: {loss_a:.4}, Loss Task B: {loss_b:.4}", epoch + 1, cfg.epochs));
        let dev = evaluate(&model, &dev_ex, cfg.eval_batch_size);
        report_dev(&dev, log);
        let score = (!dev.is_empty()).then(|| dev.values().map(|m| m.accuracy).sum::<f64>() / dev.len() as f64);
        metrics.epochs.push(EpochRecord {
            epoch: epoch + 1,
            steps: steps_this_epoch,
            loss_a,
            loss_b,
            seconds,
            sentences_per_s: seen as f64 / seconds.max(1e-9),
            dev,
        });
        let improved = match (score, best) {
            (Some(s), Some(b)) => s > b,
            _ => true,
        };
        if !cfg.save_best || improved {
            best = score.or(best);
            metrics.saved_epoch = Some(epoch + 1);
            save(&model, &vocab, &cfg.out, &metrics)?;
        } else {
            write_metrics(&cfg.out, &metrics)?;
            log(&format!("  (dev not better than epoch {}: checkpoint kept)", metrics.saved_epoch.unwrap_or(0)));
        }
        if metrics.stopped_early {
            log(&format!("stopped after --max-steps {} optimizer steps", step));
            break 'epochs;
        }
    }
    log(&format!("saved to {}", cfg.out.display()));
    Ok(TrainOutcome { metrics, model })
}

fn report_dev(dev: &BTreeMap<String, TaskMetrics>, log: &mut dyn FnMut(&str)) {
    for (task, m) in dev {
        log(&format!("  dev {task}: accuracy {:.4}, macro-F1 {:.4} (n={})", m.accuracy, m.macro_f1, m.n));
    }
}

fn progress_bar(len: usize, epoch: usize, epochs: usize, show: bool) -> ProgressBar {
    if !show {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(Some(len as u64), ProgressDrawTarget::stderr());
    bar.set_style(
        ProgressStyle::with_template("epoch {prefix} [{bar:30}] {pos}/{len} {msg} eta {eta}")
            .expect("valid template")
            .progress_chars("=> "),
    );
    bar.set_prefix(format!("{}/{}", epoch + 1, epochs));
    bar
}

fn write_metrics(out: &Path, metrics: &RunMetrics) -> Result<()> {
    std::fs::create_dir_all(out).map_err(|e| Error::io(out, e))?;
    write_atomic(&out.join("metrics.json"), &serde_json::to_vec_pretty(metrics).expect("metrics serialise"))
}

fn save(model: &MultiTask, vocab: &Path, out: &Path, metrics: &RunMetrics) -> Result<()> {
    model.save(out, vocab)?;
    write_metrics(out, metrics)
}

//! Owns Tasks 3 and 4's training run: [`TrainConfig`] and its validation (every rule lives in
//! [`TrainConfig::validate`]), the loop (cross-entropy per task over the rows that carry its
//! label, weighted sum, one optimizer per trainable subset), per-epoch dev evaluation,
//! `metrics.json` and the checkpoint folder.
//!
//! Losses and gradient norms stay on the device and are read back at sync points (every step on
//! the CPU, where reading costs nothing; every [`CUDA_SYNC_EVERY`] steps on a GPU), where a
//! non-finite value stops the run without saving anything.

use crate::batch::{self, Batch, IGNORE};
use crate::classifier::Classifier;
use crate::data::{self, Labels, Source, Task};
use crate::device::{device_name, parse_device};
use crate::error::{invalid, Error, Result};
use crate::freeze::Freeze;
use crate::fsutil::{prepare_output_dir, write_atomic};
use crate::infer;
use crate::metrics::TaskMetrics;
use crate::model::MultiTask;
use crate::optim::{check_rate, learning_rates, LrPreset, OptimConfig, Optimizers};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tch::{Device, Kind, Reduction, Tensor};

/// Steps between reads of the losses on a CUDA device (each read waits for the GPU).
pub const CUDA_SYNC_EVERY: usize = 32;

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
    /// Dropout on the pooled vector before the heads. `None`: 0 for a base model, the
    /// checkpoint's own value when continuing from one.
    pub head_dropout: Option<f64>,
    pub save_best: bool,
    pub device: String,
}

impl TrainConfig {
    /// Defaults of the seed's Task 3/4, training `model` and writing to `out`; no data yet.
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
            head_dropout: None,
            save_best: false,
            device: "auto".into(),
        }
    }

    /// Checks every rule a run's settings must meet, before anything is loaded. Errors name the
    /// field (the command line maps fields to flags one to one: `batch_size` is `--batch-size`).
    pub fn validate(&self) -> Result<()> {
        let at_least_1 = |name: &str, v: usize| if v == 0 { Err(invalid(format!("{name} must be at least 1"))) } else { Ok(()) };
        at_least_1("batch_size", self.batch_size)?;
        at_least_1("eval_batch_size", self.eval_batch_size)?;
        at_least_1("epochs", self.epochs)?;
        if let Some(m) = self.max_steps {
            at_least_1("max_steps", m)?;
        }
        if let Some(l) = self.limit {
            at_least_1("limit", l)?;
        }
        if self.task_a.is_none() && self.task_b.is_none() && self.joint.is_empty() {
            return Err(invalid("no training data: give task_a and task_b files, or a joint file"));
        }
        if let Some(p) = self.head_dropout {
            if !(0.0..1.0).contains(&p) {
                return Err(invalid(format!("head_dropout {p}: must be in [0, 1)")));
            }
        }
        if let Some(f) = self.layer_decay {
            if !(f > 0.0 && f <= 1.0) {
                return Err(invalid(format!("layer_decay {f}: must be in (0, 1]")));
            }
        }
        for (prefix, rate) in &self.lr_overrides {
            check_rate(prefix, *rate)?;
        }
        for (name, w) in [("weight_a", self.weight_a), ("weight_b", self.weight_b)] {
            if !w.is_finite() || w < 0.0 {
                return Err(invalid(format!("{name} {w}: must be finite and >= 0")));
            }
        }
        if self.weight_a == 0.0 && self.weight_b == 0.0 {
            return Err(invalid("weight_a and weight_b are both 0: nothing would be learned"));
        }
        self.optim.validate()?;
        if self.out.as_os_str().is_empty() {
            return Err(invalid("out: an output folder is required"));
        }
        Ok(())
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
    /// The step limit ended the run before the planned epochs were done.
    pub stopped_early: bool,
}

/// How a run shows its progress.
#[derive(Debug, Clone, Copy)]
pub enum Progress {
    /// An `indicatif` bar on stderr (for terminals).
    Bar,
    /// A plain line through the log at most this often (for logs and pipes).
    Lines(Duration),
    /// Nothing between the epoch lines.
    Off,
}

/// The model to train: a checkpoint to continue from, or a base folder with fresh heads.
fn build_classifier(cfg: &TrainConfig, labels_a: Labels, labels_b: Labels, device: Device, log: &mut dyn FnMut(&str)) -> Result<Classifier> {
    tch::manual_seed(cfg.seed as i64);
    let (mut clf, report) = if MultiTask::is_checkpoint(&cfg.model) {
        let (mut clf, report) = Classifier::load(&cfg.model, device)?;
        let c = &clf.model.config;
        if c.labels_a != labels_a || c.labels_b != labels_b {
            return Err(invalid(format!(
                "{}: the checkpoint's labels ({:?} / {:?}) differ from the training files' ({:?} / {:?})",
                cfg.model.display(),
                c.labels_a.0,
                c.labels_b.0,
                labels_a.0,
                labels_b.0
            )));
        }
        if let Some(p) = cfg.head_dropout {
            clf.model.set_head_dropout(p)?;
        }
        (clf, report)
    } else {
        Classifier::from_base(&cfg.model, labels_a, labels_b, cfg.head_dropout.unwrap_or(0.0), device)?
    };
    if !report.unexpected.is_empty() {
        log(&format!("warning: tensors in the weights file that match no variable were ignored: {}", report.unexpected.join(", ")));
    }
    clf.model.config.training = Some(serde_json::to_value(cfg).expect("config serialises"));
    Ok(clf)
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

/// One task's mean cross-entropy over the rows that have its label, or `None` if none has.
fn task_loss(logits: &Tensor, targets: &Tensor, n: usize) -> Option<Tensor> {
    (n > 0).then(|| logits.cross_entropy_loss::<Tensor>(targets, None, Reduction::Mean, IGNORE, 0.0))
}

/// Losses of one training step, as detached device scalars (reading them waits for the device).
pub struct StepLosses {
    pub loss_a: Option<Tensor>,
    pub loss_b: Option<Tensor>,
    /// The weighted sum that was minimised.
    pub total: Tensor,
    /// Global gradient norm before clipping, when clipping is on.
    pub grad_norm: Option<Tensor>,
}

impl StepLosses {
    /// The values on the CPU: Task A loss, Task B loss, weighted total.
    pub fn read(&self) -> Result<(Option<f64>, Option<f64>, f64)> {
        let read = |t: &Tensor| -> Result<f64> { Ok(f64::try_from(t)?) };
        Ok((self.loss_a.as_ref().map(read).transpose()?, self.loss_b.as_ref().map(read).transpose()?, read(&self.total)?))
    }
}

/// One optimisation step on `b`: forward with dropout, per-task cross-entropy over the rows that
/// have that task's label, weighted sum, backward and every optimizer's step. Returns `None`
/// (and changes nothing) when the batch has no label at all. Reads nothing back from the device,
/// so it does not check the loss: the caller does, at its sync points.
pub fn train_step(model: &MultiTask, opts: &mut Optimizers, b: &Batch, weight_a: f64, weight_b: f64, step: usize) -> Option<StepLosses> {
    let logits = model.forward_t(&b.ids, &b.mask, true);
    let la = task_loss(&logits.a, &b.labels_a, b.n_a);
    let lb = task_loss(&logits.b, &b.labels_b, b.n_b);
    let total = match (&la, &lb) {
        (Some(a), Some(b)) => a * weight_a + b * weight_b,
        (Some(a), None) => a * weight_a,
        (None, Some(b)) => b * weight_b,
        (None, None) => return None,
    };
    let grad_norm = opts.step(&total, step);
    Some(StepLosses { loss_a: la.map(|t| t.detach()), loss_b: lb.map(|t| t.detach()), total: total.detach(), grad_norm })
}

/// Step results not yet read from the device.
#[derive(Default)]
struct Pending {
    steps: Vec<usize>,
    totals: Vec<Tensor>,
    a: Vec<Tensor>,
    b: Vec<Tensor>,
    norms: Vec<(usize, Tensor)>,
}

/// Per-epoch sums, on the CPU.
#[derive(Default)]
struct EpochSums {
    sum_a: f64,
    n_a: usize,
    sum_b: f64,
    n_b: usize,
    last_total: f64,
}

impl Pending {
    fn push(&mut self, step: usize, s: StepLosses) {
        self.steps.push(step);
        self.totals.push(s.total);
        self.a.extend(s.loss_a);
        self.b.extend(s.loss_b);
        if let Some(n) = s.grad_norm {
            self.norms.push((step, n));
        }
    }

    fn len(&self) -> usize {
        self.steps.len()
    }

    /// Reads every pending value in one transfer, checks it, and adds it to `metrics` and `sums`.
    fn flush(&mut self, epoch: usize, metrics: &mut RunMetrics, sums: &mut EpochSums, out: &Path) -> Result<()> {
        if self.steps.is_empty() {
            return Ok(());
        }
        let all: Vec<Tensor> =
            self.totals.iter().chain(&self.a).chain(&self.b).chain(self.norms.iter().map(|(_, n)| n)).map(|t| t.reshape([1])).collect();
        let values = Vec::<f64>::try_from(Tensor::cat(&all, 0).to_kind(Kind::Double).to_device(Device::Cpu))?;
        let (totals, rest) = values.split_at(self.totals.len());
        let (a, rest) = rest.split_at(self.a.len());
        let (b, norms) = rest.split_at(self.b.len());
        let stop = |what: &str, v: f64, step: usize| {
            Error::NonFinite(format!(
                "{what} became {v} at step {step} (epoch {}); training stopped and nothing more was saved: the last checkpoint in {} is left as it was. Try a lower learning rate or gradient clipping",
                epoch + 1,
                out.display()
            ))
        };
        if let Some((&step, &v)) = self.steps.iter().zip(totals).find(|(_, v)| !v.is_finite()) {
            return Err(stop("loss", v, step));
        }
        if let Some(((step, _), &v)) = self.norms.iter().zip(norms).find(|(_, v)| !v.is_finite()) {
            return Err(stop("gradient norm", v, *step));
        }
        metrics.step_losses.extend_from_slice(totals);
        sums.sum_a += a.iter().sum::<f64>();
        sums.n_a += a.len();
        sums.sum_b += b.iter().sum::<f64>();
        sums.n_b += b.len();
        sums.last_total = *totals.last().expect("not empty");
        *self = Pending::default();
        Ok(())
    }
}

/// Progress display of one epoch.
struct EpochProgress {
    bar: ProgressBar,
    every: Option<Duration>,
    last_line: Instant,
    start: Instant,
    len: usize,
    epoch: usize,
    epochs: usize,
}

impl EpochProgress {
    fn new(progress: Progress, len: usize, epoch: usize, epochs: usize) -> Self {
        let bar = match progress {
            Progress::Bar => {
                let bar = ProgressBar::with_draw_target(Some(len as u64), ProgressDrawTarget::stderr());
                bar.set_style(
                    ProgressStyle::with_template("epoch {prefix} [{bar:30}] {pos}/{len} {msg} eta {eta}")
                        .expect("valid template")
                        .progress_chars("=> "),
                );
                bar.set_prefix(format!("{}/{}", epoch + 1, epochs));
                bar
            }
            _ => ProgressBar::hidden(),
        };
        let every = match progress {
            Progress::Lines(d) => Some(d),
            _ => None,
        };
        let now = Instant::now();
        EpochProgress { bar, every, last_line: now, start: now, len, epoch, epochs }
    }

    /// Whether a plain progress line is due (so the losses should be read now).
    fn due(&self) -> bool {
        self.every.is_some_and(|e| self.last_line.elapsed() >= e)
    }

    fn update(&mut self, done: usize, seen: usize, loss: f64, log: &mut dyn FnMut(&str)) {
        let elapsed = self.start.elapsed().as_secs_f64();
        let rate = seen as f64 / elapsed.max(1e-9);
        self.bar.set_position(done as u64);
        self.bar.set_message(format!("loss {loss:.4}  {rate:.0} sent/s"));
        if self.due() {
            let eta = elapsed / done.max(1) as f64 * (self.len - done) as f64;
            log(&format!(
                "  epoch {}/{} step {done}/{}: loss {loss:.4}, {rate:.1} sentences/s, epoch ETA {}",
                self.epoch + 1,
                self.epochs,
                self.len,
                fmt_duration(eta)
            ));
            self.last_line = Instant::now();
        }
    }
}

/// `75` → `1m15s`, `4000` → `1h06m40s`.
pub fn fmt_duration(secs: f64) -> String {
    let s = secs.max(0.0).round() as u64;
    match (s / 3600, s / 60 % 60, s % 60) {
        (0, 0, s) => format!("{s}s"),
        (0, m, s) => format!("{m}m{s:02}s"),
        (h, m, s) => format!("{h}h{m:02}m{s:02}s"),
    }
}

/// What a finished run returns: its metrics and the trained model (the last epoch's weights,
/// whatever `save_best` kept on disk).
pub struct TrainOutcome {
    pub metrics: RunMetrics,
    pub classifier: Classifier,
}

/// Trains as `cfg` says, reporting through `log`, and writes the output folder.
pub fn train(cfg: &TrainConfig, progress: Progress, log: &mut dyn FnMut(&str)) -> Result<TrainOutcome> {
    cfg.validate()?;
    prepare_output_dir(&cfg.out)?;
    let device = parse_device(&cfg.device)?;
    let train_sources = read_sources(&[(cfg.task_a.as_ref(), Task::A), (cfg.task_b.as_ref(), Task::B)], &cfg.joint, cfg.limit)?;
    let dev_sources = read_sources(&[(cfg.dev_a.as_ref(), Task::A), (cfg.dev_b.as_ref(), Task::B)], &cfg.dev_joint, None)?;
    let labels_a = Labels::collect(&train_sources, Task::A);
    let labels_b = Labels::collect(&train_sources, Task::B);
    for (l, t, what) in [(&labels_a, Task::A, "task_a file or a joint file with label_a"), (&labels_b, Task::B, "task_b file or a joint file with label_b")] {
        if l.is_empty() {
            return Err(invalid(format!("no {} labels in the training data: give a {what}", t.key())));
        }
    }
    let clf = build_classifier(cfg, labels_a.clone(), labels_b.clone(), device, log)?;
    let train_ex = data::examples(&train_sources, &labels_a, &labels_b, &clf.tokenizer)?;
    let dev_ex = data::examples(&dev_sources, &labels_a, &labels_b, &clf.tokenizer)?;
    let params = clf.model.params();
    cfg.freeze.apply(params)?;
    let rates = learning_rates(params, cfg.lr_plan, cfg.layer_decay, &cfg.lr_overrides)?;
    let steps_per_epoch = train_ex.len().div_ceil(cfg.batch_size);
    let full = steps_per_epoch * cfg.epochs;
    let planned = cfg.max_steps.map_or(full, |m| m.min(full));
    let mut opts = Optimizers::new(params, &rates, cfg.optim.clone(), planned)?;
    let dev_batching = clf.batching(cfg.eval_batch_size);

    let mut metrics = RunMetrics {
        trainable_subsets: opts.subsets(),
        frozen_subsets: params.subsets().iter().filter(|s| !s.is_trainable()).map(|s| s.name.clone()).collect(),
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
        cfg.freeze
    ));
    if opts.is_empty() {
        log("nothing is trainable (freeze 'all'): the feature-extractor baseline; evaluation only, no training steps");
        let dev = infer::evaluate(&clf.model, &dev_ex, dev_batching)?;
        report_dev(&dev, log);
        metrics.epochs.push(EpochRecord { epoch: 0, steps: 0, loss_a: f64::NAN, loss_b: f64::NAN, seconds: 0.0, sentences_per_s: 0.0, dev });
        metrics.saved_epoch = Some(0);
        save(&clf, &cfg.out, &metrics)?;
        return Ok(TrainOutcome { metrics, classifier: clf });
    }
    for (name, rate) in opts.subsets() {
        log(&format!("  optimizer for {name}: lr {rate:e}"));
    }
    let sync_every = if device.is_cuda() { CUDA_SYNC_EVERY } else { 1 };
    let mut step = 0usize;
    let mut best: Option<f64> = None;
    for epoch in 0..cfg.epochs {
        let batches = batch::epoch_batches(train_ex.len(), cfg.batch_size, cfg.seed, epoch);
        let mut ui = EpochProgress::new(progress, batches.len(), epoch, cfg.epochs);
        let start = Instant::now();
        let (mut pending, mut sums) = (Pending::default(), EpochSums::default());
        let (mut steps_this_epoch, mut seen) = (0usize, 0usize);
        let mut at_limit = false;
        for (i, rows) in batches.iter().enumerate() {
            let b = batch::make_batch(&train_ex, rows, clf.tokenizer.pad_id(), device);
            let Some(out) = train_step(&clf.model, &mut opts, &b, cfg.weight_a, cfg.weight_b, step) else { continue };
            step += 1;
            steps_this_epoch += 1;
            seen += b.size;
            pending.push(step, out);
            at_limit = cfg.max_steps == Some(step);
            if pending.len() >= sync_every || ui.due() || at_limit || i + 1 == batches.len() {
                if let Err(e) = pending.flush(epoch, &mut metrics, &mut sums, &cfg.out) {
                    ui.bar.finish_and_clear();
                    return Err(e);
                }
                ui.update(i + 1, seen, sums.last_total, log);
            }
            if at_limit {
                break;
            }
        }
        // Whatever a skipped, label-less last batch left unread (a no-op otherwise).
        if let Err(e) = pending.flush(epoch, &mut metrics, &mut sums, &cfg.out) {
            ui.bar.finish_and_clear();
            return Err(e);
        }
        ui.bar.finish_and_clear();
        let seconds = start.elapsed().as_secs_f64();
        let mean = |s: f64, n: usize| if n == 0 { f64::NAN } else { s / n as f64 };
        let (loss_a, loss_b) = (mean(sums.sum_a, sums.n_a), mean(sums.sum_b, sums.n_b));
        log(&format!("Epoch [{}/{}], Loss Task A: {loss_a:.4}, Loss Task B: {loss_b:.4}", epoch + 1, cfg.epochs));
        let dev = infer::evaluate(&clf.model, &dev_ex, dev_batching)?;
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
        metrics.stopped_early = at_limit && step < full;
        let improved = match (score, best) {
            (Some(s), Some(b)) => s > b,
            _ => true,
        };
        if !cfg.save_best || improved {
            best = score.or(best);
            metrics.saved_epoch = Some(epoch + 1);
            save(&clf, &cfg.out, &metrics)?;
        } else {
            write_metrics(&cfg.out, &metrics)?;
            log(&format!("  (dev not better than epoch {}: checkpoint kept)", metrics.saved_epoch.unwrap_or(0)));
        }
        if at_limit {
            if metrics.stopped_early {
                log(&format!("stopped at the step limit ({step} optimizer steps)"));
            }
            break;
        }
    }
    log(&format!("saved to {}", cfg.out.display()));
    Ok(TrainOutcome { metrics, classifier: clf })
}

fn report_dev(dev: &BTreeMap<String, TaskMetrics>, log: &mut dyn FnMut(&str)) {
    for (task, m) in dev {
        log(&format!("  dev {task}: accuracy {:.4}, macro-F1 {:.4} (n={})", m.accuracy, m.macro_f1, m.n));
    }
}

fn write_metrics(out: &Path, metrics: &RunMetrics) -> Result<()> {
    write_atomic(&out.join("metrics.json"), &serde_json::to_vec_pretty(metrics).expect("metrics serialise"))
}

fn save(clf: &Classifier, out: &Path, metrics: &RunMetrics) -> Result<()> {
    clf.save(out)?;
    write_metrics(out, metrics)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> TrainConfig {
        let mut c = TrainConfig::new("m".into(), "out".into());
        c.task_a = Some("a.tsv".into());
        c
    }

    #[test]
    fn validation_names_the_field_of_each_rule() {
        base().validate().unwrap();
        type Change = Box<dyn Fn(&mut TrainConfig)>;
        let cases: Vec<(Change, &str)> = vec![
            (Box::new(|c| c.batch_size = 0), "batch_size must be at least 1"),
            (Box::new(|c| c.eval_batch_size = 0), "eval_batch_size must be at least 1"),
            (Box::new(|c| c.epochs = 0), "epochs must be at least 1"),
            (Box::new(|c| c.max_steps = Some(0)), "max_steps must be at least 1"),
            (Box::new(|c| c.task_a = None), "no training data"),
            (Box::new(|c| c.head_dropout = Some(1.0)), "head_dropout 1: must be in [0, 1)"),
            (Box::new(|c| c.layer_decay = Some(1.5)), "layer_decay 1.5"),
            (Box::new(|c| c.lr_overrides = vec![("x".into(), f64::NAN)]), "the rate must be finite"),
            (Box::new(|c| c.weight_b = f64::INFINITY), "weight_b inf"),
            (Box::new(|c| (c.weight_a, c.weight_b) = (0.0, 0.0)), "both 0"),
            (Box::new(|c| c.optim.clip_norm = Some(-1.0)), "clip_norm -1"),
        ];
        for (change, want) in cases {
            let mut c = base();
            change(&mut c);
            let e = c.validate().unwrap_err().to_string();
            assert!(e.contains(want), "want '{want}', got '{e}'");
        }
    }

    #[test]
    fn durations_read_well() {
        assert_eq!(fmt_duration(42.4), "42s");
        assert_eq!(fmt_duration(75.0), "1m15s");
        assert_eq!(fmt_duration(4000.0), "1h06m40s");
    }

    #[test]
    fn a_non_finite_value_stops_at_the_flush_naming_the_step() {
        let mut p = Pending::default();
        let scalar = |v: f32| Tensor::from_slice(&[v]).reshape([]);
        for (step, v) in [(1, 0.5f32), (2, f32::NAN)] {
            p.push(step, StepLosses { loss_a: Some(scalar(v)), loss_b: None, total: scalar(v), grad_norm: None });
        }
        let mut m = RunMetrics::default();
        let e = p.flush(0, &mut m, &mut EpochSums::default(), Path::new("o")).unwrap_err().to_string();
        assert!(e.starts_with("loss became NaN at step 2 (epoch 1)"), "{e}");
        let mut p = Pending::default();
        p.push(3, StepLosses { loss_a: None, loss_b: Some(scalar(1.0)), total: scalar(1.0), grad_norm: Some(scalar(f32::INFINITY)) });
        let e = p.flush(1, &mut m, &mut EpochSums::default(), Path::new("o")).unwrap_err().to_string();
        assert!(e.starts_with("gradient norm became inf at step 3 (epoch 2)"), "{e}");
        let mut p = Pending::default();
        p.push(4, StepLosses { loss_a: Some(scalar(2.0)), loss_b: Some(scalar(1.0)), total: scalar(3.0), grad_norm: Some(scalar(0.5)) });
        let mut sums = EpochSums::default();
        p.flush(0, &mut m, &mut sums, Path::new("o")).unwrap();
        assert_eq!((sums.sum_a, sums.n_a, sums.sum_b, sums.n_b, sums.last_total), (2.0, 1, 1.0, 1, 3.0));
        assert_eq!(m.step_losses, vec![3.0]);
        assert_eq!(p.len(), 0);
    }
}

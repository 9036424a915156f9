//! The training run as a [`Trainer`]: it owns the classifier, the optimizers, the run's
//! [`Position`] and what it has recorded, and goes through named phases: [`Trainer::start`]
//! (data, model, output folder, optimizers, a resumed state, the frozen-encoder cache),
//! [`Trainer::run_epoch`] (the steps of one epoch), [`Trainer::evaluate`] (dev and
//! out-of-domain metrics), [`Trainer::end_epoch`] (records, early stopping, the checkpoint) and
//! [`Trainer::checkpoint`] (the resume state).

use super::config::{LossWeighting, TrainConfig};
use super::metrics::{EpochRecord, RunMetrics};
use super::output;
use super::progress::{fmt_duration, EpochProgress};
use super::setup::{self, OpenOutput};
use super::state::{self, Position, RunState, StateTensors};
use super::step::{train_step, LossMix, Pending};
use super::stop::RemoveOnExit;
use super::{step_seed, RunControl, TrainOutcome, CUDA_SYNC_EVERY};
use crate::batch;
use crate::cache::FeatureCache;
use crate::classifier::Classifier;
use crate::data::Example;
use crate::device::{device_name, parse_device, ThreadsGuard};
use crate::error::{Error, Result};
use crate::fsutil::write_atomic;
use crate::infer::{self, Batching};
use crate::metrics::TaskMetrics;
use crate::model::MultiTask;
use crate::optim::{learning_rates, Optimizers};
use crate::params::ENCODER;
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Instant;
use tch::{nn, Device, Kind, Tensor};

/// Name of uncertainty weighting's log-variances in a resume state.
const LOG_VARS: &str = "loss_weighting/log_vars";

/// Metrics of one evaluation: per task (`task_a`, `task_b`), on the dev and out-of-domain sets.
type Evaluation = (infer::Evaluation, BTreeMap<String, TaskMetrics>);

/// A run in progress.
pub struct Trainer<'a> {
    cfg: TrainConfig,
    ctl: &'a RunControl,
    clf: Classifier,
    opts: Optimizers,
    /// Uncertainty weighting's log-variances (and the store that owns them), when it is on.
    log_vars: Option<(nn::VarStore, Tensor)>,
    device: Device,
    encoder_trains: bool,
    train_ex: Vec<Example>,
    dev_ex: Vec<Example>,
    ood_ex: Vec<Example>,
    /// A frozen encoder's pooled vectors of the training, dev and out-of-domain rows.
    cache: Option<[(Tensor, Vec<Option<usize>>); 3]>,
    /// Each task's loss weight, by task index.
    weights: Vec<f64>,
    metrics: RunMetrics,
    pos: Position,
    /// Steps of all the planned epochs.
    full_steps: usize,
    started: Instant,
    /// Wall time an interrupted run had spent before it was resumed.
    wall_before: f64,
    _remove: Option<RemoveOnExit<'a>>,
    _out: OpenOutput,
}

/// How an epoch's steps ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EpochEnd {
    /// Every batch was drawn.
    Done,
    /// The step limit came first.
    AtLimit,
}

impl<'a> Trainer<'a> {
    /// Everything up to the first step: data, model, output folder, optimizers, the state of a
    /// resumed run, and the frozen encoder's cache.
    pub fn start(cfg: &TrainConfig, resumed: Option<(RunState, StateTensors)>, ctl: &'a RunControl, log: &mut dyn FnMut(&str)) -> Result<Trainer<'a>> {
        let started = Instant::now();
        cfg.validate()?;
        // The output folder's rules, checked before anything is read or written; the folder
        // itself is created and locked once the data and the model are loaded.
        if resumed.is_none() {
            output::check(&cfg.output.out, &cfg.model, cfg.output.overwrite)?;
        }
        let device = parse_device(&cfg.device)?;
        let data = setup::read_data(cfg)?;
        for w in &data.warnings {
            log(&format!("warning: {w}"));
        }
        let clf = setup::build_classifier(cfg, data.tasks.clone(), device, log)?;
        let [train_ex, dev_ex, ood_ex] = setup::examples(cfg, &data, &clf, log)?;
        let out = setup::open_output(cfg, resumed.is_none(), log)?;
        let made = out.made.as_ref().map(|m| m.0.as_path());
        let _remove = ctl.stop.as_deref().map(|s| s.remove_on_exit(Some(out.lock.path()), made));
        let params = clf.model.params();
        cfg.optimizer.freeze.apply(params)?;
        let encoder_trains = params.under(ENCODER).iter().any(|s| s.is_trainable());
        let rates = learning_rates(params, cfg.optimizer.lr_plan, cfg.optimizer.layer_decay, &cfg.optimizer.lr_overrides)?;
        let steps_per_epoch = train_ex.len().div_ceil(cfg.schedule.batch_size);
        let full_steps = steps_per_epoch * cfg.schedule.epochs;
        let planned = cfg.schedule.max_steps.map_or(full_steps, |m| m.min(full_steps));
        let opts = Optimizers::new(params, &rates, cfg.optimizer.optim.clone(), planned)?;
        let metrics = RunMetrics {
            trainable_subsets: opts.subsets(),
            frozen_subsets: params.subsets().iter().filter(|s| !s.is_trainable()).map(|s| s.name.clone()).collect(),
            train_rows: train_ex.len(),
            trainable_params: params.subsets().iter().filter(|s| s.is_trainable()).map(|s| s.numel()).sum(),
            tasks: data.tasks.iter().map(|t| t.name.clone()).collect(),
            ..Default::default()
        };
        let mut t = Trainer {
            cfg: cfg.clone(),
            ctl,
            clf,
            opts,
            log_vars: None,
            device,
            encoder_trains,
            train_ex,
            dev_ex,
            ood_ex,
            cache: None,
            weights: data.weights.clone(),
            metrics,
            pos: Position::default(),
            full_steps,
            started,
            wall_before: 0.0,
            _remove,
            _out: out,
        };
        t.add_uncertainty_weighting()?;
        if let Some((state, tensors)) = resumed {
            t.restore(state, tensors)?;
        }
        t.log_plan(steps_per_epoch, log);
        t.fill_cache(log)?;
        Ok(t)
    }

    /// Uncertainty weighting: two log-variances, from the checkpoint when continuing from one,
    /// with their own optimizer.
    fn add_uncertainty_weighting(&mut self) -> Result<()> {
        if self.cfg.optimizer.loss_weighting != LossWeighting::Uncertainty {
            return Ok(());
        }
        let vs = nn::VarStore::new(self.device);
        let n = self.clf.model.tasks().len();
        let init = self.clf.model.config.loss_log_vars.clone().filter(|v| v.len() == n).unwrap_or_else(|| vec![0.0; n]);
        let s = vs.root().var_copy("log_vars", &Tensor::from_slice(&init).to_kind(Kind::Float));
        self.opts.bind_extra("loss_weighting", &vs, self.cfg.optimizer.loss_weighting_lr)?;
        self.metrics.trainable_params += n;
        self.metrics.trainable_subsets = self.opts.subsets();
        self.log_vars = Some((vs, s));
        Ok(())
    }

    /// The model's variables by name, with uncertainty weighting's log-variances.
    fn variables(&self) -> Vec<(String, Tensor)> {
        let mut vars = self.clf.model.params().named_variables();
        if let Some((_, s)) = &self.log_vars {
            vars.push((LOG_VARS.to_string(), s.shallow_clone()));
        }
        vars
    }

    /// A resumed run: weights, optimizer moments, position and metrics from its state.
    fn restore(&mut self, st: RunState, tensors: StateTensors) -> Result<()> {
        let dir = state::state_dir(&self.cfg.output.out)?;
        state::restore_vars(&dir.join(state::WEIGHTS_FILE), tensors.weights, &self.variables())?;
        self.opts.restore(tensors.optimizer, st.adam_steps.clone()).map_err(|e| Error::Weights { path: dir.join(state::OPTIMIZER_FILE), msg: e.to_string() })?;
        let trainable = self.metrics.trainable_params;
        self.metrics = st.metrics;
        self.metrics.trainable_params = trainable;
        self.wall_before = self.metrics.wall_seconds;
        self.pos = st.position;
        Ok(())
    }

    fn log_plan(&self, steps_per_epoch: usize, log: &mut dyn FnMut(&str)) {
        let counts: Vec<String> = self
            .clf
            .model
            .tasks()
            .iter()
            .enumerate()
            .map(|(t, info)| {
                let n = self.train_ex.iter().filter(|e| e.has(t)).count();
                match info.name.as_str() {
                    crate::task::TASK_A => format!("{n} Task A labels"),
                    crate::task::TASK_B => format!("{n} Task B labels"),
                    name => format!("{n} {name} ({})", info.kind),
                }
            })
            .collect();
        log(&format!(
            "training on {} rows ({}), {} steps/epoch, device {}, freeze '{}', {} trainable parameters",
            self.train_ex.len(),
            counts.join(", "),
            steps_per_epoch,
            device_name(self.device),
            self.cfg.optimizer.freeze,
            self.metrics.trainable_params,
        ));
    }

    fn eval_batching(&self) -> Batching {
        Batching::fixed(self.cfg.schedule.eval_batch_size, self.clf.tokenizer.pad_id())
    }

    /// A frozen encoder's pooled vectors, computed once (or loaded), when nothing in it trains.
    fn fill_cache(&mut self, log: &mut dyn FnMut(&str)) -> Result<()> {
        if self.encoder_trains || !self.cfg.schedule.cache {
            return Ok(());
        }
        let t0 = Instant::now();
        let fc = FeatureCache::new(&self.clf.model, self.cfg.schedule.cache_dir.as_deref())?;
        let mut hits = 0;
        let mut sets = Vec::with_capacity(3);
        for ex in [&self.train_ex, &self.dev_ex, &self.ood_ex] {
            let (t, hit) = fc.pooled(&self.clf.model, ex, self.eval_batching(), log)?;
            hits += usize::from(hit);
            sets.push((t, crate::batch::sequences(ex).1));
        }
        let n: usize = sets.iter().map(|(t, _): &(Tensor, Vec<Option<usize>>)| t.size()[0] as usize).sum();
        self.cache = Some(sets.try_into().unwrap_or_else(|_| unreachable!("three sets")));
        self.metrics.cached = true;
        self.metrics.cache_seconds = t0.elapsed().as_secs_f64();
        log(&format!(
            "frozen encoder: pooled vectors of {n} texts {} in {} (`cache` off recomputes the encoder every step)",
            if hits == 3 { "loaded from the cache" } else { "computed once" },
            fmt_duration(self.metrics.cache_seconds)
        ));
        Ok(())
    }

    /// Trains every remaining epoch (or evaluates only, when nothing is trainable) and returns
    /// the outcome; the output folder is written as the run goes.
    pub fn run(mut self, log: &mut dyn FnMut(&str)) -> Result<TrainOutcome> {
        if self.opts.is_empty() {
            return self.evaluate_only(log);
        }
        for (name, rate) in self.opts.subsets() {
            log(&format!("  optimizer for {name}: lr {rate:e}"));
        }
        // Heads on cached vectors are tiny matrix products: one thread runs them faster than a
        // team (measured: 0.07 s against 0.3-6.9 s per epoch of 2,000 rows on 2 cores).
        let _one_thread = (self.cache.is_some() && self.device == Device::Cpu).then(|| ThreadsGuard::set(1));
        // From here a first stop request ends the run after a step, with a checkpoint.
        let _phase = self.ctl.stop.as_deref().map(|s| s.training());
        for epoch in self.pos.epoch..self.cfg.schedule.epochs {
            let end = self.run_epoch(epoch, log)?;
            if self.end_epoch(epoch, end, log)? {
                break;
            }
        }
        log(&format!("saved to {}", self.cfg.output.out.display()));
        Ok(TrainOutcome { metrics: self.metrics, classifier: self.clf })
    }

    /// The feature-extractor baseline (freeze `all`): one evaluation, saved as epoch 0.
    fn evaluate_only(mut self, log: &mut dyn FnMut(&str)) -> Result<TrainOutcome> {
        log("nothing is trainable (freeze 'all'): the feature-extractor baseline; evaluation only, no training steps");
        let (dev, ood) = self.evaluate(log)?;
        self.metrics.epochs.push(EpochRecord {
            epoch: 0,
            steps: 0,
            loss_a: f64::NAN,
            loss_b: f64::NAN,
            seconds: 0.0,
            sentences_per_s: 0.0,
            dev: dev.classes,
            ood,
            loss_log_vars: None,
            losses: BTreeMap::new(),
            dev_similarity: dev.similarity,
        });
        self.metrics.saved_epoch = Some(0);
        self.score_sts(log)?;
        self.metrics.wall_seconds = self.wall();
        self.save()?;
        Ok(TrainOutcome { metrics: self.metrics, classifier: self.clf })
    }

    fn wall(&self) -> f64 {
        self.wall_before + self.started.elapsed().as_secs_f64()
    }

    /// The steps of epoch `epoch`, from the position's next batch: each step seeded from
    /// (seed, step), the losses read at sync points, a stop request honoured after a step.
    pub fn run_epoch(&mut self, epoch: usize, log: &mut dyn FnMut(&str)) -> Result<EpochEnd> {
        let s = &self.cfg.schedule;
        // The same batches with or without the cache (where bucketing saves nothing but keeps
        // the run identical to recomputing the encoder).
        let draws = batch::epoch_draws(&self.train_ex, s.batch_size, s.seed, epoch, s.sampling, s.bucketing);
        let mut ui = EpochProgress::new(self.ctl.progress, draws.len(), epoch, s.epochs);
        let start = Instant::now();
        let seconds_before = self.pos.epoch_seconds;
        let mut pending = Pending::default();
        let sync_every = if self.device.is_cuda() { CUDA_SYNC_EVERY } else { 1 };
        let (out, saved_epoch) = (self.cfg.output.out.clone(), self.metrics.saved_epoch);
        let saved = move || saved_note(&out, saved_epoch);
        let mix = LossMix { weights: self.weights.clone(), log_vars: self.log_vars.as_ref().map(|(_, s)| s) };
        let source = match &self.cache {
            Some([(all, second), _, _]) => batch::Source::Cache { all, second },
            None => batch::Source::Tokens { pad_id: self.clf.tokenizer.pad_id() },
        };
        let tasks = self.clf.model.tasks().to_vec();
        for (i, draw) in draws.iter().enumerate().skip(self.pos.next_draw) {
            let b = batch::make_batch(&self.train_ex, draw, &tasks, source, self.device);
            // The random stream (dropout) restarts from (seed, step) at every step, so a run
            // resumed at any step draws what the uninterrupted run drew.
            tch::manual_seed(step_seed(self.cfg.schedule.seed, self.pos.step));
            let Some(losses) = train_step(&self.clf.model, &mut self.opts, &b, &mix, self.encoder_trains, self.pos.step) else { continue };
            self.pos.step += 1;
            self.pos.steps_this_epoch += 1;
            self.pos.seen += b.size;
            pending.push(self.pos.step, losses);
            let at_limit = self.cfg.schedule.max_steps == Some(self.pos.step);
            let stop = !at_limit && (self.ctl.stop.as_ref().is_some_and(|f| f.requested()) || self.ctl.interrupt_after == Some(self.pos.step));
            if pending.len() >= sync_every || ui.due() || at_limit || stop || i + 1 == draws.len() {
                if let Err(e) = pending.flush(epoch, &mut self.metrics, &mut self.pos.sums, &saved) {
                    ui.bar.finish_and_clear();
                    return Err(e);
                }
                ui.update(i + 1, self.pos.seen, self.pos.sums.last_total, log);
            }
            if stop {
                ui.bar.finish_and_clear();
                self.pos.epoch = epoch;
                self.pos.next_draw = i + 1;
                self.pos.epoch_seconds = seconds_before + start.elapsed().as_secs_f64();
                return Err(self.interrupt(draws.len()));
            }
            if at_limit {
                ui.bar.finish_and_clear();
                self.pos.epoch_seconds = seconds_before + start.elapsed().as_secs_f64();
                return Ok(EpochEnd::AtLimit);
            }
        }
        // Whatever a skipped, label-less last batch left unread (a no-op otherwise).
        let flushed = pending.flush(epoch, &mut self.metrics, &mut self.pos.sums, &saved);
        ui.bar.finish_and_clear();
        flushed?;
        self.pos.epoch_seconds = seconds_before + start.elapsed().as_secs_f64();
        Ok(EpochEnd::Done)
    }

    /// A stop request after a step: the resume state at the position, the checkpoint (unless
    /// only the best epoch's is kept), and the error that says how to continue.
    fn interrupt(&mut self, batches: usize) -> Error {
        self.metrics.wall_seconds = self.wall();
        let written = self.checkpoint(false).and_then(|_| if self.cfg.output.save_best { Ok(()) } else { self.save() });
        match written {
            Err(e) => e,
            Ok(()) => Error::Interrupted { out: self.cfg.output.out.clone(), step: self.pos.step, epoch: self.pos.epoch + 1, batch: self.pos.next_draw, batches },
        }
    }

    /// Dev and out-of-domain metrics of the model as it is now (from cached vectors when the
    /// encoder is frozen), each logged.
    pub fn evaluate(&self, log: &mut dyn FnMut(&str)) -> Result<Evaluation> {
        let cached = |k: usize| self.cache.as_ref().map(|c| &c[k]);
        let dev = evaluate(&self.clf.model, &self.dev_ex, cached(1), self.eval_batching())?;
        report_dev("dev", &dev, log);
        let ood = evaluate(&self.clf.model, &self.ood_ex, cached(2), self.eval_batching())?;
        report_dev("ood", &ood, log);
        Ok((dev, ood.classes))
    }

    /// The end of epoch `epoch`: its losses and dev metrics recorded, early stopping, the
    /// checkpoint and the resume state written. Returns whether the run is over.
    pub fn end_epoch(&mut self, epoch: usize, end: EpochEnd, log: &mut dyn FnMut(&str)) -> Result<bool> {
        let epochs = self.cfg.schedule.epochs;
        let sums = &self.pos.sums;
        let names: Vec<String> = self.clf.model.tasks().iter().map(|t| t.name.clone()).collect();
        let seed_loss = |name: &str| names.iter().position(|n| n == name).map_or((f64::NAN, 0), |t| sums.mean(t));
        let ((loss_a, _), (loss_b, _)) = (seed_loss(crate::task::TASK_A), seed_loss(crate::task::TASK_B));
        // A task with no rows in the epoch has no loss to show (never "NaN").
        let shown = |(l, n): (f64, usize)| if n == 0 { "no rows".to_string() } else { format!("{l:.4}") };
        let parts: Vec<String> = names
            .iter()
            .enumerate()
            .map(|(t, name)| match name.as_str() {
                crate::task::TASK_A => format!("Loss Task A: {}", shown(sums.mean(t))),
                crate::task::TASK_B => format!("Loss Task B: {}", shown(sums.mean(t))),
                _ => format!("Loss {name}: {}", shown(sums.mean(t))),
            })
            .collect();
        log(&format!("Epoch [{}/{epochs}], {}", epoch + 1, parts.join(", ")));
        let losses: BTreeMap<String, f64> = names.iter().enumerate().filter(|&(t, _)| sums.mean(t).1 > 0).map(|(t, n)| (n.clone(), sums.mean(t).0)).collect();
        let log_vars = self.read_log_vars(log)?;
        self.clf.model.config.loss_log_vars = log_vars.clone();
        let (dev, ood) = self.evaluate(log)?;
        let at_limit = matches!(end, EpochEnd::AtLimit);
        let p = &self.pos;
        let record = EpochRecord {
            epoch: epoch + 1,
            steps: p.steps_this_epoch,
            loss_a,
            loss_b,
            seconds: p.epoch_seconds,
            sentences_per_s: p.seen as f64 / p.epoch_seconds.max(1e-9),
            dev: dev.classes,
            ood,
            loss_log_vars: log_vars,
            losses,
            dev_similarity: dev.similarity,
        };
        let score = record.dev_score();
        self.metrics.epochs.push(record);
        self.metrics.stopped_early = at_limit && p.step < self.full_steps;
        let improved = match (score, p.best) {
            (Some(s), Some(b)) => s > b,
            _ => true,
        };
        let (best, since_best) = if improved { (score.or(p.best), 0) } else { (p.best, p.since_best + 1) };
        let patience_over = self.cfg.schedule.patience.is_some_and(|n| since_best >= n) && epoch + 1 < epochs;
        if patience_over {
            self.metrics.early_stopped_epoch = Some(epoch + 1);
        }
        let over = at_limit || patience_over || epoch + 1 == epochs;
        if over {
            self.score_sts(log)?;
        }
        self.metrics.wall_seconds = self.wall();
        if !self.cfg.output.save_best || improved {
            self.metrics.saved_epoch = Some(epoch + 1);
            self.save()?;
        } else {
            write_metrics(&self.cfg.output.out, &self.metrics)?;
            log(&format!("  (dev not better than epoch {}: checkpoint kept)", self.metrics.saved_epoch.unwrap_or(0)));
        }
        self.pos = Position { best, since_best, ..self.pos.epoch_start(epoch + 1) };
        if self.cfg.output.resume_state {
            self.checkpoint(over)?;
        }
        if at_limit && self.metrics.stopped_early {
            log(&format!("stopped at the step limit ({} optimizer steps)", self.pos.step));
        }
        if patience_over {
            log(&format!("early stop: mean dev accuracy has not improved for {since_best} epoch(s) (patience {})", self.cfg.schedule.patience.unwrap_or(0)));
        }
        Ok(over)
    }

    /// Uncertainty weighting's log-variances now, logged (`None` when it is off).
    fn read_log_vars(&self, log: &mut dyn FnMut(&str)) -> Result<Option<Vec<f64>>> {
        let Some((_, s)) = &self.log_vars else { return Ok(None) };
        let v = Vec::<f64>::try_from(s.to_kind(Kind::Double).to_device(Device::Cpu))?;
        let shown: Vec<String> = self
            .clf
            .model
            .tasks()
            .iter()
            .zip(&v)
            .map(|(t, x)| match t.name.as_str() {
                crate::task::TASK_A => format!("A {x:.4}"),
                crate::task::TASK_B => format!("B {x:.4}"),
                n => format!("{n} {x:.4}"),
            })
            .collect();
        log(&format!("  uncertainty weighting: log-variance {}", shown.join(", ")));
        Ok(Some(v))
    }

    /// Scores the encoder's own embeddings on the run's STS file (`sts_eval`), zero-shot.
    fn score_sts(&mut self, log: &mut dyn FnMut(&str)) -> Result<()> {
        let Some(path) = self.cfg.data.sts_eval.clone() else { return Ok(()) };
        let pairs = crate::data::read_pairs(&path, crate::data::PairNames::SCORED)?;
        let n = self.clf.model.tasks().len();
        let mut ex = Vec::with_capacity(pairs.len());
        for r in &pairs {
            let mut e = Example::text(&r.text_a, self.clf.tokenizer.encode(&r.text_a), n);
            e.ids_b = Some(self.clf.tokenizer.encode(&r.text_b));
            ex.push((e, crate::data::parse_score(&path, r.line, &r.value)?));
        }
        let examples: Vec<Example> = ex.iter().map(|(e, _)| e.clone()).collect();
        let (pooled, second) = infer::pooled_sequences(&self.clf.model, &examples, self.eval_batching())?;
        let _guard = tch::no_grad_guard();
        let k = examples.len() as i64;
        let v_index = Tensor::from_slice(&second.iter().map(|s| s.expect("pairs") as i64).collect::<Vec<_>>()).to_device(pooled.device());
        let cos = Tensor::cosine_similarity(&pooled.narrow(0, 0, k), &pooled.index_select(0, &v_index), 1, 1e-8);
        let cos = Vec::<f64>::try_from(cos.to_kind(Kind::Double).to_device(Device::Cpu))?;
        let gold: Vec<f64> = ex.iter().map(|(_, s)| *s).collect();
        let m = crate::metrics::SimilarityMetrics { spearman: crate::metrics::spearman(&cos, &gold), pearson: crate::metrics::pearson(&cos, &gold), n: ex.len() };
        log(&format!("  sts {}: Spearman {:.4}, Pearson {:.4} (n={}; the encoder's own embeddings, zero-shot)", path.display(), m.spearman, m.pearson, m.n));
        self.metrics.sts = Some(m);
        Ok(())
    }

    /// Writes the resume state at the current position (`finished`: nothing left to resume).
    pub fn checkpoint(&self, finished: bool) -> Result<()> {
        let (optimizer, adam_steps) = self.opts.state();
        let st = RunState {
            format: String::new(),
            config: self.cfg.clone(),
            position: self.pos.clone(),
            finished,
            metrics: self.metrics.clone(),
            adam_steps,
            weights_sha256: String::new(),
            optimizer_sha256: String::new(),
        };
        state::write(&self.cfg.output.out, st, StateTensors { weights: self.variables(), optimizer })
    }

    /// The checkpoint folder: weights (or only the config), vocabulary and `metrics.json`.
    fn save(&self) -> Result<()> {
        let out = &self.cfg.output.out;
        if self.cfg.output.save_weights {
            self.clf.save(out)?;
        } else {
            self.clf.model.save_config(out)?;
        }
        write_metrics(out, &self.metrics)
    }
}

/// Metrics of `ex` from cached pooled vectors when there are, else through the whole model.
fn evaluate(model: &MultiTask, ex: &[Example], cached: Option<&(Tensor, Vec<Option<usize>>)>, b: Batching) -> Result<infer::Evaluation> {
    match cached {
        _ if ex.is_empty() => Ok(infer::Evaluation::default()),
        Some((p, second)) => infer::evaluate_pooled(model, ex, p, second, b.batch_size),
        None => infer::evaluate(model, ex, b),
    }
}

fn report_dev(set: &str, dev: &infer::Evaluation, log: &mut dyn FnMut(&str)) {
    for (task, m) in &dev.classes {
        log(&format!("  {set} {task}: accuracy {:.4}, macro-F1 {:.4} (n={})", m.accuracy, m.macro_f1, m.n));
    }
    for (task, m) in &dev.similarity {
        log(&format!("  {set} {task}: Spearman {:.4}, Pearson {:.4} (n={})", m.spearman, m.pearson, m.n));
    }
}

/// What a run stopped by a non-finite value leaves in `out`, in words.
fn saved_note(out: &Path, saved_epoch: Option<usize>) -> String {
    match (MultiTask::is_checkpoint(out), saved_epoch) {
        (true, Some(e)) => format!("the checkpoint of epoch {e} in {} is left as it was", out.display()),
        (true, None) => format!("{} still holds an earlier run's checkpoint, left as it was", out.display()),
        (false, _) => format!("{} holds no checkpoint: the run stopped before the end of its first epoch", out.display()),
    }
}

fn write_metrics(out: &Path, metrics: &RunMetrics) -> Result<()> {
    write_atomic(&out.join("metrics.json"), &serde_json::to_vec_pretty(metrics).expect("metrics serialise"))
}

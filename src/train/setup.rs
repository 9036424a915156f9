//! What a run is built from: its data files read and tokenized, the model to train (a base
//! folder with fresh heads, or a checkpoint to continue), and its output folder opened.

use super::config::{DataConfig, TrainConfig};
use super::output::{self, Existing, OutputLock, RemoveIfEmpty};
use super::state::RESUME_DIR;
use crate::classifier::Classifier;
use crate::config::PoolingConfig;
use crate::data::{self, Example, Labels, Source, Task};
use crate::error::{invalid, Error, Result};
use crate::fsutil::prepare_output_dir;
use crate::model::MultiTask;
use std::path::PathBuf;
use tch::Device;

/// The training, dev and out-of-domain rows of a run, tokenized, with the label sets.
pub(super) struct RunData {
    pub labels_a: Labels,
    pub labels_b: Labels,
    pub train_sources: Vec<Source>,
    pub dev_sources: Vec<Source>,
    /// Doubtful training labels (a single class, names that differ only in case, too many
    /// classes for the rows), one message each.
    pub warnings: Vec<String>,
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

fn training_sources(d: &DataConfig) -> Result<Vec<Source>> {
    read_sources(&[(d.task_a.as_ref(), Task::A), (d.task_b.as_ref(), Task::B)], &d.joint, d.limit)
}

/// Reads the run's files and collects its label sets (both tasks must have labels).
pub(super) fn read_data(d: &DataConfig) -> Result<RunData> {
    let train_sources = training_sources(d)?;
    let dev_sources = read_sources(&[(d.dev_a.as_ref(), Task::A), (d.dev_b.as_ref(), Task::B)], &d.dev_joint, None)?;
    let labels_a = Labels::collect(&train_sources, Task::A);
    let labels_b = Labels::collect(&train_sources, Task::B);
    for (l, t, what) in [(&labels_a, Task::A, "task_a file or a joint file with label_a"), (&labels_b, Task::B, "task_b file or a joint file with label_b")] {
        if l.is_empty() {
            return Err(invalid(format!("no {} labels in the training data: give a {what}", t.key())));
        }
    }
    let mut warnings = data::label_warnings(&train_sources, Task::A);
    warnings.extend(data::label_warnings(&train_sources, Task::B));
    Ok(RunData { labels_a, labels_b, train_sources, dev_sources, warnings })
}

/// The rows of the run as examples: training (only the kept task's labels, with `only_task`),
/// dev and out-of-domain.
pub(super) fn examples(cfg: &TrainConfig, d: &RunData, clf: &Classifier, log: &mut dyn FnMut(&str)) -> Result<[Vec<Example>; 3]> {
    let mut train = data::examples(&d.train_sources, &d.labels_a, &d.labels_b, &clf.tokenizer)?;
    if let Some(task) = cfg.data.only_task {
        for e in &mut train {
            match task {
                Task::A => e.label_b = None,
                Task::B => e.label_a = None,
            }
        }
        train.retain(|e| e.label_a.is_some() || e.label_b.is_some());
        log(&format!("single-task run: training {} only ({} rows)", task.key(), train.len()));
    }
    let dev = data::examples(&d.dev_sources, &d.labels_a, &d.labels_b, &clf.tokenizer)?;
    let ood = match &cfg.data.ood_b {
        Some(p) => data::examples(&[data::read_labelled(p, Some(Task::B))?], &d.labels_a, &d.labels_b, &clf.tokenizer)?,
        None => vec![],
    };
    Ok([train, dev, ood])
}

/// Optimizer steps in one epoch of `cfg` (training rows of the kept tasks over the batch size),
/// from the files alone: for schedules that are set in steps.
pub fn steps_per_epoch(cfg: &TrainConfig) -> Result<usize> {
    let sources = training_sources(&cfg.data)?;
    let rows = sources
        .iter()
        .flat_map(|s| &s.rows)
        .filter(|r| match cfg.data.only_task {
            Some(Task::A) => r.label_a.is_some(),
            Some(Task::B) => r.label_b.is_some(),
            None => true,
        })
        .count();
    Ok(rows.div_ceil(cfg.schedule.batch_size.max(1)))
}

/// The model to train: a checkpoint to continue from, or a base folder with fresh heads.
pub(super) fn build_classifier(cfg: &TrainConfig, labels_a: Labels, labels_b: Labels, device: Device, log: &mut dyn FnMut(&str)) -> Result<Classifier> {
    tch::manual_seed(cfg.schedule.seed as i64);
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
    if let Some(p) = &cfg.pooling {
        clf.model.set_pooling(PoolingConfig::from_name(p)?)?;
    }
    clf.model.config.training = Some(serde_json::to_value(cfg).expect("config serialises"));
    Ok(clf)
}

/// The output folder, open for the run: created if needed, locked, and (for a new run)
/// checked again under the lock.
pub(super) struct OpenOutput {
    /// Dropped after the lock (declared after it), so the lock file is gone by then.
    pub lock: OutputLock,
    pub made: Option<RemoveIfEmpty>,
}

/// Creates and locks `cfg`'s output folder; for a new run (`fresh`), checks its rules again
/// under the lock and clears an earlier run's resume state when its checkpoint is replaced.
pub(super) fn open_output(cfg: &TrainConfig, fresh: bool, log: &mut dyn FnMut(&str)) -> Result<OpenOutput> {
    let out = &cfg.output.out;
    let created = !out.exists();
    prepare_output_dir(out)?;
    // A folder this run made goes again if the run ends (by an error) before writing into it.
    let made = created.then(|| RemoveIfEmpty(out.clone()));
    let lock = OutputLock::acquire(out)?;
    if fresh && output::check(out, &cfg.model, cfg.output.overwrite)? == Existing::Checkpoint {
        log(&format!("replacing the checkpoint of an earlier run in {} (overwrite)", out.display()));
        // Its resume state belongs to the earlier run: a resumed run must never mix the two.
        for name in [RESUME_DIR.to_string(), format!("{RESUME_DIR}.old"), format!("{RESUME_DIR}.tmp")] {
            let d = out.join(name);
            if d.exists() {
                std::fs::remove_dir_all(&d).map_err(|e| Error::io(&d, e))?;
            }
        }
    }
    Ok(OpenOutput { lock, made })
}

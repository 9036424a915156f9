//! What a run is built from: its data files read and tokenized, the model to train (a base
//! folder with fresh heads, or a checkpoint to continue), and its output folder opened.

use super::config::{DataConfig, TrainConfig};
use super::output::{self, Existing, OutputLock, RemoveIfEmpty};
use super::state::RESUME_DIR;
use crate::classifier::Classifier;
use crate::config::PoolingConfig;
use crate::data::{self, Example, Labels, Slots, Source, Task};
use crate::error::{invalid, Error, Result};
use crate::fsutil::prepare_output_dir;
use crate::model::MultiTask;
use crate::task::{read_task_file, task_examples, TaskInfo, TaskKind, TaskRows, TaskSpec, TASK_A, TASK_B};
use std::path::PathBuf;
use tch::Device;

/// The training, dev and out-of-domain rows of a run, as read, with the model's tasks.
pub(super) struct RunData {
    /// The model's tasks in head order: `task_a`, `task_b` (when the seed's files are given),
    /// then the named tasks.
    pub tasks: Vec<TaskInfo>,
    /// Each task's loss weight, by task index.
    pub weights: Vec<f64>,
    /// The seed tasks' training and dev files (per-task and joint).
    pub train_sources: Vec<Source>,
    pub dev_sources: Vec<Source>,
    /// The named tasks' training rows, in `cfg.data.tasks` order.
    pub task_rows: Vec<TaskRows>,
    /// Doubtful training labels (a single class, names that differ only in case, too many
    /// classes for the rows), one message each.
    pub warnings: Vec<String>,
}

impl RunData {
    /// The index of the seed's task `name`, if the run has it.
    fn seed_slot(&self, name: &'static str) -> Option<(usize, &'static str, &Labels)> {
        self.tasks.iter().position(|t| t.name == name).map(|i| (i, name, &self.tasks[i].labels))
    }

    /// The task index of named task `k` (in `cfg.data.tasks` order).
    fn named_index(&self, k: usize) -> usize {
        self.tasks.len() - self.task_rows.len() + k
    }
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

fn named_rows(spec: &TaskSpec, limit: Option<usize>) -> Result<TaskRows> {
    let mut rows = read_task_file(&spec.train, spec.kind, &spec.columns)?;
    if let Some(n) = limit {
        rows.truncate(n);
    }
    Ok(rows)
}

/// Reads the run's files and collects its tasks (each classification task must have labels).
pub(super) fn read_data(cfg: &TrainConfig) -> Result<RunData> {
    let d = &cfg.data;
    let train_sources = training_sources(d)?;
    let dev_sources = read_sources(&[(d.dev_a.as_ref(), Task::A), (d.dev_b.as_ref(), Task::B)], &d.dev_joint, None)?;
    let mut tasks = Vec::new();
    let mut weights = Vec::new();
    let mut warnings = Vec::new();
    if d.has_seed_tasks() {
        let labels_a = Labels::collect(&train_sources, Task::A);
        let labels_b = Labels::collect(&train_sources, Task::B);
        if labels_a.is_empty() && labels_b.is_empty() {
            return Err(invalid("no task_a or task_b labels in the training data: give a task_a or task_b file, or a joint file with label_a or label_b"));
        }
        // A seed task without labels (only --task-a given, say) is simply not part of the model.
        for (labels, task, name, weight) in [(labels_a, Task::A, TASK_A, cfg.optimizer.weight_a), (labels_b, Task::B, TASK_B, cfg.optimizer.weight_b)] {
            if !labels.is_empty() {
                warnings.extend(data::label_warnings(&train_sources, task, name));
                tasks.push(TaskInfo::classes(name, TaskKind::Classification, labels));
                weights.push(weight);
            }
        }
    }
    let mut task_rows = Vec::new();
    for spec in &d.tasks {
        let rows = named_rows(spec, d.limit)?;
        let info = match spec.kind {
            TaskKind::Similarity => TaskInfo { name: spec.name.clone(), kind: spec.kind, labels: Labels::default(), score_range: Some(match spec.score_range {
                Some(r) => r,
                None => rows.score_range()?,
            }) },
            kind => {
                let labels = rows.labels();
                if let TaskRows::Texts(s) = &rows {
                    warnings.extend(data::label_warnings(std::slice::from_ref(s), Task::A, &spec.name));
                }
                TaskInfo::classes(&spec.name, kind, labels)
            }
        };
        tasks.push(info);
        weights.push(spec.weight);
        task_rows.push(rows);
    }
    if weights.iter().all(|&w| w == 0.0) {
        return Err(invalid("every task's loss weight is 0: nothing would be learned"));
    }
    Ok(RunData { tasks, weights, train_sources, dev_sources, task_rows, warnings })
}

/// The rows of the run as examples: training (only the kept task's labels, with `only_task`),
/// dev and out-of-domain.
pub(super) fn examples(cfg: &TrainConfig, d: &RunData, clf: &Classifier, log: &mut dyn FnMut(&str)) -> Result<[Vec<Example>; 3]> {
    let n = d.tasks.len();
    let tok = &clf.tokenizer;
    let slots = Slots { a: d.seed_slot(TASK_A), b: d.seed_slot(TASK_B) };
    let mut train = data::examples(&d.train_sources, slots, n, tok)?;
    let mut dev = data::examples(&d.dev_sources, slots, n, tok)?;
    for (k, (spec, rows)) in cfg.data.tasks.iter().zip(&d.task_rows).enumerate() {
        let t = d.named_index(k);
        train.extend(task_examples(rows, t, &d.tasks[t], n, tok)?);
        if let Some(p) = &spec.dev {
            dev.extend(task_examples(&read_task_file(p, spec.kind, &spec.columns)?, t, &d.tasks[t], n, tok)?);
        }
    }
    if let Some(task) = cfg.data.only_task {
        let keep = d.tasks.iter().position(|t| t.name == task.key());
        for e in &mut train {
            for (t, x) in e.targets.iter_mut().enumerate() {
                if Some(t) != keep {
                    *x = None;
                }
            }
        }
        train.retain(|e| e.task_bits() != 0);
        log(&format!("single-task run: training {} only ({} rows)", task.key(), train.len()));
    }
    let ood = match &cfg.data.ood_b {
        Some(p) => data::examples(&[data::read_labelled(p, Some(Task::B))?], Slots { a: None, b: slots.b }, n, tok)?,
        None => vec![],
    };
    Ok([train, dev, ood])
}

/// Optimizer steps in one epoch of `cfg` (training rows of the kept tasks over the batch size),
/// from the files alone: for schedules that are set in steps.
pub fn steps_per_epoch(cfg: &TrainConfig) -> Result<usize> {
    let sources = training_sources(&cfg.data)?;
    let mut rows = sources
        .iter()
        .flat_map(|s| &s.rows)
        .filter(|r| match cfg.data.only_task {
            Some(Task::A) => r.label_a.is_some(),
            Some(Task::B) => r.label_b.is_some(),
            None => true,
        })
        .count();
    for spec in &cfg.data.tasks {
        rows += named_rows(spec, cfg.data.limit)?.len();
    }
    Ok(rows.div_ceil(cfg.schedule.batch_size.max(1)))
}

/// The model to train: a checkpoint to continue from, or a base folder with fresh heads.
pub(super) fn build_classifier(cfg: &TrainConfig, tasks: Vec<TaskInfo>, device: Device, log: &mut dyn FnMut(&str)) -> Result<Classifier> {
    tch::manual_seed(cfg.schedule.seed as i64);
    let (mut clf, report) = if MultiTask::is_checkpoint(&cfg.model) {
        let (mut clf, report) = Classifier::load(&cfg.model, device)?;
        let have = clf.model.tasks();
        if have != tasks.as_slice() {
            let show = |ts: &[TaskInfo]| ts.iter().map(|t| format!("{} ({}: {})", t.name, t.kind, t.labels.0.join("/"))).collect::<Vec<_>>().join(", ");
            return Err(invalid(format!(
                "{}: the checkpoint's tasks [{}] differ from the training files' [{}]",
                cfg.model.display(),
                show(have),
                show(&tasks)
            )));
        }
        if let Some(p) = cfg.head_dropout {
            clf.model.set_head_dropout(p)?;
        }
        (clf, report)
    } else {
        Classifier::from_base(&cfg.model, tasks, cfg.head_dropout.unwrap_or(0.0), device)?
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

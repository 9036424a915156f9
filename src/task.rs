//! Owns what a task is: its name, its kind (one text to a label, two texts to a label, two texts
//! to a similarity score), the files it learns from, and how users name tasks on the command line
//! (`NAME=KIND:TRAIN[:DEV]`) or in a tasks file (TOML).
//!
//! The seed's two tasks are ordinary classification tasks named `task_a` and `task_b`; only
//! their parameter subsets keep the seed's names (`classification_head`, `sentiment_head`).
//! Every other task's head lives in `heads.<name>`.

use crate::data::{self, parse_score, Example, Labels, Names, PairNames, PairRow, Source, Target, Task};
use crate::error::{invalid, Error, Result};
use crate::tokenizer::SentenceTokenizer;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

/// The seed's Task A (question type), `classification_head`.
pub const TASK_A: &str = "task_a";
/// The seed's Task B (sentiment), `sentiment_head`.
pub const TASK_B: &str = "task_b";

/// What a task maps its input to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TaskKind {
    /// One text to one label: a linear head on the pooled vector.
    Classification,
    /// Two texts to one label: each text encoded on its own, the head reads `(u, v, |u - v|)`
    /// (sentence-transformers' SoftmaxLoss), so the embeddings stay usable on their own.
    PairClassification,
    /// Two texts to a score: no head; the loss is the squared error between `cos(u, v)` and the
    /// score rescaled to [0, 1] (sentence-transformers' CosineSimilarityLoss).
    Similarity,
}

impl TaskKind {
    /// The names users type.
    pub const NAMES: [&'static str; 3] = ["classification", "pair-classification", "similarity"];

    /// Whether an example of this kind holds two texts.
    pub fn is_pair(self) -> bool {
        !matches!(self, TaskKind::Classification)
    }

    /// Whether the task has a head with labels (classification kinds) rather than a score.
    pub fn has_head(self) -> bool {
        !matches!(self, TaskKind::Similarity)
    }
}

impl FromStr for TaskKind {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        match s {
            "classification" => Ok(TaskKind::Classification),
            "pair-classification" | "pair_classification" => Ok(TaskKind::PairClassification),
            "similarity" => Ok(TaskKind::Similarity),
            _ => Err(invalid(format!("task kind '{s}': expected {}", TaskKind::NAMES.join(", ")))),
        }
    }
}

impl fmt::Display for TaskKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TaskKind::Classification => "classification",
            TaskKind::PairClassification => "pair-classification",
            TaskKind::Similarity => "similarity",
        })
    }
}

/// A task as the model records it (in the checkpoint's `config.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskInfo {
    /// The task's name (`[a-z][a-z0-9_]*`), the key of its metrics and predictions.
    pub name: String,
    /// What the task maps its input to.
    pub kind: TaskKind,
    /// Label names in the order of the head's outputs (empty for similarity).
    #[serde(default)]
    pub labels: Labels,
    /// Similarity only: the gold scores' range, rescaled to [0, 1] for the loss.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub score_range: Option<[f64; 2]>,
}

impl TaskInfo {
    /// A classification task (`kind` classification or pair-classification) with its labels.
    pub fn classes(name: &str, kind: TaskKind, labels: Labels) -> TaskInfo {
        TaskInfo { name: name.into(), kind, labels, score_range: None }
    }

    /// The parameter subset of the task's head: the seed's names for `task_a` and `task_b`,
    /// `heads.<name>` for every other task.
    pub fn subset(&self) -> String {
        head_subset(&self.name)
    }
}

/// The seed's two tasks: `task_a` and `task_b`, both classification, with their labels.
pub fn seed_tasks(labels_a: Labels, labels_b: Labels) -> Vec<TaskInfo> {
    vec![TaskInfo::classes(TASK_A, TaskKind::Classification, labels_a), TaskInfo::classes(TASK_B, TaskKind::Classification, labels_b)]
}

/// The parameter subset of task `name`'s head (see [`TaskInfo::subset`]).
pub fn head_subset(name: &str) -> String {
    match name {
        TASK_A => crate::params::HEAD_A.to_string(),
        TASK_B => crate::params::HEAD_B.to_string(),
        _ => format!("{}.{name}", crate::params::NAMED_HEADS),
    }
}

/// Checks a task name: `[a-z][a-z0-9_]*`, at most 64 characters.
pub fn check_name(name: &str) -> Result<()> {
    let mut chars = name.chars();
    let ok = chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && name.len() <= 64;
    if ok {
        Ok(())
    } else {
        Err(invalid(format!("task name '{name}': use a lowercase letter, then lowercase letters, digits or '_' (at most 64)")))
    }
}

fn one() -> f64 {
    1.0
}

/// Which columns (or JSON keys) of a task's files hold what; each defaults to its own name.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ColumnNames {
    /// One-text tasks: the text column (default `text`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// Pair tasks: the first text (default `text_a`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text_a: Option<String>,
    /// Pair tasks: the second text (default `text_b`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text_b: Option<String>,
    /// Classification kinds: the label (default `label`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    /// Similarity: the score (default `score`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub score: Option<String>,
}

impl ColumnNames {
    /// The column holding `role` (`text`, `text_a`, `text_b`, `label` or `score`).
    pub fn get<'a>(&'a self, role: &'a str) -> &'a str {
        let v = match role {
            "text" => &self.text,
            "text_a" => &self.text_a,
            "text_b" => &self.text_b,
            "label" => &self.label,
            "score" => &self.score,
            _ => &None,
        };
        v.as_deref().unwrap_or(role)
    }
}

/// A task a run trains: its name, kind, files, loss weight and column names.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskSpec {
    /// The task's name (`[a-z][a-z0-9_]*`).
    pub name: String,
    /// What the task maps its input to.
    pub kind: TaskKind,
    /// The training file (TSV, CSV or JSON Lines).
    pub train: PathBuf,
    /// A dev file, evaluated after each epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dev: Option<PathBuf>,
    /// Factor on the task's loss in the combined loss (finite, >= 0; default 1).
    #[serde(default = "one")]
    pub weight: f64,
    /// Which columns hold the texts, the label or the score.
    #[serde(default)]
    pub columns: ColumnNames,
    /// Similarity only: the range of the gold scores (default: [0, 1] when every training score
    /// lies in it, else [0, 5] as STS-B's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub score_range: Option<[f64; 2]>,
}

impl TaskSpec {
    /// A task with default weight and column names.
    pub fn new(name: &str, kind: TaskKind, train: PathBuf, dev: Option<PathBuf>) -> TaskSpec {
        TaskSpec { name: name.into(), kind, train, dev, weight: 1.0, columns: ColumnNames::default(), score_range: None }
    }

    /// Checks the name, the weight and the score range.
    pub fn validate(&self) -> Result<()> {
        check_name(&self.name)?;
        if !(self.weight.is_finite() && self.weight >= 0.0) {
            return Err(invalid(format!("task {}: weight {} must be finite and >= 0", self.name, self.weight)));
        }
        if let Some([lo, hi]) = self.score_range {
            if self.kind != TaskKind::Similarity {
                return Err(invalid(format!("task {}: score_range is for similarity tasks only", self.name)));
            }
            if !(lo.is_finite() && hi.is_finite() && lo < hi) {
                return Err(invalid(format!("task {}: score_range [{lo}, {hi}] must be finite with low < high", self.name)));
            }
        }
        Ok(())
    }
}

impl FromStr for TaskSpec {
    type Err = Error;

    /// `NAME=KIND:TRAIN[:DEV]`, as `--task` takes it. A path may not contain `:`; use a tasks
    /// file for such paths.
    fn from_str(s: &str) -> Result<Self> {
        let usage = || format!("--task '{s}': expected NAME=KIND:TRAIN[:DEV], e.g. paraphrase=pair-classification:data/mrpc/train.tsv:data/mrpc/dev.tsv");
        let (name, rest) = s.split_once('=').ok_or_else(|| invalid(usage()))?;
        let mut parts = rest.split(':');
        let kind = parts.next().filter(|k| !k.is_empty()).ok_or_else(|| invalid(usage()))?;
        let train = parts.next().filter(|p| !p.is_empty()).ok_or_else(|| invalid(usage()))?;
        let dev = parts.next().filter(|p| !p.is_empty());
        if parts.next().is_some() {
            return Err(invalid(format!("{}: too many ':' (a path with ':' needs a tasks file)", usage())));
        }
        let spec = TaskSpec::new(name.trim(), kind.trim().parse()?, train.into(), dev.map(PathBuf::from));
        spec.validate()?;
        Ok(spec)
    }
}

/// A tasks file: `[[task]]` tables with `name`, `kind`, `train`, and optionally `dev`, `weight`,
/// `columns` and `score_range`. Relative paths are taken from the file's folder.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TasksFile {
    task: Vec<TaskSpec>,
}

/// Reads a tasks file (TOML), its paths resolved against the file's folder.
pub fn read_tasks_file(path: &Path) -> Result<Vec<TaskSpec>> {
    crate::error::check_path(path, "tasks file", crate::error::Want::RegularFile)?;
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    let file: TasksFile = toml::from_str(&text).map_err(|e| Error::config(path, format!("not a tasks file: {}", e.message())))?;
    let base = path.parent().unwrap_or(Path::new(""));
    let resolve = |p: &Path| if p.is_relative() { base.join(p) } else { p.to_path_buf() };
    let mut out = Vec::new();
    for mut t in file.task {
        t.validate().map_err(|e| Error::config(path, e.to_string()))?;
        t.train = resolve(&t.train);
        t.dev = t.dev.as_deref().map(resolve);
        out.push(t);
    }
    if out.is_empty() {
        return Err(Error::config(path, "no [[task]] tables"));
    }
    check_unique(out.iter().map(|t| t.name.as_str())).map_err(|e| Error::config(path, e.to_string()))?;
    Ok(out)
}

/// The named task a bundled pair set trains: `stsb` as the similarity task `sts`, `mrpc` as the
/// pair-classification task `paraphrase` (paths relative to the repository root); `None` for
/// any other name (the seed's `trec6` and `sst5_3class` are `task_a` and `task_b`).
pub fn bundled_task(set: &str) -> Option<TaskSpec> {
    use crate::data::bundled;
    match set {
        "stsb" => Some(TaskSpec::new("sts", TaskKind::Similarity, bundled::STSB_TRAIN.into(), Some(bundled::STSB_DEV.into()))),
        "mrpc" => Some(TaskSpec::new("paraphrase", TaskKind::PairClassification, bundled::MRPC_TRAIN.into(), Some(bundled::MRPC_DEV.into()))),
        _ => None,
    }
}

/// Checks that task names are unique.
pub fn check_unique<'a>(names: impl IntoIterator<Item = &'a str>) -> Result<()> {
    let mut seen = std::collections::BTreeSet::new();
    for n in names {
        if !seen.insert(n) {
            return Err(invalid(format!("task '{n}' is given twice")));
        }
    }
    Ok(())
}

/// A task file's rows as read: texts with labels, or sentence pairs with a label or a score.
#[derive(Debug, Clone)]
pub enum TaskRows {
    /// A one-text task's rows (the label read as Task A's: see [`data::read_labelled`]).
    Texts(Source),
    /// A pair task's rows.
    Pairs {
        /// The file, as given (named in errors).
        path: PathBuf,
        /// Its rows in file order.
        rows: Vec<PairRow>,
    },
}

impl TaskRows {
    /// Number of rows.
    pub fn len(&self) -> usize {
        match self {
            TaskRows::Texts(s) => s.rows.len(),
            TaskRows::Pairs { rows, .. } => rows.len(),
        }
    }

    /// Whether there are no rows.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Keeps the first `n` rows.
    pub fn truncate(&mut self, n: usize) {
        match self {
            TaskRows::Texts(s) => s.rows.truncate(n),
            TaskRows::Pairs { rows, .. } => rows.truncate(n),
        }
    }

    /// The label names in the rows, sorted (classification kinds).
    pub fn labels(&self) -> Labels {
        match self {
            TaskRows::Texts(s) => Labels::collect(std::slice::from_ref(s), Task::A),
            TaskRows::Pairs { rows, .. } => {
                let set: std::collections::BTreeSet<&String> = rows.iter().map(|r| &r.value).collect();
                Labels(set.into_iter().cloned().collect())
            }
        }
    }

    /// The range of similarity scores: [0, 1] when every score lies in it, else [0, 5] (STS-B's
    /// scale) when every score lies in that, else the scores' own minimum and maximum.
    pub fn score_range(&self) -> Result<[f64; 2]> {
        let TaskRows::Pairs { path, rows } = self else { return Ok([0.0, 1.0]) };
        let scores: Vec<f64> = rows.iter().map(|r| parse_score(path, r.line, &r.value)).collect::<Result<_>>()?;
        let (lo, hi) = scores.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), &s| (l.min(s), h.max(s)));
        Ok(if lo >= 0.0 && hi <= 1.0 {
            [0.0, 1.0]
        } else if lo >= 0.0 && hi <= 5.0 {
            [0.0, 5.0]
        } else if lo < hi {
            [lo, hi]
        } else {
            [lo - 1.0, lo]
        })
    }
}

/// Reads a file of task `kind` with the column names `columns`.
pub fn read_task_file(path: &Path, kind: TaskKind, columns: &ColumnNames) -> Result<TaskRows> {
    Ok(match kind {
        TaskKind::Classification => TaskRows::Texts(data::read_labelled_named(path, Some(Task::A), Names { text: columns.get("text"), label: columns.get("label") })?),
        TaskKind::PairClassification | TaskKind::Similarity => {
            let score = kind == TaskKind::Similarity;
            let names = PairNames { text_a: columns.get("text_a"), text_b: columns.get("text_b"), value: columns.get(if score { "score" } else { "label" }), score };
            TaskRows::Pairs { path: path.to_path_buf(), rows: data::read_pairs(path, names)? }
        }
    })
}

/// Tokenized examples of task `t` (`info`) of a model with `n_tasks` tasks from `rows`. A label
/// the task does not know is an error naming the file and line.
pub fn task_examples(rows: &TaskRows, t: usize, info: &TaskInfo, n_tasks: usize, tok: &SentenceTokenizer) -> Result<Vec<Example>> {
    match rows {
        TaskRows::Texts(source) => {
            let slots = data::Slots { a: Some((t, info.name.as_str(), &info.labels)), b: None };
            data::examples(std::slice::from_ref(source), slots, n_tasks, tok)
        }
        TaskRows::Pairs { path, rows } => rows
            .iter()
            .map(|r| {
                let target = match info.kind {
                    TaskKind::Similarity => Target::Score(parse_score(path, r.line, &r.value)? as f32),
                    _ => Target::Class(info.labels.index(&r.value).ok_or_else(|| {
                        Error::data(path, r.line, format!("{} label '{}' was never seen in training (known: {})", info.name, r.value, info.labels.0.join(", ")))
                    })?),
                };
                let mut e = Example::text(&r.text_a, tok.encode(&r.text_a), n_tasks);
                e.ids_b = Some(tok.encode(&r.text_b));
                e.targets[t] = Some(target);
                Ok(e)
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn task_flags_parse_and_name_what_is_wrong() {
        let t: TaskSpec = "para=pair-classification:data/mrpc/train.tsv:data/mrpc/dev.tsv".parse().unwrap();
        assert_eq!((t.name.as_str(), t.kind, t.dev.as_deref()), ("para", TaskKind::PairClassification, Some(Path::new("data/mrpc/dev.tsv"))));
        let t: TaskSpec = "sts=similarity:s.tsv".parse().unwrap();
        assert_eq!((t.kind, t.dev, t.weight), (TaskKind::Similarity, None, 1.0));
        for (bad, want) in [
            ("noequals", "expected NAME=KIND:TRAIN[:DEV]"),
            ("Bad=classification:x.tsv", "task name 'Bad'"),
            ("x=regression:x.tsv", "task kind 'regression'"),
            ("x=classification", "expected NAME=KIND"),
            ("x=classification:a:b:c", "too many ':'"),
        ] {
            let e = bad.parse::<TaskSpec>().unwrap_err().to_string();
            assert!(e.contains(want), "{bad}: {e}");
        }
        assert_eq!(head_subset("task_a"), "classification_head");
        assert_eq!(head_subset("intent"), "heads.intent");
        assert!(check_unique(["a", "b", "a"]).unwrap_err().to_string().contains("'a' is given twice"));
    }

    #[test]
    fn tasks_files_resolve_paths_against_their_folder() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("tasks.toml");
        std::fs::write(
            &p,
            "[[task]]\nname = \"intent\"\nkind = \"classification\"\ntrain = \"i.tsv\"\ndev = \"/abs/dev.tsv\"\nweight = 0.5\ncolumns = { label = \"intent\" }\n\n\
             [[task]]\nname = \"sts\"\nkind = \"similarity\"\ntrain = \"s.tsv\"\nscore_range = [0.0, 5.0]\n",
        )
        .unwrap();
        let t = read_tasks_file(&p).unwrap();
        assert_eq!(t[0].train, d.path().join("i.tsv"));
        assert_eq!(t[0].dev.as_deref(), Some(Path::new("/abs/dev.tsv")));
        assert_eq!((t[0].weight, t[0].columns.get("label"), t[0].columns.get("text")), (0.5, "intent", "text"));
        assert_eq!(t[1].score_range, Some([0.0, 5.0]));
        std::fs::write(&p, "[[task]]\nname = \"x\"\nkind = \"classification\"\ntrain = \"a\"\nlr = 1\n").unwrap();
        let e = read_tasks_file(&p).unwrap_err().to_string();
        assert!(e.contains("tasks.toml") && e.contains("lr"), "{e}");
        let one = "[[task]]\nname = \"x\"\nkind = \"classification\"\ntrain = \"a\"\n";
        std::fs::write(&p, format!("{one}{one}")).unwrap();
        let e = read_tasks_file(&p).unwrap_err().to_string();
        assert!(e.contains("tasks.toml") && e.contains("'x' is given twice"), "{e}");
    }
}

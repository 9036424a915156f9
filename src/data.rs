//! Owns labelled data for the two tasks: the TSV, CSV and JSON Lines readers, label sets,
//! tokenized examples, and where the bundled data lives. (Batching lives in `batch`.)
//!
//! A per-task file has columns `text` and `label`; a joint file has `text`, `label_a`, `label_b`
//! (either label may be empty: that row then adds nothing to that task's loss). TSV has a header
//! line and no quoting (tweets start with `"`), CSV follows RFC 4180, JSON Lines holds one object
//! per line with the same keys. A UTF-8 byte order mark at the start of a file is dropped. Every
//! bad row is an error naming the file and line.
//!
//! In JSON Lines a label is a string, or an integer standing for its decimal text (`1` and `"1"`
//! are one class); `null` or a missing key is no label (allowed in joint files only, like an
//! empty cell). Any other value (`1.0`, `true`, an object or an array) is an error naming the
//! file, line and key, so that `1` and `1.0` can never become two classes.
//!
//! A data file must be a regular file (or a FIFO, read to its end): a directory, a device such as
//! `/dev/null` or a symlink loop is refused as what it is. [`label_warnings`] lists what looks
//! wrong in a task's labels (a single class, names differing only in case, too many classes).

use crate::error::{check_path, Error, Result, Want};
use crate::textio::BOM;
use crate::tokenizer::SentenceTokenizer;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The training and dev files bundled in `data/` (copied from shared/data: TREC-6 for Task A,
/// SST-5 folded to 3 classes for Task B, TweetEval sentiment as an out-of-domain Task B check),
/// relative to the repository root.
pub mod bundled {
    /// Task A training file: TREC-6 questions, six coarse question types.
    pub const TASK_A: &str = "data/trec6/train.tsv";
    /// Task B training file: SST-5 movie-review sentences, folded to negative, neutral, positive.
    pub const TASK_B: &str = "data/sst5_3class/train.tsv";
    /// Task A dev file (TREC-6), evaluated after each epoch.
    pub const DEV_A: &str = "data/trec6/dev.tsv";
    /// Task B dev file (SST-5 folded to 3 classes), evaluated after each epoch.
    pub const DEV_B: &str = "data/sst5_3class/dev.tsv";
    /// Tweets (TweetEval sentiment, validation split): Task B out of domain, never trained on.
    pub const OOD_B: &str = "data/tweet_sentiment/dev.tsv";
    /// STS-B training pairs (`text_a`, `text_b`, `score` 0-5): the similarity task `sts`.
    pub const STSB_TRAIN: &str = "data/stsb/train.tsv";
    /// STS-B dev pairs: the `sts` task's dev file, and what `--sts-eval` scores zero-shot.
    pub const STSB_DEV: &str = "data/stsb/dev.tsv";
    /// MRPC training pairs (`text_a`, `text_b`, `label`: paraphrase or different): the
    /// pair-classification task `paraphrase`.
    pub const MRPC_TRAIN: &str = "data/mrpc/train.tsv";
    /// MRPC dev pairs.
    pub const MRPC_DEV: &str = "data/mrpc/dev.tsv";
    /// The bundled data sets a task set names: `trec6` (Task A), `sst5_3class` (Task B), `stsb`
    /// and `mrpc` (named tasks `sts` and `paraphrase`).
    pub const SETS: [&str; 4] = ["trec6", "sst5_3class", "stsb", "mrpc"];
}

/// The two tasks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Task {
    /// Task A: sentence classification (`classification_head`).
    A,
    /// Task B: sentiment (`sentiment_head`).
    B,
}

impl Task {
    /// The task's name in messages and in metrics maps: `task_a` or `task_b`.
    pub fn key(self) -> &'static str {
        match self {
            Task::A => "task_a",
            Task::B => "task_b",
        }
    }
}

/// One row as read: text and the label names present.
#[derive(Debug, Clone, PartialEq)]
pub struct RawRow {
    /// 1-based line (TSV/JSONL) or record line (CSV) in the file, header included.
    pub line: usize,
    /// The text as written (never empty or only whitespace).
    pub text: String,
    /// The Task A label name, trimmed; `None` when the file has no Task A column or the cell
    /// is empty.
    pub label_a: Option<String>,
    /// The Task B label name, trimmed; `None` when the file has no Task B column or the cell
    /// is empty.
    pub label_b: Option<String>,
}

/// A labelled source file and the rows read from it.
#[derive(Debug, Clone)]
pub struct Source {
    /// The file, as given (named in errors and warnings).
    pub path: PathBuf,
    /// Its rows in file order (all of them, or the first N under a row limit).
    pub rows: Vec<RawRow>,
}

/// A data file's format, from its extension ([`format_of`]).
#[derive(Clone, Copy)]
pub(crate) enum Format {
    Tsv,
    Csv,
    Jsonl,
}

/// The format a data file's extension names: `.tsv`/`.txt`, `.csv`, `.jsonl`/`.ndjson`/`.json`.
pub(crate) fn format_of(path: &Path) -> Result<Format> {
    match path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase).as_deref() {
        Some("tsv") | Some("txt") => Ok(Format::Tsv),
        Some("csv") => Ok(Format::Csv),
        Some("jsonl") | Some("ndjson") | Some("json") => Ok(Format::Jsonl),
        _ => Err(Error::config(path, "unknown data format: use a .tsv, .csv or .jsonl file")),
    }
}

/// Which columns hold what, from the header.
struct Columns {
    text: usize,
    a: Option<usize>,
    b: Option<usize>,
    n: usize,
}

/// The column names a per-task file's text and label are read from (`text`, `label` by default).
#[derive(Clone, Copy)]
pub struct Names<'a> {
    /// The text column or JSON key.
    pub text: &'a str,
    /// The label column or JSON key.
    pub label: &'a str,
}

impl Default for Names<'_> {
    fn default() -> Self {
        Names { text: "text", label: "label" }
    }
}

fn columns(path: &Path, header: &[String], task: Option<Task>, names: Names) -> Result<Columns> {
    let find = |name: &str| header.iter().position(|h| h.trim() == name);
    let text = find(names.text).ok_or_else(|| Error::data(path, 1, format!("header {header:?} has no '{}' column", names.text)))?;
    let (mut a, mut b) = (find("label_a"), find("label_b"));
    if let Some(l) = find(names.label) {
        match task {
            Some(Task::A) if a.is_none() => a = Some(l),
            Some(Task::B) if b.is_none() => b = Some(l),
            _ => {}
        }
    }
    if let Some(t) = task {
        let (col, name) = if t == Task::A { (a, "label_a") } else { (b, "label_b") };
        if col.is_none() {
            return Err(Error::data(path, 1, format!("header {header:?} has neither '{}' nor '{name}' for {}", names.label, t.key())));
        }
    } else if a.is_none() && b.is_none() {
        return Err(Error::data(path, 1, format!("header {header:?} has no 'label_a' or 'label_b' column")));
    }
    Ok(Columns { text, a, b, n: header.len() })
}

fn cell(v: &str) -> Option<String> {
    let v = v.trim();
    (!v.is_empty()).then(|| v.to_string())
}

fn make_row(path: &Path, line: usize, cols: &Columns, fields: &[String], task: Option<Task>) -> Result<RawRow> {
    if fields.len() != cols.n {
        return Err(Error::data(path, line, format!("expected {} columns, found {}", cols.n, fields.len())));
    }
    let text = fields[cols.text].clone();
    if text.trim().is_empty() {
        return Err(Error::data(path, line, "row has no text"));
    }
    let row = RawRow {
        line,
        text,
        label_a: cols.a.and_then(|i| cell(&fields[i])),
        label_b: cols.b.and_then(|i| cell(&fields[i])),
    };
    let missing = match task {
        Some(Task::A) => row.label_a.is_none(),
        Some(Task::B) => row.label_b.is_none(),
        None => row.label_a.is_none() && row.label_b.is_none(),
    };
    if missing {
        return Err(Error::data(path, line, "row has no label"));
    }
    Ok(row)
}

/// Reads a labelled file. `task` says which task a plain `label` column belongs to (per-task
/// files); `None` expects a joint file with `label_a` / `label_b`.
pub fn read_labelled(path: &Path, task: Option<Task>) -> Result<Source> {
    read_labelled_named(path, task, Names::default())
}

/// [`read_labelled`] with the text and label taken from the columns (or JSON keys) `names`.
pub fn read_labelled_named(path: &Path, task: Option<Task>, names: Names) -> Result<Source> {
    check_path(path, "data file", Want::RegularFile)?;
    let format = format_of(path)?;
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let bytes = bytes.strip_prefix(BOM).unwrap_or(&bytes);
    let rows = match format {
        Format::Tsv => read_tsv(path, bytes, task, names)?,
        Format::Csv => read_csv(path, bytes, task, names)?,
        Format::Jsonl => read_jsonl(path, bytes, task, names)?,
    };
    if rows.is_empty() {
        return Err(Error::data(path, 1, "no data rows"));
    }
    Ok(Source { path: path.to_path_buf(), rows })
}

fn utf8<'a>(path: &Path, line: usize, b: &'a [u8]) -> Result<&'a str> {
    std::str::from_utf8(b).map_err(|_| Error::data(path, line, "not valid UTF-8"))
}

fn read_tsv(path: &Path, bytes: &[u8], task: Option<Task>, names: Names) -> Result<Vec<RawRow>> {
    let body = bytes.strip_suffix(b"\n").unwrap_or(bytes);
    let mut lines = body.split(|&b| b == b'\n').enumerate().map(|(i, l)| (i + 1, l.strip_suffix(b"\r").unwrap_or(l)));
    let (_, header) = lines.next().ok_or_else(|| Error::data(path, 1, "empty file"))?;
    let header: Vec<String> = utf8(path, 1, header)?.split('\t').map(str::to_string).collect();
    let cols = columns(path, &header, task, names)?;
    let mut rows = Vec::new();
    for (line, raw) in lines {
        let text = utf8(path, line, raw)?;
        let fields: Vec<String> = text.split('\t').map(str::to_string).collect();
        rows.push(make_row(path, line, &cols, &fields, task)?);
    }
    Ok(rows)
}

fn read_csv(path: &Path, bytes: &[u8], task: Option<Task>, names: Names) -> Result<Vec<RawRow>> {
    let mut rdr = csv::ReaderBuilder::new().has_headers(true).flexible(true).from_reader(bytes);
    let header: Vec<String> = rdr
        .headers()
        .map_err(|e| Error::data(path, 1, format!("bad CSV header: {e}")))?
        .iter()
        .map(str::to_string)
        .collect();
    let cols = columns(path, &header, task, names)?;
    let mut rows = Vec::new();
    for rec in rdr.records() {
        let rec = rec.map_err(|e| {
            let line = e.position().map(|p| p.line() as usize).unwrap_or(0);
            Error::data(path, line, format!("bad CSV: {e}"))
        })?;
        let line = rec.position().map(|p| p.line() as usize).unwrap_or(0);
        let fields: Vec<String> = rec.iter().map(str::to_string).collect();
        rows.push(make_row(path, line, &cols, &fields, task)?);
    }
    Ok(rows)
}

/// Why a JSON value cannot be a label, or the label (`None` for `null`).
fn json_label(v: &serde_json::Value) -> std::result::Result<Option<String>, &'static str> {
    use serde_json::Value;
    match v {
        Value::Null => Ok(None),
        Value::String(s) => Ok(Some(s.clone())),
        Value::Number(n) if n.is_i64() || n.is_u64() => Ok(Some(n.to_string())),
        Value::Number(_) => Err("a number that is not an integer"),
        Value::Bool(_) => Err("a boolean"),
        Value::Array(_) => Err("an array"),
        Value::Object(_) => Err("an object"),
    }
}

/// A JSON value for an error message, cut to a readable length.
fn shown(v: &serde_json::Value) -> String {
    let s = v.to_string();
    match s.char_indices().nth(40) {
        Some((i, _)) => format!("{}...", &s[..i]),
        None => s,
    }
}

const LABEL_RULE: &str = "label must be a string or an integer";

fn read_jsonl<'a>(path: &Path, bytes: &[u8], task: Option<Task>, names: Names<'a>) -> Result<Vec<RawRow>> {
    let mut rows = Vec::new();
    for (i, raw) in bytes.split(|&b| b == b'\n').enumerate() {
        let line = i + 1;
        let s = utf8(path, line, raw)?.trim();
        if s.is_empty() {
            continue;
        }
        let v: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(s).map_err(|e| Error::data(path, line, format!("not a JSON object: {e}")))?;
        let text = match v.get(names.text) {
            None | Some(serde_json::Value::Null) => None,
            Some(serde_json::Value::String(s)) => Some(s.clone()),
            Some(serde_json::Value::Number(n)) => Some(n.to_string()),
            Some(other) => return Err(Error::data(path, line, format!("field '{}' must be a string, found {}", names.text, shown(other)))),
        };
        // Each label key present: its label, or `None` for null.
        let label = |k: &'a str| -> Result<Option<(&'a str, Option<String>)>> {
            match v.get(k) {
                None => Ok(None),
                Some(value) => match json_label(value) {
                    Ok(l) => Ok(Some((k, l))),
                    Err(what) => Err(Error::data(path, line, format!("key '{k}' is {what} ({}): {LABEL_RULE}", shown(value)))),
                },
            }
        };
        let plain = label(names.label)?;
        let mut a = label("label_a")?;
        let mut b = label("label_b")?;
        match task {
            Some(Task::A) if !matches!(a, Some((_, Some(_)))) => a = plain.or(a),
            Some(Task::B) if !matches!(b, Some((_, Some(_)))) => b = plain.or(b),
            _ => {}
        }
        // A per-task file needs its label: null there is a wrong value, not a missing one.
        let needed = match task {
            Some(Task::A) => Some(&a),
            Some(Task::B) => Some(&b),
            None => None,
        };
        if let Some(Some((k, None))) = needed {
            return Err(Error::data(path, line, format!("key '{k}' is null: {LABEL_RULE}")));
        }
        let text = text.ok_or_else(|| Error::data(path, line, format!("object has no '{}'", names.text)))?;
        let value = |l: Option<(&str, Option<String>)>| l.and_then(|(_, l)| l).unwrap_or_default();
        let fields = vec![text, value(a), value(b)];
        let cols = Columns { text: 0, a: Some(1), b: Some(2), n: 3 };
        rows.push(make_row(path, line, &cols, &fields, task)?);
    }
    Ok(rows)
}

// Sentence pairs (pair-classification and similarity tasks, STS-B).

fn pair_field<'a>(path: &Path, line: usize, fields: &'a [String], at: usize, name: &str) -> Result<&'a str> {
    let v = fields.get(at).map(|s| s.trim()).unwrap_or("");
    if v.is_empty() {
        return Err(Error::data(path, line, format!("'{name}' is empty")));
    }
    Ok(v)
}

/// A similarity score as written: a finite number.
pub fn parse_score(path: &Path, line: usize, score: &str) -> Result<f64> {
    let s: f64 = score.parse().map_err(|_| Error::data(path, line, format!("score '{score}' is not a number")))?;
    if !s.is_finite() {
        return Err(Error::data(path, line, format!("score '{score}' is not finite")));
    }
    Ok(s)
}

/// A sentence pair as read, with its label or score as written.
#[derive(Debug, Clone, PartialEq)]
pub struct PairRow {
    /// 1-based line of the row in its file (the header is line 1).
    pub line: usize,
    /// The first text.
    pub text_a: String,
    /// The second text.
    pub text_b: String,
    /// The label name or the score, trimmed.
    pub value: String,
}

/// The columns (or JSON keys) a pair file is read from.
#[derive(Clone, Copy)]
pub struct PairNames<'a> {
    /// The first text (`text_a` by default).
    pub text_a: &'a str,
    /// The second text (`text_b` by default).
    pub text_b: &'a str,
    /// The label or the score (`label` or `score` by default).
    pub value: &'a str,
    /// Whether the value is a score (a number); otherwise a label (a string or an integer).
    pub score: bool,
}

impl PairNames<'_> {
    /// `text_a`, `text_b` and `score`.
    pub const SCORED: PairNames<'static> = PairNames { text_a: "text_a", text_b: "text_b", value: "score", score: true };
    /// `text_a`, `text_b` and `label`.
    pub const LABELLED: PairNames<'static> = PairNames { text_a: "text_a", text_b: "text_b", value: "label", score: false };
}

/// Reads a file of sentence pairs with the columns `names` (TSV without quoting, CSV, JSON
/// Lines). A score must be a finite number; every bad row is an error naming the file and line.
pub fn read_pairs(path: &Path, names: PairNames) -> Result<Vec<PairRow>> {
    check_path(path, "data file", Want::RegularFile)?;
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let bytes = bytes.strip_prefix(BOM).unwrap_or(&bytes);
    let rows = match format_of(path)? {
        Format::Tsv => read_pairs_delimited(path, bytes, b'\t', names)?,
        Format::Csv => read_pairs_delimited(path, bytes, b',', names)?,
        Format::Jsonl => read_pairs_jsonl(path, bytes, names)?,
    };
    if rows.is_empty() {
        return Err(Error::data(path, 1, "no data rows"));
    }
    if names.score {
        for r in &rows {
            parse_score(path, r.line, &r.value)?;
        }
    }
    Ok(rows)
}

fn read_pairs_delimited(path: &Path, bytes: &[u8], delimiter: u8, names: PairNames) -> Result<Vec<PairRow>> {
    let mut rdr = csv::ReaderBuilder::new().delimiter(delimiter).quoting(delimiter == b',').flexible(true).from_reader(bytes);
    let header: Vec<String> = rdr.headers().map_err(|e| Error::data(path, 1, format!("bad header: {e}")))?.iter().map(|h| h.trim().to_string()).collect();
    let col = |name: &str| header.iter().position(|h| h == name).ok_or_else(|| Error::data(path, 1, format!("header {header:?} has no '{name}' column")));
    let (a, b, s) = (col(names.text_a)?, col(names.text_b)?, col(names.value)?);
    let mut out = Vec::new();
    for rec in rdr.byte_records() {
        let rec = rec.map_err(|e| Error::data(path, e.position().map_or(0, |p| p.line() as usize), format!("bad row: {e}")))?;
        let line = rec.position().map_or(0, |p| p.line() as usize);
        let fields: Vec<String> = rec
            .iter()
            .map(|f| String::from_utf8(f.to_vec()).map_err(|_| Error::data(path, line, "not valid UTF-8")))
            .collect::<Result<_>>()?;
        if fields.len() != header.len() {
            return Err(Error::data(path, line, format!("expected {} columns, found {}", header.len(), fields.len())));
        }
        out.push(PairRow {
            line,
            text_a: pair_field(path, line, &fields, a, names.text_a)?.to_string(),
            text_b: pair_field(path, line, &fields, b, names.text_b)?.to_string(),
            value: pair_field(path, line, &fields, s, names.value)?.to_string(),
        });
    }
    Ok(out)
}

fn read_pairs_jsonl(path: &Path, bytes: &[u8], names: PairNames) -> Result<Vec<PairRow>> {
    use serde_json::Value;
    let mut out = Vec::new();
    for (i, raw) in bytes.split(|&b| b == b'\n').enumerate() {
        let line = i + 1;
        let text = std::str::from_utf8(raw).map_err(|_| Error::data(path, line, "not valid UTF-8"))?.trim();
        if text.is_empty() {
            continue;
        }
        let v: Value = serde_json::from_str(text).map_err(|e| Error::data(path, line, format!("not JSON: {e}")))?;
        let s = |k: &str, value: bool| -> Result<String> {
            match v.get(k) {
                Some(Value::String(s)) if !(s.trim().is_empty() || value && names.score) => Ok(s.trim().to_string()),
                Some(Value::Number(n)) if value && (names.score || n.is_i64() || n.is_u64()) => Ok(n.to_string()),
                _ => Err(Error::data(
                    path,
                    line,
                    format!(
                        "key '{k}' is missing, empty or not {}",
                        match (value, names.score) {
                            (true, true) => "a number",
                            (true, false) => "a string or an integer",
                            _ => "a string",
                        }
                    ),
                )),
            }
        };
        out.push(PairRow { line, text_a: s(names.text_a, false)?, text_b: s(names.text_b, false)?, value: s(names.value, true)? });
    }
    Ok(out)
}

/// Sorted label names of one task.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Labels(pub Vec<String>);

impl Labels {
    /// Label names seen in `sources` for `task`, sorted.
    pub fn collect(sources: &[Source], task: Task) -> Labels {
        let set: BTreeSet<&String> = sources
            .iter()
            .flat_map(|s| &s.rows)
            .filter_map(|r| if task == Task::A { r.label_a.as_ref() } else { r.label_b.as_ref() })
            .collect();
        Labels(set.into_iter().cloned().collect())
    }

    /// Number of classes.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there is no class at all (the task has no label in the data).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The class index of label `name` (exact, case-sensitive match), or `None` if it is not one
    /// of the labels.
    pub fn index(&self, name: &str) -> Option<usize> {
        self.0.binary_search_by(|l| l.as_str().cmp(name)).ok()
    }
}

/// [`label_warnings`] flags a file with more distinct labels than a tenth of its labelled rows
/// (fewer than 10 examples per class on average) only from this many labelled rows on: below it,
/// samples and test files would be flagged for nothing.
pub const MANY_LABELS_MIN_ROWS: usize = 100;

/// What looks wrong in `task`'s labels across the training files `sources`, one message per
/// finding, each naming the task and the file(s) (empty when nothing does):
///
/// * the task has a single label in all its files: its head can only ever predict it;
/// * labels that differ only in case (`Positive` and `positive`): they are separate classes;
/// * a file with at least [`MANY_LABELS_MIN_ROWS`] labelled rows and more distinct labels than
///   10% of them (the label column may hold texts or ids).
///
/// Files without a label for `task` are left out; messages start with `task_name`. Pure: the caller
/// prints the messages.
pub fn label_warnings(sources: &[Source], task: Task, task_name: &str) -> Vec<String> {
    fn label(r: &RawRow, task: Task) -> Option<&str> {
        if task == Task::A { r.label_a.as_deref() } else { r.label_b.as_deref() }
    }
    let mut out = Vec::new();
    // Label -> (rows, first file and line it is on), over every file of the task.
    let mut seen: BTreeMap<&str, (usize, &Path, usize)> = BTreeMap::new();
    let mut files: Vec<String> = Vec::new();
    let mut total = 0;
    for s in sources {
        let mut per_file: BTreeSet<&str> = BTreeSet::new();
        let mut rows = 0;
        for r in &s.rows {
            if let Some(l) = label(r, task) {
                rows += 1;
                per_file.insert(l);
                seen.entry(l).or_insert((0, &s.path, r.line)).0 += 1;
            }
        }
        if rows == 0 {
            continue;
        }
        total += rows;
        files.push(s.path.display().to_string());
        if rows >= MANY_LABELS_MIN_ROWS && per_file.len() * 10 > rows {
            out.push(format!(
                "{}: {} has {} distinct labels in {rows} labelled rows (more than 10%, fewer than 10 examples per class): is the label column the right one?",
                task_name,
                s.path.display(),
                per_file.len()
            ));
        }
    }
    if seen.len() == 1 {
        let name = seen.keys().next().expect("one label");
        out.push(format!(
            "{}: the training data ({}) has a single label '{name}' ({total} row{}): the head can only ever predict it",
            task_name,
            files.join(", "),
            if total == 1 { "" } else { "s" }
        ));
    }
    let mut by_case: BTreeMap<String, Vec<&str>> = BTreeMap::new();
    for l in seen.keys() {
        by_case.entry(l.to_lowercase()).or_default().push(l);
    }
    for spellings in by_case.values().filter(|v| v.len() > 1) {
        let named: Vec<String> = spellings
            .iter()
            .map(|l| {
                let (n, path, line) = seen[l];
                format!("'{l}' ({n} row{}, first at {}:{line})", if n == 1 { "" } else { "s" }, path.display())
            })
            .collect();
        let (last, rest) = named.split_last().expect("two or more");
        out.push(format!("{}: labels {} and {last} differ only in case: they are separate classes", task_name, rest.join(", ")));
    }
    out
}

/// What an example teaches one task: a class index (classification kinds) or a score
/// (similarity, as written in the file).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Target {
    /// Index of the label in the task's [`Labels`].
    Class(usize),
    /// The gold similarity score.
    Score(f32),
}

/// A tokenized example: one text (or a pair) and its target for each task it is labelled for.
#[derive(Debug, Clone)]
pub struct Example {
    /// The row's text (the first text of a pair).
    pub text: String,
    /// Its token ids, `[CLS] ... [SEP]`, truncated to the tokenizer's maximum length.
    pub ids: Vec<i64>,
    /// Pair tasks: the second text's token ids.
    pub ids_b: Option<Vec<i64>>,
    /// The target for each task of the model, by task index (`None`: no label for that task).
    pub targets: Vec<Option<Target>>,
}

impl Example {
    /// A one-text example with no target yet, for a model of `n_tasks` tasks.
    pub fn text(text: &str, ids: Vec<i64>, n_tasks: usize) -> Example {
        Example { text: text.to_string(), ids, ids_b: None, targets: vec![None; n_tasks] }
    }

    /// The class index this example teaches task `t`, if any.
    pub fn class(&self, t: usize) -> Option<usize> {
        match self.targets.get(t) {
            Some(Some(Target::Class(c))) => Some(*c),
            _ => None,
        }
    }

    /// Whether the example has a target for task `t`.
    pub fn has(&self, t: usize) -> bool {
        self.targets.get(t).is_some_and(Option::is_some)
    }

    /// The tasks it is labelled for, as a bit set (task `t` is bit `t`).
    pub fn task_bits(&self) -> u64 {
        self.targets.iter().enumerate().filter(|(_, x)| x.is_some()).fold(0, |m, (t, _)| m | (1u64 << t))
    }
}

/// Where the seed-format labels of a row go: Task A's (`label_a` or a per-task file's `label`)
/// and Task B's, each to a task index with its label set.
#[derive(Clone, Copy, Default)]
pub struct Slots<'a> {
    /// Task A's labels: the task index and its label set.
    pub a: Option<(usize, &'a str, &'a Labels)>,
    /// Task B's labels: the task index and its label set.
    pub b: Option<(usize, &'a str, &'a Labels)>,
}

/// Tokenizes the rows of `sources` and maps label names to indices, for a model of `n_tasks`
/// tasks. A label name not in its set (one never seen in training) is an error naming the file
/// and line; a label of a task with no slot is left out.
pub fn examples(sources: &[Source], slots: Slots, n_tasks: usize, tok: &SentenceTokenizer) -> Result<Vec<Example>> {
    let mut out = Vec::new();
    for s in sources {
        for r in &s.rows {
            let mut e = Example::text(&r.text, tok.encode(&r.text), n_tasks);
            for (name, slot) in [(&r.label_a, slots.a), (&r.label_b, slots.b)] {
                let (Some(n), Some((t, task, labels))) = (name, slot) else { continue };
                let c = labels.index(n).ok_or_else(|| {
                    Error::data(&s.path, r.line, format!("{task} label '{n}' was never seen in training (known: {})", labels.0.join(", ")))
                })?;
                e.targets[t] = Some(Target::Class(c));
            }
            out.push(e);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    #[test]
    fn reads_tsv_without_quote_handling() {
        let d = tempfile::tempdir().unwrap();
        let p = write(d.path(), "a.tsv", "text\tlabel\n\"quoted tweet start\tpositive\nplain\tnegative\n");
        let s = read_labelled(&p, Some(Task::B)).unwrap();
        assert_eq!(s.rows[0].text, "\"quoted tweet start");
        assert_eq!(s.rows[0].label_b.as_deref(), Some("positive"));
        assert_eq!(s.rows[1].line, 3);
        assert_eq!(Labels::collect(&[s], Task::B).0, vec!["negative", "positive"]);
    }

    #[test]
    fn joint_csv_and_jsonl_allow_one_missing_label() {
        let d = tempfile::tempdir().unwrap();
        let p = write(d.path(), "j.csv", "text,label_a,label_b\n\"hello, world\",HUM,\nbye,,negative\n");
        let s = read_labelled(&p, None).unwrap();
        assert_eq!(s.rows[0].text, "hello, world");
        assert_eq!((s.rows[0].label_a.as_deref(), s.rows[0].label_b.as_deref()), (Some("HUM"), None));
        let p = write(d.path(), "j.jsonl", "{\"text\": \"x\", \"label_a\": \"LOC\", \"label_b\": \"neutral\"}\n\n{\"text\": \"y\", \"label_b\": \"positive\"}\n");
        let s = read_labelled(&p, None).unwrap();
        assert_eq!(s.rows.len(), 2);
        assert_eq!(s.rows[1].line, 3);
    }

    #[test]
    fn bad_rows_name_file_and_line() {
        let d = tempfile::tempdir().unwrap();
        let cases = [
            ("cols.tsv", "text\tlabel\nok\tA\ntoo\tmany\tcols\n", "cols.tsv:3: expected 2 columns, found 3"),
            ("nolabel.tsv", "text\tlabel\nok\tA\nmissing\t\n", "nolabel.tsv:3: row has no label"),
            ("notext.tsv", "text\tlabel\n\tA\n", "notext.tsv:2: row has no text"),
            ("hdr.tsv", "sentence\tlabel\nx\tA\n", "hdr.tsv:1: header"),
            ("bad.jsonl", "{\"text\": \"x\", \"label\": \"A\"}\nnot json\n", "bad.jsonl:2: not a JSON object"),
        ];
        for (name, body, want) in cases {
            let p = write(d.path(), name, body);
            let e = read_labelled(&p, Some(Task::A)).unwrap_err().to_string();
            assert!(e.contains(want), "{name}: got {e}");
        }
    }

    #[test]
    fn a_bom_is_dropped_from_every_format() {
        let d = tempfile::tempdir().unwrap();
        let bom = "\u{feff}";
        for (name, body) in [
            ("b.tsv", format!("{bom}text\tlabel\nhello\tA\n")),
            ("b.csv", format!("{bom}text,label\nhello,A\n")),
            ("q.csv", format!("{bom}\"text\",label\nhello,A\n")),
            ("b.jsonl", format!("{bom}{{\"text\": \"hello\", \"label\": \"A\"}}\n")),
        ] {
            let p = write(d.path(), name, &body);
            let s = read_labelled(&p, Some(Task::A)).unwrap_or_else(|e| panic!("{name}: {e}"));
            let line = if name.ends_with(".jsonl") { 1 } else { 2 };
            assert_eq!((s.rows[0].text.as_str(), s.rows[0].label_a.as_deref(), s.rows[0].line), ("hello", Some("A"), line), "{name}");
        }
        // Only at the start of the file: elsewhere it is text.
        let p = write(d.path(), "mid.tsv", &format!("text\tlabel\n{bom}hi\tA\n"));
        assert_eq!(read_labelled(&p, Some(Task::A)).unwrap().rows[0].text, format!("{bom}hi"));
    }

    #[test]
    fn jsonl_labels_are_strings_or_integers() {
        let d = tempfile::tempdir().unwrap();
        let p = write(d.path(), "ints.jsonl", "{\"text\": \"x\", \"label\": 1}\n{\"text\": \"y\", \"label\": \"1\"}\n{\"text\": \"z\", \"label\": -2}\n");
        let s = read_labelled(&p, Some(Task::A)).unwrap();
        assert_eq!(Labels::collect(&[s], Task::A).0, vec!["-2", "1"], "1 and \"1\" are one class");
        let bad = [
            ("{\"text\": \"x\", \"label\": 1.0}", "key 'label' is a number that is not an integer (1.0): label must be a string or an integer"),
            ("{\"text\": \"x\", \"label\": 1e3}", "key 'label' is a number that is not an integer"),
            ("{\"text\": \"x\", \"label\": true}", "key 'label' is a boolean (true): label must be a string or an integer"),
            ("{\"text\": \"x\", \"label\": null}", "key 'label' is null: label must be a string or an integer"),
            ("{\"text\": \"x\", \"label_a\": null}", "key 'label_a' is null: label must be a string or an integer"),
            ("{\"text\": \"x\", \"label\": {\"k\": 1}}", "key 'label' is an object ({\"k\":1}): label must be"),
            ("{\"text\": \"x\", \"label\": [1]}", "key 'label' is an array ([1]): label must be"),
            ("{\"text\": \"x\", \"label_b\": 2.5, \"label\": \"A\"}", "key 'label_b' is a number that is not an integer (2.5)"),
        ];
        for (i, (row, want)) in bad.iter().enumerate() {
            let p = write(d.path(), &format!("bad{i}.jsonl"), &format!("{{\"text\": \"ok\", \"label\": \"A\"}}\n{row}\n"));
            let e = read_labelled(&p, Some(Task::A)).unwrap_err().to_string();
            assert!(e.contains(&format!("bad{i}.jsonl:2: {want}")), "{row}: got {e}");
        }
        // A label_a of null with a plain label falls back to the plain one.
        let p = write(d.path(), "fallback.jsonl", "{\"text\": \"x\", \"label_a\": null, \"label\": 3}\n");
        assert_eq!(read_labelled(&p, Some(Task::A)).unwrap().rows[0].label_a.as_deref(), Some("3"));
        // Joint files: null, empty or missing is "no label" for that task.
        let p = write(d.path(), "joint.jsonl", "{\"text\": \"x\", \"label_a\": null, \"label_b\": 0}\n{\"text\": \"y\", \"label_a\": \"\", \"label_b\": \"neg\"}\n{\"text\": \"z\", \"label_a\": 7}\n");
        let s = read_labelled(&p, None).unwrap();
        let got: Vec<_> = s.rows.iter().map(|r| (r.label_a.as_deref(), r.label_b.as_deref())).collect();
        assert_eq!(got, vec![(None, Some("0")), (None, Some("neg")), (Some("7"), None)]);
        let p = write(d.path(), "jointfloat.jsonl", "{\"text\": \"x\", \"label_a\": 1.0}\n");
        assert!(read_labelled(&p, None).unwrap_err().to_string().contains("jointfloat.jsonl:1: key 'label_a' is a number that is not an integer"));
    }

    #[test]
    fn paths_that_are_not_data_files_say_what_they_are() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().join("train.tsv");
        std::fs::create_dir(&dir).unwrap();
        let e = read_labelled(&dir, Some(Task::A)).unwrap_err().to_string();
        assert_eq!(e, format!("data file {}: is a directory, not a file", dir.display()));
        let e = read_labelled(&d.path().join("none.tsv"), Some(Task::A)).unwrap_err().to_string();
        assert!(e.ends_with("none.tsv: does not exist"), "{e}");
        let e = read_labelled(Path::new("/dev/null"), Some(Task::A)).unwrap_err().to_string();
        assert_eq!(e, "data file /dev/null: is not a regular file (it is a character device)");
        let l = d.path().join("loop.tsv");
        std::os::unix::fs::symlink(&l, &l).unwrap();
        let e = read_labelled(&l, Some(Task::A)).unwrap_err().to_string();
        assert!(e.ends_with("loop.tsv: is a symlink loop (too many levels of symbolic links)"), "{e}");
        let p = write(d.path(), "x.parquet", "text\tlabel\n");
        let e = read_labelled(&p, Some(Task::A)).unwrap_err().to_string();
        assert!(e.ends_with("x.parquet: unknown data format: use a .tsv, .csv or .jsonl file"), "{e}");
    }

    #[test]
    fn a_fifo_is_read_as_a_data_file() {
        let d = tempfile::tempdir().unwrap();
        let fifo = d.path().join("fifo.tsv");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let writer = {
            let fifo = fifo.clone();
            std::thread::spawn(move || std::fs::write(fifo, "text\tlabel\nhello\tA\n").unwrap())
        };
        let s = read_labelled(&fifo, Some(Task::A)).unwrap();
        writer.join().unwrap();
        assert_eq!(s.rows.len(), 1);
    }

    fn source(path: &str, labels: &[&str]) -> Source {
        let rows = labels
            .iter()
            .enumerate()
            .map(|(i, l)| RawRow { line: i + 2, text: format!("t{i}"), label_a: None, label_b: (!l.is_empty()).then(|| l.to_string()) })
            .collect();
        Source { path: PathBuf::from(path), rows }
    }

    #[test]
    fn label_warnings_single_label() {
        let w = label_warnings(&[source("b.tsv", &["pos", "pos", "pos"])], Task::B, "task_b");
        assert_eq!(w, vec!["task_b: the training data (b.tsv) has a single label 'pos' (3 rows): the head can only ever predict it"]);
        // Two files that together have two labels are fine; rows without the task's label are left out.
        assert!(label_warnings(&[source("b.tsv", &["pos", ""]), source("j.jsonl", &["neg"])], Task::B, "task_b").is_empty());
        // Files without the task's labels say nothing about it.
        assert!(label_warnings(&[source("b.tsv", &["pos", "neg"])], Task::A, "task_a").is_empty());
        assert!(label_warnings(&[], Task::A, "task_a").is_empty());
    }

    #[test]
    fn label_warnings_case_only_differences() {
        let w = label_warnings(&[source("b.tsv", &["Positive", "negative", "positive", "positive"]), source("c.tsv", &["POSITIVE"])], Task::B, "task_b");
        assert_eq!(
            w,
            vec!["task_b: labels 'POSITIVE' (1 row, first at c.tsv:2), 'Positive' (1 row, first at b.tsv:2) and 'positive' (2 rows, first at b.tsv:4) differ only in case: they are separate classes"]
        );
        assert!(label_warnings(&[source("b.tsv", &["pos", "neg"])], Task::B, "task_b").is_empty());
    }

    #[test]
    fn label_warnings_too_many_classes() {
        let many: Vec<String> = (0..MANY_LABELS_MIN_ROWS).map(|i| format!("c{}", i % 11)).collect();
        let many: Vec<&str> = many.iter().map(String::as_str).collect();
        let w = label_warnings(&[source("ids.tsv", &many)], Task::B, "task_b");
        assert_eq!(w, vec![format!("task_b: ids.tsv has 11 distinct labels in {MANY_LABELS_MIN_ROWS} labelled rows (more than 10%, fewer than 10 examples per class): is the label column the right one?")]);
        // Exactly 10% is fine, and so are small files with many classes.
        let ten: Vec<String> = (0..MANY_LABELS_MIN_ROWS).map(|i| format!("c{}", i % 10)).collect();
        assert!(label_warnings(&[source("ok.tsv", &ten.iter().map(String::as_str).collect::<Vec<_>>())], Task::B, "task_b").is_empty());
        let small: Vec<String> = (0..MANY_LABELS_MIN_ROWS - 1).map(|i| format!("c{i}")).collect();
        assert!(label_warnings(&[source("small.tsv", &small.iter().map(String::as_str).collect::<Vec<_>>())], Task::B, "task_b").is_empty());
    }
}

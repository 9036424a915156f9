//! Owns labelled data for the two tasks: the TSV, CSV and JSON Lines readers, label sets,
//! tokenized examples, and where the bundled data lives. (Batching lives in `batch`.)
//!
//! A per-task file has columns `text` and `label`; a joint file has `text`, `label_a`, `label_b`
//! (either label may be empty: that row then adds nothing to that task's loss). TSV has a header
//! line and no quoting (tweets start with `"`), CSV follows RFC 4180, JSON Lines holds one object
//! per line with the same keys. Every bad row is an error naming the file and line.

use crate::error::{Error, Result};
use crate::tokenizer::SentenceTokenizer;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// The training and dev files bundled in `data/` (copied from shared/data: TREC-6 for Task A,
/// SST-5 folded to 3 classes for Task B, TweetEval sentiment as an out-of-domain Task B check),
/// relative to the repository root.
pub mod bundled {
    pub const TASK_A: &str = "data/trec6/train.tsv";
    pub const TASK_B: &str = "data/sst5_3class/train.tsv";
    pub const DEV_A: &str = "data/trec6/dev.tsv";
    pub const DEV_B: &str = "data/sst5_3class/dev.tsv";
    /// Tweets (TweetEval sentiment, validation split): Task B out of domain, never trained on.
    pub const OOD_B: &str = "data/tweet_sentiment/dev.tsv";
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
    pub text: String,
    pub label_a: Option<String>,
    pub label_b: Option<String>,
}

/// A labelled source file and the rows read from it.
#[derive(Debug, Clone)]
pub struct Source {
    pub path: PathBuf,
    pub rows: Vec<RawRow>,
}

#[derive(Clone, Copy)]
enum Format {
    Tsv,
    Csv,
    Jsonl,
}

fn format_of(path: &Path) -> Result<Format> {
    match path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase).as_deref() {
        Some("tsv") | Some("txt") => Ok(Format::Tsv),
        Some("csv") => Ok(Format::Csv),
        Some("jsonl") | Some("ndjson") | Some("json") => Ok(Format::Jsonl),
        _ => Err(Error::data(path, 0, "unknown data format: use a .tsv, .csv or .jsonl file")),
    }
}

/// Which columns hold what, from the header.
struct Columns {
    text: usize,
    a: Option<usize>,
    b: Option<usize>,
    n: usize,
}

fn columns(path: &Path, header: &[String], task: Option<Task>) -> Result<Columns> {
    let find = |name: &str| header.iter().position(|h| h.trim() == name);
    let text = find("text").ok_or_else(|| Error::data(path, 1, format!("header {header:?} has no 'text' column")))?;
    let (mut a, mut b) = (find("label_a"), find("label_b"));
    if let Some(l) = find("label") {
        match task {
            Some(Task::A) if a.is_none() => a = Some(l),
            Some(Task::B) if b.is_none() => b = Some(l),
            _ => {}
        }
    }
    if let Some(t) = task {
        let (col, name) = if t == Task::A { (a, "label_a") } else { (b, "label_b") };
        if col.is_none() {
            return Err(Error::data(path, 1, format!("header {header:?} has neither 'label' nor '{name}' for {}", t.key())));
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
    let format = format_of(path)?;
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let rows = match format {
        Format::Tsv => read_tsv(path, &bytes, task)?,
        Format::Csv => read_csv(path, &bytes, task)?,
        Format::Jsonl => read_jsonl(path, &bytes, task)?,
    };
    if rows.is_empty() {
        return Err(Error::data(path, 1, "no data rows"));
    }
    Ok(Source { path: path.to_path_buf(), rows })
}

fn utf8<'a>(path: &Path, line: usize, b: &'a [u8]) -> Result<&'a str> {
    std::str::from_utf8(b).map_err(|_| Error::data(path, line, "not valid UTF-8"))
}

fn read_tsv(path: &Path, bytes: &[u8], task: Option<Task>) -> Result<Vec<RawRow>> {
    let body = bytes.strip_suffix(b"\n").unwrap_or(bytes);
    let mut lines = body.split(|&b| b == b'\n').enumerate().map(|(i, l)| (i + 1, l.strip_suffix(b"\r").unwrap_or(l)));
    let (_, header) = lines.next().ok_or_else(|| Error::data(path, 1, "empty file"))?;
    let header: Vec<String> = utf8(path, 1, header)?.split('\t').map(str::to_string).collect();
    let cols = columns(path, &header, task)?;
    let mut rows = Vec::new();
    for (line, raw) in lines {
        let text = utf8(path, line, raw)?;
        let fields: Vec<String> = text.split('\t').map(str::to_string).collect();
        rows.push(make_row(path, line, &cols, &fields, task)?);
    }
    Ok(rows)
}

fn read_csv(path: &Path, bytes: &[u8], task: Option<Task>) -> Result<Vec<RawRow>> {
    let mut rdr = csv::ReaderBuilder::new().has_headers(true).flexible(true).from_reader(bytes);
    let header: Vec<String> = rdr
        .headers()
        .map_err(|e| Error::data(path, 1, format!("bad CSV header: {e}")))?
        .iter()
        .map(str::to_string)
        .collect();
    let cols = columns(path, &header, task)?;
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

fn read_jsonl(path: &Path, bytes: &[u8], task: Option<Task>) -> Result<Vec<RawRow>> {
    let mut rows = Vec::new();
    for (i, raw) in bytes.split(|&b| b == b'\n').enumerate() {
        let line = i + 1;
        let s = utf8(path, line, raw)?.trim();
        if s.is_empty() {
            continue;
        }
        let v: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(s).map_err(|e| Error::data(path, line, format!("not a JSON object: {e}")))?;
        let get = |k: &str| -> Result<Option<String>> {
            match v.get(k) {
                None | Some(serde_json::Value::Null) => Ok(None),
                Some(serde_json::Value::String(s)) => Ok(Some(s.clone())),
                Some(serde_json::Value::Number(n)) => Ok(Some(n.to_string())),
                Some(other) => Err(Error::data(path, line, format!("field '{k}' must be a string, found {other}"))),
            }
        };
        let label = get("label")?;
        let mut a = get("label_a")?;
        let mut b = get("label_b")?;
        match task {
            Some(Task::A) if a.is_none() => a = label,
            Some(Task::B) if b.is_none() => b = label,
            _ => {}
        }
        let text = get("text")?.ok_or_else(|| Error::data(path, line, "object has no 'text'"))?;
        let fields = vec![text, a.unwrap_or_default(), b.unwrap_or_default()];
        let cols = Columns { text: 0, a: Some(1), b: Some(2), n: 3 };
        rows.push(make_row(path, line, &cols, &fields, task)?);
    }
    Ok(rows)
}

/// Sorted label names of one task.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn index(&self, name: &str) -> Option<usize> {
        self.0.binary_search_by(|l| l.as_str().cmp(name)).ok()
    }
}

/// A tokenized example with label indices.
#[derive(Debug, Clone)]
pub struct Example {
    pub text: String,
    pub ids: Vec<i64>,
    pub label_a: Option<usize>,
    pub label_b: Option<usize>,
}

/// Tokenizes the rows of `sources` and maps label names to indices. A label name not in `labels`
/// (one never seen in training) is an error naming the file and line.
pub fn examples(sources: &[Source], labels_a: &Labels, labels_b: &Labels, tok: &SentenceTokenizer) -> Result<Vec<Example>> {
    let mut out = Vec::new();
    for s in sources {
        for r in &s.rows {
            let map = |name: &Option<String>, labels: &Labels, task: Task| -> Result<Option<usize>> {
                match name {
                    None => Ok(None),
                    Some(n) => labels.index(n).map(Some).ok_or_else(|| {
                        Error::data(
                            &s.path,
                            r.line,
                            format!("{} label '{n}' was never seen in training (known: {})", task.key(), labels.0.join(", ")),
                        )
                    }),
                }
            };
            out.push(Example {
                text: r.text.clone(),
                ids: tok.encode(&r.text),
                label_a: map(&r.label_a, labels_a, Task::A)?,
                label_b: map(&r.label_b, labels_b, Task::B)?,
            });
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
}

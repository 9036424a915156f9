//! Property tests (a fuzz harness) of the input readers and the config loaders:
//!
//! * arbitrary bytes, and near-valid files built from the pieces that trip parsers (tabs, commas,
//!   quotes, braces, CR, empty lines, a byte order mark, JSON labels of every type, bytes that are
//!   not UTF-8), never panic as TSV, CSV or JSON Lines: a file is either read, with every row's
//!   line number inside the file, or rejected with an error that names the file and a line;
//! * texts one per line, read in windows of any size, deliver every line before the first bad one
//!   and then its error (or, skipping bad lines, every valid line and each skipped line number);
//! * arbitrary JSON (mostly a valid config with fields replaced by arbitrary values) as a model
//!   folder's `config.json` or a checkpoint's `config.json` never panics: it is accepted or
//!   rejected with an error naming the file, and an accepted small config builds a model that
//!   encodes a sentence without panicking.
//!
//! Cases per property: `MTT_FUZZ_CASES` (default 256), e.g. a long fuzz run:
//! `MTT_FUZZ_CASES=200000 cargo test --test loaders_prop`.

mod common;

use common::tiny_model;
use multi_task_transformer::config::ModelFiles;
use multi_task_transformer::data::{read_labelled, Labels, Task};
use multi_task_transformer::infer::Batching;
use multi_task_transformer::model::MultiTask;
use multi_task_transformer::textio::{split_lines, Lines};
use multi_task_transformer::tokenizer::SentenceTokenizer;
use multi_task_transformer::{Classifier, EncodeOptions, EncoderConfig, Error, SentenceEncoder};
use proptest::prelude::*;
use serde_json::Value;
use std::path::Path;
use tch::Device;

/// Cases per property (`MTT_FUZZ_CASES`, default 256).
fn cases() -> u32 {
    std::env::var("MTT_FUZZ_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(256)
}

fn fuzz_config() -> ProptestConfig {
    // No failure file: proptest looks for it next to a lib.rs or main.rs, which tests/ has not.
    ProptestConfig { cases: cases(), failure_persistence: None, ..ProptestConfig::default() }
}

/// Near-valid content: a plausible header, then lines made of tricky pieces.
fn near_valid(ext: &'static str) -> impl Strategy<Value = Vec<u8>> {
    let header: &'static [u8] = match ext {
        "tsv" => b"text\tlabel\n",
        "csv" => b"text,label\n",
        _ => b"",
    };
    let piece = prop_oneof![
        Just(b"\t".to_vec()),
        Just(b",".to_vec()),
        Just(b"\"".to_vec()),
        Just(b"\n".to_vec()),
        Just(b"\r\n".to_vec()),
        Just(b"{\"text\": \"a\", \"label\": \"x\"}\n".to_vec()),
        Just(b"{\"text\": \"a\", \"label\": 1}\n".to_vec()),
        Just(b"{\"text\": \"a\", \"label\": 1.0}\n".to_vec()),
        Just(b"{\"text\": \"a\", \"label_a\": null, \"label_b\": true}\n".to_vec()),
        Just(b"{\"text\": \"a\", \"label\": {\"x\": [1]}}\n".to_vec()),
        Just(b"{\"text\": ".to_vec()),
        Just(b"}".to_vec()),
        Just(b"what is it ?\tHUM\n".to_vec()),
        Just(b"good,positive\n".to_vec()),
        Just(vec![0xff, 0xfe]),
        Just(b"\xEF\xBB\xBF".to_vec()),
        Just("é€".as_bytes().to_vec()),
        Just(b" ".to_vec()),
        "[a-z]{1,5}".prop_map(|s| s.into_bytes()),
    ];
    (any::<bool>(), prop::collection::vec(piece, 0..40)).prop_map(move |(bom, ps)| {
        let mut v = if bom { b"\xEF\xBB\xBF".to_vec() } else { Vec::new() };
        v.extend_from_slice(header);
        for p in ps {
            v.extend(p);
        }
        v
    })
}

fn any_content(ext: &'static str) -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![prop::collection::vec(any::<u8>(), 0..300), near_valid(ext)]
}

fn check_labelled(ext: &str, bytes: &[u8], task: Option<Task>) -> Result<(), TestCaseError> {
    let d = tempfile::tempdir().unwrap();
    let path = d.path().join(format!("data.{ext}"));
    std::fs::write(&path, bytes).unwrap();
    let n_lines = bytes.split(|&b| b == b'\n').count();
    match read_labelled(&path, task) {
        Ok(src) => {
            for r in &src.rows {
                prop_assert!(r.line >= 1 && r.line <= n_lines, "row line {} outside 1..={n_lines}", r.line);
                prop_assert!(!r.text.trim().is_empty());
            }
        }
        Err(Error::Data { path: p, line, .. }) => {
            prop_assert_eq!(&p, &path);
            prop_assert!(line >= 1 && line <= n_lines.max(1), "error line {line} outside 1..={}", n_lines.max(1));
        }
        Err(other) => prop_assert!(false, "not a line-numbered data error: {other}"),
    }
    Ok(())
}

/// A leaf JSON value, weighted towards the sizes and probabilities a config holds.
fn json_leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        4 => (-2i64..=70).prop_map(Value::from),
        1 => any::<i64>().prop_map(Value::from),
        1 => any::<u64>().prop_map(Value::from),
        1 => prop_oneof![Just(i64::MIN), Just(i64::MAX), Just(1i64 << 31), Just(1i64 << 40)].prop_map(Value::from),
        2 => (-0.5f64..1.5).prop_map(Value::from),
        1 => any::<f64>().prop_filter("JSON has no NaN or infinity", |f| f.is_finite()).prop_map(Value::from),
        1 => any::<bool>().prop_map(Value::from),
        1 => Just(Value::Null),
        1 => prop_oneof![Just("gelu"), Just("relu"), Just("swish"), Just("mish"), Just("gelu_new"), Just("tanh"), Just("")].prop_map(Value::from),
        1 => "[a-z_0-9]{0,8}".prop_map(Value::from),
    ]
}

fn any_json() -> impl Strategy<Value = Value> {
    json_leaf().prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
            prop::collection::btree_map("[a-z_]{1,10}", inner, 0..4).prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Every path to a leaf of `v` (object keys and array indices).
fn leaf_paths(v: &Value, prefix: &mut Vec<String>, out: &mut Vec<Vec<String>>) {
    match v {
        Value::Object(m) if !m.is_empty() => {
            for (k, x) in m {
                prefix.push(k.clone());
                leaf_paths(x, prefix, out);
                prefix.pop();
            }
        }
        Value::Array(a) if !a.is_empty() => {
            for (i, x) in a.iter().enumerate() {
                prefix.push(i.to_string());
                leaf_paths(x, prefix, out);
                prefix.pop();
            }
        }
        _ => out.push(prefix.clone()),
    }
}

fn slot<'a>(v: &'a mut Value, path: &[String]) -> Option<&'a mut Value> {
    path.iter().try_fold(v, |v, k| match v {
        Value::Object(m) => m.get_mut(k),
        Value::Array(a) => k.parse::<usize>().ok().and_then(|i| a.get_mut(i)),
        _ => None,
    })
}

/// An edit of a valid config: set a leaf (or a new key) to a value, or remove a leaf.
#[derive(Debug, Clone)]
enum Edit {
    Set(prop::sample::Index, Value),
    Add(String, Value),
    Remove(prop::sample::Index),
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        6 => (any::<prop::sample::Index>(), prop_oneof![4 => json_leaf(), 1 => any_json()]).prop_map(|(i, v)| Edit::Set(i, v)),
        1 => (prop_oneof![Just("layer_norm_eps".to_string()), "[a-z_]{1,10}"], json_leaf()).prop_map(|(k, v)| Edit::Add(k, v)),
        1 => any::<prop::sample::Index>().prop_map(Edit::Remove),
    ]
}

/// What to write as a `config.json`: `valid` edited, arbitrary JSON, or arbitrary bytes.
#[derive(Debug, Clone)]
enum ConfigFile {
    Edited(Vec<Edit>),
    Json(Value),
    Bytes(Vec<u8>),
}

fn config_file() -> impl Strategy<Value = ConfigFile> {
    prop_oneof![
        8 => prop::collection::vec(edit(), 0..5).prop_map(ConfigFile::Edited),
        1 => any_json().prop_map(ConfigFile::Json),
        1 => prop::collection::vec(any::<u8>(), 0..120).prop_map(ConfigFile::Bytes),
    ]
}

fn config_bytes(valid: &Value, file: &ConfigFile) -> Vec<u8> {
    match file {
        ConfigFile::Bytes(b) => b.clone(),
        ConfigFile::Json(v) => v.to_string().into_bytes(),
        ConfigFile::Edited(edits) => {
            let mut v = valid.clone();
            for e in edits {
                let mut paths = Vec::new();
                leaf_paths(&v, &mut Vec::new(), &mut paths);
                match e {
                    Edit::Set(i, x) if !paths.is_empty() => {
                        if let Some(s) = slot(&mut v, &paths[i.index(paths.len())]) {
                            *s = x.clone();
                        }
                    }
                    Edit::Add(k, x) => {
                        if let Value::Object(m) = &mut v {
                            m.insert(k.clone(), x.clone());
                        }
                    }
                    Edit::Remove(i) if !paths.is_empty() => {
                        let path = &paths[i.index(paths.len())];
                        if let Some((last, parent)) = path.split_last() {
                            if let Some(Value::Object(m)) = slot(&mut v, parent) {
                                m.remove(last);
                            }
                        }
                    }
                    _ => {}
                }
            }
            v.to_string().into_bytes()
        }
    }
}

/// Roughly how many parameters `c` makes (saturating): configs above a few million are accepted
/// but not built here.
fn n_params(c: &EncoderConfig) -> i64 {
    let b = &c.bert;
    let h = b.hidden_size;
    let emb = (b.vocab_size.saturating_add(b.max_position_embeddings).saturating_add(b.type_vocab_size)).saturating_mul(h);
    let layer = h.saturating_mul(h).saturating_mul(4).saturating_add(h.saturating_mul(b.intermediate_size).saturating_mul(2));
    emb.saturating_add(layer.saturating_mul(b.num_hidden_layers))
}

const SMALL: i64 = 3_000_000;

proptest! {
    #![proptest_config(fuzz_config())]

    #[test]
    fn tsv_reader_never_panics(bytes in any_content("tsv"), joint in any::<bool>()) {
        check_labelled("tsv", &bytes, if joint { None } else { Some(Task::A) })?;
    }

    #[test]
    fn csv_reader_never_panics(bytes in any_content("csv"), joint in any::<bool>()) {
        check_labelled("csv", &bytes, if joint { None } else { Some(Task::B) })?;
    }

    #[test]
    fn jsonl_reader_never_panics(bytes in any_content("jsonl"), joint in any::<bool>()) {
        check_labelled("jsonl", &bytes, if joint { None } else { Some(Task::A) })?;
    }

    #[test]
    fn text_reader_never_panics(bytes in any_content("txt")) {
        let source = Path::new("input.txt");
        match split_lines(&bytes, source) {
            Ok(lines) => {
                let n = bytes.split(|&b| b == b'\n').count();
                prop_assert!(lines.len() <= n);
                prop_assert!(lines.iter().all(|l| !l.contains('\n')));
            }
            Err(Error::Data { path, line, .. }) => {
                prop_assert_eq!(path.as_path(), source);
                prop_assert!(line >= 1);
            }
            Err(other) => prop_assert!(false, "not a line-numbered data error: {other}"),
        }
    }

    /// Windows of any size lose no line before a bad one; skipping, they lose only bad lines.
    #[test]
    fn text_windows_lose_nothing(bytes in any_content("txt"), window in 1usize..6, skip in any::<bool>()) {
        // The lines as the rules say, each valid or not.
        let body = bytes.strip_suffix(b"\n").unwrap_or(&bytes);
        let mut expected: Vec<Result<String, usize>> = Vec::new();
        if !bytes.is_empty() {
            for (i, l) in body.split(|&b| b == b'\n').enumerate() {
                let l = l.strip_suffix(b"\r").unwrap_or(l);
                let l = if i == 0 { l.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(l) } else { l };
                expected.push(std::str::from_utf8(l).map(str::to_owned).map_err(|_| i + 1));
            }
        }
        let mut lines = Lines::new(&bytes[..], Path::new("in")).skip_invalid(skip);
        let (mut got, mut skipped) = (Vec::new(), Vec::new());
        let mut error = None;
        loop {
            match lines.window(window) {
                Ok(w) if w.is_empty() => break,
                Ok(w) => {
                    prop_assert!(w.len() <= window);
                    got.extend(w);
                }
                Err(Error::Data { line, .. }) => {
                    error = Some(line);
                    break;
                }
                Err(other) => prop_assert!(false, "{other}"),
            }
            skipped.extend(lines.take_skipped().into_iter().map(|(l, _)| l));
        }
        skipped.extend(lines.take_skipped().into_iter().map(|(l, _)| l));
        let valid: Vec<String> = expected.iter().filter_map(|e| e.as_ref().ok().cloned()).collect();
        let bad: Vec<usize> = expected.iter().filter_map(|e| e.as_ref().err().copied()).collect();
        if skip {
            prop_assert_eq!(got, valid);
            prop_assert_eq!(skipped, bad.clone());
            prop_assert_eq!(lines.skipped_count(), bad.len());
            prop_assert_eq!(error, None);
        } else {
            let first_bad = bad.first().copied();
            let before: Vec<String> = expected.iter().take_while(|e| e.is_ok()).map(|e| e.clone().unwrap()).collect();
            prop_assert_eq!(got, before);
            prop_assert_eq!(error, first_bad);
        }
    }
}

/// Outcomes of a config fuzz run, printed at its end (`--nocapture` shows them).
#[derive(Default)]
struct Tally {
    accepted: usize,
    built: usize,
    rejected: usize,
}

/// Runs `check` on `cases() / 2 + 1` config files (building models makes these cases slower).
fn fuzz_configs(name: &str, check: impl Fn(&ConfigFile, &mut Tally) -> Result<(), TestCaseError>) {
    let config = ProptestConfig { cases: cases() / 2 + 1, failure_persistence: None, ..ProptestConfig::default() };
    let mut runner = proptest::test_runner::TestRunner::new(config);
    let tally = std::cell::RefCell::new(Tally::default());
    if let Err(e) = runner.run(&config_file(), |file| check(&file, &mut tally.borrow_mut())) {
        panic!("{name}: {e}");
    }
    let t = tally.borrow();
    eprintln!("{name}: {} cases: {} accepted ({} built and run), {} rejected with an error", t.accepted + t.rejected, t.accepted, t.built, t.rejected);
}

/// Arbitrary `config.json` in a model folder: accepted or an error naming a file of the folder;
/// an accepted small config builds an encoder that encodes a sentence.
#[test]
fn model_config_loader_never_panics() {
    // A tiny model, written once per property: the cases rewrite its config. It holds the lock
    // around libtorch's generator, which the cases draw from too.
    let t = tiny_model(1);
    let m = &t.model;
    let valid: Value = serde_json::from_str(&std::fs::read_to_string(m.join("config.json")).unwrap()).unwrap();
    fuzz_configs("model config.json", |file, tally| {
        std::fs::write(m.join("config.json"), config_bytes(&valid, file)).unwrap();
        let files = ModelFiles::locate(m).unwrap();
        match files.encoder_config() {
            Ok(cfg) => {
                tally.accepted += 1;
                if n_params(&cfg) <= SMALL {
                    tally.built += 1;
                    let tok = SentenceTokenizer::from_vocab(&files.vocab, &cfg.tokenizer, cfg.max_seq_length).unwrap();
                    let enc = SentenceEncoder::random(&cfg, tok, Device::Cpu);
                    let v = enc.encode(&["what is the name of the city ?", ""], EncodeOptions::default()).unwrap();
                    prop_assert_eq!(v.size(), vec![2, cfg.embedding_dim()]);
                    // Loading the tiny weights into another shape is an error, not a panic.
                    let _ = SentenceEncoder::load(m, Device::Cpu);
                }
            }
            Err(e) => {
                tally.rejected += 1;
                let text = e.to_string();
                prop_assert!(text.starts_with(&m.display().to_string()), "error names no file of the folder: {text}");
            }
        }
        Ok(())
    });
}

/// Arbitrary `config.json` in a checkpoint folder: accepted or an error naming it; an accepted
/// small config builds a model that predicts.
#[test]
fn checkpoint_config_loader_never_panics() {
    let t = tiny_model(1);
    let m = &t.model;
    let names = |v: &[&str]| Labels(v.iter().map(|s| s.to_string()).collect());
    let (clf, _) = Classifier::from_base(m, multi_task_transformer::task::seed_tasks(names(&["x", "y"]), names(&["p"])), 0.1, Device::Cpu).unwrap();
    let ckpt = t.dir.path().join("ckpt");
    clf.save(&ckpt).unwrap();
    let path = ckpt.join("config.json");
    let mut valid: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    valid.as_object_mut().unwrap().remove("integrity");
    fuzz_configs("checkpoint config.json", |file, tally| {
        std::fs::write(&path, config_bytes(&valid, file)).unwrap();
        match MultiTask::read_config(&ckpt) {
            Ok(cfg) => {
                tally.accepted += 1;
                if n_params(&cfg.encoder) <= SMALL {
                    tally.built += 1;
                    let model = MultiTask::new(&cfg.encoder, cfg.tasks.clone(), cfg.head_dropout, Device::Cpu).unwrap();
                    let tokenizer = SentenceTokenizer::from_vocab(&ckpt.join("vocab.txt"), &cfg.encoder.tokenizer, cfg.encoder.max_seq_length).unwrap();
                    let clf = Classifier { tokenizer, model };
                    let batching = Batching { batch_size: 4, token_budget: None, pad_id: clf.tokenizer.pad_id(), workers: 1 };
                    for (task, p) in clf.probabilities(&["what is it ?", "love"], batching).unwrap() {
                        prop_assert_eq!(p.size(), vec![2, cfg.task(&task).unwrap().1.labels.len() as i64]);
                    }
                    let _ = MultiTask::load(&ckpt, Device::Cpu);
                }
            }
            Err(e) => {
                tally.rejected += 1;
                let text = e.to_string();
                prop_assert!(text.starts_with(&path.display().to_string()), "error does not name {}: {text}", path.display());
            }
        }
        Ok(())
    });
}

//! Owns the way out to Python and back: [`export`] writes a checkpoint's (fine-tuned) encoder as
//! a standard sentence-transformers folder, plus its heads and label names; [`import`] turns a
//! weights file saved from the seed's PyTorch model (`encoder` = a Hugging Face `BertModel`,
//! `classification_head`, `sentiment_head`) into a checkpoint.
//!
//! A checkpoint's own `model.safetensors` already uses the PyTorch model's names, so
//! `load_state_dict` takes it as is (the `BertModel` pooler, which sentence embeddings never
//! use, is the only thing it lacks).

use crate::classifier::Classifier;
use crate::error::{invalid, Error, Result};
use crate::fsutil::write_atomic;
use crate::model::multitask::{MultiTaskConfig, VOCAB_FILE};
use crate::model::MultiTask;
use crate::params::{is_head, under_prefix, ENCODER};
use std::path::{Path, PathBuf};
use tch::{Device, Tensor};

/// The heads file of an exported folder.
pub const HEADS_FILE: &str = "heads.safetensors";
/// The label names of an exported folder.
pub const LABELS_FILE: &str = "labels.json";

fn write_text(path: &Path, text: &str) -> Result<()> {
    write_atomic(path, text.as_bytes())
}

fn json(v: &serde_json::Value) -> String {
    serde_json::to_string_pretty(v).expect("json serialises") + "\n"
}

/// Writes float32 CPU tensors as safetensors with the `{"format": "pt"}` metadata that Hugging
/// Face's loaders require.
fn write_pt_safetensors(tensors: &[(String, Tensor)], path: &Path) -> Result<()> {
    let werr = |msg: String| Error::Weights { path: path.to_path_buf(), msg };
    let mut bytes: Vec<(String, Vec<u8>, Vec<usize>)> = Vec::with_capacity(tensors.len());
    for (name, t) in tensors {
        if t.kind() != tch::Kind::Float {
            return Err(werr(format!("{name}: {:?} tensors are not exported (float32 only)", t.kind())));
        }
        let v = Vec::<f32>::try_from(t.flatten(0, -1))?;
        let shape = t.size().iter().map(|&d| d as usize).collect();
        bytes.push((name.clone(), v.iter().flat_map(|x| x.to_le_bytes()).collect(), shape));
    }
    let views = bytes
        .iter()
        .map(|(n, b, s)| safetensors::tensor::TensorView::new(safetensors::Dtype::F32, s.clone(), b).map(|v| (n.clone(), v)))
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| werr(format!("{e:?}")))?;
    let meta = Some(std::collections::HashMap::from([("format".to_string(), "pt".to_string())]));
    safetensors::tensor::serialize_to_file(views, &meta, path).map_err(|e| werr(format!("cannot write: {e:?}")))
}

/// Writes the checkpoint `model` as a sentence-transformers folder `out` (which must not exist
/// or be empty): `config.json`, `model.safetensors` (the encoder under Hugging Face `BertModel`
/// names), the tokenizer files, `sentence_bert_config.json`, `modules.json`,
/// `1_Pooling/config.json`, `2_Normalize` when the base model normalised, `heads.safetensors` and
/// `labels.json`. The folder is written under a temporary name and renamed at the end, so it is
/// never seen half-written. Returns the number of encoder tensors written.
pub fn export(model: &Path, out: &Path) -> Result<usize> {
    if out.exists() && std::fs::read_dir(out).map_err(|e| Error::io(out, e))?.next().is_some() {
        return Err(Error::config(out, "the export folder exists and is not empty: choose a new folder"));
    }
    let (clf, _) = Classifier::load(model, Device::Cpu)?;
    let name = out.file_name().ok_or_else(|| invalid(format!("{}: not a folder name", out.display())))?;
    let parent = out.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
    let tmp: PathBuf = parent.join(format!(".{}.tmp{}", name.to_string_lossy(), std::process::id()));
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).map_err(|e| Error::io(&tmp, e))?;
    }
    let result = write_folder(&clf, &tmp);
    if let Err(e) = result {
        let _ = std::fs::remove_dir_all(&tmp);
        return Err(e);
    }
    if out.exists() {
        std::fs::remove_dir(out).map_err(|e| Error::io(out, e))?;
    }
    std::fs::rename(&tmp, out).map_err(|e| Error::io(out, e))?;
    result
}

fn write_folder(clf: &Classifier, dir: &Path) -> Result<usize> {
    let c = &clf.model.config;
    let enc = &c.encoder;
    std::fs::create_dir_all(dir.join("1_Pooling")).map_err(|e| Error::io(dir, e))?;
    // Hugging Face BERT config: rust-bert's fields are the same names; model_type says BERT.
    let mut bert = serde_json::to_value(&enc.bert).expect("bert config serialises");
    if let Some(o) = bert.as_object_mut() {
        o.retain(|_, v| !v.is_null());
        o.insert("model_type".into(), "bert".into());
        o.insert("architectures".into(), serde_json::json!(["BertModel"]));
        o.entry("layer_norm_eps").or_insert(serde_json::json!(1e-12));
        o.entry("pad_token_id").or_insert(serde_json::json!(clf.tokenizer.pad_id()));
    }
    write_text(&dir.join("config.json"), &json(&bert))?;
    // The encoder's tensors, named as in `BertModel` (our `encoder.` prefix is the seed's
    // attribute name); the heads go to their own file.
    let named = clf.model.params().named_variables();
    let cpu = |t: &Tensor| t.detach().to_device(Device::Cpu).contiguous();
    let encoder: Vec<(String, Tensor)> = named
        .iter()
        .filter(|(n, _)| under_prefix(n, ENCODER))
        .map(|(n, t)| (n[ENCODER.len() + 1..].to_string(), cpu(t)))
        .collect();
    let heads: Vec<(String, Tensor)> = named.iter().filter(|(n, _)| is_head(n)).map(|(n, t)| (n.clone(), cpu(t))).collect();
    write_pt_safetensors(&encoder, &dir.join("model.safetensors"))?;
    write_pt_safetensors(&heads, &dir.join(HEADS_FILE))?;
    let vocab = std::fs::read(clf.tokenizer.vocab_path()).map_err(|e| Error::io(clf.tokenizer.vocab_path(), e))?;
    write_atomic(&dir.join(VOCAB_FILE), &vocab)?;
    let tok = &enc.tokenizer;
    write_text(
        &dir.join("tokenizer_config.json"),
        &json(&serde_json::json!({
            "tokenizer_class": "BertTokenizer",
            "do_lower_case": tok.do_lower_case,
            "strip_accents": tok.strip_accents,
            "tokenize_chinese_chars": tok.tokenize_chinese_chars,
            "model_max_length": enc.max_seq_length,
            "unk_token": "[UNK]", "sep_token": "[SEP]", "pad_token": "[PAD]", "cls_token": "[CLS]", "mask_token": "[MASK]"
        })),
    )?;
    write_text(
        &dir.join("special_tokens_map.json"),
        &json(&serde_json::json!({"unk_token": "[UNK]", "sep_token": "[SEP]", "pad_token": "[PAD]", "cls_token": "[CLS]", "mask_token": "[MASK]"})),
    )?;
    write_text(&dir.join("sentence_bert_config.json"), &json(&serde_json::json!({"max_seq_length": enc.max_seq_length, "do_lower_case": false})))?;
    let p = &enc.pooling;
    write_text(
        &dir.join("1_Pooling/config.json"),
        &json(&serde_json::json!({
            "word_embedding_dimension": enc.bert.hidden_size,
            "pooling_mode_cls_token": p.cls,
            "pooling_mode_mean_tokens": p.mean,
            "pooling_mode_max_tokens": p.max,
            "pooling_mode_mean_sqrt_len_tokens": p.mean_sqrt_len
        })),
    )?;
    let mut modules = vec![
        serde_json::json!({"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"}),
        serde_json::json!({"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"}),
    ];
    if enc.normalize {
        std::fs::create_dir_all(dir.join("2_Normalize")).map_err(|e| Error::io(dir, e))?;
        modules.push(serde_json::json!({"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"}));
    }
    write_text(&dir.join("modules.json"), &json(&serde_json::Value::Array(modules)))?;
    write_text(
        &dir.join(LABELS_FILE),
        &json(&labels_json(c)),
    )?;
    Ok(encoder.len())
}

/// `labels.json` of an exported folder: every task (name, kind, labels) under `tasks`, and the
/// seed's two tasks' labels under `task_a` / `task_b` when the model has them (as the seed's
/// PyTorch model reads them).
fn labels_json(c: &MultiTaskConfig) -> serde_json::Value {
    let mut v = serde_json::json!({"head_dropout": c.head_dropout, "tasks": c.tasks});
    for (key, labels) in [("task_a", &c.labels_a), ("task_b", &c.labels_b)] {
        if let Some(l) = labels {
            v[key] = serde_json::json!(l.0);
        }
    }
    v
}

/// Makes a checkpoint in `out` from `weights` (a safetensors file saved from the seed's PyTorch
/// model: `encoder.*`, `classification_head.*`, `sentiment_head.*`; a `BertModel` pooler is
/// ignored) with the model description of the checkpoint or exported folder `like` (labels,
/// encoder shape, tokenizer, pooling). Every variable must be in the file, with its shape.
pub fn import(weights: &Path, like: &Path, out: &Path) -> Result<()> {
    let (config, vocab): (MultiTaskConfig, PathBuf) = if MultiTask::is_checkpoint(like) {
        (MultiTask::read_config(like)?, like.join(VOCAB_FILE))
    } else {
        let files = crate::config::ModelFiles::locate(like)?;
        let encoder = files.encoder_config()?;
        let lpath = like.join(LABELS_FILE);
        let text = std::fs::read_to_string(&lpath).map_err(|e| Error::io(&lpath, e))?;
        #[derive(serde::Deserialize)]
        struct L {
            #[serde(default)]
            task_a: Option<Vec<String>>,
            #[serde(default)]
            task_b: Option<Vec<String>>,
            #[serde(default)]
            head_dropout: f64,
            #[serde(default)]
            tasks: Vec<crate::task::TaskInfo>,
        }
        let l: L = serde_json::from_str(&text).map_err(|e| Error::config(&lpath, format!("not a labels file: {e}")))?;
        let tasks = match (l.tasks.is_empty(), l.task_a, l.task_b) {
            (false, _, _) => l.tasks,
            (true, Some(a), Some(b)) => crate::task::seed_tasks(crate::data::Labels(a), crate::data::Labels(b)),
            _ => return Err(Error::config(&lpath, "not a labels file: it has neither 'tasks' nor 'task_a' and 'task_b'")),
        };
        let m = MultiTask::new(&encoder, tasks, l.head_dropout, Device::Cpu)?;
        (m.config, files.vocab)
    };
    let mut model = MultiTask::new(&config.encoder, config.tasks.clone(), config.head_dropout, Device::Cpu)?;
    let report = model.params().load(weights, &[])?;
    let stray: Vec<&String> = report.unexpected.iter().filter(|n| !n.contains("pooler")).collect();
    if !stray.is_empty() {
        return Err(Error::Weights {
            path: weights.to_path_buf(),
            msg: format!("tensors that are not part of the multi-task model: {}", stray.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")),
        });
    }
    model.config = MultiTaskConfig { integrity: None, training: None, ..config };
    let tokenizer = crate::tokenizer::SentenceTokenizer::from_vocab(&vocab, &model.config.encoder.tokenizer, model.config.encoder.max_seq_length)?;
    Classifier { tokenizer, model }.save(out)
}

//! Owns a sentence-transformers folder's settings: which files it has, the BERT, tokenizer and
//! pooling configuration read from them, and the tiny preset used in tests.
//!
//! A folder holds `config.json` (the Hugging Face BERT config), the weights (`model.safetensors`
//! or rust-bert's `rust_model.ot`), `vocab.txt`, `tokenizer_config.json`,
//! `sentence_bert_config.json`, `modules.json` and the pooling module's `config.json`
//! (`1_Pooling/config.json` for all-MiniLM-L6-v2).
//!
//! Every setting is checked when it is read, before any tensor is built from it: each size at
//! least 1 (and at most [`MAX_DIM`]), `hidden_size` a multiple of `num_attention_heads`,
//! `vocab_size` above every token id of `vocab.txt`, `max_seq_length` within
//! `2..=max_position_embeddings`, dropout probabilities in [0, 1), a positive finite
//! `layer_norm_eps`, at least one pooling mode. An error names the file and the field. The same
//! checks apply to the encoder section of a multi-task checkpoint's `config.json`
//! ([`EncoderConfig::check`]). A `--model` path that is not a folder (a file, `/dev/null`, a
//! symlink loop) is reported as what it is.

use crate::error::{check_path, Error, PathKind, Result, Want};
use rust_bert::bert::BertConfig;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Default model folder, relative to the working directory (scripts/setup.sh installs it there).
pub const DEFAULT_MODEL_DIR: &str = "models/all-MiniLM-L6-v2";

/// Environment variable naming the default model folder.
pub const MODEL_ENV: &str = "MTT_MODEL";

/// The folder scripts/setup.sh also copies the model into, so that an installed `mtt` finds it
/// from any working folder: `$MTT_CACHE_DIR/models/all-MiniLM-L6-v2`, by default under
/// `$HOME/.cache/multi-task-transformer/` (`None` without either variable).
pub fn user_cache_model_dir() -> Option<PathBuf> {
    Some(user_cache_dir()?.join(DEFAULT_MODEL_DIR))
}

/// The user's cache folder: `$MTT_CACHE_DIR`, else `$HOME/.cache/multi-task-transformer/`
/// (`None` without either variable). It holds the installed model and the stored int8
/// calibrations (the model module's `calibration`).
pub fn user_cache_dir() -> Option<PathBuf> {
    match std::env::var_os("MTT_CACHE_DIR") {
        Some(d) if !d.is_empty() => Some(PathBuf::from(d)),
        _ => Some(PathBuf::from(std::env::var_os("HOME").filter(|h| !h.is_empty())?).join(".cache/multi-task-transformer")),
    }
}

/// Where the default model folder was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModelSource {
    /// `$MTT_MODEL`.
    Env,
    /// `./models/all-MiniLM-L6-v2` in the working folder (a clone where scripts/setup.sh ran).
    WorkingFolder,
    /// The user cache ([`user_cache_model_dir`]).
    UserCache,
    /// None of them exists: `./models/all-MiniLM-L6-v2`, whose absence the error then names.
    NotFound,
}

impl ModelSource {
    /// How `mtt doctor` names it.
    pub fn describe(self) -> &'static str {
        match self {
            ModelSource::Env => "from $MTT_MODEL",
            ModelSource::WorkingFolder => "./models/all-MiniLM-L6-v2 in the working folder",
            ModelSource::UserCache => "the user cache, where scripts/setup.sh also installs it",
            ModelSource::NotFound => "not found: not in $MTT_MODEL, ./models/ or the user cache",
        }
    }
}

/// The model folder a command uses when `--model` is not given, and where it came from: `$MTT_MODEL`,
/// then `./models/all-MiniLM-L6-v2`, then the user cache.
pub fn default_model() -> (PathBuf, ModelSource) {
    if let Some(d) = std::env::var_os(MODEL_ENV).filter(|d| !d.is_empty()) {
        return (PathBuf::from(d), ModelSource::Env);
    }
    let local = PathBuf::from(DEFAULT_MODEL_DIR);
    if local.is_dir() {
        return (local, ModelSource::WorkingFolder);
    }
    match user_cache_model_dir() {
        Some(c) if c.is_dir() => (c, ModelSource::UserCache),
        _ => (local, ModelSource::NotFound),
    }
}

/// [`default_model`]'s folder (the commands' `--model` default).
pub fn default_model_dir() -> PathBuf {
    default_model().0
}

/// Which token vectors make the sentence vector; several modes are concatenated in the order
/// cls, max, mean, mean_sqrt_len, as sentence-transformers' `Pooling` does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PoolingConfig {
    /// The `[CLS]` token's vector (`pooling_mode_cls_token`).
    #[serde(rename = "pooling_mode_cls_token", default)]
    pub cls: bool,
    /// Element-wise maximum over the tokens, padding left out (`pooling_mode_max_tokens`).
    #[serde(rename = "pooling_mode_max_tokens", default)]
    pub max: bool,
    /// Mean over the tokens, `[CLS]` and `[SEP]` included, padding left out
    /// (`pooling_mode_mean_tokens`).
    #[serde(rename = "pooling_mode_mean_tokens", default)]
    pub mean: bool,
    /// Sum over the tokens (padding left out) divided by the square root of their count
    /// (`pooling_mode_mean_sqrt_len_tokens`).
    #[serde(rename = "pooling_mode_mean_sqrt_len_tokens", default)]
    pub mean_sqrt_len: bool,
}

impl PoolingConfig {
    /// Mask-aware mean pooling only (all-MiniLM-L6-v2).
    pub const MEAN: PoolingConfig = PoolingConfig { cls: false, max: false, mean: true, mean_sqrt_len: false };

    /// One pooling mode by name: `mean`, `max`, `cls` or `mean_sqrt_len`.
    pub fn from_name(name: &str) -> Result<PoolingConfig> {
        let off = PoolingConfig { cls: false, max: false, mean: false, mean_sqrt_len: false };
        Ok(match name {
            "mean" => PoolingConfig { mean: true, ..off },
            "max" => PoolingConfig { max: true, ..off },
            "cls" => PoolingConfig { cls: true, ..off },
            "mean_sqrt_len" => PoolingConfig { mean_sqrt_len: true, ..off },
            _ => return Err(Error::Invalid(format!("pooling '{name}': expected mean, max, cls or mean_sqrt_len"))),
        })
    }

    /// How many hidden-size blocks the pooled vector has.
    pub fn n_modes(&self) -> i64 {
        [self.cls, self.max, self.mean, self.mean_sqrt_len].iter().filter(|&&m| m).count() as i64
    }

    /// A short description such as `mean` or `cls+mean`.
    pub fn describe(&self) -> String {
        let names: Vec<&str> = [(self.cls, "cls"), (self.max, "max"), (self.mean, "mean"), (self.mean_sqrt_len, "mean_sqrt_len")]
            .iter()
            .filter(|(on, _)| *on)
            .map(|(_, n)| *n)
            .collect();
        names.join("+")
    }
}

/// Tokenizer settings from `tokenizer_config.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenizerConfig {
    /// Lower-case the text before WordPiece (default `true` when the file omits it).
    #[serde(default = "yes")]
    pub do_lower_case: bool,
    /// `None` follows `do_lower_case`, as in Hugging Face's BERT tokenizer.
    #[serde(default)]
    pub strip_accents: Option<bool>,
    /// Hugging Face's flag for splitting CJK characters into tokens of their own (default
    /// `true`); kept for export only, as rust_tokenizers' BERT tokenizer always splits them.
    #[serde(default = "yes")]
    pub tokenize_chinese_chars: bool,
}

fn yes() -> bool {
    true
}

impl TokenizerConfig {
    /// Whether accents are stripped: explicit setting, else the lower-casing flag.
    pub fn strips_accents(&self) -> bool {
        self.strip_accents.unwrap_or(self.do_lower_case)
    }
}

/// Everything needed to build the encoder: the BERT architecture, tokenizer and pooling.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EncoderConfig {
    /// The BERT architecture, from the folder's `config.json` (layers, sizes, vocabulary).
    pub bert: BertConfig,
    /// Tokenizer settings, from `tokenizer_config.json`.
    pub tokenizer: TokenizerConfig,
    /// Pooling modes, from the Pooling module's `config.json` (at least one on).
    pub pooling: PoolingConfig,
    /// Longest input in tokens, `[CLS]` and `[SEP]` included; longer texts are truncated.
    pub max_seq_length: usize,
    /// Whether the folder's `modules.json` ends in a `Normalize` module (sentence-transformers
    /// then L2-normalises by default).
    pub normalize: bool,
}

impl EncoderConfig {
    /// Size of the pooled sentence vector.
    pub fn embedding_dim(&self) -> i64 {
        self.bert.hidden_size * self.pooling.n_modes()
    }

    /// A tiny random-weight BERT for fast tests: vocab 64, hidden 32, 2 layers, 4 heads.
    pub fn tiny(vocab_size: i64) -> Self {
        let bert = BertConfig {
            hidden_size: 32,
            intermediate_size: 64,
            num_attention_heads: 4,
            num_hidden_layers: 2,
            max_position_embeddings: 64,
            vocab_size,
            ..BertConfig::default()
        };
        EncoderConfig {
            bert,
            tokenizer: TokenizerConfig { do_lower_case: true, strip_accents: None, tokenize_chinese_chars: true },
            pooling: PoolingConfig::MEAN,
            max_seq_length: 32,
            normalize: true,
        }
    }

    /// Number of transformer layers.
    pub fn n_layers(&self) -> usize {
        self.bert.num_hidden_layers as usize
    }

    /// Checks the whole configuration as stored in one file, `path` (a multi-task checkpoint's
    /// `config.json`, where it sits under `prefix`, e.g. `encoder.`), and `vocab_size` against
    /// `vocab` when given. Errors name `path` and the field.
    pub fn check(&self, path: &Path, prefix: &str, vocab: Option<&Path>) -> Result<()> {
        check_bert(&self.bert, path, &format!("{prefix}bert."))?;
        if let Some(vocab) = vocab {
            check_vocab_size(&self.bert, path, &format!("{prefix}bert."), vocab)?;
        }
        check_max_seq_length(self.max_seq_length, &self.bert, path, &format!("{prefix}max_seq_length"))?;
        if self.pooling.n_modes() == 0 {
            return Err(Error::config(path, format!("{prefix}pooling: no pooling mode is enabled")));
        }
        Ok(())
    }
}

/// Largest size accepted for any dimension. No BERT comes near it; it keeps products such as the
/// pooled width (`hidden_size` times the pooling modes) from overflowing.
pub const MAX_DIM: i64 = i32::MAX as i64;

/// Checks the sizes and probabilities of a BERT config read from `path`; `prefix` goes before
/// each field name in messages (empty for a model folder's `config.json`).
pub fn check_bert(bert: &BertConfig, path: &Path, prefix: &str) -> Result<()> {
    let sizes = [
        ("hidden_size", bert.hidden_size),
        ("num_hidden_layers", bert.num_hidden_layers),
        ("num_attention_heads", bert.num_attention_heads),
        ("intermediate_size", bert.intermediate_size),
        ("vocab_size", bert.vocab_size),
        ("max_position_embeddings", bert.max_position_embeddings),
        ("type_vocab_size", bert.type_vocab_size),
    ];
    for (name, v) in sizes {
        if v < 1 {
            return Err(Error::config(path, format!("{prefix}{name} is {v}: must be at least 1")));
        }
        if v > MAX_DIM {
            return Err(Error::config(path, format!("{prefix}{name} is {v}: must be at most {MAX_DIM}")));
        }
    }
    if bert.hidden_size % bert.num_attention_heads != 0 {
        return Err(Error::config(
            path,
            format!(
                "{prefix}hidden_size {} is not a multiple of {prefix}num_attention_heads {}",
                bert.hidden_size, bert.num_attention_heads
            ),
        ));
    }
    for (name, p) in [("hidden_dropout_prob", bert.hidden_dropout_prob), ("attention_probs_dropout_prob", bert.attention_probs_dropout_prob)] {
        if !(0.0..1.0).contains(&p) {
            return Err(Error::config(path, format!("{prefix}{name} is {p}: must be in [0, 1)")));
        }
    }
    if bert.is_decoder == Some(true) {
        return Err(Error::config(path, format!("{prefix}is_decoder=true: a sentence encoder must be a BERT encoder")));
    }
    Ok(())
}

/// The largest token id of a `vocab.txt` (ids are line numbers from 0, as the tokenizer reads
/// them; blank lines hold no token), or `None` when it has no token.
pub fn max_token_id(vocab: &Path) -> Result<Option<i64>> {
    let bytes = std::fs::read(vocab).map_err(|e| Error::io(vocab, e))?;
    let body = bytes.strip_suffix(b"\n").unwrap_or(&bytes);
    if body.is_empty() && bytes.is_empty() {
        return Ok(None);
    }
    Ok(body
        .split(|&b| b == b'\n')
        .enumerate()
        .filter(|(_, l)| !String::from_utf8_lossy(l).trim().is_empty())
        .map(|(i, _)| i as i64)
        .last())
}

/// `vocab_size` must exceed every id the tokenizer can produce from `vocab` (special tokens
/// included); otherwise the embedding lookup would index past its table.
fn check_vocab_size(bert: &BertConfig, path: &Path, prefix: &str, vocab: &Path) -> Result<()> {
    if let Some(max) = max_token_id(vocab)? {
        if bert.vocab_size <= max {
            return Err(Error::config(
                path,
                format!(
                    "{prefix}vocab_size is {} but {} has token ids up to {max}: must be at least {}",
                    bert.vocab_size,
                    vocab.display(),
                    max + 1
                ),
            ));
        }
    }
    Ok(())
}

/// `max_seq_length` (named `field` in `path`) must lie within `2..=max_position_embeddings`.
fn check_max_seq_length(n: usize, bert: &BertConfig, path: &Path, field: &str) -> Result<()> {
    if n < 2 || !i64::try_from(n).is_ok_and(|n| n <= bert.max_position_embeddings) {
        return Err(Error::config(path, format!("{field} {n} must be within 2..={} (max_position_embeddings)", bert.max_position_embeddings)));
    }
    Ok(())
}

/// `layer_norm_eps`, when a `config.json` sets it, must be a finite number above 0 (`null` counts
/// as unset; the encoder uses BERT's 1e-12 either way).
fn check_layer_norm_eps(text: &str, path: &Path) -> Result<()> {
    #[derive(Deserialize)]
    struct Eps {
        #[serde(default)]
        layer_norm_eps: serde_json::Value,
    }
    let Ok(Eps { layer_norm_eps: v }) = serde_json::from_str::<Eps>(text) else { return Ok(()) };
    match v.as_f64() {
        _ if v.is_null() => Ok(()),
        Some(eps) if eps.is_finite() && eps > 0.0 => Ok(()),
        _ => Err(Error::config(path, format!("layer_norm_eps is {v}: must be a finite number greater than 0"))),
    }
}

/// The files of a sentence-transformers model folder, checked to exist.
#[derive(Debug, Clone)]
pub struct ModelFiles {
    /// The model folder, as given.
    pub dir: PathBuf,
    /// `config.json`: the BERT architecture.
    pub config: PathBuf,
    /// `model.safetensors`, or `rust_model.ot` when there is no safetensors file.
    pub weights: PathBuf,
    /// `vocab.txt`: the WordPiece vocabulary, one token per line.
    pub vocab: PathBuf,
    /// `tokenizer_config.json`: lower-casing and accent stripping.
    pub tokenizer_config: PathBuf,
    /// `sentence_bert_config.json`: the maximum sequence length.
    pub sentence_bert_config: PathBuf,
    /// `modules.json`: the sentence-transformers pipeline (where the Pooling module is, whether
    /// a Normalize module ends it).
    pub modules: PathBuf,
    /// The Pooling module's `config.json` (usually `1_Pooling/config.json`).
    pub pooling_config: PathBuf,
}

#[derive(Deserialize)]
struct ModuleEntry {
    #[serde(default)]
    path: String,
    #[serde(rename = "type")]
    kind: String,
}

#[derive(Deserialize)]
struct SentenceBertConfig {
    max_seq_length: Option<usize>,
}

/// One line per expected file of a model folder and whether it is there (for `mtt doctor`).
pub fn folder_report(dir: &Path) -> Vec<(String, bool)> {
    let has = |f: &str| dir.join(f).is_file();
    let weights = has("model.safetensors") || has("rust_model.ot");
    let pooling = pooling_dir(dir).map(|p| dir.join(p).join("config.json").is_file()).unwrap_or(has("1_Pooling/config.json"));
    vec![
        ("config.json".into(), has("config.json")),
        ("model.safetensors or rust_model.ot".into(), weights),
        ("vocab.txt".into(), has("vocab.txt")),
        ("tokenizer_config.json".into(), has("tokenizer_config.json")),
        ("sentence_bert_config.json".into(), has("sentence_bert_config.json")),
        ("modules.json".into(), has("modules.json")),
        ("pooling config (1_Pooling/config.json)".into(), pooling),
    ]
}

/// Checks that `dir` is a folder: a missing one is [`Error::MissingModelFile`] (with the hint to
/// run scripts/setup.sh), anything else that is not a folder says what it is.
pub fn check_model_dir(dir: &Path) -> Result<()> {
    match PathKind::of(dir) {
        PathKind::Directory => Ok(()),
        PathKind::Missing => Err(Error::MissingModelFile { dir: dir.to_path_buf(), file: "the folder itself (it does not exist)".into() }),
        _ => check_path(dir, "model folder", Want::Folder).map(|_| ()),
    }
}

fn pooling_dir(dir: &Path) -> Option<String> {
    let text = std::fs::read_to_string(dir.join("modules.json")).ok()?;
    let modules: Vec<ModuleEntry> = serde_json::from_str(&text).ok()?;
    modules.into_iter().find(|m| m.kind.ends_with(".Pooling")).map(|m| m.path)
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    serde_json::from_str(&text).map_err(|e| Error::config(path, format!("invalid JSON: {e}")))
}

impl ModelFiles {
    /// Checks that `dir` is a complete sentence-transformers folder; names the first missing file
    /// (or says what a path that should be a folder or a file is instead).
    pub fn locate(dir: impl AsRef<Path>) -> Result<Self> {
        let dir = dir.as_ref().to_path_buf();
        let missing = |file: &str| Error::MissingModelFile { dir: dir.clone(), file: file.to_string() };
        check_model_dir(&dir)?;
        let need = |name: &str| -> Result<PathBuf> {
            let p = dir.join(name);
            match PathKind::of(&p) {
                PathKind::RegularFile => Ok(p),
                PathKind::Missing => Err(missing(name)),
                _ => Err(check_path(&p, "model file", Want::RegularFile).err().unwrap_or_else(|| Error::Unusable {
                    what: "model file",
                    path: p.clone(),
                    is: "is a FIFO (named pipe), not a regular file".into(),
                })),
            }
        };
        let config = need("config.json")?;
        let weights = match ["model.safetensors", "rust_model.ot"].iter().map(|f| dir.join(f)).find(|p| p.is_file()) {
            Some(p) => p,
            None => need("model.safetensors").map_err(|e| match e {
                Error::MissingModelFile { .. } => missing("model.safetensors (or rust_model.ot)"),
                other => other,
            })?,
        };
        let vocab = need("vocab.txt")?;
        let tokenizer_config = need("tokenizer_config.json")?;
        let sentence_bert_config = need("sentence_bert_config.json")?;
        let modules = need("modules.json")?;
        let entries: Vec<ModuleEntry> = read_json(&modules)?;
        let pool = entries
            .iter()
            .find(|m| m.kind.ends_with(".Pooling"))
            .ok_or_else(|| Error::config(&modules, "no sentence_transformers.models.Pooling module listed"))?;
        let pooling_config = need(&format!("{}/config.json", pool.path))?;
        Ok(ModelFiles { dir, config, weights, vocab, tokenizer_config, sentence_bert_config, modules, pooling_config })
    }

    /// Reads and validates the configuration files (see the module's rules).
    pub fn encoder_config(&self) -> Result<EncoderConfig> {
        let text = std::fs::read_to_string(&self.config).map_err(|e| Error::io(&self.config, e))?;
        let bert: BertConfig = serde_json::from_str(&text).map_err(|e| Error::config(&self.config, format!("invalid JSON: {e}")))?;
        check_bert(&bert, &self.config, "")?;
        check_layer_norm_eps(&text, &self.config)?;
        check_vocab_size(&bert, &self.config, "", &self.vocab)?;
        let tokenizer: TokenizerConfig = read_json(&self.tokenizer_config)?;
        let pooling: PoolingConfig = read_json(&self.pooling_config)?;
        if pooling.n_modes() == 0 {
            return Err(Error::config(&self.pooling_config, "no pooling mode is enabled"));
        }
        let sbert: SentenceBertConfig = read_json(&self.sentence_bert_config)?;
        let max_seq_length = sbert.max_seq_length.unwrap_or(bert.max_position_embeddings as usize);
        check_max_seq_length(max_seq_length, &bert, &self.sentence_bert_config, "max_seq_length")?;
        let entries: Vec<ModuleEntry> = read_json(&self.modules)?;
        let normalize = entries.iter().any(|m| m.kind.ends_with(".Normalize"));
        Ok(EncoderConfig { bert, tokenizer, pooling, max_seq_length, normalize })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A folder with every file [`ModelFiles::locate`] needs (the weights file is empty: nothing
    /// here loads it), its `config.json` from `edit` applied to the tiny preset's.
    fn folder(dir: &Path, edit: impl FnOnce(&mut serde_json::Value)) -> PathBuf {
        let m = dir.join("m");
        std::fs::create_dir_all(m.join("1_Pooling")).unwrap();
        let vocab: Vec<String> = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "b"].iter().map(|s| s.to_string()).collect();
        std::fs::write(m.join("vocab.txt"), vocab.join("\n") + "\n").unwrap();
        let mut cfg = serde_json::to_value(EncoderConfig::tiny(vocab.len() as i64).bert).unwrap();
        edit(&mut cfg);
        std::fs::write(m.join("config.json"), cfg.to_string()).unwrap();
        std::fs::write(m.join("model.safetensors"), b"").unwrap();
        std::fs::write(m.join("tokenizer_config.json"), r#"{"do_lower_case": true}"#).unwrap();
        std::fs::write(m.join("sentence_bert_config.json"), r#"{"max_seq_length": 32}"#).unwrap();
        std::fs::write(m.join("modules.json"), r#"[{"path": "1_Pooling", "type": "sentence_transformers.models.Pooling"}]"#).unwrap();
        std::fs::write(m.join("1_Pooling/config.json"), r#"{"pooling_mode_mean_tokens": true}"#).unwrap();
        m
    }

    fn config_error(edit: impl FnOnce(&mut serde_json::Value)) -> String {
        let d = tempfile::tempdir().unwrap();
        let m = folder(d.path(), edit);
        let e = ModelFiles::locate(&m).unwrap().encoder_config().unwrap_err().to_string();
        let prefix = format!("{}: ", m.join("config.json").display());
        e.strip_prefix(&prefix).unwrap_or_else(|| panic!("{e} does not start with {prefix}")).to_string()
    }

    #[test]
    fn the_tiny_folder_is_valid() {
        let d = tempfile::tempdir().unwrap();
        let m = folder(d.path(), |_| {});
        let c = ModelFiles::locate(&m).unwrap().encoder_config().unwrap();
        assert_eq!((c.bert.hidden_size, c.max_seq_length), (32, 32));
        c.check(&m.join("config.json"), "encoder.", Some(&m.join("vocab.txt"))).unwrap();
    }

    #[test]
    fn every_size_must_be_at_least_1() {
        for field in ["hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size", "vocab_size", "max_position_embeddings", "type_vocab_size"] {
            for v in [0i64, -1, i64::MIN] {
                let e = config_error(|c| c[field] = v.into());
                assert_eq!(e, format!("{field} is {v}: must be at least 1"));
            }
            let e = config_error(|c| c[field] = (1i64 << 40).into());
            assert_eq!(e, format!("{field} is {}: must be at most {MAX_DIM}", 1i64 << 40));
        }
    }

    #[test]
    fn hidden_size_must_be_a_multiple_of_the_heads() {
        assert_eq!(config_error(|c| c["num_attention_heads"] = 5.into()), "hidden_size 32 is not a multiple of num_attention_heads 5");
    }

    #[test]
    fn dropout_probabilities_must_be_in_0_1() {
        for field in ["hidden_dropout_prob", "attention_probs_dropout_prob"] {
            for v in [1.0, -0.1, 7.5] {
                assert_eq!(config_error(|c| c[field] = v.into()), format!("{field} is {v}: must be in [0, 1)"));
            }
        }
    }

    #[test]
    fn layer_norm_eps_must_be_finite_and_positive() {
        for (v, shown) in [(serde_json::json!(0.0), "0.0"), (serde_json::json!(-1e-12), "-1e-12"), (serde_json::json!("tiny"), "\"tiny\"")] {
            assert_eq!(config_error(|c| c["layer_norm_eps"] = v), format!("layer_norm_eps is {shown}: must be a finite number greater than 0"));
        }
        for ok in [serde_json::json!(1e-12), serde_json::Value::Null] {
            let d = tempfile::tempdir().unwrap();
            let m = folder(d.path(), |c| c["layer_norm_eps"] = ok);
            ModelFiles::locate(&m).unwrap().encoder_config().unwrap();
        }
    }

    #[test]
    fn vocab_size_must_cover_every_token_id() {
        let e = config_error(|c| c["vocab_size"] = 6.into());
        assert!(e.starts_with("vocab_size is 6 but ") && e.ends_with("vocab.txt has token ids up to 6: must be at least 7"), "{e}");
        let d = tempfile::tempdir().unwrap();
        let v = d.path().join("vocab.txt");
        for (text, max) in [("", None), ("\n", None), ("a", Some(0)), ("a\nb\n", Some(1)), ("a\nb\n\n\n", Some(1)), ("[PAD]\r\n \nx\r\n", Some(2))] {
            std::fs::write(&v, text).unwrap();
            assert_eq!(max_token_id(&v).unwrap(), max, "{text:?}");
        }
    }

    #[test]
    fn max_seq_length_must_fit_the_positions() {
        let d = tempfile::tempdir().unwrap();
        let m = folder(d.path(), |c| c["max_position_embeddings"] = 16.into());
        let e = ModelFiles::locate(&m).unwrap().encoder_config().unwrap_err().to_string();
        assert!(e.ends_with("sentence_bert_config.json: max_seq_length 32 must be within 2..=16 (max_position_embeddings)"), "{e}");
        std::fs::write(m.join("sentence_bert_config.json"), format!(r#"{{"max_seq_length": {}}}"#, u64::MAX)).unwrap();
        let e = ModelFiles::locate(&m).unwrap().encoder_config().unwrap_err().to_string();
        assert!(e.contains(&format!("max_seq_length {} must be within", u64::MAX)), "{e}");
    }

    #[test]
    fn a_checkpoint_encoder_is_checked_with_its_prefix() {
        let path = Path::new("ckpt/config.json");
        let mut c = EncoderConfig::tiny(40);
        c.bert.hidden_size = -1;
        assert_eq!(c.check(path, "encoder.", None).unwrap_err().to_string(), "ckpt/config.json: encoder.bert.hidden_size is -1: must be at least 1");
        let mut c = EncoderConfig::tiny(40);
        c.max_seq_length = 65;
        assert!(c.check(path, "encoder.", None).unwrap_err().to_string().contains("encoder.max_seq_length 65 must be within 2..=64"));
        let mut c = EncoderConfig::tiny(40);
        c.pooling = PoolingConfig { mean: false, ..PoolingConfig::MEAN };
        assert!(c.check(path, "encoder.", None).unwrap_err().to_string().contains("encoder.pooling: no pooling mode"));
    }

    #[test]
    fn model_paths_that_are_not_folders_say_what_they_are() {
        let d = tempfile::tempdir().unwrap();
        let file = d.path().join("file");
        std::fs::write(&file, "x").unwrap();
        let err = |p: &Path| ModelFiles::locate(p).unwrap_err().to_string();
        assert_eq!(err(&file), format!("model folder {}: is a regular file, not a directory", file.display()));
        assert_eq!(err(Path::new("/dev/null")), "model folder /dev/null: is a character device, not a directory");
        let l = d.path().join("loop");
        std::os::unix::fs::symlink(&l, &l).unwrap();
        assert!(err(&l).ends_with("loop: is a symlink loop (too many levels of symbolic links)"), "{}", err(&l));
        let missing = d.path().join("none");
        assert!(err(&missing).starts_with(&format!("model folder {}: missing the folder itself (it does not exist)", missing.display())));
        // A file of the folder that is something else.
        let m = folder(d.path(), |_| {});
        std::fs::remove_file(m.join("vocab.txt")).unwrap();
        std::fs::create_dir(m.join("vocab.txt")).unwrap();
        assert_eq!(err(&m), format!("model file {}: is a directory, not a file", m.join("vocab.txt").display()));
        std::fs::remove_dir(m.join("vocab.txt")).unwrap();
        assert!(err(&m).contains("missing vocab.txt"));
    }
}

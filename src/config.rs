//! Owns a sentence-transformers folder's settings: which files it has, the BERT, tokenizer and
//! pooling configuration read from them, and the tiny preset used in tests.
//!
//! A folder holds `config.json` (the Hugging Face BERT config), the weights (`model.safetensors`
//! or rust-bert's `rust_model.ot`), `vocab.txt`, `tokenizer_config.json`,
//! `sentence_bert_config.json`, `modules.json` and the pooling module's `config.json`
//! (`1_Pooling/config.json` for all-MiniLM-L6-v2).

use crate::error::{Error, Result};
use rust_bert::bert::BertConfig;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Default model folder, relative to the working directory (scripts/setup.sh installs it there).
pub const DEFAULT_MODEL_DIR: &str = "models/all-MiniLM-L6-v2";

/// Which token vectors make the sentence vector; several modes are concatenated in the order
/// cls, max, mean, mean_sqrt_len, as sentence-transformers' `Pooling` does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PoolingConfig {
    #[serde(rename = "pooling_mode_cls_token", default)]
    pub cls: bool,
    #[serde(rename = "pooling_mode_max_tokens", default)]
    pub max: bool,
    #[serde(rename = "pooling_mode_mean_tokens", default)]
    pub mean: bool,
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
    #[serde(default = "yes")]
    pub do_lower_case: bool,
    /// `None` follows `do_lower_case`, as in Hugging Face's BERT tokenizer.
    #[serde(default)]
    pub strip_accents: Option<bool>,
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
    pub bert: BertConfig,
    pub tokenizer: TokenizerConfig,
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
}

/// The files of a sentence-transformers model folder, checked to exist.
#[derive(Debug, Clone)]
pub struct ModelFiles {
    pub dir: PathBuf,
    pub config: PathBuf,
    pub weights: PathBuf,
    pub vocab: PathBuf,
    pub tokenizer_config: PathBuf,
    pub sentence_bert_config: PathBuf,
    pub modules: PathBuf,
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
    /// Checks that `dir` is a complete sentence-transformers folder; names the first missing file.
    pub fn locate(dir: impl AsRef<Path>) -> Result<Self> {
        let dir = dir.as_ref().to_path_buf();
        let missing = |file: &str| Error::MissingModelFile { dir: dir.clone(), file: file.to_string() };
        if !dir.is_dir() {
            return Err(missing("the folder itself"));
        }
        let need = |name: &str| -> Result<PathBuf> {
            let p = dir.join(name);
            if p.is_file() {
                Ok(p)
            } else {
                Err(missing(name))
            }
        };
        let config = need("config.json")?;
        let weights = ["model.safetensors", "rust_model.ot"]
            .iter()
            .map(|f| dir.join(f))
            .find(|p| p.is_file())
            .ok_or_else(|| missing("model.safetensors (or rust_model.ot)"))?;
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

    /// Reads and validates the configuration files.
    pub fn encoder_config(&self) -> Result<EncoderConfig> {
        let bert: BertConfig = read_json(&self.config)?;
        if bert.hidden_size % bert.num_attention_heads != 0 {
            return Err(Error::config(&self.config, "hidden_size is not a multiple of num_attention_heads"));
        }
        if bert.is_decoder == Some(true) {
            return Err(Error::config(&self.config, "is_decoder=true: a sentence encoder must be a BERT encoder"));
        }
        let tokenizer: TokenizerConfig = read_json(&self.tokenizer_config)?;
        let pooling: PoolingConfig = read_json(&self.pooling_config)?;
        if pooling.n_modes() == 0 {
            return Err(Error::config(&self.pooling_config, "no pooling mode is enabled"));
        }
        let sbert: SentenceBertConfig = read_json(&self.sentence_bert_config)?;
        let max_seq_length = sbert.max_seq_length.unwrap_or(bert.max_position_embeddings as usize);
        if max_seq_length < 2 || max_seq_length as i64 > bert.max_position_embeddings {
            return Err(Error::config(
                &self.sentence_bert_config,
                format!("max_seq_length {max_seq_length} must be within 2..={}", bert.max_position_embeddings),
            ));
        }
        let entries: Vec<ModuleEntry> = read_json(&self.modules)?;
        let normalize = entries.iter().any(|m| m.kind.ends_with(".Normalize"));
        Ok(EncoderConfig { bert, tokenizer, pooling, max_seq_length, normalize })
    }
}

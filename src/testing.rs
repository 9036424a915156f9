//! Owns test fixtures: a complete tiny sentence-transformers folder with random weights, so fast
//! tests exercise the real loading path without the real model.

use crate::config::EncoderConfig;
use crate::embed::SentenceEncoder;
use crate::error::{Error, Result};
use crate::tokenizer::SentenceTokenizer;
use std::path::Path;
use tch::Device;

/// Words of the tiny vocabulary (after the special tokens and the letters a-z).
pub const TINY_WORDS: &[&str] = &[
    "the", "a", "is", "what", "who", "where", "how", "many", "good", "bad", "great", "awful", "movie", "film",
    "city", "name", "i", "love", "hate", "it", "this", "was", "not", "very", "fun", "boring", "?", ".", "!", ",",
    "##s", "##ing", "##ed",
];

fn tiny_vocab() -> Vec<String> {
    let mut v: Vec<String> = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"].iter().map(|s| s.to_string()).collect();
    v.extend(('a'..='z').map(|c| c.to_string()));
    v.extend(TINY_WORDS.iter().map(|s| s.to_string()));
    v
}

/// Writes a complete sentence-transformers folder for [`EncoderConfig::tiny`] into `dir`, with
/// weights drawn after `tch::manual_seed(seed)`. Returns the config.
pub fn write_tiny_model_folder(dir: &Path, seed: i64) -> Result<EncoderConfig> {
    write_tiny_model_folder_with(dir, seed, |_| {})
}

/// [`write_tiny_model_folder`] with `n_layers` transformer layers.
pub fn write_tiny_model_folder_with_layers(dir: &Path, seed: i64, n_layers: i64) -> Result<EncoderConfig> {
    write_tiny_model_folder_with(dir, seed, |c| c.bert.num_hidden_layers = n_layers)
}

/// [`write_tiny_model_folder`] with `adjust` applied to its config (two layers, 10% dropout)
/// before the weights are drawn: more layers, no dropout, ...
pub fn write_tiny_model_folder_with(dir: &Path, seed: i64, adjust: impl FnOnce(&mut EncoderConfig)) -> Result<EncoderConfig> {
    let io = |p: &Path, e| Error::io(p, e);
    std::fs::create_dir_all(dir.join("1_Pooling")).map_err(|e| io(dir, e))?;
    let vocab = tiny_vocab();
    let mut cfg = EncoderConfig::tiny(vocab.len() as i64);
    adjust(&mut cfg);
    let write = |name: &str, text: String| -> Result<()> {
        let p = dir.join(name);
        std::fs::write(&p, text).map_err(|e| io(&p, e))
    };
    write("vocab.txt", vocab.join("\n") + "\n")?;
    write("config.json", serde_json::to_string_pretty(&cfg.bert).expect("config serialises"))?;
    write("tokenizer_config.json", r#"{"do_lower_case": true, "strip_accents": null, "tokenize_chinese_chars": true}"#.into())?;
    write("sentence_bert_config.json", format!(r#"{{"max_seq_length": {}, "do_lower_case": false}}"#, cfg.max_seq_length))?;
    write(
        "modules.json",
        r#"[{"idx":0,"name":"0","path":"","type":"sentence_transformers.models.Transformer"},
{"idx":1,"name":"1","path":"1_Pooling","type":"sentence_transformers.models.Pooling"},
{"idx":2,"name":"2","path":"2_Normalize","type":"sentence_transformers.models.Normalize"}]"#
            .into(),
    )?;
    write(
        "1_Pooling/config.json",
        format!(
            r#"{{"word_embedding_dimension": {}, "pooling_mode_cls_token": false, "pooling_mode_mean_tokens": true, "pooling_mode_max_tokens": false, "pooling_mode_mean_sqrt_len_tokens": false}}"#,
            cfg.bert.hidden_size
        ),
    )?;
    tch::manual_seed(seed);
    let tok = SentenceTokenizer::from_vocab(&dir.join("vocab.txt"), &cfg.tokenizer, cfg.max_seq_length)?;
    let enc = SentenceEncoder::random(&cfg, tok, Device::Cpu);
    enc.params.save(&dir.join("model.safetensors"))?;
    Ok(cfg)
}

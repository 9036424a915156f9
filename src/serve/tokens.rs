//! Request-side tokenization: the handlers turn texts into token ids (on tokio's blocking pool),
//! so that the model thread only pads and runs batches, and so that a text over the model's
//! limit can be refused (`"truncate": false`) and usage counted before any model time is spent.

use super::*;
use rust_tokenizers::vocab::{BertVocab, Vocab};

/// The served model's tokenizer, twice: without a length limit (to count a text's tokens) and
/// truncating to `max_seq_length` exactly as the model's own tokenizer does; and its vocabulary
/// (token texts for `/tokenize`).
pub(super) struct RequestTokenizer {
    full: SentenceTokenizer,
    cut: SentenceTokenizer,
    vocab: BertVocab,
    max_len: usize,
}

impl RequestTokenizer {
    /// The tokenizer of `engine`'s model, read again from its vocabulary.
    pub(super) fn of(engine: &Engine) -> Result<RequestTokenizer> {
        let tok = engine.tokenizer();
        let cfg = match engine {
            Engine::Base(e) => e.config().tokenizer.clone(),
            Engine::Multi(c) => c.model.config.encoder.tokenizer.clone(),
        };
        let path = tok.vocab_path().to_path_buf();
        let max_len = tok.max_len();
        let vocab = BertVocab::from_file(&path).map_err(|e| crate::error::Error::config(&path, format!("cannot read vocabulary: {e}")))?;
        Ok(RequestTokenizer {
            full: SentenceTokenizer::from_vocab(&path, &cfg, usize::MAX)?,
            cut: SentenceTokenizer::from_vocab(&path, &cfg, max_len)?,
            vocab,
            max_len,
        })
    }

    /// The model's limit in tokens (`[CLS]` and `[SEP]` included).
    pub(super) fn max_len(&self) -> usize {
        self.max_len
    }

    /// Each text's ids (`[CLS] ... [SEP]`): truncated to the model's limit when `truncate`, else a
    /// text over it is a 413 that names its index (`field[i]`).
    pub(super) fn encode(&self, texts: &[String], truncate: bool, field: &str) -> std::result::Result<Vec<Vec<i64>>, ApiError> {
        let mut out = Vec::with_capacity(texts.len());
        for (i, t) in texts.iter().enumerate() {
            let ids = self.full.encode(t);
            if ids.len() <= self.max_len {
                out.push(ids);
            } else if truncate {
                out.push(self.cut.encode(t));
            } else {
                return Err(ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format!(
                        "{field}[{i}] is {} tokens long: the model takes at most {} (max_seq_length); send it shorter, or with \"truncate\": true",
                        ids.len(),
                        self.max_len
                    ),
                ));
            }
        }
        Ok(out)
    }

    /// A token id's text in the vocabulary.
    pub(super) fn token_text(&self, id: i64) -> String {
        self.vocab.id_to_token(&id)
    }
}

/// Standard base64 (RFC 4648, with padding) of `bytes`.
pub fn base64(bytes: &[u8]) -> String {
    const ABC: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for c in bytes.chunks(3) {
        let n = (u32::from(c[0]) << 16) | (u32::from(*c.get(1).unwrap_or(&0)) << 8) | u32::from(*c.get(2).unwrap_or(&0));
        for k in 0..4 {
            if k <= c.len() {
                out.push(ABC[((n >> (18 - 6 * k)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// A vector as OpenAI's `encoding_format: "base64"` sends it: its little-endian f32 bytes in
/// standard base64.
pub fn f32_base64(v: &[f32]) -> String {
    let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
    base64(&bytes)
}

/// Keeps the first `n` components of `v` (Matryoshka truncation) and, when `normalize`,
/// L2-normalises the rest again.
pub fn shorten(v: &mut Vec<f32>, n: usize, normalize: bool) {
    v.truncate(n);
    if normalize {
        let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        if norm > 0.0 {
            v.iter_mut().for_each(|x| *x /= norm);
        }
    }
}

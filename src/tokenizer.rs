//! Owns text-to-token-ids: WordPiece tokenization with `rust_tokenizers`' `BertTokenizer`, set up as the model folder's
//! `tokenizer_config.json` says, truncating to `max_seq_length` with `[CLS]`/`[SEP]` kept.

use crate::config::TokenizerConfig;
use crate::error::{Error, Result};
use rust_tokenizers::tokenizer::{BertTokenizer, Tokenizer, TruncationStrategy};
use rust_tokenizers::vocab::{BertVocab, Vocab};
use std::path::{Path, PathBuf};

/// A BERT tokenizer bound to a maximum sequence length.
pub struct SentenceTokenizer {
    inner: BertTokenizer,
    max_len: usize,
    pad_id: i64,
    vocab_path: PathBuf,
}

impl SentenceTokenizer {
    /// Reads `vocab.txt` and applies the lower-casing / accent-stripping settings.
    pub fn from_vocab(vocab_path: &Path, cfg: &TokenizerConfig, max_len: usize) -> Result<Self> {
        let vocab = BertVocab::from_file(vocab_path)
            .map_err(|e| Error::config(vocab_path, format!("cannot read vocabulary: {e}")))?;
        let pad_id = vocab.token_to_id(vocab.get_pad_value());
        for special in [vocab.get_cls_value(), vocab.get_sep_value(), vocab.get_unknown_value()] {
            if !vocab.values().contains_key(special) {
                return Err(Error::config(vocab_path, format!("vocabulary lacks the special token {special}")));
            }
        }
        let inner = BertTokenizer::from_existing_vocab(vocab, cfg.do_lower_case, cfg.strips_accents());
        Ok(SentenceTokenizer { inner, max_len, pad_id, vocab_path: vocab_path.to_path_buf() })
    }

    /// Token ids of one text: `[CLS] ... [SEP]`, at most `max_len` of them.
    pub fn encode(&self, text: &str) -> Vec<i64> {
        self.inner.encode(text, None, self.max_len, &TruncationStrategy::LongestFirst, 0).token_ids
    }

    /// Token ids of many texts, in order.
    pub fn encode_all<S: AsRef<str>>(&self, texts: &[S]) -> Vec<Vec<i64>> {
        texts.iter().map(|t| self.encode(t.as_ref())).collect()
    }

    /// The `[PAD]` id used for padding batches.
    pub fn pad_id(&self) -> i64 {
        self.pad_id
    }

    /// The `vocab.txt` this tokenizer was read from (copied into checkpoints).
    pub fn vocab_path(&self) -> &Path {
        &self.vocab_path
    }

    /// The truncation length.
    pub fn max_len(&self) -> usize {
        self.max_len
    }
}

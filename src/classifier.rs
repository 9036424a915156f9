//! Owns the multi-task text-in front: [`Classifier`] = tokenizer + [`MultiTask`]. Builds one from
//! a base sentence-transformers folder (fresh heads) or loads a checkpoint folder, saves the
//! checkpoint with its vocabulary, and turns texts into both tasks' probabilities.

use crate::config::ModelFiles;
use crate::data::{self, Example, Source};
use crate::task::{TaskInfo, TASK_A, TASK_B};
use crate::error::{Error, Result};
use crate::fsutil::write_atomic;
use crate::infer::{self, Batching};
use crate::model::MultiTask;
use crate::params::LoadReport;
use crate::tokenizer::SentenceTokenizer;
use std::path::Path;
use tch::{Device, Tensor};

pub use crate::model::multitask::VOCAB_FILE;

/// A tokenizer plus the multi-task model.
pub struct Classifier {
    /// The WordPiece tokenizer of the model's vocabulary, truncating to its `max_seq_length`.
    pub tokenizer: SentenceTokenizer,
    /// The encoder, every head and their configuration (labels, pooling, dropout).
    pub model: MultiTask,
}

impl Classifier {
    /// The encoder of the sentence-transformers folder `dir` with freshly initialised heads for
    /// `labels_a` / `labels_b` (draws from libtorch's generator: seed it first).
    pub fn from_base(dir: &Path, tasks: Vec<TaskInfo>, head_dropout: f64, device: Device) -> Result<(Self, LoadReport)> {
        let files = ModelFiles::locate(dir)?;
        let config = files.encoder_config()?;
        let tokenizer = SentenceTokenizer::from_vocab(&files.vocab, &config.tokenizer, config.max_seq_length)?;
        let model = MultiTask::new(&config, tasks, head_dropout, device)?;
        let report = model.load_encoder_weights(&files.weights)?;
        Ok((Classifier { tokenizer, model }, report))
    }

    /// Loads a checkpoint folder (see [`MultiTask::is_checkpoint`]).
    pub fn load(dir: &Path, device: Device) -> Result<(Self, LoadReport)> {
        let (model, report) = MultiTask::load(dir, device)?;
        let enc = &model.config.encoder;
        let tokenizer = SentenceTokenizer::from_vocab(&dir.join(VOCAB_FILE), &enc.tokenizer, enc.max_seq_length)?;
        Ok((Classifier { tokenizer, model }, report))
    }

    /// Switches the encoder to `precision` for inference (see [`crate::model::Encoder::set_precision`]).
    pub fn set_precision(&mut self, precision: crate::precision::Precision) -> Result<()> {
        self.model.set_precision(precision, &self.tokenizer)
    }

    /// Writes the model (`model.safetensors`, `config.json`) and `vocab.txt` into `dir`.
    pub fn save(&self, dir: &Path) -> Result<()> {
        self.model.save(dir)?;
        let dst = dir.join(VOCAB_FILE);
        let src = self.tokenizer.vocab_path();
        let same = matches!((src.canonicalize(), dst.canonicalize()), (Ok(a), Ok(b)) if a == b);
        if !same {
            let vocab = std::fs::read(src).map_err(|e| Error::io(src, e))?;
            write_atomic(&dst, &vocab)?;
        }
        Ok(())
    }

    /// The rows of labelled files as examples: tokenized, labels mapped to this model's indices
    /// (a label the model does not know is an error naming the file and line).
    pub fn examples(&self, sources: &[Source]) -> Result<Vec<Example>> {
        let c = &self.model.config;
        let slot = |name: &'static str| c.task(name).map(|(t, info)| (t, name, &info.labels));
        data::examples(sources, data::Slots { a: slot(TASK_A), b: slot(TASK_B) }, c.tasks.len(), &self.tokenizer)
    }

    /// Every one-text classification head's class probabilities for `texts` (`[n, k]`, rows in
    /// input order), keyed by task name in task order.
    pub fn probabilities<S: AsRef<str>>(&self, texts: &[S], batching: Batching) -> Result<Vec<(String, Tensor)>> {
        let p = infer::probabilities(&self.model, &self.tokenizer.encode_all(texts), batching)?;
        Ok(p.into_iter().map(|(t, p)| (self.model.tasks()[t].name.clone(), p)).collect())
    }
}

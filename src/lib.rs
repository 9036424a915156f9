//! multi-task-transformer: sentence embeddings and multi-task sentence classification on
//! all-MiniLM-L6-v2, in Rust on libtorch (`tch`) with rust-bert's BERT blocks.
//!
//! # A quick tour
//!
//! Embeddings (Task 1): one 384-d vector per text, equal to Python sentence-transformers'.
//!
//! ```no_run
//! use multi_task_transformer::{EncodeOptions, SentenceEncoder};
//! # fn main() -> multi_task_transformer::Result<()> {
//! let (encoder, _) = SentenceEncoder::load("models/all-MiniLM-L6-v2".as_ref(), tch::Device::Cpu)?;
//! let vectors = encoder.encode(&["How far is the moon?"], EncodeOptions { normalize: true, ..Default::default() })?;
//! assert_eq!(vectors.size(), [1, 384]);
//! # Ok(()) }
//! ```
//!
//! Training the two heads on the shared encoder (Tasks 2-4), with layer-wise learning rates:
//!
//! ```no_run
//! use multi_task_transformer::train::{train, Progress, TrainConfig};
//! # fn main() -> multi_task_transformer::Result<()> {
//! let mut cfg = TrainConfig::new("models/all-MiniLM-L6-v2".into(), "runs/mine".into());
//! cfg.data.task_a = Some("data/trec6/train.tsv".into());
//! cfg.data.task_b = Some("data/sst5_3class/train.tsv".into());
//! cfg.data.dev_a = Some("data/trec6/dev.tsv".into());
//! cfg.data.dev_b = Some("data/sst5_3class/dev.tsv".into());
//! let outcome = train(&cfg, Progress::Off, &mut |line: &str| println!("{line}"))?;
//! println!("{:?}", outcome.metrics.epochs.last().map(|e| &e.dev));
//! # Ok(()) }
//! ```
//!
//! Predicting with the checkpoint a run wrote:
//!
//! ```no_run
//! use multi_task_transformer::{infer::Batching, Classifier};
//! # fn main() -> multi_task_transformer::Result<()> {
//! let (clf, _) = Classifier::load("runs/mine".as_ref(), tch::Device::Cpu)?;
//! // One `[n, k]` tensor per classification head: ("task_a", ...), ("task_b", ...).
//! let heads = clf.probabilities(&["Who wrote Hamlet?"], Batching::fixed(32, clf.tokenizer.pad_id()))?;
//! # Ok(()) }
//! ```
//!
//! Runnable versions: `cargo run --example embed`, `--example train_two_heads`, `--example
//! predict`. The command line (`mtt`, `task1`..`task4`) is [`cli`] on top of this library.
//!
//! # Layers
//!
//! Modules, lowest first (a module imports only modules above it in this list):
//!
//! * [`error`], [`fsutil`], [`torch_version`], [`device`]: errors that name files and lines
//!   (and say what a path is); atomic writes, SHA-256 checksums and keys, and the output-folder
//!   check; libtorch's version; device and thread selection.
//! * [`config`], [`tokenizer`]: a sentence-transformers folder's settings; WordPiece tokenization.
//! * [`textio`]: texts one per line (what `embed` and `predict` read).
//! * [`data`], [`metrics`]: labelled TSV/CSV/JSONL files, label sets, examples; accuracy and F1.
//! * [`params`]: the model's parameters as named subsets, one `VarStore` each (freezing by
//!   prefix, loading, saving under the seed's PyTorch names).
//! * [`task`]: what a task is (name, kind, files) and how users name tasks (`--task`, tasks files).
//! * [`padding`]: dynamic padding and length-sorted, token-budgeted inference batches.
//! * [`precision`]: inference precision modes (fp32, int8 linear layers, bf16).
//! * [`model`]: tensors in, tensors out: the encoder, pooling, and [`model::MultiTask`], which
//!   owns its parameters, one head per classification task and the checkpoint format.
//! * [`batch`], [`infer`]: training batches (task sampling, bucketing); the one
//!   batched-inference loop (embeddings, probabilities, evaluation).
//! * [`embed::SentenceEncoder`], [`classifier::Classifier`]: the text-in fronts (tokenizer plus
//!   encoder; tokenizer plus multi-task model).
//! * [`similarity`]: scored sentence pairs (STS-B) and how well an encoder's cosines rank them.
//! * [`export`]: a checkpoint as a sentence-transformers folder for Python, and back.
//! * [`cache`]: a frozen encoder's pooled vectors, computed once (in memory or on disk).
//! * [`freeze`], [`optim`], [`train`]: Task 3's scenarios, Task 4's per-subset optimizers and
//!   schedule, and the training run (its output folder, its state for resuming, stop requests).
//! * [`plot`], [`experiment`]: PNG charts; grids of training runs over seeds, the tuned-recipe
//!   searches and the results page.
//! * [`serve`]: `mtt serve`, the model behind HTTP (routes, request limits, the batching model
//!   thread, Prometheus metrics).
//! * [`cli`]: the binaries' layer (clap arguments, command bodies); the only module that prints.
//! * [`testing`]: tiny random models for tests (hidden from the documentation).

#![warn(missing_docs)]

pub mod batch;
pub mod cache;
pub mod classifier;
pub mod cli;
pub mod config;
pub mod data;
pub mod device;
pub mod embed;
pub mod error;
pub mod experiment;
pub mod export;
pub mod freeze;
pub mod fsutil;
pub mod infer;
pub mod metrics;
pub mod model;
pub mod plot;
pub mod optim;
pub mod padding;
pub mod params;
pub mod precision;
pub mod serve;
pub mod similarity;
pub mod task;
#[doc(hidden)]
pub mod testing;
pub mod textio;
pub mod tokenizer;
/// libtorch's version, read from its folder (shared with `build.rs`, which includes the file).
pub mod torch_version;
pub mod train;

pub use classifier::Classifier;
pub use config::{EncoderConfig, ModelFiles, PoolingConfig};
pub use embed::{EncodeOptions, SentenceEncoder};
pub use error::{Error, Result};
pub use params::Params;

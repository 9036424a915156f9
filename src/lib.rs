//! multi-task-transformer: sentence embeddings and multi-task sentence classification on
//! all-MiniLM-L6-v2, in Rust on libtorch (`tch`) with rust-bert's BERT blocks.
//!
//! Modules, lowest first (a module imports only modules above it in this list):
//!
//! * [`error`], [`fsutil`], [`device`]: errors that name files and lines; atomic writes and the
//!   output-folder check; device and thread selection.
//! * [`config`], [`tokenizer`]: a sentence-transformers folder's settings; WordPiece tokenization.
//! * [`data`], [`metrics`]: labelled TSV/CSV/JSONL files, label sets, examples; accuracy and F1.
//! * [`params`]: the model's parameters as named subsets, one `VarStore` each (freezing by
//!   prefix, loading, saving under the seed's PyTorch names).
//! * [`precision`]: inference precision modes (fp32, int8 linear layers, bf16).
//! * [`model`]: tensors in, tensors out: the encoder, pooling, and [`model::MultiTask`], which
//!   owns its parameters, both heads and the checkpoint format.
//! * [`batch`], [`infer`]: padding and batching; the one batched-inference loop (embeddings,
//!   probabilities, evaluation).
//! * [`embed::SentenceEncoder`], [`classifier::Classifier`]: the text-in fronts (tokenizer plus
//!   encoder; tokenizer plus multi-task model).
//! * [`export`]: a checkpoint as a sentence-transformers folder for Python, and back.
//! * [`cache`]: a frozen encoder's pooled vectors, computed once (in memory or on disk).
//! * [`freeze`], [`optim`]: Task 3's scenarios; Task 4's per-subset optimizers and schedule.
//! * [`signals`], [`resume`], [`output`], [`train`]: stop signals; a run's state for `--resume`;
//!   the output folder's rules and lock; the training run.
//! * [`plot`], [`experiment`]: PNG charts; grids of training runs over seeds, the tuned-recipe
//!   searches and the results page.
//! * [`serve`]: `mtt serve`, the model behind HTTP (routes, request limits, the batching model
//!   thread, Prometheus metrics).
//! * [`cli`]: the binaries' layer (clap arguments, command bodies); the only module that prints.

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
pub mod output;
pub mod params;
pub mod precision;
pub mod resume;
pub mod serve;
pub mod signals;
#[doc(hidden)]
pub mod testing;
pub mod textio;
pub mod tokenizer;
mod torch_version;
pub mod train;

pub use classifier::Classifier;
pub use config::{EncoderConfig, ModelFiles, PoolingConfig};
pub use embed::{EncodeOptions, SentenceEncoder};
pub use error::{Error, Result};
pub use params::Params;

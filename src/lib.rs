//! multi-task-transformer: sentence embeddings and multi-task sentence classification on
//! all-MiniLM-L6-v2, in Rust on libtorch (`tch`) with rust-bert's BERT blocks.
//!
//! * [`embed::SentenceEncoder`]: Task 1, sentence-transformers-identical embeddings.
//! * [`params::Params`]: the model's named parameter subsets, one `VarStore` each, for freezing,
//!   per-subset optimizers and checkpoints under the seed's PyTorch names.

pub mod batch;
pub mod config;
pub mod device;
pub mod embed;
pub mod error;
pub mod model;
pub mod params;
pub mod textio;
pub mod tokenizer;

pub use config::{EncoderConfig, ModelFiles, PoolingConfig};
pub use embed::{EncodeOptions, SentenceEncoder};
pub use error::{Error, Result};
pub use params::Params;
pub mod cli;
#[doc(hidden)]
pub mod testing;
pub mod data;
pub mod metrics;
pub mod optim;
pub mod train;

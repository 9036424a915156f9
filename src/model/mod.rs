//! Model pieces: the BERT encoder, pooling, and the multi-task model on top.

pub mod encoder;
pub mod layer;
pub mod pooling;

pub use encoder::Encoder;
pub mod multitask;

pub use multitask::{Logits, MultiTask, MultiTaskConfig};

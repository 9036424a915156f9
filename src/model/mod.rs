//! Owns the network itself, tensors in and tensors out: the BERT encoder and its layers, pooling,
//! and the multi-task model on top. Nothing here tokenizes text or reads data files.

pub mod calibration;
pub mod encoder;
pub mod layer;
pub mod multitask;
pub mod pooling;

pub use encoder::Encoder;
pub use multitask::{MultiTask, MultiTaskConfig};

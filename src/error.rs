//! Owns the library's error type: every variant names the file, line, field or tensor it is
//! about. No variant both prints a wrapped error and reports it as its source, so `anyhow`'s
//! `Caused by:` never repeats a message.

use std::path::PathBuf;

/// Errors from loading models, reading data, training and inference.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A required file of a model folder is absent.
    #[error("model folder {}: missing {file}. Run scripts/setup.sh to install all-MiniLM-L6-v2 into models/, or pass --model DIR with a complete sentence-transformers folder", dir.display())]
    MissingModelFile { dir: PathBuf, file: String },
    /// A file could not be read or written.
    #[error("{}: {err}", path.display())]
    Io { path: PathBuf, err: std::io::Error },
    /// A configuration file is malformed or holds an unsupported value.
    #[error("{}: {msg}", path.display())]
    Config { path: PathBuf, msg: String },
    /// A data file has a bad row; `line` counts from 1 and includes any header.
    #[error("{}:{line}: {msg}", path.display())]
    Data { path: PathBuf, line: usize, msg: String },
    /// A weights file does not fit the model.
    #[error("{}: {msg}", path.display())]
    Weights { path: PathBuf, msg: String },
    /// An argument or request that cannot be served (bad device, unknown prefix, ...).
    #[error("{0}")]
    Invalid(String),
    /// Training hit a NaN or infinite loss.
    #[error("{0}")]
    NonFinite(String),
    /// A stop signal ended training after a step; the run's state is in `out/resume/`.
    #[error("interrupted after optimizer step {step} (epoch {epoch}, batch {batch}/{batches}): the checkpoint and its training state are saved; continue with: mtt train --resume {}", out.display())]
    Interrupted { out: PathBuf, step: usize, epoch: usize, batch: usize, batches: usize },
    #[error("libtorch: {0}")]
    Tch(tch::TchError),
    #[error("rust-bert: {0}")]
    RustBert(rust_bert::RustBertError),
    #[error("tokenizer: {0}")]
    Tokenizer(rust_tokenizers::error::TokenizerError),
}

impl From<tch::TchError> for Error {
    fn from(e: tch::TchError) -> Self {
        Error::Tch(e)
    }
}

impl From<rust_bert::RustBertError> for Error {
    fn from(e: rust_bert::RustBertError) -> Self {
        Error::RustBert(e)
    }
}

impl From<rust_tokenizers::error::TokenizerError> for Error {
    fn from(e: rust_tokenizers::error::TokenizerError) -> Self {
        Error::Tokenizer(e)
    }
}

/// The library's result type.
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>, err: std::io::Error) -> Self {
        Error::Io { path: path.into(), err }
    }
    pub(crate) fn config(path: impl Into<PathBuf>, msg: impl Into<String>) -> Self {
        Error::Config { path: path.into(), msg: msg.into() }
    }
    pub(crate) fn data(path: impl Into<PathBuf>, line: usize, msg: impl Into<String>) -> Self {
        Error::Data { path: path.into(), line, msg: msg.into() }
    }
}

/// Shorthand for [`Error::Invalid`].
pub(crate) fn invalid(msg: impl Into<String>) -> Error {
    Error::Invalid(msg.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_message_is_repeated_as_its_own_cause() {
        let e = anyhow::Error::from(Error::io("out/model.safetensors", std::io::Error::other("File exists")));
        let shown = format!("{e:?}");
        assert_eq!(shown.matches("File exists").count(), 1, "{shown}");
        let e = anyhow::Error::from(Error::from(tch::TchError::Kind("bad kind".into())));
        assert_eq!(format!("{e:?}").matches("bad kind").count(), 1);
    }
}

//! Owns the library's error type: every variant names the file, line, field or tensor it is
//! about. No variant both prints a wrapped error and reports it as its source, so `anyhow`'s
//! `Caused by:` never repeats a message.
//!
//! Also owns [`PathKind`], what a path turned out to be (a directory, a device, a symlink loop,
//! ...), and the checks the readers make with it before opening a model folder, a data file or
//! an input of texts, so that a wrong path is reported as what it is.

use std::path::{Path, PathBuf};

/// Errors from loading models, reading data, training and inference.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A required file of a model folder is absent.
    #[error("model folder {}: missing {file}. Run scripts/setup.sh to install all-MiniLM-L6-v2 into models/, or give `model` a complete sentence-transformers folder", dir.display())]
    MissingModelFile {
        /// The model folder that was searched.
        dir: PathBuf,
        /// The missing file's name inside `dir` (or a description, such as the folder itself).
        file: String,
    },
    /// A file could not be read or written.
    #[error("{}: {err}", path.display())]
    Io {
        /// The file or folder being read or written.
        path: PathBuf,
        /// The operating system's error.
        err: std::io::Error,
    },
    /// A configuration file is malformed or holds an unsupported value.
    #[error("{}: {msg}", path.display())]
    Config {
        /// The configuration file.
        path: PathBuf,
        /// What is wrong with it.
        msg: String,
    },
    /// A data file has a bad row; `line` counts from 1 and includes any header.
    #[error("{}:{line}: {msg}", path.display())]
    Data {
        /// The data file.
        path: PathBuf,
        /// The bad row's line number, from 1 (a header counts as line 1).
        line: usize,
        /// What is wrong with the row.
        msg: String,
    },
    /// A weights file does not fit the model.
    #[error("{}: {msg}", path.display())]
    Weights {
        /// The weights (or optimizer state) file.
        path: PathBuf,
        /// What does not fit: a missing or misshapen tensor, a checksum mismatch, a read error.
        msg: String,
    },
    /// A path is not the kind of thing expected there: `what` names its role ("data file",
    /// "model folder", ...), `is` says what it is instead ("is a directory", ...).
    #[error("{what} {}: {is}", path.display())]
    Unusable {
        /// The path's role ("data file", "model folder", "input", ...).
        what: &'static str,
        /// The path as given.
        path: PathBuf,
        /// What it is instead, as a predicate ("is a directory, not a file", "does not exist", ...).
        is: String,
    },
    /// An argument or request that cannot be served (bad device, unknown prefix, ...).
    #[error("{0}")]
    Invalid(String),
    /// Training hit a NaN or infinite loss.
    #[error("{0}")]
    NonFinite(String),
    /// A stop signal ended training after a step; the run's state is in `out/resume/`.
    #[error("interrupted after optimizer step {step} (epoch {epoch}, batch {batch}/{batches}): the checkpoint and its training state are saved in {}: continue the run from there (`resume`)", out.display())]
    Interrupted {
        /// The run's output folder (the one to pass to `mtt train --resume`).
        out: PathBuf,
        /// Optimizer steps taken in the whole run, up to and including the last one before the stop.
        step: usize,
        /// The interrupted epoch, counted from 1.
        epoch: usize,
        /// Batches of that epoch done, the last one included (from 1 to `batches`).
        batch: usize,
        /// Batches in that epoch.
        batches: usize,
    },
    /// An error from libtorch (through `tch`): a tensor operation, a device, a file it read.
    #[error("libtorch: {0}")]
    Tch(tch::TchError),
    /// An error from rust-bert, while building or loading the BERT blocks.
    #[error("rust-bert: {0}")]
    RustBert(rust_bert::RustBertError),
    /// An error from the WordPiece tokenizer (for instance an unreadable vocabulary).
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

/// What a path is, found without opening it (symbolic links followed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathKind {
    /// An ordinary file.
    RegularFile,
    /// A directory.
    Directory,
    /// A named pipe (also what `<(command)` gives a program).
    Fifo,
    /// `/dev/null`, a terminal, ...
    CharDevice,
    /// A disk or partition (`/dev/sda`, ...).
    BlockDevice,
    /// A Unix domain socket.
    Socket,
    /// Nothing at that path.
    Missing,
    /// A symbolic link whose target does not exist.
    DanglingSymlink,
    /// Symbolic links that lead back to themselves (ELOOP).
    SymlinkLoop,
    /// The path could not be examined (for instance a folder on the way is not readable).
    Unknown(String),
}

impl PathKind {
    /// What `path` is.
    pub fn of(path: &Path) -> PathKind {
        match std::fs::metadata(path) {
            Ok(m) => {
                let t = m.file_type();
                if t.is_file() {
                    return PathKind::RegularFile;
                }
                if t.is_dir() {
                    return PathKind::Directory;
                }
                #[cfg(unix)]
                {
                    use std::os::unix::fs::FileTypeExt;
                    if t.is_fifo() {
                        return PathKind::Fifo;
                    }
                    if t.is_char_device() {
                        return PathKind::CharDevice;
                    }
                    if t.is_block_device() {
                        return PathKind::BlockDevice;
                    }
                    if t.is_socket() {
                        return PathKind::Socket;
                    }
                }
                PathKind::Unknown("of an unknown file type".into())
            }
            #[cfg(unix)]
            Err(e) if e.raw_os_error() == Some(libc::ELOOP) => PathKind::SymlinkLoop,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                if std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink()) {
                    PathKind::DanglingSymlink
                } else {
                    PathKind::Missing
                }
            }
            Err(e) => PathKind::Unknown(e.to_string()),
        }
    }

    /// A noun phrase for the kinds that exist ("a directory", "a character device", ...).
    fn noun(&self) -> &'static str {
        match self {
            PathKind::RegularFile => "a regular file",
            PathKind::Directory => "a directory",
            PathKind::Fifo => "a FIFO (named pipe)",
            PathKind::CharDevice => "a character device",
            PathKind::BlockDevice => "a block device",
            PathKind::Socket => "a socket",
            _ => "not a file",
        }
    }

    /// Why a path of this kind is unusable when `want` is expected, or `None` when it is usable.
    fn problem(&self, want: Want) -> Option<String> {
        Some(match (self, want) {
            (PathKind::Missing, _) => "does not exist".into(),
            (PathKind::DanglingSymlink, _) => "is a dangling symbolic link (its target does not exist)".into(),
            (PathKind::SymlinkLoop, _) => "is a symlink loop (too many levels of symbolic links)".into(),
            (PathKind::Unknown(why), _) => format!("cannot be examined: {why}"),
            (PathKind::Directory, Want::Folder) => return None,
            (k, Want::Folder) => format!("is {}, not a directory", k.noun()),
            (PathKind::Directory, _) => "is a directory, not a file".into(),
            (PathKind::RegularFile, _) | (PathKind::Fifo, _) => return None,
            (k, Want::RegularFile) => format!("is not a regular file (it is {})", k.noun()),
            (_, Want::Stream) => return None,
        })
    }
}

/// What a reader expects at a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Want {
    /// A directory (a model or checkpoint folder).
    Folder,
    /// A file read whole: a regular file, or a FIFO (read to its end). Devices such as
    /// `/dev/null` and sockets are refused.
    RegularFile,
    /// A stream of texts: anything that can be opened and read except a directory (so FIFOs,
    /// `<(command)` and `/dev/stdin` work).
    Stream,
}

/// Checks that `path` is what `want` asks for; otherwise an [`Error::Unusable`] saying what it
/// is, with `what` naming its role ("data file", "model folder", ...).
pub fn check_path(path: &Path, what: &'static str, want: Want) -> Result<PathKind> {
    let kind = PathKind::of(path);
    match kind.problem(want) {
        None => Ok(kind),
        Some(is) => Err(Error::Unusable { what, path: path.to_path_buf(), is }),
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

    #[test]
    fn path_kinds_are_named() {
        let d = tempfile::tempdir().unwrap();
        let file = d.path().join("f.tsv");
        std::fs::write(&file, "x").unwrap();
        let missing = d.path().join("nope");
        assert_eq!(PathKind::of(&file), PathKind::RegularFile);
        assert_eq!(PathKind::of(d.path()), PathKind::Directory);
        assert_eq!(PathKind::of(&missing), PathKind::Missing);
        let msg = |p: &Path, want| check_path(p, "data file", want).unwrap_err().to_string();
        assert_eq!(msg(d.path(), Want::RegularFile), format!("data file {}: is a directory, not a file", d.path().display()));
        assert!(msg(d.path(), Want::Stream).ends_with(": is a directory, not a file"));
        assert!(msg(&file, Want::Folder).ends_with(": is a regular file, not a directory"));
        assert!(msg(&missing, Want::RegularFile).ends_with(": does not exist"));
        assert!(check_path(&file, "data file", Want::RegularFile).is_ok());
        assert!(check_path(d.path(), "model folder", Want::Folder).is_ok());
        #[cfg(unix)]
        {
            let l = d.path().join("loop");
            std::os::unix::fs::symlink(&l, &l).unwrap();
            assert_eq!(PathKind::of(&l), PathKind::SymlinkLoop);
            for want in [Want::Folder, Want::RegularFile, Want::Stream] {
                assert!(msg(&l, want).ends_with(": is a symlink loop (too many levels of symbolic links)"), "{}", msg(&l, want));
            }
            let dangling = d.path().join("dangling");
            std::os::unix::fs::symlink(&missing, &dangling).unwrap();
            assert!(msg(&dangling, Want::RegularFile).contains("dangling symbolic link"));
            let null = Path::new("/dev/null");
            assert_eq!(PathKind::of(null), PathKind::CharDevice);
            assert_eq!(msg(null, Want::RegularFile), "data file /dev/null: is not a regular file (it is a character device)");
            assert!(msg(null, Want::Folder).ends_with("is a character device, not a directory"));
            assert!(check_path(null, "input", Want::Stream).is_ok());
            let fifo = d.path().join("fifo");
            let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
            // SAFETY: a valid NUL-terminated path.
            assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
            assert_eq!(PathKind::of(&fifo), PathKind::Fifo);
            assert!(check_path(&fifo, "data file", Want::RegularFile).is_ok(), "FIFOs stay readable");
            assert!(check_path(&fifo, "input", Want::Stream).is_ok());
        }
    }
}

//! Owns the rules for a training run's output folder, so that training never loses a user's
//! files:
//!
//! * never the base model's folder, nor a folder inside it;
//! * never a non-empty folder that is not a checkpoint of ours (`config.json` of the multi-task
//!   format, or a resume state);
//! * an existing checkpoint only when the caller says so (`overwrite`), and then file by file
//!   atomically as every checkpoint write is;
//! * one run at a time: an exclusive lock ([`OutputLock`]) for the whole run, naming its holder.
//!
//! [`check`] only reads, so a refused run leaves nothing behind; [`OutputLock::acquire`] runs
//! once the data and the model are loaded, and checks again under the lock.

use crate::error::{invalid, Error, Result};
use crate::model::MultiTask;
use super::state::{RESUME_DIR, STATE_FILE};
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};

/// The lock file a run keeps in its output folder while it runs.
pub const LOCK_FILE: &str = ".mtt-train.lock";

/// What an acceptable output folder holds now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Existing {
    /// No folder yet: the run creates it.
    Nothing,
    /// An empty folder (or one holding only a stale lock file).
    Empty,
    /// A checkpoint of an earlier run, to be replaced (the caller asked to overwrite).
    Checkpoint,
}

/// `p` made absolute with every existing part resolved (symbolic links, `..`), so that two
/// spellings of one folder compare equal even when its last parts do not exist yet.
pub fn resolved(p: &Path) -> PathBuf {
    let mut head = p.to_path_buf();
    let mut tail = Vec::new();
    loop {
        if let Ok(c) = head.canonicalize() {
            return tail.iter().rev().fold(c, |acc, part| acc.join(part));
        }
        match (head.file_name().map(|n| n.to_os_string()), head.parent()) {
            (Some(name), Some(parent)) => {
                tail.push(name);
                head = if parent.as_os_str().is_empty() { PathBuf::from(".") } else { parent.to_path_buf() };
            }
            _ => return std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf()),
        }
    }
}

/// Whether `dir` holds a checkpoint of ours or a run's resume state.
fn is_ours(dir: &Path) -> bool {
    MultiTask::is_checkpoint(dir) || [RESUME_DIR.to_string(), format!("{RESUME_DIR}.old")].iter().any(|d| dir.join(d).join(STATE_FILE).is_file())
}

/// Checks that a new run may write into `out` when it trains from `model`: only reads.
pub fn check(out: &Path, model: &Path, overwrite: bool) -> Result<Existing> {
    if out.exists() && !out.is_dir() {
        return Err(invalid(format!("output folder {} exists and is not a folder", out.display())));
    }
    let (o, m) = (resolved(out), resolved(model));
    if o == m {
        return Err(invalid(format!(
            "output folder {} is the base model folder {}: training would replace the model it starts from. Choose another output folder",
            out.display(),
            model.display()
        )));
    }
    if o.starts_with(&m) {
        return Err(invalid(format!(
            "output folder {} is inside the base model folder {}: choose a folder outside it",
            out.display(),
            model.display()
        )));
    }
    if !out.exists() {
        return Ok(Existing::Nothing);
    }
    let read = std::fs::read_dir(out).map_err(|e| Error::io(out, e))?;
    let mut names = Vec::new();
    for entry in read {
        let entry = entry.map_err(|e| Error::io(out, e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name != LOCK_FILE {
            names.push(name);
        }
    }
    if names.is_empty() {
        return Ok(Existing::Empty);
    }
    if is_ours(out) {
        if overwrite {
            return Ok(Existing::Checkpoint);
        }
        return Err(invalid(format!(
            "output folder {} holds the checkpoint of an earlier run: pass `overwrite` to replace it, or continue the interrupted run in it (`resume`)",
            out.display()
        )));
    }
    names.sort();
    let shown = names.iter().take(3).map(String::as_str).collect::<Vec<_>>().join(", ");
    let more = if names.len() > 3 { format!(" and {} more", names.len() - 3) } else { String::new() };
    Err(invalid(format!(
        "output folder {} is not empty and holds no checkpoint of mtt's ({shown}{more}): training writes config.json, model.safetensors, vocab.txt and metrics.json there and would replace files of yours. Choose a new or empty folder (`overwrite` replaces only an earlier run's checkpoint)",
        out.display()
    )))
}

/// An exclusive lock on an output folder (`flock` on [`LOCK_FILE`], which holds the owner's
/// PID); released and removed when dropped. A process killed outright releases it too (the
/// kernel drops the lock; the stale file is ignored by the next run).
#[derive(Debug)]
pub struct OutputLock {
    /// Held, not read: the lock lives as long as this open file.
    _file: std::fs::File,
    path: PathBuf,
}

impl OutputLock {
    /// Takes the lock of folder `dir` (which must exist), failing at once, naming the holder's
    /// PID, when another process has it.
    pub fn acquire(dir: &Path) -> Result<OutputLock> {
        let path = dir.join(LOCK_FILE);
        loop {
            let file = std::fs::OpenOptions::new().read(true).write(true).create(true).truncate(false).open(&path).map_err(|e| Error::io(&path, e))?;
            // SAFETY: flock on a file descriptor this function owns.
            if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
                let err = std::io::Error::last_os_error();
                if err.kind() != std::io::ErrorKind::WouldBlock {
                    return Err(Error::io(&path, err));
                }
                let pid = std::fs::read_to_string(&path).unwrap_or_default();
                let pid = pid.trim();
                return Err(invalid(format!(
                    "output folder {} is in use by another training run (PID {}; lock file {}): wait for it to end, or choose another output folder",
                    dir.display(),
                    if pid.is_empty() { "unknown" } else { pid },
                    path.display()
                )));
            }
            // The previous holder may have removed the file between our open and our lock: then
            // the lock is on a file nobody else can find; take the one at `path` instead.
            let same = match (file.metadata(), std::fs::metadata(&path)) {
                (Ok(a), Ok(b)) => a.ino() == b.ino() && a.dev() == b.dev(),
                _ => false,
            };
            if !same {
                continue;
            }
            let mut f = &file;
            f.set_len(0).and_then(|_| writeln!(f, "{}", std::process::id())).map_err(|e| Error::io(&path, e))?;
            return Ok(OutputLock { _file: file, path });
        }
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for OutputLock {
    fn drop(&mut self) {
        // Removed while still locked, so no other process can take this file's lock meanwhile.
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Removes its folder when dropped if the folder is empty by then (a folder a failed run made).
#[derive(Debug)]
pub struct RemoveIfEmpty(pub PathBuf);

impl Drop for RemoveIfEmpty {
    fn drop(&mut self) {
        // Fails, harmlessly, when the folder holds anything.
        let _ = std::fs::remove_dir(&self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_model_folder_a_user_folder_and_an_earlier_checkpoint_are_refused() {
        let d = tempfile::tempdir().unwrap();
        let model = d.path().join("model");
        std::fs::create_dir_all(&model).unwrap();
        std::fs::write(model.join("config.json"), "{}").unwrap();
        let e = check(&model, &model, true).unwrap_err().to_string();
        assert!(e.contains("is the base model folder"), "{e}");
        // Another spelling of the same folder.
        let e = check(&d.path().join("model/../model/."), &model, false).unwrap_err().to_string();
        assert!(e.contains("is the base model folder"), "{e}");
        let e = check(&model.join("sub/out"), &model, false).unwrap_err().to_string();
        assert!(e.contains("inside the base model folder"), "{e}");
        assert_eq!(check(&d.path().join("new"), &model, false).unwrap(), Existing::Nothing);
        let mine = d.path().join("mine");
        std::fs::create_dir_all(&mine).unwrap();
        assert_eq!(check(&mine, &model, false).unwrap(), Existing::Empty);
        std::fs::write(mine.join(LOCK_FILE), "1\n").unwrap();
        assert_eq!(check(&mine, &model, false).unwrap(), Existing::Empty);
        std::fs::write(mine.join("config.json"), "{\"mine\": 1}").unwrap();
        std::fs::write(mine.join("notes.txt"), "x").unwrap();
        for overwrite in [false, true] {
            let e = check(&mine, &model, overwrite).unwrap_err().to_string();
            assert!(e.contains("is not empty and holds no checkpoint") && e.contains("config.json, notes.txt"), "{e}");
        }
        let ckpt = d.path().join("ckpt");
        std::fs::create_dir_all(&ckpt).unwrap();
        std::fs::write(ckpt.join("config.json"), format!("{{\"format\": \"{}\"}}", crate::model::multitask::FORMAT)).unwrap();
        let e = check(&ckpt, &model, false).unwrap_err().to_string();
        assert!(e.contains("holds the checkpoint of an earlier run: pass `overwrite`"), "{e}");
        assert_eq!(check(&ckpt, &model, true).unwrap(), Existing::Checkpoint);
    }

    #[test]
    fn a_second_lock_fails_naming_the_holder_and_the_file_goes_with_the_lock() {
        let d = tempfile::tempdir().unwrap();
        let lock = OutputLock::acquire(d.path()).unwrap();
        assert_eq!(std::fs::read_to_string(lock.path()).unwrap(), format!("{}\n", std::process::id()));
        // flock locks belong to open files: a second open in this process conflicts as another
        // process's would.
        let e = OutputLock::acquire(d.path()).unwrap_err().to_string();
        assert!(e.contains(&format!("in use by another training run (PID {};", std::process::id())), "{e}");
        drop(lock);
        assert!(!d.path().join(LOCK_FILE).exists());
        let again = OutputLock::acquire(d.path()).unwrap();
        drop(again);
    }
}

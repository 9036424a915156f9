//! How a run is asked to stop from outside (by a signal handler the command line installs, or by
//! any thread): [`StopFlag`]. The flag knows which phase the run is in:
//!
//! * **starting** (reading data, loading the model, filling the feature cache): a request ends
//!   the process at once with status 130, after removing what the run had created so far (its
//!   lock file, and its output folder when the run made it and it is still empty), so nothing is
//!   left behind. This works while the process is blocked in a system call, such as opening a
//!   FIFO that has no writer yet.
//! * **training**: the first request asks the run to stop after the current step, with a
//!   checkpoint and its resume state; a second one ends the process at once, as above.
//!
//! [`StopFlag::request`] only touches atomics and calls `unlink`, `rmdir` and `_exit`, all
//! async-signal-safe, so a signal handler may call it.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::ptr;
use std::sync::atomic::{AtomicBool, AtomicPtr, Ordering};

/// A stop request and the phase of the run it is for.
#[derive(Debug, Default)]
pub struct StopFlag {
    requested: AtomicBool,
    training: AtomicBool,
    /// A file and an (empty) folder to remove before the process ends; null: none.
    remove_file: AtomicPtr<libc::c_char>,
    remove_dir: AtomicPtr<libc::c_char>,
}

impl StopFlag {
    /// A flag with no request, in the starting phase.
    pub fn new() -> StopFlag {
        StopFlag::default()
    }

    /// Asks the run to stop: at once before training, after the current step during it (a
    /// second request: at once). Async-signal-safe.
    pub fn request(&self) {
        if self.training.load(Ordering::SeqCst) && !self.requested.swap(true, Ordering::SeqCst) {
            return;
        }
        // SAFETY: unlink, rmdir and _exit are async-signal-safe; the pointers are null or C
        // strings that are never freed (see `set`).
        unsafe {
            let f = self.remove_file.load(Ordering::SeqCst);
            if !f.is_null() {
                libc::unlink(f);
            }
            let d = self.remove_dir.load(Ordering::SeqCst);
            if !d.is_null() {
                libc::rmdir(d);
            }
            libc::_exit(130);
        }
    }

    /// Whether a stop was requested during training.
    pub fn requested(&self) -> bool {
        self.requested.load(Ordering::SeqCst)
    }

    /// Enters the training phase until the guard is dropped.
    pub(super) fn training(&self) -> TrainingPhase<'_> {
        self.training.store(true, Ordering::SeqCst);
        TrainingPhase(self)
    }

    /// Registers `file` and `dir` for removal by a request that ends the process, until the
    /// guard is dropped.
    pub(super) fn remove_on_exit(&self, file: Option<&Path>, dir: Option<&Path>) -> RemoveOnExit<'_> {
        set(&self.remove_file, file);
        set(&self.remove_dir, dir);
        RemoveOnExit(self)
    }
}

fn set(slot: &AtomicPtr<libc::c_char>, path: Option<&Path>) {
    let new = path.and_then(|p| CString::new(p.as_os_str().as_bytes()).ok()).map_or(ptr::null_mut(), CString::into_raw);
    // The old string is leaked on purpose: a handler on another thread may still be reading
    // it. A few bytes per run.
    slot.store(new, Ordering::SeqCst);
}

/// The training phase of a [`StopFlag`], while it lives.
pub(super) struct TrainingPhase<'a>(&'a StopFlag);

impl Drop for TrainingPhase<'_> {
    fn drop(&mut self) {
        self.0.training.store(false, Ordering::SeqCst);
    }
}

/// The paths a [`StopFlag`] removes before ending the process, while it lives.
pub(super) struct RemoveOnExit<'a>(&'a StopFlag);

impl Drop for RemoveOnExit<'_> {
    fn drop(&mut self) {
        set(&self.0.remove_file, None);
        set(&self.0.remove_dir, None);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_during_training_only_sets_the_flag() {
        let f = StopFlag::new();
        assert!(!f.requested());
        {
            let _t = f.training();
            f.request();
            assert!(f.requested());
        }
        // (A request outside the training phase, or a second one, ends the process: that is
        // tested on the binary, in tests/output_folder.rs.)
    }
}

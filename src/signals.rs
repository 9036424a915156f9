//! Owns the stop signals (SIGINT, SIGTERM) of the training commands.
//!
//! A run is in one of two modes:
//!
//! * **Starting** (the default): reading data, loading the model, filling the feature cache. A
//!   signal ends the process at once with status 130, after removing what the run had created
//!   so far (its lock file, and its output folder when the run made it and it is still empty):
//!   nothing is left behind. This also works while the process is blocked in a system call, such
//!   as opening a FIFO that no writer has opened yet.
//! * **Training** (inside [`training`]'s guard): the first signal asks the run to stop after the
//!   current step, with a checkpoint and its resume state ([`stop_requested`]); a second one ends
//!   the process at once, as in the starting mode.
//!
//! Nothing here is active until [`catch_stop_signals`] installs the handler: a library user keeps
//! the default actions unless it asks for these.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::ptr;
use std::sync::atomic::{AtomicBool, AtomicPtr, Ordering};

static STOP: AtomicBool = AtomicBool::new(false);
static TRAINING: AtomicBool = AtomicBool::new(false);
/// A file and an (empty) folder to remove before the process ends on a signal; null: none.
static REMOVE_FILE: AtomicPtr<libc::c_char> = AtomicPtr::new(ptr::null_mut());
static REMOVE_DIR: AtomicPtr<libc::c_char> = AtomicPtr::new(ptr::null_mut());

extern "C" fn on_stop_signal(_: libc::c_int) {
    // In the training mode, the first signal only sets the flag the step loop reads.
    if TRAINING.load(Ordering::SeqCst) && !STOP.swap(true, Ordering::SeqCst) {
        return;
    }
    // SAFETY: unlink, rmdir and _exit are async-signal-safe; the pointers are either null or
    // C strings that are never freed (see `set`).
    unsafe {
        let f = REMOVE_FILE.load(Ordering::SeqCst);
        if !f.is_null() {
            libc::unlink(f);
        }
        let d = REMOVE_DIR.load(Ordering::SeqCst);
        if !d.is_null() {
            libc::rmdir(d);
        }
        libc::_exit(130);
    }
}

/// Installs the handler for SIGINT and SIGTERM (once per process). For command-line programs.
pub fn catch_stop_signals() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // SAFETY: a zeroed sigaction with a valid handler and an empty mask is a valid action.
        unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = on_stop_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
            libc::sigemptyset(&mut action.sa_mask);
            // SA_RESTART as libc::signal has it: interrupted system calls go on in the training
            // mode (in the starting mode the handler never returns).
            action.sa_flags = libc::SA_RESTART;
            libc::sigaction(libc::SIGINT, &action, ptr::null_mut());
            libc::sigaction(libc::SIGTERM, &action, ptr::null_mut());
        }
    });
}

/// Whether a stop signal arrived while training.
pub fn stop_requested() -> bool {
    STOP.load(Ordering::SeqCst)
}

/// Keeps the training mode while it lives; dropping it returns to the starting mode.
pub struct Training(());

/// Enters the training mode: from now on the first signal stops the run after a step.
pub fn training() -> Training {
    TRAINING.store(true, Ordering::SeqCst);
    Training(())
}

impl Drop for Training {
    fn drop(&mut self) {
        TRAINING.store(false, Ordering::SeqCst);
    }
}

fn set(slot: &AtomicPtr<libc::c_char>, path: Option<&Path>) {
    let new = path.and_then(|p| CString::new(p.as_os_str().as_bytes()).ok()).map_or(ptr::null_mut(), CString::into_raw);
    // The old string is leaked on purpose: a handler running on another thread may still read
    // it. A few bytes per run.
    slot.store(new, Ordering::SeqCst);
}

/// What a signal removes before ending the process, while it lives: `file` (a lock file) and
/// `dir` (a folder the run created; removed only if empty by then).
pub struct RemoveOnSignal(());

/// Registers `file` and `dir` for removal by a signal that ends the process.
pub fn remove_on_signal(file: Option<&Path>, dir: Option<&Path>) -> RemoveOnSignal {
    set(&REMOVE_FILE, file);
    set(&REMOVE_DIR, dir);
    RemoveOnSignal(())
}

impl Drop for RemoveOnSignal {
    fn drop(&mut self) {
        set(&REMOVE_FILE, None);
        set(&REMOVE_DIR, None);
    }
}

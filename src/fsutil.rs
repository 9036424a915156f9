//! Owns how the project writes files it must never leave half-written: atomic writes (a
//! temporary file in the same folder, then a rename), the up-front check of an output folder,
//! and the SHA-256 checksums that files are checked by.

use crate::error::{Error, Result};
use std::path::{Path, PathBuf};

/// A temporary path of this writer's own next to `path` (same folder, so the rename is atomic):
/// the file name plus `.<process>-<call>.tmp`, so two writers of one file at once (parallel tests,
/// several servers calibrating the same model) never write into each other's temporary file;
/// each renames a whole file into place.
pub fn tmp_path(path: &Path) -> PathBuf {
    static CALLS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let mut name = path.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push(format!(".{}-{n}.tmp", std::process::id()));
    path.with_file_name(name)
}

/// Writes `bytes` to `path` atomically: readers see the old file or the new one, never a part.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    write_atomic_with(path, |tmp| std::fs::write(tmp, bytes).map_err(|e| Error::io(tmp, e)))
}

/// Runs the closure `write` on a temporary path next to `path`, then renames it into place. On failure the
/// temporary file is removed and `path` is left as it was.
pub fn write_atomic_with(path: &Path, write: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
    let tmp = tmp_path(path);
    if let Err(e) = write(&tmp) {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e))
}

/// Lower-case hex of `digest`.
pub fn hex(digest: &[u8]) -> String {
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// SHA-256 of `bytes`, in hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    let mut c = Checksum::new();
    c.bytes(bytes);
    c.hex()
}

/// A SHA-256 fed in pieces: the project's one hash for keys and checksums (stable across Rust
/// releases, unlike std's `DefaultHasher`).
#[derive(Clone, Default)]
pub struct Checksum(sha2::Sha256);

impl Checksum {
    /// An empty hash.
    pub fn new() -> Checksum {
        Checksum::default()
    }

    /// Adds `bytes`.
    pub fn bytes(&mut self, bytes: &[u8]) {
        use sha2::Digest;
        self.0.update(bytes);
    }

    /// Adds `v` as 8 little-endian bytes.
    pub fn u64(&mut self, v: u64) {
        self.bytes(&v.to_le_bytes());
    }

    /// The digest in hex.
    pub fn hex(self) -> String {
        use sha2::Digest;
        hex(&self.0.finalize())
    }
}

/// SHA-256 of the file at `path`, in hex (read in a stream).
pub fn file_sha256(path: &Path) -> Result<String> {
    use sha2::{Digest, Sha256};
    let mut f = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut h = Sha256::new();
    std::io::copy(&mut f, &mut h).map_err(|e| Error::io(path, e))?;
    Ok(hex(&h.finalize()))
}

/// Makes sure results can be written into folder `dir` before any long work starts: creates it
/// if needed, refuses a path that is a file, and proves it writable with a probe file.
pub fn prepare_output_dir(dir: &Path) -> Result<()> {
    if dir.exists() && !dir.is_dir() {
        return Err(Error::Invalid(format!("output folder {} exists and is not a folder", dir.display())));
    }
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let probe = dir.join(format!(".write-test-{}", std::process::id()));
    std::fs::write(&probe, b"").map_err(|e| Error::io(&probe, e))?;
    std::fs::remove_file(&probe).map_err(|e| Error::io(&probe, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_write_replaces_whole_file_and_failed_write_keeps_old_one() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("f.json");
        write_atomic(&p, b"old").unwrap();
        write_atomic(&p, b"new").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"new");
        let e = write_atomic_with(&p, |tmp| {
            std::fs::write(tmp, b"half").unwrap();
            Err(Error::Invalid("disk full".into()))
        });
        assert!(e.is_err());
        assert_eq!(std::fs::read(&p).unwrap(), b"new");
        assert!(!tmp_path(&p).exists());
    }

    #[test]
    fn output_dir_that_is_a_file_is_refused() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("taken");
        std::fs::write(&f, b"x").unwrap();
        let e = prepare_output_dir(&f).unwrap_err().to_string();
        assert!(e.contains("exists and is not a folder"), "{e}");
        prepare_output_dir(&d.path().join("new/sub")).unwrap();
        assert!(d.path().join("new/sub").is_dir());
    }
}

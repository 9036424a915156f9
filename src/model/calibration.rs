//! Owns stored int8 calibrations. Calibrating an int8 encoder runs the 128 calibration texts
//! through it in fp32, which cost more than encoding a few hundred texts at every start of
//! `mtt embed --precision int8`. The result (each layer's [`InputMaxima`]: two `[hidden]`
//! vectors) depends only on the encoder's weights, its architecture and the calibration token
//! ids, so it is stored once under a key that hashes all three, and read back on later starts.
//!
//! The files live in `<user cache>/int8-calibration/<key>.safetensors` (see
//! [`crate::config::user_cache_dir`]). A changed model, tokenizer or calibration set gets
//! another key, so a stale calibration is never used. A file that cannot be read or has the
//! wrong tensors is calibrated again and replaced; a cache that cannot be written (no HOME, a
//! read-only folder) only means calibrating at every start: the vectors are the same either way.

use crate::config::EncoderConfig;
use crate::error::{invalid, Error, Result};
use crate::fsutil::{self, Checksum};
use crate::model::layer::InputMaxima;
use crate::params::{Params, ENCODER};
use std::path::{Path, PathBuf};
use tch::{Device, Kind, Tensor};

/// Bumped whenever what is stored, or how it is computed, changes.
const FORMAT: &[u8] = b"mtt-int8-calibration/v1";

/// Most calibrations kept (about 20 KB each for MiniLM): storing one more removes the least
/// recently used beyond this (tests and experiments make many models).
pub const KEEP: usize = 32;

/// Where an encoder's int8 calibration came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CalibrationSource {
    /// Read from this stored file.
    Stored(PathBuf),
    /// Computed now and stored in this file for the next start.
    ComputedAndStored(PathBuf),
    /// Computed now and not stored (the reason: no cache folder, or the write failed).
    Computed(String),
}

impl CalibrationSource {
    /// One line for `mtt doctor` and logs.
    pub fn describe(&self) -> String {
        match self {
            CalibrationSource::Stored(p) => format!("read from {}", p.display()),
            CalibrationSource::ComputedAndStored(p) => format!("computed and stored in {}", p.display()),
            CalibrationSource::Computed(why) => format!("computed (not stored: {why})"),
        }
    }
}

/// The folder stored calibrations go in: `<user cache>/int8-calibration` (`None` without
/// `$MTT_CACHE_DIR` or `$HOME`).
pub fn default_dir() -> Option<PathBuf> {
    crate::config::user_cache_dir().map(|d| d.join("int8-calibration"))
}

/// The key of a calibration: SHA-256 of the format, the architecture, the calibration batches'
/// token ids and masks, and every encoder variable's name, shape and bytes.
pub fn key(config: &EncoderConfig, params: &Params, batches: &[(Tensor, Tensor)]) -> Result<String> {
    let mut h = Checksum::new();
    h.bytes(FORMAT);
    h.bytes(&serde_json::to_vec(&config.bert).map_err(|e| invalid(format!("encoder config does not serialise: {e}")))?);
    for (ids, mask) in batches {
        tensor_bytes(&mut h, ids);
        tensor_bytes(&mut h, mask);
    }
    for (name, t) in params.named_variables() {
        if !name.starts_with(ENCODER) {
            continue;
        }
        h.bytes(name.as_bytes());
        tensor_bytes(&mut h, &t);
    }
    Ok(h.hex())
}

/// Feeds `t`'s kind, shape and raw bytes (on the CPU, contiguous) to `h`.
fn tensor_bytes(h: &mut Checksum, t: &Tensor) {
    let t = t.to_device(Device::Cpu).contiguous();
    h.bytes(format!("{:?}{:?}", t.kind(), t.size()).as_bytes());
    let len = t.numel() * t.kind().elt_size_in_bytes();
    if len == 0 {
        return;
    }
    // SAFETY: `t` is a contiguous CPU tensor of `len` bytes that outlives the borrow; reading
    // its storage in place saves copying the encoder's ~90 MB.
    let bytes = unsafe { std::slice::from_raw_parts(t.data_ptr() as *const u8, len) };
    h.bytes(bytes);
}

/// The stored calibration under `key` in `dir`, if there is a readable one for `n_layers`
/// layers of width `hidden`.
pub fn load(dir: &Path, key: &str, n_layers: usize, hidden: i64) -> Option<Vec<InputMaxima>> {
    let path = dir.join(format!("{key}.safetensors"));
    let tensors = Tensor::read_safetensors(&path).ok()?;
    let get = |name: String| {
        tensors
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, t)| t.shallow_clone())
            .filter(|t| t.size() == [hidden] && t.kind() == Kind::Float && t.isfinite().all().int64_value(&[]) == 1)
    };
    let maxima = (0..n_layers)
        .map(|i| Some(InputMaxima { attention: Some(get(format!("{i}.attention"))?), intermediate: Some(get(format!("{i}.intermediate"))?) }))
        .collect();
    // Marks it used (best effort), for the pruning in `store`.
    if let Ok(f) = std::fs::File::options().append(true).open(&path) {
        let _ = f.set_modified(std::time::SystemTime::now());
    }
    maxima
}

/// Removes the least recently used calibrations in `dir` beyond [`KEEP`] (best effort).
fn prune(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    let mut files: Vec<(std::time::SystemTime, PathBuf)> = entries
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "safetensors"))
        .filter_map(|p| Some((std::fs::metadata(&p).ok()?.modified().ok()?, p)))
        .collect();
    if files.len() <= KEEP {
        return;
    }
    files.sort();
    for (_, p) in &files[..files.len() - KEEP] {
        let _ = std::fs::remove_file(p);
    }
}

/// Stores `maxima` under `key` in `dir` (written atomically, see [`fsutil::write_atomic_with`]);
/// returns the file's path.
pub fn store(dir: &Path, key: &str, maxima: &[InputMaxima]) -> Result<PathBuf> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let path = dir.join(format!("{key}.safetensors"));
    let mut named: Vec<(String, Tensor)> = Vec::new();
    for (i, m) in maxima.iter().enumerate() {
        for (part, t) in [("attention", &m.attention), ("intermediate", &m.intermediate)] {
            let t = t.as_ref().ok_or_else(|| invalid(format!("layer {i} has no {part} calibration")))?;
            named.push((format!("{i}.{part}"), t.to_device(Device::Cpu).to_kind(Kind::Float)));
        }
    }
    fsutil::write_atomic_with(&path, |tmp| {
        Tensor::write_safetensors(&named, tmp).map_err(|e| Error::config(&path, format!("cannot write the calibration: {e}")))
    })?;
    prune(dir);
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_store_keeps_the_most_recently_used() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("store");
        let m = |x: f64| InputMaxima { attention: Some(Tensor::from_slice(&[x as f32, 1.0])), intermediate: Some(Tensor::from_slice(&[1f32, x as f32])) };
        let old = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
        for k in 0..KEEP {
            let p = store(&dir, &format!("k{k}"), &[m(k as f64)]).unwrap();
            let f = std::fs::File::options().append(true).open(&p).unwrap();
            f.set_modified(old + std::time::Duration::from_secs(k as u64)).unwrap();
        }
        // Reading k0 makes it the most recent; the next store drops the oldest others.
        assert!(load(&dir, "k0", 1, 2).is_some());
        store(&dir, "new", &[m(9.0)]).unwrap();
        let left = std::fs::read_dir(&dir).unwrap().count();
        assert_eq!(left, KEEP);
        assert!(load(&dir, "k0", 1, 2).is_some(), "recently read: kept");
        assert!(load(&dir, "new", 1, 2).is_some());
        assert!(load(&dir, "k1", 1, 2).is_none(), "least recently used: removed");
        assert!(load(&dir, "k0", 2, 2).is_none(), "a file for another layer count is not used");
    }
}

//! Owns the frozen-encoder cache: when nothing in the encoder trains, its pooled sentence vectors
//! never change, so they are computed once per text (dropout off, as in evaluation) and the heads
//! train on them. The vectors live in memory for one run; with a cache folder they are also kept
//! on disk as `<key>.safetensors`, where the key hashes the encoder's weights, its pooling and
//! the token ids, so runs of an experiment grid share them and a changed model never reuses them.

use crate::data::Example;
use crate::error::{Error, Result};
use crate::fsutil::{write_atomic_with, Checksum};
use crate::infer::{self, Batching};
use crate::model::MultiTask;
use crate::params::ENCODER;
use std::path::{Path, PathBuf};
use tch::{Device, Kind, Tensor};

/// Pooled vectors of a frozen encoder, computed once per example set.
pub struct FeatureCache {
    dir: Option<PathBuf>,
    /// Hash of the encoder's weights and pooling, fed on with each example set's token ids.
    model_key: Checksum,
}

impl FeatureCache {
    /// A cache for `model`'s encoder as it is now; `dir` keeps the vectors on disk between runs.
    pub fn new(model: &MultiTask, dir: Option<&Path>) -> Result<Self> {
        let mut h = Checksum::new();
        h.bytes(b"mtt-feature-cache/v3");
        h.bytes(model.config.encoder.pooling.describe().as_bytes());
        h.u64(model.config.encoder.max_seq_length as u64);
        for (name, t) in model.params().named_variables() {
            if !name.starts_with(ENCODER) {
                continue;
            }
            h.bytes(name.as_bytes());
            let t = t.to_device(Device::Cpu).to_kind(Kind::Float).contiguous().view([-1]);
            let v = Vec::<f32>::try_from(&t)?;
            let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_bits().to_le_bytes()).collect();
            h.bytes(&bytes);
        }
        Ok(FeatureCache { dir: dir.map(Path::to_path_buf), model_key: h })
    }

    fn file(&self, examples: &[Example]) -> Option<PathBuf> {
        let dir = self.dir.as_ref()?;
        let mut h = self.model_key.clone();
        let (seqs, _) = crate::batch::sequences(examples);
        h.u64(seqs.len() as u64);
        for s in seqs {
            h.u64(s.len() as u64);
            let ids: Vec<u8> = s.iter().flat_map(|&id| (id as u64).to_le_bytes()).collect();
            h.bytes(&ids);
        }
        // 128 bits of the digest name the file.
        Some(dir.join(format!("{}.safetensors", &h.hex()[..32])))
    }

    /// The pooled vectors `[n_texts, dim]` of every text of `examples` (laid out as
    /// [`crate::batch::sequences`]: first texts, then the pairs' second texts) on the model's
    /// device, and whether they came from the disk. A cache file that cannot be read or has the
    /// wrong shape is recomputed and replaced (`note` says so).
    pub fn pooled(&self, model: &MultiTask, examples: &[Example], b: Batching, note: &mut dyn FnMut(&str)) -> Result<(Tensor, bool)> {
        let dim = model.config.encoder.embedding_dim();
        let file = self.file(examples);
        let (seqs, _) = crate::batch::sequences(examples);
        if let Some(f) = file.as_ref().filter(|f| f.exists()) {
            match read(f, seqs.len() as i64, dim) {
                Ok(t) => return Ok((t.to_device(model.device()), true)),
                Err(e) => note(&format!("warning: cache file ignored and rebuilt: {e}")),
            }
        }
        let ids: Vec<Vec<i64>> = seqs.into_iter().map(<[i64]>::to_vec).collect();
        let t = infer::batched(&ids, b, model.device(), &[dim], |x, m| vec![model.pooled_t(x, m, false)])?.remove(0);
        if let Some(f) = file {
            write(&f, &t)?;
        }
        Ok((t.to_device(model.device()), false))
    }
}

fn read(path: &Path, n: i64, dim: i64) -> Result<Tensor> {
    let tensors = Tensor::read_safetensors(path).map_err(|e| Error::config(path, format!("unreadable cache file: {e}")))?;
    let t = tensors
        .into_iter()
        .find(|(name, _)| name == "pooled")
        .map(|(_, t)| t)
        .ok_or_else(|| Error::config(path, "no tensor named 'pooled'"))?;
    if t.size() != [n, dim] || t.kind() != Kind::Float {
        return Err(Error::config(path, format!("shape {:?} ({:?}), expected [{n}, {dim}] (Float)", t.size(), t.kind())));
    }
    Ok(t)
}

/// Writes the cache file atomically, so a reader never sees half of it.
fn write(path: &Path, t: &Tensor) -> Result<()> {
    let dir = path.parent().expect("cache files live in a folder");
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let t = t.to_device(Device::Cpu).contiguous();
    write_atomic_with(path, |tmp| {
        Tensor::write_safetensors(&[("pooled", &t)], tmp).map_err(|e| Error::config(path, format!("cannot write cache file: {e}")))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_is_the_published_sha256() {
        let mut h = Checksum::new();
        h.bytes(b"ab");
        h.bytes(b"c");
        assert_eq!(h.hex(), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    }
}

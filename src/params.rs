//! Owns the model's parameters as named subsets, each in its own `VarStore`: building them,
//! freezing by name prefix, loading weights files (with name mapping) and saving safetensors.
//!
//! Every subset is one unit of the model that can be frozen and given its own learning rate:
//! `encoder.embeddings`, `encoder.encoder.layer.{i}` (one per transformer layer),
//! `classification_head` and `sentiment_head`. Variable names inside follow the seed's PyTorch
//! `named_parameters()`, so a checkpoint loads into the Python model's `state_dict` as is.
//! Prefixes match whole name components: `encoder.encoder.layer.1` never matches `...layer.10`.

use crate::error::{invalid, Error, Result};
use crate::fsutil::write_atomic_with;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use tch::{nn, Device, Tensor};

/// Name of the encoder: every encoder variable is `encoder.` plus its Hugging Face BERT name.
pub const ENCODER: &str = "encoder";
/// Subset name of the embeddings.
pub const EMBEDDINGS: &str = "encoder.embeddings";
/// Name prefix shared by all transformer layers.
pub const LAYERS: &str = "encoder.encoder.layer";
/// Subset name of Task A's head (sentence classification).
pub const HEAD_A: &str = "classification_head";
/// Subset name of Task B's head (sentiment).
pub const HEAD_B: &str = "sentiment_head";
/// Name prefix of every head but the seed's two (`heads.<task>`).
pub const NAMED_HEADS: &str = "heads";
/// The name prefixes heads live under: the seed's two subsets and `heads.*`.
pub const HEADS: [&str; 3] = [HEAD_A, HEAD_B, NAMED_HEADS];
/// Top-level modules of a Hugging Face `BertModel` (what follows `encoder.` in our names).
const BERT_MODULES: [&str; 3] = ["embeddings", "encoder", "pooler"];

/// Subset name of transformer layer `i`.
pub fn layer_name(i: usize) -> String {
    format!("{LAYERS}.{i}")
}

/// Copies `value` (tensor `file_name` of `path`) into the model's variable `name` after checking
/// that the shapes agree; the error names the file and both names.
pub fn copy_checked(path: &Path, file_name: &str, name: &str, var: &Tensor, value: &Tensor) -> Result<()> {
    let werr = |msg: String| Error::Weights { path: path.to_path_buf(), msg };
    if var.size() != value.size() {
        return Err(werr(format!("tensor {file_name} has shape {:?}, the model's {name} needs {:?}", value.size(), var.size())));
    }
    tch::no_grad(|| var.shallow_clone().f_copy_(value)).map_err(|e| werr(format!("{file_name}: {e}")))
}

/// Whether variable or subset `name` belongs to a head (the seed's two or a `heads.*` one).
pub fn is_head(name: &str) -> bool {
    HEADS.iter().any(|h| under_prefix(name, h))
}

/// Whether `name` lies under `prefix`, component-wise (`a.b` matches `a.b` and `a.b.c`, not `a.bc`).
pub fn under_prefix(name: &str, prefix: &str) -> bool {
    let prefix = prefix.trim_end_matches('.');
    prefix.is_empty() || name == prefix || (name.starts_with(prefix) && name.as_bytes().get(prefix.len()) == Some(&b'.'))
}

/// One named subset: a `VarStore` whose variables all start with `name.`.
pub struct Subset {
    /// The subset's name, also the prefix of its variables (`encoder.encoder.layer.3`, ...).
    pub name: String,
    /// The subset's variables, named in full (`encoder.encoder.layer.3.attention...`).
    pub vs: nn::VarStore,
}

impl Subset {
    /// Whether any variable of the subset still requires a gradient.
    pub fn is_trainable(&self) -> bool {
        self.vs.trainable_variables().iter().any(|t| t.requires_grad())
    }

    /// Number of scalar parameters.
    pub fn numel(&self) -> usize {
        self.vs.variables().values().map(|t| t.numel()).sum()
    }
}

/// What loading a weights file found.
#[derive(Debug, Default, Clone)]
pub struct LoadReport {
    /// Variables filled from the file.
    pub loaded: usize,
    /// Tensors of the file no variable uses and that are expected to be unused (pooler, buffers).
    pub ignored: Vec<String>,
    /// Tensors of the file no variable uses, not expected: worth a warning.
    pub unexpected: Vec<String>,
    /// Variables the file lacks that were allowed to be absent (kept at their initial values).
    pub missing: Vec<String>,
}

/// The model's parameters as an ordered list of named subsets.
pub struct Params {
    device: Device,
    subsets: Vec<Subset>,
}

impl Params {
    /// An empty set of subsets on `device`.
    pub fn new(device: Device) -> Self {
        Params { device, subsets: Vec::new() }
    }

    /// The device every subset lives on.
    pub fn device(&self) -> Device {
        self.device
    }

    /// A fresh store on the right device, to build a subset's modules on before [`Params::push`].
    pub fn new_store(&self) -> nn::VarStore {
        nn::VarStore::new(self.device)
    }

    /// Adds a subset; every variable of `vs` must lie under `name`.
    pub fn push(&mut self, name: &str, vs: nn::VarStore) {
        for var in vs.variables().keys() {
            assert!(under_prefix(var, name), "variable {var} built outside its subset {name}");
        }
        assert!(self.get(name).is_none(), "subset {name} added twice");
        self.subsets.push(Subset { name: name.to_string(), vs });
    }

    /// All subsets in model order.
    pub fn subsets(&self) -> &[Subset] {
        &self.subsets
    }

    /// The names of the head subsets (every subset but the encoder's), in model order.
    pub fn head_names(&self) -> Vec<String> {
        self.subsets.iter().filter(|s| is_head(&s.name)).map(|s| s.name.clone()).collect()
    }

    /// The subset called `name`.
    pub fn get(&self, name: &str) -> Option<&Subset> {
        self.subsets.iter().find(|s| s.name == name)
    }

    /// The subsets lying wholly under `prefix`.
    pub fn under(&self, prefix: &str) -> Vec<&Subset> {
        self.subsets.iter().filter(|s| under_prefix(&s.name, prefix)).collect()
    }

    /// Converts every variable of the subsets under `prefix` to `kind` (modules built on them
    /// see the change: they share the variables' storage).
    pub fn set_kind(&mut self, prefix: &str, kind: tch::Kind) {
        for s in self.subsets.iter_mut().filter(|s| under_prefix(&s.name, prefix)) {
            s.vs.set_kind(kind);
        }
    }

    /// The subset that contains `prefix` when `prefix` names something inside one subset.
    pub fn containing(&self, prefix: &str) -> Option<&Subset> {
        self.subsets.iter().find(|s| s.name != prefix && under_prefix(prefix, &s.name))
    }

    /// The subset names, in model order, joined for messages.
    pub fn names(&self) -> String {
        self.subsets.iter().map(|s| s.name.as_str()).collect::<Vec<_>>().join(", ")
    }

    /// Number of transformer layers (subsets under [`LAYERS`]).
    pub fn n_layers(&self) -> usize {
        self.subsets.iter().filter(|s| under_prefix(&s.name, LAYERS)).count()
    }

    /// Every variable with its full name, sorted by name.
    pub fn named_variables(&self) -> Vec<(String, Tensor)> {
        let mut all: Vec<(String, Tensor)> = self.subsets.iter().flat_map(|s| s.vs.variables()).collect();
        all.sort_by(|a, b| a.0.cmp(&b.0));
        all
    }

    /// Total number of scalar parameters.
    pub fn numel(&self) -> usize {
        self.subsets.iter().map(Subset::numel).sum()
    }

    /// Stops gradients for every variable under `prefix`; returns how many variables that is.
    /// A prefix that matches nothing is an error (it is almost always a typo).
    pub fn freeze(&self, prefix: &str) -> Result<usize> {
        let mut n = 0;
        for (name, var) in self.named_variables() {
            if under_prefix(&name, prefix) {
                let _ = var.set_requires_grad(false);
                n += 1;
            }
        }
        if n == 0 {
            return Err(invalid(format!("freeze: prefix '{prefix}' matches no variable (subsets: {})", self.names())));
        }
        Ok(n)
    }

    /// A copy of every variable's current value, for before/after comparisons.
    pub fn snapshot(&self) -> BTreeMap<String, Tensor> {
        tch::no_grad(|| self.named_variables().into_iter().map(|(n, t)| (n, t.detach().copy())).collect())
    }

    /// Fills variables from a weights file (`.safetensors`, or libtorch's format for `.ot`).
    ///
    /// File names are mapped onto ours: names already in the seed's scheme load as they are;
    /// a bare Hugging Face BERT name (`embeddings.*`, `encoder.layer.*`, optionally behind `bert.`)
    /// gets the `encoder.` prefix. A variable the file lacks is an error unless it lies under one
    /// of `may_be_missing`; a shape mismatch is an error naming the tensor.
    pub fn load(&self, path: &Path, may_be_missing: &[&str]) -> Result<LoadReport> {
        let werr = |msg: String| Error::Weights { path: path.to_path_buf(), msg };
        let tensors = if path.extension().and_then(|e| e.to_str()) == Some("safetensors") {
            Tensor::read_safetensors(path)
        } else {
            Tensor::load_multi(path)
        }
        .map_err(|e| werr(format!("cannot read weights: {e}")))?;
        let vars: BTreeMap<String, Tensor> = self.named_variables().into_iter().collect();
        let mut report = LoadReport::default();
        let mut seen = BTreeSet::new();
        for (file_name, value) in tensors {
            let name = canonical_name(&file_name);
            match vars.get(&name) {
                Some(var) => {
                    copy_checked(path, &file_name, &name, var, &value)?;
                    seen.insert(name);
                    report.loaded += 1;
                }
                None if expected_unused(&name) => report.ignored.push(file_name),
                None => report.unexpected.push(file_name),
            }
        }
        let mut missing_required = Vec::new();
        for name in vars.keys().filter(|n| !seen.contains(*n)) {
            if may_be_missing.iter().any(|p| under_prefix(name, p)) {
                report.missing.push(name.clone());
            } else {
                missing_required.push(name.clone());
            }
        }
        if !missing_required.is_empty() {
            let shown: Vec<&str> = missing_required.iter().take(8).map(String::as_str).collect();
            return Err(werr(format!(
                "{} variable(s) the model needs are not in the file: {}{}",
                missing_required.len(),
                shown.join(", "),
                if missing_required.len() > 8 { ", ..." } else { "" }
            )));
        }
        Ok(report)
    }

    /// Writes every variable to `path` as safetensors, atomically: a temporary file in the same
    /// folder, then a rename, so a crash never leaves a half-written file under the final name.
    pub fn save(&self, path: &Path) -> Result<()> {
        let vars: Vec<(String, Tensor)> = self
            .named_variables()
            .into_iter()
            .map(|(n, t)| (n, t.detach().to_device(Device::Cpu).contiguous()))
            .collect();
        write_atomic_with(path, |tmp| {
            Tensor::write_safetensors(&vars, tmp).map_err(|e| Error::Weights { path: tmp.to_path_buf(), msg: e.to_string() })
        })
    }
}

/// Maps a weights-file tensor name onto the seed's naming scheme: a head's name or `encoder.`
/// plus a BERT module name is ours already; anything else is a bare Hugging Face BERT name
/// (optionally behind `bert.`) and gets the `encoder.` prefix.
pub fn canonical_name(file_name: &str) -> String {
    let is_ours = is_head(file_name)
        || file_name
            .strip_prefix(ENCODER)
            .and_then(|rest| rest.strip_prefix('.'))
            .is_some_and(|rest| BERT_MODULES.iter().any(|m| under_prefix(rest, m)));
    if is_ours {
        return file_name.to_string();
    }
    let bare = file_name.strip_prefix("bert.").unwrap_or(file_name);
    format!("{ENCODER}.{bare}")
}

/// Tensors a pooling encoder leaves unused on purpose: the pooler and position-id buffers.
fn expected_unused(name: &str) -> bool {
    under_prefix(name, &format!("{ENCODER}.pooler")) || name.ends_with("position_ids")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_match_whole_components() {
        assert!(under_prefix("encoder.encoder.layer.1.attention.self.query.weight", "encoder.encoder.layer.1"));
        assert!(under_prefix("encoder.encoder.layer.1", "encoder.encoder.layer.1."));
        assert!(!under_prefix("encoder.encoder.layer.10.output.dense.bias", "encoder.encoder.layer.1"));
        assert!(!under_prefix("classification_headx.weight", "classification_head"));
        assert!(under_prefix("sentiment_head.bias", "sentiment_head"));
    }

    #[test]
    fn file_names_map_to_seed_names() {
        assert_eq!(canonical_name("embeddings.word_embeddings.weight"), "encoder.embeddings.word_embeddings.weight");
        assert_eq!(canonical_name("encoder.layer.3.output.dense.bias"), "encoder.encoder.layer.3.output.dense.bias");
        assert_eq!(canonical_name("bert.encoder.layer.0.output.dense.bias"), "encoder.encoder.layer.0.output.dense.bias");
        assert_eq!(canonical_name("encoder.encoder.layer.0.output.dense.bias"), "encoder.encoder.layer.0.output.dense.bias");
        assert_eq!(canonical_name("classification_head.weight"), "classification_head.weight");
        assert_eq!(canonical_name("pooler.dense.weight"), "encoder.pooler.dense.weight");
        assert!(expected_unused("encoder.pooler.dense.weight"));
        assert!(expected_unused("encoder.embeddings.position_ids"));
        assert_eq!(canonical_name("encoder.pooler.dense.bias"), "encoder.pooler.dense.bias");
    }

    #[test]
    fn freeze_rejects_unknown_prefix() {
        let mut p = Params::new(Device::Cpu);
        let vs = p.new_store();
        let _ = nn::linear(vs.root() / HEAD_A, 4, 2, Default::default());
        p.push(HEAD_A, vs);
        assert_eq!(p.freeze(HEAD_A).unwrap(), 2);
        assert!(!p.get(HEAD_A).unwrap().is_trainable());
        let e = p.freeze("sentiment").unwrap_err().to_string();
        assert!(e.contains("matches no variable"), "{e}");
        assert_eq!(p.under("").len(), 1);
        assert_eq!(p.containing("classification_head.weight").map(|s| s.name.as_str()), Some(HEAD_A));
        assert!(p.containing(HEAD_A).is_none());
        assert_eq!(p.n_layers(), 0);
    }
}

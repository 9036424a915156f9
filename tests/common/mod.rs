//! Shared test helpers.
#![allow(dead_code)]

use std::path::PathBuf;

/// The real all-MiniLM-L6-v2 folder that scripts/setup.sh installs.
pub fn real_model_dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models/all-MiniLM-L6-v2");
    assert!(
        dir.join("model.safetensors").is_file(),
        "{} is missing: run scripts/setup.sh first (it installs the model)",
        dir.display()
    );
    dir
}

/// Largest absolute element-wise difference.
pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "length mismatch");
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

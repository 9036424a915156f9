//! Damaged checkpoints: a truncated or bit-flipped `model.safetensors` or `config.json` gives an
//! error naming the file, never a crash or a model that silently predicts garbage.

mod common;

use common::fixture;
use multi_task_transformer::data::Labels;
use multi_task_transformer::model::MultiTask;
use multi_task_transformer::{Classifier, EncoderConfig};
use std::path::Path;
use tch::Device;

fn labels(v: &[&str]) -> Labels {
    Labels(v.iter().map(|s| s.to_string()).collect())
}

/// A saved tiny checkpoint in `dir`.
fn checkpoint(dir: &Path) {
    let m = MultiTask::two_task(&EncoderConfig::tiny(64), labels(&["x", "y"]), labels(&["p", "q"]), 0.0, Device::Cpu).unwrap();
    m.save(dir).unwrap();
}

fn load_err(dir: &Path) -> String {
    match MultiTask::load(dir, Device::Cpu) {
        Ok(_) => panic!("a damaged checkpoint in {} loaded", dir.display()),
        Err(e) => e.to_string(),
    }
}

#[test]
fn damaged_weights_are_refused_naming_the_file() {
    let d = tempfile::tempdir().unwrap();
    checkpoint(d.path());
    MultiTask::load(d.path(), Device::Cpu).expect("an intact checkpoint loads");
    let w = d.path().join("model.safetensors");
    let good = std::fs::read(&w).unwrap();
    let header = u64::from_le_bytes(good[..8].try_into().unwrap()) as usize + 8;
    // Truncated, and single bits flipped in the header, in the tensor data and at the end.
    let mut cases: Vec<(String, Vec<u8>)> = vec![("truncated".into(), good[..good.len() / 2].to_vec()), ("empty".into(), vec![])];
    for pos in [3, 20, header + 5, good.len() / 2, good.len() - 1] {
        let mut b = good.clone();
        b[pos] ^= 0x10;
        cases.push((format!("bit flip at byte {pos}"), b));
    }
    for (what, bytes) in cases {
        std::fs::write(&w, &bytes).unwrap();
        let e = load_err(d.path());
        assert!(e.contains("model.safetensors") && e.contains("SHA-256"), "{what}: {e}");
    }
}

#[test]
fn damaged_config_is_refused_naming_the_file() {
    let d = tempfile::tempdir().unwrap();
    checkpoint(d.path());
    let c = d.path().join("config.json");
    let good = std::fs::read_to_string(&c).unwrap();
    let cases = [
        ("truncated", good[..good.len() / 2].to_string()),
        ("a label renamed", good.replacen("\"q\"", "\"r\"", 1)),
        ("a number changed", good.replacen("\"head_dropout\": 0.0", "\"head_dropout\": 0.5", 1)),
        ("the weights checksum changed", good.replacen("\"weights_sha256\": \"", "\"weights_sha256\": \"0", 1)),
    ];
    for (what, text) in cases {
        assert_ne!(text, good, "{what}: the test must change the file");
        std::fs::write(&c, &text).unwrap();
        let e = load_err(d.path());
        assert!(e.contains("config.json"), "{what}: {e}");
    }
    // Bytes that are not UTF-8.
    let mut b = good.clone().into_bytes();
    b[10] = 0xff;
    std::fs::write(&c, &b).unwrap();
    assert!(load_err(d.path()).contains("config.json"));
    // Formatting is free: the same content, compact, still loads.
    let v: serde_json::Value = serde_json::from_str(&good).unwrap();
    std::fs::write(&c, serde_json::to_string(&v).unwrap()).unwrap();
    MultiTask::load(d.path(), Device::Cpu).expect("reformatted config loads");
}

#[test]
fn damaged_base_model_weights_are_an_error_not_a_crash() {
    let f = fixture();
    let w = f.model.join("model.safetensors");
    let good = std::fs::read(&w).unwrap();
    for bytes in [good[..good.len() / 3].to_vec(), b"{not safetensors".to_vec(), {
        let mut b = good.clone();
        b[2] ^= 0x40;
        b
    }] {
        std::fs::write(&w, &bytes).unwrap();
        let r = Classifier::from_base(&f.model, multi_task_transformer::task::seed_tasks(labels(&["x"]), labels(&["p"])), 0.0, Device::Cpu);
        let e = r.err().expect("damaged base weights must not load").to_string();
        assert!(e.contains("model.safetensors"), "{e}");
    }
}

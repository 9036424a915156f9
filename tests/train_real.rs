//! A short training run on the real all-MiniLM-L6-v2 and the bundled data: the loss falls.

mod common;

use multi_task_transformer::optim::LrPreset;
use multi_task_transformer::train::{train, Progress, TrainConfig};
use std::path::PathBuf;

#[test]
fn short_real_run_loss_falls() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let out = tempfile::tempdir().unwrap();
    let mut c = TrainConfig::new(common::real_model_dir(), out.path().join("run"));
    c.data.task_a = Some(root.join("data/trec6/train.tsv"));
    c.data.task_b = Some(root.join("data/sst5_3class/train.tsv"));
    c.data.limit = Some(400);
    c.optimizer.lr_plan = LrPreset::Uniform;
    c.schedule.batch_size = 16;
    c.schedule.max_steps = Some(40);
    c.device = "cpu".into();
    let run = train(&c, Progress::Off, &mut |l: &str| eprintln!("{l}")).unwrap();
    let losses = &run.metrics.step_losses;
    assert_eq!(losses.len(), 40);
    let mean = |s: &[f64]| s.iter().sum::<f64>() / s.len() as f64;
    let (first, last) = (mean(&losses[..8]), mean(&losses[32..]));
    eprintln!("mean summed loss: first 8 steps {first:.4}, last 8 steps {last:.4}");
    assert!(last < first * 0.85, "loss did not fall: {first:.4} -> {last:.4}");
    assert!(out.path().join("run/model.safetensors").is_file());
}

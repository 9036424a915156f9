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

/// Three tasks of the three kinds on the real model for a few steps: TREC-6 (classification),
/// MRPC (pair-classification) and STS-B (similarity), round-robin. Each task's loss is finite,
/// the dev metrics of each kind are there, and STS-B dev stays well above what a wrecked
/// encoder gives (base model 0.810; the two-task fine-tune without the similarity task fell
/// to 0.64). Twelve steps at 1e-4 move it by one to three points, and by how much depends on
/// the CPU (0.7985 on an AVX-512 machine, 0.7855 on CI's), so the bound is not tighter.
#[test]
fn three_kinds_on_the_real_model() {
    use multi_task_transformer::batch::TaskSampling;
    use multi_task_transformer::task::{TaskKind, TaskSpec};
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let out = tempfile::tempdir().unwrap();
    let mut c = TrainConfig::new(common::real_model_dir(), out.path().join("run"));
    c.data.task_a = Some(root.join("data/trec6/train.tsv"));
    c.data.tasks = vec![
        TaskSpec::new("paraphrase", TaskKind::PairClassification, root.join("data/mrpc/train.tsv"), None),
        TaskSpec::new("sts", TaskKind::Similarity, root.join("data/stsb/train.tsv"), Some(root.join("data/stsb/dev.tsv"))),
    ];
    c.data.limit = Some(96);
    c.optimizer.lr_plan = LrPreset::Uniform;
    c.schedule.batch_size = 16;
    c.schedule.max_steps = Some(12);
    c.schedule.sampling = TaskSampling::RoundRobin;
    c.device = "cpu".into();
    let run = train(&c, Progress::Off, &mut |l: &str| eprintln!("{l}")).unwrap();
    let m = &run.metrics;
    assert_eq!(m.tasks, ["task_a", "paraphrase", "sts"]);
    let e = m.epochs.last().unwrap();
    for t in ["task_a", "paraphrase", "sts"] {
        assert!(e.losses[t].is_finite() && e.losses[t] > 0.0, "{t}: {:?}", e.losses);
    }
    // Round-robin: four batches of each task in twelve steps.
    assert_eq!(m.step_losses_a.iter().filter(|l| l.is_some()).count(), 4);
    assert_eq!(m.step_losses_by_task["sts"].iter().filter(|l| l.is_some()).count(), 4);
    let sts = e.dev_similarity["sts"];
    assert_eq!(sts.n, 1500);
    assert!(sts.spearman > 0.75 && sts.spearman < 0.84, "STS-B dev Spearman {}", sts.spearman);
    let saved = multi_task_transformer::model::MultiTask::read_config(&out.path().join("run")).unwrap();
    assert_eq!(saved.tasks[1].labels.0, ["different", "paraphrase"]);
}

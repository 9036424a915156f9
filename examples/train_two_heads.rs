//! Trains the two-head model (Task A: question type, Task B: sentiment) for a few steps with
//! layer-wise learning rates, then prints the dev accuracy of each task.
//!
//! ```sh
//! cargo run --example train_two_heads                 # bundled data, models/all-MiniLM-L6-v2
//! cargo run --example train_two_heads -- MODEL TASK_A TASK_B OUT
//! ```

use multi_task_transformer::optim::LrPreset;
use multi_task_transformer::train::{train, Progress, TrainConfig};
use std::path::PathBuf;

fn main() -> anyhow::Result<()> {
    let arg = |i: usize, default: &str| std::env::args().nth(i).map_or_else(|| PathBuf::from(default), PathBuf::from);
    let (model, task_a, task_b, out) =
        (arg(1, "models/all-MiniLM-L6-v2"), arg(2, "data/trec6/train.tsv"), arg(3, "data/sst5_3class/train.tsv"), arg(4, "runs/example"));
    let mut cfg = TrainConfig::new(model, out);
    // Files with `text` and `label` columns; here each doubles as its own dev set.
    cfg.data.task_a = Some(task_a.clone());
    cfg.data.task_b = Some(task_b.clone());
    cfg.data.dev_a = Some(task_a);
    cfg.data.dev_b = Some(task_b);
    cfg.data.limit = Some(64);
    cfg.optimizer.lr_plan = LrPreset::Layerwise; // embeddings 1e-6, layers 1e-5, heads 1e-4
    cfg.schedule.batch_size = 8;
    cfg.schedule.max_steps = Some(4);
    cfg.output.overwrite = true; // the example's own folder: replace an earlier run's checkpoint
    cfg.device = "cpu".into();
    let outcome = train(&cfg, Progress::Off, &mut |line: &str| println!("{line}"))?;
    let last = outcome.metrics.epochs.last().expect("one epoch");
    for (task, m) in &last.dev {
        println!("{task}: dev accuracy {:.3} over {} rows", m.accuracy, m.n);
    }
    println!("checkpoint in {}", cfg.output.out.display());
    Ok(())
}

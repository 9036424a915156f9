//! Loads a trained checkpoint and predicts both tasks' labels for a few sentences.
//!
//! ```sh
//! cargo run --bin task4                        # writes runs/task4
//! cargo run --example predict                  # reads runs/task4
//! cargo run --example predict -- path/to/checkpoint
//! ```

use multi_task_transformer::infer::Batching;
use multi_task_transformer::Classifier;
use std::path::PathBuf;

fn main() -> anyhow::Result<()> {
    let dir = std::env::args().nth(1).map_or_else(|| PathBuf::from("runs/task4"), PathBuf::from);
    let (clf, _) = Classifier::load(&dir, tch::Device::Cpu)?;
    let texts = ["Who wrote Hamlet?", "What a dull, lifeless film."];
    let (probs_a, probs_b) = clf.probabilities(&texts, Batching::fixed(32, clf.tokenizer.pad_id()))?;
    let config = &clf.model.config;
    for (i, text) in texts.iter().enumerate() {
        let a = probs_a.get(i as i64).argmax(0, false).int64_value(&[]) as usize;
        let b = probs_b.get(i as i64).argmax(0, false).int64_value(&[]) as usize;
        println!("{text:?}: task_a {} ({:.2}), task_b {} ({:.2})", config.labels_a.0[a], probs_a.double_value(&[i as i64, a as i64]), config.labels_b.0[b], probs_b.double_value(&[i as i64, b as i64]));
    }
    Ok(())
}

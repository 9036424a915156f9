//! Loads a trained checkpoint and predicts every head's label for a few sentences.
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
    // One `[n, k]` probability tensor per classification head, keyed by task name.
    let heads = clf.probabilities(&texts, Batching::fixed(32, clf.tokenizer.pad_id()))?;
    for (i, text) in texts.iter().enumerate() {
        let mut parts = Vec::new();
        for (task, probs) in &heads {
            let labels = &clf.model.config.task(task).expect("a task of the model").1.labels;
            let k = probs.get(i as i64).argmax(0, false).int64_value(&[]) as usize;
            parts.push(format!("{task} {} ({:.2})", labels.0[k], probs.double_value(&[i as i64, k as i64])));
        }
        println!("{text:?}: {}", parts.join(", "));
    }
    Ok(())
}

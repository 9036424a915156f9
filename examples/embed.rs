//! Embeds a few sentences and prints how similar they are.
//!
//! ```sh
//! cargo run --example embed                      # models/all-MiniLM-L6-v2 (scripts/setup.sh)
//! cargo run --example embed -- path/to/model     # any sentence-transformers folder
//! ```

use multi_task_transformer::{EncodeOptions, SentenceEncoder};
use std::path::PathBuf;

fn main() -> anyhow::Result<()> {
    let model = std::env::args().nth(1).map_or_else(|| PathBuf::from("models/all-MiniLM-L6-v2"), PathBuf::from);
    let (encoder, _) = SentenceEncoder::load(&model, tch::Device::Cpu)?;
    let texts = ["How many people live in Paris?", "What is the population of Paris?", "I loved this film."];
    // One L2-normalised 384-d vector per text (for all-MiniLM-L6-v2), rows in input order.
    let vectors = encoder.encode(&texts, EncodeOptions { normalize: true, ..EncodeOptions::default() })?;
    println!("{} vectors of {} dimensions", vectors.size()[0], vectors.size()[1]);
    // Normalised vectors: the dot product is the cosine similarity.
    let cosine = vectors.matmul(&vectors.tr());
    for (i, a) in texts.iter().enumerate() {
        for (j, b) in texts.iter().enumerate().skip(i + 1) {
            println!("cos({a:?}, {b:?}) = {:.3}", cosine.double_value(&[i as i64, j as i64]));
        }
    }
    Ok(())
}

//! The programs in `examples/` build and run (on a tiny random model): embedding, training the
//! two heads, and predicting with the checkpoint that training wrote.

mod common;

use common::{fixture, Cmd};
use std::path::{Path, PathBuf};

/// `target/<profile>/examples/NAME`: `cargo test` builds the examples beside the test binaries.
fn example(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let profile_dir = exe.parent().and_then(Path::parent).unwrap();
    let p = profile_dir.join("examples").join(name);
    assert!(p.is_file(), "{} is missing: `cargo test` builds examples (or run `cargo build --examples`)", p.display());
    p
}

fn run(name: &str, args: &[&Path]) -> String {
    Cmd::new(example(name)).args(args).run().ok().stdout
}

#[test]
fn the_examples_embed_train_and_predict() {
    let f = fixture();
    let out = run("embed", &[&f.model]);
    assert!(out.starts_with("3 vectors of ") && out.matches("cos(").count() == 3, "{out}");
    let ckpt = f.root.join("ckpt");
    let out = run("train_two_heads", &[&f.model, &f.task_a, &f.task_b, &ckpt]);
    assert!(out.contains("task_a: dev accuracy") && out.contains("task_b: dev accuracy"), "{out}");
    let out = run("predict", &[&ckpt]);
    assert_eq!(out.lines().count(), 2, "{out}");
    assert!(out.contains("task_a ") && out.contains("task_b "), "{out}");
}

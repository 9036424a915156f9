//! Shared test helpers.
#![allow(dead_code)]

use multi_task_transformer::testing::write_tiny_model_folder;
use multi_task_transformer::train::{train, Progress, TrainConfig, TrainOutcome};
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

/// Task A: question type from the question word; Task B: sentiment from the adjective.
pub const TASK_A: &str = "text\tlabel\nwhat is the name ?\tENTY\nwho is the name ?\tHUM\nwhere is the city ?\tLOC\nhow many city ?\tNUM\nwhat film is this ?\tENTY\nwho was it ?\tHUM\nwhere was the film ?\tLOC\nhow many films ?\tNUM\n";
pub const TASK_B: &str = "text\tlabel\ni love this film !\tpositive\nthis movie was great .\tpositive\ni hate this film .\tnegative\nthis was awful .\tnegative\nit was a film .\tneutral\nthe movie is a film .\tneutral\nvery fun movie !\tpositive\nvery boring film .\tnegative\n";

/// libtorch's random generator is global: tests that draw from it (initialisation, dropout)
/// must not interleave, or "same seed, same losses" would fail for the wrong reason.
pub static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// A tiny model folder and the two tiny training files in a temporary folder; holds [`SERIAL`].
pub struct Fixture {
    _serial: std::sync::MutexGuard<'static, ()>,
    _dir: tempfile::TempDir,
    pub model: PathBuf,
    pub task_a: PathBuf,
    pub task_b: PathBuf,
    pub root: PathBuf,
}

impl Fixture {
    /// `mtt` command-line options naming the fixture's model and training files.
    pub fn cli_args(&self) -> Vec<String> {
        let p = |x: &std::path::Path| x.display().to_string();
        ["--model", &p(&self.model), "--task-a", &p(&self.task_a), "--task-b", &p(&self.task_b)].map(str::to_string).to_vec()
    }
}

/// Writes the fixture (tiny model seeded 11).
pub fn fixture() -> Fixture {
    let serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("tiny");
    write_tiny_model_folder(&model, 11).unwrap();
    let task_a = dir.path().join("a.tsv");
    let task_b = dir.path().join("b.tsv");
    std::fs::write(&task_a, TASK_A).unwrap();
    std::fs::write(&task_b, TASK_B).unwrap();
    let root = dir.path().to_path_buf();
    Fixture { _serial: serial, _dir: dir, model, task_a, task_b, root }
}

/// Training settings on the fixture's files (dev = training files), CPU, batch 4, into `root/out`.
pub fn config(f: &Fixture, out: &str) -> TrainConfig {
    let mut c = TrainConfig::new(f.model.clone(), f.root.join(out));
    c.data.task_a = Some(f.task_a.clone());
    c.data.task_b = Some(f.task_b.clone());
    c.data.dev_a = Some(f.task_a.clone());
    c.data.dev_b = Some(f.task_b.clone());
    c.device = "cpu".into();
    c.schedule.batch_size = 4;
    c
}

/// Trains `c`, returning the outcome and the logged lines (a failure panics with them).
pub fn run(c: &TrainConfig) -> (TrainOutcome, Vec<String>) {
    let mut lines = Vec::new();
    let out = train(c, Progress::Off, &mut |l: &str| lines.push(l.to_string())).unwrap_or_else(|e| panic!("{e}\n{lines:?}"));
    (out, lines)
}


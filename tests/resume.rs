//! `--resume`: a run stopped after any step (mid-epoch or at an epoch's end) and resumed ends
//! with weights bitwise equal to the uninterrupted run, for full fine-tuning with dropout,
//! clipping and AdamW, for uncertainty weighting, and for a frozen encoder on cached vectors;
//! SIGTERM stops `mtt train` with a checkpoint and a message naming the resume command.

mod common;

use common::{bin, config, fixture, p, run, Cmd, Fixture};
use multi_task_transformer::freeze::Freeze;
use multi_task_transformer::optim::LrPreset;
use multi_task_transformer::train::state::{OPTIMIZER_FILE, RESUME_DIR};
use multi_task_transformer::train::{self, LossWeighting, Progress, RunControl, RunMetrics, TrainConfig};
use multi_task_transformer::Error;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};

fn weights(dir: &Path) -> Vec<u8> {
    std::fs::read(dir.join("model.safetensors")).unwrap()
}

fn metrics(dir: &Path) -> RunMetrics {
    serde_json::from_slice(&std::fs::read(dir.join("metrics.json")).unwrap()).unwrap()
}

/// 16 rows in batches of 4: 4 steps per epoch, 3 epochs.
fn base(f: &Fixture, out: &str) -> TrainConfig {
    let mut c = config(f, out);
    c.schedule.epochs = 3;
    c.optimizer.lr_plan = LrPreset::Uniform;
    c.optimizer.lr_overrides = vec![("encoder".into(), 1e-3), ("classification_head".into(), 1e-2), ("sentiment_head".into(), 1e-2)];
    c.head_dropout = Some(0.2);
    c.optimizer.optim.adamw = true;
    c.optimizer.optim.weight_decay = 0.01;
    c.optimizer.optim.clip_norm = Some(1.0);
    c.optimizer.optim.warmup_steps = 2;
    c.optimizer.optim.linear_decay = true;
    c
}

/// Trains `c` stopping after `stop_at`, resumes, and checks the result against `full`.
fn stop_and_resume(c: &TrainConfig, stop_at: usize, full: &Path) {
    let cut = c.clone();
    let mut lines = Vec::new();
    let ctl = RunControl { interrupt_after: Some(stop_at), ..RunControl::new(Progress::Off) };
    let e = train::train_with(&cut, &ctl, &mut |l: &str| lines.push(l.to_string())).err().expect("the run must stop");
    match &e {
        Error::Interrupted { step, .. } => assert_eq!(*step, stop_at),
        other => panic!("expected an interruption, got {other}"),
    }
    assert!(e.to_string().contains(&format!("saved in {}: continue the run from there (`resume`)", c.output.out.display())), "{e}");
    assert!(c.output.out.join(RESUME_DIR).join("state.json").is_file());
    let mut lines = Vec::new();
    train::resume(&c.output.out, Progress::Off, &mut |l: &str| lines.push(l.to_string())).unwrap_or_else(|e| panic!("{e}\n{lines:?}"));
    assert!(lines[0].starts_with("resuming"), "{lines:?}");
    assert!(weights(&c.output.out) == weights(full), "stopped after step {stop_at}: resumed weights differ from the uninterrupted run's");
    let (a, b) = (metrics(&c.output.out), metrics(full));
    assert_eq!(a.step_losses, b.step_losses, "stopped after step {stop_at}");
    assert_eq!(a.epochs.len(), b.epochs.len());
    for (x, y) in a.epochs.iter().zip(&b.epochs) {
        assert_eq!((x.steps, x.loss_a.to_bits(), x.loss_b.to_bits()), (y.steps, y.loss_a.to_bits(), y.loss_b.to_bits()));
        assert_eq!(serde_json::to_string(&x.dev).unwrap(), serde_json::to_string(&y.dev).unwrap());
    }
}

#[test]
fn resumed_runs_end_bitwise_equal_to_uninterrupted_ones() {
    let f = fixture();
    let full = base(&f, "full");
    run(&full);
    // Mid-epoch (epoch 2, batch 2 of 4), and exactly at the end of epoch 1.
    for stop_at in [6, 4] {
        stop_and_resume(&base(&f, &format!("cut-{stop_at}")), stop_at, &full.output.out);
    }
    // A finished run has nothing to resume.
    let e = train::resume(&full.output.out, Progress::Off, &mut |_: &str| {}).err().unwrap().to_string();
    assert!(e.contains("nothing to resume"), "{e}");
}

#[test]
fn uncertainty_weighting_and_cached_heads_resume_bitwise() {
    let f = fixture();
    let mut u = base(&f, "u-full");
    u.optimizer.loss_weighting = LossWeighting::Uncertainty;
    run(&u);
    let mut cut = u.clone();
    cut.output.out = f.root.join("u-cut");
    stop_and_resume(&cut, 7, &u.output.out);

    let mut h = config(&f, "h-full");
    h.schedule.epochs = 3;
    h.optimizer.freeze = Freeze::Encoder;
    h.optimizer.lr_plan = LrPreset::Uniform;
    h.optimizer.lr_overrides = vec![("classification_head".into(), 3e-2), ("sentiment_head".into(), 3e-2)];
    let (out, _) = run(&h);
    assert!(out.metrics.cached);
    let mut cut = h.clone();
    cut.output.out = f.root.join("h-cut");
    stop_and_resume(&cut, 5, &h.output.out);
}

#[test]
fn a_damaged_resume_state_is_refused_naming_the_file() {
    let f = fixture();
    let c = base(&f, "cut");
    let ctl = RunControl { interrupt_after: Some(3), ..RunControl::new(Progress::Off) };
    assert!(train::train_with(&c, &ctl, &mut |_: &str| {}).is_err());
    let p = c.output.out.join(RESUME_DIR).join(OPTIMIZER_FILE);
    let mut bytes = std::fs::read(&p).unwrap();
    let n = bytes.len();
    bytes[n / 2] ^= 0x10;
    std::fs::write(&p, bytes).unwrap();
    let e = train::resume(&c.output.out, Progress::Off, &mut |_: &str| {}).err().unwrap().to_string();
    assert!(e.contains(OPTIMIZER_FILE) && e.contains("SHA-256"), "{e}");
}

#[test]
fn sigterm_stops_mtt_train_with_a_checkpoint_and_resume_finishes_the_run() {
    let f = fixture();
    let args = |out: &str| -> Vec<String> {
        let mut a = vec!["train".to_string()];
        a.extend(f.cli_args());
        a.extend(["--out", p(&f.root.join(out)), "--device", "cpu", "--batch-size", "2", "--epochs", "40", "--lr-plan", "uniform", "--progress-every", "0"].map(str::to_string));
        a
    };
    let mut child = Command::new(bin("mtt")).args(args("sig")).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    // Wait until training is under way (a progress line), then ask it to stop.
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    while out.read_line(&mut line).unwrap() > 0 && !line.contains(" step ") {
        line.clear();
    }
    assert!(line.contains(" step "), "no progress line before the end of output");
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let drain = std::thread::spawn(move || std::io::copy(&mut out, &mut std::io::sink()));
    let rest = child.wait_with_output().unwrap();
    drain.join().unwrap().unwrap();
    let stderr = String::from_utf8_lossy(&rest.stderr);
    assert_eq!(rest.status.code(), Some(130), "{stderr}");
    let dir = f.root.join("sig");
    assert!(stderr.contains(&format!("continue with: mtt train --resume {}", dir.display())), "{stderr}");
    assert!(dir.join("model.safetensors").is_file() && dir.join("resume/state.json").is_file());
    let stopped: RunMetrics = metrics(&dir);
    assert!(stopped.step_losses.len() < 40 * 8, "stopped after {} steps", stopped.step_losses.len());

    // Options that do not change the result are accepted beside --resume.
    Cmd::mtt(["train", "--resume", p(&dir), "--progress-every", "0", "--device", "cpu"]).run().ok();
    Cmd::mtt(args("full")).run().ok();
    assert!(weights(&dir) == weights(&f.root.join("full")), "resumed weights differ from the uninterrupted run's");

    // --resume takes no other training option.
    let both = Cmd::mtt(["train", "--resume", "x", "--epochs", "2"]).run();
    assert!(!both.success());
    assert!(both.stderr.contains("cannot be used with"), "{}", both.stderr);
}

//! Training never loses a user's files and never hangs before it starts: the base model's
//! folder, a folder of the user's and an earlier checkpoint are refused as `--out` (the last
//! replaced only with `--overwrite`); one run at a time per folder; a non-finite loss on a fresh
//! folder says that nothing was saved; SIGTERM/SIGINT before training (here: blocked opening a
//! FIFO) end the process at once with status 130 and nothing written; `--resume` accepts the
//! options that do not change the result.

mod common;

use common::{bin, config, fixture, p, run, Cmd, Fixture, Out};
use multi_task_transformer::train::output::{OutputLock, LOCK_FILE};
use multi_task_transformer::train::{train, Progress};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// `mtt train` on the fixture's data with `extra` options (CPU, 1 step).
fn mtt_train(f: &Fixture, extra: &[&str]) -> Out {
    Cmd::mtt(["train"])
        .args(f.cli_args())
        .args(["--device", "cpu", "--batch-size", "4", "--max-steps", "1", "--progress-every", "0"])
        .args(extra)
        .run()
}

/// Every file under `dir` with its bytes, sorted by path.
fn snapshot(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = vec![];
    for e in std::fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        if e.path().is_dir() {
            out.extend(snapshot(&e.path()));
        } else {
            out.push((p(&e.path()).to_string(), std::fs::read(e.path()).unwrap()));
        }
    }
    out.sort();
    out
}

#[test]
fn out_equal_to_or_inside_the_model_folder_is_refused_and_the_model_is_untouched() {
    let f = fixture();
    let before = snapshot(&f.model);
    let model = p(&f.model);
    for out in [model.to_string(), format!("{model}/"), format!("{model}/../tiny"), format!("{model}/finetuned")] {
        let o = mtt_train(&f, &["--out", &out]);
        assert_eq!(o.code(), Some(1), "--out {out}: {}", o.stderr);
        assert!(o.stderr.contains("base model folder"), "--out {out}: {}", o.stderr);
        // The refusal comes before anything is read, written or trained.
        assert!(!o.stdout.contains("training on"));
    }
    assert!(snapshot(&f.model) == before, "the base model folder changed");
    assert!(!f.model.join("finetuned").exists());
}

#[test]
fn a_users_folder_is_refused_and_a_checkpoint_is_replaced_only_with_overwrite() {
    let f = fixture();
    let mine = f.root.join("mine");
    std::fs::create_dir_all(&mine).unwrap();
    std::fs::write(mine.join("config.json"), "{\"my\": \"settings\"}").unwrap();
    for extra in [&[][..], &["--overwrite"][..]] {
        let mut a = vec!["--out", p(&mine)];
        a.extend_from_slice(extra);
        let o = mtt_train(&f, &a);
        assert_eq!(o.code(), Some(1), "{}", o.stderr);
        assert!(o.stderr.contains("is not empty and holds no checkpoint of mtt's (config.json)"), "{}", o.stderr);
    }
    assert_eq!(std::fs::read_to_string(mine.join("config.json")).unwrap(), "{\"my\": \"settings\"}");
    assert_eq!(std::fs::read_dir(&mine).unwrap().count(), 1, "something was written into the user's folder");

    let ckpt = f.root.join("ckpt");
    let o = mtt_train(&f, &["--out", p(&ckpt), "--seed", "1"]);
    assert!(o.success(), "{}", o.stderr);
    let first = snapshot(&ckpt);
    let o = mtt_train(&f, &["--out", p(&ckpt), "--seed", "2"]);
    assert_eq!(o.code(), Some(1));
    assert!(o.stderr.contains("holds the checkpoint of an earlier run: pass --overwrite"), "{}", o.stderr);
    assert!(snapshot(&ckpt) == first, "the refused run changed the checkpoint");
    let o = mtt_train(&f, &["--out", p(&ckpt), "--seed", "2", "--overwrite"]);
    assert!(o.success(), "{}", o.stderr);
    assert!(o.stdout.contains("replacing the checkpoint of an earlier run"));
    let w = |s: &[(String, Vec<u8>)]| s.iter().find(|(n, _)| n.ends_with("/model.safetensors")).unwrap().1.clone();
    assert!(w(&snapshot(&ckpt)) != w(&first), "--overwrite did not replace the weights");
    assert!(!ckpt.join(LOCK_FILE).exists(), "the lock file outlived the run");
}

#[test]
fn a_second_trainer_on_the_same_folder_fails_at_once_naming_the_holder() {
    let f = fixture();
    let out = f.root.join("busy");
    std::fs::create_dir_all(&out).unwrap();
    let held = OutputLock::acquire(&out).unwrap();
    let t0 = Instant::now();
    let o = mtt_train(&f, &["--out", p(&out)]);
    assert_eq!(o.code(), Some(1), "{}", o.stderr);
    assert!(o.stderr.contains(&format!("is in use by another training run (PID {};", std::process::id())), "{}", o.stderr);
    assert!(t0.elapsed() < Duration::from_secs(20));
    assert_eq!(std::fs::read_dir(&out).unwrap().count(), 1, "only the holder's lock file");
    drop(held);
    // A lock file left by a killed process holds no lock: the next run goes ahead.
    std::fs::write(out.join(LOCK_FILE), "999999\n").unwrap();
    let o = mtt_train(&f, &["--out", p(&out)]);
    assert!(o.success(), "{}", o.stderr);
    assert!(out.join("model.safetensors").is_file() && !out.join(LOCK_FILE).exists());
}

#[test]
fn a_non_finite_loss_on_a_fresh_folder_says_nothing_was_saved() {
    let f = fixture();
    let mut bad = config(&f, "fresh-nan");
    bad.optimizer.lr_overrides = vec![("".into(), 1e30)];
    let e = train(&bad, Progress::Off, &mut |_: &str| {}).err().expect("a non-finite loss must stop training").to_string();
    assert!(e.contains("holds no checkpoint: the run stopped before the end of its first epoch"), "{e}");
    assert!(!e.contains("left as it was"), "{e}");
    assert!(!f.root.join("fresh-nan/model.safetensors").exists());
}

#[test]
fn a_task_without_rows_shows_no_rows_instead_of_nan() {
    let f = fixture();
    let mut c = config(&f, "only-a");
    c.data.only_task = Some(multi_task_transformer::data::Task::A);
    let (_, lines) = run(&c);
    let epoch = lines.iter().find(|l| l.starts_with("Epoch [1/1]")).expect("an epoch line");
    assert!(epoch.contains("Loss Task B: no rows") && !epoch.contains("NaN"), "{epoch}");
}

/// Waits up to `limit` for `child`, killing it (and failing) past that.
fn wait_at_most(child: &mut std::process::Child, limit: Duration) -> std::process::ExitStatus {
    let t0 = Instant::now();
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return s;
        }
        if t0.elapsed() > limit {
            child.kill().unwrap();
            panic!("the process did not end within {limit:?} of the signal");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits (at most 30 s) until process `pid` sleeps in the kernel waiting for a FIFO's other end;
/// where the kernel does not name the wait (`/proc/PID/wchan` reads `0`), waits 3 s instead.
fn wait_blocked_on_fifo(pid: u32) {
    let t0 = std::time::Instant::now();
    while t0.elapsed() < Duration::from_secs(30) {
        match std::fs::read_to_string(format!("/proc/{pid}/wchan")) {
            Ok(w) if w.contains("partner") || w.contains("fifo") => return,
            Ok(w) if w.trim() == "0" && t0.elapsed() > Duration::from_secs(3) => return,
            _ => std::thread::sleep(Duration::from_millis(20)),
        }
    }
    panic!("mtt train did not block on the FIFO within 30 s");
}

#[test]
fn a_signal_before_training_ends_the_process_at_once_and_writes_nothing() {
    let f = fixture();
    let fifo = f.root.join("fifo.tsv");
    let c = std::ffi::CString::new(p(&fifo)).unwrap();
    // SAFETY: mkfifo on a NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    for (sig, name) in [(libc::SIGTERM, "term"), (libc::SIGINT, "int")] {
        let out = f.root.join(format!("never-{name}"));
        let mut child = Command::new(bin("mtt"))
            .args(["train", "--model", p(&f.model), "--task-a", p(&fifo), "--task-b", p(&f.task_b), "--device", "cpu", "--out", p(&out)])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // Blocked opening the FIFO, which has no writer (signal handlers are installed before
        // any file is opened; a fixed wait raced libtorch's loading on a busy machine).
        wait_blocked_on_fifo(child.id());
        assert!(child.try_wait().unwrap().is_none(), "mtt train ended before the signal");
        // SAFETY: a signal to our own child.
        unsafe { libc::kill(child.id() as i32, sig) };
        let status = wait_at_most(&mut child, Duration::from_secs(5));
        assert_eq!(status.code(), Some(130), "{name}");
        assert!(!out.exists(), "{name}: the output folder was created");
    }
}

#[test]
fn doubtful_training_labels_are_warned_about_on_stderr_once_each() {
    let f = fixture();
    let a = f.root.join("one-label.tsv");
    std::fs::write(&a, "text\tlabel\nwhat is it ?\tENTY\nwhat film is this ?\tENTY\n").unwrap();
    let b = f.root.join("cased.tsv");
    std::fs::write(&b, "text\tlabel\ni love this film !\tpositive\nthis was awful .\tnegative\nvery fun movie !\tPositive\n").unwrap();
    let out = f.root.join("warned");
    let o = Cmd::mtt(["train", "--model", p(&f.model), "--task-a", p(&a), "--task-b", p(&b), "--out", p(&out), "--device", "cpu", "--max-steps", "1", "--progress-every", "0"]).run();
    let err = &o.stderr;
    assert!(o.success(), "{err}");
    assert_eq!(err.matches("warning: task_a: the training data").count(), 1, "{err}");
    assert!(err.contains("has a single label 'ENTY'"), "{err}");
    assert_eq!(err.matches("differ only in case").count(), 1, "{err}");
    assert!(!o.stdout.contains("warning:"), "warnings belong on stderr");
}

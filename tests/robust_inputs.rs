//! "Nothing lost, nothing hung": inputs that are wrong in one place lose nothing around it and
//! end the real `mtt` binary with a clear error (exit status 1, never a panic's 101):
//!
//! * a line that is not UTF-8 in the input of `mtt embed` / `mtt predict`: every line before it is
//!   written, then the error names the file and the line; `--skip-invalid` skips and reports it;
//! * a UTF-8 byte order mark starts no text (read here from a FIFO);
//! * a model folder (or checkpoint) whose config has a size of 0 or below;
//! * a path that is a file, `/dev/null`, a symlink loop, a directory or missing where a model
//!   folder, a data file or an input is expected: the error says what it is.

mod common;

use common::{p, write_tiny_model, Cmd, Out};
use multi_task_transformer::data::Labels;
use multi_task_transformer::Classifier;
use std::path::{Path, PathBuf};

const TASK_A: &str = "text\tlabel\nwhat is the name ?\tENTY\nwho is it ?\tHUM\nwhere is the city ?\tLOC\nhow many films ?\tNUM\n";
const TASK_B: &str = "text\tlabel\ni love this film !\tpositive\nthis was awful .\tnegative\nit was a film .\tneutral\nvery fun movie !\tpositive\n";

/// Runs `mtt args` with `stdin` as its standard input; it must not panic.
fn mtt(args: &[&str], stdin: &[u8]) -> Out {
    let run = Cmd::mtt(args).stdin(stdin).run();
    assert!(!run.stderr.contains("panicked"), "mtt {args:?} panicked: {}", run.stderr);
    run
}

/// A tiny model folder `m` and a checkpoint `ckpt` made from it (fresh heads) in a temporary folder.
struct Fixture {
    dir: tempfile::TempDir,
    model: PathBuf,
    ckpt: PathBuf,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("m");
    // The tiny weights and the fresh heads are drawn from libtorch's global generator.
    let _serial = common::serial();
    write_tiny_model(&model, 3);
    let names = |v: &[&str]| Labels(v.iter().map(|s| s.to_string()).collect());
    let (clf, _) = Classifier::from_base(&model, multi_task_transformer::task::seed_tasks(names(&["ENTY", "HUM"]), names(&["negative", "positive"])), 0.0, tch::Device::Cpu).unwrap();
    let ckpt = dir.path().join("ckpt");
    clf.save(&ckpt).unwrap();
    Fixture { dir, model, ckpt }
}

/// 3,005 lines, the 3,001st with a byte that is not UTF-8.
fn input_with_a_bad_line(dir: &Path) -> PathBuf {
    let mut bytes = Vec::new();
    for i in 1..=3005 {
        if i == 3001 {
            bytes.extend_from_slice(b"what is the \xff city ?\n");
        } else {
            bytes.extend_from_slice(format!("what is the name {i} ?\n").as_bytes());
        }
    }
    let path = dir.join("in.txt");
    std::fs::write(&path, bytes).unwrap();
    path
}

/// The `text` of each JSON line.
fn texts(out: &str) -> Vec<String> {
    out.lines().map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["text"].as_str().unwrap().to_string()).collect()
}

fn expected_texts(skip_bad: bool) -> Vec<String> {
    (1..=3005).filter(|&i| if skip_bad { i != 3001 } else { i < 3001 }).map(|i| format!("what is the name {i} ?")).collect()
}

#[test]
fn embed_writes_every_line_before_an_invalid_one_then_names_it() {
    let f = fixture();
    let input = input_with_a_bad_line(f.dir.path());
    // The default window (4,096 lines) holds the whole input: the bad line is in the first one.
    // (Smaller windows: tests/encoder_tiny.rs and the property tests of `Lines::window`.)
    let r = mtt(&["embed", "--model", p(&f.model), "--input", p(&input), "--device", "cpu"], b"");
    assert_eq!(r.code(), Some(1), "{}", r.stderr);
    assert_eq!(texts(&r.stdout), expected_texts(false));
    assert!(r.stderr.contains(&format!("{}:3001: not valid UTF-8 (byte 13 of the line)", input.display())), "{}", r.stderr);
    assert!(r.stderr.contains("the 3000 line(s) before it were processed and written (--skip-invalid skips such lines)"), "{}", r.stderr);
}

#[test]
fn embed_skip_invalid_reports_each_skipped_line() {
    let f = fixture();
    let input = input_with_a_bad_line(f.dir.path());
    let r = mtt(&["embed", "--model", p(&f.model), "--input", p(&input), "--device", "cpu", "--skip-invalid"], b"");
    assert_eq!(r.code(), Some(0), "{}", r.stderr);
    assert_eq!(texts(&r.stdout), expected_texts(true));
    assert!(r.stderr.contains(&format!("mtt embed: skipped line 3001 of {}: not valid UTF-8 (byte 13 of the line)\n", input.display())), "{}", r.stderr);
    assert!(r.stderr.contains(&format!("mtt embed: skipped 1 invalid line of 3005 read from {}\n", input.display())), "{}", r.stderr);
    // Several bad lines (the first one too) from stdin, across windows.
    let r = mtt(&["embed", "--model", p(&f.model), "--device", "cpu", "--skip-invalid", "--window", "1"], b"\xfe\nfirst\nbad \xff\nthird\n\xc3\n");
    assert_eq!(r.code(), Some(0), "{}", r.stderr);
    assert_eq!(texts(&r.stdout), vec!["first", "third"]);
    let skipped: Vec<&str> = r.stderr.lines().filter(|l| l.starts_with("mtt embed: skipped line ")).collect();
    assert_eq!(skipped.len(), 3, "{}", r.stderr);
    for (s, line) in skipped.iter().zip([1, 3, 5]) {
        assert!(s.starts_with(&format!("mtt embed: skipped line {line} of <stdin>: not valid UTF-8")), "{s}");
    }
    assert!(r.stderr.contains("mtt embed: skipped 3 invalid lines of 5 read from <stdin>"), "{}", r.stderr);
}

#[test]
fn predict_writes_every_line_before_an_invalid_one_then_names_it() {
    let f = fixture();
    let input = input_with_a_bad_line(f.dir.path());
    let r = mtt(&["predict", "--model", p(&f.ckpt), "--input", p(&input), "--device", "cpu"], b"");
    assert_eq!(r.code(), Some(1), "{}", r.stderr);
    assert_eq!(texts(&r.stdout), expected_texts(false));
    let first: serde_json::Value = serde_json::from_str(r.stdout.lines().next().unwrap()).unwrap();
    assert!(first["task_a"]["label"].is_string() && first["task_b"]["probs"].is_object(), "format kept: {first}");
    assert!(r.stderr.contains(&format!("{}:3001: not valid UTF-8", input.display())), "{}", r.stderr);
    let r = mtt(&["predict", "--model", p(&f.ckpt), "--input", p(&input), "--device", "cpu", "--skip-invalid"], b"");
    assert_eq!(r.code(), Some(0), "{}", r.stderr);
    assert_eq!(texts(&r.stdout), expected_texts(true));
    assert!(r.stderr.contains(&format!("mtt predict: skipped line 3001 of {}: not valid UTF-8", input.display())), "{}", r.stderr);
    assert!(r.stderr.contains("mtt predict: skipped 1 invalid line of 3005 read from"), "{}", r.stderr);
}

/// Rewrites the JSON file `path` with `edit`.
fn edit_json(path: &Path, edit: impl FnOnce(&mut serde_json::Value)) {
    let mut v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    edit(&mut v);
    std::fs::write(path, serde_json::to_string_pretty(&v).unwrap()).unwrap();
}

#[test]
fn a_size_of_zero_or_below_is_an_error_not_a_panic() {
    let f = fixture();
    let d = f.dir.path();
    let (a, b) = (d.join("a.tsv"), d.join("b.tsv"));
    std::fs::write(&a, TASK_A).unwrap();
    std::fs::write(&b, TASK_B).unwrap();
    for v in [0i64, -1] {
        let bad = d.join(format!("bad{v}"));
        write_tiny_model(&bad, 3);
        let config = bad.join("config.json");
        edit_json(&config, |c| c["hidden_size"] = v.into());
        let want = format!("{}: hidden_size is {v}: must be at least 1", config.display());
        let out = d.join(format!("out{v}"));
        let mut runs = vec![vec!["embed", "--model", p(&bad), "--device", "cpu"]];
        if v == 0 {
            // (Each process costs half a second of libtorch start-up: -1 takes the same path.)
            runs.push(vec!["doctor", "--model", p(&bad)]);
            runs.push(vec!["train", "--model", p(&bad), "--task-a", p(&a), "--task-b", p(&b), "--out", p(&out), "--device", "cpu", "--max-steps", "1", "--progress-every", "0"]);
        }
        for args in runs {
            let r = mtt(&args, b"what is it ?\n");
            assert_eq!(r.code(), Some(1), "{args:?}: {}", r.stderr);
            assert!(r.stderr.contains(&want), "{args:?}: {}", r.stderr);
        }
        // A checkpoint's config (without checksums, as older checkpoints are) is checked too.
        let ckpt = d.join(format!("ckpt{v}"));
        std::fs::create_dir(&ckpt).unwrap();
        for file in ["model.safetensors", "config.json", "vocab.txt"] {
            std::fs::copy(f.ckpt.join(file), ckpt.join(file)).unwrap();
        }
        edit_json(&ckpt.join("config.json"), |c| {
            c["encoder"]["bert"]["hidden_size"] = v.into();
            c.as_object_mut().unwrap().remove("integrity");
        });
        let want = format!("{}: encoder.bert.hidden_size is {v}: must be at least 1", ckpt.join("config.json").display());
        let r = mtt(&["predict", "--model", p(&ckpt), "--device", "cpu"], b"what is it ?\n");
        assert_eq!(r.code(), Some(1), "{}", r.stderr);
        assert!(r.stderr.contains(&want), "{}", r.stderr);
    }
}

#[test]
fn paths_that_are_not_what_they_should_be_say_what_they_are() {
    let f = fixture();
    let d = f.dir.path();
    let file = d.join("file.txt");
    std::fs::write(&file, "what is it ?\n").unwrap();
    let folder = d.join("folder.tsv");
    std::fs::create_dir(&folder).unwrap();
    let looped = d.join("loop");
    std::os::unix::fs::symlink(&looped, &looped).unwrap();
    let missing = d.join("missing");
    let b = d.join("b.tsv");
    std::fs::write(&b, TASK_B).unwrap();
    let null = Path::new("/dev/null");
    const LOOP: &str = "is a symlink loop (too many levels of symbolic links)";

    // --model: not a folder (`mtt doctor` on one of them; `mtt predict` reads checkpoints).
    let models: [(&Path, String); 4] = [
        (&file, "is a regular file, not a directory".into()),
        (null, "is a character device, not a directory".into()),
        (&looped, LOOP.into()),
        (&missing, "missing the folder itself (it does not exist)".into()),
    ];
    for (i, (m, is)) in models.iter().enumerate() {
        let mut runs = vec![vec!["embed", "--model", p(m), "--device", "cpu"]];
        if m == &null {
            runs.push(vec!["doctor", "--model", p(m)]);
        }
        for args in runs {
            let (cmd, r) = (args[0], mtt(&args, b"x\n"));
            assert_eq!(r.code(), Some(1), "{cmd} {m:?}: {}", r.stderr);
            assert!(r.stderr.contains(&format!("model folder {}: {is}", m.display())), "{cmd} {m:?}: {}", r.stderr);
        }
        if i >= 2 {
            let r = mtt(&["predict", "--model", p(m), "--device", "cpu"], b"x\n");
            let is = if *m == missing.as_path() { "does not exist" } else { is.as_str() };
            assert!(r.code() == Some(1) && r.stderr.contains(&format!("checkpoint folder {}: {is}", m.display())), "predict {m:?}: {}", r.stderr);
        }
    }

    // Training data: a directory, /dev/null (a symlink loop: the unit tests of `read_labelled`).
    for (i, (data, is)) in [(&folder as &Path, "is a directory, not a file"), (null, "is not a regular file (it is a character device)")].into_iter().enumerate() {
        let out = d.join(format!("out{i}"));
        let r = mtt(&["train", "--model", p(&f.model), "--task-a", p(data), "--task-b", p(&b), "--out", p(&out), "--device", "cpu", "--max-steps", "1"], b"");
        assert_eq!(r.code(), Some(1), "{data:?}: {}", r.stderr);
        assert!(r.stderr.contains(&format!("data file {}: {is}", data.display())), "{data:?}: {}", r.stderr);
    }

    // Inputs of embed and predict (one reader, tried with embed): a directory or a loop is
    // refused, /dev/null and FIFOs are read.
    for (input, is) in [(&folder as &Path, "is a directory, not a file"), (&looped, LOOP)] {
        let r = mtt(&["embed", "--model", p(&f.model), "--input", p(input), "--device", "cpu"], b"");
        assert_eq!(r.code(), Some(1), "{input:?}: {}", r.stderr);
        assert!(r.stderr.contains(&format!("input {}: {is}", input.display())), "{input:?}: {}", r.stderr);
    }
    let r = mtt(&["embed", "--model", p(&f.model), "--input", "/dev/null", "--device", "cpu"], b"");
    assert_eq!((r.code(), r.stdout.as_str()), (Some(0), ""), "/dev/null: {}", r.stderr);
    for cmd in ["embed", "predict"] {
        let model = if cmd == "embed" { &f.model } else { &f.ckpt };
        let fifo = d.join(format!("{cmd}.fifo"));
        let c = std::ffi::CString::new(p(&fifo)).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let writer = {
            let fifo = fifo.clone();
            // A byte order mark starts no text.
            std::thread::spawn(move || std::fs::write(fifo, "\u{feff}what is it ?\nlove\n").unwrap())
        };
        let r = mtt(&[cmd, "--model", p(model), "--input", p(&fifo), "--device", "cpu"], b"");
        writer.join().unwrap();
        assert_eq!((r.code(), texts(&r.stdout)), (Some(0), vec!["what is it ?".to_string(), "love".to_string()]), "{cmd} FIFO with a BOM: {}", r.stderr);
    }
}

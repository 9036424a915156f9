//! Shared test helpers: the tiny fixture and its training settings, the lock around libtorch's
//! global random generator ([`SERIAL`], [`serial`], [`tiny_model`], [`write_tiny_model`]), running
//! this package's binaries ([`Cmd`], [`bin`]) and paths as arguments ([`p`]).
#![allow(dead_code)]

use multi_task_transformer::testing::write_tiny_model_folder;
use multi_task_transformer::train::{train, Progress, TrainConfig, TrainOutcome};
use std::cell::Cell;
use std::ffi::OsStr;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};

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

/// A path as a command-line argument (test paths are UTF-8).
pub fn p(x: &Path) -> &str {
    x.to_str().unwrap_or_else(|| panic!("{} is not UTF-8", x.display()))
}

/// Task A: question type from the question word; Task B: sentiment from the adjective.
pub const TASK_A: &str = "text\tlabel\nwhat is the name ?\tENTY\nwho is the name ?\tHUM\nwhere is the city ?\tLOC\nhow many city ?\tNUM\nwhat film is this ?\tENTY\nwho was it ?\tHUM\nwhere was the film ?\tLOC\nhow many films ?\tNUM\n";
pub const TASK_B: &str = "text\tlabel\ni love this film !\tpositive\nthis movie was great .\tpositive\ni hate this film .\tnegative\nthis was awful .\tnegative\nit was a film .\tneutral\nthe movie is a film .\tneutral\nvery fun movie !\tpositive\nvery boring film .\tnegative\n";

// ---------------------------------------------------------------------------------------------
// libtorch's global random generator

/// libtorch's random generator is global: tests that draw from it (initialisation, dropout)
/// must not interleave, or "same seed, same losses" would fail for the wrong reason. Take it
/// through [`serial`] (or [`fixture`], [`tiny_model`], [`write_tiny_model`], which do).
pub static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

thread_local! {
    /// Whether this thread holds [`SERIAL`] through a [`Serial`].
    static HOLDS_SERIAL: Cell<bool> = const { Cell::new(false) };
}

/// [`SERIAL`], held until dropped. Taking it again on the thread that holds it is a no-op (so a
/// test holding a [`Fixture`] or [`TinyModel`] can write another tiny model).
pub struct Serial(Option<std::sync::MutexGuard<'static, ()>>);

/// Takes [`SERIAL`] (a poisoned lock is taken all the same: the test that panicked has failed).
pub fn serial() -> Serial {
    if HOLDS_SERIAL.with(Cell::get) {
        return Serial(None);
    }
    let guard = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    HOLDS_SERIAL.with(|h| h.set(true));
    Serial(Some(guard))
}

impl Drop for Serial {
    fn drop(&mut self) {
        if self.0.is_some() {
            HOLDS_SERIAL.with(|h| h.set(false));
        }
    }
}

/// Writes a tiny random model folder at `dir` (weights drawn after `tch::manual_seed(seed)`),
/// holding [`SERIAL`] while it draws.
pub fn write_tiny_model(dir: &Path, seed: i64) {
    let _serial = serial();
    write_tiny_model_folder(dir, seed).unwrap_or_else(|e| panic!("writing the tiny model {}: {e}", dir.display()));
}

/// A tiny model folder (`dir/m`) in a temporary folder; holds [`SERIAL`] for as long as it lives,
/// so the test's own draws (building a model before loading its weights, fresh heads) are under
/// the lock too.
pub struct TinyModel {
    _serial: Serial,
    pub dir: tempfile::TempDir,
    pub model: PathBuf,
}

/// Writes a [`TinyModel`] seeded `seed`.
pub fn tiny_model(seed: i64) -> TinyModel {
    let serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("m");
    write_tiny_model(&model, seed);
    TinyModel { _serial: serial, dir, model }
}

// ---------------------------------------------------------------------------------------------
// The fixture: a tiny model and tiny training files

/// A tiny model folder and the two tiny training files in a temporary folder; holds [`SERIAL`].
pub struct Fixture {
    _serial: Serial,
    _dir: tempfile::TempDir,
    pub model: PathBuf,
    pub task_a: PathBuf,
    pub task_b: PathBuf,
    pub root: PathBuf,
}

impl Fixture {
    /// `mtt` command-line options naming the fixture's model and training files.
    pub fn cli_args(&self) -> Vec<String> {
        ["--model", p(&self.model), "--task-a", p(&self.task_a), "--task-b", p(&self.task_b)].map(str::to_string).to_vec()
    }
}

/// Writes the fixture (tiny model seeded 11).
pub fn fixture() -> Fixture {
    let serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("tiny");
    write_tiny_model(&model, 11);
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

// ---------------------------------------------------------------------------------------------
// Running the binaries

/// The path of one of this package's binaries (`mtt`, `task1`..`task4`), as cargo built it for
/// the integration tests. For tests that spawn a process themselves (to signal it, or read its
/// output while it runs); the others use [`Cmd`].
pub fn bin(name: &str) -> &'static str {
    match name {
        "mtt" => env!("CARGO_BIN_EXE_mtt"),
        "task1" => env!("CARGO_BIN_EXE_task1"),
        "task2" => env!("CARGO_BIN_EXE_task2"),
        "task3" => env!("CARGO_BIN_EXE_task3"),
        "task4" => env!("CARGO_BIN_EXE_task4"),
        other => panic!("no binary named {other}"),
    }
}

/// A command line run to its end: `Cmd::mtt(["embed", "--model", p(&m)]).stdin("love\n").run()`.
/// Standard input is empty unless [`Cmd::stdin`] gives bytes (written from a thread, so a large
/// input cannot block against a full stdout); stdout and stderr are captured into an [`Out`].
pub struct Cmd {
    command: Command,
    /// The program's file name and arguments, for messages.
    what: Vec<String>,
    stdin: Option<Vec<u8>>,
}

impl Cmd {
    /// Any program (a Python script, an example): prefer [`Cmd::mtt`] and [`Cmd::bin`].
    pub fn new(program: impl AsRef<OsStr>) -> Cmd {
        let program = program.as_ref();
        let name = Path::new(program).file_name().unwrap_or(program).to_string_lossy().into_owned();
        Cmd { command: Command::new(program), what: vec![name], stdin: None }
    }

    /// The binary `name` of this package (see [`bin`]) with `args`.
    pub fn bin<S: AsRef<OsStr>>(name: &str, args: impl IntoIterator<Item = S>) -> Cmd {
        Cmd::new(bin(name)).args(args)
    }

    /// `mtt ARGS...`.
    pub fn mtt<S: AsRef<OsStr>>(args: impl IntoIterator<Item = S>) -> Cmd {
        Cmd::bin("mtt", args)
    }

    pub fn arg(self, arg: impl AsRef<OsStr>) -> Cmd {
        self.args([arg])
    }

    pub fn args<S: AsRef<OsStr>>(mut self, args: impl IntoIterator<Item = S>) -> Cmd {
        for a in args {
            self.what.push(a.as_ref().to_string_lossy().into_owned());
            self.command.arg(a);
        }
        self
    }

    /// Bytes for standard input (then end of file).
    pub fn stdin(mut self, bytes: impl Into<Vec<u8>>) -> Cmd {
        self.stdin = Some(bytes.into());
        self
    }

    pub fn env(mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> Cmd {
        self.command.env(key, value);
        self
    }

    pub fn env_remove(mut self, key: impl AsRef<OsStr>) -> Cmd {
        self.command.env_remove(key);
        self
    }

    pub fn current_dir(mut self, dir: impl AsRef<Path>) -> Cmd {
        self.command.current_dir(dir);
        self
    }

    /// Runs the command to its end. Panics only if it cannot be started; its status is for the
    /// caller to check ([`Out::ok`], [`Out::code`]).
    pub fn run(self) -> Out {
        let Cmd { mut command, what, stdin } = self;
        let what = format!("{} {:?}", what[0], &what[1..]);
        command.stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() }).stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = command.spawn().unwrap_or_else(|e| panic!("cannot start {what}: {e}"));
        let writer = stdin.map(|bytes| {
            let mut input = child.stdin.take().expect("piped stdin");
            std::thread::spawn(move || match input.write_all(&bytes) {
                // The program ended (or closed its input) before reading all of it: its status
                // and output say what happened.
                Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => panic!("writing the standard input: {e}"),
                _ => {}
            })
        });
        let o = child.wait_with_output().unwrap_or_else(|e| panic!("waiting for {what}: {e}"));
        if let Some(w) = writer {
            w.join().unwrap_or_else(|_| panic!("{what}: writing its standard input failed"));
        }
        let stdout = String::from_utf8(o.stdout).unwrap_or_else(|e| panic!("{what}: stdout is not UTF-8: {e}"));
        Out { status: o.status, stdout, stderr: String::from_utf8_lossy(&o.stderr).into_owned(), what }
    }
}

impl std::fmt::Debug for Cmd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", self.command)
    }
}

/// A finished [`Cmd`]: its exit status and what it wrote (stdout must be UTF-8; stderr is read
/// lossily).
pub struct Out {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
    /// The program and its arguments, for messages.
    pub what: String,
}

impl Out {
    /// Asserts that the command succeeded, showing it, its stderr and the end of its stdout if not.
    #[track_caller]
    pub fn ok(self) -> Out {
        if !self.status.success() {
            let tail = &self.stdout[self.stdout.char_indices().rev().nth(3999).map_or(0, |(i, _)| i)..];
            panic!("{} failed ({}):\n--- stderr:\n{}\n--- stdout (end):\n{tail}", self.what, self.status, self.stderr);
        }
        self
    }

    pub fn success(&self) -> bool {
        self.status.success()
    }

    /// The exit code (`None` if a signal ended the process).
    pub fn code(&self) -> Option<i32> {
        self.status.code()
    }

    pub fn stdout_lines(&self) -> Vec<&str> {
        self.stdout.lines().collect()
    }

    /// Each line of stdout parsed as JSON (JSON Lines output).
    pub fn json_lines(&self) -> Vec<serde_json::Value> {
        self.stdout.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{}: {e}: {l}", self.what))).collect()
    }
}

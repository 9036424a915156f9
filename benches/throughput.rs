//! Throughput benchmarks, printed beside the Python peer run in the same invocation.
//!
//!   cargo bench --bench throughput -- encode [FILE ...] [--n 2000] [--batch 32]
//!   cargo bench --bench throughput -- train [--steps 20] [--batch 32] [--scenario full] [--bucketing on|off]
//!   cargo bench --bench throughput -- heads-only [--n 1000] [--epochs 2] [--batch 32]
//!   cargo bench --bench throughput -- process [FILE ...] [--n 2000] [--precisions fp32,int8,bf16]
//!   cargo bench --bench throughput -- grid [FILE ...] [--n 1000]
//!   cargo bench --bench throughput -- memory [LINES ...] [--precisions P]
//!   cargo bench --bench throughput -- agreement CHECKPOINT [--precisions fp32,int8,bf16]
//!   cargo bench --bench throughput -- anchors [FILE ...] [--n 2000] [--runs 2] [--threads 2] [--with-openvino] [--json FILE]
//!   cargo bench --bench throughput -- profile [FILE ...] [--n 2000] [--runs 2] [--threads 2]
//!   cargo bench --bench throughput -- workers [FILE ...] [--n 2000] [--threads 2]
//!
//! `anchors` (see `throughput/anchors.rs`) times `mtt` in process beside ONNX Runtime and
//! sentence-transformers, then `mtt embed` whole processes and start-up against Python.
//! `workers` times one pass at a time against the default inference workers, alternated.
//! `process` times `mtt embed` as a user runs it (a whole process: start, model load, reading,
//! encoding, writing JSON Lines to /dev/null; default flags plus `--precision P`) on the first N
//! texts of each file, beside `python_peer.py encode` timed the same way (whole process) and
//! by its own clock (encode only). It first measures this machine's fp32 matrix-multiply peak
//! (libtorch, [4096 x 384] x [384 x 1536]) and prints each figure also as a fraction of it, at
//! 21.2 MFLOP per real token. bf16 is skipped on CPUs without bf16 hardware unless listed.
//! `grid` encodes in-process with 1 and 2 threads over token budgets and fixed batch sizes.
//! `memory` runs `mtt embed` on the bundled training texts repeated to 10,000 and 100,000 lines
//! (or the counts given) and reports each run's peak resident memory (`wait4`'s maxrss).
//! `agreement` loads a `mtt train` checkpoint at each precision and reports how many of both
//! heads' predicted labels on the bundled dev sets equal fp32's (fp32 first, as the reference).
//!
//! `encode` times `SentenceEncoder::encode` on the first N texts of each file (default: the bundled
//! TREC-6 and SST-3 training files) after a 64-text warm-up, as `python_peer.py encode` does.
//! `train` times optimizer steps (batch 32, TREC-6 + SST mixed and shuffled, everything
//! trainable at 1e-4 for `full`), skipping two warm-up steps, as `python_peer.py train` does;
//! batches are plain shuffled, as `mtt train` draws them by default and the peer does (the
//! encoder packs their real tokens; `--bucketing on`: length-bucketed batches).
//! `heads-only` trains the heads on a frozen encoder (first N rows of each bundled training file)
//! twice, on the frozen-encoder cache and recomputing the encoder every step (`--no-cache`), and
//! compares their epoch times; the cache's one-off encoding pass is reported separately.
//! The peer runs with `.venv/bin/python` (install it with `scripts/setup.sh --peer`) and
//! `../shared/peer/python_peer.py`, or MTT_PEER / MTT_PEER_PYTHON; `--no-peer` skips it.

use multi_task_transformer::batch::{epoch_draws, make_batch, Source, TaskSampling};
use multi_task_transformer::config::{ModelFiles, DEFAULT_MODEL_DIR as MODEL};
use multi_task_transformer::tokenizer::SentenceTokenizer;
use multi_task_transformer::data::bundled::{TASK_A, TASK_B};
use multi_task_transformer::data::{self, Labels, Task};
use multi_task_transformer::freeze::Freeze;
use multi_task_transformer::optim::{learning_rates, LrPreset, OptimConfig, Optimizers};
use multi_task_transformer::train::{train_step, LossMix};
use multi_task_transformer::{Classifier, EncodeOptions, SentenceEncoder};
use serde_json::{json, Value};
use std::path::Path;
use std::process::Command;
use std::time::Instant;
use tch::Device;

#[path = "throughput/anchors.rs"]
mod anchors;

struct Opts {
    files: Vec<String>,
    precisions: Option<Vec<String>>,
    n: usize,
    epochs: usize,
    batch: usize,
    steps: usize,
    scenario: String,
    peer: bool,
    bucketing: bool,
    runs: usize,
    threads: Option<usize>,
    with_openvino: bool,
    json: Option<String>,
}

fn parse(args: &[String]) -> Opts {
    let mut o = Opts { files: vec![], precisions: None, n: 2000, epochs: 2, batch: 32, steps: 20, scenario: "full".into(), peer: true, bucketing: false, runs: 2, threads: None, with_openvino: false, json: None };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut val = || it.next().unwrap_or_else(|| panic!("{a} needs a value")).clone();
        match a.as_str() {
            "--n" => o.n = val().parse().expect("--n N"),
            "--batch" => o.batch = val().parse().expect("--batch N"),
            "--steps" => o.steps = val().parse().expect("--steps N"),
            "--epochs" => o.epochs = val().parse().expect("--epochs N"),
            "--scenario" => o.scenario = val(),
            "--no-peer" => o.peer = false,
            "--runs" => o.runs = val().parse().expect("--runs N"),
            "--threads" => o.threads = Some(val().parse().expect("--threads N")),
            "--with-openvino" => o.with_openvino = true,
            "--json" => o.json = Some(val()),
            "--bucketing" => o.bucketing = match val().as_str() {
                "on" => true,
                "off" => false,
                v => panic!("--bucketing {v}: on or off"),
            },
            "--precisions" => o.precisions = Some(val().split(',').map(str::to_string).collect()),
            "--bench" => {}
            f if !f.starts_with("--") => o.files.push(f.to_string()),
            other => panic!("unknown option {other}"),
        }
    }
    o
}

fn peer(args: &[&str]) -> Option<Value> {
    let script = std::env::var("MTT_PEER").unwrap_or_else(|_| "../shared/peer/python_peer.py".into());
    let python = std::env::var("MTT_PEER_PYTHON").unwrap_or_else(|_| ".venv/bin/python".into());
    if !Path::new(&script).is_file() {
        eprintln!("peer: {script} not found (set MTT_PEER)");
        return None;
    }
    let out = Command::new(&python).arg(&script).args(args).env("HF_HUB_OFFLINE", "1").output().ok()?;
    if !out.status.success() {
        eprintln!("peer failed: {}", String::from_utf8_lossy(&out.stderr).lines().last().unwrap_or(""));
        return None;
    }
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines().rev().find_map(|l| serde_json::from_str(l).ok())
}

fn texts(path: &str, n: usize) -> Vec<String> {
    let src = data::read_labelled(Path::new(path), Some(Task::A)).expect("read TSV");
    src.rows.into_iter().take(n).map(|r| r.text).collect()
}

fn report(ours: Value, theirs: Option<Value>) {
    println!("{ours}");
    match theirs {
        Some(p) => {
            println!("{p}");
            let (a, b) = (ours["sentences_per_s"].as_f64().unwrap(), p["sentences_per_s"].as_f64().unwrap_or(f64::NAN));
            println!("ratio rust/python: {:.2}", a / b);
        }
        None => println!("(no peer figure)"),
    }
}

fn bench_encode(o: &Opts) {
    let (enc, _) = SentenceEncoder::load(Path::new(MODEL), Device::Cpu).expect("model (run scripts/setup.sh)");
    let files = if o.files.is_empty() { vec![TASK_A.to_string(), TASK_B.to_string()] } else { o.files.clone() };
    for f in files {
        let t = texts(&f, o.n);
        let opts = EncodeOptions { batch_size: o.batch, normalize: false, ..Default::default() };
        let _ = enc.encode(&t[..t.len().min(64)], opts).unwrap();
        let start = Instant::now();
        let v = enc.encode(&t, opts).unwrap();
        let dt = start.elapsed().as_secs_f64();
        assert_eq!(v.size()[0] as usize, t.len());
        let ours = json!({"rust": "SentenceEncoder::encode", "file": f, "n": t.len(), "batch": o.batch,
            "seconds": (dt * 1000.0).round() / 1000.0, "sentences_per_s": (t.len() as f64 / dt * 10.0).round() / 10.0,
            "threads": tch::get_num_threads()});
        let theirs = if o.peer { peer(&["encode", &f, "--n", &o.n.to_string(), "--batch", &o.batch.to_string()]) } else { None };
        report(ours, theirs);
    }
}

fn bench_train(o: &Opts) {
    let (freeze, plan) = match o.scenario.as_str() {
        "full" => (Freeze::None, LrPreset::Uniform),
        "layerwise" => (Freeze::None, LrPreset::Layerwise),
        "frozen_encoder" => (Freeze::Encoder, LrPreset::Uniform),
        other => panic!("scenario {other}: full, layerwise or frozen_encoder"),
    };
    tch::manual_seed(0);
    let sources = vec![
        data::read_labelled(Path::new(TASK_A), Some(Task::A)).unwrap(),
        data::read_labelled(Path::new(TASK_B), Some(Task::B)).unwrap(),
    ];
    let (la, lb) = (Labels::collect(&sources, Task::A), Labels::collect(&sources, Task::B));
    let (clf, _) = Classifier::from_base(Path::new(MODEL), multi_task_transformer::task::seed_tasks(la, lb), 0.0, Device::Cpu).unwrap();
    let ex = clf.examples(&sources).unwrap();
    let params = clf.model.params();
    freeze.apply(params).unwrap();
    let rates = learning_rates(params, plan, None, &[]).unwrap();
    let mut opts = Optimizers::new(params, &rates, OptimConfig::default(), o.steps + 2).unwrap();
    // As `mtt train` draws them: plain shuffled by default (`--bucketing on`: length-bucketed).
    let draws = epoch_draws(&ex, o.batch, 0, 0, TaskSampling::Proportional, o.bucketing);
    let (mut done, mut start) = (0usize, Instant::now());
    for (step, draw) in draws.iter().take(o.steps + 2).enumerate() {
        if step == 2 {
            start = Instant::now();
            done = 0;
        }
        let b = make_batch(&ex, draw, clf.model.tasks(), Source::Tokens { pad_id: clf.tokenizer.pad_id() }, Device::Cpu);
        train_step(&clf.model, &mut opts, &b, &LossMix::fixed(vec![1.0, 1.0]), !freeze.freezes_encoder(), step).expect("labelled batch").read().expect("losses");
        done += b.size;
    }
    let dt = start.elapsed().as_secs_f64();
    let ours = json!({"rust": "multitask train_step", "scenario": o.scenario, "steps": o.steps, "batch": o.batch, "bucketing": o.bucketing,
        "seconds": (dt * 1000.0).round() / 1000.0, "sentences_per_s": (done as f64 / dt * 10.0).round() / 10.0});
    let theirs = if o.peer {
        peer(&["train", TASK_A, TASK_B, "--steps", &o.steps.to_string(), "--batch", &o.batch.to_string(), "--scenario", &o.scenario])
    } else {
        None
    };
    report(ours, theirs);
}

fn bench_heads_only(o: &Opts) {
    use multi_task_transformer::data::bundled::{DEV_A, DEV_B};
    use multi_task_transformer::train::{train, Progress, TrainConfig};
    let n = if o.n == 2000 { 1000 } else { o.n };
    let dir = tempfile::tempdir().expect("temp dir");
    let run = |cache: bool| {
        let mut c = TrainConfig::new(MODEL.into(), dir.path().join(if cache { "cached" } else { "recomputed" }));
        c.data.task_a = Some(TASK_A.into());
        c.data.task_b = Some(TASK_B.into());
        c.data.dev_a = Some(DEV_A.into());
        c.data.dev_b = Some(DEV_B.into());
        c.optimizer.freeze = Freeze::Encoder;
        c.optimizer.lr_plan = LrPreset::Uniform;
        c.schedule.epochs = o.epochs;
        c.schedule.batch_size = o.batch;
        c.data.limit = Some(n);
        c.schedule.cache = cache;
        c.device = "cpu".into();
        let out = train(&c, Progress::Off, &mut |_| {}).expect("training");
        let epoch_s = out.metrics.epochs.iter().map(|e| e.seconds).sum::<f64>() / out.metrics.epochs.len() as f64;
        (out.metrics, epoch_s)
    };
    let (cached, cached_epoch) = run(true);
    let (plain, plain_epoch) = run(false);
    let same = cached.step_losses.iter().zip(&plain.step_losses).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
    let r3 = |x: f64| (x * 1000.0).round() / 1000.0;
    println!(
        "{}",
        json!({"bench": "heads-only epochs (frozen encoder)", "rows": cached.train_rows, "epochs": o.epochs, "batch": o.batch,
            "cache_pass_seconds": r3(cached.cache_seconds), "cached_epoch_seconds": r3(cached_epoch),
            "recomputed_epoch_seconds": r3(plain_epoch), "speedup_per_epoch": (plain_epoch / cached_epoch * 10.0).round() / 10.0,
            "max_step_loss_difference": same})
    );
}

/// MFLOP of one token through all-MiniLM-L6-v2's encoder (linear layers plus attention at
/// typical lengths), the figure the targets use.
const MFLOP_PER_TOKEN: f64 = 21.2;

/// This machine's fp32 matrix-multiply rate in GFLOP/s with libtorch's current thread count:
/// the best of 5 timings of 10 products [4096 x 384] x [384 x 1536] (a BERT feed-forward layer
/// on 4,096 token rows).
fn matmul_peak() -> f64 {
    let _g = tch::no_grad_guard();
    let a = tch::Tensor::randn([4096, 384], (tch::Kind::Float, Device::Cpu));
    let b = tch::Tensor::randn([384, 1536], (tch::Kind::Float, Device::Cpu));
    let _ = a.mm(&b);
    let mut best = 0.0f64;
    for _ in 0..5 {
        let t = Instant::now();
        for _ in 0..10 {
            let _ = a.mm(&b);
        }
        best = best.max(10.0 * 2.0 * 4096.0 * 384.0 * 1536.0 / t.elapsed().as_secs_f64() / 1e9);
    }
    best
}

/// Real tokens of `texts` (with [CLS] and [SEP], truncated as the model does).
fn token_count(texts: &[String]) -> usize {
    // The tokenizer alone: no weights needed.
    let files = ModelFiles::locate(Path::new(MODEL)).expect("model folder");
    let config = files.encoder_config().expect("model config");
    let tokenizer = SentenceTokenizer::from_vocab(&files.vocab, &config.tokenizer, config.max_seq_length).expect("vocab");
    tokenizer.encode_all(texts).iter().map(Vec::len).sum()
}

fn mtt_binary() -> std::path::PathBuf {
    // benches/… runs from target/<profile>/deps; the binary is target/<profile>/mtt.
    let exe = std::env::current_exe().expect("bench path");
    let dir = exe.parent().and_then(Path::parent).expect("target dir");
    let bin = dir.join("mtt");
    assert!(bin.is_file(), "{} not found: run cargo build (same profile) first", bin.display());
    bin
}

fn time_process(cmd: &mut Command) -> f64 {
    time_and_peak(cmd.stderr(std::process::Stdio::null())).0
}

fn bench_process(o: &Opts) {
    let cpu = multi_task_transformer::device::CpuFeatures::detect();
    let peak = matmul_peak();
    println!("{}", json!({"machine": cpu.as_ref().map(|c| c.describe()), "threads": tch::get_num_threads(),
        "fp32_matmul_peak_gflops": (peak * 10.0).round() / 10.0}));
    let bf16_native = cpu.as_ref().is_some_and(|c| c.bf16);
    let precisions = o.precisions.clone().unwrap_or_else(|| {
        let mut p = vec!["fp32".to_string(), "int8".to_string()];
        if bf16_native {
            p.push("bf16".into());
        }
        p
    });
    let files = if o.files.is_empty() { vec![TASK_A.to_string(), TASK_B.to_string()] } else { o.files.clone() };
    let dir = tempfile::tempdir().expect("temp dir");
    let bin = mtt_binary();
    for f in files {
        let t = texts(&f, o.n);
        let tokens = token_count(&t);
        let input = dir.path().join("texts.txt");
        std::fs::write(&input, t.join("\n") + "\n").expect("write texts");
        let frac = |secs: f64| (tokens as f64 * MFLOP_PER_TOKEN / 1e3 / secs / peak * 1000.0).round() / 1000.0;
        let mut fp32_secs = f64::NAN;
        let mut rows = Vec::new();
        for p in &precisions {
            let secs = time_process(Command::new(&bin).args(["embed", "--input"]).arg(&input).args(["--precision", p, "--precision-anyway"]));
            if p == "fp32" {
                fp32_secs = secs;
            }
            rows.push((p.clone(), secs));
            println!("{}", json!({"rust": format!("mtt embed --precision {p} (whole process)"), "file": f, "n": t.len(), "tokens": tokens,
                "seconds": (secs * 1000.0).round() / 1000.0, "sentences_per_s": (t.len() as f64 / secs * 10.0).round() / 10.0,
                "fraction_of_fp32_peak": frac(secs)}));
        }
        if !bf16_native && !precisions.iter().any(|p| p == "bf16") {
            println!("{}", json!({"rust": "mtt embed --precision bf16", "skipped": "no bf16 hardware on this CPU (emulated: much slower than fp32); pass --precisions fp32,int8,bf16 to time it"}));
        }
        if !o.peer {
            continue;
        }
        let script = std::env::var("MTT_PEER").unwrap_or_else(|_| "../shared/peer/python_peer.py".into());
        let python = std::env::var("MTT_PEER_PYTHON").unwrap_or_else(|_| ".venv/bin/python".into());
        let start = Instant::now();
        let theirs = peer(&["encode", &f, "--n", &o.n.to_string()]);
        let whole = start.elapsed().as_secs_f64();
        let Some(theirs) = theirs else {
            println!("(no peer figure: {python} {script})");
            continue;
        };
        let enc_secs = theirs["seconds"].as_f64().unwrap_or(f64::NAN);
        println!("{}", json!({"peer": "python_peer.py encode (whole process)", "file": f, "n": t.len(), "seconds": (whole * 1000.0).round() / 1000.0,
            "sentences_per_s": (t.len() as f64 / whole * 10.0).round() / 10.0, "encode_only_seconds": enc_secs,
            "encode_only_fraction_of_fp32_peak": frac(enc_secs)}));
        for (p, secs) in rows {
            println!("ratio rust/python, {p}, whole process: {:.2} (vs peer's encode-only clock: {:.2}){}", whole / secs, enc_secs / secs,
                if p != "fp32" { format!("; {p} vs our fp32: {:.2}", fp32_secs / secs) } else { String::new() });
        }
    }
}

/// Runs `cmd` to its end; returns (wall seconds, peak resident memory in MB) from `wait4`.
// `wait4` reaps the child (std's `wait` has no resource usage), so no zombie is left.
#[allow(clippy::zombie_processes)]
fn time_and_peak(cmd: &mut Command) -> (f64, f64) {
    let t = Instant::now();
    let child = cmd.stdout(std::process::Stdio::null()).spawn().expect("start process");
    let mut status = 0;
    // SAFETY: an all-zero rusage is valid; wait4 fills it for our own child, which nothing else reaps.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let pid = unsafe { libc::wait4(child.id() as libc::pid_t, &mut status, 0, &mut usage) };
    assert!(pid > 0 && libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0, "{cmd:?} failed (status {status})");
    (t.elapsed().as_secs_f64(), usage.ru_maxrss as f64 / 1024.0)
}

/// `mtt embed` (default flags) on the bundled training texts repeated to each line count,
/// reporting wall time and peak resident memory.
fn bench_memory(o: &Opts) {
    let counts: Vec<usize> = if o.files.is_empty() { vec![10_000, 100_000] } else { o.files.iter().map(|c| c.parse().expect("line counts")).collect() };
    let mut pool = texts(TASK_A, usize::MAX);
    pool.extend(texts(TASK_B, usize::MAX));
    let dir = tempfile::tempdir().expect("temp dir");
    let bin = mtt_binary();
    let mut peaks = Vec::new();
    for n in counts {
        let input = dir.path().join(format!("{n}.txt"));
        let lines: Vec<&str> = pool.iter().cycle().take(n).map(String::as_str).collect();
        std::fs::write(&input, lines.join("\n") + "\n").expect("write texts");
        let (secs, mb) = time_and_peak(Command::new(&bin).args(["embed", "--input"]).arg(&input).args(o.precisions.iter().flatten().flat_map(|p| ["--precision", p.as_str(), "--precision-anyway"])));
        println!("{}", json!({"rust": "mtt embed (whole process)", "lines": n, "seconds": (secs * 10.0).round() / 10.0,
            "sentences_per_s": (n as f64 / secs).round(), "peak_rss_mb": mb.round()}));
        peaks.push(mb);
    }
    if let (Some(lo), Some(hi)) = (peaks.first(), peaks.last()) {
        println!("peak memory, largest vs smallest input: {:+.1}%", (hi / lo - 1.0) * 100.0);
    }
}

/// Each precision's predicted labels (both heads) against fp32's on the bundled dev sets, for the
/// checkpoint given as the first argument; timed in-process with the default token budget.
fn bench_agreement(o: &Opts) {
    use multi_task_transformer::cli::{DEFAULT_TOKEN_BUDGET, MAX_BUDGET_ROWS};
    use multi_task_transformer::data::bundled::{DEV_A, DEV_B};
    use multi_task_transformer::infer::Batching;
    use multi_task_transformer::precision::Precision;
    let dir = Path::new(o.files.first().expect("agreement CHECKPOINT_DIR (from mtt train --out)"));
    let precisions: Vec<Precision> = match &o.precisions {
        Some(p) => p.iter().map(|s| s.parse().expect("precision")).collect(),
        None => Precision::ALL.to_vec(),
    };
    let labels = |clf: &Classifier, t: &[String]| -> (Vec<i64>, Vec<i64>, f64) {
        let b = Batching { batch_size: MAX_BUDGET_ROWS, token_budget: Some(DEFAULT_TOKEN_BUDGET), pad_id: clf.tokenizer.pad_id(), workers: 1 };
        let start = Instant::now();
        let p = clf.probabilities(t, b).expect("probabilities");
        let (pa, pb) = (&p[0].1, &p[1].1);
        let secs = start.elapsed().as_secs_f64();
        (Vec::<i64>::try_from(pa.argmax(1, false)).unwrap(), Vec::<i64>::try_from(pb.argmax(1, false)).unwrap(), secs)
    };
    let devs: Vec<(&str, Vec<String>)> = [DEV_A, DEV_B].into_iter().map(|d| (d, texts(d, usize::MAX))).collect();
    // The first precision's labels per dev set are the reference; each model is loaded once.
    let mut reference: Vec<Option<(Vec<i64>, Vec<i64>)>> = vec![None; devs.len()];
    for &p in &precisions {
        let mut clf = Classifier::load(dir, Device::Cpu).expect("checkpoint").0;
        clf.set_precision(p).expect("precision");
        for ((dev, t), slot) in devs.iter().zip(reference.iter_mut()) {
            let (a, b, secs) = labels(&clf, t);
            let (ra, rb) = slot.get_or_insert_with(|| (a.clone(), b.clone()));
            let agree = |x: &[i64], y: &[i64]| x.iter().zip(y).filter(|(u, v)| u == v).count() as f64 / x.len() as f64;
            println!("{}", json!({"precision": p.to_string(), "dev": dev, "texts": t.len(), "seconds": (secs * 100.0).round() / 100.0,
                "task_a_agreement_with_fp32": (agree(&a, ra) * 10000.0).round() / 10000.0,
                "task_b_agreement_with_fp32": (agree(&b, rb) * 10000.0).round() / 10000.0}));
        }
    }
}

fn bench_grid(o: &Opts) {
    let (enc, _) = SentenceEncoder::load(Path::new(MODEL), Device::Cpu).expect("model (run scripts/setup.sh)");
    let files = if o.files.is_empty() { vec![TASK_A.to_string(), TASK_B.to_string()] } else { o.files.clone() };
    let n = if o.n == 2000 { 1000 } else { o.n };
    let settings: Vec<(usize, Option<usize>)> =
        [8, 32, 128].iter().map(|&b| (b, None)).chain([256, 512, 1024, 2048, 4096].iter().map(|&t| (1024, Some(t)))).collect();
    for threads in [1, 2] {
        tch::set_num_threads(threads);
        let peak = matmul_peak();
        for f in &files {
            let t = texts(f, n);
            let tokens: usize = enc.tokenizer.encode_all(&t).iter().map(Vec::len).sum();
            let _ = enc.encode(&t[..64], EncodeOptions::default()).unwrap();
            for &(batch_size, token_budget) in &settings {
                let opts = EncodeOptions { batch_size, token_budget, normalize: false, ..Default::default() };
                let start = Instant::now();
                let _ = enc.encode(&t, opts).unwrap();
                let dt = start.elapsed().as_secs_f64();
                println!("{}", json!({"threads": threads, "file": f, "n": t.len(), "batch_size": token_budget.map_or(Some(batch_size), |_| None),
                    "token_budget": token_budget, "sentences_per_s": (t.len() as f64 / dt * 10.0).round() / 10.0,
                    "fraction_of_fp32_peak": (tokens as f64 * MFLOP_PER_TOKEN / 1e3 / dt / peak * 1000.0).round() / 1000.0,
                    "peak_gflops": peak.round()}));
            }
        }
    }
}

fn main() {
    // As the binaries do (allocator settings matter to libtorch's throughput).
    multi_task_transformer::cli::init_process();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let cmds = ["encode", "train", "heads-only", "process", "grid", "memory", "agreement", "anchors", "profile", "workers"];
    let (cmd, rest) = match args.iter().position(|a| cmds.contains(&a.as_str())) {
        Some(i) => (args[i].clone(), [&args[..i], &args[i + 1..]].concat()),
        None => ("encode".to_string(), args.clone()),
    };
    let o = parse(&rest);
    match cmd.as_str() {
        "train" => bench_train(&o),
        "heads-only" => bench_heads_only(&o),
        "process" => bench_process(&o),
        "grid" => bench_grid(&o),
        "memory" => bench_memory(&o),
        "agreement" => bench_agreement(&o),
        "anchors" => anchors::run(&o),
        "profile" => anchors::profile(&o),
        "workers" => anchors::workers(&o),
        _ => bench_encode(&o),
    }
}

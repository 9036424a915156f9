//! `anchors`: `mtt` beside the runtimes CPU users pick, in one invocation (issue 24).
//!
//!   cargo bench --profile dev --bench throughput -- anchors [FILE ...] [--n 2000] [--runs 2]
//!       [--threads 2] [--with-openvino] [--json FILE]
//!
//! Each run times, on the first N texts of each file (default: the bundled TREC-6 and SST-3
//! training files), encode only, in process, after loading and one warm-up batch:
//! - ONNX Runtime (plain fp32 export, the fused fp32 graph of its transformer optimizer, dynamic
//!   per-channel int8) and sentence-transformers (torch), through `scripts/onnx_anchors.py
//!   --with-st` (one Python process per run; the graphs are built once and cached in
//!   `target/onnx`): length-sorted batches of 32, mean pooling, tokenization inside the clock;
//! - `mtt` fp32 and int8 (`SentenceEncoder::encode`, tokenization inside the clock too) with
//!   `mtt embed`'s default batching (a budget of 1,024 padded tokens) and with batches of 32.
//!
//! Then, once: `mtt embed` as whole processes per precision on 200 and N texts (int8 after its
//! calibration is stored; the first start, which stores it, is reported too), and start-up: the
//! time from starting the process to the first JSON line for one text, for `mtt embed` and for
//! Python (import sentence-transformers, load, encode one text, print).
//!
//! `profile` (same options) shows where `mtt`'s own encode time goes (see [`profile`]).
//!
//! Every figure is one JSON line on stdout (also appended to `--json FILE`), the Python script's
//! `env` line first (date, CPU, SIMD flags, versions); the ratio tables follow as Markdown.

use super::{mtt_binary, texts, Opts, MODEL};
use multi_task_transformer::cli::{default_limits, DEFAULT_TOKEN_BUDGET, MAX_BUDGET_ROWS};
use multi_task_transformer::infer::default_workers;
use multi_task_transformer::data::bundled::{TASK_A, TASK_B};
use multi_task_transformer::model::encoder::set_packing;
use multi_task_transformer::model::layer::profile as layer_profile;
use multi_task_transformer::padding::length_sorted_batches;
use multi_task_transformer::precision::Precision;
use multi_task_transformer::{EncodeOptions, SentenceEncoder};
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;
use tch::{Device, Tensor};

const PYTHON: &str = ".venv/bin/python";

/// Prints JSON lines and keeps them (and appends them to the `--json` file).
struct Sink {
    file: Option<std::fs::File>,
    lines: Vec<Value>,
}

impl Sink {
    fn emit(&mut self, v: Value) {
        println!("{v}");
        if let Some(f) = &mut self.file {
            writeln!(f, "{v}").expect("write --json file");
        }
        self.lines.push(v);
    }

    /// texts/s of the encode figure matching every (key, value) of `want`.
    fn rate(&self, want: &[(&str, &str)], set: &str, run: usize) -> Option<f64> {
        self.lines
            .iter()
            .find(|l| {
                l["figure"] == "encode" && l["set"] == set && l["run"] == run && want.iter().all(|(k, v)| l[*k].as_str() == Some(v))
            })
            .and_then(|l| l["texts_per_s"].as_f64())
    }
}

/// 'data/trec6/train.tsv' -> 'trec6/train.tsv', as the Python script names its sets.
fn set_name(path: &str) -> String {
    let p = Path::new(path);
    let parent = p.parent().and_then(Path::file_name).map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    format!("{parent}/{}", p.file_name().expect("a file").to_string_lossy())
}

fn round(x: f64, digits: i32) -> f64 {
    let f = 10f64.powi(digits);
    (x * f).round() / f
}

/// One run of `scripts/onnx_anchors.py`: its JSON lines (the caller tags them with the run).
fn python_anchors(files: &[String], n: usize, threads: usize, openvino: bool) -> Vec<Value> {
    let mut cmd = Command::new(PYTHON);
    cmd.args(["scripts/onnx_anchors.py", "--model", MODEL, "--work", "target/onnx", "--with-st", "--runs", "1"])
        .args(["--limit", &n.to_string(), "--threads", &threads.to_string()]);
    for f in files {
        cmd.args(["--texts", f]);
    }
    if openvino {
        cmd.arg("--with-openvino");
    }
    let out = cmd.stderr(Stdio::inherit()).output().expect("start .venv/bin/python (run scripts/setup.sh)");
    assert!(out.status.success(), "scripts/onnx_anchors.py failed ({}): see its message above", out.status);
    String::from_utf8_lossy(&out.stdout).lines().filter_map(|l| serde_json::from_str(l).ok()).collect()
}

/// Lowest cosine between the rows of `a` and `b` (both `[n, d]`).
fn min_cosine(a: &Tensor, b: &Tensor) -> (f64, f64) {
    let cos = Tensor::cosine_similarity(a, b, 1, 1e-12);
    (cos.min().double_value(&[]), cos.mean(tch::Kind::Double).double_value(&[]))
}

/// Seconds from starting `cmd` (stdin: `input`) to its first line on stdout; the process is
/// then left to finish.
fn first_line_seconds(cmd: &mut Command, input: &str) -> f64 {
    let t = Instant::now();
    let mut child = cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::null()).spawn().expect("start process");
    child.stdin.take().expect("stdin").write_all(input.as_bytes()).expect("write stdin");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout")).read_line(&mut line).expect("read stdout");
    let secs = t.elapsed().as_secs_f64();
    assert!(line.starts_with('{'), "no JSON line from {cmd:?}: {line:?}");
    let status = child.wait().expect("wait");
    assert!(status.success(), "{cmd:?} failed: {status}");
    secs
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

const PY_START: &str = "import json, sys\n\
from sentence_transformers import SentenceTransformer\n\
m = SentenceTransformer(sys.argv[1], device='cpu')\n\
v = m.encode([sys.stdin.readline().rstrip('\\n')])[0]\n\
print(json.dumps({'embedding': [float(x) for x in v]}), flush=True)\n";

/// `mtt embed`'s default batching on the CPU with libtorch's threads: a budget of padded tokens
/// shared by the inference workers.
fn embed_default(precision: Precision) -> EncodeOptions {
    let workers = default_workers(Device::Cpu, tch::get_num_threads().max(1) as usize);
    let (batch_size, token_budget) = default_limits(workers, precision);
    EncodeOptions { batch_size, token_budget, normalize: false, workers }
}

/// The batching before inference workers: one pass at a time of 1,024 padded tokens on all the
/// threads.
fn one_pass() -> EncodeOptions {
    EncodeOptions { batch_size: MAX_BUDGET_ROWS, token_budget: Some(DEFAULT_TOKEN_BUDGET), normalize: false, workers: 1 }
}

/// The sets to run (the bench's files, or the two bundled ones), and the model loaded twice, as
/// fp32 and as int8, after setting libtorch's threads (`--threads`, default 2).
fn sets_and_encoders(o: &Opts) -> (Vec<String>, SentenceEncoder, SentenceEncoder) {
    let files = if o.files.is_empty() { vec![TASK_A.to_string(), TASK_B.to_string()] } else { o.files.clone() };
    tch::set_num_threads(o.threads.unwrap_or(2) as i32);
    let (fp32, _) = SentenceEncoder::load(Path::new(MODEL), Device::Cpu).expect("model (run scripts/setup.sh)");
    let (mut int8, _) = SentenceEncoder::load(Path::new(MODEL), Device::Cpu).expect("model");
    int8.set_precision(Precision::Int8).expect("int8");
    (files, fp32, int8)
}

/// `profile`: where `mtt`'s encode time goes, per precision and set: tokenization, each stage
/// of the transformer layers (summed over layers) and the rest (embeddings, padding, pooling),
/// with one pass at a time of 1,024 padded tokens (the stage clocks cannot split parallel workers), with packed inference (the default) and without; and the
/// padding the batches have.
pub fn profile(o: &Opts) {
    let (files, fp32, int8) = sets_and_encoders(o);
    let threads = tch::get_num_threads();
    // One worker: the stage clocks add up per thread, so batches must run one at a time.
    let opts = one_pass();
    for f in &files {
        let texts = texts(f, o.n);
        let t = Instant::now();
        let ids = fp32.tokenizer.encode_all(&texts);
        let tokenize = t.elapsed().as_secs_f64();
        let lens: Vec<usize> = ids.iter().map(Vec::len).collect();
        let batches = length_sorted_batches(&lens, opts.batch_size, opts.token_budget);
        let real: usize = lens.iter().sum();
        let padded: usize = batches.iter().map(|b| b.len() * b.iter().map(|&i| lens[i]).max().unwrap_or(0)).sum();
        for ((precision, enc), packing) in [("fp32", &fp32), ("int8", &int8)].into_iter().flat_map(|e| [(e, true), (e, false)]) {
            set_packing(packing);
            let _ = enc.encode(&texts[..32.min(texts.len())], opts).expect("warm-up");
            for _ in 0..o.runs {
                layer_profile::start();
                let t = Instant::now();
                let _ = enc.encode(&texts, opts).expect("encode");
                let total = t.elapsed().as_secs_f64();
                let stages = layer_profile::take().expect("profiling was on");
                let mut parts = serde_json::Map::new();
                parts.insert("tokenization".into(), json!(round(tokenize, 4)));
                for (name, secs) in layer_profile::STAGES.iter().zip(stages) {
                    parts.insert(name.to_string(), json!(round(secs, 4)));
                }
                let rest = total - tokenize - stages.iter().sum::<f64>();
                parts.insert("embeddings, padding, pooling, rest".into(), json!(round(rest, 4)));
                let shares: serde_json::Map<String, Value> =
                    parts.iter().map(|(k, v)| (k.clone(), json!(round(v.as_f64().unwrap_or(0.0) / total, 3)))).collect();
                println!("{}", json!({"figure": "profile", "variant": precision, "packing": packing, "set": set_name(f), "texts": texts.len(), "threads": threads,
                    "seconds": round(total, 4), "texts_per_s": round(texts.len() as f64 / total, 1), "real_tokens": real, "padded_tokens": padded,
                    "padding_share": round(1.0 - real as f64 / padded as f64, 4), "stage_seconds": parts, "stage_shares": shares}));
            }
        }
    }
    set_packing(true);
}

pub fn run(o: &Opts) {
    let files = if o.files.is_empty() { vec![TASK_A.to_string(), TASK_B.to_string()] } else { o.files.clone() };
    let threads = o.threads.unwrap_or(2);
    tch::set_num_threads(threads as i32);
    let file = o.json.as_ref().map(|p| std::fs::OpenOptions::new().create(true).append(true).open(p).expect("open --json file"));
    let mut sink = Sink { file, lines: Vec::new() };
    let sets: Vec<(String, Vec<String>)> = files.iter().map(|f| (set_name(f), texts(f, o.n))).collect();

    let (fp32, _) = SentenceEncoder::load(Path::new(MODEL), Device::Cpu).expect("model (run scripts/setup.sh)");
    let (mut int8, _) = SentenceEncoder::load(Path::new(MODEL), Device::Cpu).expect("model");
    int8.set_precision(Precision::Int8).expect("int8");
    let encoders = [("fp32", Precision::Fp32, &fp32), ("int8", Precision::Int8, &int8)];
    // `default`: `mtt embed`'s batching (two one-thread workers on two threads, 512 padded tokens
    // each, 384 for int8); `one-worker`: the earlier default, one pass at a time of 1,024 padded
    // tokens on all the threads.
    let batchings = |precision| [("default", embed_default(precision)), ("one-worker", one_pass())];

    for run in 1..=o.runs {
        eprintln!("anchors: run {run}/{}: Python (ONNX Runtime, sentence-transformers)", o.runs);
        for mut l in python_anchors(&files, o.n, threads, o.with_openvino) {
            if l["figure"] == "env" && run > 1 {
                continue;
            }
            if l["figure"] == "encode" || l["figure"] == "fidelity" {
                l["run"] = json!(run);
            }
            sink.emit(l);
        }
        eprintln!("anchors: run {run}/{}: mtt in process", o.runs);
        for (name, texts) in &sets {
            let mut reference = None;
            for (precision, p, enc) in encoders {
                let _ = enc.encode(&texts[..32.min(texts.len())], EncodeOptions::default()).expect("warm-up");
                for (batching, opts) in &batchings(p) {
                    let t = Instant::now();
                    let v = enc.encode(texts, *opts).expect("encode");
                    let secs = t.elapsed().as_secs_f64();
                    sink.emit(json!({"figure": "encode", "engine": "mtt", "variant": precision, "batching": batching, "set": name,
                        "texts": texts.len(), "seconds": round(secs, 4), "texts_per_s": round(texts.len() as f64 / secs, 1),
                        "threads": threads, "run": run}));
                    if *batching == "default" {
                        match &reference {
                            None => reference = Some(v),
                            Some(r) => {
                                let (min, mean) = min_cosine(&v, r);
                                sink.emit(json!({"figure": "fidelity", "engine": "mtt", "variant": precision, "set": name, "texts": texts.len(),
                                    "min_cos": round(min, 7), "mean_cos": round(mean, 7), "reference": "mtt fp32", "run": run}));
                            }
                        }
                    }
                }
            }
        }
    }

    // Whole processes: int8 against fp32 at 200 and N texts, calibration stored.
    let bin = mtt_binary();
    let tmp = tempfile::tempdir().expect("temp dir");
    let cache = tmp.path().join("cache");
    let embed = |precision: &str, input: &Path| {
        let mut c = Command::new(&bin);
        c.args(["embed", "--precision", precision, "--threads", &threads.to_string(), "--input"]).arg(input).env("MTT_CACHE_DIR", &cache);
        c
    };
    let mut whole = Vec::new();
    for (name, texts) in &sets {
        for n in [200, texts.len()] {
            let input = tmp.path().join(format!("{n}.txt"));
            std::fs::write(&input, texts[..n.min(texts.len())].join("\n") + "\n").expect("write texts");
            if whole.is_empty() {
                let secs = super::time_process(&mut embed("int8", &input));
                sink.emit(json!({"figure": "process", "engine": "mtt", "variant": "int8", "set": name, "texts": n,
                    "seconds": round(secs, 3), "note": "first int8 start: calibrates and stores the calibration"}));
            }
            for precision in ["fp32", "int8", "fp32", "int8"] {
                let secs = super::time_process(&mut embed(precision, &input));
                whole.push((name.clone(), n, precision, secs));
                sink.emit(json!({"figure": "process", "engine": "mtt", "variant": precision, "set": name, "texts": n,
                    "seconds": round(secs, 3), "texts_per_s": round(n as f64 / secs, 1)}));
            }
        }
    }

    // Start-up: process start to the first JSON line for one text.
    let model = std::fs::canonicalize(MODEL).expect("model folder");
    let mut ours = Vec::new();
    let mut theirs = Vec::new();
    for _ in 0..3 {
        let mut c = Command::new(&bin);
        c.args(["embed", "--threads", &threads.to_string()]).env("MTT_CACHE_DIR", &cache);
        ours.push(first_line_seconds(&mut c, "How far is the moon?\n"));
        let mut p = Command::new(PYTHON);
        p.args(["-c", PY_START]).arg(&model).env("HF_HUB_OFFLINE", "1").env("TRANSFORMERS_OFFLINE", "1").env("OMP_NUM_THREADS", threads.to_string());
        theirs.push(first_line_seconds(&mut p, "How far is the moon?\n"));
    }
    let (ours, theirs) = (median(ours), median(theirs));
    sink.emit(json!({"figure": "startup", "engine": "mtt", "seconds": round(ours, 3), "what": "mtt embed: process start to the first JSON line for one text (median of 3)"}));
    sink.emit(json!({"figure": "startup", "engine": "python", "seconds": round(theirs, 3),
        "what": "python: import sentence_transformers, load, encode one text, print (median of 3)"}));

    // The ratio tables.
    println!("\n| set | run | mtt fp32 | mtt fp32, one worker | ORT fused fp32 | ORT plain fp32 | sentence-transformers | fp32 / ORT fused | fp32 / s-t | mtt int8 | ORT int8 | int8 / ORT int8 |");
    println!("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    let cell = |v: Option<f64>| v.map_or("–".to_string(), |x| format!("{x:.0}"));
    let ratio = |a: Option<f64>, b: Option<f64>| match (a, b) {
        (Some(a), Some(b)) => format!("**{:.2}×**", a / b),
        _ => "–".into(),
    };
    for (name, _) in &sets {
        for run in 1..=o.runs {
            let r = |want: &[(&str, &str)]| sink.rate(want, name, run);
            let m32 = r(&[("engine", "mtt"), ("variant", "fp32"), ("batching", "default")]);
            let m32one = r(&[("engine", "mtt"), ("variant", "fp32"), ("batching", "one-worker")]);
            let m8 = r(&[("engine", "mtt"), ("variant", "int8"), ("batching", "default")]);
            let fused = r(&[("engine", "onnxruntime"), ("variant", "fused-fp32")]);
            let plain = r(&[("engine", "onnxruntime"), ("variant", "plain-fp32")]);
            let st = r(&[("engine", "sentence-transformers")]);
            let oi8 = r(&[("engine", "onnxruntime"), ("variant", "int8")]);
            println!("| {name} | {run} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |", cell(m32), cell(m32one), cell(fused), cell(plain), cell(st),
                ratio(m32, fused), ratio(m32, st), cell(m8), cell(oi8), ratio(m8, oi8));
        }
    }
    println!("\n| whole process, set | texts | fp32 | int8 | int8 / fp32 speed |");
    println!("| --- | ---: | ---: | ---: | ---: |");
    for (name, _) in &sets {
        let mut ns: Vec<usize> = whole.iter().filter(|w| w.0 == *name).map(|w| w.1).collect();
        ns.dedup();
        for n in ns {
            let best = |p: &str| whole.iter().filter(|w| w.0 == *name && w.1 == n && w.2 == p).map(|w| w.3).fold(f64::INFINITY, f64::min);
            let (f, i) = (best("fp32"), best("int8"));
            println!("| {name} | {n} | {f:.2} s | {i:.2} s | {:.2}× |", f / i);
        }
    }
    println!("\nstart-up to the first line for one text: mtt {ours:.2} s, Python (sentence-transformers) {theirs:.2} s: {:.2} of Python's", ours / theirs);
}

/// `workers`: in-process encoding with one pass at a time (1,024 padded tokens on all threads)
/// against `mtt embed`'s default workers (the budget shared), per precision and set, alternated
/// one-two-two-one and two-one-one-two so that drift in the machine's speed falls on both; means
/// of the four runs of each.
pub fn workers(o: &Opts) {
    let (files, fp32, int8) = sets_and_encoders(o);
    let threads = tch::get_num_threads();
    let one = one_pass();
    for (precision, p, enc) in [("fp32", Precision::Fp32, &fp32), ("int8", Precision::Int8, &int8)] {
        let modes = [one, embed_default(p)];
        for f in &files {
            let ids = enc.tokenizer.encode_all(&texts(f, o.n));
            let _ = enc.encode_ids(&ids[..64.min(ids.len())], one).expect("warm-up");
            let mut secs = [0.0f64; 2];
            for m in [0, 1, 1, 0, 1, 0, 0, 1] {
                let t = Instant::now();
                let _ = enc.encode_ids(&ids, modes[m]).expect("encode");
                secs[m] += t.elapsed().as_secs_f64() / 4.0;
            }
            let rate = |s: f64| round(ids.len() as f64 / s, 1);
            println!("{}", json!({"figure": "workers", "variant": precision, "set": set_name(f), "texts": ids.len(), "threads": threads,
                "one_pass_texts_per_s": rate(secs[0]), "workers": modes[1].workers, "workers_texts_per_s": rate(secs[1]),
                "gain": round(secs[0] / secs[1], 3)}));
        }
    }
}

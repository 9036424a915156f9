//! `mtt embed`, `task1` and `mtt doctor`: arguments and command bodies, and the reporting of
//! skipped or bad input lines that `mtt predict` shares.

use super::{at_least_one, warn_unexpected, InferArgs, RunArgs};
use crate::config::{folder_report, ModelFiles};
use crate::device::{device_name, libtorch_lib, libtorch_version, loaded_libtorch};
use crate::embed::{EncodeOptions, SentenceEncoder};
use crate::infer::rows;
use crate::error::{Error, PathKind};
use crate::precision::Precision;
use crate::textio::{open_texts, Lines};
use anyhow::{Context, Result};
use clap::Args;
use serde::Serialize;
use std::io::Write;
use std::path::{Path, PathBuf};
use tch::Device;

/// Arguments of `mtt embed` (and `task1`).
#[derive(Args, Debug, Clone)]
pub struct EmbedArgs {
    /// Sentence-transformers model folder.
    /// Default: $MTT_MODEL, else ./models/all-MiniLM-L6-v2, else the user cache (the first that
    /// exists; `mtt doctor` says which).
    #[arg(long, default_value_os_t = crate::config::default_model_dir())]
    pub model: PathBuf,
    /// Texts, one per line (default: standard input; `-` also means standard input).
    #[arg(long)]
    pub input: Option<PathBuf>,
    /// L2-normalise the vectors (sentence-transformers does for this model; the seed's Task 1 did not).
    #[arg(long)]
    pub normalize: bool,
    /// Batch size, token budget and encoder precision.
    #[command(flatten)]
    pub infer: InferArgs,
    /// Lines read, length-sorted and encoded together before their output is written (`mtt
    /// embed` streams: memory stays flat however long the input).
    #[arg(long, default_value_t = 4096, value_parser = at_least_one)]
    pub window: usize,
    /// Skip input lines that are not valid UTF-8 instead of stopping at the first one: each is
    /// reported on stderr with its line number, the output has one line per valid input line, and
    /// the number skipped is reported at the end.
    #[arg(long)]
    pub skip_invalid: bool,
    /// Device and thread count.
    #[command(flatten)]
    pub run: RunArgs,
}

/// Reports on stderr the lines `input` skipped since the last call (`--skip-invalid`).
pub(super) fn report_skipped<R: std::io::BufRead>(input: &mut Lines<R>, cmd: &str) {
    for (line, why) in input.take_skipped() {
        eprintln!("{cmd}: skipped line {line} of {}: {why}", input.source().display());
    }
}

/// The final count of skipped lines on stderr (`--skip-invalid`).
pub(super) fn report_skip_total<R: std::io::BufRead>(input: &Lines<R>, cmd: &str) {
    let n = input.skipped_count();
    eprintln!(
        "{cmd}: skipped {n} invalid line{} of {} read from {}",
        if n == 1 { "" } else { "s" },
        input.lines_read(),
        input.source().display()
    );
}

/// The error that stopped reading the input after `written` output lines: a bad line names
/// itself and says what was written before it.
pub(super) fn stopped(e: Error, written: usize) -> anyhow::Error {
    match e {
        Error::Data { .. } => anyhow::anyhow!("{e}; the {written} line(s) before it were processed and written (--skip-invalid skips such lines)"),
        other => other.into(),
    }
}

/// Loads the encoder at `precision`, warning on stderr about file tensors nothing uses.
pub fn load_encoder(model: &Path, device: Device, precision: Precision) -> Result<SentenceEncoder> {
    let (mut enc, report) = SentenceEncoder::load_any(model, device).with_context(|| format!("loading model {}", model.display()))?;
    warn_unexpected(&report);
    enc.set_precision(precision)?;
    Ok(enc)
}

/// The encode options of `args` on `device`.
fn encode_options(args: &EmbedArgs, device: tch::Device) -> EncodeOptions {
    let workers = args.infer.workers_on(device);
    let (batch_size, token_budget) = args.infer.limits(workers);
    EncodeOptions { batch_size, normalize: args.normalize, token_budget, workers }
}

#[derive(Serialize)]
struct EmbeddingLine<'a> {
    text: &'a str,
    embedding: &'a [f32],
}

/// `mtt embed`: JSON Lines `{"text", "embedding"}` on stdout, in input order.
///
/// Streams: reads `--window` lines, encodes them (length-sorted inside the window), writes their
/// lines in input order, and goes on; a line that is not UTF-8 ends a window early, so every line
/// before it is written and flushed, then stops with an error naming the source and the line
/// (`--skip-invalid` skips such lines instead, reporting each on stderr).
pub fn run_embed(args: &EmbedArgs) -> Result<()> {
    const CMD: &str = "mtt embed";
    let device = args.run.setup()?;
    let precision = args.infer.precision_for(device)?;
    let mut input = open_texts(args.input.as_deref())?.skip_invalid(args.skip_invalid);
    let enc = load_encoder(&args.model, device, precision)?;
    let opts = encode_options(args, device);
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let mut written = 0;
    loop {
        let texts = input.window(args.window).map_err(|e| stopped(e, written))?;
        report_skipped(&mut input, CMD);
        if texts.is_empty() {
            break;
        }
        let vectors = rows(&enc.encode(&texts, opts)?)?;
        for (text, v) in texts.iter().zip(&vectors) {
            serde_json::to_writer(&mut out, &EmbeddingLine { text, embedding: v })?;
            out.write_all(b"\n")?;
        }
        out.flush()?;
        written += texts.len();
    }
    if args.skip_invalid {
        report_skip_total(&input, CMD);
    }
    Ok(())
}

/// The seed's Task 1 sample sentences.
pub const TASK1_SENTENCES: [&str; 3] = [
    "The quick brown fox jumps over the lazy dog.",
    "Deep learning models are powerful.",
    "Machine learning is transforming industries.",
];

/// `task1`: each sentence with its embedding's shape and first five values, as the seed printed.
/// With `--input` it streams like `mtt embed` (`--window` lines at a time).
pub fn run_task1(args: &EmbedArgs) -> Result<()> {
    let device = args.run.setup()?;
    let mut input = match &args.input {
        Some(path) => Some(open_texts(Some(path))?.skip_invalid(args.skip_invalid)),
        None => None,
    };
    let mut written = 0;
    let mut samples = Some(TASK1_SENTENCES.iter().map(|s| s.to_string()).collect::<Vec<_>>());
    let enc = load_encoder(&args.model, device, args.infer.precision_for(device)?)?;
    let opts = encode_options(args, device);
    println!(
        "Task 1: sentence embeddings with {} ({} pooling{}{}, device {})",
        args.model.display(),
        enc.config().pooling.describe(),
        if args.normalize { ", L2-normalised" } else { "" },
        if args.infer.precision == Precision::Fp32 { String::new() } else { format!(", {}", args.infer.precision) },
        device_name(device)
    );
    loop {
        let texts = match input.as_mut() {
            Some(input) => {
                let texts = input.window(args.window).map_err(|e| stopped(e, written))?;
                report_skipped(input, "task1");
                texts
            }
            None => samples.take().unwrap_or_default(),
        };
        if texts.is_empty() {
            if let Some(input) = input.as_ref().filter(|_| args.skip_invalid) {
                report_skip_total(input, "task1");
            }
            return Ok(());
        }
        written += texts.len();
        for (text, v) in texts.iter().zip(&rows(&enc.encode(&texts, opts)?)?) {
            let head: Vec<String> = v.iter().take(5).map(|x| format!("{x:.4}")).collect();
            println!("\nSentence: {text}");
            println!("Embedding shape: [1, {}]", v.len());
            println!("First 5 values: [{}]", head.join(", "));
        }
    }
}

/// Arguments of `mtt doctor`.
#[derive(Args, Debug, Clone)]
pub struct DoctorArgs {
    /// Model folder to check.
    /// Default: $MTT_MODEL, else ./models/all-MiniLM-L6-v2, else the user cache (the first that
    /// exists; `mtt doctor` says which).
    #[arg(long, default_value_os_t = crate::config::default_model_dir())]
    pub model: PathBuf,
}

/// `mtt doctor`: what libtorch, devices and model folder this binary sees. Fails when the model
/// folder is unusable.
pub fn run_doctor(args: &DoctorArgs) -> Result<()> {
    tch::maybe_init_cuda();
    println!("multi-task-transformer {}", env!("CARGO_PKG_VERSION"));
    match loaded_libtorch() {
        Some(l) => println!(
            "libtorch: {} (loaded from {}; {})",
            l.version.as_deref().unwrap_or(libtorch_version()),
            l.path.display(),
            if l.cuda { "CUDA build" } else { "CPU-only build" }
        ),
        None => println!("libtorch: {} (built against {})", libtorch_version(), libtorch_lib()),
    }
    let n_cuda = tch::Cuda::device_count();
    println!(
        "CUDA: {} ({} device(s)), cuDNN: {}",
        if tch::Cuda::is_available() { "available" } else { "not available" },
        n_cuda,
        if tch::Cuda::cudnn_is_available() { "yes" } else { "no" }
    );
    println!("default device (--device auto): {}", device_name(Device::cuda_if_available()));
    println!("threads: {} intra-op, {} inter-op", tch::get_num_threads(), tch::get_num_interop_threads());
    if let Some(cpu) = crate::device::CpuFeatures::detect() {
        println!("CPU: {}", cpu.describe());
        println!("precision modes (--precision on embed, predict, eval, serve):");
        for line in crate::precision::describe_modes(&cpu) {
            println!("  {line}");
        }
    }
    match crate::model::calibration::default_dir() {
        Some(dir) => {
            let n = std::fs::read_dir(&dir).map_or(0, |d| d.filter_map(|e| e.ok()).filter(|e| e.path().extension().is_some_and(|x| x == "safetensors")).count());
            println!("int8 calibrations: stored in {} ({n} model(s); each is computed at the first int8 start of a model)", dir.display());
        }
        None => println!("int8 calibrations: not stored (neither $MTT_CACHE_DIR nor $HOME is set): every int8 start calibrates"),
    }
    let (default, source) = crate::config::default_model();
    let from = if args.model == default { source.describe() } else { "from --model" };
    println!("model folder: {} ({from})", args.model.display());
    if !matches!(PathKind::of(&args.model), PathKind::Directory | PathKind::Missing) {
        crate::config::check_model_dir(&args.model)?;
    }
    let mut ok = true;
    for (file, present) in folder_report(&args.model) {
        println!("  [{}] {file}", if present { "ok" } else { "MISSING" });
        ok &= present;
    }
    if !ok {
        println!("status: model folder incomplete; run scripts/setup.sh (installs all-MiniLM-L6-v2) or pass --model DIR");
        crate::config::check_model_dir(&args.model)?;
        anyhow::bail!("model folder {} is incomplete", args.model.display());
    }
    let files = ModelFiles::locate(&args.model)?;
    let cfg = files.encoder_config()?;
    println!(
        "  model: BERT, {} layers, hidden {}, {} heads, vocab {}",
        cfg.bert.num_hidden_layers, cfg.bert.hidden_size, cfg.bert.num_attention_heads, cfg.bert.vocab_size
    );
    println!("  pooling: {}, embedding dim {}, max_seq_length {}", cfg.pooling.describe(), cfg.embedding_dim(), cfg.max_seq_length);
    println!("  tokenizer: lower-case {}, strip accents {}", cfg.tokenizer.do_lower_case, cfg.tokenizer.strips_accents());
    if cfg.normalize {
        println!("  normalize: modules.json lists Normalize, so sentence-transformers L2-normalises; `mtt embed` does only with --normalize");
    } else {
        println!("  normalize: not in modules.json; `mtt embed --normalize` L2-normalises");
    }
    let (enc, report) = SentenceEncoder::load(&args.model, Device::Cpu)?;
    println!(
        "  weights: {} tensors loaded ({} parameters) from {}",
        report.loaded,
        enc.params.numel(),
        files.weights.file_name().unwrap_or_default().to_string_lossy()
    );
    if !report.ignored.is_empty() {
        println!("  ignored (unused by pooling): {}", report.ignored.join(", "));
    }
    if !report.unexpected.is_empty() {
        println!("  UNEXPECTED tensors (no matching variable): {}", report.unexpected.join(", "));
    }
    let v = enc.encode(&["hello world"], EncodeOptions::default())?;
    println!("  smoke test: encoded 1 sentence to {:?}", v.size());
    println!("status: OK");
    Ok(())
}

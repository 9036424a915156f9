//! Command-line front ends shared by the `mtt` and `taskN` binaries: clap argument structs and
//! the commands behind them. The library proper never parses arguments or prints.

use crate::config::{folder_report, ModelFiles, DEFAULT_MODEL_DIR};
use crate::data::{self as ds, Labels, Task};
use crate::model::MultiTask;
use crate::optim::{parse_lr_override, Freeze, LrPreset, OptimConfig};
use crate::train::{evaluate, predict_probs, train, TrainConfig};
use std::io::IsTerminal;
use crate::device::{device_name, libtorch_lib, libtorch_version, parse_device, set_threads};
use crate::embed::{rows, EncodeOptions, SentenceEncoder};
use crate::params::LoadReport;
use crate::textio::read_texts;
use anyhow::{Context, Result};
use clap::Args;
use serde::Serialize;
use std::io::Write;
use std::path::{Path, PathBuf};
use tch::Device;

/// Where and how to run: shared by every command that loads a model.
#[derive(Args, Debug, Clone)]
pub struct RunArgs {
    /// Device: auto (CUDA if present, else CPU), cpu, cuda or cuda:N.
    #[arg(long, default_value = "auto")]
    pub device: String,
    /// libtorch intra-op threads (default: libtorch's choice, usually the number of cores).
    #[arg(long)]
    pub threads: Option<usize>,
}

impl RunArgs {
    /// Applies the thread count and resolves the device.
    pub fn setup(&self) -> Result<Device> {
        set_threads(self.threads);
        Ok(parse_device(&self.device)?)
    }
}

/// Arguments of `mtt embed` (and `task1`).
#[derive(Args, Debug, Clone)]
pub struct EmbedArgs {
    /// Sentence-transformers model folder.
    #[arg(long, default_value = DEFAULT_MODEL_DIR)]
    pub model: PathBuf,
    /// Texts, one per line (default: standard input; `-` also means standard input).
    #[arg(long)]
    pub input: Option<PathBuf>,
    /// L2-normalise the vectors (sentence-transformers does for this model; the seed's Task 1 did not).
    #[arg(long)]
    pub normalize: bool,
    /// Sentences per forward pass.
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u64).range(1..))]
    pub batch_size: u64,
    #[command(flatten)]
    pub run: RunArgs,
}

/// Loads the encoder, warning on stderr about file tensors nothing uses.
pub fn load_encoder(model: &Path, device: Device) -> Result<SentenceEncoder> {
    let (enc, report) = SentenceEncoder::load(model, device).with_context(|| format!("loading model {}", model.display()))?;
    warn_unexpected(&report);
    Ok(enc)
}

/// Prints a warning for tensors of a weights file that no variable took.
pub fn warn_unexpected(report: &LoadReport) {
    if !report.unexpected.is_empty() {
        eprintln!(
            "warning: {} tensor(s) in the weights file match no variable and were ignored: {}",
            report.unexpected.len(),
            report.unexpected.join(", ")
        );
    }
}

#[derive(Serialize)]
struct EmbeddingLine<'a> {
    text: &'a str,
    embedding: &'a [f32],
}

/// `mtt embed`: JSON Lines `{"text", "embedding"}` on stdout, in input order.
pub fn run_embed(args: &EmbedArgs) -> Result<()> {
    let device = args.run.setup()?;
    let texts = read_texts(args.input.as_deref())?;
    let enc = load_encoder(&args.model, device)?;
    let opts = EncodeOptions { batch_size: args.batch_size as usize, normalize: args.normalize };
    let vectors = rows(&enc.encode(&texts, opts)?)?;
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    for (text, v) in texts.iter().zip(&vectors) {
        serde_json::to_writer(&mut out, &EmbeddingLine { text, embedding: v })?;
        out.write_all(b"\n")?;
    }
    out.flush()?;
    Ok(())
}

/// The seed's Task 1 sample sentences.
pub const TASK1_SENTENCES: [&str; 3] = [
    "The quick brown fox jumps over the lazy dog.",
    "Deep learning models are powerful.",
    "Machine learning is transforming industries.",
];

/// `task1`: each sentence with its embedding's shape and first five values, as the seed printed.
pub fn run_task1(args: &EmbedArgs) -> Result<()> {
    let device = args.run.setup()?;
    let texts = match &args.input {
        Some(_) => read_texts(args.input.as_deref())?,
        None => TASK1_SENTENCES.iter().map(|s| s.to_string()).collect(),
    };
    let enc = load_encoder(&args.model, device)?;
    let opts = EncodeOptions { batch_size: args.batch_size as usize, normalize: args.normalize };
    let vectors = rows(&enc.encode(&texts, opts)?)?;
    println!(
        "Task 1: sentence embeddings with {} ({} pooling{}, device {})",
        args.model.display(),
        enc.config().pooling.describe(),
        if args.normalize { ", L2-normalised" } else { "" },
        device_name(device)
    );
    for (text, v) in texts.iter().zip(&vectors) {
        let head: Vec<String> = v.iter().take(5).map(|x| format!("{x:.4}")).collect();
        println!("\nSentence: {text}");
        println!("Embedding shape: [1, {}]", v.len());
        println!("First 5 values: [{}]", head.join(", "));
    }
    Ok(())
}

/// Arguments of `mtt doctor`.
#[derive(Args, Debug, Clone)]
pub struct DoctorArgs {
    /// Model folder to check.
    #[arg(long, default_value = DEFAULT_MODEL_DIR)]
    pub model: PathBuf,
}

/// `mtt doctor`: what libtorch, devices and model folder this binary sees. Fails when the model
/// folder is unusable.
pub fn run_doctor(args: &DoctorArgs) -> Result<()> {
    tch::maybe_init_cuda();
    println!("multi-task-transformer {}", env!("CARGO_PKG_VERSION"));
    println!("libtorch: {} (linked from {})", libtorch_version(), libtorch_lib());
    let n_cuda = tch::Cuda::device_count();
    println!(
        "CUDA: {} ({} device(s)), cuDNN: {}",
        if tch::Cuda::is_available() { "available" } else { "not available" },
        n_cuda,
        if tch::Cuda::cudnn_is_available() { "yes" } else { "no" }
    );
    println!("default device (--device auto): {}", device_name(Device::cuda_if_available()));
    println!("threads: {} intra-op, {} inter-op", tch::get_num_threads(), tch::get_num_interop_threads());
    println!("model folder: {}", args.model.display());
    let mut ok = true;
    for (file, present) in folder_report(&args.model) {
        println!("  [{}] {file}", if present { "ok" } else { "MISSING" });
        ok &= present;
    }
    if !ok {
        println!("status: model folder incomplete; run scripts/setup.sh (installs all-MiniLM-L6-v2) or pass --model DIR");
        anyhow::bail!("model folder {} is incomplete", args.model.display());
    }
    let files = ModelFiles::locate(&args.model)?;
    let cfg = files.encoder_config()?;
    println!(
        "  model: BERT, {} layers, hidden {}, {} heads, vocab {}",
        cfg.bert.num_hidden_layers, cfg.bert.hidden_size, cfg.bert.num_attention_heads, cfg.bert.vocab_size
    );
    println!(
        "  pooling: {}, embedding dim {}, max_seq_length {}",
        cfg.pooling.describe(),
        cfg.embedding_dim(),
        cfg.max_seq_length
    );
    println!(
        "  tokenizer: lower-case {}, strip accents {}",
        cfg.tokenizer.do_lower_case,
        cfg.tokenizer.strips_accents()
    );
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

// ---- Tasks 2-4: train, eval, predict -------------------------------------------------------------


/// Bundled training and dev data (copied from shared/data: TREC-6 and SST-5 folded to 3 classes).
pub const BUNDLED_TASK_A: &str = "data/trec6/train.tsv";
pub const BUNDLED_TASK_B: &str = "data/sst5_3class/train.tsv";
pub const BUNDLED_DEV_A: &str = "data/trec6/dev.tsv";
pub const BUNDLED_DEV_B: &str = "data/sst5_3class/dev.tsv";

/// Arguments of `mtt train`, `task3` and `task4`.
#[derive(Args, Debug, Clone)]
pub struct TrainArgs {
    /// Task A (sentence classification) training file: TSV/CSV with `text` and `label`, or JSON Lines.
    #[arg(long)]
    pub task_a: Option<PathBuf>,
    /// Task B (sentiment) training file.
    #[arg(long)]
    pub task_b: Option<PathBuf>,
    /// Joint training file with `text`, `label_a`, `label_b` (repeatable).
    #[arg(long = "train")]
    pub joint: Vec<PathBuf>,
    /// Task A dev file (accuracy and macro-F1 after each epoch).
    #[arg(long)]
    pub dev_a: Option<PathBuf>,
    /// Task B dev file.
    #[arg(long)]
    pub dev_b: Option<PathBuf>,
    /// Joint dev file (repeatable).
    #[arg(long = "dev")]
    pub dev_joint: Vec<PathBuf>,
    /// Output folder: model.safetensors, config.json, vocab.txt, metrics.json.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Base model: a sentence-transformers folder, or a multi-task checkpoint to continue from.
    #[arg(long, default_value = DEFAULT_MODEL_DIR)]
    pub model: PathBuf,
    /// Freezing scenario: none, all, encoder, embeddings, layers:K, head-a, head-b.
    #[arg(long)]
    pub freeze: Option<String>,
    /// Learning-rate preset: uniform (1e-4 everywhere) or layerwise (1e-6 / 1e-5 / 1e-4).
    #[arg(long, value_enum)]
    pub lr_plan: Option<LrPreset>,
    /// Rate of the subsets under a name prefix, e.g. encoder.encoder.layer=2e-5 (repeatable, later wins).
    #[arg(long = "lr", value_name = "PREFIX=RATE")]
    pub lr: Vec<String>,
    /// Per-layer decay F: layer i gets head_rate*F^(L-i), embeddings head_rate*F^(L+1).
    #[arg(long)]
    pub layer_decay: Option<f64>,
    /// Use AdamW with this weight decay instead of Adam.
    #[arg(long)]
    pub adamw: Option<f64>,
    /// Linear warm-up over this many steps (each subset warms up to its own rate).
    #[arg(long, default_value_t = 0)]
    pub warmup_steps: usize,
    /// Decay each subset's rate linearly to 0 at the last step.
    #[arg(long)]
    pub linear_decay: bool,
    /// Clip the global gradient L2 norm at this value.
    #[arg(long)]
    pub clip_norm: Option<f64>,
    /// Epochs over the training data.
    #[arg(long)]
    pub epochs: Option<usize>,
    /// Training batch size.
    #[arg(long, default_value_t = 32)]
    pub batch_size: usize,
    /// Seed for head initialisation, dropout and shuffling.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Stop after this many optimizer steps (the output folder is still written).
    #[arg(long)]
    pub max_steps: Option<usize>,
    /// Use only the first N rows of each training file.
    #[arg(long)]
    pub limit: Option<usize>,
    /// Weight of Task A's loss in the sum.
    #[arg(long, default_value_t = 1.0)]
    pub weight_a: f64,
    /// Weight of Task B's loss in the sum.
    #[arg(long, default_value_t = 1.0)]
    pub weight_b: f64,
    /// Dropout on the pooled vector before the heads.
    #[arg(long, default_value_t = 0.0)]
    pub head_dropout: f64,
    /// Keep the checkpoint of the best dev epoch (mean dev accuracy) instead of the last.
    #[arg(long)]
    pub save_best: bool,
    #[command(flatten)]
    pub run: RunArgs,
}

/// Defaults that differ between `mtt train`, `task3` and `task4`.
pub struct TrainDefaults {
    pub out: Option<&'static str>,
    pub freeze: &'static str,
    pub lr_plan: LrPreset,
    pub epochs: usize,
    pub limit: Option<usize>,
    /// Fill in the bundled data when no training file is given.
    pub bundled_data: bool,
}

impl TrainArgs {
    /// The library's training configuration.
    pub fn to_config(&self, d: &TrainDefaults) -> Result<TrainConfig> {
        let out = match (&self.out, d.out) {
            (Some(o), _) => o.clone(),
            (None, Some(o)) => PathBuf::from(o),
            (None, None) => anyhow::bail!("--out DIR is required"),
        };
        let mut c = TrainConfig::new(self.model.clone(), out);
        let no_train = self.task_a.is_none() && self.task_b.is_none() && self.joint.is_empty();
        let bundled = d.bundled_data && no_train;
        let pick = |given: &Option<PathBuf>, default: &str| given.clone().or_else(|| bundled.then(|| PathBuf::from(default)));
        c.task_a = pick(&self.task_a, BUNDLED_TASK_A);
        c.task_b = pick(&self.task_b, BUNDLED_TASK_B);
        c.joint = self.joint.clone();
        let no_dev = self.dev_a.is_none() && self.dev_b.is_none() && self.dev_joint.is_empty();
        let bundled_dev = bundled && no_dev;
        c.dev_a = self.dev_a.clone().or_else(|| bundled_dev.then(|| PathBuf::from(BUNDLED_DEV_A)));
        c.dev_b = self.dev_b.clone().or_else(|| bundled_dev.then(|| PathBuf::from(BUNDLED_DEV_B)));
        c.dev_joint = self.dev_joint.clone();
        c.freeze = Freeze::parse(self.freeze.as_deref().unwrap_or(d.freeze))?;
        c.lr_plan = self.lr_plan.unwrap_or(d.lr_plan);
        c.lr_overrides = self.lr.iter().map(|s| parse_lr_override(s)).collect::<crate::Result<_>>()?;
        c.layer_decay = self.layer_decay;
        c.optim = OptimConfig {
            adamw: self.adamw.is_some(),
            weight_decay: self.adamw.unwrap_or(0.0),
            warmup_steps: self.warmup_steps,
            linear_decay: self.linear_decay,
            clip_norm: self.clip_norm,
        };
        c.epochs = self.epochs.unwrap_or(d.epochs);
        c.batch_size = self.batch_size;
        c.seed = self.seed;
        c.max_steps = self.max_steps;
        c.limit = self.limit.or(if bundled { d.limit } else { None });
        c.weight_a = self.weight_a;
        c.weight_b = self.weight_b;
        if !(0.0..1.0).contains(&self.head_dropout) {
            anyhow::bail!("--head-dropout {} must be in [0, 1)", self.head_dropout);
        }
        c.head_dropout = self.head_dropout;
        c.save_best = self.save_best;
        c.device = self.run.device.clone();
        Ok(c)
    }
}

/// `mtt train` / `task3` / `task4`.
pub fn run_train(args: &TrainArgs, defaults: &TrainDefaults, title: &str) -> Result<()> {
    set_threads(args.run.threads);
    let cfg = args.to_config(defaults)?;
    println!("{title}");
    let show = std::io::stderr().is_terminal();
    let mut log = |line: &str| println!("{line}");
    train(&cfg, show, &mut log)?;
    Ok(())
}

/// Arguments of `mtt eval`.
#[derive(Args, Debug, Clone)]
pub struct EvalArgs {
    /// Multi-task checkpoint folder written by `mtt train`.
    #[arg(long)]
    pub model: PathBuf,
    /// Task A evaluation file.
    #[arg(long)]
    pub task_a: Option<PathBuf>,
    /// Task B evaluation file.
    #[arg(long)]
    pub task_b: Option<PathBuf>,
    /// Sentences per forward pass.
    #[arg(long, default_value_t = 64)]
    pub batch_size: usize,
    #[command(flatten)]
    pub run: RunArgs,
}

/// Loads a checkpoint, warning about unexpected tensors.
pub fn load_checkpoint(dir: &Path, device: Device) -> Result<MultiTask> {
    let (m, report) = MultiTask::load(dir, device).with_context(|| format!("loading checkpoint {}", dir.display()))?;
    warn_unexpected(&report);
    Ok(m)
}

/// `mtt eval`: one JSON object with accuracy, macro-F1, n and the confusion matrix per task.
pub fn run_eval(args: &EvalArgs) -> Result<()> {
    let device = args.run.setup()?;
    ds::check_batch_size(args.batch_size)?;
    if args.task_a.is_none() && args.task_b.is_none() {
        anyhow::bail!("nothing to evaluate: pass --task-a FILE and/or --task-b FILE");
    }
    let model = load_checkpoint(&args.model, device)?;
    let mut sources = Vec::new();
    for (p, t) in [(&args.task_a, Task::A), (&args.task_b, Task::B)] {
        if let Some(p) = p {
            sources.push(ds::read_labelled(p, Some(t))?);
        }
    }
    let ex = ds::examples(&sources, &model.config.labels_a, &model.config.labels_b, &model.base.tokenizer)?;
    let m = evaluate(&model, &ex, args.batch_size);
    println!("{}", serde_json::to_string(&m)?);
    Ok(())
}

/// Arguments of `mtt predict`.
#[derive(Args, Debug, Clone)]
pub struct PredictArgs {
    /// Multi-task checkpoint folder written by `mtt train`.
    #[arg(long)]
    pub model: PathBuf,
    /// Texts, one per line (default: standard input).
    #[arg(long)]
    pub input: Option<PathBuf>,
    /// Sentences per forward pass.
    #[arg(long, default_value_t = 64)]
    pub batch_size: usize,
    #[command(flatten)]
    pub run: RunArgs,
}

#[derive(Serialize)]
struct TaskPrediction<'a> {
    label: &'a str,
    probs: serde_json::Map<String, serde_json::Value>,
}

#[derive(Serialize)]
struct PredictionLine<'a> {
    text: &'a str,
    task_a: TaskPrediction<'a>,
    task_b: TaskPrediction<'a>,
}

fn task_prediction<'a>(labels: &'a Labels, probs: &[f32]) -> TaskPrediction<'a> {
    let best = probs.iter().enumerate().fold(0, |b, (i, &p)| if p > probs[b] { i } else { b });
    let probs = labels.0.iter().zip(probs).map(|(l, &p)| (l.clone(), serde_json::json!(p))).collect();
    TaskPrediction { label: &labels.0[best], probs }
}

/// `mtt predict`: JSON Lines with each task's label and class probabilities, in input order.
pub fn run_predict(args: &PredictArgs) -> Result<()> {
    let device = args.run.setup()?;
    ds::check_batch_size(args.batch_size)?;
    let texts = read_texts(args.input.as_deref())?;
    let model = load_checkpoint(&args.model, device)?;
    let ids = model.base.tokenizer.encode_all(&texts);
    let (pa, pb) = predict_probs(&model, &ids, args.batch_size);
    let (pa, pb) = (rows(&pa)?, rows(&pb)?);
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    for i in 0..texts.len() {
        let line = PredictionLine {
            text: &texts[i],
            task_a: task_prediction(&model.config.labels_a, &pa[i]),
            task_b: task_prediction(&model.config.labels_b, &pb[i]),
        };
        serde_json::to_writer(&mut out, &line)?;
        out.write_all(b"\n")?;
    }
    out.flush()?;
    Ok(())
}

/// The seed's Task 2 sample sentences.
pub const TASK2_SENTENCES: [&str; 3] = [
    "I absolutely love the taste of this pizza!",
    "The service was terrible, I am very disappointed.",
    "What is the capital of France?",
];

/// Arguments of `task2`.
#[derive(Args, Debug, Clone)]
pub struct Task2Args {
    /// Base sentence-transformers folder (heads are freshly initialised).
    #[arg(long, default_value = DEFAULT_MODEL_DIR)]
    pub model: PathBuf,
    /// A trained multi-task checkpoint to run instead of fresh heads.
    #[arg(long)]
    pub checkpoint: Option<PathBuf>,
    /// Seed for the fresh heads.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    #[command(flatten)]
    pub run: RunArgs,
}

/// `task2`: both heads' logits, probabilities and predicted labels for the sample sentences.
pub fn run_task2(args: &Task2Args) -> Result<()> {
    let device = args.run.setup()?;
    let model = match &args.checkpoint {
        Some(dir) => load_checkpoint(dir, device)?,
        None => {
            tch::manual_seed(args.seed as i64);
            let base = load_encoder(&args.model, device)?;
            let la = Labels(["ABBR", "DESC", "ENTY", "HUM", "LOC", "NUM"].iter().map(|s| s.to_string()).collect());
            let lb = Labels(["negative", "neutral", "positive"].iter().map(|s| s.to_string()).collect());
            MultiTask::new(base, la, lb, 0.0)?
        }
    };
    let texts: Vec<String> = TASK2_SENTENCES.iter().map(|s| s.to_string()).collect();
    let ids = model.base.tokenizer.encode_all(&texts);
    let seqs: Vec<&[i64]> = ids.iter().map(Vec::as_slice).collect();
    let (x, m) = crate::batch::pad(&seqs, model.base.tokenizer.pad_id(), device);
    let logits = tch::no_grad(|| model.forward_t(&x, &m, false));
    let pooled = tch::no_grad(|| model.pooled_t(&x, &m, false));
    println!(
        "Task 2: multi-task model ({}), shared encoder + mean pooling {:?} -> classification_head {:?}, sentiment_head {:?}",
        match &args.checkpoint {
            Some(c) => format!("checkpoint {}", c.display()),
            None => format!("{} with untrained heads, seed {}", args.model.display(), args.seed),
        },
        pooled.size(),
        logits.a.size(),
        logits.b.size()
    );
    let heads = [
        ("Task A (sentence classification)", &logits.a, &model.config.labels_a),
        ("Task B (sentiment)", &logits.b, &model.config.labels_b),
    ];
    for (i, text) in texts.iter().enumerate() {
        println!("\nSentence: {text}");
        for (name, l, labels) in heads {
            let row = l.get(i as i64);
            let probs = Vec::<f32>::try_from(row.softmax(-1, tch::Kind::Float))?;
            let lv = Vec::<f32>::try_from(&row)?;
            let best = probs.iter().enumerate().fold(0, |b, (j, &p)| if p > probs[b] { j } else { b });
            let fmt = |v: &[f32]| v.iter().map(|x| format!("{x:.4}")).collect::<Vec<_>>().join(", ");
            println!("  {name}: logits [{}] probs [{}] -> {}", fmt(&lv), fmt(&probs), labels.0[best]);
        }
    }
    Ok(())
}

/// Epochs of a no-argument task3/task4 run.
pub const DEFAULT_EPOCHS: usize = 1;
/// Rows per training file of a no-argument task3/task4 run (None = all).
pub const DEFAULT_LIMIT: Option<usize> = None;

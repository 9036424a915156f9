//! `mtt eval`, `mtt predict` and `task2`: arguments and command bodies.

use super::{load_checkpoint, load_checkpoint_at, warn_unexpected, InferArgs, RunArgs};
use crate::classifier::Classifier;
use crate::data::{self as ds, Labels, Task};
use crate::infer::{self, argmax, rows};
use crate::textio::open_texts;
use super::embed::{report_skip_total, report_skipped, stopped};
use anyhow::{Context, Result};
use clap::Args;
use serde::Serialize;
use std::io::Write;
use std::path::PathBuf;

/// Arguments of `mtt eval`.
#[derive(Args, Debug, Clone)]
pub struct EvalArgs {
    /// Multi-task checkpoint folder written by `mtt train` (with --sts alone, also a
    /// sentence-transformers folder).
    #[arg(long)]
    pub model: PathBuf,
    /// Task A evaluation file.
    #[arg(long)]
    pub task_a: Option<PathBuf>,
    /// Task B evaluation file.
    #[arg(long)]
    pub task_b: Option<PathBuf>,
    /// Scored sentence pairs (`text_a`, `text_b`, `score`, e.g. data/stsb/dev.tsv): adds `sts`
    /// with the Spearman and Pearson correlation of the encoder's cosine similarities.
    #[arg(long, value_name = "FILE")]
    pub sts: Option<PathBuf>,
    /// Batch size, token budget and encoder precision.
    #[command(flatten)]
    pub infer: InferArgs,
    /// Device and thread count.
    #[command(flatten)]
    pub run: RunArgs,
}

/// `mtt eval`: one JSON object with accuracy, macro-F1, n and the confusion matrix per task, and
/// with `--sts`, `"sts": {"spearman", "pearson", "n"}`.
pub fn run_eval(args: &EvalArgs) -> Result<()> {
    let device = args.run.setup()?;
    if args.task_a.is_none() && args.task_b.is_none() && args.sts.is_none() {
        anyhow::bail!("nothing to evaluate: pass --task-a FILE and/or --task-b FILE, or --sts FILE");
    }
    let precision = args.infer.precision_for(device)?;
    let mut out = serde_json::Map::new();
    if let Some(path) = &args.sts {
        let pairs = crate::similarity::read_scored_pairs(path)?;
        let mut enc = crate::embed::SentenceEncoder::load_any(&args.model, device).with_context(|| format!("loading {}", args.model.display()))?.0;
        enc.set_precision(precision)?;
        let batch = args.infer.batch_size.unwrap_or(64);
        out.insert("sts".into(), serde_json::to_value(crate::similarity::evaluate(&enc, &pairs, batch)?)?);
    }
    if args.task_a.is_some() || args.task_b.is_some() {
        for (task, m) in eval_tasks(args, device, precision)? {
            out.insert(task, serde_json::to_value(m)?);
        }
    }
    println!("{}", serde_json::Value::Object(out));
    Ok(())
}

/// Both tasks' metrics of the checkpoint on `--task-a` / `--task-b`.
fn eval_tasks(args: &EvalArgs, device: tch::Device, precision: crate::precision::Precision) -> Result<std::collections::BTreeMap<String, crate::metrics::TaskMetrics>> {
    let clf = load_checkpoint_at(&args.model, device, precision)?;
    let mut sources = Vec::new();
    for (p, t) in [(&args.task_a, Task::A), (&args.task_b, Task::B)] {
        if let Some(p) = p {
            sources.push(ds::read_labelled(p, Some(t))?);
        }
    }
    let ex = clf.examples(&sources)?;
    Ok(infer::evaluate(&clf.model, &ex, args.infer.batching(clf.tokenizer.pad_id()))?)
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
    /// Skip input lines that are not valid UTF-8 instead of stopping at the first one: each is
    /// reported on stderr with its line number, the output has one line per valid input line, and
    /// the number skipped is reported at the end.
    #[arg(long)]
    pub skip_invalid: bool,
    /// Batch size, token budget and encoder precision.
    #[command(flatten)]
    pub infer: InferArgs,
    /// Device and thread count.
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
    let probs_map = labels.0.iter().zip(probs).map(|(l, &p)| (l.clone(), serde_json::json!(p))).collect();
    TaskPrediction { label: &labels.0[argmax(probs)], probs: probs_map }
}

/// `mtt predict`: JSON Lines with each task's label and class probabilities, in input order, on
/// stdout.
///
/// Reads the whole input, then predicts it (all texts batched together). A line that is not
/// UTF-8 stops the reading there: the lines before it are predicted, written and flushed, then
/// the command fails with an error naming the source and the line (`--skip-invalid` skips such
/// lines instead, reporting each on stderr).
pub fn run_predict(args: &PredictArgs) -> Result<()> {
    const CMD: &str = "mtt predict";
    let device = args.run.setup()?;
    let precision = args.infer.precision_for(device)?;
    let mut input = open_texts(args.input.as_deref())?.skip_invalid(args.skip_invalid);
    let mut texts = input.window(usize::MAX).map_err(|e| stopped(e, 0))?;
    report_skipped(&mut input, CMD);
    let clf = load_checkpoint_at(&args.model, device, precision)?;
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let c = &clf.model.config;
    let mut written = 0;
    loop {
        let (pa, pb) = clf.probabilities(&texts, args.infer.batching(clf.tokenizer.pad_id()))?;
        let (pa, pb) = (rows(&pa)?, rows(&pb)?);
        for (i, text) in texts.iter().enumerate() {
            let line = PredictionLine { text, task_a: task_prediction(&c.labels_a, &pa[i]), task_b: task_prediction(&c.labels_b, &pb[i]) };
            serde_json::to_writer(&mut out, &line)?;
            out.write_all(b"\n")?;
        }
        out.flush()?;
        written += texts.len();
        // Empty at the end of the input; after a bad line, its error.
        texts = input.window(usize::MAX).map_err(|e| stopped(e, written))?;
        report_skipped(&mut input, CMD);
        if texts.is_empty() {
            break;
        }
    }
    if args.skip_invalid {
        report_skip_total(&input, CMD);
    }
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
    /// Default: $MTT_MODEL, else ./models/all-MiniLM-L6-v2, else the user cache (the first that
    /// exists; `mtt doctor` says which).
    #[arg(long, default_value_os_t = crate::config::default_model_dir())]
    pub model: PathBuf,
    /// A trained multi-task checkpoint to run instead of fresh heads.
    #[arg(long)]
    pub checkpoint: Option<PathBuf>,
    /// Seed for the fresh heads.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Device and thread count.
    #[command(flatten)]
    pub run: RunArgs,
}

/// `task2`: both heads' logits, probabilities and predicted labels for the sample sentences.
pub fn run_task2(args: &Task2Args) -> Result<()> {
    let device = args.run.setup()?;
    let clf = match &args.checkpoint {
        Some(dir) => load_checkpoint(dir, device)?,
        None => {
            tch::manual_seed(args.seed as i64);
            let names = |v: &[&str]| Labels(v.iter().map(|s| s.to_string()).collect());
            let la = names(&["ABBR", "DESC", "ENTY", "HUM", "LOC", "NUM"]);
            let lb = names(&["negative", "neutral", "positive"]);
            let (clf, report) =
                Classifier::from_base(&args.model, la, lb, 0.0, device).with_context(|| format!("loading model {}", args.model.display()))?;
            warn_unexpected(&report);
            clf
        }
    };
    let ids = clf.tokenizer.encode_all(&TASK2_SENTENCES);
    let seqs: Vec<&[i64]> = ids.iter().map(Vec::as_slice).collect();
    let (x, m) = crate::padding::pad(&seqs, clf.tokenizer.pad_id(), device);
    let (pooled, logits) = tch::no_grad(|| {
        let pooled = clf.model.pooled_t(&x, &m, false);
        let logits = clf.model.heads_t(&pooled, false);
        (pooled, logits)
    });
    println!(
        "Task 2: multi-task model ({}), shared encoder + {} pooling {:?} -> classification_head {:?}, sentiment_head {:?}",
        match &args.checkpoint {
            Some(c) => format!("checkpoint {}", c.display()),
            None => format!("{} with untrained heads, seed {}", args.model.display(), args.seed),
        },
        clf.model.config.encoder.pooling.describe(),
        pooled.size(),
        logits.a.size(),
        logits.b.size()
    );
    let c = &clf.model.config;
    let heads = [("Task A (sentence classification)", &logits.a, &c.labels_a), ("Task B (sentiment)", &logits.b, &c.labels_b)];
    let fmt = |v: &[f32]| v.iter().map(|x| format!("{x:.4}")).collect::<Vec<_>>().join(", ");
    for (i, text) in TASK2_SENTENCES.iter().enumerate() {
        println!("\nSentence: {text}");
        for (name, l, labels) in heads {
            let row = l.get(i as i64);
            let probs = Vec::<f32>::try_from(row.softmax(-1, tch::Kind::Float))?;
            let lv = Vec::<f32>::try_from(&row)?;
            println!("  {name}: logits [{}] probs [{}] -> {}", fmt(&lv), fmt(&probs), labels.0[argmax(&probs)]);
        }
    }
    Ok(())
}

/// Arguments of `mtt export`.
#[derive(Args, Debug, Clone)]
pub struct ExportArgs {
    /// A multi-task checkpoint folder (written by `mtt train`).
    #[arg(long)]
    pub model: PathBuf,
    /// New folder: a sentence-transformers model plus heads.safetensors and labels.json.
    #[arg(long)]
    pub out: PathBuf,
}

/// `mtt export`.
pub fn run_export(a: &ExportArgs) -> Result<()> {
    let n = crate::export::export(&a.model, &a.out).with_context(|| format!("exporting {}", a.model.display()))?;
    println!("exported {} encoder tensors, the heads and labels to {} (load it with SentenceTransformer(\"{}\"))", n, a.out.display(), a.out.display());
    Ok(())
}

/// Arguments of `mtt import`.
#[derive(Args, Debug, Clone)]
pub struct ImportArgs {
    /// safetensors file of the PyTorch model's state_dict (encoder.*, classification_head.*, sentiment_head.*).
    #[arg(long)]
    pub weights: PathBuf,
    /// A checkpoint or an exported folder that describes the model (labels, encoder, tokenizer).
    #[arg(long)]
    pub like: PathBuf,
    /// New checkpoint folder.
    #[arg(long)]
    pub out: PathBuf,
}

/// `mtt import`.
pub fn run_import(a: &ImportArgs) -> Result<()> {
    crate::fsutil::prepare_output_dir(&a.out)?;
    crate::export::import(&a.weights, &a.like, &a.out).with_context(|| format!("importing {}", a.weights.display()))?;
    println!("checkpoint written to {}", a.out.display());
    Ok(())
}

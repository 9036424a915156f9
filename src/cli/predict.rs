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
    /// A named task's evaluation file, `NAME=FILE` (repeatable); the task's kind and columns
    /// come from the checkpoint (one text and `label`; pairs: `text_a`, `text_b` and `label` or
    /// `score`).
    #[arg(long = "task", value_name = "NAME=FILE")]
    pub tasks: Vec<String>,
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

/// `mtt eval`: one JSON object keyed by task name: accuracy, macro-F1, n and the confusion
/// matrix for classification kinds, `spearman`, `pearson` and `n` for similarity; with `--sts`,
/// also `"sts": {"spearman", "pearson", "n"}` of the encoder's own embeddings.
pub fn run_eval(args: &EvalArgs) -> Result<()> {
    let device = args.run.setup()?;
    if args.task_a.is_none() && args.task_b.is_none() && args.tasks.is_empty() && args.sts.is_none() {
        anyhow::bail!("nothing to evaluate: pass --task-a FILE and/or --task-b FILE, --task NAME=FILE, or --sts FILE");
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
    if args.task_a.is_some() || args.task_b.is_some() || !args.tasks.is_empty() {
        let e = eval_tasks(args, device, precision)?;
        for (task, m) in e.classes {
            out.insert(task, serde_json::to_value(m)?);
        }
        for (task, m) in e.similarity {
            out.insert(task, serde_json::to_value(m)?);
        }
    }
    println!("{}", serde_json::Value::Object(out));
    Ok(())
}

/// The checkpoint's metrics on `--task-a` / `--task-b` and each `--task NAME=FILE`.
fn eval_tasks(args: &EvalArgs, device: tch::Device, precision: crate::precision::Precision) -> Result<infer::Evaluation> {
    let clf = load_checkpoint_at(&args.model, device, precision)?;
    let c = &clf.model.config;
    let mut sources = Vec::new();
    for (p, t) in [(&args.task_a, Task::A), (&args.task_b, Task::B)] {
        if let Some(p) = p {
            if c.task(t.key()).is_none() {
                anyhow::bail!("{}: the checkpoint has no {} (its tasks: {})", args.model.display(), t.key(), c.task_names().join(", "));
            }
            sources.push(ds::read_labelled(p, Some(t))?);
        }
    }
    let mut ex = clf.examples(&sources)?;
    let mut seen = Vec::new();
    for spec in &args.tasks {
        let (name, file) = spec.split_once('=').with_context(|| format!("--task '{spec}': expected NAME=FILE"))?;
        let Some((t, info)) = c.task(name) else {
            anyhow::bail!("--task {name}: the checkpoint has no task '{name}' (its tasks: {})", c.task_names().join(", "));
        };
        if seen.contains(&name) {
            anyhow::bail!("--task {name} is given twice");
        }
        seen.push(name);
        let columns = training_columns(c, name);
        let rows = crate::task::read_task_file(std::path::Path::new(file), info.kind, &columns)?;
        ex.extend(crate::task::task_examples(&rows, t, info, c.tasks.len(), &clf.tokenizer)?);
    }
    Ok(infer::evaluate(&clf.model, &ex, args.infer.batching(clf.tokenizer.pad_id(), clf.model.device()))?)
}

/// The column names task `name` was trained with (from the checkpoint's training record), or
/// the defaults.
fn training_columns(c: &crate::model::MultiTaskConfig, name: &str) -> crate::task::ColumnNames {
    c.training
        .as_ref()
        .and_then(|t| t.get("tasks"))
        .and_then(|t| serde_json::from_value::<Vec<crate::task::TaskSpec>>(t.clone()).ok())
        .and_then(|ts| ts.into_iter().find(|t| t.name == name))
        .map(|t| t.columns)
        .unwrap_or_default()
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
    /// Each line is a sentence pair, `TEXT_A<TAB>TEXT_B`: answer the pair tasks (each
    /// pair-classification head's label and probabilities, each similarity task's cosine
    /// `score`) instead of the one-text heads.
    #[arg(long)]
    pub pairs: bool,
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

/// One output line: `text`, then each head's prediction under its task name, in task order.
struct PredictionLine<'a> {
    text: &'a str,
    tasks: Vec<(&'a str, TaskPrediction<'a>)>,
}

impl Serialize for PredictionLine<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = s.serialize_map(Some(1 + self.tasks.len()))?;
        m.serialize_entry("text", self.text)?;
        for (name, p) in &self.tasks {
            m.serialize_entry(name, p)?;
        }
        m.end()
    }
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
    if args.pairs && !c.tasks.iter().any(|t| t.kind.is_pair()) {
        anyhow::bail!("--pairs: {} has no pair task (its tasks: {})", args.model.display(), c.task_names().join(", "));
    }
    loop {
        if args.pairs {
            predict_pairs(&clf, &texts, written, args, &mut out)?;
        } else {
            predict_texts(&clf, &texts, args, &mut out)?;
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

/// One JSON line per text: every one-text classification head's prediction.
fn predict_texts(clf: &Classifier, texts: &[String], args: &PredictArgs, out: &mut impl Write) -> Result<()> {
    let c = &clf.model.config;
    {
        let probs = clf.probabilities(texts, args.infer.batching(clf.tokenizer.pad_id(), clf.model.device()))?;
        let probs: Vec<(&str, &Labels, Vec<Vec<f32>>)> = probs
            .iter()
            .map(|(name, p)| Ok((name.as_str(), &c.task(name).expect("a task of the model").1.labels, rows(p)?)))
            .collect::<Result<_>>()?;
        for (i, text) in texts.iter().enumerate() {
            let tasks = probs.iter().map(|(name, labels, p)| (*name, task_prediction(labels, &p[i]))).collect();
            let line = PredictionLine { text, tasks };
            serde_json::to_writer(&mut *out, &line)?;
            out.write_all(b"\n")?;
        }
    }
    Ok(())
}

/// One JSON line per `TEXT_A<TAB>TEXT_B` line: `text_a`, `text_b`, then each pair task under its
/// name: a pair-classification head's `label` and `probs`, a similarity task's cosine `score`.
fn predict_pairs(clf: &Classifier, lines: &[String], before: usize, args: &PredictArgs, out: &mut impl Write) -> Result<()> {
    let mut pairs = Vec::with_capacity(lines.len());
    for (i, l) in lines.iter().enumerate() {
        let (a, b) = l.split_once('\t').with_context(|| {
            format!("{}:{}: expected TEXT_A<TAB>TEXT_B (--pairs)", args.input.as_ref().map_or("stdin".to_string(), |p| p.display().to_string()), before + i + 1)
        })?;
        pairs.push((a, b));
    }
    let texts: Vec<&str> = pairs.iter().flat_map(|(a, b)| [*a, *b]).collect();
    let ids = clf.tokenizer.encode_all(&texts);
    let dim = clf.model.config.encoder.embedding_dim();
    let pooled = infer::batched(&ids, args.infer.batching(clf.tokenizer.pad_id(), clf.model.device()), clf.model.device(), &[dim], |x, m| vec![clf.model.pooled_t(x, m, false)])?
        .remove(0)
        .to_device(clf.model.device());
    let n = pairs.len() as i64;
    let index = |odd: i64| tch::Tensor::arange_start_step(odd, 2 * n, 2, (tch::Kind::Int64, clf.model.device()));
    let (u, v) = (pooled.index_select(0, &index(0)), pooled.index_select(0, &index(1)));
    let c = &clf.model.config;
    let mut outputs = Vec::new();
    for (t, info) in c.tasks.iter().enumerate().filter(|(_, t)| t.kind.is_pair()) {
        outputs.push((info, rows(&infer::pair_outputs(&clf.model, t, &u, &v).view([n, -1]))?));
    }
    for (i, (a, b)) in pairs.iter().enumerate() {
        let mut tasks = Vec::new();
        for (info, o) in &outputs {
            let v = if info.kind.has_head() { serde_json::to_value(task_prediction(&info.labels, &o[i]))? } else { serde_json::json!({ "score": o[i][0] }) };
            tasks.push((info.name.as_str(), v));
        }
        serde_json::to_writer(&mut *out, &PairLine { text_a: a, text_b: b, tasks })?;
        out.write_all(b"\n")?;
    }
    Ok(())
}

/// A pair's output line: `text_a`, `text_b`, then each pair task's answer in task order.
struct PairLine<'a> {
    text_a: &'a str,
    text_b: &'a str,
    tasks: Vec<(&'a str, serde_json::Value)>,
}

impl Serialize for PairLine<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = s.serialize_map(Some(2 + self.tasks.len()))?;
        m.serialize_entry("text_a", self.text_a)?;
        m.serialize_entry("text_b", self.text_b)?;
        for (k, v) in &self.tasks {
            m.serialize_entry(k, v)?;
        }
        m.end()
    }
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
            let (clf, report) = Classifier::from_base(&args.model, crate::task::seed_tasks(la, lb), 0.0, device)
                .with_context(|| format!("loading model {}", args.model.display()))?;
            warn_unexpected(&report);
            clf
        }
    };
    let ids = clf.tokenizer.encode_all(&TASK2_SENTENCES);
    let seqs: Vec<&[i64]> = ids.iter().map(Vec::as_slice).collect();
    let (x, m) = crate::padding::pad(&seqs, clf.tokenizer.pad_id(), device);
    let (pooled, logits) = tch::no_grad(|| {
        let pooled = clf.model.pooled_t(&x, &m, false);
        let logits = clf.model.text_heads_t(&pooled, false);
        (pooled, logits)
    });
    let c = &clf.model.config;
    let shapes: Vec<String> = logits.iter().map(|(t, l)| format!("{} {:?}", c.tasks[*t].subset(), l.size())).collect();
    println!(
        "Task 2: multi-task model ({}), shared encoder + {} pooling {:?} -> {}",
        match &args.checkpoint {
            Some(c) => format!("checkpoint {}", c.display()),
            None => format!("{} with untrained heads, seed {}", args.model.display(), args.seed),
        },
        clf.model.config.encoder.pooling.describe(),
        pooled.size(),
        shapes.join(", ")
    );
    let title = |name: &str| match name {
        crate::task::TASK_A => "Task A (sentence classification)".to_string(),
        crate::task::TASK_B => "Task B (sentiment)".to_string(),
        n => n.to_string(),
    };
    let heads: Vec<(String, &tch::Tensor, &Labels)> = logits.iter().map(|(t, l)| (title(&c.tasks[*t].name), l, &c.tasks[*t].labels)).collect();
    let fmt = |v: &[f32]| v.iter().map(|x| format!("{x:.4}")).collect::<Vec<_>>().join(", ");
    for (i, text) in TASK2_SENTENCES.iter().enumerate() {
        println!("\nSentence: {text}");
        for (name, l, labels) in &heads {
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

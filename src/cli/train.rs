//! `mtt train`, `task3` and `task4`: flags, their defaults per binary, and the mapping of flags to
//! [`TrainConfig`] fields (each flag is its field's name in kebab case).

use super::{at_least_one, RunArgs};
use crate::data::{bundled, Task};
use crate::device::set_threads;
use crate::freeze::Freeze;
use crate::task::TaskSpec;
use crate::optim::{parse_lr_override, LrPreset, OptimConfig};
use crate::batch::TaskSampling;
use crate::error::Error;
use crate::train::{resume_with, train_with, LossWeighting, Progress, RunControl, StopFlag, TrainConfig};
use anyhow::Result;
use clap::builder::{PossibleValue, PossibleValuesParser, TypedValueParser};
use clap::Args;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// clap parser for `--freeze`: any [`Freeze`] name; `--help` lists them.
#[derive(Clone, Copy, Debug)]
pub struct FreezeParser;

impl TypedValueParser for FreezeParser {
    type Value = Freeze;

    fn parse_ref(&self, cmd: &clap::Command, arg: Option<&clap::Arg>, value: &std::ffi::OsStr) -> Result<Freeze, clap::Error> {
        let flag = arg.map(|a| a.to_string()).unwrap_or_else(|| "--freeze".into());
        let text = value.to_string_lossy();
        text.parse::<Freeze>().map_err(|e| {
            clap::Error::raw(clap::error::ErrorKind::InvalidValue, format!("invalid value '{text}' for '{flag}': {e}\n")).with_cmd(cmd)
        })
    }

    fn possible_values(&self) -> Option<Box<dyn Iterator<Item = PossibleValue> + '_>> {
        Some(Box::new(Freeze::NAMES.iter().map(PossibleValue::new)))
    }
}

fn lr_preset_parser() -> impl TypedValueParser<Value = LrPreset> {
    PossibleValuesParser::new(LrPreset::NAMES).map(|s| s.parse::<LrPreset>().expect("a listed preset"))
}

fn sampling_parser() -> impl TypedValueParser<Value = TaskSampling> {
    PossibleValuesParser::new(["proportional", "round-robin"]).map(|s| s.parse::<TaskSampling>().expect("a listed scheme"))
}

fn loss_weighting_parser() -> impl TypedValueParser<Value = LossWeighting> {
    PossibleValuesParser::new(LossWeighting::NAMES).map(|s| s.parse::<LossWeighting>().expect("a listed weighting"))
}

fn positive(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 => Ok(v),
        Ok(_) => Err("must be finite and > 0".into()),
        Err(e) => Err(e.to_string()),
    }
}

fn dropout(s: &str) -> Result<f64, String> {
    let p: f64 = s.parse().map_err(|e| format!("{e}"))?;
    if (0.0..1.0).contains(&p) {
        Ok(p)
    } else {
        Err("must be in [0, 1)".into())
    }
}

fn task_spec(s: &str) -> Result<TaskSpec, String> {
    s.parse().map_err(|e: crate::error::Error| e.to_string())
}

fn lr_override(s: &str) -> Result<(String, f64), String> {
    parse_lr_override(s).map_err(|e| e.to_string())
}

/// The options that set what a run computes (every one but `--resume` and those that only say
/// how it runs): `--resume` takes the run's own settings and refuses these. A test checks the
/// list against the arguments.
const SETTINGS: &[&str] = &[
    "task_a", "task_b", "joint", "dev_a", "dev_b", "dev_joint", "out", "model", "freeze", "lr_plan", "lr", "layer_decay", "adamw",
    "warmup_steps", "linear_decay", "clip_norm", "epochs", "batch_size", "seed", "max_steps", "limit", "weight_a", "weight_b",
    "head_dropout", "save_best", "patience", "pooling", "task_sampling", "task_temperature", "loss_weighting", "loss_weighting_lr",
    "no_cache", "cache_dir", "bucketing", "only_task", "ood_b", "overwrite", "interrupt_after_steps", "task", "tasks_file", "sts_eval",
];

/// Options `--resume` accepts: they change how the run goes, not what it computes.
#[cfg(test)]
const RUN_ONLY: &[&str] = &["resume", "progress_every", "device", "threads"];

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
    /// A named task, `NAME=KIND:TRAIN[:DEV]` (repeatable): KIND is classification (`text`,
    /// `label`), pair-classification (`text_a`, `text_b`, `label`) or similarity (`text_a`,
    /// `text_b`, `score`). Beside --task-a/--task-b, or alone.
    #[arg(long = "task", value_name = "NAME=KIND:TRAIN[:DEV]", value_parser = task_spec)]
    pub task: Vec<TaskSpec>,
    /// A tasks file (TOML `[[task]]` tables: name, kind, train, dev, weight, columns,
    /// score_range), paths relative to the file; its tasks follow the --task ones.
    #[arg(long = "tasks", value_name = "FILE")]
    pub tasks_file: Option<PathBuf>,
    /// Score the encoder's own embeddings on this file of scored pairs after the run (e.g.
    /// data/stsb/dev.tsv), zero-shot: metrics.json's `sts` says what the fine-tune kept of
    /// sentence similarity.
    #[arg(long, value_name = "FILE")]
    pub sts_eval: Option<PathBuf>,
    /// Task A dev file (accuracy and macro-F1 after each epoch).
    #[arg(long)]
    pub dev_a: Option<PathBuf>,
    /// Task B dev file.
    #[arg(long)]
    pub dev_b: Option<PathBuf>,
    /// Joint dev file (repeatable).
    #[arg(long = "dev")]
    pub dev_joint: Vec<PathBuf>,
    /// Output folder: model.safetensors, config.json, vocab.txt, metrics.json (checked before training).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Base model: a sentence-transformers folder, or a multi-task checkpoint to continue from.
    /// Default: $MTT_MODEL, else ./models/all-MiniLM-L6-v2, else the user cache (the first that
    /// exists; `mtt doctor` says which).
    #[arg(long, default_value_os_t = crate::config::default_model_dir())]
    pub model: PathBuf,
    /// Freezing scenario (layers:K freezes the embeddings and the first K layers).
    #[arg(long, value_name = "SCENARIO", value_parser = FreezeParser)]
    pub freeze: Option<Freeze>,
    /// Learning-rate preset: uniform (1e-4 everywhere) or layerwise (1e-6 / 1e-5 / 1e-4).
    #[arg(long, value_parser = lr_preset_parser())]
    pub lr_plan: Option<LrPreset>,
    /// Rate of the subsets under a name prefix, e.g. encoder.encoder.layer=2e-5 (repeatable, later
    /// wins). Rates are per subset: a prefix inside one subset is an error.
    #[arg(long = "lr", value_name = "PREFIX=RATE", value_parser = lr_override)]
    pub lr: Vec<(String, f64)>,
    /// Per-layer decay F in (0, 1]: layer i gets head_rate*F^(L-i), embeddings head_rate*F^(L+1).
    #[arg(long)]
    pub layer_decay: Option<f64>,
    /// Use AdamW with this weight decay instead of Adam.
    #[arg(long, value_name = "WEIGHT_DECAY")]
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
    #[arg(long, value_parser = at_least_one)]
    pub epochs: Option<usize>,
    /// Training batch size.
    #[arg(long, default_value_t = 32, value_parser = at_least_one)]
    pub batch_size: usize,
    /// Seed for head initialisation, dropout and shuffling.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Stop right after this many optimizer steps (the output folder is still written).
    #[arg(long, value_parser = at_least_one)]
    pub max_steps: Option<usize>,
    /// Use only the first N rows of each training file.
    #[arg(long, value_parser = at_least_one)]
    pub limit: Option<usize>,
    /// Weight of Task A's loss in the sum.
    #[arg(long, default_value_t = 1.0)]
    pub weight_a: f64,
    /// Weight of Task B's loss in the sum.
    #[arg(long, default_value_t = 1.0)]
    pub weight_b: f64,
    /// Dropout on the pooled vector before the heads (default 0, or the checkpoint's own value
    /// when --model is a checkpoint).
    #[arg(long, value_parser = dropout)]
    pub head_dropout: Option<f64>,
    /// Keep the checkpoint of the best dev epoch (mean dev accuracy) instead of the last.
    #[arg(long)]
    pub save_best: bool,
    /// Stop after N epochs without a better mean dev accuracy (needs dev data).
    #[arg(long, value_name = "N", value_parser = at_least_one)]
    pub patience: Option<usize>,
    /// Pooling the heads read: mean, max or cls (default: the model folder's, mean for MiniLM).
    #[arg(long, value_parser = ["mean", "max", "cls"])]
    pub pooling: Option<String>,
    /// How batches are drawn: proportional (rows of both tasks shuffled together) or round-robin
    /// (each batch from one task, alternating).
    #[arg(long, value_parser = sampling_parser(), conflicts_with = "task_temperature")]
    pub task_sampling: Option<TaskSampling>,
    /// Temperature sampling: each batch from one task, chosen with probability ∝ rows^(1/T).
    #[arg(long, value_name = "T", value_parser = positive)]
    pub task_temperature: Option<f64>,
    /// How the task losses combine: fixed (--weight-a/--weight-b) or uncertainty (learned
    /// log-variances, Kendall et al. 2018).
    #[arg(long, value_parser = loss_weighting_parser(), default_value = "fixed")]
    pub loss_weighting: LossWeighting,
    /// Learning rate of the uncertainty log-variances.
    #[arg(long, value_parser = positive, default_value_t = crate::train::LOSS_WEIGHTING_LR)]
    pub loss_weighting_lr: f64,
    /// Recompute a frozen encoder every step instead of training the heads on its cached vectors.
    #[arg(long)]
    pub no_cache: bool,
    /// Keep a frozen encoder's cached vectors in this folder, for later runs.
    #[arg(long, value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,
    /// Length-bucketed batches (rows of similar length together, batch order shuffled): on, or
    /// off (the default) for uniformly drawn batches. The encoder skips padding either way.
    #[arg(long, value_parser = ["on", "off"], default_value = "off")]
    pub bucketing: String,
    /// Train one task only (a or b): the other task's rows are left out.
    #[arg(long, value_parser = ["a", "b"])]
    pub only_task: Option<String>,
    /// Extra Task B file evaluated after each epoch, never used to pick a checkpoint
    /// (out-of-domain check, e.g. data/tweet_sentiment/dev.tsv).
    #[arg(long, value_name = "FILE")]
    pub ood_b: Option<PathBuf>,
    /// Replace the checkpoint an earlier run left in --out (refused otherwise). A folder that
    /// holds anything else is always refused.
    #[arg(long)]
    pub overwrite: bool,
    /// Continue the interrupted run in DIR (its checkpoint folder) from its saved state, with the
    /// settings it was started with. Only options that do not change the result may come with it:
    /// --progress-every, --threads, --device.
    #[arg(long, value_name = "DIR", conflicts_with_all = SETTINGS)]
    pub resume: Option<PathBuf>,
    /// Stop as if interrupted right after this optimizer step (for tests of --resume).
    #[arg(long, hide = true, value_name = "STEP")]
    pub interrupt_after_steps: Option<usize>,
    /// Seconds between plain progress lines when stderr is not a terminal (a bar is shown otherwise).
    #[arg(long, default_value_t = 30, value_name = "SECONDS")]
    pub progress_every: u64,
    /// Device and thread count.
    #[command(flatten)]
    pub run: RunArgs,
}

/// Defaults that differ between `mtt train`, `task3` and `task4`.
pub struct TrainDefaults {
    /// Output folder when `--out` is not given (one the binary may replace); `None`: `--out` is
    /// required.
    pub out: Option<&'static str>,
    /// Freezing scenario when `--freeze` is not given.
    pub freeze: Freeze,
    /// Learning-rate preset when `--lr-plan` is not given.
    pub lr_plan: LrPreset,
    /// Epochs when `--epochs` is not given.
    pub epochs: usize,
    /// Fill in the bundled data when no training file is given.
    pub bundled_data: bool,
}

impl TrainDefaults {
    /// `mtt train`: everything explicit.
    pub const MTT: TrainDefaults = TrainDefaults { out: None, freeze: Freeze::None, lr_plan: LrPreset::Layerwise, epochs: 1, bundled_data: false };
    /// `task3`: the seed's Task 3 (uniform 1e-4) on the bundled data.
    pub const TASK3: TrainDefaults =
        TrainDefaults { out: Some("runs/task3"), freeze: Freeze::None, lr_plan: LrPreset::Uniform, epochs: 1, bundled_data: true };
    /// `task4`: the seed's Task 4 (layer-wise rates) on the bundled data.
    pub const TASK4: TrainDefaults =
        TrainDefaults { out: Some("runs/task4"), freeze: Freeze::None, lr_plan: LrPreset::Layerwise, epochs: 1, bundled_data: true };
}

impl TrainArgs {
    /// The library's training configuration (validated when training starts).
    pub fn to_config(&self, d: &TrainDefaults) -> Result<TrainConfig> {
        let out = match (&self.out, d.out) {
            (Some(o), _) => o.clone(),
            (None, Some(o)) => PathBuf::from(o),
            (None, None) => anyhow::bail!("--out DIR is required"),
        };
        // The binary's own default folder (task3, task4) is theirs to replace: running the main
        // job twice must work. A folder the user names needs --overwrite.
        let overwrite = self.overwrite || (self.out.is_none() && d.out.is_some());
        let mut c = TrainConfig::new(self.model.clone(), out);
        c.output.overwrite = overwrite;
        let mut tasks = self.task.clone();
        if let Some(f) = &self.tasks_file {
            tasks.extend(crate::task::read_tasks_file(f)?);
        }
        let no_seed = self.task_a.is_none() && self.task_b.is_none() && self.joint.is_empty();
        let no_train = no_seed && tasks.is_empty();
        let bundled = d.bundled_data && no_train;
        if !bundled && no_train {
            anyhow::bail!("no training data: pass --task-a FILE and --task-b FILE (or --train JOINT_FILE), or --task NAME=KIND:TRAIN[:DEV]");
        }
        c.data.tasks = tasks;
        c.data.sts_eval = self.sts_eval.clone();
        let pick = |given: &Option<PathBuf>, default: &str| given.clone().or_else(|| bundled.then(|| PathBuf::from(default)));
        c.data.task_a = pick(&self.task_a, bundled::TASK_A);
        c.data.task_b = pick(&self.task_b, bundled::TASK_B);
        c.data.joint = self.joint.clone();
        let no_dev = self.dev_a.is_none() && self.dev_b.is_none() && self.dev_joint.is_empty();
        let bundled_dev = bundled && no_dev;
        c.data.dev_a = self.dev_a.clone().or_else(|| bundled_dev.then(|| PathBuf::from(bundled::DEV_A)));
        c.data.dev_b = self.dev_b.clone().or_else(|| bundled_dev.then(|| PathBuf::from(bundled::DEV_B)));
        c.data.dev_joint = self.dev_joint.clone();
        c.optimizer.freeze = self.freeze.clone().unwrap_or_else(|| d.freeze.clone());
        c.optimizer.lr_plan = self.lr_plan.unwrap_or(d.lr_plan);
        c.optimizer.lr_overrides = self.lr.clone();
        c.optimizer.layer_decay = self.layer_decay;
        c.optimizer.optim = OptimConfig {
            adamw: self.adamw.is_some(),
            weight_decay: self.adamw.unwrap_or(0.0),
            warmup_steps: self.warmup_steps,
            linear_decay: self.linear_decay,
            clip_norm: self.clip_norm,
        };
        c.schedule.epochs = self.epochs.unwrap_or(d.epochs);
        c.schedule.batch_size = self.batch_size;
        c.schedule.seed = self.seed;
        c.schedule.max_steps = self.max_steps;
        c.data.limit = self.limit;
        c.optimizer.weight_a = self.weight_a;
        c.optimizer.weight_b = self.weight_b;
        c.head_dropout = self.head_dropout;
        c.output.save_best = self.save_best;
        c.device = self.run.device.clone();
        c.schedule.patience = self.patience;
        c.pooling = self.pooling.clone();
        c.schedule.sampling = match (self.task_sampling, self.task_temperature) {
            (_, Some(t)) => TaskSampling::Temperature(t),
            (Some(s), None) => s,
            (None, None) => TaskSampling::Proportional,
        };
        c.optimizer.loss_weighting = self.loss_weighting;
        c.optimizer.loss_weighting_lr = self.loss_weighting_lr;
        c.schedule.cache = !self.no_cache;
        c.schedule.cache_dir = self.cache_dir.clone();
        c.data.ood_b = self.ood_b.clone();
        c.schedule.bucketing = self.bucketing == "on";
        c.data.only_task = self.only_task.as_deref().map(|t| if t == "a" { Task::A } else { Task::B });
        Ok(c)
    }
}

/// `mtt train` / `task3` / `task4`: a bar on a terminal, plain progress lines otherwise. SIGINT
/// and SIGTERM stop training after the current step with a checkpoint and its resume state
/// (exit status 130); before training starts they end the process at once, leaving nothing
/// behind (also 130).
pub fn run_train(args: &TrainArgs, defaults: &TrainDefaults, title: &str) -> Result<()> {
    set_threads(args.run.threads);
    let progress = if std::io::stderr().is_terminal() { Progress::Bar } else { Progress::Lines(Duration::from_secs(args.progress_every)) };
    // The run's log on stdout, its warnings on stderr.
    let mut log = |line: &str| if line.starts_with("warning: ") { eprintln!("{line}") } else { println!("{line}") };
    let stop = Arc::new(StopFlag::new());
    stop_on_signals(&stop)?;
    let ctl = RunControl { progress, stop: Some(stop), interrupt_after: args.interrupt_after_steps };
    let outcome = match &args.resume {
        Some(dir) => {
            println!("{title} --resume {}", dir.display());
            // --device moves the run (the default, auto, keeps the one it was started with).
            let device = (args.run.device != "auto").then_some(args.run.device.as_str());
            resume_with(dir, device, &ctl, &mut log)
        }
        None => {
            let cfg = args.to_config(defaults)?;
            cfg.validate()?;
            println!("{title}");
            train_with(&cfg, &ctl, &mut log)
        }
    };
    match outcome {
        Ok(_) => Ok(()),
        Err(Error::Interrupted { out, step, epoch, batch, batches }) => {
            eprintln!(
                "interrupted after optimizer step {step} (epoch {epoch}, batch {batch}/{batches}): the checkpoint and its training state are saved; continue with: mtt train --resume {}",
                out.display()
            );
            std::process::exit(130)
        }
        Err(e) => Err(e.into()),
    }
}

/// SIGINT and SIGTERM become stop requests of `flag`: before training they end the process at
/// once (status 130, nothing left behind), during it they stop the run after a step (a second
/// signal: at once).
fn stop_on_signals(flag: &Arc<StopFlag>) -> Result<()> {
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        let f = Arc::clone(flag);
        // SAFETY: StopFlag::request does only async-signal-safe work (atomics, unlink, rmdir,
        // _exit), as a signal handler must.
        unsafe { signal_hook::low_level::register(signal, move || f.request()) }.map_err(|e| anyhow::anyhow!("installing the handler of signal {signal}: {e}"))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{CommandFactory, Parser};

    #[derive(Parser)]
    struct Cmd {
        #[command(flatten)]
        args: TrainArgs,
    }

    #[test]
    fn resume_refuses_every_setting_and_accepts_run_only_options() {
        let cmd = Cmd::command();
        for arg in cmd.get_arguments() {
            let id = arg.get_id().as_str();
            if id == "help" {
                continue;
            }
            assert!(SETTINGS.contains(&id) != RUN_ONLY.contains(&id), "argument {id}: list it in SETTINGS or RUN_ONLY (exactly one)");
        }
        let ok = Cmd::try_parse_from(["t", "--resume", "d", "--progress-every", "5", "--threads", "1", "--device", "cpu"]);
        assert!(ok.is_ok(), "{:?}", ok.err().map(|e| e.to_string()));
        for flag in [["--epochs", "2"], ["--out", "x"], ["--seed", "3"]] {
            let e = Cmd::try_parse_from(["t", "--resume", "d", flag[0], flag[1]]).err().expect("refused").to_string();
            assert!(e.contains("cannot be used with") && e.contains(flag[0]), "{e}");
        }
        let e = Cmd::try_parse_from(["t", "--resume", "d", "--overwrite"]).err().expect("refused").to_string();
        assert!(e.contains("cannot be used with"), "{e}");
    }

    #[test]
    fn only_the_binaries_own_default_folder_is_replaced_without_overwrite() {
        let parse = |a: &[&str]| Cmd::try_parse_from(std::iter::once("t").chain(a.iter().copied())).unwrap().args;
        assert!(parse(&[]).to_config(&TrainDefaults::TASK4).unwrap().output.overwrite);
        assert!(!parse(&["--out", "x"]).to_config(&TrainDefaults::TASK4).unwrap().output.overwrite);
        assert!(parse(&["--out", "x", "--overwrite"]).to_config(&TrainDefaults::TASK4).unwrap().output.overwrite);
        assert!(!parse(&["--out", "x", "--task-a", "a", "--task-b", "b"]).to_config(&TrainDefaults::MTT).unwrap().output.overwrite);
    }
}

//! `mtt experiment`: flags, the base configuration every run of a grid starts from, and the
//! older grid files' `args` (`mtt train` options) turned into [`Overrides`] when the file is
//! read: the experiment module itself never sees a flag.

use super::train::TrainArgs;
use super::RunArgs;
use crate::batch::TaskSampling;
use crate::data::{bundled, Task};
use crate::device::set_threads;
use crate::error::invalid;
use crate::experiment::{builtin_grid, read_grid, Overrides, Plan, Runner};
use crate::fsutil::write_atomic;
use crate::train::{Progress, TrainConfig};
use anyhow::{Context, Result};
use clap::parser::ValueSource;
use clap::{Args, CommandFactory, FromArgMatches, Parser};
use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::Duration;

/// Arguments of `mtt experiment`.
#[derive(Args, Debug, Clone)]
pub struct ExperimentArgs {
    /// Grid: default, extended, tasks, or a TOML/JSON file of configurations (a name and the
    /// settings it changes).
    #[arg(long, default_value = "default")]
    pub grid: String,
    /// Seeds per configuration (0..N) [default: 3; 2 with --quick].
    #[arg(long, value_parser = super::at_least_one)]
    pub seeds: Option<usize>,
    /// Epochs of every run (a configuration's own `epochs` wins).
    #[arg(long, default_value_t = 1, value_parser = super::at_least_one)]
    pub epochs: usize,
    /// Use only the first N rows of each training file [--quick: 64].
    #[arg(long, value_parser = super::at_least_one)]
    pub limit: Option<usize>,
    /// Smoke run: 2 seeds, 64 rows per training file, small searches.
    #[arg(long)]
    pub quick: bool,
    /// Run configurations again even when DIR holds their results.
    #[arg(long)]
    pub force: bool,
    /// Keep each run's model.safetensors and vocab.txt (dropped by default).
    #[arg(long)]
    pub keep_weights: bool,
    /// Output folder: results.{json,csv,md}, plots, runs/, search/, cache/.
    #[arg(long)]
    pub out: PathBuf,
    /// Base model folder.
    /// Default: $MTT_MODEL, else ./models/all-MiniLM-L6-v2, else the user cache (the first that
    /// exists; `mtt doctor` says which).
    #[arg(long, default_value_os_t = crate::config::default_model_dir())]
    pub model: PathBuf,
    /// Task A training file [default: the bundled TREC-6].
    #[arg(long)]
    pub task_a: Option<PathBuf>,
    /// Task B training file [default: the bundled SST 3-class].
    #[arg(long)]
    pub task_b: Option<PathBuf>,
    /// Task A dev file [default: bundled].
    #[arg(long)]
    pub dev_a: Option<PathBuf>,
    /// Task B dev file [default: bundled].
    #[arg(long)]
    pub dev_b: Option<PathBuf>,
    /// Out-of-domain Task B dev file [default: the bundled tweets].
    #[arg(long)]
    pub ood_b: Option<PathBuf>,
    /// Scored pairs every run's encoder is measured on after training, zero-shot (what the
    /// fine-tune kept of sentence similarity) [default: the bundled STS-B dev].
    #[arg(long, value_name = "FILE")]
    pub sts_eval: Option<PathBuf>,
    /// Do not score the runs' embeddings on STS-B.
    #[arg(long, conflicts_with = "sts_eval")]
    pub no_sts_eval: bool,
    /// Seconds between plain progress lines inside a run when stdout is not a terminal.
    #[arg(long, default_value_t = 60, value_name = "SECONDS")]
    pub progress_every: u64,
    /// Device and thread count.
    #[command(flatten)]
    pub run: RunArgs,
}

/// `mtt train`'s options, as an older grid file's `args` gives them (a repeated option: the
/// last wins).
#[derive(Parser, Debug)]
#[command(name = "train", args_override_self = true, no_binary_name = true)]
struct GridRun {
    #[command(flatten)]
    args: TrainArgs,
}

/// The `mtt train` options a grid configuration's `args` may give, by clap id: each maps to
/// [`Overrides`] fields in [`overrides_from_args`].
#[cfg(test)]
const MAPPED: &[&str] = &[
    "freeze", "lr_plan", "lr", "layer_decay", "adamw", "warmup_steps", "linear_decay", "clip_norm", "epochs", "batch_size",
    "max_steps", "limit", "weight_a", "weight_b", "head_dropout", "save_best", "patience", "pooling", "task_sampling",
    "task_temperature", "loss_weighting", "loss_weighting_lr", "no_cache", "bucketing", "only_task",
];

/// Options a configuration may not give: `mtt experiment`'s own flags set them for every run
/// (data files, model, device, output, cache folder), the runner sets them (seed), or they are
/// not settings at all.
#[cfg(test)]
const REFUSED: &[&str] = &[
    "task_a", "task_b", "joint", "dev_a", "dev_b", "dev_joint", "out", "model", "seed", "cache_dir", "ood_b", "overwrite", "resume",
    "interrupt_after_steps", "progress_every", "device", "threads", "task", "tasks_file", "sts_eval",
];

/// An older grid file's `args` (`mtt train` options) as the settings they change: each option
/// given maps to its [`Overrides`] field, so `--lr-plan uniform --freeze encoder` and `--freeze
/// encoder --lr-plan uniform` are the same settings.
pub fn overrides_from_args(args: &[String]) -> crate::error::Result<Overrides> {
    let matches = GridRun::command().try_get_matches_from(args).map_err(|e| invalid(e.render().to_string().trim().to_string()))?;
    let t = TrainArgs::from_arg_matches(&matches).map_err(|e| invalid(e.render().to_string().trim().to_string()))?;
    let mut o = Overrides::default();
    for id in matches.ids().map(|id| id.as_str()) {
        if matches.value_source(id) != Some(ValueSource::CommandLine) {
            continue;
        }
        match id {
            "freeze" => o.freeze = t.freeze.clone(),
            "lr_plan" => o.lr_plan = t.lr_plan,
            "lr" => o.lr_overrides = Some(t.lr.clone()),
            "layer_decay" => o.layer_decay = t.layer_decay,
            "adamw" => (o.adamw, o.weight_decay) = (Some(true), t.adamw),
            "warmup_steps" => o.warmup_steps = Some(t.warmup_steps),
            "linear_decay" => o.linear_decay = Some(t.linear_decay),
            "clip_norm" => o.clip_norm = t.clip_norm,
            "epochs" => o.epochs = t.epochs,
            "batch_size" => o.batch_size = Some(t.batch_size),
            "max_steps" => o.max_steps = t.max_steps,
            "limit" => o.limit = t.limit,
            "weight_a" => o.weight_a = Some(t.weight_a),
            "weight_b" => o.weight_b = Some(t.weight_b),
            "head_dropout" => o.head_dropout = t.head_dropout,
            "save_best" => o.save_best = Some(t.save_best),
            "patience" => o.patience = t.patience,
            "pooling" => o.pooling = t.pooling.clone(),
            "task_sampling" => o.sampling = t.task_sampling,
            "task_temperature" => o.sampling = t.task_temperature.map(TaskSampling::Temperature),
            "loss_weighting" => o.loss_weighting = Some(t.loss_weighting),
            "loss_weighting_lr" => o.loss_weighting_lr = Some(t.loss_weighting_lr),
            "no_cache" => o.cache = Some(!t.no_cache),
            "bucketing" => o.bucketing = Some(t.bucketing == "on"),
            "only_task" => o.only_task = t.only_task.as_deref().map(|x| if x == "a" { Task::A } else { Task::B }),
            other => {
                return Err(invalid(format!(
                    "--{}: a grid configuration cannot set it (data files, model, device and output come from mtt experiment's own flags, seeds from --seeds)",
                    other.replace('_', "-")
                )))
            }
        }
    }
    Ok(o)
}

/// The configuration every run of the grid starts from: `mtt experiment`'s data files, model,
/// epochs, limit and device, the frozen-encoder cache in `OUT/cache`, `mtt train`'s defaults for
/// the rest.
pub fn base_config(a: &ExperimentArgs) -> TrainConfig {
    let file = |given: &Option<PathBuf>, default: &str| Some(given.clone().unwrap_or_else(|| PathBuf::from(default)));
    let mut c = TrainConfig::new(a.model.clone(), a.out.clone());
    c.device = a.run.device.clone();
    c.data.task_a = file(&a.task_a, bundled::TASK_A);
    c.data.task_b = file(&a.task_b, bundled::TASK_B);
    c.data.dev_a = file(&a.dev_a, bundled::DEV_A);
    c.data.dev_b = file(&a.dev_b, bundled::DEV_B);
    c.data.ood_b = file(&a.ood_b, bundled::OOD_B);
    c.data.sts_eval = if a.no_sts_eval { None } else { file(&a.sts_eval, bundled::STSB_DEV) };
    c.data.limit = a.limit.or(a.quick.then_some(64));
    c.schedule.epochs = a.epochs;
    c.schedule.cache_dir = Some(a.out.join("cache"));
    c.output.resume_state = false;
    c
}

/// `mtt experiment`.
pub fn run_experiment(a: &ExperimentArgs) -> Result<()> {
    set_threads(a.run.threads);
    let (grid_name, entries) = match builtin_grid(&a.grid) {
        Some(g) => (a.grid.clone(), g),
        None => {
            let path = PathBuf::from(&a.grid);
            if !path.exists() {
                anyhow::bail!("--grid {}: not a built-in grid (default, extended, tasks) and no such file", a.grid);
            }
            (a.grid.clone(), read_grid(&path, &overrides_from_args)?)
        }
    };
    let plan = Plan {
        grid_name,
        entries,
        seeds: a.seeds.unwrap_or(if a.quick { 2 } else { 3 }),
        base: base_config(a),
        out: a.out.clone(),
        force: a.force,
        keep_weights: a.keep_weights,
        quick: a.quick,
    };
    std::fs::create_dir_all(&a.out).with_context(|| format!("creating {}", a.out.display()))?;
    // The grid as a grid file (JSON), which --grid reads back.
    let grid_copy = serde_json::to_vec_pretty(&serde_json::json!({ "grid": plan.grid_name, "config": plan.entries })).expect("grid serialises");
    write_atomic(&a.out.join("grid.json"), &grid_copy)?;
    let progress = if std::io::stdout().is_terminal() { Progress::Bar } else { Progress::Lines(Duration::from_secs(a.progress_every)) };
    println!(
        "mtt experiment: grid '{}', {} configuration(s) x {} seed(s), into {}",
        plan.grid_name,
        plan.entries.len(),
        plan.seeds,
        a.out.display()
    );
    let mut runner = Runner::new(&plan, progress);
    let results = runner.run(&mut |l: &str| println!("{l}"))?;
    println!("{} configuration(s) done: {}", results.rows.len(), a.out.join("results.md").display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::freeze::Freeze;
    use crate::optim::LrPreset;
    use crate::train::LossWeighting;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn every_train_option_is_mapped_or_refused() {
        for arg in GridRun::command().get_arguments() {
            let id = arg.get_id().as_str();
            if id == "help" {
                continue;
            }
            assert!(MAPPED.contains(&id) != REFUSED.contains(&id), "option {id}: list it in MAPPED or REFUSED (exactly one)");
        }
        for id in REFUSED {
            let flag = format!("--{}", id.replace('_', "-"));
            if ["joint", "dev_joint", "task", "tasks_file"].contains(id) {
                continue;
            }
            let value = if ["overwrite"].contains(id) { vec![flag.clone()] } else { vec![flag.clone(), "1".into()] };
            let e = overrides_from_args(&value).unwrap_err().to_string();
            assert!(e.contains("cannot set it") || e.contains("cannot be used"), "{flag}: {e}");
        }
    }

    #[test]
    fn every_mapped_option_becomes_its_setting() {
        let all = "--freeze layers:3 --lr-plan uniform --lr =2e-5 --lr heads=1e-3 --layer-decay 0.8 --adamw 0.01 --warmup-steps 40 \
                   --linear-decay --clip-norm 1 --epochs 3 --batch-size 16 --max-steps 9 --limit 100 --weight-a 2 --weight-b 0.5 \
                   --head-dropout 0.1 --save-best --patience 2 --pooling max --task-sampling round-robin --loss-weighting uncertainty \
                   --loss-weighting-lr 0.1 --no-cache --bucketing off --only-task b";
        let o = overrides_from_args(&args(all)).unwrap();
        let want = Overrides {
            freeze: Some(Freeze::Layers(3)),
            lr_plan: Some(LrPreset::Uniform),
            lr_overrides: Some(vec![(String::new(), 2e-5), ("heads".into(), 1e-3)]),
            layer_decay: Some(0.8),
            adamw: Some(true),
            weight_decay: Some(0.01),
            warmup_steps: Some(40),
            linear_decay: Some(true),
            clip_norm: Some(1.0),
            epochs: Some(3),
            batch_size: Some(16),
            max_steps: Some(9),
            limit: Some(100),
            weight_a: Some(2.0),
            weight_b: Some(0.5),
            head_dropout: Some(0.1),
            save_best: Some(true),
            patience: Some(2),
            pooling: Some("max".into()),
            sampling: Some(TaskSampling::RoundRobin),
            loss_weighting: Some(LossWeighting::Uncertainty),
            loss_weighting_lr: Some(0.1),
            cache: Some(false),
            bucketing: Some(false),
            only_task: Some(Task::B),
            ..Overrides::default()
        };
        assert_eq!(o, want);
        assert_eq!(overrides_from_args(&args("--task-temperature 2")).unwrap().sampling, Some(TaskSampling::Temperature(2.0)));
        // Only what is given counts, even when it is the default; order does not matter.
        assert_eq!(overrides_from_args(&args("--lr-plan layerwise")).unwrap().lr_plan, Some(LrPreset::Layerwise));
        assert_eq!(overrides_from_args(&args("--freeze encoder --lr-plan uniform")).unwrap(), overrides_from_args(&args("--lr-plan uniform --freeze encoder")).unwrap());
        assert_eq!(overrides_from_args(&[]).unwrap(), Overrides::default());
        let e = overrides_from_args(&args("--freeze elbows")).unwrap_err().to_string();
        assert!(e.contains("elbows"), "{e}");
    }

    #[test]
    fn the_builtin_grids_are_their_former_options() {
        // The option lists the built-in grids were written as before they became settings.
        let former = [
            ("uniform", "--lr-plan uniform"),
            ("layerwise", "--lr-plan layerwise"),
            ("freeze:encoder", "--lr-plan uniform --freeze encoder"),
            ("freeze:all", "--freeze all"),
            ("freeze:head-a", "--lr-plan uniform --freeze head-a"),
            ("freeze:head-b", "--lr-plan uniform --freeze head-b"),
            ("freeze:layers:3", "--lr-plan uniform --freeze layers:3"),
            ("layer-decay:0.8", "--lr-plan uniform --layer-decay 0.8"),
            ("sampling:round-robin", "--lr-plan uniform --task-sampling round-robin"),
            ("sampling:temperature:2", "--lr-plan uniform --task-temperature 2"),
            ("loss:uncertainty", "--lr-plan uniform --loss-weighting uncertainty"),
            ("single-task:a", "--lr-plan uniform --only-task a"),
            ("single-task:b", "--lr-plan uniform --only-task b"),
            ("pooling:max", "--lr-plan uniform --pooling max"),
            ("pooling:cls", "--lr-plan uniform --pooling cls"),
        ];
        let grid = builtin_grid("extended").unwrap();
        for (name, flags) in former {
            let e = grid.iter().find(|e| e.name == name).unwrap();
            assert_eq!(e.set, overrides_from_args(&args(flags)).unwrap(), "{name}");
        }
    }

    #[test]
    fn the_base_is_what_the_former_base_options_gave() {
        #[derive(Parser)]
        struct Cmd {
            #[command(flatten)]
            a: ExperimentArgs,
        }
        let a = Cmd::try_parse_from(["experiment", "--out", "o", "--quick", "--epochs", "2"]).unwrap().a;
        let base = base_config(&a);
        let former = args(&format!(
            "--model {} --task-a {} --task-b {} --dev-a {} --dev-b {} --ood-b {} --epochs 2 --device auto --cache-dir o/cache --limit 64 --out o",
            crate::config::default_model_dir().display(),
            bundled::TASK_A,
            bundled::TASK_B,
            bundled::DEV_A,
            bundled::DEV_B,
            bundled::OOD_B
        ));
        let mut cfg = GridRun::try_parse_from(&former).unwrap().args.to_config(&super::super::train::TrainDefaults::MTT).unwrap();
        cfg.output.resume_state = false;
        // Every run's encoder is scored on STS-B dev after training (new with named tasks).
        cfg.data.sts_eval = Some(bundled::STSB_DEV.into());
        assert_eq!(serde_json::to_value(&base).unwrap(), serde_json::to_value(&cfg).unwrap());
    }
}

//! `mtt experiment`: flags, the options every run of a grid shares, and the mapping of a
//! configuration's `mtt train` options to a [`TrainConfig`] (later options win).

use super::train::{TrainArgs, TrainDefaults};
use super::RunArgs;
use crate::config::DEFAULT_MODEL_DIR;
use crate::data::bundled;
use crate::device::set_threads;
use crate::error::invalid;
use crate::experiment::{builtin_grid, read_grid, Plan, Runner};
use crate::fsutil::write_atomic;
use crate::train::{Progress, TrainConfig};
use anyhow::{Context, Result};
use clap::{Args, Parser};
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Arguments of `mtt experiment`.
#[derive(Args, Debug, Clone)]
pub struct ExperimentArgs {
    /// Grid: default, extended, or a TOML/JSON file of configurations (name + mtt train options).
    #[arg(long, default_value = "default")]
    pub grid: String,
    /// Seeds per configuration (0..N) [default: 3; 2 with --quick].
    #[arg(long, value_parser = super::at_least_one)]
    pub seeds: Option<usize>,
    /// Epochs of every run (a configuration's own --epochs wins).
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
    #[arg(long, default_value = DEFAULT_MODEL_DIR)]
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
    /// Seconds between plain progress lines inside a run when stdout is not a terminal.
    #[arg(long, default_value_t = 60, value_name = "SECONDS")]
    pub progress_every: u64,
    #[command(flatten)]
    pub run: RunArgs,
}

/// `mtt train`'s options, parsed for one run of a grid (a repeated option: the last wins).
#[derive(Parser, Debug)]
#[command(name = "train", args_override_self = true, no_binary_name = true)]
struct GridRun {
    #[command(flatten)]
    args: TrainArgs,
}

/// The options of one grid run as a training configuration.
pub fn grid_run_config(args: &[String]) -> crate::error::Result<TrainConfig> {
    let parsed = GridRun::try_parse_from(args).map_err(|e| invalid(e.render().to_string().trim().to_string()))?;
    let mut cfg = parsed.args.to_config(&TrainDefaults::MTT).map_err(|e| invalid(e.to_string()))?;
    // The runner resumes whole runs (a stored result.json); per-epoch resume states of a few
    // hundred MB each would only be written and deleted.
    cfg.resume_state = false;
    cfg.validate()?;
    Ok(cfg)
}

fn path_arg(p: &Path) -> String {
    p.display().to_string()
}

/// `mtt experiment`.
pub fn run_experiment(a: &ExperimentArgs) -> Result<()> {
    set_threads(a.run.threads);
    let (grid_name, entries) = match builtin_grid(&a.grid) {
        Some(g) => (a.grid.clone(), g),
        None => {
            let path = PathBuf::from(&a.grid);
            if !path.exists() {
                anyhow::bail!("--grid {}: not a built-in grid (default, extended) and no such file", a.grid);
            }
            (a.grid.clone(), read_grid(&path)?)
        }
    };
    let file = |given: &Option<PathBuf>, default: &str| path_arg(given.as_deref().unwrap_or(Path::new(default)));
    let mut base: Vec<String> = vec![
        "--model".into(),
        path_arg(&a.model),
        "--task-a".into(),
        file(&a.task_a, bundled::TASK_A),
        "--task-b".into(),
        file(&a.task_b, bundled::TASK_B),
        "--dev-a".into(),
        file(&a.dev_a, bundled::DEV_A),
        "--dev-b".into(),
        file(&a.dev_b, bundled::DEV_B),
        "--ood-b".into(),
        file(&a.ood_b, bundled::OOD_B),
        "--epochs".into(),
        a.epochs.to_string(),
        "--device".into(),
        a.run.device.clone(),
        "--cache-dir".into(),
        path_arg(&a.out.join("cache")),
    ];
    if let Some(l) = a.limit.or(a.quick.then_some(64)) {
        base.extend(["--limit".into(), l.to_string()]);
    }
    let plan = Plan {
        grid_name,
        entries,
        seeds: a.seeds.unwrap_or(if a.quick { 2 } else { 3 }),
        base_args: base,
        out: a.out.clone(),
        force: a.force,
        keep_weights: a.keep_weights,
        quick: a.quick,
    };
    std::fs::create_dir_all(&a.out).with_context(|| format!("creating {}", a.out.display()))?;
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
    let make = grid_run_config;
    let mut runner = Runner::new(&plan, &make, progress);
    let results = runner.run(&mut |l: &str| println!("{l}"))?;
    println!("{} configuration(s) done: {}", results.rows.len(), a.out.join("results.md").display());
    Ok(())
}

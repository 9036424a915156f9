//! Task 3: training with freezing. Trains the multi-task model on the bundled TREC-6 (Task A) and
//! SST-3 (Task B) data with every subset at 1e-4 (the seed's rate) under a freezing scenario
//! (--freeze none|all|encoder|embeddings|layers:K|head-a|head-b), printing per-epoch losses and dev
//! accuracy / macro-F1. Accepts every `mtt train` flag.

use clap::Parser;
use multi_task_transformer::cli;

/// Task 3: multi-task training with a freezing scenario (uniform 1e-4 rates).
#[derive(Parser)]
#[command(name = "task3", version)]
struct Task3 {
    #[command(flatten)]
    args: cli::TrainArgs,
}

fn main() -> std::process::ExitCode {
    cli::init_process();
    cli::exit_code(cli::run_train(&Task3::parse().args, &cli::TrainDefaults::TASK3, "Task 3: training with freezing (uniform learning rate 1e-4)"))
}

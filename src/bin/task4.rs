//! Task 4: layer-wise learning rates, the project's main job. Trains the multi-task model on the
//! bundled TREC-6 (Task A) and SST-3 (Task B) data with one Adam optimizer per parameter subset:
//! embeddings 1e-6, encoder layers 1e-5, heads 1e-4; prints per-epoch losses and dev accuracy /
//! macro-F1, and writes the checkpoint to runs/task4. Accepts every `mtt train` flag.

use clap::Parser;
use multi_task_transformer::cli;

/// Task 4: multi-task training with layer-wise learning rates.
#[derive(Parser)]
#[command(name = "task4", version)]
struct Task4 {
    #[command(flatten)]
    args: cli::TrainArgs,
}

fn main() -> std::process::ExitCode {
    cli::init_process();
    cli::exit_code(cli::run_train(&Task4::parse().args, &cli::TrainDefaults::TASK4, "Task 4: layer-wise learning rates (embeddings 1e-6, layers 1e-5, heads 1e-4)"))
}

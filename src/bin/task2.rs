//! Task 2: the multi-task model. Runs the seed's sample sentences through the shared MiniLM
//! encoder and both heads (Task A: TREC-6 question type, Task B: negative/neutral/positive) and
//! prints logits, probabilities and predicted labels with their shapes. Untrained heads unless
//! --checkpoint points at a folder written by `mtt train` / task3 / task4.

use clap::Parser;
use multi_task_transformer::cli;

/// Task 2: the multi-task model's outputs for the sample sentences.
#[derive(Parser)]
#[command(name = "task2", version)]
struct Task2 {
    #[command(flatten)]
    args: cli::Task2Args,
}

fn main() -> std::process::ExitCode {
    cli::init_process();
    cli::exit_code(cli::run_task2(&Task2::parse().args))
}

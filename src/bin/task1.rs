//! Task 1: sentence embeddings. all-MiniLM-L6-v2 with mask-aware mean pooling; prints each sample
//! sentence's embedding shape ([1, 384]) and first five values, as the seed did.

use clap::Parser;
use multi_task_transformer::cli;

/// Task 1: sentence embeddings with all-MiniLM-L6-v2 (mean pooling, 384-d).
#[derive(Parser)]
#[command(name = "task1", version)]
struct Task1 {
    #[command(flatten)]
    args: cli::EmbedArgs,
}

fn main() -> std::process::ExitCode {
    cli::init_process();
    cli::exit_code(cli::run_task1(&Task1::parse().args))
}

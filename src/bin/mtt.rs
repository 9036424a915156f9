//! `mtt`: the project's command line: embed, doctor, train, experiment, eval, predict, export, import, serve.

use clap::{Parser, Subcommand};
use multi_task_transformer::cli;

#[derive(Parser)]
#[command(name = "mtt", version, about = "Sentence embeddings and multi-task classification with all-MiniLM-L6-v2 on libtorch")]
struct Mtt {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Embed texts (one per line) and write JSON Lines {"text", "embedding"} in input order.
    Embed(cli::EmbedArgs),
    /// Show libtorch, CUDA, threads and whether the model folder is complete.
    Doctor(cli::DoctorArgs),
    /// Train the multi-task model (Task A + Task B heads on the shared encoder).
    Train(Box<cli::TrainArgs>),
    /// Run a grid of training configurations over seeds; write results.{json,csv,md} and plots.
    Experiment(Box<cli::ExperimentArgs>),
    /// Evaluate a checkpoint: one JSON object with accuracy, macro-F1, n and confusion per task.
    Eval(cli::EvalArgs),
    /// Write a checkpoint as a sentence-transformers folder (plus heads and labels) for Python.
    Export(cli::ExportArgs),
    /// Make a checkpoint from a PyTorch state_dict saved as safetensors.
    Import(cli::ImportArgs),
    /// Predict both tasks for texts (one per line): JSON Lines in input order.
    Predict(cli::PredictArgs),
    /// Serve /embed, /predict, /health and /metrics over HTTP until SIGINT/SIGTERM.
    Serve(cli::ServeArgs),
}

fn main() -> std::process::ExitCode {
    cli::init_process();
    cli::exit_code(match Mtt::parse().command {
        Command::Embed(a) => cli::run_embed(&a),
        Command::Doctor(a) => cli::run_doctor(&a),
        Command::Train(a) => cli::run_train(&a, &cli::TrainDefaults::MTT, "mtt train"),
        Command::Experiment(a) => cli::run_experiment(&a),
        Command::Eval(a) => cli::run_eval(&a),
        Command::Predict(a) => cli::run_predict(&a),
        Command::Export(a) => cli::run_export(&a),
        Command::Import(a) => cli::run_import(&a),
        Command::Serve(a) => cli::run_serve(&a),
    })
}

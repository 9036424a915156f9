//! `mtt serve`: arguments, the tokio runtime, binding and graceful shutdown.

use super::RunArgs;
use crate::config::DEFAULT_MODEL_DIR;
use crate::serve::{shutdown_signal, Engine, ServeConfig, Service};
use anyhow::{Context, Result};
use clap::Args;
use std::io::Write;
use std::path::PathBuf;

/// Arguments of `mtt serve`.
#[derive(Args, Debug, Clone)]
pub struct ServeArgs {
    /// A sentence-transformers folder (/embed only) or a multi-task checkpoint (/embed and /predict).
    #[arg(long, default_value = DEFAULT_MODEL_DIR)]
    pub model: PathBuf,
    /// Address to listen on (port 0: any free port; the chosen address is printed).
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub addr: String,
    /// Largest request body in bytes (413 beyond).
    #[arg(long, default_value_t = ServeConfig::default().max_body_bytes)]
    pub max_body_bytes: usize,
    /// Most texts per request (413 beyond).
    #[arg(long, default_value_t = ServeConfig::default().max_texts)]
    pub max_texts: usize,
    /// Requests waiting for the model before new ones are answered 503 with Retry-After.
    #[arg(long, default_value_t = ServeConfig::default().queue_capacity)]
    pub queue_capacity: usize,
    /// Padded tokens per forward pass (concurrent requests are batched up to it).
    #[arg(long, default_value_t = ServeConfig::default().token_budget)]
    pub token_budget: usize,
    /// Encoder precision: fp32, int8 (CPU only) or bf16 (see `mtt embed --help`).
    #[arg(long, default_value = "fp32")]
    pub precision: crate::precision::Precision,
    #[command(flatten)]
    pub run: RunArgs,
}

/// `mtt serve`: loads the model, listens, serves until SIGINT/SIGTERM, then finishes the
/// requests in flight and exits 0.
pub fn run_serve(a: &ServeArgs) -> Result<()> {
    let device = a.run.setup()?;
    let engine = Engine::load(&a.model, device, a.precision).with_context(|| format!("loading model {}", a.model.display()))?;
    let multitask = engine.labels().is_some();
    let cfg = ServeConfig { max_body_bytes: a.max_body_bytes, max_texts: a.max_texts.max(1), queue_capacity: a.queue_capacity.max(1), token_budget: a.token_budget.max(1) };
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().context("starting the tokio runtime")?;
    let service = Service::start(engine, &a.model.display().to_string(), cfg);
    let Service { router, model_thread } = service;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(&a.addr).await.with_context(|| format!("binding {}", a.addr))?;
        let local = listener.local_addr()?;
        println!(
            "mtt serve: {} ({}) listening on http://{local}",
            a.model.display(),
            if multitask { "multi-task checkpoint: /embed, /predict" } else { "base encoder: /embed" }
        );
        std::io::stdout().flush()?;
        axum::serve(listener, router).with_graceful_shutdown(shutdown_signal()).await.context("serving")?;
        anyhow::Ok(())
    })?;
    let _ = model_thread.join();
    println!("mtt serve: stopped");
    Ok(())
}

//! `mtt serve`: arguments, the tokio runtime, binding and the shutdown report.

use super::RunArgs;
use crate::serve::{shutdown_signal, Engine, ServeConfig, Service};
use anyhow::{Context, Result};
use clap::Args;
use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

/// Arguments of `mtt serve`.
#[derive(Args, Debug, Clone)]
pub struct ServeArgs {
    /// A sentence-transformers folder (/embed only) or a multi-task checkpoint (/embed and /predict).
    /// Default: $MTT_MODEL, else ./models/all-MiniLM-L6-v2, else the user cache (the first that
    /// exists; `mtt doctor` says which).
    #[arg(long, default_value_os_t = crate::config::default_model_dir())]
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
    /// Most padding per forward pass, as a fraction of its real tokens: a longer text beyond it
    /// starts the next batch (`inf`: only the token budget cuts batches) [default: 0.25]
    #[arg(long, value_name = "FRACTION", value_parser = padding_fraction)]
    pub max_padding: Option<f64>,
    /// Model workers: threads that run batches at once on the one loaded model, each with an
    /// equal share of --threads (at least one) [default: 2 on a CPU with 2 or more threads, else 1]
    #[arg(long, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=64))]
    pub workers: Option<usize>,
    /// Encoder precision: fp32, int8 (CPU only) or bf16 (see `mtt embed --help`).
    #[arg(long, default_value = "fp32")]
    pub precision: crate::precision::Precision,
    /// Run --precision even where it is slower than fp32 (refused otherwise; see `mtt doctor`).
    #[arg(long)]
    pub precision_anyway: bool,
    /// Seconds a request's head (request line and headers) may take to arrive, counted from its
    /// first byte; a connection slower than that (slowloris) is closed.
    #[arg(long, value_name = "SECONDS", default_value = "10", value_parser = positive_seconds)]
    pub header_timeout: Duration,
    /// Seconds a connection may sit with nothing moving before it is closed: no request in progress
    /// and no byte received (new or kept-alive connections), a request body that stops arriving
    /// (answered 408), or a response the client stops reading. Time spent waiting for the model
    /// never counts.
    #[arg(long, value_name = "SECONDS", default_value = "60", value_parser = positive_seconds)]
    pub idle_timeout: Duration,
    /// Grace period on SIGTERM/SIGINT, in seconds: the server stops accepting, closes idle and
    /// half-sent connections at once, and lets requests in flight finish for at most this long;
    /// then it cuts the connections left (printing how many) and exits 0.
    #[arg(long, value_name = "SECONDS", default_value = "10", value_parser = seconds)]
    pub shutdown_timeout: Duration,
    /// Most connections open at once; one more is answered 503 (JSON, Retry-After: 1) and closed
    /// (counted in /metrics as mtt_connections_refused_total).
    #[arg(long, default_value_t = ServeConfig::default().max_connections)]
    pub max_connections: usize,
    /// Require `Authorization: Bearer KEY` on every route but /health (401 otherwise, counted in
    /// /metrics). Also read from $MTT_API_KEY.
    #[arg(long, value_name = "KEY", env = "MTT_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
    /// Serve on an address other machines can reach without an API key (refused otherwise).
    #[arg(long)]
    pub allow_unauthenticated: bool,
    /// Device and thread count.
    #[command(flatten)]
    pub run: RunArgs,
}

/// Refuses an address reachable from other machines (anything but loopback) when no API key is
/// set, unless `allow` says to serve anyway.
fn check_exposure(addr: &str, key: Option<&str>, allow: bool) -> Result<()> {
    use std::net::ToSocketAddrs;
    if key.is_some() || allow {
        return Ok(());
    }
    let addrs: Vec<std::net::SocketAddr> = addr.to_socket_addrs().with_context(|| format!("--addr {addr}: not an address to listen on"))?.collect();
    if let Some(open) = addrs.iter().find(|a| !a.ip().is_loopback()) {
        anyhow::bail!(
            "--addr {addr} ({}) can be reached from other machines, and no API key is set: anyone who reaches the port could use the model. Give --api-key KEY (or $MTT_API_KEY), listen on 127.0.0.1, or pass --allow-unauthenticated to serve anyway",
            open.ip()
        );
    }
    Ok(())
}

/// A duration in seconds (fractions allowed), zero or more.
fn seconds(s: &str) -> std::result::Result<Duration, String> {
    let v: f64 = s.trim().parse().map_err(|_| format!("'{s}' is not a number of seconds"))?;
    Duration::try_from_secs_f64(v).map_err(|_| format!("'{s}': a number of seconds from 0 up"))
}

/// A duration in seconds (fractions allowed), more than zero.
fn positive_seconds(s: &str) -> std::result::Result<Duration, String> {
    seconds(s).and_then(|d| if d.is_zero() { Err(format!("'{s}': must be more than 0 seconds")) } else { Ok(d) })
}

/// `--max-padding`: a number >= 0, `inf` included.
fn padding_fraction(s: &str) -> std::result::Result<f64, String> {
    match s.parse::<f64>() {
        Ok(f) if f >= 0.0 => Ok(f),
        _ => Err(format!("'{s}': expected a fraction >= 0 (such as 0.25), or inf")),
    }
}

/// `mtt serve`: loads the model, listens, serves until SIGINT/SIGTERM, then finishes the
/// requests in flight within the grace period (cutting what is left) and exits 0.
pub fn run_serve(a: &ServeArgs) -> Result<()> {
    let key = a.api_key.as_deref().filter(|k| !k.is_empty());
    check_exposure(&a.addr, key, a.allow_unauthenticated)?;
    let device = a.run.setup()?;
    a.precision.check_speed(device, crate::device::CpuFeatures::detect().as_ref(), a.precision_anyway)?;
    let engine = Engine::load(&a.model, device, a.precision).with_context(|| format!("loading model {}", a.model.display()))?;
    let multitask = engine.labels().is_some();
    let cfg = ServeConfig {
        max_body_bytes: a.max_body_bytes,
        max_texts: a.max_texts.max(1),
        queue_capacity: a.queue_capacity.max(1),
        token_budget: a.token_budget.max(1),
        max_padding: a.max_padding,
        header_timeout: a.header_timeout,
        idle_timeout: a.idle_timeout,
        shutdown_timeout: a.shutdown_timeout,
        max_connections: a.max_connections.max(1),
        api_key: key.map(str::to_string),
        precision: a.precision,
        workers: a.workers.unwrap_or_else(|| ServeConfig::default_workers(device, tch::get_num_threads().max(1) as usize)),
    };
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().context("starting the tokio runtime")?;
    let service = Service::start(engine, &a.model.display().to_string(), cfg).context("starting the service")?;
    let report = rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(&a.addr).await.with_context(|| format!("binding {}", a.addr))?;
        let local = listener.local_addr()?;
        let signal = shutdown_signal();
        println!(
            "mtt serve: {} ({}) listening on http://{local}",
            a.model.display(),
            if multitask { "multi-task checkpoint: /embed, /predict, /v1/embeddings" } else { "base encoder: /embed, /v1/embeddings" }
        );
        std::io::stdout().flush()?;
        anyhow::Ok(service.serve(listener, signal).await)
    })?;
    if report.cut > 0 {
        println!(
            "mtt serve: the {} s grace period ran out: cut {} connection{} still open",
            a.shutdown_timeout.as_secs_f64(),
            report.cut,
            if report.cut == 1 { "" } else { "s" }
        );
    }
    println!("mtt serve: stopped");
    Ok(())
}

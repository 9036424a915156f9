//! Owns `mtt serve`: the model behind HTTP (axum on tokio, HTTP/1.1 connections driven by hyper).
//!
//! * Routes: `POST /embed` `{"texts": [...], "normalize": bool}`, `POST /predict` `{"texts": [...]}`
//!   (both heads' labels and probabilities; 404 when the model is a base encoder), `GET /health`,
//!   `GET /metrics` (Prometheus text format). Every error is JSON: `{"error": "..."}`, including
//!   the 400/414/431 that hyper itself writes for a request it cannot parse (see `GuardedIo`).
//! * Drop-in shapes beside ours: OpenAI's `POST /v1/embeddings` (also `/embeddings`; errors in
//!   OpenAI's `{"error": {"message", "type", "code"}}`), and Text Embeddings Inference's
//!   `{"inputs": ...}` on `/embed` and `/predict`, `POST /` (the model's kind), `GET /info` and
//!   `POST /tokenize`. docs/serving.md has the shapes.
//! * One dedicated model thread owns the model. Handlers validate the request
//!   ([`parse_request`], a pure function), tokenize it on tokio's blocking pool, queue a job of
//!   token ids on a bounded channel and await the reply, so they never block the runtime; a full
//!   queue answers 503 with `Retry-After`.
//! * The model thread takes every job waiting (up to a token budget), sorts all their rows by
//!   length and runs them in batches of at most `token_budget` padded tokens: one encoder pass
//!   gives the embeddings and, for `/predict` rows, both heads.
//! * Texts longer than the model's `max_seq_length` tokens are truncated, as in `mtt embed`,
//!   unless the request says `"truncate": false` (then 413, naming the text's index).
//! * Connections ([`Service::serve`], its own accept loop): at most `max_connections` open (beyond,
//!   a JSON 503 and an immediate close); a request head must arrive within `header_timeout` of its
//!   first byte; a connection with nothing in progress, a request body that stops arriving (408)
//!   or a response the client stops reading is closed after `idle_timeout`. On SIGTERM/SIGINT the
//!   server stops accepting, closes idle and half-sent-head connections at once, lets requests in
//!   flight finish for up to `shutdown_timeout`, then cuts what is left and reports how many.

use crate::classifier::Classifier;
use crate::embed::SentenceEncoder;
use crate::error::Result;
use crate::model::{pooling, MultiTask};
use crate::tokenizer::SentenceTokenizer;
use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::future::Future;
use std::io;
use std::path::Path;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tch::{Device, Kind, Tensor};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot, watch, Semaphore};

mod conn;
mod metrics;
mod request;
mod routes;
#[cfg(test)]
mod tests;
mod tokens;
mod worker;

use conn::*;
use routes::*;
use tokens::RequestTokenizer;
use worker::*;
pub use metrics::Metrics;
pub use request::{parse_pairs, parse_request, PairRequest, Parsed, Shape};
pub use tokens::{base64, f32_base64, shorten};
pub use worker::Engine;

/// Limits and batching of the service.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    /// Largest request body, bytes (413 beyond).
    pub max_body_bytes: usize,
    /// Most texts in one request (413 beyond).
    pub max_texts: usize,
    /// Requests waiting for the model thread before new ones get 503.
    pub queue_capacity: usize,
    /// Padded tokens per forward pass (rows × longest row). Measured on the 2-core AVX2 machine
    /// with 32 clients: 123 texts/s at 512-1,024, 99 at 2,048, 56 at 8,192 (larger batches of
    /// this small model run slower per text on CPU, and grow the allocator's heap).
    pub token_budget: usize,
    /// Most padding tokens in a forward pass, as a fraction of its real tokens: the texts of the
    /// requests taken together are sorted by length and a longer text that would pad the batch
    /// beyond this starts the next batch (`f64::INFINITY`: the token budget alone cuts). `None`:
    /// [`ServeConfig::default_max_padding`] of the precision.
    pub max_padding: Option<f64>,
    /// Time a request's head (request line and headers) may take to arrive, from its first byte:
    /// a client trickling its headers (slowloris) is cut off after it.
    pub header_timeout: Duration,
    /// A connection on which nothing moves for this long is closed: no request in progress and no
    /// byte received (a new or kept-alive connection), a request body that stops arriving (answered
    /// 408), or a response that the client stops reading. The model's own time never counts.
    pub idle_timeout: Duration,
    /// After SIGTERM/SIGINT, how long the requests in flight may take before their connections are
    /// cut (idle connections and half-sent heads are closed at once).
    pub shutdown_timeout: Duration,
    /// Connections open at once; one more is answered 503 (JSON, `Retry-After: 1`) and closed.
    pub max_connections: usize,
    /// When set, every route but `/health` needs `Authorization: Bearer <key>` (401 otherwise).
    pub api_key: Option<String>,
    /// The encoder's precision, reported by `GET /info`.
    pub precision: crate::precision::Precision,
    /// Model threads, each running its own batches on the shared model with an equal share of
    /// the intra-op threads (at least one each): with small batches, two one-thread passes at
    /// once keep two cores busier than one two-thread pass.
    pub workers: usize,
}

impl ServeConfig {
    /// The padding limit a precision gets by default: 0.25. Measured with `cargo bench --bench
    /// serve_load -- --throughput` on the 2-core AVX-512 machine (2026-12-03) with two model
    /// workers and 32 clients: fp32 304 texts/s against 196 without a limit, int8 659 against
    /// 624. (With one worker int8 had done better without a limit.)
    pub fn default_max_padding(_precision: crate::precision::Precision) -> f64 {
        0.25
    }

    /// The model workers `mtt serve` starts by default: two on a CPU with two or more libtorch
    /// threads (each runs its own batches on half of them), one otherwise and on a GPU. With one
    /// worker, small batches kept the second core half idle (server at 1.2-1.6 cores): served
    /// throughput at 32 clients was 52-74% of offline encoding for fp32, 31-55% for int8; with
    /// two, 99% for both (same bench, 2026-12-03).
    pub fn default_workers(device: Device, threads: usize) -> usize {
        crate::infer::default_workers(device, threads)
    }

    /// The padding limit in force: the one set, else the precision's default.
    pub fn max_padding(&self) -> f64 {
        self.max_padding.unwrap_or_else(|| Self::default_max_padding(self.precision))
    }
}

impl Default for ServeConfig {
    fn default() -> Self {
        ServeConfig {
            max_body_bytes: 1 << 20,
            max_texts: 256,
            queue_capacity: 256,
            token_budget: 1024,
            max_padding: None,
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            shutdown_timeout: Duration::from_secs(10),
            max_connections: 512,
            api_key: None,
            precision: crate::precision::Precision::default(),
            workers: 1,
        }
    }
}

/// Whether `header` (an `Authorization` value) carries `key` as a bearer token. The comparison
/// takes the same time whatever the value: both sides are hashed, and the digests compared
/// without an early exit, so response times tell nothing about the key.
pub fn authorized(header: Option<&[u8]>, key: &str) -> bool {
    let given = header.and_then(|h| h.strip_prefix(b"Bearer ")).unwrap_or(b"");
    let digest = |b: &[u8]| crate::fsutil::sha256_hex(b).into_bytes();
    let (a, b) = (digest(given), digest(key.as_bytes()));
    let differ = a.iter().zip(&b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    differ == 0 && header.is_some()
}

/// Largest request head (request line and headers), bytes: hyper answers 431 beyond (rewritten to
/// JSON by the connection's socket adapter). Also bounds what a connection that never finishes its head can hold.
pub const MAX_HEADER_BYTES: usize = 64 * 1024;

/// A request the parser turned away: the status and the message of its JSON body.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    /// The response's HTTP status (4xx for a bad request).
    pub status: StatusCode,
    /// What is wrong, sent as the body's `error` field.
    pub message: String,
}

impl ApiError {
    fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError { status, message: message.into() }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut r = json_response(self.status, &serde_json::json!({ "error": self.message }));
        if self.status == StatusCode::PAYLOAD_TOO_LARGE || self.status == StatusCode::REQUEST_TIMEOUT {
            // The rest of an oversized (or stalled) body is never read: the connection cannot be
            // reused, and saying so keeps clients from sending their next request into a closing socket.
            r.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        r
    }
}

fn json_response<T: Serialize>(status: StatusCode, body: &T) -> Response {
    let bytes = serde_json::to_vec(body).expect("responses serialise");
    (status, [(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))], bytes).into_response()
}

/// Which model route a request is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// `POST /embed`: pooled sentence vectors (fields `texts` and optional `normalize`).
    Embed,
    /// `POST /predict`: both tasks' labels and probabilities (field `texts`; multi-task
    /// checkpoints only).
    Predict,
    /// `POST /v1/embeddings` (also `/embeddings`): OpenAI's embeddings API.
    OpenAiEmbed,
    /// `POST /tokenize`: each text's tokens (TEI's shape).
    Tokenize,
    /// `POST /similarity`: sentence pairs, scored by the cosine of their vectors or by a pair
    /// task's head.
    Similarity,
}

impl Route {
    /// The route's path (also its label in `/metrics`).
    pub fn path(self) -> &'static str {
        match self {
            Route::Embed => "/embed",
            Route::Predict => "/predict",
            Route::OpenAiEmbed => "/v1/embeddings",
            Route::Tokenize => "/tokenize",
            Route::Similarity => "/similarity",
        }
    }
}

/// Shared by the handlers.
pub struct AppState {
    cfg: ServeConfig,
    jobs: mpsc::Sender<Job>,
    metrics: Arc<Metrics>,
    labels: Option<Vec<(String, Vec<String>)>>,
    /// The model's pair tasks (pair-classification heads, as plain weights, and similarity tasks).
    pair_tasks: Vec<PairTask>,
    model: String,
    dim: i64,
    tok: Arc<RequestTokenizer>,
}

/// The running service: its router and the model thread (which ends once the router, and with it
/// every job sender, is dropped). [`Service::serve`] runs it on a listener.
pub struct Service {
    /// The routes: `POST /embed`, `POST /predict`, `POST /v1/embeddings` (and `/embeddings`),
    /// `POST /tokenize`, `POST /similarity`, `POST /`, `GET /info`, `GET /health`, `GET /metrics`.
    pub router: Router,
    /// The thread that runs the model on batched jobs; it ends once `router` is dropped.
    pub model_thread: std::thread::JoinHandle<()>,
    metrics: Arc<Metrics>,
    /// Set when no request waits for the model any more: the jobs still queued are refused.
    stop_model: Arc<AtomicBool>,
    cfg: ServeConfig,
}

/// How a shutdown went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShutdownReport {
    /// Connections still open when the grace period ran out, closed without an answer.
    pub cut: usize,
}

impl Service {
    /// Starts the model thread on `engine` and builds the routes (fails only if the model's
    /// vocabulary cannot be read again for the request-side tokenizer).
    pub fn start(engine: Engine, model_name: &str, cfg: ServeConfig) -> Result<Service> {
        let (tx, rx) = mpsc::channel(cfg.queue_capacity.max(1));
        let metrics = Arc::new(Metrics::default());
        let labels = engine.labels();
        let pair_tasks = engine.pair_tasks();
        let dim = match &engine {
            Engine::Base(e) => e.config().embedding_dim(),
            Engine::Multi(c) => c.model.config.encoder.embedding_dim(),
        };
        let tok = Arc::new(RequestTokenizer::of(&engine)?);
        let (m, budget, max_padding) = (metrics.clone(), cfg.token_budget, cfg.max_padding());
        let stop_model = Arc::new(AtomicBool::new(false));
        let stop = stop_model.clone();
        // libtorch's OpenMP thread count is per thread: a new thread starts from OpenMP's
        // default, not from what `--threads` (or libtorch's own choice) set on this one. Kernels
        // that parallelise through OpenMP (the int8 matrix product among them) then ran on one
        // core in the model thread, at a quarter of `mtt embed`'s int8 speed.
        let workers = cfg.workers.max(1);
        let threads = (tch::get_num_threads() / workers as i32).max(1);
        let model_thread = std::thread::Builder::new()
            .name("mtt-model".into())
            .spawn(move || {
                let (engine, rx) = (Arc::new(crate::infer::ForwardOnly(engine)), Arc::new(std::sync::Mutex::new(rx)));
                let spawn = |i: usize| {
                    let (engine, rx, m, stop) = (engine.clone(), rx.clone(), m.clone(), stop.clone());
                    std::thread::Builder::new()
                        .name(format!("mtt-model-{i}"))
                        .spawn(move || {
                            tch::set_num_threads(threads);
                            model_loop(engine.get(), &rx, budget, max_padding, &m, &stop)
                        })
                        .expect("a model worker starts")
                };
                let handles: Vec<_> = (1..workers).map(spawn).collect();
                tch::set_num_threads(threads);
                model_loop(engine.get(), &rx, budget, max_padding, &m, &stop);
                for h in handles {
                    let _ = h.join();
                }
            })
            .expect("the model thread starts");
        let state = Arc::new(AppState { cfg: cfg.clone(), jobs: tx, metrics: metrics.clone(), labels, pair_tasks, model: model_name.to_string(), dim, tok });
        let router = Router::new()
            .route(Route::Embed.path(), post(embed))
            .route(Route::Predict.path(), post(predict))
            .route(Route::OpenAiEmbed.path(), post(openai_embeddings))
            .route("/embeddings", post(openai_embeddings))
            .route(Route::Tokenize.path(), post(tokenize))
            .route(Route::Similarity.path(), post(similarity))
            .route("/", post(root))
            .route("/info", get(info))
            .route("/health", get(health))
            .route("/metrics", get(metrics_route))
            .fallback(not_found)
            .layer(middleware::from_fn_with_state(state.clone(), track))
            .with_state(state);
        Ok(Service { router, model_thread, metrics, stop_model, cfg })
    }
}

/// Resolves on SIGINT or SIGTERM. The handlers are installed when this is called (inside the
/// runtime), not when the future is first polled, so a signal sent as soon as the server says it
/// listens is not lost to the default action.
pub fn shutdown_signal() -> impl Future<Output = ()> {
    use tokio::signal::unix::{signal, SignalKind};
    let (int, term) = (signal(SignalKind::interrupt()).ok(), signal(SignalKind::terminate()).ok());
    async move {
        let wait = |s: Option<tokio::signal::unix::Signal>| async move {
            match s {
                Some(mut s) => {
                    s.recv().await;
                }
                None => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            _ = wait(int) => {},
            _ = wait(term) => {},
        }
    }
}

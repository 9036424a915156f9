//! Owns `mtt serve`: the model behind HTTP (axum on tokio, HTTP/1.1 connections driven by hyper).
//!
//! * Routes: `POST /embed` `{"texts": [...], "normalize": bool}`, `POST /predict` `{"texts": [...]}`
//!   (both heads' labels and probabilities; 404 when the model is a base encoder), `GET /health`,
//!   `GET /metrics` (Prometheus text format). Every error is JSON: `{"error": "..."}`, including
//!   the 400/414/431 that hyper itself writes for a request it cannot parse (see `GuardedIo`).
//! * One dedicated model thread owns the model. Handlers validate the request
//!   ([`parse_request`], a pure function), queue a job on a bounded channel and await the reply,
//!   so they never block the runtime; a full queue answers 503 with `Retry-After`.
//! * The model thread takes every job waiting (up to a token budget), tokenizes, sorts all their
//!   texts by length and runs them in batches of at most `token_budget` padded tokens: one
//!   encoder pass gives the embeddings and, for `/predict` rows, both heads.
//! * Texts longer than the model's `max_seq_length` tokens are truncated, as in `mtt embed`.
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
}

impl Default for ServeConfig {
    fn default() -> Self {
        ServeConfig {
            max_body_bytes: 1 << 20,
            max_texts: 256,
            queue_capacity: 256,
            token_budget: 1024,
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            shutdown_timeout: Duration::from_secs(10),
            max_connections: 512,
        }
    }
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
}

impl Route {
    /// The route's path (also its label in `/metrics`).
    pub fn path(self) -> &'static str {
        match self {
            Route::Embed => "/embed",
            Route::Predict => "/predict",
        }
    }
}

/// A valid request's content.
#[derive(Debug, Clone, PartialEq)]
pub struct Parsed {
    /// The texts, in request order (at least one, at most the configured `max_texts`).
    pub texts: Vec<String>,
    /// L2-normalise the vectors (`/embed`'s `normalize`; `false` when absent, always `false`
    /// for `/predict`).
    pub normalize: bool,
}

/// Checks a request's content type and body. Never panics: any input is either a [`Parsed`]
/// request or a 4xx [`ApiError`] that says what is wrong.
pub fn parse_request(route: Route, content_type: Option<&str>, body: &[u8], cfg: &ServeConfig) -> std::result::Result<Parsed, ApiError> {
    let bad = |m: String| ApiError::new(StatusCode::BAD_REQUEST, m);
    let media = content_type.map(|c| c.split(';').next().unwrap_or("").trim().to_ascii_lowercase());
    if media.as_deref() != Some("application/json") {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!("content type {}: send application/json", content_type.map_or("(none)".to_string(), |c| format!("'{c}'"))),
        ));
    }
    if body.len() > cfg.max_body_bytes {
        return Err(ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, format!("body of {} bytes: the limit is {}", body.len(), cfg.max_body_bytes)));
    }
    let obj = match serde_json::from_slice::<TopLevel>(body).map_err(|e| bad(format!("invalid JSON: {e}")))? {
        TopLevel::Object(_, Some(dup)) => return Err(bad(format!("duplicate field \"{dup}\": send each field once"))),
        TopLevel::Object(obj, None) => obj,
        TopLevel::Other => return Err(bad("the body must be a JSON object with a \"texts\" array".into())),
    };
    let allowed: &[&str] = match route {
        Route::Embed => &["texts", "normalize"],
        Route::Predict => &["texts"],
    };
    if let Some(k) = obj.keys().find(|k| !allowed.contains(&k.as_str())) {
        return Err(bad(format!("unknown field \"{k}\" (this route takes: {})", allowed.join(", "))));
    }
    let texts = obj.get("texts").ok_or_else(|| bad("missing field \"texts\" (an array of strings)".into()))?;
    let texts = texts.as_array().ok_or_else(|| bad("\"texts\" must be an array of strings".into()))?;
    if texts.is_empty() {
        return Err(bad("\"texts\" is empty: send at least one text".into()));
    }
    if texts.len() > cfg.max_texts {
        return Err(ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, format!("{} texts: the limit is {} per request", texts.len(), cfg.max_texts)));
    }
    let mut out = Vec::with_capacity(texts.len());
    for (i, t) in texts.iter().enumerate() {
        match t.as_str() {
            Some(s) => out.push(s.to_string()),
            None => return Err(bad(format!("texts[{i}] is not a string"))),
        }
    }
    let normalize = match obj.get("normalize") {
        None => false,
        Some(serde_json::Value::Bool(b)) => *b,
        Some(_) => return Err(bad("\"normalize\" must be true or false".into())),
    };
    Ok(Parsed { texts: out, normalize })
}

/// A request body's top level: an object (its fields, and the first key that came more than
/// once: serde_json's own maps keep the last value silently) or any other JSON value.
enum TopLevel {
    Object(serde_json::Map<String, serde_json::Value>, Option<String>),
    Other,
}

impl<'de> serde::Deserialize<'de> for TopLevel {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        d.deserialize_any(TopLevelVisitor)
    }
}

struct TopLevelVisitor;

impl<'de> serde::de::Visitor<'de> for TopLevelVisitor {
    type Value = TopLevel;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> std::result::Result<TopLevel, A::Error> {
        let mut out = serde_json::Map::new();
        let mut dup = None;
        while let Some(k) = map.next_key::<String>()? {
            let v: serde_json::Value = map.next_value()?;
            if out.contains_key(&k) {
                dup = dup.or(Some(k));
            } else {
                out.insert(k, v);
            }
        }
        Ok(TopLevel::Object(out, dup))
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> std::result::Result<TopLevel, A::Error> {
        while seq.next_element::<serde::de::IgnoredAny>()?.is_some() {}
        Ok(TopLevel::Other)
    }

    fn visit_bool<E>(self, _: bool) -> std::result::Result<TopLevel, E> {
        Ok(TopLevel::Other)
    }

    fn visit_i64<E>(self, _: i64) -> std::result::Result<TopLevel, E> {
        Ok(TopLevel::Other)
    }

    fn visit_u64<E>(self, _: u64) -> std::result::Result<TopLevel, E> {
        Ok(TopLevel::Other)
    }

    fn visit_i128<E>(self, _: i128) -> std::result::Result<TopLevel, E> {
        Ok(TopLevel::Other)
    }

    fn visit_u128<E>(self, _: u128) -> std::result::Result<TopLevel, E> {
        Ok(TopLevel::Other)
    }

    fn visit_f64<E>(self, _: f64) -> std::result::Result<TopLevel, E> {
        Ok(TopLevel::Other)
    }

    fn visit_str<E>(self, _: &str) -> std::result::Result<TopLevel, E> {
        Ok(TopLevel::Other)
    }

    fn visit_unit<E>(self) -> std::result::Result<TopLevel, E> {
        Ok(TopLevel::Other)
    }
}

/// One text's probabilities of Task A and Task B.
type TaskProbs = (Vec<f32>, Vec<f32>);

/// What the model thread computes for one request.
enum Output {
    Embeddings(Vec<Vec<f32>>),
    Probabilities(Vec<TaskProbs>),
}

struct Job {
    route: Route,
    texts: Vec<String>,
    normalize: bool,
    reply: oneshot::Sender<std::result::Result<Output, String>>,
}

/// The model the service runs: a base encoder (embeddings only) or a multi-task checkpoint.
pub enum Engine {
    /// A sentence-transformers folder: `/embed` only (`/predict` answers 404).
    Base(Box<SentenceEncoder>),
    /// A multi-task checkpoint: `/embed` from its fine-tuned encoder, and `/predict`.
    Multi(Box<Classifier>),
}

impl Engine {
    /// A sentence-transformers folder or a multi-task checkpoint, its encoder at `precision`.
    pub fn load(dir: &Path, device: Device, precision: crate::precision::Precision) -> Result<Engine> {
        Ok(if MultiTask::is_checkpoint(dir) {
            let mut c = Classifier::load(dir, device)?.0;
            c.set_precision(precision)?;
            Engine::Multi(Box::new(c))
        } else {
            let mut e = SentenceEncoder::load(dir, device)?.0;
            e.set_precision(precision)?;
            Engine::Base(Box::new(e))
        })
    }

    fn tokenizer(&self) -> &SentenceTokenizer {
        match self {
            Engine::Base(e) => &e.tokenizer,
            Engine::Multi(c) => &c.tokenizer,
        }
    }

    fn device(&self) -> Device {
        match self {
            Engine::Base(e) => e.params.device(),
            Engine::Multi(c) => c.model.device(),
        }
    }

    /// Label names of both tasks (multi-task checkpoints only).
    pub fn labels(&self) -> Option<(Vec<String>, Vec<String>)> {
        match self {
            Engine::Base(_) => None,
            Engine::Multi(c) => Some((c.model.config.labels_a.0.clone(), c.model.config.labels_b.0.clone())),
        }
    }

    /// Pooled vectors, and both heads' probabilities when asked and available.
    fn run(&self, ids: &Tensor, mask: &Tensor, heads: bool) -> (Tensor, Option<(Tensor, Tensor)>) {
        match self {
            Engine::Base(e) => (e.encoder.embed_t(ids, mask, false), None),
            Engine::Multi(c) => {
                let pooled = c.model.pooled_t(ids, mask, false);
                let probs = heads.then(|| {
                    let l = c.model.heads_t(&pooled, false);
                    (l.a.softmax(-1, Kind::Float), l.b.softmax(-1, Kind::Float))
                });
                (pooled, probs)
            }
        }
    }
}

/// Runs `jobs` through the model: all their texts sorted by length in token-budget batches. Once
/// `stop` is set (the shutdown grace period is over) the batches left are not run.
fn process(engine: &Engine, jobs: Vec<Job>, budget: usize, metrics: &Metrics, stop: &AtomicBool) {
    let tok = engine.tokenizer();
    let ids: Vec<Vec<Vec<i64>>> = jobs.iter().map(|j| tok.encode_all(&j.texts)).collect();
    let mut rows: Vec<(usize, usize)> = ids.iter().enumerate().flat_map(|(j, v)| (0..v.len()).map(move |r| (j, r))).collect();
    rows.sort_by_key(|&(j, r)| ids[j][r].len());
    let lens: Vec<usize> = rows.iter().map(|&(j, r)| ids[j][r].len()).collect();
    let mut pooled: Vec<Vec<Option<Vec<f32>>>> = ids.iter().map(|v| vec![None; v.len()]).collect();
    let mut probs: Vec<Vec<Option<TaskProbs>>> = ids.iter().map(|v| vec![None; v.len()]).collect();
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| -> std::result::Result<(), String> {
        let _g = tch::no_grad_guard();
        for range in crate::padding::budget_ranges(&lens, usize::MAX, Some(budget)) {
            if stop.load(Ordering::SeqCst) {
                return Err(SHUTTING_DOWN.to_string());
            }
            let batch = &rows[range];
            metrics.observe_batch(batch.len());
            let seqs: Vec<&[i64]> = batch.iter().map(|&(j, r)| ids[j][r].as_slice()).collect();
            let (x, m) = crate::padding::pad(&seqs, tok.pad_id(), engine.device());
            let heads = batch.iter().any(|&(j, _)| jobs[j].route == Route::Predict);
            let (p, pr) = engine.run(&x, &m, heads);
            let to_rows = |t: &Tensor| crate::infer::rows(&t.to_kind(Kind::Float).to_device(Device::Cpu)).map_err(|e| e.to_string());
            let embed_rows = |normalize: bool| batch.iter().any(|&(j, _)| jobs[j].route == Route::Embed && jobs[j].normalize == normalize);
            // Each form read back only when a row of this batch asks for it; rows taken in order.
            let mut plain = if embed_rows(false) { Some(to_rows(&p)?.into_iter()) } else { None };
            let mut normal = if embed_rows(true) { Some(to_rows(&pooling::l2_normalize(&p))?.into_iter()) } else { None };
            let mut heads_out = match pr {
                Some((a, b)) => Some(to_rows(&a)?.into_iter().zip(to_rows(&b)?)),
                None => None,
            };
            for &(j, r) in batch {
                let (v, n, h) = (plain.as_mut().and_then(Iterator::next), normal.as_mut().and_then(Iterator::next), heads_out.as_mut().and_then(Iterator::next));
                match jobs[j].route {
                    Route::Embed => pooled[j][r] = if jobs[j].normalize { n } else { v },
                    Route::Predict => probs[j][r] = Some(h.ok_or("this model has no task heads")?),
                }
            }
        }
        Ok(())
    }));
    let failure = match outcome {
        Ok(Ok(())) => None,
        Ok(Err(e)) => Some(e),
        Err(_) => Some("the model failed on this batch".to_string()),
    };
    for (j, job) in jobs.into_iter().enumerate() {
        let reply = match &failure {
            Some(e) => Err(e.clone()),
            None => Ok(match job.route {
                Route::Embed => Output::Embeddings(std::mem::take(&mut pooled[j]).into_iter().map(|v| v.expect("every row computed")).collect()),
                Route::Predict => Output::Probabilities(std::mem::take(&mut probs[j]).into_iter().map(|v| v.expect("every row computed")).collect()),
            }),
        };
        let _ = job.reply.send(reply);
    }
}

const SHUTTING_DOWN: &str = "the server is shutting down";

/// The model thread: takes every waiting job (up to the token budget's worth of tokens, roughly),
/// runs them together, replies, and repeats until every sender is gone. Once `stop` is set, jobs
/// still queued are refused instead of run, so that the thread ends promptly.
fn model_loop(engine: Engine, mut rx: mpsc::Receiver<Job>, budget: usize, metrics: Arc<Metrics>, stop: Arc<AtomicBool>) {
    while let Some(first) = rx.blocking_recv() {
        let mut chars: usize = first.texts.iter().map(String::len).sum();
        let mut jobs = vec![first];
        // Characters are a cheap stand-in for tokens here (about 4 per token for English).
        while chars < budget * 4 {
            match rx.try_recv() {
                Ok(j) => {
                    chars += j.texts.iter().map(String::len).sum::<usize>();
                    jobs.push(j);
                }
                Err(_) => break,
            }
        }
        metrics.queue_depth.fetch_sub(jobs.len(), Ordering::SeqCst);
        if stop.load(Ordering::SeqCst) {
            for j in jobs {
                let _ = j.reply.send(Err(SHUTTING_DOWN.to_string()));
            }
            continue;
        }
        process(&engine, jobs, budget, &metrics, &stop);
    }
}

const LATENCY_BUCKETS: [f64; 12] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0];
const BATCH_BUCKETS: [f64; 10] = [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0];

#[derive(Default)]
struct Histogram {
    counts: Vec<u64>,
    sum: f64,
    n: u64,
}

impl Histogram {
    fn observe(&mut self, bounds: &[f64], v: f64) {
        if self.counts.is_empty() {
            self.counts = vec![0; bounds.len()];
        }
        for (c, b) in self.counts.iter_mut().zip(bounds) {
            if v <= *b {
                *c += 1;
            }
        }
        self.sum += v;
        self.n += 1;
    }

    fn write(&self, out: &mut String, name: &str, labels: &str, bounds: &[f64]) {
        let sep = if labels.is_empty() { "" } else { "," };
        for (i, b) in bounds.iter().enumerate() {
            let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"{b}\"}} {}", self.counts.get(i).copied().unwrap_or(0));
        }
        let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {}", self.n);
        let braces = if labels.is_empty() { String::new() } else { format!("{{{labels}}}") };
        let _ = writeln!(out, "{name}_sum{braces} {}", self.sum);
        let _ = writeln!(out, "{name}_count{braces} {}", self.n);
    }
}

/// The service's counters, in Prometheus text format at `/metrics`.
#[derive(Default)]
pub struct Metrics {
    requests: Mutex<BTreeMap<(String, u16), u64>>,
    latency: Mutex<BTreeMap<String, Histogram>>,
    batches: Mutex<Histogram>,
    texts: Mutex<BTreeMap<String, u64>>,
    queue_depth: AtomicUsize,
    connections_open: AtomicUsize,
    connections_accepted: AtomicU64,
    connections_refused: AtomicU64,
    /// Connections closed by a timeout, by what the server was waiting for.
    connection_timeouts: Mutex<BTreeMap<&'static str, u64>>,
}

impl Metrics {
    fn observe_request(&self, route: &str, status: u16, seconds: f64) {
        *self.requests.lock().unwrap_or_else(|e| e.into_inner()).entry((route.to_string(), status)).or_default() += 1;
        self.latency.lock().unwrap_or_else(|e| e.into_inner()).entry(route.to_string()).or_default().observe(&LATENCY_BUCKETS, seconds);
    }

    fn observe_batch(&self, rows: usize) {
        self.batches.lock().unwrap_or_else(|e| e.into_inner()).observe(&BATCH_BUCKETS, rows as f64);
    }

    fn observe_timeout(&self, waiting_for: &'static str) {
        *self.connection_timeouts.lock().unwrap_or_else(|e| e.into_inner()).entry(waiting_for).or_default() += 1;
    }

    fn observe_texts(&self, route: &str, n: usize) {
        *self.texts.lock().unwrap_or_else(|e| e.into_inner()).entry(route.to_string()).or_default() += n as u64;
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        out.push_str("# HELP mtt_requests_total HTTP requests by route and status.\n# TYPE mtt_requests_total counter\n");
        for ((route, status), n) in self.requests.lock().unwrap_or_else(|e| e.into_inner()).iter() {
            let _ = writeln!(out, "mtt_requests_total{{route=\"{route}\",status=\"{status}\"}} {n}");
        }
        out.push_str("# HELP mtt_errors_total HTTP requests answered with a 4xx or 5xx status, by route and status.\n# TYPE mtt_errors_total counter\n");
        for ((route, status), n) in self.requests.lock().unwrap_or_else(|e| e.into_inner()).iter().filter(|((_, s), _)| *s >= 400) {
            let _ = writeln!(out, "mtt_errors_total{{route=\"{route}\",status=\"{status}\"}} {n}");
        }
        out.push_str("# HELP mtt_request_duration_seconds Time from request to response, by route.\n# TYPE mtt_request_duration_seconds histogram\n");
        for (route, h) in self.latency.lock().unwrap_or_else(|e| e.into_inner()).iter() {
            h.write(&mut out, "mtt_request_duration_seconds", &format!("route=\"{route}\""), &LATENCY_BUCKETS);
        }
        out.push_str("# HELP mtt_batch_size Texts per forward pass of the model.\n# TYPE mtt_batch_size histogram\n");
        self.batches.lock().unwrap_or_else(|e| e.into_inner()).write(&mut out, "mtt_batch_size", "", &BATCH_BUCKETS);
        out.push_str("# HELP mtt_texts_total Texts served, by route.\n# TYPE mtt_texts_total counter\n");
        for (route, n) in self.texts.lock().unwrap_or_else(|e| e.into_inner()).iter() {
            let _ = writeln!(out, "mtt_texts_total{{route=\"{route}\"}} {n}");
        }
        out.push_str("# HELP mtt_queue_depth Requests waiting for the model thread.\n# TYPE mtt_queue_depth gauge\n");
        let _ = writeln!(out, "mtt_queue_depth {}", self.queue_depth.load(Ordering::SeqCst));
        out.push_str("# HELP mtt_connections_open Client connections open.\n# TYPE mtt_connections_open gauge\n");
        let _ = writeln!(out, "mtt_connections_open {}", self.connections_open.load(Ordering::SeqCst));
        out.push_str("# HELP mtt_connections_accepted_total Client connections accepted and served.\n# TYPE mtt_connections_accepted_total counter\n");
        let _ = writeln!(out, "mtt_connections_accepted_total {}", self.connections_accepted.load(Ordering::SeqCst));
        out.push_str("# HELP mtt_connections_refused_total Connections answered 503 and closed at once: --max-connections were open.\n# TYPE mtt_connections_refused_total counter\n");
        let _ = writeln!(out, "mtt_connections_refused_total {}", self.connections_refused.load(Ordering::SeqCst));
        out.push_str("# HELP mtt_connection_timeouts_total Connections closed by a timeout, by what the server waited for (header, idle, body, write).\n# TYPE mtt_connection_timeouts_total counter\n");
        for (what, n) in self.connection_timeouts.lock().unwrap_or_else(|e| e.into_inner()).iter() {
            let _ = writeln!(out, "mtt_connection_timeouts_total{{waiting_for=\"{what}\"}} {n}");
        }
        out
    }
}

/// Shared by the handlers.
pub struct AppState {
    cfg: ServeConfig,
    jobs: mpsc::Sender<Job>,
    metrics: Arc<Metrics>,
    labels: Option<(Vec<String>, Vec<String>)>,
    model: String,
    dim: i64,
}

/// The running service: its router and the model thread (which ends once the router, and with it
/// every job sender, is dropped). [`Service::serve`] runs it on a listener.
pub struct Service {
    /// The routes: `POST /embed`, `POST /predict`, `GET /health`, `GET /metrics`.
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
    /// Starts the model thread on `engine` and builds the routes.
    pub fn start(engine: Engine, model_name: &str, cfg: ServeConfig) -> Service {
        let (tx, rx) = mpsc::channel(cfg.queue_capacity.max(1));
        let metrics = Arc::new(Metrics::default());
        let labels = engine.labels();
        let dim = match &engine {
            Engine::Base(e) => e.config().embedding_dim(),
            Engine::Multi(c) => c.model.config.encoder.embedding_dim(),
        };
        let (m, budget) = (metrics.clone(), cfg.token_budget);
        let stop_model = Arc::new(AtomicBool::new(false));
        let stop = stop_model.clone();
        let model_thread = std::thread::Builder::new()
            .name("mtt-model".into())
            .spawn(move || model_loop(engine, rx, budget, m, stop))
            .expect("the model thread starts");
        let state = Arc::new(AppState { cfg: cfg.clone(), jobs: tx, metrics: metrics.clone(), labels, model: model_name.to_string(), dim });
        let router = Router::new()
            .route(Route::Embed.path(), post(embed))
            .route(Route::Predict.path(), post(predict))
            .route("/health", get(health))
            .route("/metrics", get(metrics_route))
            .fallback(not_found)
            .layer(middleware::from_fn_with_state(state.clone(), track))
            .with_state(state);
        Service { router, model_thread, metrics, stop_model, cfg }
    }
}

/// Counts every response by route and status, times it, turns axum's bodiless 405 into JSON and,
/// as a safety net, gives any other error response without a JSON body one.
async fn track(State(state): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    let started = Instant::now();
    let path = req.uri().path().to_string();
    let route = match path.as_str() {
        p @ ("/embed" | "/predict" | "/health" | "/metrics") => p.to_string(),
        _ => "other".to_string(),
    };
    let method = req.method().clone();
    let mut resp = next.run(req).await;
    if resp.status() == StatusCode::METHOD_NOT_ALLOWED {
        let allowed = if [Route::Embed.path(), Route::Predict.path()].contains(&route.as_str()) { Method::POST } else { Method::GET };
        resp = ApiError::new(StatusCode::METHOD_NOT_ALLOWED, format!("{method} {route}: this route takes {allowed}")).into_response();
        resp.headers_mut().insert(header::ALLOW, HeaderValue::from_str(allowed.as_str()).expect("a method name"));
    } else if (resp.status().is_client_error() || resp.status().is_server_error())
        && resp.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()) != Some("application/json")
    {
        let (mut parts, _) = resp.into_parts();
        let reason = parts.status.canonical_reason().unwrap_or("error");
        let (json_parts, body) = ApiError::new(parts.status, format!("{method} {path}: {reason}")).into_response().into_parts();
        parts.headers.remove(header::CONTENT_LENGTH);
        parts.headers.remove(header::TRANSFER_ENCODING);
        for (k, v) in json_parts.headers.iter() {
            parts.headers.insert(k.clone(), v.clone());
        }
        resp = Response::from_parts(parts, body);
    }
    state.metrics.observe_request(&route, resp.status().as_u16(), started.elapsed().as_secs_f64());
    resp
}

/// Reads and drops a request's body (up to `limit` bytes), so that answering without it leaves
/// the connection reusable.
async fn drain(req: Request, limit: usize) {
    let _ = axum::body::to_bytes(req.into_body(), limit).await;
}

async fn not_found(State(state): State<Arc<AppState>>, req: Request) -> Response {
    let (method, path) = (req.method().clone(), req.uri().path().to_string());
    drain(req, state.cfg.max_body_bytes).await;
    ApiError::new(StatusCode::NOT_FOUND, format!("no route {method} {path} (routes: POST /embed, POST /predict, GET /health, GET /metrics)"))
        .into_response()
}

async fn health(State(state): State<Arc<AppState>>) -> Response {
    json_response(
        StatusCode::OK,
        &serde_json::json!({
            "status": "ok",
            "model": state.model,
            "multitask": state.labels.is_some(),
            "embedding_dim": state.dim,
            "queue_depth": state.metrics.queue_depth.load(Ordering::SeqCst),
        }),
    )
}

async fn metrics_route(State(state): State<Arc<AppState>>) -> Response {
    (StatusCode::OK, [(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; version=0.0.4"))], state.metrics.render()).into_response()
}

/// Reads the body (at most the limit) and parses it. A body must be framed by a Content-Length or
/// a chunked Transfer-Encoding (411 otherwise: without either, HTTP/1.1 reads no body at all); a
/// body that stops arriving for `idle_timeout` is answered 408 (see [`StallBody`]).
async fn read_request(state: &AppState, route: Route, req: Request) -> std::result::Result<Parsed, ApiError> {
    let content_type = req.headers().get(header::CONTENT_TYPE).map(|v| v.to_str().unwrap_or("(not text)").to_string());
    let limit = state.cfg.max_body_bytes;
    if !req.headers().contains_key(header::CONTENT_LENGTH) && !req.headers().contains_key(header::TRANSFER_ENCODING) {
        return Err(ApiError::new(
            StatusCode::LENGTH_REQUIRED,
            "no Content-Length and no Transfer-Encoding: send the JSON body with a Content-Length (or chunked)",
        ));
    }
    let declared = req.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, format!("body of {} bytes: the limit is {limit}", declared.unwrap_or(0))));
    }
    let body = axum::body::to_bytes(req.into_body(), limit).await.map_err(|e| match stalled(&e) {
        Some(s) => ApiError::new(StatusCode::REQUEST_TIMEOUT, format!("{s}: send the whole body without pausing")),
        None => ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, format!("body larger than the limit of {limit} bytes, or cut off")),
    })?;
    parse_request(route, content_type.as_deref(), &body, &state.cfg)
}

/// Queues a job and waits for its output.
async fn submit(state: &AppState, route: Route, p: Parsed) -> std::result::Result<Output, Response> {
    let (tx, rx) = oneshot::channel();
    let n = p.texts.len();
    let job = Job { route, texts: p.texts, normalize: p.normalize, reply: tx };
    state.metrics.queue_depth.fetch_add(1, Ordering::SeqCst);
    if state.jobs.try_send(job).is_err() {
        state.metrics.queue_depth.fetch_sub(1, Ordering::SeqCst);
        let mut r = ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "the queue is full: retry shortly").into_response();
        r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        return Err(r);
    }
    match rx.await {
        Ok(Ok(out)) => {
            state.metrics.observe_texts(route.path(), n);
            Ok(out)
        }
        Ok(Err(e)) => Err(ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e).into_response()),
        Err(_) => Err(ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "the model thread has stopped").into_response()),
    }
}

async fn embed(State(state): State<Arc<AppState>>, req: Request) -> Response {
    let p = match read_request(&state, Route::Embed, req).await {
        Ok(p) => p,
        Err(e) => return e.into_response(),
    };
    match submit(&state, Route::Embed, p).await {
        Ok(Output::Embeddings(v)) => json_response(StatusCode::OK, &serde_json::json!({ "embeddings": v, "dim": state.dim })),
        Ok(Output::Probabilities(_)) => ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "wrong output kind").into_response(),
        Err(r) => r,
    }
}

#[derive(Serialize)]
struct TaskPrediction<'a> {
    label: &'a str,
    /// Label -> probability (the same shape as `mtt predict`'s lines).
    probs: BTreeMap<&'a str, f32>,
}

#[derive(Serialize)]
struct Prediction<'a> {
    task_a: TaskPrediction<'a>,
    task_b: TaskPrediction<'a>,
}

fn task_prediction<'a>(names: &'a [String], p: &[f32]) -> TaskPrediction<'a> {
    let best = crate::infer::argmax(p);
    TaskPrediction { label: &names[best], probs: names.iter().map(String::as_str).zip(p.iter().copied()).collect() }
}

async fn predict(State(state): State<Arc<AppState>>, req: Request) -> Response {
    let Some((la, lb)) = &state.labels else {
        drain(req, state.cfg.max_body_bytes).await;
        return ApiError::new(StatusCode::NOT_FOUND, format!("{} is a base encoder without task heads: /predict needs a multi-task checkpoint (mtt train)", state.model))
            .into_response();
    };
    let p = match read_request(&state, Route::Predict, req).await {
        Ok(p) => p,
        Err(e) => return e.into_response(),
    };
    match submit(&state, Route::Predict, p).await {
        Ok(Output::Probabilities(v)) => {
            let preds: Vec<Prediction> = v.iter().map(|(a, b)| Prediction { task_a: task_prediction(la, a), task_b: task_prediction(lb, b) }).collect();
            json_response(StatusCode::OK, &serde_json::json!({ "predictions": preds }))
        }
        Ok(Output::Embeddings(_)) => ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "wrong output kind").into_response(),
        Err(r) => r,
    }
}

// ---- Connections ---------------------------------------------------------------------------------
//
// axum::serve gives no header timeout, no idle timeout, no connection cap, and waits without end
// for a connection whose request is half sent once shutdown starts. Its replacement below drives
// each connection with hyper's HTTP/1 server directly:
// * [`GuardedIo`], the socket adapter, enforces the read deadlines while no request is in the
//   handler (idle connection: `idle_timeout`; a request head: `header_timeout` from its first
//   byte), the write deadline (a client that stops reading its answer) and, at shutdown, closes
//   connections that hold a half-sent head; it also rewrites hyper's own bodiless 400/414/431;
// * [`StallBody`], the request body adapter, answers 408 when a body stops arriving (while a
//   request is in the handler the socket adapter sets no read deadline: the model's time is not
//   the client's);
// * [`ConnService`] tells the socket adapter when a request is in the handler and when its
//   response has been handed to the socket.

/// Refused connections and rewritten error answers are closed by lingering (see [`linger_close`]);
/// at most this many at once, beyond which they are closed at once.
const MAX_LINGERING: usize = 64;
/// How long a lingering close waits for the client to finish sending.
const LINGER: Duration = Duration::from_secs(1);

impl Service {
    /// Serves HTTP/1.1 on `listener` until `signal` resolves, then shuts down: stops accepting,
    /// closes idle connections and those holding a half-sent request head, waits up to
    /// `shutdown_timeout` for the requests in flight, cuts the connections still open, and waits
    /// for the model thread (which by then refuses the jobs still queued).
    pub async fn serve(self, listener: TcpListener, signal: impl Future<Output = ()>) -> ShutdownReport {
        let Service { router, model_thread, metrics, stop_model, cfg } = self;
        let limits = ConnLimits { header: cfg.header_timeout, idle: cfg.idle_timeout };
        let (shutdown_tx, shutdown_rx) = watch::channel(false);
        let lingering = Arc::new(Semaphore::new(MAX_LINGERING));
        let mut conns = tokio::task::JoinSet::new();
        tokio::pin!(signal);
        loop {
            tokio::select! {
                _ = &mut signal => break,
                Some(_) = conns.join_next(), if !conns.is_empty() => {}
                accepted = listener.accept() => match accepted {
                    Ok((stream, _)) => {
                        if metrics.connections_open.load(Ordering::SeqCst) >= cfg.max_connections {
                            refuse(stream, &metrics, &lingering, cfg.max_connections);
                            continue;
                        }
                        let _ = stream.set_nodelay(true);
                        metrics.connections_open.fetch_add(1, Ordering::SeqCst);
                        metrics.connections_accepted.fetch_add(1, Ordering::SeqCst);
                        let open = OpenConnection(metrics.clone());
                        conns.spawn(serve_connection(stream, router.clone(), open, limits, shutdown_rx.clone(), lingering.clone()));
                    }
                    Err(e) if matches!(e.kind(), io::ErrorKind::ConnectionRefused | io::ErrorKind::ConnectionAborted | io::ErrorKind::ConnectionReset) => {}
                    // Out of file descriptors or the like: give connections a moment to close.
                    Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                }
            }
        }
        drop(listener);
        shutdown_tx.send_replace(true);
        let grace = tokio::time::sleep(cfg.shutdown_timeout);
        tokio::pin!(grace);
        let cut = loop {
            tokio::select! {
                next = conns.join_next() => if next.is_none() { break 0 },
                _ = &mut grace => {
                    let n = metrics.connections_open.load(Ordering::SeqCst);
                    conns.shutdown().await;
                    break n;
                }
            }
        };
        // No handler waits for the model any more: jobs still queued (of requests whose client left,
        // or that were cut) are refused, and the model thread ends after its batch at most.
        stop_model.store(true, Ordering::SeqCst);
        drop(router);
        let _ = tokio::task::spawn_blocking(move || model_thread.join()).await;
        ShutdownReport { cut }
    }
}

/// Keeps `mtt_connections_open` (also the count `max_connections` is checked against) while a
/// connection's task lives, however it ends.
struct OpenConnection(Arc<Metrics>);

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.0.connections_open.fetch_sub(1, Ordering::SeqCst);
    }
}

#[derive(Debug, Clone, Copy)]
struct ConnLimits {
    header: Duration,
    idle: Duration,
}

/// One connection, until it closes or its task is aborted at the end of the grace period.
async fn serve_connection(stream: TcpStream, router: Router, open: OpenConnection, limits: ConnLimits, mut shutdown: watch::Receiver<bool>, lingering: Arc<Semaphore>) {
    let metrics = open.0.clone();
    let conn = Arc::new(ConnShared::new());
    let io = GuardedIo::new(stream, conn.clone(), limits, metrics.clone(), lingering);
    let service = ConnService { router, conn: conn.clone(), body_timeout: limits.idle, metrics };
    let mut http = hyper::server::conn::http1::Builder::new();
    // No hyper timer: its header timeout runs from the end of the previous response (so it would
    // also be the keep-alive timeout); GuardedIo keeps both deadlines instead.
    http.max_header_size(MAX_HEADER_BYTES);
    let served = http.serve_connection(hyper_util::rt::TokioIo::new(io), service);
    tokio::pin!(served);
    let mut signalled = false;
    loop {
        tokio::select! {
            _ = served.as_mut() => break,
            _ = shutdown.changed(), if !signalled => {
                signalled = true;
                conn.lock().shutting_down = true;
                // hyper closes an idle connection now and one with a request in flight after its
                // response; a half-sent head is closed by GuardedIo on hyper's next read.
                served.as_mut().graceful_shutdown();
            }
        }
    }
    drop(open);
}

/// Answers a connection over the cap with a 503 and closes it, without reading its request.
fn refuse(stream: TcpStream, metrics: &Metrics, lingering: &Arc<Semaphore>, max: usize) {
    metrics.connections_refused.fetch_add(1, Ordering::SeqCst);
    let body = serde_json::json!({ "error": format!("too many open connections (the limit is {max}): retry shortly") }).to_string();
    let answer = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\ncontent-length: {}\r\nretry-after: 1\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    // A new socket's send buffer is empty: the answer fits (and if not, the client gets a close).
    let _ = stream.try_write(answer.as_bytes());
    linger_close(stream, lingering);
}

/// Closes a connection we answered without reading the whole request: shuts our sending side, then
/// reads and drops what the client still sends, until it closes or for [`LINGER`] at most. Closing
/// at once with unread bytes would make the kernel send a reset, which can destroy our answer in
/// the client's receive buffer before it reads it. At most [`MAX_LINGERING`] at once.
fn linger_close(mut stream: TcpStream, lingering: &Arc<Semaphore>) {
    let (Ok(permit), Ok(rt)) = (lingering.clone().try_acquire_owned(), tokio::runtime::Handle::try_current()) else {
        return;
    };
    rt.spawn(async move {
        let _permit = permit;
        let _ = std::future::poll_fn(|cx| Pin::new(&mut stream).poll_shutdown(cx)).await;
        let drain = async {
            let mut buf = [0u8; 4096];
            loop {
                if stream.readable().await.is_err() {
                    break;
                }
                match stream.try_read(&mut buf) {
                    Ok(0) => break,
                    Ok(_) => {}
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(_) => break,
                }
            }
        };
        let _ = tokio::time::timeout(LINGER, drain).await;
    });
}

/// What a connection is doing, shared by its socket adapter, its service and its response bodies.
struct ConnShared(Mutex<ConnPhase>);

struct ConnPhase {
    /// Requests in the handler (HTTP/1: 0 or 1).
    in_flight: usize,
    /// A response from the handler not yet wholly handed to the socket.
    response_open: bool,
    /// That response's body has been dropped by hyper (so the next flush ends the response).
    response_body_done: bool,
    /// Last byte read or written (or response from the handler).
    last_activity: tokio::time::Instant,
    /// First byte of a request head not yet handed to the handler.
    head_started: Option<tokio::time::Instant>,
    shutting_down: bool,
}

impl ConnShared {
    fn new() -> Self {
        ConnShared(Mutex::new(ConnPhase {
            in_flight: 0,
            response_open: false,
            response_body_done: false,
            last_activity: tokio::time::Instant::now(),
            head_started: None,
            shutting_down: false,
        }))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ConnPhase> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The socket under hyper, with the connection's deadlines. Every deadline ends in an I/O error
/// (`TimedOut`), on which hyper drops the connection.
///
/// hyper answers a request it cannot parse by itself, with an empty body: 400 (bad request line
/// or header), 414 (target too long) or 431 (head over [`MAX_HEADER_BYTES`]); the handler never
/// sees it. Such an answer is recognised here as a `HTTP/1.1 4xx` head written while no response
/// of the handler is on its way, and replaced by the same status with a JSON body; the connection
/// is then closed (hyper closes it after such an answer anyway) by lingering, so that the client
/// can read the answer even while it is still sending its oversized head. A request hyper cannot
/// parse right after a pipelined response still in hyper's buffer keeps hyper's bodiless answer.
struct GuardedIo {
    /// `None` only once dropped.
    io: Option<TcpStream>,
    conn: Arc<ConnShared>,
    limits: ConnLimits,
    metrics: Arc<Metrics>,
    read_timer: Pin<Box<tokio::time::Sleep>>,
    write_timer: Pin<Box<tokio::time::Sleep>>,
    /// The JSON answer that replaces hyper's bodiless one, and how much of it is written. Once
    /// set, whatever hyper writes is dropped.
    replacement: Option<(Vec<u8>, usize)>,
    lingering: Arc<Semaphore>,
}

impl GuardedIo {
    fn new(io: TcpStream, conn: Arc<ConnShared>, limits: ConnLimits, metrics: Arc<Metrics>, lingering: Arc<Semaphore>) -> Self {
        let far = tokio::time::Instant::now() + Duration::from_secs(86_400 * 365);
        GuardedIo {
            io: Some(io),
            conn,
            limits,
            metrics,
            read_timer: Box::pin(tokio::time::sleep_until(far)),
            write_timer: Box::pin(tokio::time::sleep_until(far)),
            replacement: None,
            lingering,
        }
    }

    fn stream(&mut self) -> Pin<&mut TcpStream> {
        Pin::new(self.io.as_mut().expect("the stream is there until drop"))
    }

    /// When a read must have made progress by, and what the connection waits for then: nothing
    /// while a request is in the handler (its body has [`StallBody`]'s timer).
    fn read_deadline(&self) -> Option<(tokio::time::Instant, &'static str)> {
        let c = self.conn.lock();
        if c.in_flight > 0 {
            return None;
        }
        if c.shutting_down && c.head_started.is_some() && !c.response_open {
            return Some((c.last_activity.min(tokio::time::Instant::now()), "shutdown"));
        }
        // With a response on its way, nothing moving means the client does not read it.
        let idle = (c.last_activity + self.limits.idle, if c.response_open { "write" } else { "idle" });
        Some(match c.head_started {
            Some(t) if t + self.limits.header <= idle.0 => (t + self.limits.header, "header"),
            _ => idle,
        })
    }

    /// Registers the task for the read deadline without reading. hyper polls the socket for the
    /// next request head only when woken once a response is out (it re-polls by itself only when
    /// its own header timer is on), so the idle deadline of a kept-alive connection has to be armed
    /// from the write side; its wake-up makes hyper read, and the read fails with the timeout.
    fn arm_read_timer(&mut self, cx: &mut Context<'_>) {
        if let Some((at, _)) = self.read_deadline() {
            if self.read_timer.deadline() != at {
                self.read_timer.as_mut().reset(at);
            }
            let _ = self.read_timer.as_mut().poll(cx);
        }
    }

    fn timed_out(&self, waiting_for: &'static str) -> io::Error {
        if waiting_for != "shutdown" {
            self.metrics.observe_timeout(waiting_for);
        }
        io::Error::new(io::ErrorKind::TimedOut, format!("connection closed: {waiting_for} timeout"))
    }

    /// A write to the socket, timed out when the client reads nothing for `idle_timeout`.
    fn poll_socket_write(&mut self, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match self.stream().poll_write(cx, buf) {
            Poll::Ready(Ok(n)) => {
                if n > 0 {
                    self.conn.lock().last_activity = tokio::time::Instant::now();
                }
                Poll::Ready(Ok(n))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => {
                let deadline = self.conn.lock().last_activity + self.limits.idle;
                if self.write_timer.deadline() != deadline {
                    self.write_timer.as_mut().reset(deadline);
                }
                if self.write_timer.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(Err(self.timed_out("write")));
                }
                Poll::Pending
            }
        }
    }

    /// Writes the rest of the replacement answer, if any.
    fn poll_replacement(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while let Some((bytes, done)) = self.replacement.take() {
            if done >= bytes.len() {
                self.replacement = Some((bytes, done));
                break;
            }
            let polled = self.poll_socket_write(cx, &bytes[done..]);
            let n = match polled {
                Poll::Ready(Ok(0)) => {
                    self.replacement = Some((bytes, done));
                    return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
                }
                Poll::Ready(Ok(n)) => n,
                other => {
                    self.replacement = Some((bytes, done));
                    return other.map_ok(|_| ());
                }
            };
            self.replacement = Some((bytes, done + n));
        }
        Poll::Ready(Ok(()))
    }
}

/// hyper's own answer to a request it could not parse, made JSON.
fn json_error_answer(status: u16) -> Option<Vec<u8>> {
    let status = StatusCode::from_u16(status).ok().filter(StatusCode::is_client_error)?;
    let message = match status.as_u16() {
        400 => "malformed HTTP request: the request line or a header could not be parsed".to_string(),
        414 => "request target too long".to_string(),
        431 => format!("request head (request line and headers) over the limit of {MAX_HEADER_BYTES} bytes"),
        _ => status.canonical_reason().unwrap_or("client error").to_string(),
    };
    let body = serde_json::json!({ "error": message }).to_string();
    let head = format!(
        "HTTP/1.1 {} {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        status.as_u16(),
        status.canonical_reason().unwrap_or(""),
        body.len()
    );
    Some((head + &body).into_bytes())
}

impl AsyncRead for GuardedIo {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let deadline = this.read_deadline();
        if let Some((at, waiting_for)) = deadline {
            // Checked before reading: a client trickling bytes never lets a read wait.
            if tokio::time::Instant::now() >= at {
                return Poll::Ready(Err(this.timed_out(waiting_for)));
            }
        }
        let before = buf.filled().len();
        match this.stream().poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if buf.filled().len() > before {
                    let now = tokio::time::Instant::now();
                    let mut c = this.conn.lock();
                    c.last_activity = now;
                    if c.in_flight == 0 && c.head_started.is_none() {
                        c.head_started = Some(now);
                    }
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => {
                if let Some((at, waiting_for)) = deadline {
                    if this.read_timer.deadline() != at {
                        this.read_timer.as_mut().reset(at);
                    }
                    if this.read_timer.as_mut().poll(cx).is_ready() {
                        return Poll::Ready(Err(this.timed_out(waiting_for)));
                    }
                }
                Poll::Pending
            }
        }
    }
}

impl AsyncWrite for GuardedIo {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        if this.replacement.is_none() && (buf.starts_with(b"HTTP/1.1 4") || buf.starts_with(b"HTTP/1.0 4")) {
            let hyper_answer = {
                let c = this.conn.lock();
                c.in_flight == 0 && !c.response_open
            };
            let status = buf.get(9..12).and_then(|d| std::str::from_utf8(d).ok()).and_then(|d| d.parse().ok());
            if let Some(answer) = status.filter(|_| hyper_answer).and_then(json_error_answer) {
                this.replacement = Some((answer, 0));
            }
        }
        if this.replacement.is_some() {
            std::task::ready!(this.poll_replacement(cx))?;
            return Poll::Ready(Ok(buf.len()));
        }
        this.poll_socket_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        std::task::ready!(this.poll_replacement(cx))?;
        std::task::ready!(this.stream().poll_flush(cx))?;
        {
            let mut c = this.conn.lock();
            if c.response_body_done {
                // hyper flushes after writing: the handler's response is wholly out.
                c.response_open = false;
                c.response_body_done = false;
            }
        }
        this.arm_read_timer(cx);
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        std::task::ready!(this.poll_replacement(cx))?;
        this.stream().poll_shutdown(cx)
    }
}

impl Drop for GuardedIo {
    fn drop(&mut self) {
        if let Some(stream) = self.io.take() {
            if self.replacement.is_some() {
                linger_close(stream, &self.lingering);
            }
        }
    }
}

/// The router as the connection's hyper service: marks the request in the handler, times out its
/// body, and follows its response until hyper has handed it to the socket.
struct ConnService {
    router: Router,
    conn: Arc<ConnShared>,
    body_timeout: Duration,
    metrics: Arc<Metrics>,
}

impl hyper::service::Service<hyper::Request<hyper::body::Incoming>> for ConnService {
    type Response = hyper::Response<TrackedBody>;
    type Error = std::convert::Infallible;
    type Future = Pin<Box<dyn Future<Output = std::result::Result<Self::Response, Self::Error>> + Send>>;

    fn call(&self, req: hyper::Request<hyper::body::Incoming>) -> Self::Future {
        let mut in_flight = InFlight::start(self.conn.clone());
        let (timeout, metrics) = (self.body_timeout, self.metrics.clone());
        let req = req.map(|b| StallBody::new(b, timeout, metrics));
        let handled = hyper::service::Service::call(&hyper_util::service::TowerToHyperService::new(self.router.clone()), req);
        Box::pin(async move {
            let resp = match handled.await {
                Ok(r) => r,
                Err(never) => match never {},
            };
            let conn = in_flight.responded();
            Ok(resp.map(|inner| TrackedBody { inner, conn }))
        })
    }
}

/// A request in the handler, from its head to its response (or until hyper drops it).
struct InFlight {
    conn: Arc<ConnShared>,
    responded: bool,
}

impl InFlight {
    fn start(conn: Arc<ConnShared>) -> Self {
        {
            let mut c = conn.lock();
            c.in_flight += 1;
            c.head_started = None;
        }
        InFlight { conn, responded: false }
    }

    fn responded(&mut self) -> Arc<ConnShared> {
        self.responded = true;
        let mut c = self.conn.lock();
        c.in_flight -= 1;
        c.response_open = true;
        c.response_body_done = false;
        c.last_activity = tokio::time::Instant::now();
        drop(c);
        self.conn.clone()
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if !self.responded {
            let mut c = self.conn.lock();
            c.in_flight -= 1;
            c.last_activity = tokio::time::Instant::now();
        }
    }
}

/// A response body that tells the connection when hyper is done with it.
struct TrackedBody {
    inner: axum::body::Body,
    conn: Arc<ConnShared>,
}

impl http_body::Body for TrackedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<std::result::Result<http_body::Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for TrackedBody {
    fn drop(&mut self) {
        self.conn.lock().response_body_done = true;
    }
}

/// A request body that fails with [`BodyStalled`] when no byte arrives for its timeout.
struct StallBody {
    inner: hyper::body::Incoming,
    timeout: Duration,
    timer: Pin<Box<tokio::time::Sleep>>,
    armed: bool,
    metrics: Arc<Metrics>,
}

impl StallBody {
    fn new(inner: hyper::body::Incoming, timeout: Duration, metrics: Arc<Metrics>) -> Self {
        StallBody { inner, timeout, timer: Box::pin(tokio::time::sleep(timeout)), armed: false, metrics }
    }
}

impl http_body::Body for StallBody {
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<std::result::Result<http_body::Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(frame) => {
                this.armed = false;
                Poll::Ready(frame.map(|f| f.map_err(Into::into)))
            }
            Poll::Pending => {
                if !this.armed {
                    this.armed = true;
                    this.timer.as_mut().reset(tokio::time::Instant::now() + this.timeout);
                }
                if this.timer.as_mut().poll(cx).is_ready() {
                    this.metrics.observe_timeout("body");
                    return Poll::Ready(Some(Err(Box::new(BodyStalled(this.timeout)))));
                }
                Poll::Pending
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// A request body stopped arriving.
#[derive(Debug)]
struct BodyStalled(Duration);

impl std::fmt::Display for BodyStalled {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        write!(f, "no byte of the request body for {} s", self.0.as_secs_f64())
    }
}

impl std::error::Error for BodyStalled {}

/// The [`BodyStalled`] somewhere in an error's chain of sources.
fn stalled<'a>(e: &'a (dyn std::error::Error + 'static)) -> Option<&'a BodyStalled> {
    let mut cur = Some(e);
    while let Some(x) = cur {
        if let Some(s) = x.downcast_ref::<BodyStalled>() {
            return Some(s);
        }
        cur = x.source();
    }
    None
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

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn cfg() -> ServeConfig {
        ServeConfig { max_body_bytes: 4096, max_texts: 4, ..Default::default() }
    }

    #[test]
    fn the_parser_names_what_is_wrong() {
        let j = Some("application/json");
        let ok = parse_request(Route::Embed, Some("application/json; charset=utf-8"), br#"{"texts": ["a", "b"], "normalize": true}"#, &cfg()).unwrap();
        assert_eq!(ok, Parsed { texts: vec!["a".into(), "b".into()], normalize: true });
        type Case<'a> = (Route, Option<&'a str>, &'a [u8], u16, &'a str);
        let cases: Vec<Case> = vec![
            (Route::Embed, None, b"{}", 415, "content type (none)"),
            (Route::Embed, Some("text/plain"), b"{}", 415, "'text/plain'"),
            (Route::Embed, j, b"{", 400, "invalid JSON"),
            (Route::Embed, j, b"[1]", 400, "must be a JSON object"),
            (Route::Embed, j, b"{}", 400, "missing field \"texts\""),
            (Route::Embed, j, br#"{"texts": "a"}"#, 400, "must be an array"),
            (Route::Embed, j, br#"{"texts": []}"#, 400, "is empty"),
            (Route::Embed, j, br#"{"texts": ["a", 3]}"#, 400, "texts[1] is not a string"),
            (Route::Embed, j, br#"{"texts": ["a","a","a","a","a"]}"#, 413, "the limit is 4 per request"),
            (Route::Embed, j, br#"{"texts": ["a"], "normalize": 1}"#, 400, "\"normalize\" must be true or false"),
            (Route::Embed, j, br#"{"texts": ["a"], "normalize": null}"#, 400, "\"normalize\" must be true or false"),
            (Route::Embed, j, br#"{"texts": ["a"], "texts": ["b"]}"#, 400, "duplicate field \"texts\""),
            (Route::Embed, j, br#"{"texts": ["a"], "normalize": true, "normalize": true}"#, 400, "duplicate field \"normalize\""),
            (Route::Embed, j, br#"{"te\u0078ts": ["a"], "texts": ["a"]}"#, 400, "duplicate field \"texts\""),
            (Route::Predict, j, br#"{"texts": ["a"], "x": 1, "x": 2}"#, 400, "duplicate field \"x\""),
            (Route::Embed, j, br#"[1, {"a": 1, "a": 2}]"#, 400, "must be a JSON object"),
            (Route::Embed, j, br#"{"texts": ["a"]} x"#, 400, "invalid JSON"),
            (Route::Predict, j, br#"{"texts": ["a"], "normalize": true}"#, 400, "unknown field \"normalize\""),
            (Route::Embed, j, &[b' '; 5000], 413, "the limit is 4096"),
        ];
        for (route, ct, body, status, want) in cases {
            let e = parse_request(route, ct, body, &cfg()).unwrap_err();
            assert_eq!(e.status.as_u16(), status, "{want}: {}", e.message);
            assert!(e.message.contains(want), "want '{want}', got '{}'", e.message);
        }
    }

    #[test]
    fn nested_duplicates_and_other_values_are_left_to_the_usual_checks() {
        // Only the top level is the request map: a text that is an object is "not a string".
        let e = parse_request(Route::Embed, Some("application/json"), br#"{"texts": [{"a": 1, "a": 2}]}"#, &cfg()).unwrap_err();
        assert!(e.message.contains("texts[0] is not a string"), "{}", e.message);
        for body in [&b"1"[..], b"-1", b"1e400", b"true", b"null", b"\"s\"", b"18446744073709551616", b"[]"] {
            let e = parse_request(Route::Embed, Some("application/json"), body, &cfg()).unwrap_err();
            assert_eq!(e.status, StatusCode::BAD_REQUEST, "{}", String::from_utf8_lossy(body));
        }
    }

    #[test]
    fn hyper_s_own_error_answers_are_rewritten_to_json() {
        for (status, want) in [(400, "malformed HTTP request"), (414, "too long"), (431, "over the limit of 65536 bytes")] {
            let raw = String::from_utf8(json_error_answer(status).unwrap()).unwrap();
            let (head, body) = raw.split_once("\r\n\r\n").unwrap();
            assert!(head.starts_with(&format!("HTTP/1.1 {status} ")), "{head}");
            assert!(head.contains("content-type: application/json") && head.contains(&format!("content-length: {}", body.len())), "{head}");
            let v: serde_json::Value = serde_json::from_str(body).unwrap();
            assert!(v["error"].as_str().unwrap().contains(want), "{body}");
        }
        assert!(json_error_answer(200).is_none() && json_error_answer(503).is_none() && json_error_answer(999).is_none());
    }

    /// Cases per property: `MTT_FUZZ_CASES` for a long fuzz run of the request parser, else 2,000.
    fn fuzz_cases() -> u32 {
        std::env::var("MTT_FUZZ_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(2000)
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: fuzz_cases(), failure_persistence: None, ..ProptestConfig::default() })]
        #[test]
        fn a_key_given_twice_is_refused_by_name(key in prop_oneof![Just("texts".to_string()), Just("normalize".to_string()), "[a-z]{1,8}"], first in 0usize..3, second in 0usize..3, predict in any::<bool>()) {
            // `texts` and `normalize` valid, plus the key twice at two of the positions.
            let mut fields = vec![r#""texts": ["a"]"#.to_string(), r#""normalize": false"#.to_string()];
            let dup = format!(r#""{key}": true"#);
            fields.insert(first.min(fields.len()), dup.clone());
            fields.insert(second.min(fields.len()), dup);
            let body = format!("{{{}}}", fields.join(", "));
            let route = if predict { Route::Predict } else { Route::Embed };
            let e = parse_request(route, Some("application/json"), body.as_bytes(), &cfg()).unwrap_err();
            prop_assert_eq!(e.status, StatusCode::BAD_REQUEST);
            prop_assert!(e.message.starts_with("duplicate field"), "{}: {}", body, e.message);
        }

        #[test]
        fn arbitrary_bodies_are_parsed_or_refused_with_a_4xx(body in proptest::collection::vec(any::<u8>(), 0..300), ct in proptest::option::of(prop_oneof![Just("application/json".to_string()), Just("application/json; charset=utf-8".to_string()), Just("text/plain".to_string()), ".{0,20}"]), predict in any::<bool>()) {
            let route = if predict { Route::Predict } else { Route::Embed };
            match parse_request(route, ct.as_deref(), &body, &cfg()) {
                Ok(p) => prop_assert!(!p.texts.is_empty() && p.texts.len() <= 4),
                Err(e) => prop_assert!(e.status.is_client_error(), "{:?}", e),
            }
        }

        #[test]
        fn json_shaped_bodies_are_parsed_or_refused_with_a_4xx(texts in proptest::collection::vec(prop_oneof![".{0,12}".prop_map(serde_json::Value::from), any::<i64>().prop_map(serde_json::Value::from), Just(serde_json::Value::Null)], 0..7), extra in proptest::option::of("[a-z]{1,8}"), normalize in proptest::option::of(prop_oneof![any::<bool>().prop_map(serde_json::Value::from), Just(serde_json::Value::from("yes"))])) {
            let mut obj = serde_json::Map::new();
            obj.insert("texts".into(), serde_json::Value::Array(texts));
            if let Some(k) = extra { obj.insert(k, serde_json::Value::Null); }
            if let Some(n) = normalize { obj.insert("normalize".into(), n); }
            let body = serde_json::to_vec(&obj).unwrap();
            match parse_request(Route::Embed, Some("application/json"), &body, &cfg()) {
                Ok(p) => prop_assert!(!p.texts.is_empty()),
                Err(e) => prop_assert!(e.status.is_client_error(), "{:?}", e),
            }
        }
    }
}

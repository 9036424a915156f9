//! Owns `mtt serve`: the model behind HTTP (axum on tokio).
//!
//! * Routes: `POST /embed` `{"texts": [...], "normalize": bool}`, `POST /predict` `{"texts": [...]}`
//!   (both heads' labels and probabilities; 404 when the model is a base encoder), `GET /health`,
//!   `GET /metrics` (Prometheus text format). Every error is JSON: `{"error": "..."}`.
//! * One dedicated model thread owns the model. Handlers validate the request
//!   ([`parse_request`], a pure function), queue a job on a bounded channel and await the reply,
//!   so they never block the runtime; a full queue answers 503 with `Retry-After`.
//! * The model thread takes every job waiting (up to a token budget), tokenizes, sorts all their
//!   texts by length and runs them in batches of at most `token_budget` padded tokens: one
//!   encoder pass gives the embeddings and, for `/predict` rows, both heads.
//! * Texts longer than the model's `max_seq_length` tokens are truncated, as in `mtt embed`.

use crate::classifier::Classifier;
use crate::embed::SentenceEncoder;
use crate::error::Result;
use crate::model::{pooling, MultiTask};
use crate::tokenizer::SentenceTokenizer;
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;
use tch::{Device, Kind, Tensor};
use tokio::sync::{mpsc, oneshot};

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
}

impl Default for ServeConfig {
    fn default() -> Self {
        ServeConfig { max_body_bytes: 1 << 20, max_texts: 256, queue_capacity: 256, token_budget: 1024 }
    }
}

/// A request the parser turned away: the status and the message of its JSON body.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    pub status: StatusCode,
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
        if self.status == StatusCode::PAYLOAD_TOO_LARGE {
            // The rest of an oversized body is never read: the connection cannot be reused, and
            // saying so keeps clients from sending their next request into a closing socket.
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
    Embed,
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
    pub texts: Vec<String>,
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
    let value: serde_json::Value = serde_json::from_slice(body).map_err(|e| bad(format!("invalid JSON: {e}")))?;
    let obj = value.as_object().ok_or_else(|| bad("the body must be a JSON object with a \"texts\" array".into()))?;
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
        None | Some(serde_json::Value::Null) => false,
        Some(serde_json::Value::Bool(b)) => *b,
        Some(_) => return Err(bad("\"normalize\" must be true or false".into())),
    };
    Ok(Parsed { texts: out, normalize })
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
    Base(Box<SentenceEncoder>),
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

/// Runs `jobs` through the model: all their texts sorted by length in token-budget batches.
fn process(engine: &Engine, jobs: Vec<Job>, budget: usize, metrics: &Metrics) {
    let tok = engine.tokenizer();
    let ids: Vec<Vec<Vec<i64>>> = jobs.iter().map(|j| tok.encode_all(&j.texts)).collect();
    let mut rows: Vec<(usize, usize)> = ids.iter().enumerate().flat_map(|(j, v)| (0..v.len()).map(move |r| (j, r))).collect();
    rows.sort_by_key(|&(j, r)| ids[j][r].len());
    let lens: Vec<usize> = rows.iter().map(|&(j, r)| ids[j][r].len()).collect();
    let mut pooled: Vec<Vec<Option<Vec<f32>>>> = ids.iter().map(|v| vec![None; v.len()]).collect();
    let mut probs: Vec<Vec<Option<TaskProbs>>> = ids.iter().map(|v| vec![None; v.len()]).collect();
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| -> std::result::Result<(), String> {
        let _g = tch::no_grad_guard();
        for range in crate::batch::budget_ranges(&lens, usize::MAX, Some(budget)) {
            let batch = &rows[range];
            metrics.observe_batch(batch.len());
            let seqs: Vec<&[i64]> = batch.iter().map(|&(j, r)| ids[j][r].as_slice()).collect();
            let (x, m) = crate::batch::pad(&seqs, tok.pad_id(), engine.device());
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

/// The model thread: takes every waiting job (up to the token budget's worth of tokens, roughly),
/// runs them together, replies, and repeats until every sender is gone.
fn model_loop(engine: Engine, mut rx: mpsc::Receiver<Job>, budget: usize, metrics: Arc<Metrics>) {
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
        process(&engine, jobs, budget, &metrics);
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
}

impl Metrics {
    fn observe_request(&self, route: &str, status: u16, seconds: f64) {
        *self.requests.lock().unwrap_or_else(|e| e.into_inner()).entry((route.to_string(), status)).or_default() += 1;
        self.latency.lock().unwrap_or_else(|e| e.into_inner()).entry(route.to_string()).or_default().observe(&LATENCY_BUCKETS, seconds);
    }

    fn observe_batch(&self, rows: usize) {
        self.batches.lock().unwrap_or_else(|e| e.into_inner()).observe(&BATCH_BUCKETS, rows as f64);
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
/// every job sender, is dropped).
pub struct Service {
    pub router: Router,
    pub model_thread: std::thread::JoinHandle<()>,
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
        let model_thread = std::thread::Builder::new()
            .name("mtt-model".into())
            .spawn(move || model_loop(engine, rx, budget, m))
            .expect("the model thread starts");
        let state = Arc::new(AppState { cfg, jobs: tx, metrics, labels, model: model_name.to_string(), dim });
        let router = Router::new()
            .route(Route::Embed.path(), post(embed))
            .route(Route::Predict.path(), post(predict))
            .route("/health", get(health))
            .route("/metrics", get(metrics_route))
            .fallback(not_found)
            .layer(middleware::from_fn_with_state(state.clone(), track))
            .with_state(state);
        Service { router, model_thread }
    }
}

/// Counts every response by route and status, times it, and turns axum's bodiless 405 into JSON.
async fn track(State(state): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    let started = Instant::now();
    let route = match req.uri().path() {
        p @ ("/embed" | "/predict" | "/health" | "/metrics") => p.to_string(),
        _ => "other".to_string(),
    };
    let method = req.method().clone();
    let mut resp = next.run(req).await;
    if resp.status() == StatusCode::METHOD_NOT_ALLOWED {
        let allowed = if [Route::Embed.path(), Route::Predict.path()].contains(&route.as_str()) { Method::POST } else { Method::GET };
        resp = ApiError::new(StatusCode::METHOD_NOT_ALLOWED, format!("{method} {route}: this route takes {allowed}")).into_response();
        resp.headers_mut().insert(header::ALLOW, HeaderValue::from_str(allowed.as_str()).expect("a method name"));
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

/// Reads the body (at most the limit) and parses it.
async fn read_request(state: &AppState, route: Route, req: Request) -> std::result::Result<Parsed, ApiError> {
    let content_type = req.headers().get(header::CONTENT_TYPE).map(|v| v.to_str().unwrap_or("(not text)").to_string());
    let limit = state.cfg.max_body_bytes;
    let declared = req.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, format!("body of {} bytes: the limit is {limit}", declared.unwrap_or(0))));
    }
    let body = axum::body::to_bytes(req.into_body(), limit)
        .await
        .map_err(|_| ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, format!("body larger than the limit of {limit} bytes, or cut off")))?;
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

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
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
            (Route::Predict, j, br#"{"texts": ["a"], "normalize": true}"#, 400, "unknown field \"normalize\""),
            (Route::Embed, j, &[b' '; 5000], 413, "the limit is 4096"),
        ];
        for (route, ct, body, status, want) in cases {
            let e = parse_request(route, ct, body, &cfg()).unwrap_err();
            assert_eq!(e.status.as_u16(), status, "{want}: {}", e.message);
            assert!(e.message.contains(want), "want '{want}', got '{}'", e.message);
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]
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

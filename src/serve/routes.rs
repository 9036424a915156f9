//! The HTTP routes (`/embed`, `/predict`, `/similarity`, OpenAI's `/v1/embeddings`, TEI's `/`,
//! `/info` and `/tokenize`, `/health`, `/metrics`, the fallback) and the middleware that counts, times and
//! JSON-ifies every response (in OpenAI's error shape on OpenAI's paths).

use super::*;

/// Counts every response by route and status, times it, turns axum's bodiless 405 into JSON and,
/// as a safety net, gives any other error response without a JSON body one.
pub(super) async fn track(State(state): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    let started = Instant::now();
    let path = req.uri().path().to_string();
    let route = match path.as_str() {
        p @ ("/embed" | "/predict" | "/similarity" | "/health" | "/metrics" | "/v1/embeddings" | "/tokenize" | "/info" | "/") => p.to_string(),
        "/embeddings" => "/v1/embeddings".to_string(),
        _ => "other".to_string(),
    };
    let openai = is_openai_path(&path);
    let method = req.method().clone();
    if let Some(key) = &state.cfg.api_key {
        if path != "/health" && !authorized(req.headers().get(header::AUTHORIZATION).map(|v| v.as_bytes()), key) {
            let missing = req.headers().get(header::AUTHORIZATION).is_none();
            drain(req, state.cfg.max_body_bytes).await;
            let msg = if missing { "this server needs an API key: send Authorization: Bearer <key>" } else { "the API key is not valid" };
            let mut resp = ApiError::new(StatusCode::UNAUTHORIZED, msg).into_response();
            resp.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            state.metrics.observe_request(&route, 401, started.elapsed().as_secs_f64());
            return if openai { openai_error(resp).await } else { resp };
        }
    }
    let mut resp = next.run(req).await;
    if resp.status() == StatusCode::METHOD_NOT_ALLOWED {
        let allowed = if ["/embed", "/predict", "/similarity", "/v1/embeddings", "/tokenize", "/"].contains(&route.as_str()) { Method::POST } else { Method::GET };
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
    if openai && (resp.status().is_client_error() || resp.status().is_server_error()) {
        resp = openai_error(resp).await;
    }
    state.metrics.observe_request(&route, resp.status().as_u16(), started.elapsed().as_secs_f64());
    resp
}

/// Paths whose errors take OpenAI's shape: `/v1/...` and `/embeddings`.
pub(super) fn is_openai_path(path: &str) -> bool {
    path == "/embeddings" || path == "/v1" || path.starts_with("/v1/")
}

/// OpenAI's error `type` and `code` for a status.
pub(super) fn openai_kind(status: StatusCode) -> (&'static str, &'static str) {
    match status.as_u16() {
        401 => ("invalid_request_error", "invalid_api_key"),
        404 => ("invalid_request_error", "not_found"),
        405 => ("invalid_request_error", "method_not_allowed"),
        408 => ("invalid_request_error", "request_timeout"),
        411 => ("invalid_request_error", "length_required"),
        413 => ("invalid_request_error", "payload_too_large"),
        415 => ("invalid_request_error", "unsupported_media_type"),
        503 => ("server_error", "service_unavailable"),
        s if s >= 500 => ("server_error", "internal_error"),
        _ => ("invalid_request_error", "invalid_request"),
    }
}

/// Rewrites an error response of ours (`{"error": "message"}`) into OpenAI's shape
/// `{"error": {"message", "type", "code", "param"}}`, keeping the status and the other headers.
pub(super) async fn openai_error(resp: Response) -> Response {
    let (mut parts, body) = resp.into_parts();
    let bytes = axum::body::to_bytes(body, 1 << 20).await.unwrap_or_default();
    let message = match serde_json::from_slice::<serde_json::Value>(&bytes) {
        Ok(serde_json::Value::Object(o)) => match o.get("error") {
            Some(serde_json::Value::String(m)) => m.clone(),
            // Already in OpenAI's shape.
            Some(_) => return Response::from_parts(parts, axum::body::Body::from(bytes)),
            None => String::from_utf8_lossy(&bytes).into_owned(),
        },
        _ => String::from_utf8_lossy(&bytes).into_owned(),
    };
    let (kind, code) = openai_kind(parts.status);
    let out = serde_json::to_vec(&serde_json::json!({ "error": { "message": message, "type": kind, "code": code, "param": null } })).expect("JSON");
    parts.headers.remove(header::TRANSFER_ENCODING);
    parts.headers.insert(header::CONTENT_LENGTH, HeaderValue::from(out.len()));
    parts.headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    Response::from_parts(parts, axum::body::Body::from(out))
}

/// Reads and drops a request's body (up to `limit` bytes), so that answering without it leaves
/// the connection reusable.
pub(super) async fn drain(req: Request, limit: usize) {
    let _ = axum::body::to_bytes(req.into_body(), limit).await;
}

pub(super) async fn not_found(State(state): State<Arc<AppState>>, req: Request) -> Response {
    let (method, path) = (req.method().clone(), req.uri().path().to_string());
    drain(req, state.cfg.max_body_bytes).await;
    ApiError::new(StatusCode::NOT_FOUND, format!("no route {method} {path} (routes: POST /embed, POST /predict, POST /similarity, POST /v1/embeddings, POST /embeddings, POST /, POST /tokenize, GET /info, GET /health, GET /metrics)"))
        .into_response()
}

pub(super) async fn health(State(state): State<Arc<AppState>>) -> Response {
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

pub(super) async fn metrics_route(State(state): State<Arc<AppState>>) -> Response {
    (StatusCode::OK, [(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; version=0.0.4"))], state.metrics.render()).into_response()
}

/// Reads the body (at most the limit) and parses it. A body must be framed by a Content-Length or
/// a chunked Transfer-Encoding (411 otherwise: without either, HTTP/1.1 reads no body at all); a
/// body that stops arriving for `idle_timeout` is answered 408 (see [`StallBody`]).
pub(super) async fn read_request(state: &AppState, route: Route, req: Request) -> std::result::Result<Parsed, ApiError> {
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

/// Tokenizes a request's texts on tokio's blocking pool (see [`RequestTokenizer::encode`]).
pub(super) async fn token_ids(state: &AppState, p: Parsed) -> std::result::Result<Vec<Vec<i64>>, Response> {
    let tok = state.tok.clone();
    let (truncate, field) = (p.truncate, p.field);
    match tokio::task::spawn_blocking(move || tok.encode(&p.texts, truncate, field)).await {
        Ok(Ok(ids)) => Ok(ids),
        Ok(Err(e)) => Err(e.into_response()),
        Err(_) => Err(ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "tokenization failed").into_response()),
    }
}

/// Tokenizes a request, queues its job (`kind`: [`Route::Embed`] or [`Route::Predict`]) and
/// waits for its output; also gives the number of tokens the model saw (special tokens
/// included). `label` is the route counted in `/metrics`.
pub(super) async fn submit(state: &AppState, kind: Route, label: &str, p: Parsed) -> std::result::Result<(Output, usize), Response> {
    let normalize = p.normalize;
    let ids = token_ids(state, p).await?;
    let tokens = ids.iter().map(Vec::len).sum();
    let (tx, rx) = oneshot::channel();
    let n = ids.len();
    let job = Job { route: kind, ids, normalize, reply: tx };
    state.metrics.queue_depth.fetch_add(1, Ordering::SeqCst);
    if state.jobs.try_send(job).is_err() {
        state.metrics.queue_depth.fetch_sub(1, Ordering::SeqCst);
        let mut r = ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "the queue is full: retry shortly").into_response();
        r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        return Err(r);
    }
    match rx.await {
        Ok(Ok(out)) => {
            state.metrics.observe_texts(label, n);
            Ok((out, tokens))
        }
        Ok(Err(e)) => Err(ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e).into_response()),
        Err(_) => Err(ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "the model thread has stopped").into_response()),
    }
}

/// Checks a request's `dimensions` against the model's (1..=dim).
fn check_dimensions(state: &AppState, p: &Parsed) -> std::result::Result<(), ApiError> {
    match p.dimensions {
        Some(d) if d > state.dim as usize => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("\"dimensions\" is {d}: this model's vectors have {} components (send 1 to {})", state.dim, state.dim),
        )),
        _ => Ok(()),
    }
}

/// The vectors of a parsed request (each shortened to `dimensions` when asked), and the tokens
/// the model saw.
async fn vectors(state: &AppState, label: &str, p: Parsed) -> std::result::Result<(Vec<Vec<f32>>, usize), Response> {
    check_dimensions(state, &p).map_err(IntoResponse::into_response)?;
    let (dims, normalize) = (p.dimensions, p.normalize);
    match submit(state, Route::Embed, label, p).await? {
        (Output::Embeddings(mut v), tokens) => {
            if let Some(d) = dims {
                v.iter_mut().for_each(|x| shorten(x, d, normalize));
            }
            Ok((v, tokens))
        }
        (Output::Probabilities(_), _) => Err(ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "wrong output kind").into_response()),
    }
}

pub(super) async fn embed(State(state): State<Arc<AppState>>, req: Request) -> Response {
    let p = match read_request(&state, Route::Embed, req).await {
        Ok(p) => p,
        Err(e) => return e.into_response(),
    };
    let shape = p.shape;
    match vectors(&state, "/embed", p).await {
        Ok((v, _)) if shape == Shape::Ours => json_response(StatusCode::OK, &serde_json::json!({ "embeddings": v, "dim": state.dim })),
        // TEI's answer: the bare array of vectors.
        Ok((v, _)) => json_response(StatusCode::OK, &v),
        Err(r) => r,
    }
}

/// OpenAI's `POST /v1/embeddings` (and `/embeddings`): L2-normalised vectors, as floats or as
/// base64 of their little-endian f32 bytes. Errors are rewritten to OpenAI's shape by [`track`].
pub(super) async fn openai_embeddings(State(state): State<Arc<AppState>>, req: Request) -> Response {
    let p = match read_request(&state, Route::OpenAiEmbed, req).await {
        Ok(p) => p,
        Err(e) => return e.into_response(),
    };
    let base64 = matches!(p.shape, Shape::OpenAi { base64: true });
    match vectors(&state, "/v1/embeddings", p).await {
        Ok((v, tokens)) => {
            let data: Vec<serde_json::Value> = v
                .iter()
                .enumerate()
                .map(|(i, x)| {
                    let embedding = if base64 { serde_json::Value::from(f32_base64(x)) } else { serde_json::json!(x) };
                    serde_json::json!({ "object": "embedding", "index": i, "embedding": embedding })
                })
                .collect();
            json_response(
                StatusCode::OK,
                &serde_json::json!({
                    "object": "list",
                    "data": data,
                    "model": state.model,
                    "usage": { "prompt_tokens": tokens, "total_tokens": tokens },
                }),
            )
        }
        Err(r) => r,
    }
}

/// TEI's `POST /tokenize`: per text, its tokens `{"id", "text", "special"}` (`[CLS]` and `[SEP]`
/// included, truncated to the model's limit unless `"truncate": false`).
pub(super) async fn tokenize(State(state): State<Arc<AppState>>, req: Request) -> Response {
    let p = match read_request(&state, Route::Tokenize, req).await {
        Ok(p) => p,
        Err(e) => return e.into_response(),
    };
    let ids = match token_ids(&state, p).await {
        Ok(ids) => ids,
        Err(r) => return r,
    };
    let out: Vec<Vec<serde_json::Value>> = ids
        .iter()
        .map(|row| {
            let last = row.len().saturating_sub(1);
            row.iter()
                .enumerate()
                .map(|(k, &id)| serde_json::json!({ "id": id, "text": state.tok.token_text(id), "special": k == 0 || k == last }))
                .collect()
        })
        .collect();
    json_response(StatusCode::OK, &out)
}

/// TEI's `POST /`: what the model does: a base encoder embeds (as `/embed`), a multi-task
/// checkpoint classifies (as `/predict`).
pub(super) async fn root(state: State<Arc<AppState>>, req: Request) -> Response {
    if state.labels.is_some() {
        predict(state, req).await
    } else {
        embed(state, req).await
    }
}

/// `GET /info`: the served model and the limits (TEI's `/info`, with this server's fields).
pub(super) async fn info(State(state): State<Arc<AppState>>) -> Response {
    let heads = state.labels.as_ref().map(|h| h.iter().map(|(t, l)| (t.clone(), serde_json::json!(l))).collect::<serde_json::Map<_, _>>());
    json_response(
        StatusCode::OK,
        &serde_json::json!({
            "model_id": state.model,
            "model_type": if state.labels.is_some() { "multi-task classifier" } else { "embedding" },
            "embedding_dim": state.dim,
            "max_input_length": state.tok.max_len(),
            "max_batch_tokens": state.cfg.token_budget,
            "max_client_batch_size": state.cfg.max_texts,
            "max_body_bytes": state.cfg.max_body_bytes,
            "precision": state.cfg.precision.to_string(),
            "model_workers": state.cfg.workers,
            "heads": heads,
            "version": env!("CARGO_PKG_VERSION"),
            "router": "mtt serve",
        }),
    )
}

#[derive(Serialize)]
pub(super) struct TaskPrediction<'a> {
    pub(super) label: &'a str,
    /// Label -> probability (the same shape as `mtt predict`'s lines).
    pub(super) probs: BTreeMap<&'a str, f32>,
}

/// One text's predictions: each head's under its task name, in task order.
pub(super) struct Prediction<'a>(pub(super) Vec<(&'a str, TaskPrediction<'a>)>);

impl Serialize for Prediction<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = s.serialize_map(Some(self.0.len()))?;
        for (name, p) in &self.0 {
            m.serialize_entry(name, p)?;
        }
        m.end()
    }
}

pub(super) fn task_prediction<'a>(names: &'a [String], p: &[f32]) -> TaskPrediction<'a> {
    let best = crate::infer::argmax(p);
    TaskPrediction { label: &names[best], probs: names.iter().map(String::as_str).zip(p.iter().copied()).collect() }
}

pub(super) async fn predict(State(state): State<Arc<AppState>>, req: Request) -> Response {
    let Some(heads) = &state.labels else {
        drain(req, state.cfg.max_body_bytes).await;
        return ApiError::new(StatusCode::NOT_FOUND, format!("{} is a base encoder without task heads: /predict needs a multi-task checkpoint (mtt train)", state.model))
            .into_response();
    };
    let p = match read_request(&state, Route::Predict, req).await {
        Ok(p) => p,
        Err(e) => return e.into_response(),
    };
    let shape = p.shape;
    // The heads asked for (every head when the request names none).
    let wanted: Vec<bool> = match &p.tasks {
        None => vec![true; heads.len()],
        Some(names) => {
            if let Some(bad) = names.iter().find(|n| !heads.iter().any(|(t, _)| t == *n)) {
                let known: Vec<&str> = heads.iter().map(|(t, _)| t.as_str()).collect();
                return ApiError::new(StatusCode::BAD_REQUEST, format!("\"tasks\": the model has no classification head '{bad}' (its heads: {})", known.join(", "))).into_response();
            }
            heads.iter().map(|(t, _)| names.contains(t)).collect()
        }
    };
    match submit(&state, Route::Predict, "/predict", p).await {
        Ok((Output::Probabilities(v), _)) if shape == Shape::Ours => {
            let preds: Vec<Prediction> = v
                .iter()
                .map(|row| Prediction(heads.iter().zip(row).zip(&wanted).filter(|(_, w)| **w).map(|(((t, l), p), _)| (t.as_str(), task_prediction(l, p))).collect()))
                .collect();
            json_response(StatusCode::OK, &serde_json::json!({ "predictions": preds }))
        }
        Ok((Output::Probabilities(v), _)) => {
            // TEI's classify shape, every head: per text, each task's labels in task order, each
            // task's by decreasing score.
            let scores = |task: &str, names: &[String], p: &[f32]| {
                let mut s: Vec<(String, f32)> = names.iter().cloned().zip(p.iter().copied()).collect();
                s.sort_by(|x, y| y.1.total_cmp(&x.1));
                s.into_iter().map(|(l, sc)| serde_json::json!({ "task": task, "label": l, "score": sc })).collect::<Vec<_>>()
            };
            let out: Vec<Vec<serde_json::Value>> =
                v.iter().map(|row| heads.iter().zip(row).flat_map(|((t, l), p)| scores(t, l, p)).collect()).collect();
            json_response(StatusCode::OK, &out)
        }
        Ok((Output::Embeddings(_), _)) => ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "wrong output kind").into_response(),
        Err(r) => r,
    }
}

/// `POST /similarity`: `{"pairs": [[a, b], ...]}` answers `{"similarities": [...]}`, the cosine
/// of each pair's vectors (what a similarity task predicts; any model); with `"task"` naming a
/// pair-classification task, `{"task", "predictions": [{"label", "probs"}, ...]}` from its head on
/// `(u, v, |u - v|)`.
pub(super) async fn similarity(State(state): State<Arc<AppState>>, req: Request) -> Response {
    let content_type = req.headers().get(header::CONTENT_TYPE).map(|v| v.to_str().unwrap_or("(not text)").to_string());
    let limit = state.cfg.max_body_bytes;
    let body = match axum::body::to_bytes(req.into_body(), limit).await {
        Ok(b) => b,
        Err(_) => return ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, format!("body larger than the limit of {limit} bytes, or cut off")).into_response(),
    };
    let r = match parse_pairs(content_type.as_deref(), &body, &state.cfg) {
        Ok(r) => r,
        Err(e) => return e.into_response(),
    };
    let task = match &r.task {
        None => None,
        Some(name) => match state.pair_tasks.iter().find(|t| &t.name == name) {
            Some(t) => Some(t.clone()),
            None => {
                let known: Vec<&str> = state.pair_tasks.iter().map(|t| t.name.as_str()).collect();
                let known = if known.is_empty() { "none".to_string() } else { known.join(", ") };
                return ApiError::new(StatusCode::BAD_REQUEST, format!("\"task\": the model has no pair task '{name}' (its pair tasks: {known})")).into_response();
            }
        },
    };
    let texts: Vec<String> = r.pairs.iter().flat_map(|(a, b)| [a.clone(), b.clone()]).collect();
    let p = Parsed { texts, normalize: false, truncate: r.truncate, dimensions: None, shape: Shape::Ours, field: "pairs", tasks: None };
    let v = match vectors(&state, "/similarity", p).await {
        Ok((v, _)) => v,
        Err(resp) => return resp,
    };
    let pairs = v.chunks(2).map(|uv| (&uv[0], &uv[1]));
    match task.filter(|t| t.head.is_some()) {
        None => json_response(StatusCode::OK, &serde_json::json!({ "similarities": pairs.map(|(u, v)| cosine(u, v)).collect::<Vec<_>>() })),
        Some(t) => {
            let preds: Vec<TaskPrediction> = pairs.map(|(u, v)| t.probabilities(u, v)).collect::<Vec<_>>().iter().map(|p| task_prediction(&t.labels, p)).collect();
            json_response(StatusCode::OK, &serde_json::json!({ "task": t.name, "predictions": preds }))
        }
    }
}

//! The HTTP routes (`/embed`, `/predict`, `/health`, `/metrics`, the fallback) and the middleware
//! that counts, times and JSON-ifies every response.

use super::*;

/// Counts every response by route and status, times it, turns axum's bodiless 405 into JSON and,
/// as a safety net, gives any other error response without a JSON body one.
pub(super) async fn track(State(state): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    let started = Instant::now();
    let path = req.uri().path().to_string();
    let route = match path.as_str() {
        p @ ("/embed" | "/predict" | "/health" | "/metrics") => p.to_string(),
        _ => "other".to_string(),
    };
    let method = req.method().clone();
    if let Some(key) = &state.cfg.api_key {
        if path != "/health" && !authorized(req.headers().get(header::AUTHORIZATION).map(|v| v.as_bytes()), key) {
            let missing = req.headers().get(header::AUTHORIZATION).is_none();
            drain(req, state.cfg.max_body_bytes).await;
            let msg = if missing { "this server needs an API key: send Authorization: Bearer <key>" } else { "the API key is not valid" };
            let mut resp = ApiError::new(StatusCode::UNAUTHORIZED, msg).into_response();
            resp.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            state.metrics.observe_request(&route, 401, started.elapsed().as_secs_f64());
            return resp;
        }
    }
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
pub(super) async fn drain(req: Request, limit: usize) {
    let _ = axum::body::to_bytes(req.into_body(), limit).await;
}

pub(super) async fn not_found(State(state): State<Arc<AppState>>, req: Request) -> Response {
    let (method, path) = (req.method().clone(), req.uri().path().to_string());
    drain(req, state.cfg.max_body_bytes).await;
    ApiError::new(StatusCode::NOT_FOUND, format!("no route {method} {path} (routes: POST /embed, POST /predict, GET /health, GET /metrics)"))
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

/// Queues a job and waits for its output.
pub(super) async fn submit(state: &AppState, route: Route, p: Parsed) -> std::result::Result<Output, Response> {
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

pub(super) async fn embed(State(state): State<Arc<AppState>>, req: Request) -> Response {
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
pub(super) struct TaskPrediction<'a> {
    pub(super) label: &'a str,
    /// Label -> probability (the same shape as `mtt predict`'s lines).
    pub(super) probs: BTreeMap<&'a str, f32>,
}

#[derive(Serialize)]
pub(super) struct Prediction<'a> {
    pub(super) task_a: TaskPrediction<'a>,
    pub(super) task_b: TaskPrediction<'a>,
}

pub(super) fn task_prediction<'a>(names: &'a [String], p: &[f32]) -> TaskPrediction<'a> {
    let best = crate::infer::argmax(p);
    TaskPrediction { label: &names[best], probs: names.iter().map(String::as_str).zip(p.iter().copied()).collect() }
}

pub(super) async fn predict(State(state): State<Arc<AppState>>, req: Request) -> Response {
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

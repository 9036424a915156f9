//! The request parser: a pure function from content type and body to a valid request or a
//! 4xx that says what is wrong (duplicated keys included).

use super::*;

/// Which API shape a request came in, and so which shape its answer takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// This server's own shape: `{"texts": [...]}`, answered `{"embeddings": ...}` /
    /// `{"predictions": ...}`.
    Ours,
    /// Text Embeddings Inference's shape: `{"inputs": str | [str]}`, answered with a bare array.
    Tei,
    /// OpenAI's embeddings API: `{"input": str | [str], "model": ...}`; `base64` when
    /// `encoding_format` is `"base64"`.
    OpenAi {
        /// Vectors as base64 of their little-endian f32 bytes instead of JSON numbers.
        base64: bool,
    },
}

/// A valid request's content.
#[derive(Debug, Clone, PartialEq)]
pub struct Parsed {
    /// The texts, in request order (at least one, at most the configured `max_texts`).
    pub texts: Vec<String>,
    /// L2-normalise the vectors (`/embed`'s `normalize`: `false` when absent in our shape, `true`
    /// in TEI's; always `true` for OpenAI's route and `false` for `/predict` and `/tokenize`).
    pub normalize: bool,
    /// Truncate texts longer than the model's `max_seq_length` tokens (`true` when absent); when
    /// `false`, such a text is a 413.
    pub truncate: bool,
    /// Keep only the first N components of each vector (then L2-normalise again when
    /// normalising); checked against the model's dimension by the handler.
    pub dimensions: Option<usize>,
    /// The shape of the request, and of its answer.
    pub shape: Shape,
    /// The field that held the texts (`texts`, `inputs` or `input`), to name one in a message.
    pub field: &'static str,
    /// `/predict` (our shape): answer only these tasks' heads (`None`: every head).
    pub tasks: Option<Vec<String>>,
}

/// A 415 unless the content type is `application/json` (parameters such as `charset` allowed),
/// a 413 if the body is over the server's limit.
fn check_envelope(content_type: Option<&str>, body: &[u8], cfg: &ServeConfig) -> std::result::Result<(), ApiError> {
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
    Ok(())
}

/// Checks a request's content type and body. Never panics: any input is either a [`Parsed`]
/// request or a 4xx [`ApiError`] that says what is wrong.
pub fn parse_request(route: Route, content_type: Option<&str>, body: &[u8], cfg: &ServeConfig) -> std::result::Result<Parsed, ApiError> {
    let bad = |m: String| ApiError::new(StatusCode::BAD_REQUEST, m);
    check_envelope(content_type, body, cfg)?;
    let what = match route {
        Route::OpenAiEmbed => "an \"input\" string or array",
        Route::Tokenize => "an \"inputs\" string or array",
        _ => "a \"texts\" array",
    };
    let obj = match serde_json::from_slice::<TopLevel>(body).map_err(|e| bad(format!("invalid JSON: {e}")))? {
        TopLevel::Object(_, Some(dup)) => return Err(bad(format!("duplicate field \"{dup}\": send each field once"))),
        TopLevel::Object(obj, None) => obj,
        TopLevel::Other => return Err(bad(format!("the body must be a JSON object with {what}"))),
    };
    let (field, shape): (&'static str, Shape) = match route {
        Route::OpenAiEmbed => ("input", Shape::OpenAi { base64: false }),
        Route::Tokenize => ("inputs", Shape::Tei),
        Route::Embed | Route::Predict if !obj.contains_key("texts") && obj.contains_key("inputs") => ("inputs", Shape::Tei),
        Route::Embed | Route::Predict => ("texts", Shape::Ours),
        // `/similarity` takes pairs: see `parse_pairs`.
        Route::Similarity => ("pairs", Shape::Ours),
    };
    let allowed: &[&str] = match (route, shape) {
        (Route::Embed, Shape::Ours) => &["texts", "normalize", "truncate"],
        (Route::Embed, _) => &["inputs", "normalize", "truncate", "dimensions"],
        (Route::Predict, Shape::Ours) => &["texts", "truncate", "tasks"],
        (Route::Predict, _) => &["inputs", "truncate"],
        (Route::OpenAiEmbed, _) => &["input", "model", "encoding_format", "dimensions", "user"],
        (Route::Tokenize, _) => &["inputs", "truncate"],
        (Route::Similarity, _) => &["pairs", "task", "truncate"],
    };
    if let Some(k) = obj.keys().find(|k| !allowed.contains(&k.as_str())) {
        return Err(bad(format!("unknown field \"{k}\" (this route takes: {})", allowed.join(", "))));
    }
    // An optional field: absent, or (outside our own shape, whose clients never send null) null.
    let opt = |k: &str| obj.get(k).filter(|v| !(v.is_null() && shape != Shape::Ours));
    let texts = match obj.get(field) {
        None if shape == Shape::Ours => return Err(bad("missing field \"texts\" (an array of strings; or \"inputs\", TEI's shape)".into())),
        None => return Err(bad(format!("missing field \"{field}\" (a string or an array of strings)"))),
        Some(serde_json::Value::String(s)) if shape != Shape::Ours => vec![serde_json::Value::String(s.clone())],
        Some(serde_json::Value::Array(a)) => a.clone(),
        Some(_) if shape == Shape::Ours => return Err(bad("\"texts\" must be an array of strings".into())),
        Some(_) => return Err(bad(format!("\"{field}\" must be a string or an array of strings"))),
    };
    if texts.is_empty() {
        return Err(bad(format!("\"{field}\" is empty: send at least one text")));
    }
    if texts.len() > cfg.max_texts {
        return Err(ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, format!("{} texts: the limit is {} per request", texts.len(), cfg.max_texts)));
    }
    let mut out = Vec::with_capacity(texts.len());
    for (i, t) in texts.into_iter().enumerate() {
        match t {
            serde_json::Value::String(s) => out.push(s),
            serde_json::Value::Array(_) | serde_json::Value::Number(_) if route == Route::OpenAiEmbed => {
                return Err(bad(format!("{field}[{i}] is not a string (token arrays are not supported: send text)")))
            }
            _ => return Err(bad(format!("{field}[{i}] is not a string"))),
        }
    }
    let flag = |k: &str, default: bool| match opt(k) {
        None => Ok(default),
        Some(serde_json::Value::Bool(b)) => Ok(*b),
        Some(_) => Err(bad(format!("\"{k}\" must be true or false"))),
    };
    let normalize = match route {
        Route::OpenAiEmbed => true,
        Route::Embed => flag("normalize", shape == Shape::Tei)?,
        _ => false,
    };
    let truncate = flag("truncate", true)?;
    let dimensions = match opt("dimensions") {
        None => None,
        Some(v) => match v.as_u64() {
            Some(n) if n >= 1 => Some(usize::try_from(n).unwrap_or(usize::MAX)),
            _ => return Err(bad("\"dimensions\" must be a positive integer".into())),
        },
    };
    if let Some(m) = opt("model") {
        if !m.is_string() {
            return Err(bad("\"model\" must be a string".into()));
        }
    }
    if let Some(u) = opt("user") {
        if !u.is_string() {
            return Err(bad("\"user\" must be a string".into()));
        }
    }
    let shape = match (shape, opt("encoding_format")) {
        (Shape::OpenAi { .. }, None) => Shape::OpenAi { base64: false },
        (Shape::OpenAi { .. }, Some(serde_json::Value::String(f))) if f == "float" => Shape::OpenAi { base64: false },
        (Shape::OpenAi { .. }, Some(serde_json::Value::String(f))) if f == "base64" => Shape::OpenAi { base64: true },
        (Shape::OpenAi { .. }, Some(_)) => return Err(bad("\"encoding_format\" must be \"float\" or \"base64\"".into())),
        (s, _) => s,
    };
    let tasks = match opt("tasks") {
        None => None,
        Some(serde_json::Value::Array(a)) if !a.is_empty() => Some(
            a.iter()
                .map(|t| t.as_str().map(str::to_string))
                .collect::<Option<Vec<_>>>()
                .ok_or_else(|| bad("\"tasks\" must be an array of task names".into()))?,
        ),
        Some(_) => return Err(bad("\"tasks\" must be a non-empty array of task names".into())),
    };
    Ok(Parsed { texts: out, normalize, truncate, dimensions, shape, field, tasks })
}

/// A request body's top level: an object (its fields, and the first key that came more than
/// once: serde_json's own maps keep the last value silently) or any other JSON value.
pub(super) enum TopLevel {
    Object(serde_json::Map<String, serde_json::Value>, Option<String>),
    Other,
}

impl<'de> serde::Deserialize<'de> for TopLevel {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        d.deserialize_any(TopLevelVisitor)
    }
}

pub(super) struct TopLevelVisitor;

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

/// A `/similarity` request: sentence pairs, and the pair task to answer with (`None`: the
/// cosine similarity of the two texts' vectors).
#[derive(Debug, Clone, PartialEq)]
pub struct PairRequest {
    /// The pairs, in request order.
    pub pairs: Vec<(String, String)>,
    /// A pair-classification or similarity task of the model.
    pub task: Option<String>,
    /// Whether texts over the model's limit are shortened (as elsewhere) or refused.
    pub truncate: bool,
}

/// Parses `POST /similarity`: `{"pairs": [["a", "b"], ...], "task": NAME?, "truncate": bool?}`.
pub fn parse_pairs(content_type: Option<&str>, body: &[u8], cfg: &ServeConfig) -> std::result::Result<PairRequest, ApiError> {
    let bad = |m: String| ApiError::new(StatusCode::BAD_REQUEST, m);
    check_envelope(content_type, body, cfg)?;
    let obj = match serde_json::from_slice::<TopLevel>(body).map_err(|e| bad(format!("invalid JSON: {e}")))? {
        TopLevel::Object(_, Some(dup)) => return Err(bad(format!("duplicate field \"{dup}\": send each field once"))),
        TopLevel::Object(obj, None) => obj,
        TopLevel::Other => return Err(bad("the body must be a JSON object with a \"pairs\" array".into())),
    };
    if let Some(k) = obj.keys().find(|k| !["pairs", "task", "truncate"].contains(&k.as_str())) {
        return Err(bad(format!("unknown field \"{k}\" (this route takes: pairs, task, truncate)")));
    }
    let Some(serde_json::Value::Array(list)) = obj.get("pairs") else {
        return Err(bad("missing field \"pairs\" (an array of [text, text] pairs)".into()));
    };
    if list.is_empty() {
        return Err(bad("\"pairs\" is empty: send at least one pair".into()));
    }
    if 2 * list.len() > cfg.max_texts {
        return Err(ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, format!("{} pairs: the limit is {} texts per request", list.len(), cfg.max_texts)));
    }
    let mut pairs = Vec::with_capacity(list.len());
    for (i, p) in list.iter().enumerate() {
        match p.as_array().map(Vec::as_slice) {
            Some([serde_json::Value::String(a), serde_json::Value::String(b)]) => pairs.push((a.clone(), b.clone())),
            _ => return Err(bad(format!("pairs[{i}] is not a [text, text] pair of strings"))),
        }
    }
    let task = match obj.get("task") {
        None => None,
        Some(serde_json::Value::String(t)) => Some(t.clone()),
        Some(_) => return Err(bad("\"task\" must be a task name".into())),
    };
    let truncate = match obj.get("truncate") {
        None => true,
        Some(serde_json::Value::Bool(b)) => *b,
        Some(_) => return Err(bad("\"truncate\" must be true or false".into())),
    };
    Ok(PairRequest { pairs, task, truncate })
}

//! The request parser: a pure function from content type and body to a valid request or a
//! 4xx that says what is wrong (duplicated keys included).

use super::*;

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

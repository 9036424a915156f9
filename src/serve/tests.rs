//! Unit tests of the request parser and of the connection layer's rewritten answers.

use super::*;
use proptest::prelude::*;

fn cfg() -> ServeConfig {
    ServeConfig { max_body_bytes: 4096, max_texts: 4, ..Default::default() }
}

#[test]
fn the_parser_names_what_is_wrong() {
    let j = Some("application/json");
    let ok = parse_request(Route::Embed, Some("application/json; charset=utf-8"), br#"{"texts": ["a", "b"], "normalize": true}"#, &cfg()).unwrap();
    assert_eq!(ok, Parsed { texts: vec!["a".into(), "b".into()], normalize: true, truncate: true, dimensions: None, shape: Shape::Ours, field: "texts", tasks: None });
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
fn the_pairs_parser_checks_the_same_envelope() {
    let j = Some("application/json");
    assert_eq!(parse_pairs(j, br#"{"pairs": [["a", "b"]]}"#, &cfg()).unwrap().pairs, vec![("a".to_string(), "b".to_string())]);
    let cases: Vec<(Option<&str>, &[u8], u16, &str)> = vec![
        (Some("text/plain"), br#"{"pairs": [["a", "b"]]}"#, 415, "'text/plain'"),
        (j, &[b' '; 5000], 413, "the limit is 4096"),
        (j, br#"{"pairs": [["a", "b"], ["a", "b"], ["a", "b"]]}"#, 413, "the limit is 4 texts"),
        (j, br#"{"pairs": [["a"]]}"#, 400, "pairs[0] is not a [text, text] pair"),
    ];
    for (ct, body, status, want) in cases {
        let e = parse_pairs(ct, body, &cfg()).unwrap_err();
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

#[test]
fn only_the_exact_bearer_key_is_authorized() {
    assert!(authorized(Some(b"Bearer k3y"), "k3y"));
    for wrong in [&b"Bearer k3"[..], b"Bearer k3yy", b"bearer k3y", b"k3y", b"Bearer ", b""] {
        assert!(!authorized(Some(wrong), "k3y"), "{:?}", String::from_utf8_lossy(wrong));
    }
    assert!(!authorized(None, "k3y"));
}

#[test]
fn the_drop_in_shapes_are_parsed_with_their_defaults() {
    let j = Some("application/json");
    let p = |route, body: &str| parse_request(route, j, body.as_bytes(), &cfg());
    // TEI's `inputs`: a string or a list, normalised by default.
    let t = p(Route::Embed, r#"{"inputs": "a"}"#).unwrap();
    assert_eq!((t.texts, t.normalize, t.truncate, t.dimensions, t.shape, t.field), (vec!["a".to_string()], true, true, None, Shape::Tei, "inputs"));
    let t = p(Route::Embed, r#"{"inputs": ["a", "b"], "normalize": false, "truncate": false, "dimensions": 3}"#).unwrap();
    assert_eq!((t.texts.len(), t.normalize, t.truncate, t.dimensions), (2, false, false, Some(3)));
    // Ours keeps its default (not normalised) and takes `truncate`.
    let t = p(Route::Embed, r#"{"texts": ["a"], "truncate": false}"#).unwrap();
    assert_eq!((t.normalize, t.truncate, t.shape), (false, false, Shape::Ours));
    let t = p(Route::Predict, r#"{"inputs": "a"}"#).unwrap();
    assert_eq!((t.shape, t.normalize), (Shape::Tei, false));
    // OpenAI's: always normalised; nulls are absent; base64 when asked.
    let t = p(Route::OpenAiEmbed, r#"{"input": "a", "model": "m", "dimensions": null, "user": "u"}"#).unwrap();
    assert_eq!((t.normalize, t.shape, t.field, t.dimensions), (true, Shape::OpenAi { base64: false }, "input", None));
    let t = p(Route::OpenAiEmbed, r#"{"input": ["a"], "encoding_format": "base64", "dimensions": 2}"#).unwrap();
    assert_eq!((t.shape, t.dimensions), (Shape::OpenAi { base64: true }, Some(2)));
    let t = p(Route::Tokenize, r#"{"inputs": ["a", "b"]}"#).unwrap();
    assert_eq!(t.texts.len(), 2);
    type Case<'a> = (Route, &'a str, u16, &'a str);
    let cases: Vec<Case> = vec![
        (Route::Embed, r#"{"inputs": []}"#, 400, "\"inputs\" is empty"),
        (Route::Embed, r#"{"inputs": 3}"#, 400, "a string or an array"),
        (Route::Embed, r#"{"inputs": ["a", 1]}"#, 400, "inputs[1] is not a string"),
        (Route::Embed, r#"{"inputs": "a", "dimensions": 0}"#, 400, "positive integer"),
        (Route::Embed, r#"{"inputs": "a", "dimensions": -1}"#, 400, "positive integer"),
        (Route::Embed, r#"{"inputs": "a", "truncate": "yes"}"#, 400, "\"truncate\" must be true or false"),
        (Route::Embed, r#"{"texts": ["a"], "dimensions": 3}"#, 400, "unknown field \"dimensions\""),
        (Route::Embed, r#"{"texts": ["a"], "inputs": ["a"]}"#, 400, "unknown field \"inputs\""),
        (Route::Predict, r#"{"inputs": "a", "normalize": true}"#, 400, "unknown field \"normalize\""),
        (Route::OpenAiEmbed, r#"{"model": "m"}"#, 400, "missing field \"input\""),
        (Route::OpenAiEmbed, r#"{"input": [[1, 2]]}"#, 400, "token arrays are not supported"),
        (Route::OpenAiEmbed, r#"{"input": "a", "encoding_format": "int8"}"#, 400, "\"float\" or \"base64\""),
        (Route::OpenAiEmbed, r#"{"input": "a", "model": 3}"#, 400, "\"model\" must be a string"),
        (Route::OpenAiEmbed, r#"{"input": "a", "normalize": true}"#, 400, "unknown field \"normalize\""),
        (Route::OpenAiEmbed, r#"{"input": ["a","a","a","a","a"]}"#, 413, "the limit is 4"),
        (Route::Tokenize, r#"{"texts": ["a"]}"#, 400, "unknown field \"texts\""),
    ];
    for (route, body, status, want) in cases {
        let e = parse_request(route, j, body.as_bytes(), &cfg()).unwrap_err();
        assert_eq!(e.status.as_u16(), status, "{body}: {}", e.message);
        assert!(e.message.contains(want), "{body}: want '{want}', got '{}'", e.message);
    }
}

#[test]
fn base64_matches_the_standard_alphabet_and_padding() {
    for (raw, want) in [(&b""[..], ""), (b"f", "Zg=="), (b"fo", "Zm8="), (b"foo", "Zm9v"), (b"foob", "Zm9vYg=="), (b"\xff\xfe\xfd", "//79")] {
        assert_eq!(base64(raw), want);
    }
    // 1.0f32 little-endian is 00 00 80 3f.
    assert_eq!(f32_base64(&[1.0]), "AACAPw==");
    let mut v = vec![3.0, 4.0, 12.0];
    shorten(&mut v, 2, true);
    assert_eq!(v, vec![0.6, 0.8]);
    let mut v = vec![3.0, 4.0, 12.0];
    shorten(&mut v, 1, false);
    assert_eq!(v, vec![3.0]);
}

#[test]
fn openai_errors_name_a_type_and_a_code() {
    assert_eq!(openai_kind(StatusCode::UNAUTHORIZED), ("invalid_request_error", "invalid_api_key"));
    assert_eq!(openai_kind(StatusCode::BAD_REQUEST).0, "invalid_request_error");
    assert_eq!(openai_kind(StatusCode::SERVICE_UNAVAILABLE).0, "server_error");
    assert!(is_openai_path("/v1/embeddings") && is_openai_path("/embeddings") && is_openai_path("/v1/models"));
    assert!(!is_openai_path("/embed") && !is_openai_path("/v10") && !is_openai_path("/"));
}

#[test]
fn two_model_workers_by_default_on_a_cpu_with_two_threads() {
    assert_eq!(ServeConfig::default_workers(Device::Cpu, 2), 2);
    assert_eq!(ServeConfig::default_workers(Device::Cpu, 16), 2);
    assert_eq!(ServeConfig::default_workers(Device::Cpu, 1), 1);
    assert_eq!(ServeConfig::default_workers(Device::Cuda(0), 8), 1);
}

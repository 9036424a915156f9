//! `mtt serve` as a drop-in embedding server, on the real binary: OpenAI's `/v1/embeddings`
//! (float and base64, one string and a list, `dimensions`, usage, OpenAI-shaped errors, the API
//! key) and Text Embeddings Inference's shapes (`/embed` with `inputs`, `/predict` with
//! `inputs`, `POST /`, `/info`, `/tokenize`), and `"truncate": false` on an over-long text.
//! Where the venv has them, the real clients too (`openai`'s SDK, `huggingface_hub`'s
//! `InferenceClient`).

mod common;

#[path = "../benches/serve_load/driver.rs"]
mod driver;

use common::{bin, config, fixture, run};
use driver::{get, Server};
use serde_json::{json, Value};

/// POSTs `body` (JSON) with an optional bearer key: status and parsed answer.
fn post(url: &str, path: &str, body: &Value, key: Option<&str>) -> (u16, Value) {
    let mut r = ureq::post(&format!("{url}{path}")).set("Content-Type", "application/json");
    if let Some(k) = key {
        r = r.set("Authorization", &format!("Bearer {k}"));
    }
    let (s, text) = match r.send_string(&body.to_string()) {
        Ok(resp) => (resp.status(), resp.into_string().unwrap()),
        Err(ureq::Error::Status(s, resp)) => (s, resp.into_string().unwrap()),
        Err(e) => panic!("{path}: {e}"),
    };
    (s, serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}: {text}")))
}

fn floats(v: &Value) -> Vec<f32> {
    v.as_array().unwrap_or_else(|| panic!("not an array: {v}")).iter().map(|x| x.as_f64().unwrap() as f32).collect()
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

/// Standard base64 (with padding) to bytes.
fn unbase64(s: &str) -> Vec<u8> {
    let val = |c: u8| match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        b'/' => 63,
        _ => panic!("not base64: {c}"),
    } as u32;
    let mut out = Vec::new();
    for chunk in s.as_bytes().chunks(4) {
        let data: Vec<u8> = chunk.iter().copied().filter(|&c| c != b'=').collect();
        let n = data.iter().enumerate().fold(0u32, |acc, (i, &c)| acc | (val(c) << (18 - 6 * i)));
        for k in 0..data.len().saturating_sub(1) {
            out.push((n >> (16 - 8 * k)) as u8);
        }
    }
    out
}

fn f32s_of_base64(s: &str) -> Vec<f32> {
    unbase64(s).chunks(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect()
}

/// The first `n` components, L2-normalised again.
fn shortened(v: &[f32], n: usize) -> Vec<f32> {
    let norm = v[..n].iter().map(|x| x * x).sum::<f32>().sqrt();
    v[..n].iter().map(|x| x / norm).collect()
}

/// Our own `/embed` with `normalize: true`: the reference vectors.
fn ours(url: &str, texts: &[&str]) -> Vec<Vec<f32>> {
    let (s, v) = post(url, "/embed", &json!({ "texts": texts, "normalize": true }), None);
    assert_eq!(s, 200, "{v}");
    v["embeddings"].as_array().unwrap().iter().map(floats).collect()
}

fn assert_openai_error(s: u16, v: &Value, status: u16, kind: &str, want: &str) {
    assert_eq!(s, status, "{v}");
    let e = &v["error"];
    assert_eq!(e["type"], kind, "{v}");
    assert!(e["code"].is_string(), "{v}");
    assert!(e["message"].as_str().unwrap().contains(want), "want '{want}' in {v}");
}

const TEXTS: [&str; 3] = ["what is the name ?", "i love this film !", "ünïcödé ✓ text"];

#[test]
fn openai_embeddings_float_base64_dimensions_usage_and_errors() {
    let f = fixture();
    let server = Server::start(bin("mtt"), &f.model, &[]);
    let url = &server.url;
    let want = ours(url, &TEXTS);
    let dim = want[0].len();
    // A list, floats (the default), on both paths.
    for path in ["/v1/embeddings", "/embeddings"] {
        let (s, v) = post(url, path, &json!({ "model": "anything", "input": TEXTS }), None);
        assert_eq!(s, 200, "{v}");
        assert_eq!(v["object"], "list");
        assert_eq!(v["model"], p_str(&f.model));
        let data = v["data"].as_array().unwrap();
        assert_eq!(data.len(), TEXTS.len());
        for (i, d) in data.iter().enumerate() {
            assert_eq!(d["object"], "embedding");
            assert_eq!(d["index"], i);
            let e = floats(&d["embedding"]);
            assert!(max_diff(&e, &want[i]) <= 1e-5, "{i}: {}", max_diff(&e, &want[i]));
            let norm = e.iter().map(|x| x * x).sum::<f32>().sqrt();
            assert!((norm - 1.0).abs() < 1e-4, "{norm}");
        }
        // Usage: the tokens the model saw, [CLS] and [SEP] included, as /tokenize counts them.
        let (s, tok) = post(url, "/tokenize", &json!({ "inputs": TEXTS }), None);
        assert_eq!(s, 200, "{tok}");
        let tokens: usize = tok.as_array().unwrap().iter().map(|t| t.as_array().unwrap().len()).sum();
        assert_eq!(v["usage"]["prompt_tokens"], tokens, "{v}");
        assert_eq!(v["usage"]["total_tokens"], tokens, "{v}");
    }
    // One string, base64.
    let (s, v) = post(url, "/v1/embeddings", &json!({ "model": "m", "input": TEXTS[1], "encoding_format": "base64" }), None);
    assert_eq!(s, 200, "{v}");
    let data = v["data"].as_array().unwrap();
    assert_eq!(data.len(), 1);
    let e = f32s_of_base64(data[0]["embedding"].as_str().unwrap());
    assert!(max_diff(&e, &want[1]) <= 1e-5);
    // dimensions: the first N components, normalised again (floats and base64).
    let n = dim / 2;
    for format in ["float", "base64"] {
        let (s, v) = post(url, "/v1/embeddings", &json!({ "model": "m", "input": TEXTS, "dimensions": n, "encoding_format": format }), None);
        assert_eq!(s, 200, "{v}");
        for (i, d) in v["data"].as_array().unwrap().iter().enumerate() {
            let e = if format == "base64" { f32s_of_base64(d["embedding"].as_str().unwrap()) } else { floats(&d["embedding"]) };
            assert_eq!(e.len(), n);
            assert!(max_diff(&e, &shortened(&want[i], n)) <= 1e-5, "{format} {i}");
        }
    }
    // Errors in OpenAI's shape.
    for (body, status, want) in [
        (json!({ "model": "m", "input": "a", "dimensions": 0 }), 400, "\"dimensions\""),
        (json!({ "model": "m", "input": "a", "dimensions": dim + 1 }), 400, "\"dimensions\" is"),
        (json!({ "model": "m" }), 400, "missing field \"input\""),
        (json!({ "model": "m", "input": [] }), 400, "is empty"),
        (json!({ "model": "m", "input": "a", "encoding_format": "int8" }), 400, "encoding_format"),
        (json!({ "model": "m", "input": [[1, 2]] }), 400, "token arrays"),
    ] {
        let (s, v) = post(url, "/v1/embeddings", &body, None);
        assert_openai_error(s, &v, status, "invalid_request_error", want);
    }
    let (s, v) = post(url, "/v1/nothing", &json!({}), None);
    assert_openai_error(s, &v, 404, "invalid_request_error", "no route");
    let (s, body) = get(url, "/v1/embeddings");
    assert_openai_error(s, &serde_json::from_str(&body).unwrap(), 405, "invalid_request_error", "takes POST");
    // Our own routes keep our error shape.
    let (s, v) = post(url, "/embed", &json!({ "texts": [] }), None);
    assert_eq!(s, 400);
    assert!(v["error"].is_string(), "{v}");
    // Both OpenAI paths are counted under one route in /metrics.
    let (_, metrics) = get(url, "/metrics");
    let counts = driver::request_counts(&metrics);
    assert!(counts.get(&("/v1/embeddings".to_string(), 200)).copied().unwrap_or(0) >= 5, "{counts:?}");
    assert!(counts.get(&("/v1/embeddings".to_string(), 400)).copied().unwrap_or(0) >= 6, "{counts:?}");
    assert!(server.stop().success());

    // With an API key: a wrong or missing key is OpenAI's 401 on /v1, ours elsewhere.
    let server = Server::start(bin("mtt"), &f.model, &["--api-key", "s3cret"]);
    let body = json!({ "model": "m", "input": "a" });
    for key in [Some("wrong"), None] {
        let (s, v) = post(&server.url, "/v1/embeddings", &body, key);
        assert_openai_error(s, &v, 401, "invalid_request_error", "API key");
        assert_eq!(v["error"]["code"], "invalid_api_key");
    }
    let (s, v) = post(&server.url, "/embed", &json!({ "texts": ["a"] }), Some("wrong"));
    assert_eq!(s, 401);
    assert!(v["error"].is_string(), "{v}");
    let (s, v) = post(&server.url, "/v1/embeddings", &body, Some("s3cret"));
    assert_eq!(s, 200, "{v}");
    assert!(server.stop().success());
}

fn p_str(p: &std::path::Path) -> String {
    p.display().to_string()
}

#[test]
fn tei_shapes_info_tokenize_root_and_explicit_truncation() {
    let f = fixture();
    // Three model workers sharing the model: concurrent requests get the one-at-a-time answers.
    let server = Server::start(bin("mtt"), &f.model, &["--workers", "3", "--threads", "3"]);
    let url = &server.url;
    let want = ours(url, &TEXTS);
    let dim = want[0].len();
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..12).map(|i| s.spawn(move || (i, ours(url, &TEXTS[i % 3..])))).collect();
        for h in handles {
            let (i, got) = h.join().unwrap();
            let diff = got.iter().flatten().zip(want[i % 3..].iter().flatten()).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
            assert!(got.len() == 3 - i % 3 && diff <= 1e-5, "request {i} under concurrency: {} vectors, max diff {diff}", got.len());
        }
    });
    // /info.
    let (s, body) = get(url, "/info");
    assert_eq!(s, 200, "{body}");
    let info: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(info["embedding_dim"], dim);
    assert_eq!(info["model_id"], p_str(&f.model));
    assert!(info["heads"].is_null(), "{info}");
    assert_eq!(info["precision"], "fp32");
    assert_eq!(info["model_workers"], 3);
    assert_eq!(info["version"], env!("CARGO_PKG_VERSION"));
    let max_len = info["max_input_length"].as_u64().unwrap() as usize;
    assert!(info["max_batch_tokens"].as_u64().unwrap() > 0);
    // TEI's /embed: a bare array, normalised by default; one string too; `normalize: false` is ours.
    let (s, v) = post(url, "/embed", &json!({ "inputs": TEXTS }), None);
    assert_eq!(s, 200, "{v}");
    let got: Vec<Vec<f32>> = v.as_array().unwrap().iter().map(floats).collect();
    for (g, w) in got.iter().zip(&want) {
        assert!(max_diff(g, w) <= 1e-5);
    }
    let (s, v) = post(url, "/embed", &json!({ "inputs": TEXTS[0] }), None);
    assert_eq!(s, 200, "{v}");
    assert_eq!(v.as_array().unwrap().len(), 1);
    assert!(max_diff(&floats(&v[0]), &want[0]) <= 1e-5);
    let (_, plain) = post(url, "/embed", &json!({ "texts": [TEXTS[0]] }), None);
    let (s, v) = post(url, "/embed", &json!({ "inputs": [TEXTS[0]], "normalize": false }), None);
    assert_eq!(s, 200);
    assert!(max_diff(&floats(&v[0]), &floats(&plain["embeddings"][0])) <= 1e-5);
    let (s, v) = post(url, "/embed", &json!({ "inputs": TEXTS, "dimensions": 3 }), None);
    assert_eq!(s, 200, "{v}");
    for (i, row) in v.as_array().unwrap().iter().enumerate() {
        assert!(max_diff(&floats(row), &shortened(&want[i], 3)) <= 1e-5);
    }
    let (s, v) = post(url, "/embed", &json!({ "inputs": "a", "dimensions": dim + 1 }), None);
    assert_eq!(s, 400, "{v}");
    // POST / on a base encoder embeds like TEI's /embed.
    let (s, v) = post(url, "/", &json!({ "inputs": TEXTS }), None);
    assert_eq!(s, 200, "{v}");
    assert!(max_diff(&floats(&v[2]), &want[2]) <= 1e-5);
    // /tokenize: [CLS] ... [SEP], ids and texts.
    let (s, v) = post(url, "/tokenize", &json!({ "inputs": "what is the name ?" }), None);
    assert_eq!(s, 200, "{v}");
    let toks = v[0].as_array().unwrap();
    assert_eq!(toks.first().unwrap()["text"], "[CLS]");
    assert_eq!(toks.last().unwrap()["text"], "[SEP]");
    assert!(toks[0]["special"].as_bool().unwrap() && !toks[1]["special"].as_bool().unwrap());
    assert!(toks.iter().all(|t| t["id"].is_i64()));
    let words: Vec<&str> = toks[1..toks.len() - 1].iter().map(|t| t["text"].as_str().unwrap()).collect();
    assert_eq!(words.join(" "), "what is the name ?");
    // Truncation: by default a long text is truncated to max_seq_length tokens (usage says so);
    // with `truncate: false` it is a 413 that names its index, on every shape.
    let long = "a very long text ".repeat(max_len);
    let (s, v) = post(url, "/v1/embeddings", &json!({ "model": "m", "input": ["short", long] }), None);
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["usage"]["prompt_tokens"], 3 + max_len, "{v}");
    for (path, body, field) in [
        ("/embed", json!({ "inputs": ["short", long], "truncate": false }), "inputs[1]"),
        ("/embed", json!({ "texts": ["short", "x", long], "truncate": false }), "texts[2]"),
        ("/tokenize", json!({ "inputs": [long], "truncate": false }), "inputs[0]"),
    ] {
        let (s, v) = post(url, path, &body, None);
        assert_eq!(s, 413, "{path}: {v}");
        let m = v["error"].as_str().unwrap();
        assert!(m.contains(field) && m.contains(&max_len.to_string()), "{path}: {m}");
    }
    let (s, v) = post(url, "/embed", &json!({ "inputs": [long], "truncate": true }), None);
    assert_eq!(s, 200, "{v}");
    // Our own shape answers exactly as before.
    let (s, v) = post(url, "/embed", &json!({ "texts": TEXTS }), None);
    assert_eq!(s, 200);
    assert_eq!(v.as_object().unwrap().keys().collect::<Vec<_>>(), ["dim", "embeddings"]);
    assert!(server.stop().success());
}

#[test]
fn tei_classify_shape_on_a_checkpoint() {
    let f = fixture();
    let mut c = config(&f, "ckpt");
    c.schedule.max_steps = Some(3);
    run(&c);
    let server = Server::start(bin("mtt"), &c.output.out, &[]);
    let url = &server.url;
    let (s, ours) = post(url, "/predict", &json!({ "texts": TEXTS }), None);
    assert_eq!(s, 200, "{ours}");
    let (_, body) = get(url, "/info");
    let info: Value = serde_json::from_str(&body).unwrap();
    for path in ["/predict", "/"] {
        let (s, v) = post(url, path, &json!({ "inputs": TEXTS }), None);
        assert_eq!(s, 200, "{path}: {v}");
        for (i, row) in v.as_array().unwrap().iter().enumerate() {
            for task in ["task_a", "task_b"] {
                let items: Vec<&Value> = row.as_array().unwrap().iter().filter(|x| x["task"] == task).collect();
                assert_eq!(items.len(), info["heads"][task].as_array().unwrap().len());
                // The task's best label first, as in our own shape.
                assert_eq!(items[0]["label"], ours["predictions"][i][task]["label"], "{path}: {v}");
                let label = items[0]["label"].as_str().unwrap();
                let want = ours["predictions"][i][task]["probs"][label].as_f64().unwrap();
                assert!((items[0]["score"].as_f64().unwrap() - want).abs() <= 1e-5);
            }
        }
    }
    let (s, v) = post(url, "/predict", &json!({ "inputs": "one" }), None);
    assert_eq!(s, 200);
    assert_eq!(v.as_array().unwrap().len(), 1);
    assert!(server.stop().success());
}

/// The venv's Python when it can import `module` (scripts/setup.sh installs `openai` and, with
/// transformers, `huggingface_hub`); `None`, said on stderr, otherwise.
fn venv_python_with(module: &str) -> Option<std::path::PathBuf> {
    let py = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python");
    let ok = std::process::Command::new(&py).args(["-c", &format!("import {module}")]).output().map(|o| o.status.success()).unwrap_or(false);
    if !ok {
        eprintln!("SKIPPED: {} cannot import {module} (run scripts/setup.sh)", py.display());
        return None;
    }
    Some(py)
}

/// Runs `code` with the venv's Python (`args` in `sys.argv[1:]`) and parses its stdout as JSON.
fn python_json(py: &std::path::Path, code: &str, args: &[&str]) -> Value {
    let o = std::process::Command::new(py).args(["-c", code]).args(args).env_remove("HF_HUB_OFFLINE").env("NO_PROXY", "127.0.0.1").output().expect("python runs");
    assert!(o.status.success(), "python failed:\n{}", String::from_utf8_lossy(&o.stderr));
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&o.stdout)))
}

#[test]
fn the_real_openai_and_huggingface_clients_read_the_answers() {
    let (openai, hf) = (venv_python_with("openai"), venv_python_with("huggingface_hub"));
    if openai.is_none() && hf.is_none() {
        return;
    }
    let f = fixture();
    let server = Server::start(bin("mtt"), &f.model, &["--api-key", "k3y"]);
    let url = &server.url;
    let want: Vec<Vec<f32>> = {
        let (s, v) = post(url, "/embed", &json!({ "texts": TEXTS, "normalize": true }), Some("k3y"));
        assert_eq!(s, 200, "{v}");
        v["embeddings"].as_array().unwrap().iter().map(floats).collect()
    };
    let texts = serde_json::to_string(&TEXTS).unwrap();
    if let Some(py) = &openai {
        // Without `encoding_format` the SDK asks for base64 and decodes it itself (numpy or
        // struct); asked for base64 explicitly, it hands the string over (decoded here as
        // little-endian f32). The key goes as a bearer token.
        let code = r#"
import base64, json, struct, sys
from openai import OpenAI
c = OpenAI(base_url=sys.argv[1] + "/v1", api_key="k3y", max_retries=0)
texts = json.loads(sys.argv[2])
r = c.embeddings.create(model="tiny", input=texts)
raw = c.embeddings.create(model="tiny", input=texts, encoding_format="base64")
def f32(s):
    b = base64.b64decode(s)
    return list(struct.unpack("<%df" % (len(b) // 4), b))
raw = [f32(d.embedding) for d in raw.data]
one = c.embeddings.create(model="tiny", input=texts[0], dimensions=4)
try:
    OpenAI(base_url=sys.argv[1] + "/v1", api_key="wrong", max_retries=0).embeddings.create(model="tiny", input="a")
    err = None
except Exception as e:
    err = [type(e).__name__, getattr(e, "status_code", None), str(e)]
print(json.dumps({"vectors": [list(map(float, d.embedding)) for d in r.data], "raw": raw, "tokens": r.usage.prompt_tokens,
                  "model": r.model, "short": list(map(float, one.data[0].embedding)), "err": err}))
"#;
        let v = python_json(py, code, &[url, &texts]);
        let got: Vec<Vec<f32>> = v["vectors"].as_array().unwrap().iter().map(floats).collect();
        assert_eq!(got.len(), TEXTS.len());
        for (g, w) in got.iter().zip(&want) {
            assert!(max_diff(g, w) <= 1e-5, "{}", max_diff(g, w));
        }
        for (g, w) in v["raw"].as_array().unwrap().iter().zip(&want) {
            assert!(max_diff(&floats(g), w) <= 1e-5);
        }
        assert!(v["tokens"].as_u64().unwrap() >= 2 * TEXTS.len() as u64, "{v}");
        assert_eq!(v["model"], p_str(&f.model));
        assert!(max_diff(&floats(&v["short"]), &shortened(&want[0], 4)) <= 1e-5);
        assert_eq!(v["err"][0], "AuthenticationError", "{v}");
        assert_eq!(v["err"][1], 401, "{v}");
    }
    if let Some(py) = &hf {
        let code = r#"
import json, sys
from huggingface_hub import InferenceClient
c = InferenceClient(base_url=sys.argv[1], api_key="k3y")
out = [c.feature_extraction(t).tolist() for t in json.loads(sys.argv[2])]
print(json.dumps(out))
"#;
        let v = python_json(py, code, &[url, &texts]);
        for (row, w) in v.as_array().unwrap().iter().zip(&want) {
            // One text in: a 1 × dim array back.
            let g = floats(row.as_array().unwrap().first().filter(|x| x.is_array()).unwrap_or(row));
            assert!(max_diff(&g, w) <= 1e-5, "{}", max_diff(&g, w));
        }
    }
    assert!(server.stop().success());
}

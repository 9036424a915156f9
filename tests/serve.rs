//! `mtt serve`, started as a process: a reduced load test (valid answers equal `mtt embed`'s,
//! malformed requests get their 4xx, memory stays flat, SIGTERM exits cleanly), `/predict`
//! against `mtt predict`, the 404 of `/predict` on a base encoder, and 503 + Retry-After when the
//! queue is full.

mod common;

#[path = "../benches/serve_load/driver.rs"]
mod driver;

use common::{bin, config, fixture, p, run, Cmd};
use driver::{get, reference_embeddings, LoadOptions, Server};
use std::time::Duration;

fn texts() -> Vec<String> {
    // Each file's rows after its header line.
    let rows = |f: &'static str| f.lines().skip(1).filter_map(|l| l.split('\t').next());
    let mut t: Vec<String> = rows(common::TASK_A).chain(rows(common::TASK_B)).map(str::to_string).collect();
    t.extend(["", "   ", "ünïcödé ✓ text", &"a very long text ".repeat(100)].map(str::to_string));
    t
}

fn call(url: &str, path: &str, body: &str) -> (u16, String, Option<String>) {
    match ureq::post(&format!("{url}{path}")).set("Content-Type", "application/json").send_string(body) {
        Ok(resp) => {
            let s = resp.status();
            let retry = resp.header("Retry-After").map(str::to_string);
            (s, resp.into_string().unwrap(), retry)
        }
        Err(ureq::Error::Status(s, resp)) => {
            let retry = resp.header("Retry-After").map(str::to_string);
            (s, resp.into_string().unwrap(), retry)
        }
        Err(e) => panic!("{path}: {e}"),
    }
}

#[test]
fn reduced_load_test_on_a_base_encoder() {
    let f = fixture();
    let texts = texts();
    let expected = reference_embeddings(bin("mtt"), &f.model, &texts);
    let server = Server::start(bin("mtt"), &f.model, &[]);
    let (s, body, _) = call(&server.url, "/predict", r#"{"texts": ["a"]}"#);
    assert_eq!(s, 404);
    assert!(body.contains("base encoder without task heads"), "{body}");
    let (s, body) = get(&server.url, "/health");
    assert_eq!(s, 200);
    assert!(body.contains("\"multitask\":false"), "{body}");
    let opts = LoadOptions {
        pid: server.pid(),
        clients: 8,
        duration: Duration::from_secs(3),
        malformed: 300,
        max_texts_per_request: 8,
        warmup: Duration::from_secs(1),
        server_max_texts: 256,
        server_max_body: 1 << 20,
        max_diff: 1e-4,
    };
    let r = driver::run(&server.url, &texts, &expected, &opts);
    println!("{r:?}");
    assert!(r.wrong.is_empty(), "{:?}", &r.wrong[..r.wrong.len().min(5)]);
    assert!(r.malformed_wrong.is_empty(), "{:?}", &r.malformed_wrong[..r.malformed_wrong.len().min(5)]);
    assert!(r.valid_ok > 20, "only {} valid answers", r.valid_ok);
    assert!(r.malformed_sent == 300 && r.malformed_expected_status == r.malformed_sent, "{r:?}");
    assert!(r.max_abs_diff <= 1e-4, "{}", r.max_abs_diff);
    let growth = r.rss_end_kib as f64 / r.rss_after_warmup_kib as f64;
    assert!(growth < 1.2, "resident memory grew {:.1}% after warm-up", (growth - 1.0) * 100.0);
    let (s, _) = get(&server.url, "/health");
    assert_eq!(s, 200, "the server is up after the load");
    let (_, metrics) = get(&server.url, "/metrics");
    let counts = driver::request_counts(&metrics);
    let count = |route: &str, status: u16| counts.get(&(route.to_string(), status)).copied().unwrap_or(0) as usize;
    assert!(count("/embed", 200) >= r.valid_ok, "{counts:?}");
    assert!(count("/embed", 400) > 0 && count("/embed", 415) > 0 && count("/embed", 413) > 0 && count("/embed", 405) > 0 && count("other", 404) > 0, "{counts:?}");
    for want in ["mtt_request_duration_seconds_bucket{route=\"/embed\",le=\"+Inf\"}", "mtt_batch_size_count", "mtt_queue_depth 0", "mtt_errors_total{route=\"/embed\",status=\"400\"}"] {
        assert!(metrics.contains(want), "/metrics lacks {want}:\n{metrics}");
    }
    let status = server.stop();
    assert!(status.success(), "exit status after SIGTERM: {status}");
}

#[test]
fn a_checkpoint_serves_predict_like_mtt_predict_and_embed_like_mtt_embed() {
    let f = fixture();
    let mut c = config(&f, "ckpt");
    c.schedule.max_steps = Some(3);
    run(&c);
    let texts = texts();
    let server = Server::start(bin("mtt"), &c.output.out, &[]);
    let body = serde_json::json!({ "texts": texts }).to_string();
    let (s, got, _) = call(&server.url, "/predict", &body);
    assert_eq!(s, 200, "{got}");
    let got: serde_json::Value = serde_json::from_str(&got).unwrap();
    let want = Cmd::mtt(["predict", "--model", p(&c.output.out)]).stdin(texts.join("\n") + "\n").run().ok().json_lines();
    let preds = got["predictions"].as_array().unwrap();
    assert_eq!(preds.len(), want.len());
    let mut max_diff = 0f64;
    for (p, w) in preds.iter().zip(&want) {
        for task in ["task_a", "task_b"] {
            assert_eq!(p[task]["label"], w[task]["label"]);
            for (label, v) in w[task]["probs"].as_object().unwrap() {
                max_diff = max_diff.max((p[task]["probs"][label].as_f64().unwrap() - v.as_f64().unwrap()).abs());
            }
        }
    }
    assert!(max_diff <= 1e-5, "probabilities differ from mtt predict's by {max_diff}");
    // /embed on the checkpoint: the fine-tuned encoder, as `mtt embed --model CHECKPOINT`.
    let expected = reference_embeddings(bin("mtt"), &c.output.out, &texts);
    let (s, got, _) = call(&server.url, "/embed", &body);
    assert_eq!(s, 200);
    let got: serde_json::Value = serde_json::from_str(&got).unwrap();
    for (t, row) in texts.iter().zip(got["embeddings"].as_array().unwrap()) {
        let diff = row.as_array().unwrap().iter().zip(&expected[t]).map(|(a, b)| (a.as_f64().unwrap() as f32 - b).abs()).fold(0f32, f32::max);
        assert!(diff <= 1e-5, "{t}: {diff}");
    }
    assert!(server.stop().success());
}

#[test]
fn a_full_queue_answers_503_with_retry_after() {
    let f = fixture();
    let server = Server::start(bin("mtt"), &f.model, &["--queue-capacity", "1", "--threads", "1"]);
    let long = "word ".repeat(200);
    let body = serde_json::json!({ "texts": vec![long; 256] }).to_string();
    let url = server.url.clone();
    let answers: Vec<(u16, String, Option<String>)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..24).map(|_| s.spawn(|| call(&url, "/embed", &body))).collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let busy: Vec<_> = answers.iter().filter(|a| a.0 == 503).collect();
    assert!(!busy.is_empty(), "no 503 among {:?}", answers.iter().map(|a| a.0).collect::<Vec<_>>());
    assert!(answers.iter().all(|a| a.0 == 200 || a.0 == 503));
    for (_, body, retry) in busy {
        assert_eq!(retry.as_deref(), Some("1"));
        assert!(body.contains("queue is full"), "{body}");
    }
    assert!(server.stop().success());
}

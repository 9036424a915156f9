//! Load test of `mtt serve` on loopback: 32 concurrent clients for 30 s with 10,000 malformed
//! requests mixed in (defaults). Starts and stops the server itself; every valid answer is
//! checked against `mtt embed`'s vectors.
//!
//! `cargo bench --profile dev --bench serve_load -- [--model DIR] [--clients N] [--seconds S]
//!  [--malformed N] [--max-texts-per-request N] [--json FILE]` (and `--token-budget N`,
//!  `--threads N`, `--queue-capacity N`, passed on to `mtt serve`)

#[path = "serve_load/driver.rs"]
mod driver;

use driver::{get, reference_embeddings, LoadOptions, Server};
use std::path::PathBuf;
use std::time::Duration;

fn texts() -> Vec<String> {
    let mut out = Vec::new();
    for f in ["data/trec6/dev.tsv", "data/sst5_3class/dev.tsv"] {
        let s = std::fs::read_to_string(f).unwrap_or_else(|e| panic!("{f}: {e}"));
        out.extend(s.lines().skip(1).filter_map(|l| l.split('\t').next()).filter(|t| !t.trim().is_empty()).take(300).map(str::to_string));
    }
    out
}

fn main() {
    let mut model = PathBuf::from("models/all-MiniLM-L6-v2");
    let (mut clients, mut seconds, mut malformed, mut per_request) = (32usize, 30u64, 10_000usize, 8usize);
    let mut json_out: Option<PathBuf> = None;
    let mut server_args: Vec<String> = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut val = || args.next().unwrap_or_else(|| panic!("{a} needs a value"));
        match a.as_str() {
            "--model" => model = PathBuf::from(val()),
            "--clients" => clients = val().parse().expect("--clients N"),
            "--seconds" => seconds = val().parse().expect("--seconds S"),
            "--malformed" => malformed = val().parse().expect("--malformed N"),
            "--max-texts-per-request" => per_request = val().parse().expect("--max-texts-per-request N"),
            "--json" => json_out = Some(PathBuf::from(val())),
            // Passed on to `mtt serve`.
            "--token-budget" | "--threads" | "--queue-capacity" => {
                let v = val();
                server_args.extend([a.clone(), v]);
            }
            "--bench" => {}
            other => panic!("unknown argument {other}"),
        }
    }
    let mtt = env!("CARGO_BIN_EXE_mtt");
    let texts = texts();
    eprintln!("reference vectors: mtt embed on {} texts", texts.len());
    let expected = reference_embeddings(mtt, &model, &texts);
    let extra: Vec<&str> = server_args.iter().map(String::as_str).collect();
    let server = Server::start(mtt, &model, &extra);
    eprintln!("server at {} (pid {}); {clients} clients for {seconds} s, {malformed} malformed requests", server.url, server.pid());
    let opts = LoadOptions {
        pid: server.pid(),
        clients,
        duration: Duration::from_secs(seconds),
        malformed,
        max_texts_per_request: per_request,
        warmup: Duration::from_secs(5),
        server_max_texts: 256,
        server_max_body: 1 << 20,
    };
    let r = driver::run(&server.url, &texts, &expected, &opts);
    let (health, _) = get(&server.url, "/health");
    let (_, metrics) = get(&server.url, "/metrics");
    let counts = driver::request_counts(&metrics);
    let status = server.stop();
    let growth = r.rss_end_kib as f64 / r.rss_after_warmup_kib.max(1) as f64 - 1.0;
    println!("mtt serve load test: {clients} clients, {:.1} s, model {}", r.seconds, model.display());
    println!("  valid requests      {} ({} correct, {} wrong, {} answered 503 busy)", r.valid_requests, r.valid_ok, r.wrong.len(), r.busy);
    println!("  throughput          {:.1} requests/s, {:.1} texts/s", r.requests_per_s, r.texts_per_s);
    println!("  latency             p50 {:.1} ms, p99 {:.1} ms", r.p50_ms, r.p99_ms);
    println!("  malformed           {} sent, {} answered with the expected 4xx, {} otherwise", r.malformed_sent, r.malformed_expected_status, r.malformed_wrong.len());
    println!("  max |diff| vs mtt embed  {:.2e}", r.max_abs_diff);
    println!("  server RSS          {:.0} MiB after warm-up, {:.0} MiB at the end ({:+.1}%)", r.rss_after_warmup_kib as f64 / 1024.0, r.rss_end_kib as f64 / 1024.0, growth * 100.0);
    println!("  health after load   {health}; exit status after SIGTERM {status}");
    println!("  /metrics requests by route and status: {counts:?}");
    for w in r.wrong.iter().chain(&r.malformed_wrong).take(10) {
        println!("  ! {w}");
    }
    if let Some(p) = json_out {
        let j = serde_json::json!({
            "clients": clients, "seconds": r.seconds, "model": model.display().to_string(),
            "valid_requests": r.valid_requests, "valid_ok": r.valid_ok, "wrong": r.wrong.len(), "busy_503": r.busy,
            "requests_per_s": r.requests_per_s, "texts_per_s": r.texts_per_s, "p50_ms": r.p50_ms, "p99_ms": r.p99_ms,
            "malformed_sent": r.malformed_sent, "malformed_expected_status": r.malformed_expected_status, "malformed_wrong": r.malformed_wrong.len(),
            "max_abs_diff": r.max_abs_diff, "rss_after_warmup_mib": r.rss_after_warmup_kib as f64 / 1024.0, "rss_end_mib": r.rss_end_kib as f64 / 1024.0,
            "rss_growth": growth, "health_after": health, "exit_ok": status.success(),
        });
        std::fs::write(&p, serde_json::to_string_pretty(&j).unwrap()).unwrap();
    }
    assert!(r.wrong.is_empty() && r.malformed_wrong.is_empty() && health == 200 && status.success(), "the load test failed: see above");
}

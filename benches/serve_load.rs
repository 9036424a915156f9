//! Load test of `mtt serve` on loopback: 32 concurrent clients for 30 s with 10,000 malformed
//! requests mixed in (defaults). Starts and stops the server itself; every valid answer is
//! checked against `mtt embed`'s vectors.
//!
//! `cargo bench --profile dev --bench serve_load -- [--model DIR] [--clients N] [--seconds S]
//!  [--malformed N] [--max-texts-per-request N] [--json FILE]` (and `--token-budget N`,
//!  `--threads N`, `--queue-capacity N`, `--max-padding F`, `--workers N`, passed on to `mtt serve`)
//!
//! `-- --throughput [--precisions fp32,int8] [--clients-list 1,8,32] [--seconds S] [--json FILE]`
//! measures instead what serving costs against offline encoding, in one run: per precision,
//! `mtt embed`'s encode-only texts/s on the same texts (a 1,800-text process minus a 32-text
//! one, so start-up and loading cancel), then the server's texts/s and p50/p99 latency at each
//! client count (no malformed requests, a 5 s warm-up at that count first), and at one client
//! the mean latency over the mean forward time of a request (`mtt_forward_seconds`).

#[path = "serve_load/driver.rs"]
mod driver;

use driver::{cpu_seconds, embed_with, get, histogram_sum_count, reference_embeddings, time_embed, LoadOptions, Server};
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
    let (mut throughput_mode, mut seconds_given) = (false, false);
    let mut precisions = vec!["fp32".to_string(), "int8".to_string()];
    let mut clients_list = vec![1usize, 8, 32];
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut val = || args.next().unwrap_or_else(|| panic!("{a} needs a value"));
        match a.as_str() {
            "--model" => model = PathBuf::from(val()),
            "--clients" => clients = val().parse().expect("--clients N"),
            "--seconds" => {
                seconds = val().parse().expect("--seconds S");
                seconds_given = true;
            }
            "--throughput" => throughput_mode = true,
            "--precisions" => precisions = val().split(',').map(str::to_string).collect(),
            "--clients-list" => clients_list = val().split(',').map(|c| c.parse().expect("--clients-list N,N,...")).collect(),
            "--malformed" => malformed = val().parse().expect("--malformed N"),
            "--max-texts-per-request" => per_request = val().parse().expect("--max-texts-per-request N"),
            "--json" => json_out = Some(PathBuf::from(val())),
            // Passed on to `mtt serve`.
            "--token-budget" | "--threads" | "--queue-capacity" | "--max-padding" | "--workers" => {
                let v = val();
                server_args.extend([a.clone(), v]);
            }
            "--bench" => {}
            other => panic!("unknown argument {other}"),
        }
    }
    let mtt = env!("CARGO_BIN_EXE_mtt");
    let texts = texts();
    if throughput_mode {
        let seconds = if seconds_given { seconds } else { 20 };
        let run = ThroughputRun { mtt, model: &model, texts: &texts, seconds, per_request, server_args: &server_args };
        return throughput(&run, &precisions, &clients_list, json_out.as_deref());
    }
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
        max_diff: 1e-4,
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

/// What a throughput run measures on.
struct ThroughputRun<'a> {
    mtt: &'a str,
    model: &'a std::path::Path,
    texts: &'a [String],
    seconds: u64,
    per_request: usize,
    server_args: &'a [String],
}

/// One served figure: a precision at a client count.
struct Served {
    clients: usize,
    texts_per_s: f64,
    p50_ms: f64,
    p99_ms: f64,
    mean_ms: f64,
    forward_ms: f64,
    forward_per_request_ms: f64,
    model_busy: f64,
    server_cores: f64,
    client_cores: f64,
    max_abs_diff: f32,
}

/// Offline `mtt embed` against `mtt serve`, per precision and client count (see the module docs).
fn throughput(run: &ThroughputRun, precisions: &[String], clients_list: &[usize], json_out: Option<&std::path::Path>) {
    let cpu = std::fs::read_to_string("/proc/cpuinfo").ok().and_then(|s| s.lines().find_map(|l| l.strip_prefix("model name")).map(|v| v.trim_start_matches([' ', '\t', ':']).to_string())).unwrap_or_default();
    let date = std::process::Command::new("date").arg("-u").arg("+%Y-%m-%d").output().map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string()).unwrap_or_default();
    let mut lines: Vec<serde_json::Value> = vec![serde_json::json!({ "figure": "env", "date": date, "cpu": cpu, "texts": run.texts.len(), "max_texts_per_request": run.per_request, "seconds": run.seconds, "server_args": run.server_args })];
    let big: Vec<String> = run.texts.iter().cycle().take(3 * run.texts.len()).cloned().collect();
    let small: Vec<String> = run.texts.iter().take(32).cloned().collect();
    let mut table = Vec::new();
    for p in precisions {
        let extra = ["--precision", p.as_str()];
        // Best of two of each process size: the difference is the encoding of the rest.
        let best = |t: &[String]| (0..2).map(|_| time_embed(run.mtt, run.model, &extra, t)).fold(f64::INFINITY, f64::min);
        let (t_big, t_small) = (best(&big), best(&small));
        let offline = (big.len() - small.len()) as f64 / (t_big - t_small);
        eprintln!("{p}: mtt embed {} texts {t_big:.2} s, 32 texts {t_small:.2} s: {offline:.1} texts/s encode-only", big.len());
        lines.push(serde_json::json!({ "figure": "offline", "precision": p, "texts": big.len(), "seconds": t_big, "seconds_32": t_small, "encode_texts_per_s": offline, "whole_process_texts_per_s": big.len() as f64 / t_big }));
        let expected = embed_with(run.mtt, run.model, &extra, run.texts);
        let mut args: Vec<&str> = extra.to_vec();
        args.extend(run.server_args.iter().map(String::as_str));
        let server = Server::start(run.mtt, run.model, &args);
        let mut served = Vec::new();
        for &clients in clients_list {
            let opts = LoadOptions {
                pid: server.pid(),
                clients,
                duration: Duration::from_secs(5),
                malformed: 0,
                max_texts_per_request: run.per_request,
                warmup: Duration::ZERO,
                server_max_texts: 256,
                server_max_body: 1 << 20,
                // fp32 is exact up to summation order. int8's vector of a text depends on the
                // batch it shares (cosine 0.9997 between a text alone and beside a longer one,
                // up to 0.025 per component): still far from any other text's vector.
                max_diff: if p == "fp32" { 1e-4 } else { 5e-2 },
            };
            let warm = driver::run(&server.url, run.texts, &expected, &opts);
            assert!(warm.wrong.is_empty(), "{p}, {clients} clients, warm-up: {:?}", warm.wrong.first());
            let forward_before = histogram_sum_count(&get(&server.url, "/metrics").1, "mtt_forward_seconds");
            let (server_cpu0, client_cpu0) = (cpu_seconds(server.pid()), cpu_seconds(std::process::id()));
            let r = driver::run(&server.url, run.texts, &expected, &LoadOptions { duration: Duration::from_secs(run.seconds), ..opts });
            let (server_cpu, client_cpu) = (cpu_seconds(server.pid()) - server_cpu0, cpu_seconds(std::process::id()) - client_cpu0);
            let forward_after = histogram_sum_count(&get(&server.url, "/metrics").1, "mtt_forward_seconds");
            let forward_s = forward_after.0 - forward_before.0;
            assert!(r.wrong.is_empty(), "{p}, {clients} clients: {} wrong answers, first {:?}", r.wrong.len(), r.wrong.first());
            let batches = forward_after.1.saturating_sub(forward_before.1).max(1);
            let forward_ms = forward_s / batches as f64 * 1e3;
            // A request may be cut into several batches: its forward time is all of theirs.
            let forward_per_request_ms = forward_s / r.valid_ok.max(1) as f64 * 1e3;
            // Where the time went: the model thread's share of the wall clock, and the CPU the
            // server and this load generator (on the same cores) used, in cores.
            let (model_busy, server_cores, client_cores) = (forward_s / r.seconds, server_cpu / r.seconds, client_cpu / r.seconds);
            eprintln!("{p}, {clients} clients: {:.1} texts/s ({:.0}% of offline), p50 {:.1} ms, p99 {:.1} ms, mean {:.1} ms, forward per batch {forward_ms:.1} ms; model thread busy {:.0}%, server {server_cores:.2} cores, load generator {client_cores:.2} cores", r.texts_per_s, 100.0 * r.texts_per_s / offline, r.p50_ms, r.p99_ms, r.mean_ms, 100.0 * model_busy);
            lines.push(serde_json::json!({ "figure": "served", "precision": p, "clients": clients, "seconds": r.seconds, "requests": r.valid_ok, "texts_per_s": r.texts_per_s, "of_offline": r.texts_per_s / offline, "p50_ms": r.p50_ms, "p99_ms": r.p99_ms, "mean_ms": r.mean_ms, "forward_ms_per_batch": forward_ms, "forward_ms_per_request": forward_per_request_ms, "batches": batches, "model_thread_busy": model_busy, "server_cpu_cores": server_cores, "load_generator_cpu_cores": client_cores, "busy_503": r.busy, "max_abs_diff": r.max_abs_diff }));
            served.push(Served { clients, texts_per_s: r.texts_per_s, p50_ms: r.p50_ms, p99_ms: r.p99_ms, mean_ms: r.mean_ms, forward_ms, forward_per_request_ms, model_busy, server_cores, client_cores, max_abs_diff: r.max_abs_diff });
        }
        let status = server.stop();
        assert!(status.success(), "mtt serve --precision {p} exited with {status}");
        table.push((p.clone(), offline, served));
    }
    println!("mtt serve against mtt embed (encode-only), {} texts drawn 1-{} per request, {} s per client count; CPU {cpu}, {date}", run.texts.len(), run.per_request, run.seconds);
    println!();
    println!("| precision | mtt embed texts/s | clients | served texts/s | of offline | p50 ms | p99 ms | mean ms | forward ms per batch | model thread busy | server CPU (cores) | load generator CPU (cores) | max abs diff |");
    println!("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    for (p, offline, served) in &table {
        for s in served {
            println!(
                "| {p} | {offline:.1} | {} | {:.1} | {:.0}% | {:.1} | {:.1} | {:.1} | {:.1} | {:.0}% | {:.2} | {:.2} | {:.1e} |",
                s.clients,
                s.texts_per_s,
                100.0 * s.texts_per_s / offline,
                s.p50_ms,
                s.p99_ms,
                s.mean_ms,
                s.forward_ms,
                100.0 * s.model_busy,
                s.server_cores,
                s.client_cores,
                s.max_abs_diff
            );
        }
    }
    println!();
    for (p, _, served) in &table {
        if let Some(one) = served.iter().find(|s| s.clients == 1) {
            println!("one client, {p}: mean latency {:.2}x the mean forward time of a request ({:.1} ms), p50 latency {:.2}x", one.mean_ms / one.forward_per_request_ms, one.forward_per_request_ms, one.p50_ms / one.forward_per_request_ms);
        }
    }
    if let Some(path) = json_out {
        let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
        std::fs::write(path, text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    }
}

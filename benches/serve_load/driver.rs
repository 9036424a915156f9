//! Load driver for `mtt serve`, shared by the load benchmark (`benches/serve_load.rs`) and the
//! reduced load test (`tests/serve.rs`): starts the server binary, checks every valid answer
//! against `mtt embed`'s output, mixes in malformed requests, and measures latency, throughput
//! and the server's resident memory.
#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A `mtt serve` child process and its address.
pub struct Server {
    pub child: Child,
    pub url: String,
}

impl Server {
    /// Starts `mtt serve --model MODEL --addr 127.0.0.1:0 EXTRA...` and waits for its address.
    /// The child is waited for by [`Server::stop`], or killed and waited for on drop.
    #[allow(clippy::zombie_processes)]
    pub fn start(mtt: &str, model: &Path, extra: &[&str]) -> Server {
        let mut child = Command::new(mtt)
            .args(["serve", "--model", &model.display().to_string(), "--addr", "127.0.0.1:0"])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("mtt serve starts");
        let mut out = BufReader::new(child.stdout.take().expect("stdout"));
        let mut line = String::new();
        loop {
            line.clear();
            if out.read_line(&mut line).expect("read server output") == 0 {
                let status = child.wait().expect("wait for mtt serve");
                panic!("mtt serve exited before listening ({status})");
            }
            if let Some(i) = line.find("listening on ") {
                let url = line[i + "listening on ".len()..].trim().to_string();
                // Keep draining the server's output so that it never blocks on a full pipe.
                std::thread::spawn(move || std::io::copy(&mut out, &mut std::io::sink()));
                return Server { child, url };
            }
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends SIGTERM and waits for the exit status.
    pub fn stop(mut self) -> std::process::ExitStatus {
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        self.child.wait().expect("wait for mtt serve")
    }
}

impl Drop for Server {
    /// A test that failed before [`Server::stop`] leaves no server behind.
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Resident memory of process `pid`, in KiB (Linux `/proc`).
pub fn rss_kib(pid: u32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    s.lines().find_map(|l| l.strip_prefix("VmRSS:")).and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok()).unwrap_or(0)
}

/// CPU seconds (user + system) process `pid` has used so far (Linux `/proc/PID/stat`).
pub fn cpu_seconds(pid: u32) -> f64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may hold spaces) in parentheses: utime and stime are
    // the 14th and 15th fields of the line, the 12th and 13th after the closing parenthesis.
    let rest = s.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<f64> = rest.split_whitespace().skip(11).take(2).filter_map(|v| v.parse().ok()).collect();
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    f.iter().sum::<f64>() / ticks
}

/// `mtt embed --model MODEL` on `texts`: text -> vector.
pub fn reference_embeddings(mtt: &str, model: &Path, texts: &[String]) -> HashMap<String, Vec<f32>> {
    embed_with(mtt, model, &[], texts)
}

/// Runs `mtt embed --model MODEL EXTRA...` on `texts` (fed from a thread) and returns its
/// standard output, checking that it succeeded.
fn run_embed(mtt: &str, model: &Path, extra: &[&str], texts: &[String], stderr: Stdio) -> Vec<u8> {
    let mut child = Command::new(mtt)
        .args(["embed", "--model", &model.display().to_string()])
        .args(extra)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(stderr)
        .spawn()
        .expect("mtt embed starts");
    let mut stdin = child.stdin.take().expect("stdin");
    let input = texts.join("\n") + "\n";
    let writer = std::thread::spawn(move || stdin.write_all(input.as_bytes()));
    let out = child.wait_with_output().expect("mtt embed runs");
    writer.join().expect("writer").expect("write texts");
    assert!(out.status.success(), "mtt embed failed");
    out.stdout
}

/// `mtt embed --model MODEL EXTRA...` on `texts`: text -> vector.
pub fn embed_with(mtt: &str, model: &Path, extra: &[&str], texts: &[String]) -> HashMap<String, Vec<f32>> {
    let out = run_embed(mtt, model, extra, texts, Stdio::inherit());
    let mut map = HashMap::new();
    for line in String::from_utf8(out).expect("utf-8").lines() {
        let v: serde_json::Value = serde_json::from_str(line).expect("a JSON line");
        let e: Vec<f32> = v["embedding"].as_array().expect("embedding").iter().map(|x| x.as_f64().expect("number") as f32).collect();
        map.insert(v["text"].as_str().expect("text").to_string(), e);
    }
    map
}

/// Wall time of a whole `mtt embed --model MODEL EXTRA...` process on `texts` (its output read
/// and dropped), in seconds.
pub fn time_embed(mtt: &str, model: &Path, extra: &[&str], texts: &[String]) -> f64 {
    let t0 = Instant::now();
    let out = run_embed(mtt, model, extra, texts, Stdio::null());
    assert_eq!(out.iter().filter(|&&b| b == b'\n').count(), texts.len(), "one line per text");
    t0.elapsed().as_secs_f64()
}

/// One kind of malformed request, and the status it must get.
struct Bad {
    method: &'static str,
    path: &'static str,
    content_type: Option<&'static str>,
    body: Vec<u8>,
    status: u16,
}

fn malformed_kinds(max_texts: usize, max_body: usize) -> Vec<Bad> {
    let j = Some("application/json");
    let too_many = serde_json::to_vec(&serde_json::json!({ "texts": vec!["x"; max_texts + 1] })).unwrap();
    let huge = {
        let mut b = br#"{"texts": [""#.to_vec();
        b.resize(b.len() + max_body, b'a');
        b.extend_from_slice(br#""]}"#);
        b
    };
    vec![
        Bad { method: "POST", path: "/embed", content_type: j, body: b"{\"texts\": [".to_vec(), status: 400 },
        Bad { method: "POST", path: "/embed", content_type: j, body: b"{\"texts\": []}".to_vec(), status: 400 },
        Bad { method: "POST", path: "/embed", content_type: j, body: b"{\"texts\": [\"a\", 7, null]}".to_vec(), status: 400 },
        Bad { method: "POST", path: "/embed", content_type: j, body: b"{\"text\": \"a\"}".to_vec(), status: 400 },
        Bad { method: "POST", path: "/embed", content_type: j, body: b"[\"a\"]".to_vec(), status: 400 },
        Bad { method: "POST", path: "/embed", content_type: j, body: b"{\"texts\": [\"a\"], \"normalize\": \"yes\"}".to_vec(), status: 400 },
        Bad { method: "POST", path: "/embed", content_type: Some("text/plain"), body: b"{\"texts\": [\"a\"]}".to_vec(), status: 415 },
        Bad { method: "POST", path: "/embed", content_type: None, body: b"{\"texts\": [\"a\"]}".to_vec(), status: 415 },
        Bad { method: "POST", path: "/embed", content_type: j, body: vec![0xff, 0xfe, 0x00, 0x7b], status: 400 },
        Bad { method: "POST", path: "/embed", content_type: j, body: too_many, status: 413 },
        Bad { method: "POST", path: "/embed", content_type: j, body: huge, status: 413 },
        Bad { method: "GET", path: "/embed", content_type: None, body: vec![], status: 405 },
        Bad { method: "POST", path: "/nothing", content_type: j, body: b"{}".to_vec(), status: 404 },
    ]
}

/// Settings of a load run.
#[derive(Clone, Copy)]
pub struct LoadOptions {
    /// The server process (its memory is read).
    pub pid: u32,
    pub clients: usize,
    pub duration: Duration,
    /// Malformed requests spread evenly over the run.
    pub malformed: usize,
    /// Texts per valid request: 1 to this many.
    pub max_texts_per_request: usize,
    /// Warm-up before the clock starts (and the first memory reading).
    pub warmup: Duration,
    /// The server's --max-texts and --max-body-bytes (to build requests just beyond them).
    pub server_max_texts: usize,
    pub server_max_body: usize,
    /// Largest difference from the reference vectors still counted correct.
    pub max_diff: f32,
}

/// What a load run saw.
#[derive(Debug, Default)]
pub struct LoadReport {
    pub valid_requests: usize,
    pub valid_texts: usize,
    pub valid_ok: usize,
    /// A 200 whose vectors differ from `mtt embed`'s, or a wrong status for a valid request.
    pub wrong: Vec<String>,
    pub malformed_sent: usize,
    pub malformed_expected_status: usize,
    pub malformed_wrong: Vec<String>,
    /// 503s (queue full) among valid requests: counted, not wrong.
    pub busy: usize,
    pub seconds: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub mean_ms: f64,
    pub requests_per_s: f64,
    pub texts_per_s: f64,
    pub rss_after_warmup_kib: u64,
    pub rss_end_kib: u64,
    pub max_abs_diff: f32,
}

fn status_of(r: Result<ureq::Response, ureq::Error>) -> Result<(u16, String), String> {
    match r {
        Ok(resp) => {
            let s = resp.status();
            resp.into_string().map(|b| (s, b)).map_err(|e| e.to_string())
        }
        Err(ureq::Error::Status(s, resp)) => Ok((s, resp.into_string().unwrap_or_default())),
        Err(e) => Err(e.to_string()),
    }
}

fn l2(v: &[f32]) -> Vec<f32> {
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
    v.iter().map(|x| x / n).collect()
}

/// Runs the load: `opts.clients` threads, each sending valid `/embed` requests (texts drawn from
/// `texts`, `normalize` alternating) and, when the run's pace asks for one, a malformed request.
///
/// The warm-up is the same load for `opts.warmup` (its malformed share included), so the memory
/// reading after it sees the server at the concurrency it is measured at.
pub fn run(url: &str, texts: &[String], expected: &HashMap<String, Vec<f32>>, opts: &LoadOptions) -> LoadReport {
    let agent = ureq::AgentBuilder::new().timeout(Duration::from_secs(60)).build();
    let warm = LoadOptions { duration: opts.warmup, malformed: (opts.malformed as f64 * opts.warmup.as_secs_f64() / opts.duration.as_secs_f64()) as usize, ..*opts };
    let w = phase(&agent, url, texts, expected, &warm);
    assert!(w.wrong.is_empty() && w.malformed_wrong.is_empty(), "warm-up: {:?} {:?}", w.wrong.first(), w.malformed_wrong.first());
    let mut r = phase(&agent, url, texts, expected, opts);
    r.rss_after_warmup_kib = w.rss_end_kib;
    r
}

fn phase(agent: &ureq::Agent, url: &str, texts: &[String], expected: &HashMap<String, Vec<f32>>, opts: &LoadOptions) -> LoadReport {
    let pid = opts.pid;
    let kinds = Arc::new(malformed_kinds(opts.server_max_texts, opts.server_max_body));
    let report = Arc::new(Mutex::new(LoadReport::default()));
    let latencies = Arc::new(Mutex::new(Vec::<f64>::new()));
    let malformed_sent = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let end = start + opts.duration;
    std::thread::scope(|s| {
        for c in 0..opts.clients {
            let (agent, kinds, report, latencies, malformed_sent) = (agent.clone(), kinds.clone(), report.clone(), latencies.clone(), malformed_sent.clone());
            s.spawn(move || {
                let mut rng = 0x9e37_79b9_7f4a_7c15u64 ^ (c as u64 + 1).wrapping_mul(0x1234_5678_9abc_def1);
                let mut next = move || {
                    rng ^= rng << 13;
                    rng ^= rng >> 7;
                    rng ^= rng << 17;
                    rng
                };
                let mut i = 0usize;
                while Instant::now() < end {
                    i += 1;
                    // Malformed requests keep pace with the clock (their share of the run so far),
                    // all of them sent by 95% of the run.
                    let share = (start.elapsed().as_secs_f64() / (0.95 * opts.duration.as_secs_f64())).min(1.0);
                    let due = (opts.malformed as f64 * share).ceil() as usize;
                    if malformed_sent.load(Ordering::SeqCst) < due.min(opts.malformed) {
                        malformed_sent.fetch_add(1, Ordering::SeqCst);
                        let bad = &kinds[(next() % kinds.len() as u64) as usize];
                        let full = format!("{url}{}", bad.path);
                        let mut req = agent.request(bad.method, &full);
                        if let Some(ct) = bad.content_type {
                            req = req.set("Content-Type", ct);
                        }
                        let got = if bad.body.is_empty() && bad.method == "GET" { status_of(req.call()) } else { status_of(req.send_bytes(&bad.body)) };
                        let mut r = report.lock().unwrap();
                        match got {
                            Ok((s, body)) if s == bad.status && body.contains("\"error\"") => r.malformed_expected_status += 1,
                            Ok((s, body)) => r.malformed_wrong.push(format!("{} {}: {s} {}", bad.method, bad.path, &body[..body.len().min(120)])),
                            // A body over the limit may be cut off by the server before it is sent whole.
                            Err(e) if bad.status == 413 => {
                                let _ = e;
                                r.malformed_expected_status += 1
                            }
                            Err(e) => r.malformed_wrong.push(format!("{} {}: {e}", bad.method, bad.path)),
                        }
                        continue;
                    }
                    let n = 1 + (next() % opts.max_texts_per_request as u64) as usize;
                    let chosen: Vec<&String> = (0..n).map(|_| &texts[(next() % texts.len() as u64) as usize]).collect();
                    let normalize = i % 2 == 0;
                    let body = serde_json::to_vec(&serde_json::json!({ "texts": chosen, "normalize": normalize })).unwrap();
                    let t0 = Instant::now();
                    let got = status_of(agent.post(&format!("{url}/embed")).set("Content-Type", "application/json").send_bytes(&body));
                    let ms = t0.elapsed().as_secs_f64() * 1e3;
                    let mut r = report.lock().unwrap();
                    r.valid_requests += 1;
                    match got {
                        Ok((200, body)) => {
                            latencies.lock().unwrap().push(ms);
                            let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
                            let Some(rows) = v["embeddings"].as_array() else {
                                r.wrong.push(format!("200 without embeddings: {}", &body[..body.len().min(120)]));
                                continue;
                            };
                            let mut ok = rows.len() == chosen.len();
                            for (t, row) in chosen.iter().zip(rows) {
                                let got: Vec<f32> = row.as_array().map(|a| a.iter().filter_map(|x| x.as_f64()).map(|x| x as f32).collect()).unwrap_or_default();
                                let want = if normalize { l2(&expected[*t]) } else { expected[*t].clone() };
                                let diff = if got.len() == want.len() { got.iter().zip(&want).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max) } else { f32::INFINITY };
                                r.max_abs_diff = r.max_abs_diff.max(diff);
                                ok &= diff <= opts.max_diff;
                            }
                            if ok {
                                r.valid_ok += 1;
                                r.valid_texts += chosen.len();
                            } else {
                                r.wrong.push(format!("vectors differ from mtt embed's for {:?}", chosen));
                            }
                        }
                        Ok((503, _)) => r.busy += 1,
                        Ok((s, body)) => r.wrong.push(format!("valid request answered {s}: {}", &body[..body.len().min(200)])),
                        Err(e) => r.wrong.push(format!("valid request failed: {e}")),
                    }
                }
            });
        }
    });
    let seconds = start.elapsed().as_secs_f64();
    let mut lat = latencies.lock().unwrap().clone();
    lat.sort_by(f64::total_cmp);
    let pct = |p: f64| if lat.is_empty() { f64::NAN } else { lat[((lat.len() - 1) as f64 * p).round() as usize] };
    let mut r = std::mem::take(&mut *report.lock().unwrap());
    r.malformed_sent = malformed_sent.load(Ordering::SeqCst);
    r.seconds = seconds;
    r.p50_ms = pct(0.50);
    r.p99_ms = pct(0.99);
    r.mean_ms = if lat.is_empty() { f64::NAN } else { lat.iter().sum::<f64>() / lat.len() as f64 };
    r.requests_per_s = r.valid_ok as f64 / seconds;
    r.texts_per_s = r.valid_texts as f64 / seconds;
    r.rss_end_kib = rss_kib(pid);
    r
}

/// GET `url` + `path`: status and body.
pub fn get(url: &str, path: &str) -> (u16, String) {
    status_of(ureq::get(&format!("{url}{path}")).call()).expect("the server answers")
}

/// `NAME_sum` and `NAME_count` of a histogram in `/metrics`' text.
pub fn histogram_sum_count(metrics: &str, name: &str) -> (f64, u64) {
    let value = |suffix: &str| metrics.lines().find_map(|l| l.strip_prefix(&format!("{name}{suffix} "))).and_then(|v| v.trim().parse::<f64>().ok()).unwrap_or(0.0);
    (value("_sum"), value("_count") as u64)
}

/// Counts of `mtt_requests_total` by (route, status) from `/metrics`.
pub fn request_counts(metrics: &str) -> BTreeMap<(String, u16), u64> {
    let mut out = BTreeMap::new();
    for l in metrics.lines().filter(|l| l.starts_with("mtt_requests_total{")) {
        let route = l.split("route=\"").nth(1).and_then(|s| s.split('"').next()).unwrap_or("").to_string();
        let status = l.split("status=\"").nth(1).and_then(|s| s.split('"').next()).and_then(|s| s.parse().ok()).unwrap_or(0);
        let n = l.rsplit(' ').next().and_then(|s| s.parse().ok()).unwrap_or(0);
        out.insert((route, status), n);
    }
    out
}

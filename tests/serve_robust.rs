//! `mtt serve` against clients that misbehave at the connection level ("nothing lost, nothing
//! hung"), on the real binary and raw TCP sockets:
//! * SIGTERM while a client holds a half-sent request: the process exits within the grace period
//!   (`--shutdown-timeout`), closing idle and half-sent-head connections at once and cutting the
//!   request still in flight when the period runs out;
//! * a request head that trickles in or stops is closed after `--header-timeout`; a connection
//!   with nothing in progress after `--idle-timeout`; a body that stops arriving gets a 408;
//! * beyond `--max-connections`, new connections get a JSON 503 and are closed at once, file
//!   descriptors stay bounded, and `/health` answers again once the idle ones time out;
//! * every 4xx has a JSON body, including 411 (no Content-Length) and the 400/431 that hyper
//!   writes itself for a request it cannot parse; duplicated keys and `"normalize": null` are 400.

mod common;

use common::{bin, fixture, p};
use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// A `mtt serve` child whose stdout lines are kept (to read its shutdown report).
struct Proc {
    child: Child,
    addr: String,
    lines: mpsc::Receiver<String>,
}

impl Proc {
    #[allow(clippy::zombie_processes)]
    fn start(model: &Path, extra: &[&str]) -> Proc {
        let mut child = Command::new(bin("mtt"))
            .args(["serve", "--model", p(model), "--addr", "127.0.0.1:0"])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("mtt serve starts");
        let out = BufReader::new(child.stdout.take().expect("stdout"));
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for l in out.lines().map_while(Result::ok) {
                let _ = tx.send(l);
            }
        });
        let first = lines.recv_timeout(Duration::from_secs(60)).expect("mtt serve says where it listens");
        let addr = first.split("listening on http://").nth(1).unwrap_or_else(|| panic!("unexpected first line: {first}")).trim().to_string();
        Proc { child, addr, lines }
    }

    fn connect(&self) -> TcpStream {
        TcpStream::connect(&self.addr).expect("connect")
    }

    fn term(&self) {
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
    }

    /// Waits up to `limit` for the exit status.
    fn wait(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let end = Instant::now() + limit;
        while Instant::now() < end {
            if let Some(s) = self.child.try_wait().expect("try_wait") {
                return Some(s);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    fn fds(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.child.id())).map(|d| d.count()).unwrap_or(0)
    }

    fn metrics(&self) -> String {
        exchange(&self.addr, b"GET /metrics HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n").2
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// What a socket received until the server closed it (EOF or reset), and after how long; `None`
/// if it was still open after `limit`.
fn read_until_closed(s: &mut TcpStream, limit: Duration) -> Option<(Vec<u8>, Duration)> {
    let start = Instant::now();
    let mut got = Vec::new();
    let mut buf = [0u8; 65536];
    loop {
        let left = limit.checked_sub(start.elapsed())?;
        s.set_read_timeout(Some(left.max(Duration::from_millis(1)))).unwrap();
        match s.read(&mut buf) {
            Ok(0) => return Some((got, start.elapsed())),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => return None,
            Err(_) => return Some((got, start.elapsed())),
        }
    }
}

/// Status, lower-cased head and body of a raw HTTP answer.
fn parse(raw: &[u8]) -> (u16, String, String) {
    let text = String::from_utf8_lossy(raw).to_string();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or_else(|| panic!("no HTTP answer in {text:?}"));
    let status = head.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("no status in {head:?}"));
    (status, head.to_ascii_lowercase(), body.to_string())
}

/// Sends `request` on a new connection and reads the answer until the server closes.
fn exchange(addr: &str, request: &[u8]) -> (u16, String, String) {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.write_all(request).expect("send the request");
    let (raw, _) = read_until_closed(&mut s, Duration::from_secs(10)).expect("the server answers and closes");
    parse(&raw)
}

/// A 4xx whose body is `{"error": "..."}` containing `want`.
fn assert_json_error(answer: &(u16, String, String), status: u16, want: &str) {
    let (s, head, body) = answer;
    assert_eq!(*s, status, "{head}\n{body}");
    assert!(head.contains("content-type: application/json"), "{status}: not JSON:\n{head}");
    let v: serde_json::Value = serde_json::from_str(body).unwrap_or_else(|e| panic!("{status}: body {body:?}: {e}"));
    let msg = v["error"].as_str().unwrap_or_else(|| panic!("{status}: no \"error\" in {body}"));
    assert!(msg.contains(want), "{status}: want {want:?} in {msg:?}");
}

fn post_embed(body: &str) -> Vec<u8> {
    format!("POST /embed HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len()).into_bytes()
}

/// Case 7 (a). Before: the process ignored SIGTERM until the client holding the half-sent
/// request left. Now: idle and half-sent-head connections close at once, the request in flight
/// gets the grace period, then is cut, and the process exits 0 saying so.
#[test]
fn sigterm_with_half_sent_requests_exits_within_the_grace_period() {
    let f = fixture();
    let mut server = Proc::start(&f.model, &["--shutdown-timeout", "2", "--header-timeout", "30", "--idle-timeout", "30"]);
    // A whole head and one byte of a 100-byte body: a request in flight.
    let mut mid_body = server.connect();
    mid_body.write_all(b"POST /embed HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{").unwrap();
    // Half a head, then nothing.
    let mut half_head = server.connect();
    half_head.write_all(b"POST /embed HTTP/1.1\r\nContent-Le").unwrap();
    let mut idle = server.connect();
    std::thread::sleep(Duration::from_millis(300));
    let start = Instant::now();
    server.term();
    for (what, s) in [("half-sent head", &mut half_head), ("idle", &mut idle)] {
        let (got, after) = read_until_closed(s, Duration::from_secs(1)).unwrap_or_else(|| panic!("the {what} connection is still open 1 s after SIGTERM"));
        assert!(got.is_empty(), "{what}: {}", String::from_utf8_lossy(&got));
        println!("{what} connection closed {after:?} after SIGTERM");
    }
    read_until_closed(&mut mid_body, Duration::from_secs(5)).expect("the request in flight is cut after the grace period");
    let cut_at = start.elapsed();
    let status = server.wait(Duration::from_secs(5)).unwrap_or_else(|| panic!("mtt serve still runs {:?} after SIGTERM", start.elapsed()));
    let took = start.elapsed();
    println!("request in flight cut {cut_at:?} after SIGTERM; exited {status} after {took:?}");
    assert!(status.success(), "{status}");
    assert!(cut_at >= Duration::from_millis(1800), "the request in flight was cut {cut_at:?} after SIGTERM, before the 2 s grace period");
    assert!(took < Duration::from_secs(5), "{took:?}");
    let out: Vec<String> = server.lines.try_iter().collect();
    assert!(out.iter().any(|l| l.contains("grace period ran out: cut 1 connection still open")), "{out:?}");
    assert!(out.last().is_some_and(|l| l.contains("stopped")), "{out:?}");
}

/// Case 7 (b). Before: a head sent byte by byte, or half sent, held its connection (and file
/// descriptor) forever. Now: closed `--header-timeout` after its first byte, while a connection
/// that has sent nothing yet is left to `--idle-timeout`.
#[test]
fn a_head_that_trickles_or_stops_is_closed_after_the_header_timeout() {
    let f = fixture();
    let server = Proc::start(&f.model, &["--header-timeout", "1", "--idle-timeout", "4"]);
    let mut fresh = server.connect();
    let mut half = server.connect();
    half.write_all(b"GET /health HTTP/1.1\r\nHo").unwrap();
    let mut trickle = server.connect();
    let head = b"GET /health HTTP/1.1\r\nHost: t\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n";
    let start = Instant::now();
    let mut closed_at = None;
    for b in head {
        if trickle.write_all(&[*b]).is_err() {
            closed_at = Some(start.elapsed());
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
        if start.elapsed() > Duration::from_secs(4) {
            break;
        }
    }
    let trickle_closed = closed_at.or_else(|| read_until_closed(&mut trickle, Duration::from_millis(100)).map(|_| start.elapsed()));
    let trickle_closed = trickle_closed.expect("a head sent one byte per 100 ms is cut off");
    assert!(trickle_closed < Duration::from_millis(2500), "trickling head closed after {trickle_closed:?}");
    let (got, _) = read_until_closed(&mut half, Duration::from_secs(3)).expect("a half-sent head is closed");
    assert!(got.is_empty(), "{}", String::from_utf8_lossy(&got));
    // More than the header timeout later, the connection that sent nothing is still served.
    std::thread::sleep(Duration::from_millis(1500).saturating_sub(start.elapsed()));
    fresh.write_all(b"GET /health HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n").unwrap();
    let (raw, _) = read_until_closed(&mut fresh, Duration::from_secs(5)).expect("the health answer");
    assert_eq!(parse(&raw).0, 200);
    let m = server.metrics();
    assert!(m.contains("mtt_connection_timeouts_total{waiting_for=\"header\"} 2"), "{m}");
}

/// Case 7 (b), the other deadlines. Before: a body that stopped arriving, or a kept-alive
/// connection with no next request, stayed open forever. Now: a stalled body is answered 408
/// (JSON) and closed, idle connections are closed, after `--idle-timeout`.
#[test]
fn a_stalled_body_gets_408_and_idle_connections_are_closed_after_the_idle_timeout() {
    let f = fixture();
    let server = Proc::start(&f.model, &["--idle-timeout", "1", "--header-timeout", "5"]);
    let mut stalled = server.connect();
    stalled.write_all(b"POST /embed HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"texts\": [").unwrap();
    let mut silent = server.connect();
    let mut kept = server.connect();
    kept.write_all(b"GET /health HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
    let (raw, after) = read_until_closed(&mut stalled, Duration::from_secs(4)).expect("a stalled body is answered and closed");
    assert!(after >= Duration::from_millis(800), "408 after {after:?}");
    assert_json_error(&parse(&raw), 408, "no byte of the request body for 1 s");
    assert!(parse(&raw).1.contains("connection: close"));
    let (_, after) = read_until_closed(&mut silent, Duration::from_secs(4)).expect("a silent connection is closed");
    assert!(after < Duration::from_secs(3), "{after:?}");
    let (raw, _) = read_until_closed(&mut kept, Duration::from_secs(4)).expect("a kept-alive connection is closed when idle");
    assert_eq!(parse(&raw).0, 200, "the request before the idle time was answered");
    let m = server.metrics();
    assert!(m.contains("mtt_connection_timeouts_total{waiting_for=\"body\"} 1"), "{m}");
    assert!(m.contains("mtt_connection_timeouts_total{waiting_for=\"idle\"} 2"), "{m}");
}

/// Case 7 (c). Before: no cap: every connection held a file descriptor and a task for as long as
/// the client liked. Now: beyond `--max-connections`, a JSON 503 and an immediate close; once the
/// idle ones time out (their clients still connected), `/health` answers again and the server's
/// file descriptors are back to where they were.
#[test]
fn beyond_max_connections_new_ones_get_a_json_503_and_health_recovers() {
    let f = fixture();
    let server = Proc::start(&f.model, &["--max-connections", "4", "--idle-timeout", "1", "--header-timeout", "5"]);
    let fds_before = server.fds();
    let start = Instant::now();
    let mut conns: Vec<TcpStream> = (0..10).map(|_| server.connect()).collect();
    std::thread::sleep(Duration::from_millis(300));
    let (mut refused, mut open) = (0, 0);
    for c in &mut conns {
        c.set_nonblocking(true).unwrap();
        let mut buf = vec![0u8; 4096];
        match c.read(&mut buf) {
            Ok(n) if n > 0 => {
                assert_json_error(&parse(&buf[..n]), 503, "too many open connections (the limit is 4)");
                assert!(parse(&buf[..n]).1.contains("retry-after: 1"));
                refused += 1;
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => open += 1,
            other => panic!("{other:?}"),
        }
    }
    assert_eq!((refused, open), (6, 4));
    // Full: a new client is told so at once.
    let busy = exchange(&server.addr, b"GET /health HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_json_error(&busy, 503, "too many open connections");
    assert!(start.elapsed() < Duration::from_millis(900), "the checks while full took {:?}: the idle timeout may have freed slots", start.elapsed());
    // The clients keep every socket open: the server closes the idle ones after --idle-timeout 1
    // and the refused ones after their lingering close (1 s at most).
    std::thread::sleep(Duration::from_millis(1500));
    let (s, _, body) = exchange(&server.addr, b"GET /health HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    assert_eq!(s, 200, "{body}");
    let m = server.metrics();
    assert!(m.contains("mtt_connections_refused_total 7"), "{m}");
    assert!(m.contains("mtt_connections_open 1"), "{m}");
    assert!(m.contains("mtt_connection_timeouts_total{waiting_for=\"idle\"} 4"), "{m}");
    std::thread::sleep(Duration::from_millis(200));
    let fds_after = server.fds();
    assert!(fds_after <= fds_before + 1, "file descriptors: {fds_before} before, {fds_after} after");
    for c in &mut conns {
        c.set_nonblocking(false).unwrap();
        assert!(read_until_closed(c, Duration::from_millis(100)).is_some(), "every connection was closed by the server");
    }
}

/// Case 13. Before: a POST without Content-Length was parsed as an empty body (400 invalid
/// JSON); `"normalize": null` meant false; a duplicated key kept its last value; hyper's own
/// 400/431 had an empty body. Now: 411, 400, 400 naming the key, and JSON bodies throughout.
#[test]
fn every_4xx_has_a_json_body_and_ambiguous_requests_are_refused() {
    let f = fixture();
    let server = Proc::start(&f.model, &[]);
    let a = server.addr.as_str();
    let no_length = b"POST /embed HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n";
    assert_json_error(&exchange(a, no_length), 411, "Content-Length");
    let chunked = b"POST /embed HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n10\r\n{\"texts\": [\"a\"]}\r\n0\r\n\r\n";
    let (s, _, body) = exchange(a, chunked);
    assert_eq!(s, 200, "a chunked body is fine: {body}");
    assert_json_error(&exchange(a, &post_embed(r#"{"texts": ["a"], "normalize": null}"#)), 400, "\"normalize\" must be true or false");
    assert_json_error(&exchange(a, &post_embed(r#"{"texts": ["a"], "texts": ["b"]}"#)), 400, "duplicate field \"texts\"");
    assert_json_error(&exchange(a, &post_embed(r#"{"texts": ["a"], "normalize": true, "normalize": false}"#)), 400, "duplicate field \"normalize\"");
    assert_json_error(&exchange(a, &post_embed(r#"{"texts": ["a"], "normalize": 1}"#)), 400, "\"normalize\" must be true or false");
    let (s, _, _) = exchange(a, &post_embed(r#"{"texts": ["a"], "normalize": true}"#));
    assert_eq!(s, 200);
    assert_json_error(&exchange(a, b"GET /embed HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"), 405, "this route takes POST");
    assert_json_error(&exchange(a, b"DELETE /health HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"), 405, "this route takes GET");
    assert_json_error(&exchange(a, b"GET /nothing HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"), 404, "no route GET /nothing");
    assert_json_error(&exchange(a, b"POST /predict HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"), 404, "base encoder");
    let huge = b"POST /embed HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nContent-Length: 99999999\r\n\r\n{";
    assert_json_error(&exchange(a, huge), 413, "the limit is");
    assert_json_error(&exchange(a, b"POST /embed HTTP/1.1\r\nHost: t\r\nContent-Type: text/plain\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}"), 415, "send application/json");
    // hyper answers these itself (the router never sees them): rewritten to JSON by the server.
    assert_json_error(&exchange(a, b"NOT HTTP AT ALL\r\n\r\n"), 400, "malformed HTTP request");
    assert_json_error(&exchange(a, b"GET /health HTTP/1.1\r\nHost: t\r\nBad Header Name: x\r\n\r\n"), 400, "malformed HTTP request");
    let mut big = b"GET /health HTTP/1.1\r\nHost: t\r\nX-Big: ".to_vec();
    big.resize(big.len() + 200_000, b'a');
    big.extend_from_slice(b"\r\n\r\n");
    assert_json_error(&exchange(a, &big), 431, "over the limit of 65536 bytes");
    // The server is unharmed, and keeps the connection of a good request alive as before.
    let mut s = server.connect();
    for _ in 0..2 {
        s.write_all(b"GET /health HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
        let mut buf = [0u8; 4096];
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let n = s.read(&mut buf).unwrap();
        assert_eq!(parse(&buf[..n]).0, 200);
    }
    let (_, head, _) = exchange(a, b"GET /nothing HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    assert!(head.starts_with("http/1.1 404"), "{head}");
    let m = server.metrics();
    assert!(m.contains("mtt_requests_total{route=\"/embed\",status=\"411\"} 1"), "{m}");
}

/// `--api-key` (here through `$MTT_API_KEY`): every route but `/health` needs the bearer key, a
/// missing or wrong one is a JSON 401 counted in `/metrics`; without a key, an address other
/// machines can reach is refused unless `--allow-unauthenticated`.
#[test]
fn an_api_key_guards_every_route_but_health_and_exposed_addresses_need_one() {
    let f = fixture();
    let mut child = Command::new(bin("mtt"))
        .args(["serve", "--model", p(&f.model), "--addr", "127.0.0.1:0"])
        .env("MTT_API_KEY", "s3cret")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("mtt serve starts");
    let mut out = BufReader::new(child.stdout.take().expect("stdout"));
    let mut first = String::new();
    out.read_line(&mut first).unwrap();
    let addr = first.split("listening on http://").nth(1).unwrap_or_else(|| panic!("unexpected first line: {first}")).trim().to_string();
    let with = |auth: Option<&str>, path: &str, body: Option<&str>| {
        let auth = auth.map(|a| format!("Authorization: {a}\r\n")).unwrap_or_default();
        let req = match body {
            Some(b) => format!("POST {path} HTTP/1.1\r\nHost: t\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{b}", b.len()),
            None => format!("GET {path} HTTP/1.1\r\nHost: t\r\n{auth}Connection: close\r\n\r\n"),
        };
        exchange(&addr, req.as_bytes())
    };
    let body = Some(r#"{"texts": ["the film"]}"#);
    assert_eq!(with(None, "/health", None).0, 200);
    let missing = with(None, "/embed", body);
    assert_json_error(&missing, 401, "needs an API key");
    assert!(missing.1.contains("www-authenticate: bearer"), "{}", missing.1);
    assert_json_error(&with(Some("Bearer wrong"), "/embed", body), 401, "not valid");
    assert_json_error(&with(Some("s3cret"), "/embed", body), 401, "not valid");
    assert_json_error(&with(None, "/metrics", None), 401, "needs an API key");
    assert_eq!(with(Some("Bearer s3cret"), "/embed", body).0, 200);
    let metrics = with(Some("Bearer s3cret"), "/metrics", None);
    assert_eq!(metrics.0, 200);
    let unauthorized: f64 = metrics.2.lines().filter(|l| l.starts_with("mtt_requests_total{") && l.contains("status=\"401\"")).filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok()).sum();
    assert_eq!(unauthorized, 4.0, "{}", metrics.2);
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let _ = child.wait();

    // Listening on every interface without a key is refused before the model loads.
    let refused = Command::new(bin("mtt")).args(["serve", "--model", p(&f.model), "--addr", "0.0.0.0:0"]).env_remove("MTT_API_KEY").output().unwrap();
    let err = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(1), "{err}");
    assert!(err.contains("can be reached from other machines, and no API key is set") && err.contains("--allow-unauthenticated"), "{err}");
    let mut allowed = Command::new(bin("mtt"))
        .args(["serve", "--model", p(&f.model), "--addr", "0.0.0.0:0", "--allow-unauthenticated"])
        .env_remove("MTT_API_KEY")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(allowed.stdout.take().unwrap()).read_line(&mut line).unwrap();
    assert!(line.contains("listening on http://0.0.0.0:"), "{line}");
    unsafe { libc::kill(allowed.id() as i32, libc::SIGTERM) };
    let _ = allowed.wait();
}

//! `/metrics`: request, batch, text, queue and connection counters in Prometheus' text format.

use super::*;

pub(super) const LATENCY_BUCKETS: [f64; 12] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0];
pub(super) const BATCH_BUCKETS: [f64; 10] = [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0];

#[derive(Default)]
pub(super) struct Histogram {
    pub(super) counts: Vec<u64>,
    pub(super) sum: f64,
    pub(super) n: u64,
}

impl Histogram {
    fn observe(&mut self, bounds: &[f64], v: f64) {
        if self.counts.is_empty() {
            self.counts = vec![0; bounds.len()];
        }
        for (c, b) in self.counts.iter_mut().zip(bounds) {
            if v <= *b {
                *c += 1;
            }
        }
        self.sum += v;
        self.n += 1;
    }

    fn write(&self, out: &mut String, name: &str, labels: &str, bounds: &[f64]) {
        let sep = if labels.is_empty() { "" } else { "," };
        for (i, b) in bounds.iter().enumerate() {
            let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"{b}\"}} {}", self.counts.get(i).copied().unwrap_or(0));
        }
        let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {}", self.n);
        let braces = if labels.is_empty() { String::new() } else { format!("{{{labels}}}") };
        let _ = writeln!(out, "{name}_sum{braces} {}", self.sum);
        let _ = writeln!(out, "{name}_count{braces} {}", self.n);
    }
}

/// The service's counters, in Prometheus text format at `/metrics`.
#[derive(Default)]
pub struct Metrics {
    pub(super) requests: Mutex<BTreeMap<(String, u16), u64>>,
    pub(super) latency: Mutex<BTreeMap<String, Histogram>>,
    pub(super) batches: Mutex<Histogram>,
    /// Seconds of each batch in the model thread: padding, the forward pass, reading back.
    pub(super) forward: Mutex<Histogram>,
    pub(super) texts: Mutex<BTreeMap<String, u64>>,
    pub(super) queue_depth: AtomicUsize,
    pub(super) connections_open: AtomicUsize,
    pub(super) connections_accepted: AtomicU64,
    pub(super) connections_refused: AtomicU64,
    /// Connections closed by a timeout, by what the server was waiting for.
    pub(super) connection_timeouts: Mutex<BTreeMap<&'static str, u64>>,
}

impl Metrics {
    pub(super) fn observe_request(&self, route: &str, status: u16, seconds: f64) {
        *self.requests.lock().unwrap_or_else(|e| e.into_inner()).entry((route.to_string(), status)).or_default() += 1;
        self.latency.lock().unwrap_or_else(|e| e.into_inner()).entry(route.to_string()).or_default().observe(&LATENCY_BUCKETS, seconds);
    }

    pub(super) fn observe_batch(&self, rows: usize) {
        self.batches.lock().unwrap_or_else(|e| e.into_inner()).observe(&BATCH_BUCKETS, rows as f64);
    }

    pub(super) fn observe_forward(&self, seconds: f64) {
        self.forward.lock().unwrap_or_else(|e| e.into_inner()).observe(&LATENCY_BUCKETS, seconds);
    }

    pub(super) fn observe_timeout(&self, waiting_for: &'static str) {
        *self.connection_timeouts.lock().unwrap_or_else(|e| e.into_inner()).entry(waiting_for).or_default() += 1;
    }

    pub(super) fn observe_texts(&self, route: &str, n: usize) {
        *self.texts.lock().unwrap_or_else(|e| e.into_inner()).entry(route.to_string()).or_default() += n as u64;
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        out.push_str("# HELP mtt_requests_total HTTP requests by route and status.\n# TYPE mtt_requests_total counter\n");
        for ((route, status), n) in self.requests.lock().unwrap_or_else(|e| e.into_inner()).iter() {
            let _ = writeln!(out, "mtt_requests_total{{route=\"{route}\",status=\"{status}\"}} {n}");
        }
        out.push_str("# HELP mtt_errors_total HTTP requests answered with a 4xx or 5xx status, by route and status.\n# TYPE mtt_errors_total counter\n");
        for ((route, status), n) in self.requests.lock().unwrap_or_else(|e| e.into_inner()).iter().filter(|((_, s), _)| *s >= 400) {
            let _ = writeln!(out, "mtt_errors_total{{route=\"{route}\",status=\"{status}\"}} {n}");
        }
        out.push_str("# HELP mtt_request_duration_seconds Time from request to response, by route.\n# TYPE mtt_request_duration_seconds histogram\n");
        for (route, h) in self.latency.lock().unwrap_or_else(|e| e.into_inner()).iter() {
            h.write(&mut out, "mtt_request_duration_seconds", &format!("route=\"{route}\""), &LATENCY_BUCKETS);
        }
        out.push_str("# HELP mtt_batch_size Texts per forward pass of the model.\n# TYPE mtt_batch_size histogram\n");
        self.batches.lock().unwrap_or_else(|e| e.into_inner()).write(&mut out, "mtt_batch_size", "", &BATCH_BUCKETS);
        out.push_str("# HELP mtt_forward_seconds Time of each batch in the model thread (padding, forward pass, reading the outputs back).\n# TYPE mtt_forward_seconds histogram\n");
        self.forward.lock().unwrap_or_else(|e| e.into_inner()).write(&mut out, "mtt_forward_seconds", "", &LATENCY_BUCKETS);
        out.push_str("# HELP mtt_texts_total Texts served, by route.\n# TYPE mtt_texts_total counter\n");
        for (route, n) in self.texts.lock().unwrap_or_else(|e| e.into_inner()).iter() {
            let _ = writeln!(out, "mtt_texts_total{{route=\"{route}\"}} {n}");
        }
        out.push_str("# HELP mtt_queue_depth Requests waiting for the model thread.\n# TYPE mtt_queue_depth gauge\n");
        let _ = writeln!(out, "mtt_queue_depth {}", self.queue_depth.load(Ordering::SeqCst));
        out.push_str("# HELP mtt_connections_open Client connections open.\n# TYPE mtt_connections_open gauge\n");
        let _ = writeln!(out, "mtt_connections_open {}", self.connections_open.load(Ordering::SeqCst));
        out.push_str("# HELP mtt_connections_accepted_total Client connections accepted and served.\n# TYPE mtt_connections_accepted_total counter\n");
        let _ = writeln!(out, "mtt_connections_accepted_total {}", self.connections_accepted.load(Ordering::SeqCst));
        out.push_str("# HELP mtt_connections_refused_total Connections answered 503 and closed at once: --max-connections were open.\n# TYPE mtt_connections_refused_total counter\n");
        let _ = writeln!(out, "mtt_connections_refused_total {}", self.connections_refused.load(Ordering::SeqCst));
        out.push_str("# HELP mtt_connection_timeouts_total Connections closed by a timeout, by what the server waited for (header, idle, body, write).\n# TYPE mtt_connection_timeouts_total counter\n");
        for (what, n) in self.connection_timeouts.lock().unwrap_or_else(|e| e.into_inner()).iter() {
            let _ = writeln!(out, "mtt_connection_timeouts_total{{waiting_for=\"{what}\"}} {n}");
        }
        out
    }
}

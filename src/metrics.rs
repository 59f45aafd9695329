//! Counters for operators, served in Prometheus text format at `GET /metrics` on
//! `--metrics-addr`. Everything on the hot path is a relaxed atomic add.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::error_code::ErrorCode;

/// A monotonically growing count.
#[derive(Default)]
pub(crate) struct Counter(AtomicU64);

impl Counter {
    pub(crate) fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }

    pub(crate) fn inc(&self) {
        self.add(1);
    }

    pub(crate) fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Upper bounds of the latency buckets, in microseconds.
const BUCKETS_US: [u64; 8] = [50, 100, 250, 500, 1_000, 5_000, 25_000, 100_000];

/// A latency histogram with fixed buckets (Prometheus `histogram`).
#[derive(Default)]
pub(crate) struct Histogram {
    /// Counts per bucket of `BUCKETS_US`, then the overflow bucket.
    buckets: [Counter; BUCKETS_US.len() + 1],
    sum_us: Counter,
}

impl Histogram {
    pub(crate) fn observe(&self, took: Duration) {
        let us = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        let slot = BUCKETS_US
            .iter()
            .position(|&bound| us <= bound)
            .unwrap_or(BUCKETS_US.len());
        self.buckets[slot].inc();
        self.sum_us.add(us);
    }

    /// Writes the histogram's series, with `labels` (e.g. `op="send"`) on each.
    pub(crate) fn render(&self, out: &mut String, name: &str, labels: &str) {
        let sep = if labels.is_empty() { "" } else { "," };
        let mut cumulative = 0;
        for (bound, bucket) in BUCKETS_US.iter().zip(&self.buckets) {
            cumulative += bucket.get();
            let le = *bound as f64 / 1e6;
            let _ = writeln!(
                out,
                "{name}_bucket{{{labels}{sep}le=\"{le}\"}} {cumulative}"
            );
        }
        cumulative += self.buckets[BUCKETS_US.len()].get();
        let _ = writeln!(
            out,
            "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {cumulative}"
        );
        let labels = if labels.is_empty() {
            String::new()
        } else {
            format!("{{{labels}}}")
        };
        let _ = writeln!(out, "{name}_sum{labels} {}", self.sum_us.get() as f64 / 1e6);
        let _ = writeln!(out, "{name}_count{labels} {cumulative}");
    }
}

/// Writes one `# HELP`/`# TYPE` header.
pub(crate) fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// Writes a metric with no labels.
pub(crate) fn single(out: &mut String, name: &str, kind: &str, help: &str, value: u64) {
    header(out, name, kind, help);
    let _ = writeln!(out, "{name} {value}");
}

/// The transport's counters, kept in the reactor.
#[derive(Default)]
pub(crate) struct TransportMetrics {
    pub(crate) accepted: Counter,
    pub(crate) refused: Counter,
    pub(crate) bytes_in: Counter,
    pub(crate) bytes_out: Counter,
    pub(crate) frames_out: Counter,
    pub(crate) slow_consumer_closes: Counter,
    pub(crate) idle_closes: Counter,
}

impl TransportMetrics {
    pub(crate) fn render(&self, out: &mut String, open: usize) {
        single(
            out,
            "parlor_connections_open",
            "gauge",
            "Connections open now.",
            open as u64,
        );
        single(
            out,
            "parlor_connections_total",
            "counter",
            "Connections accepted.",
            self.accepted.get(),
        );
        single(
            out,
            "parlor_connections_refused_total",
            "counter",
            "Connections refused by a limit.",
            self.refused.get(),
        );
        single(
            out,
            "parlor_bytes_in_total",
            "counter",
            "Bytes received from clients.",
            self.bytes_in.get(),
        );
        single(
            out,
            "parlor_bytes_out_total",
            "counter",
            "Bytes written to clients.",
            self.bytes_out.get(),
        );
        single(
            out,
            "parlor_frames_out_total",
            "counter",
            "Frames written to clients.",
            self.frames_out.get(),
        );
        single(
            out,
            "parlor_slow_consumer_closes_total",
            "counter",
            "Connections cut off for not reading.",
            self.slow_consumer_closes.get(),
        );
        single(
            out,
            "parlor_idle_closes_total",
            "counter",
            "Connections closed for idling.",
            self.idle_closes.get(),
        );
    }
}

/// Answers one HTTP request for the metrics: `GET /metrics` gets `body`, anything
/// else a 404. Returns the whole response.
pub(crate) fn http_response(request: &[u8], body: impl FnOnce() -> String) -> Vec<u8> {
    let line = request
        .split(|&b| b == b'\r' || b == b'\n')
        .next()
        .unwrap_or_default();
    let mut parts = line.split(|&b| b == b' ');
    let (method, path) = (parts.next(), parts.next());
    let (status, content_type, body) = match (method, path) {
        (Some(b"GET"), Some(b"/metrics")) => ("200 OK", "text/plain; version=0.0.4", body()),
        _ => (
            "404 Not Found",
            "text/plain",
            "try GET /metrics\n".to_owned(),
        ),
    };
    let mut response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    response.extend_from_slice(body.as_bytes());
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative() {
        let h = Histogram::default();
        h.observe(Duration::from_micros(10));
        h.observe(Duration::from_millis(2));
        h.observe(Duration::from_secs(1));
        let mut out = String::new();
        h.render(&mut out, "x", "op=\"send\"");
        assert!(
            out.contains("x_bucket{op=\"send\",le=\"0.00005\"} 1\n"),
            "{out}"
        );
        assert!(
            out.contains("x_bucket{op=\"send\",le=\"0.005\"} 2\n"),
            "{out}"
        );
        assert!(
            out.contains("x_bucket{op=\"send\",le=\"+Inf\"} 3\n"),
            "{out}"
        );
        assert!(out.contains("x_count{op=\"send\"} 3\n"), "{out}");
    }

    #[test]
    fn only_get_metrics_is_served() {
        let ok = http_response(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n", || {
            "a 1\n".into()
        });
        assert!(ok.starts_with(b"HTTP/1.1 200 OK\r\n"));
        assert!(ok.ends_with(b"\r\n\r\na 1\n"));
        let missing = http_response(b"GET / HTTP/1.1\r\n\r\n", String::new);
        assert!(missing.starts_with(b"HTTP/1.1 404"));
    }
}

/// The error codes counted by name; others count as `other`.
const ERROR_NAMES: &[&str] = ErrorCode::KNOWN;

/// The chat service's counters.
pub(crate) struct ChatMetrics {
    pub(crate) frames_in: Counter,
    pub(crate) messages: Counter,
    pub(crate) deliveries: Counter,
    pub(crate) logins_ok: Counter,
    pub(crate) logins_failed: Counter,
    /// Error responses, by `ERROR_NAMES` index, then `other`.
    errors: [Counter; ERROR_NAMES.len() + 1],
    /// Time to handle a request, by op name (the built-in ops, then `custom`).
    latency: Vec<(&'static str, Histogram)>,
}

impl ChatMetrics {
    /// Counters for the ops named `ops` (the built-in ones; embedder commands count
    /// together as `custom`).
    pub(crate) fn new(ops: impl Iterator<Item = &'static str>) -> ChatMetrics {
        ChatMetrics {
            frames_in: Counter::default(),
            messages: Counter::default(),
            deliveries: Counter::default(),
            logins_ok: Counter::default(),
            logins_failed: Counter::default(),
            errors: Default::default(),
            latency: ops
                .chain(["custom"])
                .map(|op| (op, Histogram::default()))
                .collect(),
        }
    }

    pub(crate) fn error(&self, code: &str) {
        let slot = ERROR_NAMES
            .iter()
            .position(|&name| name == code)
            .unwrap_or(ERROR_NAMES.len());
        self.errors[slot].inc();
    }

    /// Records how long op `op` took (unknown names count as `custom`).
    pub(crate) fn handled(&self, op: &str, took: Duration) {
        let last = self.latency.len() - 1;
        let slot = self
            .latency
            .iter()
            .position(|(name, _)| *name == op)
            .unwrap_or(last);
        self.latency[slot].1.observe(took);
    }

    pub(crate) fn render(&self, out: &mut String, hash_queue: usize) {
        single(
            out,
            "parlor_frames_in_total",
            "counter",
            "Request frames received.",
            self.frames_in.get(),
        );
        single(
            out,
            "parlor_messages_total",
            "counter",
            "Room messages sent.",
            self.messages.get(),
        );
        single(
            out,
            "parlor_deliveries_total",
            "counter",
            "Message and DM events queued to connections.",
            self.deliveries.get(),
        );
        header(
            out,
            "parlor_logins_total",
            "counter",
            "Finished login attempts.",
        );
        let _ = writeln!(
            out,
            "parlor_logins_total{{result=\"ok\"}} {}",
            self.logins_ok.get()
        );
        let _ = writeln!(
            out,
            "parlor_logins_total{{result=\"failed\"}} {}",
            self.logins_failed.get()
        );
        header(
            out,
            "parlor_errors_total",
            "counter",
            "Error responses, by code.",
        );
        for (name, count) in ERROR_NAMES.iter().chain(["other"].iter()).zip(&self.errors) {
            let _ = writeln!(
                out,
                "parlor_errors_total{{code=\"{name}\"}} {}",
                count.get()
            );
        }
        single(
            out,
            "parlor_hash_queue_depth",
            "gauge",
            "Password hashes waiting for a thread.",
            hash_queue as u64,
        );
        header(
            out,
            "parlor_op_seconds",
            "histogram",
            "Time to handle a request, by op.",
        );
        for (op, histogram) in &self.latency {
            histogram.render(out, "parlor_op_seconds", &format!("op=\"{op}\""));
        }
    }
}

/// The store's counters.
#[derive(Default)]
pub(crate) struct StoreMetrics {
    pub(crate) commits: Counter,
    pub(crate) writes: Counter,
    pub(crate) commit_time: Histogram,
}

impl StoreMetrics {
    pub(crate) fn render(&self, out: &mut String) {
        single(
            out,
            "parlor_store_commits_total",
            "counter",
            "Group commits.",
            self.commits.get(),
        );
        single(
            out,
            "parlor_store_writes_total",
            "counter",
            "Writes committed (writes / commits is the mean batch size).",
            self.writes.get(),
        );
        header(
            out,
            "parlor_store_commit_seconds",
            "histogram",
            "Time per group commit.",
        );
        self.commit_time
            .render(out, "parlor_store_commit_seconds", "");
    }
}

//! Counters for operators, served in Prometheus text format at `GET /metrics` on
//! `--metrics-addr` (the endpoint is `transport::metrics_endpoint`).
//!
//! The text is written by `prometheus-client`. The counters themselves stay plain
//! relaxed atomics, read only when a scrape encodes them: on the hot path a count is
//! one atomic add, and a latency one more (`prometheus-client`'s own histogram
//! takes a lock per observation, which every worker would contend on).

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::error_code::ErrorCode;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;

/// Where a scrape's metrics are written (one descriptor and its samples at a time).
pub(crate) type Encoder<'a> = DescriptorEncoder<'a>;

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

/// A latency histogram with fixed buckets (Prometheus `histogram`, in seconds).
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
}

impl fmt::Debug for Histogram {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Histogram").finish_non_exhaustive()
    }
}

impl EncodeMetric for Histogram {
    fn encode(&self, mut encoder: prometheus_client::encoding::MetricEncoder) -> fmt::Result {
        // Per-bucket counts (not cumulative): the encoder accumulates them.
        let mut buckets: Vec<(f64, u64)> = BUCKETS_US
            .iter()
            .zip(&self.buckets)
            .map(|(&bound, count)| (bound as f64 / 1e6, count.get()))
            .collect();
        buckets.push((f64::INFINITY, self.buckets[BUCKETS_US.len()].get()));
        let count = buckets.iter().map(|&(_, n)| n).sum();
        let sum = self.sum_us.get() as f64 / 1e6;
        encoder.encode_histogram::<NoLabelSet>(sum, count, &buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Histogram
    }
}

/// Writes a counter with no labels. `name` is without the `_total` the encoder adds.
pub(crate) fn counter(out: &mut Encoder<'_>, name: &str, help: &str, value: u64) -> fmt::Result {
    let metric = ConstCounter::new(value);
    metric.encode(out.encode_descriptor(name, help, None, metric.metric_type())?)
}

/// Writes a gauge with no labels.
pub(crate) fn gauge(out: &mut Encoder<'_>, name: &str, help: &str, value: u64) -> fmt::Result {
    let metric = ConstGauge::new(i64::try_from(value).unwrap_or(i64::MAX));
    metric.encode(out.encode_descriptor(name, help, None, metric.metric_type())?)
}

/// Writes one metric with a sample per label value: `label="value"` for each pair of
/// `samples`.
fn family<'m, M: EncodeMetric + 'm>(
    out: &mut Encoder<'_>,
    name: &str,
    help: &str,
    kind: MetricType,
    label: &str,
    samples: impl IntoIterator<Item = (&'m str, &'m M)>,
) -> fmt::Result {
    let mut encoder = out.encode_descriptor(name, help, None, kind)?;
    for (value, metric) in samples {
        let labels = [(label, value)];
        metric.encode(encoder.encode_family(&labels)?)?;
    }
    Ok(())
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
    /// Writes the transport's metrics; `open` is the number of connections open now.
    pub(crate) fn encode(&self, out: &mut Encoder<'_>, open: usize) -> fmt::Result {
        let open = u64::try_from(open).unwrap_or(u64::MAX);
        gauge(
            out,
            "parlor_connections_open",
            "Connections open now.",
            open,
        )?;
        let counters = [
            (
                "parlor_connections",
                "Connections accepted.",
                &self.accepted,
            ),
            (
                "parlor_connections_refused",
                "Connections refused by a limit.",
                &self.refused,
            ),
            (
                "parlor_bytes_in",
                "Bytes received from clients.",
                &self.bytes_in,
            ),
            (
                "parlor_bytes_out",
                "Bytes written to clients.",
                &self.bytes_out,
            ),
            (
                "parlor_frames_out",
                "Frames written to clients.",
                &self.frames_out,
            ),
            (
                "parlor_slow_consumer_closes",
                "Connections cut off for not reading.",
                &self.slow_consumer_closes,
            ),
            (
                "parlor_idle_closes",
                "Connections closed for idling.",
                &self.idle_closes,
            ),
        ];
        for (name, help, value) in counters {
            counter(out, name, help, value.get())?;
        }
        Ok(())
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

    /// Writes the chat metrics; `hash_queue` is the number of hashes waiting now.
    pub(crate) fn encode(&self, out: &mut Encoder<'_>, hash_queue: usize) -> fmt::Result {
        counter(
            out,
            "parlor_frames_in",
            "Request frames received.",
            self.frames_in.get(),
        )?;
        counter(
            out,
            "parlor_messages",
            "Room messages sent.",
            self.messages.get(),
        )?;
        counter(
            out,
            "parlor_deliveries",
            "Message and DM events queued to connections.",
            self.deliveries.get(),
        )?;
        let logins = [
            ("ok", ConstCounter::new(self.logins_ok.get())),
            ("failed", ConstCounter::new(self.logins_failed.get())),
        ];
        family(
            out,
            "parlor_logins",
            "Finished login attempts.",
            MetricType::Counter,
            "result",
            logins.iter().map(|(result, n)| (*result, n)),
        )?;
        let errors: Vec<_> = (ERROR_NAMES.iter().chain(["other"].iter()))
            .zip(&self.errors)
            .map(|(&code, n)| (code, ConstCounter::new(n.get())))
            .collect();
        family(
            out,
            "parlor_errors",
            "Error responses, by code.",
            MetricType::Counter,
            "code",
            errors.iter().map(|(code, n)| (*code, n)),
        )?;
        gauge(
            out,
            "parlor_hash_queue_depth",
            "Password hashes waiting for a thread.",
            u64::try_from(hash_queue).unwrap_or(u64::MAX),
        )?;
        family(
            out,
            "parlor_op_seconds",
            "Time to handle a request, by op.",
            MetricType::Histogram,
            "op",
            self.latency.iter().map(|(op, h)| (*op, h)),
        )
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
    /// Writes the store's metrics.
    pub(crate) fn encode(&self, out: &mut Encoder<'_>) -> fmt::Result {
        counter(
            out,
            "parlor_store_commits",
            "Group commits.",
            self.commits.get(),
        )?;
        counter(
            out,
            "parlor_store_writes",
            "Writes committed (writes / commits is the mean batch size).",
            self.writes.get(),
        )?;
        let kind = self.commit_time.metric_type();
        self.commit_time.encode(out.encode_descriptor(
            "parlor_store_commit_seconds",
            "Time per group commit.",
            None,
            kind,
        )?)
    }
}

/// Writes every metric `encode` writes, in Prometheus text format (version 0.0.4).
pub(crate) fn render(
    encode: impl Fn(&mut Encoder<'_>) -> fmt::Result + Send + Sync + 'static,
) -> impl Fn() -> String + Send + Sync + 'static {
    let mut registry = prometheus_client::registry::Registry::default();
    registry.register_collector(Box::new(Collect(Box::new(encode))));
    move || {
        let mut text = String::new();
        if let Err(e) = prometheus_client::encoding::prometheus_text::encode(&mut text, &registry) {
            log::error!("cannot encode the metrics: {e}");
        }
        text
    }
}

/// The Content-Type of what [`render`] writes.
pub(crate) const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// Runs the server's metric writers on each scrape.
struct Collect(Box<dyn Fn(&mut Encoder<'_>) -> fmt::Result + Send + Sync>);

impl fmt::Debug for Collect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Collect")
    }
}

impl prometheus_client::collector::Collector for Collect {
    fn encode(&self, mut encoder: Encoder<'_>) -> fmt::Result {
        (self.0)(&mut encoder)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative_and_in_seconds() {
        let h = std::sync::Arc::new(Histogram::default());
        h.observe(Duration::from_micros(10));
        h.observe(Duration::from_millis(2));
        h.observe(Duration::from_secs(1));
        let shared = std::sync::Arc::clone(&h);
        let text = render(move |out| {
            family(
                out,
                "x",
                "help",
                MetricType::Histogram,
                "op",
                [("send", &*shared)],
            )
        })();
        assert!(text.contains("# TYPE x histogram\n"), "{text}");
        assert!(
            text.contains("x_bucket{op=\"send\",le=\"5e-05\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("x_bucket{op=\"send\",le=\"0.005\"} 2\n"),
            "{text}"
        );
        assert!(
            text.contains("x_bucket{op=\"send\",le=\"+Inf\"} 3\n"),
            "{text}"
        );
        assert!(text.contains("x_count{op=\"send\"} 3\n"), "{text}");
        assert!(text.contains("x_sum{op=\"send\"} 1.00201"), "{text}");
    }

    #[test]
    fn counters_get_total_and_labels() {
        let metrics = ChatMetrics::new(["send"].into_iter());
        metrics.logins_ok.inc();
        metrics.error("no_such_room");
        let text = render(move |out| metrics.encode(out, 3))();
        assert!(
            text.contains("# TYPE parlor_logins_total counter\n"),
            "{text}"
        );
        assert!(
            text.contains("parlor_logins_total{result=\"ok\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("parlor_errors_total{code=\"no_such_room\"} 1\n"),
            "{text}"
        );
        assert!(text.contains("\nparlor_hash_queue_depth 3\n"), "{text}");
    }
}

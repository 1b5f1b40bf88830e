//! Statistics: per-endpoint counters and HDR histograms that each user fills
//! on its own (a `Window` behind a lock only it and the collector touch), and
//! that the collector merges once per interval into the totals and the
//! history.
//!
//! Latencies are recorded in microseconds with 2 significant digits (1 %
//! resolution), so merging hundreds of users' histograms every second stays
//! cheap; they are reported in milliseconds like Locust's.

use std::collections::BTreeMap;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

/// An endpoint the scenarios call: method + route template.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Endpoint {
    /// `POST /api/v1/workflows`
    CreateWorkflow,
    /// `GET /api/v1/workflows`
    ListWorkflows,
    /// `POST /api/v1/workflows/{id}/execute`
    Execute,
    /// `GET /api/v1/executions/{id}`
    Status,
    /// `GET /api/v1/executions/{id}?wait_ms=…`: following a run to its end
    /// (its latency is the wait, not the server's work).
    Wait,
    /// `POST /api/v1/events`
    Publish,
    /// `GET /healthz`
    Health,
}

impl Endpoint {
    /// Every endpoint, in report order.
    pub const ALL: [Endpoint; 7] = [
        Endpoint::CreateWorkflow,
        Endpoint::ListWorkflows,
        Endpoint::Execute,
        Endpoint::Status,
        Endpoint::Wait,
        Endpoint::Publish,
        Endpoint::Health,
    ];

    /// The HTTP method.
    pub fn method(self) -> &'static str {
        match self {
            Endpoint::CreateWorkflow | Endpoint::Execute | Endpoint::Publish => "POST",
            _ => "GET",
        }
    }

    /// The route template.
    pub fn route(self) -> &'static str {
        match self {
            Endpoint::CreateWorkflow | Endpoint::ListWorkflows => "/api/v1/workflows",
            Endpoint::Execute => "/api/v1/workflows/{id}/execute",
            Endpoint::Status => "/api/v1/executions/{id}",
            Endpoint::Wait => "/api/v1/executions/{id}?wait_ms",
            Endpoint::Publish => "/api/v1/events",
            Endpoint::Health => "/healthz",
        }
    }

    /// `METHOD route`, the name thresholds and reports use.
    pub fn name(self) -> String {
        format!("{} {}", self.method(), self.route())
    }
}

/// Why a request counts as a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Cause {
    /// An unexpected HTTP status.
    Status(u16),
    /// Connecting, writing or reading failed.
    Connection,
    /// No whole response within the timeout.
    Timeout,
    /// The status was right, the body was not what the API promises.
    Body,
}

impl std::fmt::Display for Cause {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Cause::Status(s) => write!(f, "status {s}"),
            Cause::Connection => f.write_str("connection error"),
            Cause::Timeout => f.write_str("timeout"),
            Cause::Body => f.write_str("body check"),
        }
    }
}

fn histogram() -> Histogram<u64> {
    Histogram::new(2).expect("2 significant digits is valid")
}

/// One endpoint's figures over some interval.
#[derive(Debug, Clone)]
pub struct EndpointStats {
    /// Requests (failed ones included).
    pub requests: u64,
    /// Failures by cause.
    pub failures: BTreeMap<Cause, u64>,
    /// Response body bytes.
    pub bytes: u64,
    /// Latency of every request (failed ones included), µs.
    pub latency_us: Histogram<u64>,
}

impl Default for EndpointStats {
    fn default() -> Self {
        EndpointStats {
            requests: 0,
            failures: BTreeMap::new(),
            bytes: 0,
            latency_us: histogram(),
        }
    }
}

impl EndpointStats {
    /// All failures.
    pub fn failed(&self) -> u64 {
        self.failures.values().sum()
    }

    fn merge(&mut self, other: &EndpointStats) {
        if other.requests == 0 {
            return;
        }
        self.requests += other.requests;
        self.bytes += other.bytes;
        for (c, n) in &other.failures {
            *self.failures.entry(*c).or_default() += n;
        }
        self.latency_us
            .add(&other.latency_us)
            .expect("auto-resizing");
    }
}

/// Everything measured over an interval: what a user fills, and what the
/// collector sums.
#[derive(Debug, Clone)]
pub struct Window {
    /// Per endpoint, indexed like [`Endpoint::ALL`].
    pub endpoints: Vec<EndpointStats>,
    /// Events accepted by `POST /api/v1/events`.
    pub events: u64,
    /// Runs that reached `completed`.
    pub runs_completed: u64,
    /// Runs that ended `failed` or `cancelled`.
    pub runs_failed: u64,
    /// Execute sent → status first reporting the end, µs.
    pub run_us: Histogram<u64>,
    /// The server-reported coordination overhead of completed runs, µs.
    pub overhead_us: Histogram<u64>,
}

impl Default for Window {
    fn default() -> Self {
        Window {
            endpoints: Endpoint::ALL
                .iter()
                .map(|_| EndpointStats::default())
                .collect(),
            events: 0,
            runs_completed: 0,
            runs_failed: 0,
            run_us: histogram(),
            overhead_us: histogram(),
        }
    }
}

impl Window {
    /// Records one request.
    pub fn record(&mut self, ep: Endpoint, latency_us: u64, bytes: usize, fault: Option<Cause>) {
        let s = &mut self.endpoints[ep as usize];
        s.requests += 1;
        s.bytes += bytes as u64;
        // Auto-resizing: `record` grows the range (`saturating_record` would clamp).
        let _ = s.latency_us.record(latency_us.max(1));
        if let Some(c) = fault {
            *s.failures.entry(c).or_default() += 1;
        }
    }

    /// Adds `other` into this one.
    pub fn merge(&mut self, other: &Window) {
        for (a, b) in self.endpoints.iter_mut().zip(&other.endpoints) {
            a.merge(b);
        }
        self.events += other.events;
        self.runs_completed += other.runs_completed;
        self.runs_failed += other.runs_failed;
        if !other.run_us.is_empty() {
            self.run_us.add(&other.run_us).expect("auto-resizing");
        }
        if !other.overhead_us.is_empty() {
            self.overhead_us
                .add(&other.overhead_us)
                .expect("auto-resizing");
        }
    }

    /// Moves everything out, leaving this one empty (allocation reused where it can be).
    pub fn take(&mut self) -> Window {
        let mut out = Window::default();
        out.merge(self);
        for s in &mut self.endpoints {
            if s.requests > 0 {
                s.requests = 0;
                s.bytes = 0;
                s.failures.clear();
                s.latency_us.reset();
            }
        }
        self.events = 0;
        self.runs_completed = 0;
        self.runs_failed = 0;
        self.run_us.reset();
        self.overhead_us.reset();
        out
    }

    /// Every endpoint's figures summed (the Locust "Aggregated" row).
    pub fn aggregated(&self) -> EndpointStats {
        let mut all = EndpointStats::default();
        for s in &self.endpoints {
            all.merge(s);
        }
        all
    }
}

/// The percentiles Locust's CSV reports, in its column order.
pub const PERCENTILES: [f64; 11] = [
    0.50, 0.66, 0.75, 0.80, 0.90, 0.95, 0.98, 0.99, 0.999, 0.9999, 1.0,
];

/// Latency figures, milliseconds.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Latency {
    /// Smallest.
    pub min_ms: f64,
    /// Mean.
    pub avg_ms: f64,
    /// Median.
    pub p50_ms: f64,
    /// 90th percentile.
    pub p90_ms: f64,
    /// 95th percentile.
    pub p95_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// 99.9th percentile.
    pub p999_ms: f64,
    /// Largest.
    pub max_ms: f64,
    /// At each of [`PERCENTILES`].
    pub percentiles_ms: Vec<f64>,
}

impl Latency {
    /// From a µs histogram (zeros when empty).
    pub fn of(h: &Histogram<u64>) -> Latency {
        if h.is_empty() {
            return Latency {
                percentiles_ms: vec![0.0; PERCENTILES.len()],
                ..Latency::default()
            };
        }
        let ms = |us: u64| us as f64 / 1000.0;
        Latency {
            min_ms: ms(h.min()),
            avg_ms: h.mean() / 1000.0,
            p50_ms: ms(h.value_at_quantile(0.5)),
            p90_ms: ms(h.value_at_quantile(0.9)),
            p95_ms: ms(h.value_at_quantile(0.95)),
            p99_ms: ms(h.value_at_quantile(0.99)),
            p999_ms: ms(h.value_at_quantile(0.999)),
            max_ms: ms(h.max()),
            percentiles_ms: PERCENTILES
                .iter()
                .map(|&q| ms(h.value_at_quantile(q)))
                .collect(),
        }
    }
}

/// One row of the table: an endpoint (or the aggregate) over the whole run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EndpointReport {
    /// `POST`, `GET` (empty for the aggregate, like Locust).
    pub method: String,
    /// The route template (`Aggregated` for the aggregate).
    pub name: String,
    /// Requests.
    pub requests: u64,
    /// Failed requests.
    pub failures: u64,
    /// Failures by cause (`status 503`, `connection error`, `timeout`, `body check`).
    pub failures_by_cause: BTreeMap<String, u64>,
    /// Requests per second over the run.
    pub requests_per_s: f64,
    /// Failures per second over the run.
    pub failures_per_s: f64,
    /// Mean response body size, bytes.
    pub avg_bytes: f64,
    /// Latency.
    pub latency: Latency,
}

impl EndpointReport {
    /// A row from the run's figures for one endpoint.
    pub fn of(method: &str, name: &str, s: &EndpointStats, seconds: f64) -> EndpointReport {
        let secs = seconds.max(1e-9);
        EndpointReport {
            method: method.into(),
            name: name.into(),
            requests: s.requests,
            failures: s.failed(),
            failures_by_cause: s
                .failures
                .iter()
                .map(|(c, n)| (c.to_string(), *n))
                .collect(),
            requests_per_s: s.requests as f64 / secs,
            failures_per_s: s.failed() as f64 / secs,
            avg_bytes: if s.requests == 0 {
                0.0
            } else {
                s.bytes as f64 / s.requests as f64
            },
            latency: Latency::of(&s.latency_us),
        }
    }

    /// `METHOD name`.
    pub fn full_name(&self) -> String {
        if self.method.is_empty() {
            self.name.clone()
        } else {
            format!("{} {}", self.method, self.name)
        }
    }

    /// failures / requests (0 with no requests).
    pub fn failure_rate(&self) -> f64 {
        if self.requests == 0 {
            0.0
        } else {
            self.failures as f64 / self.requests as f64
        }
    }
}

/// One point of the history (about one per second).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    /// Seconds since the start.
    pub t: f64,
    /// Unix time, seconds.
    pub timestamp: u64,
    /// Users running.
    pub users: usize,
    /// Requests per second in this interval.
    pub requests_per_s: f64,
    /// Failures per second in this interval.
    pub failures_per_s: f64,
    /// Events per second in this interval.
    pub events_per_s: f64,
    /// This interval's latencies.
    pub latency: Latency,
    /// Requests so far.
    pub total_requests: u64,
    /// Failures so far.
    pub total_failures: u64,
    /// Latencies so far.
    pub total_latency: Latency,
    /// Mean body size so far.
    pub total_avg_bytes: f64,
    /// The server's memory, descriptors and disk (a server on this machine
    /// whose process is known: `--spawn-server`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server: Option<crate::resources::ServerSample>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merged_windows_give_the_percentiles_of_all_requests() {
        let mut a = Window::default();
        let mut b = Window::default();
        for us in 1..=500u64 {
            a.record(Endpoint::Health, us * 10, 10, None);
        }
        for us in 501..=1000u64 {
            b.record(
                Endpoint::Health,
                us * 10,
                10,
                (us % 100 == 0).then_some(Cause::Status(503)),
            );
        }
        b.record(Endpoint::Publish, 5, 2, Some(Cause::Timeout));
        b.events = 7;
        let mut total = Window::default();
        total.merge(&a.take());
        total.merge(&b.take());
        assert_eq!(a.endpoints[Endpoint::Health as usize].requests, 0);
        let h = &total.endpoints[Endpoint::Health as usize];
        assert_eq!(h.requests, 1000);
        assert_eq!(h.failed(), 5);
        let r = EndpointReport::of("GET", "/healthz", h, 2.0);
        assert_eq!(r.requests_per_s, 500.0);
        // 1 % resolution: the median of 10..10,000 µs is ~5 ms.
        assert!(
            (r.latency.p50_ms - 5.0).abs() < 0.06,
            "{}",
            r.latency.p50_ms
        );
        assert!((r.latency.p99_ms - 9.9).abs() < 0.1, "{}", r.latency.p99_ms);
        assert!((r.latency.max_ms - 10.0).abs() < 0.1);
        assert_eq!(r.failures_by_cause["status 503"], 5);
        let all = total.aggregated();
        assert_eq!((all.requests, all.failed()), (1001, 6));
        assert_eq!(total.events, 7);
    }
}

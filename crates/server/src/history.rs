//! The server's figures of the last minutes (`GET /api/v1/stats`, the
//! console's live metrics): a sample every
//! [`sample_interval`](crate::ServerOptions::sample_interval), [`KEPT`] of them. Rates come from
//! two samples in a row; the coordination overhead of each interval from the
//! engine's ready → dispatched histogram minus the previous sample's, so the
//! dispatch path records nothing more than it did.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use baton_api as api;
use baton_engine::Stats;
use hdrhistogram::Histogram;

use crate::AppState;

/// Samples kept: 10 minutes at the default 2 s.
const KEPT: usize = 300;

#[derive(Default)]
pub(crate) struct History {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    samples: VecDeque<api::Sample>,
    /// The histogram of the previous sample.
    previous: Option<Histogram<u64>>,
}

impl History {
    fn inner(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds the sample of `stats` taken at `t_ms`.
    fn record(&self, t_ms: u64, stats: Stats, events_published: u64) {
        let mut inner = self.inner();
        let dispatch = match (&stats.dispatch_histogram, &inner.previous) {
            (Some(now), Some(before)) => {
                let mut interval = now.clone();
                // Counts only grow, so this fails only for another histogram
                // (the engine restarted under us): then take it whole.
                match interval.subtract(before) {
                    Ok(()) => latency(&interval),
                    Err(_) => latency(now),
                }
            }
            (Some(now), None) => latency(now),
            (None, _) => api::Latency::default(),
        };
        inner.previous = stats.dispatch_histogram;
        if inner.samples.len() == KEPT {
            inner.samples.pop_front();
        }
        inner.samples.push_back(api::Sample {
            t_ms,
            events_published,
            transitions: stats.transitions,
            runs_running: stats.runs_running,
            runs_paused: stats.runs_paused,
            runs_compensating: stats.runs_compensating,
            runs_queued: stats.runs_queued,
            runs_completed: stats.runs_completed,
            runs_failed: stats.runs_failed,
            runs_cancelled: stats.runs_cancelled,
            ready_queue: stats.ready_queue,
            dispatch,
        });
    }

    /// The samples, oldest first.
    pub(crate) fn samples(&self) -> Vec<api::Sample> {
        self.inner().samples.iter().cloned().collect()
    }
}

/// Percentiles of a histogram of nanoseconds.
fn latency(h: &Histogram<u64>) -> api::Latency {
    if h.is_empty() {
        return api::Latency::default();
    }
    api::Latency {
        count: h.len(),
        p50_us: h.value_at_quantile(0.5) as f64 / 1e3,
        p99_us: h.value_at_quantile(0.99) as f64 / 1e3,
        max_us: h.max() as f64 / 1e3,
    }
}

/// Samples until the server stops.
pub(crate) async fn sample(state: Arc<AppState>) {
    let mut tick = tokio::time::interval(state.options.sample_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = state.stopping.cancelled() => return,
        }
        // A busy engine answers late rather than never; a stopped one not at all.
        let asked = tokio::time::timeout(Duration::from_secs(5), state.engine.sample()).await;
        if let Ok(Ok(stats)) = asked {
            let t_ms = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64);
            state
                .history
                .record(t_ms, stats, state.metrics.published_total());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stats(transitions: u64, latencies_ns: &[u64]) -> Stats {
        let mut h = Histogram::new_with_bounds(1, 3_600_000_000_000, 3).unwrap();
        for &v in latencies_ns {
            h.record(v).unwrap();
        }
        Stats {
            transitions,
            dispatch_histogram: Some(h),
            ..Stats::default()
        }
    }

    /// Each sample's overhead covers only what was dispatched since the one
    /// before; the oldest samples go once there are too many.
    #[test]
    fn samples_carry_the_overhead_of_their_interval() {
        let history = History::default();
        history.record(1, stats(10, &[1_000; 100]), 5);
        history.record(
            2,
            stats(20, &[&[1_000; 100][..], &[50_000; 10]].concat()),
            7,
        );
        let s = history.samples();
        assert_eq!(s.len(), 2);
        assert_eq!(
            (s[0].dispatch.count, s[0].dispatch.p99_us.round()),
            (100, 1.0)
        );
        assert_eq!(s[1].dispatch.count, 10);
        assert_eq!(s[1].dispatch.p50_us.round(), 50.0);
        assert_eq!((s[1].transitions, s[1].events_published), (20, 7));
        for t in 3..(KEPT as u64 + 10) {
            history.record(t, stats(t, &[]), 0);
        }
        let s = history.samples();
        assert_eq!(s.len(), KEPT);
        assert_eq!(s[0].t_ms, 10);
        assert_eq!(s[KEPT - 1].dispatch, api::Latency::default());
    }
}

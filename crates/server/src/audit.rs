//! The audit trail: who did what, when, with what outcome, appended to the
//! event log's `baton.audit` topic (one partition, so it reads in order)
//! and read back by admins (`GET /api/v1/audit`, `baton audit`).
//!
//! Records are handed to one writer task through a bounded queue and
//! appended in batches, so auditing never holds a request up; a record the
//! full queue cannot take is counted (`baton_audit_dropped_total`) and
//! logged, never waited for.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use baton_events::{AnyLog, Event, EventLog as _, TopicOptions};
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};

/// The topic.
pub const TOPIC: &str = "baton.audit";

/// Records waiting for the writer; more are dropped (and counted).
const QUEUE: usize = 16_384;

/// Which calls are recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    /// None.
    Off,
    /// What changes workflows and runs (create, execute, pause, resume,
    /// cancel, rerun), and every refused call (401, 403) of any route. Not
    /// the data plane (publishes, acks, workers' polls and reports), whose
    /// volume would double the log's writes.
    #[default]
    Control,
    /// Every call but reads (`GET`), the data plane included.
    All,
}

/// One audited call.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Record {
    /// When it was answered, Unix milliseconds.
    pub at_ms: u64,
    /// Who: a token's id, `admin` (the `auth_token`), `anonymous` (no auth
    /// configured) or `unauthenticated` (no valid token).
    pub caller: String,
    /// The tenant the caller acts for, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    /// The HTTP method.
    pub method: String,
    /// The route template (`/api/v1/executions/{id}/cancel`).
    pub route: String,
    /// The path called (ids filled in; never the query string).
    pub path: String,
    /// The answer's status.
    pub status: u16,
    /// The request's id (`x-request-id`).
    pub request_id: String,
}

/// Whether `level` records a call of `method` on `route` answered `status`.
pub fn wanted(level: Level, method: &str, route: &str, status: u16) -> bool {
    let mutating = !matches!(method, "GET" | "HEAD" | "OPTIONS");
    match level {
        Level::Off => false,
        Level::All => mutating || matches!(status, 401 | 403),
        Level::Control => {
            let data_plane = route == "/api/v1/events"
                || route.starts_with("/api/v1/topics/")
                || route.starts_with("/api/v1/agents/")
                || route.starts_with("/api/v1/tasks/");
            (mutating && !data_plane) || matches!(status, 401 | 403)
        }
    }
}

/// What the writer is handed.
enum Msg {
    Record(Record),
    /// Answered once everything queued before it is appended.
    Flush(oneshot::Sender<()>),
}

/// The queue to the writer.
pub struct Audit {
    level: Level,
    tx: Option<mpsc::Sender<Msg>>,
    dropped: AtomicU64,
}

impl Audit {
    /// Creates the topic (kept `retention` long) and starts the writer,
    /// which ends when every sender is gone.
    pub async fn start(
        log: Arc<AnyLog>,
        level: Level,
        retention: Duration,
    ) -> baton_events::Result<Audit> {
        if level == Level::Off {
            return Ok(Audit {
                level,
                tx: None,
                dropped: AtomicU64::new(0),
            });
        }
        let mut options = TopicOptions {
            partitions: 1,
            ..TopicOptions::default()
        };
        options.retention.max_age = Some(retention);
        options.retention.max_bytes = Some(1 << 30);
        log.create_topic(TOPIC, options).await?;
        let (tx, mut rx) = mpsc::channel::<Msg>(QUEUE);
        // The writer holds the log weakly: a server dropped without `run`
        // (a test, a failed start) releases it, and its data directory, at once.
        let log = Arc::downgrade(&log);
        tokio::spawn(async move {
            let mut batch = Vec::with_capacity(256);
            while rx.recv_many(&mut batch, 256).await > 0 {
                let mut events = Vec::with_capacity(batch.len());
                let mut flushed = Vec::new();
                for msg in batch.drain(..) {
                    match msg {
                        Msg::Record(r) => {
                            let Ok(payload) = serde_json::to_vec(&r) else {
                                continue;
                            };
                            let mut e = Event::new("baton.audit", r.caller.clone(), payload);
                            e.timestamp_ms = r.at_ms;
                            events.push(e);
                        }
                        Msg::Flush(done) => flushed.push(done),
                    }
                }
                let Some(log) = log.upgrade() else {
                    return;
                };
                if !events.is_empty()
                    && let Err(e) = log.publish(TOPIC, events).await
                {
                    tracing::error!(error = %e, "appending to the audit trail failed; those records are lost");
                }
                for done in flushed {
                    let _ = done.send(());
                }
            }
        });
        Ok(Audit {
            level,
            tx: Some(tx),
            dropped: AtomicU64::new(0),
        })
    }

    /// The level it records at.
    pub fn level(&self) -> Level {
        self.level
    }

    /// Queues a record; never waits.
    pub fn record(&self, record: Record) {
        let Some(tx) = &self.tx else {
            return;
        };
        if tx.try_send(Msg::Record(record)).is_err() {
            let before = self.dropped.fetch_add(1, Ordering::Relaxed);
            if before.is_power_of_two() || before == 0 {
                tracing::warn!(
                    dropped = before + 1,
                    "the audit trail's queue is full: records are dropped"
                );
            }
        }
    }

    /// Waits until every record queued so far is appended (at shutdown,
    /// before the log closes).
    pub async fn flush(&self) {
        let Some(tx) = &self.tx else {
            return;
        };
        let (done, flushed) = oneshot::channel();
        if tx.send(Msg::Flush(done)).await.is_ok() {
            let _ = flushed.await;
        }
    }

    /// Records dropped so far.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_records_what_changes_workflows_and_runs_and_every_refusal() {
        let control = |m, r, s| wanted(Level::Control, m, r, s);
        assert!(control("POST", "/api/v1/workflows", 201));
        assert!(control("POST", "/api/v1/executions/{id}/cancel", 409));
        assert!(control("POST", "/api/v1/workflows/{id}/execute", 202));
        assert!(!control("GET", "/api/v1/executions", 200));
        assert!(!control("POST", "/api/v1/events", 202));
        assert!(!control("POST", "/api/v1/tasks/{id}/complete", 200));
        assert!(control("POST", "/api/v1/events", 403));
        assert!(control("GET", "/api/v1/executions", 401));
        assert!(wanted(Level::All, "POST", "/api/v1/events", 202));
        assert!(!wanted(Level::All, "GET", "/api/v1/workflows", 200));
        assert!(!wanted(Level::Off, "POST", "/api/v1/workflows", 401));
    }
}

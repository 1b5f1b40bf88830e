//! A simulated user: a loop that picks a weighted task, runs it (one or more
//! requests on its own keep-alive connection), records what happened, and
//! picks again (Locust's closed loop), or waits for the next arrival slot of
//! `--rate` (open loop).

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use baton_model::Rng;
use bytes::Bytes;
use http::{Method, StatusCode};

use crate::client::{Conn, Fault};
use crate::scenario::TaskKind;
use crate::stats::{Cause, Endpoint, Window};
use crate::{Shared, Workload};

/// How late tokio's timer may fire (its resolution is one millisecond).
const TIMER_RESOLUTION: Duration = Duration::from_millis(1);

pub(crate) struct User {
    pub(crate) id: usize,
    pub(crate) conn: Conn,
    pub(crate) rng: Rng,
    pub(crate) stats: Arc<Mutex<Window>>,
    pub(crate) shared: Arc<Shared>,
    pub(crate) work: Arc<Workload>,
    workflows: Vec<String>,
    last_execution: Option<String>,
}

impl User {
    pub(crate) fn new(
        id: usize,
        conn: Conn,
        seed: u64,
        stats: Arc<Mutex<Window>>,
        shared: Arc<Shared>,
        work: Arc<Workload>,
    ) -> User {
        User {
            id,
            conn,
            rng: Rng(seed ^ (id as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15)),
            stats,
            shared,
            work,
            workflows: Vec::new(),
            last_execution: None,
        }
    }

    pub(crate) async fn run(mut self) {
        let picker = self.work.scenario.picker();
        loop {
            if self.shared.cancel.is_cancelled() || !self.shared.claim_iteration() {
                return;
            }
            // Open loop: this iteration's intended start; latency is measured
            // from it, so a slow server is not hidden by users that fell behind
            // (coordinated omission).
            let intended = match self.shared.rate {
                Some(rate) => {
                    let k = self.shared.ticket.fetch_add(1, Ordering::Relaxed);
                    let at = self.shared.start + Duration::from_secs_f64(k as f64 / rate);
                    tokio::select! {
                        _ = tokio::time::sleep_until(at.into()) => {}
                        _ = self.shared.cancel.cancelled() => return,
                    }
                    // tokio's timer fires up to a millisecond late: lateness
                    // within that is the timer, not the server, and is not
                    // counted; beyond it the user fell behind, and the time
                    // counts from the intended start.
                    let woke = Instant::now();
                    Some(if woke.saturating_duration_since(at) <= TIMER_RESOLUTION {
                        woke
                    } else {
                        at
                    })
                }
                None => None,
            };
            let task = picker.pick(&mut self.rng);
            self.task(task, intended).await;
            self.shared.iterations_done.fetch_add(1, Ordering::Relaxed);
            let (lo, hi) = self.work.wait;
            if hi > Duration::ZERO {
                let span = (hi - lo).as_micros() as u64;
                let d =
                    lo + Duration::from_micros(if span == 0 { 0 } else { self.rng.below(span) });
                tokio::select! {
                    _ = tokio::time::sleep(d) => {}
                    _ = self.shared.cancel.cancelled() => return,
                }
            }
        }
    }

    async fn task(&mut self, task: TaskKind, intended: Option<Instant>) {
        match task {
            TaskKind::Create => {
                self.create(intended).await;
            }
            TaskKind::Execute => self.execute(intended).await,
            TaskKind::Status => match self.last_execution.clone() {
                Some(id) => {
                    let path = format!("/api/v1/executions/{id}");
                    self.call_parse::<baton_api::ExecutionStatus>(
                        Endpoint::Status,
                        Method::GET,
                        &path,
                        Bytes::new(),
                        StatusCode::OK,
                        intended,
                    )
                    .await;
                }
                // Nothing to read yet: start a run first (as `execute` creates
                // a workflow first), so every iteration sends requests.
                None => self.execute(intended).await,
            },
            TaskKind::List => {
                self.call(
                    Endpoint::ListWorkflows,
                    Method::GET,
                    "/api/v1/workflows?limit=20",
                    Bytes::new(),
                    StatusCode::OK,
                    intended,
                    |b| {
                        serde_json::from_slice::<baton_api::Page<baton_api::WorkflowInfo>>(b)
                            .is_ok()
                    },
                )
                .await;
            }
            TaskKind::Publish => {
                let (n, body) = self.work.batch(&mut self.rng);
                let path = self.work.publish_path.clone();
                let ok = self
                    .call(
                        Endpoint::Publish,
                        Method::POST,
                        &path,
                        body,
                        StatusCode::OK,
                        intended,
                        |b| {
                            // `{"topic":…,"offsets":[{"partition":p,"offset":o},…]}`: one
                            // `}` per offset and one for the object. Counting bytes
                            // checks the promise (an offset per event) without parsing
                            // 10,000 objects on the client's cores.
                            b.starts_with(b"{") && b.iter().filter(|&&c| c == b'}').count() == n + 1
                        },
                    )
                    .await;
                if ok.is_some() {
                    self.stats.lock().expect("stats").events += n as u64;
                }
            }
            TaskKind::Health => {
                self.call(
                    Endpoint::Health,
                    Method::GET,
                    "/healthz",
                    Bytes::new(),
                    StatusCode::OK,
                    intended,
                    |b| b.starts_with(b"{"),
                )
                .await;
            }
        }
    }

    async fn create(&mut self, intended: Option<Instant>) -> Option<String> {
        let body = self.work.workflow(&mut self.rng);
        let created = self
            .call_parse::<baton_api::WorkflowCreated>(
                Endpoint::CreateWorkflow,
                Method::POST,
                "/api/v1/workflows",
                body,
                StatusCode::CREATED,
                intended,
            )
            .await?;
        if self.workflows.len() >= 16 {
            self.workflows.remove(0);
        }
        self.workflows.push(created.id.clone());
        Some(created.id)
    }

    async fn execute(&mut self, mut intended: Option<Instant>) {
        let workflow = if self.workflows.is_empty() {
            // Like the seed's user: nothing to execute yet, so create one first.
            match self.create(intended.take()).await {
                Some(id) => id,
                None => return,
            }
        } else {
            let i = self.rng.below(self.workflows.len() as u64) as usize;
            self.workflows[i].clone()
        };
        let started = intended.unwrap_or_else(Instant::now);
        let body = Bytes::from(format!(r#"{{"input_data":{{"user":{}}}}}"#, self.id));
        let Some(accepted) = self
            .call_parse::<baton_api::ExecuteResponse>(
                Endpoint::Execute,
                Method::POST,
                &format!("/api/v1/workflows/{workflow}/execute"),
                body,
                StatusCode::ACCEPTED,
                intended,
            )
            .await
        else {
            return;
        };
        let id = accepted.execution_id;
        self.last_execution = Some(id.clone());
        if !self.work.follow_runs {
            return;
        }
        // Follow the run until it ends, for at most the run timeout (so
        // `--iterations` alone stays bounded even if a run never ends): by
        // default each status request waits on the server for the run's end
        // (`?wait_ms=`), so the end is seen when it happens; with a poll
        // interval, one plain status request per interval.
        let long_poll = self.work.poll_interval.is_zero();
        loop {
            let left = self.work.run_timeout.saturating_sub(started.elapsed());
            if left.is_zero() {
                self.stats.lock().expect("stats").runs_failed += 1;
                return;
            }
            let (endpoint, path) = if long_poll {
                // Well within the request timeout, and the server's own cap.
                let wait = left.min(self.work.run_timeout / 2).as_millis().max(1);
                (
                    Endpoint::Wait,
                    format!("/api/v1/executions/{id}?wait_ms={wait}"),
                )
            } else {
                tokio::select! {
                    _ = tokio::time::sleep(self.work.poll_interval) => {}
                    _ = self.shared.cancel.cancelled() => return,
                }
                (Endpoint::Status, format!("/api/v1/executions/{id}"))
            };
            let Some(status) = self
                .call_parse::<baton_api::ExecutionStatus>(
                    endpoint,
                    Method::GET,
                    &path,
                    Bytes::new(),
                    StatusCode::OK,
                    None,
                )
                .await
            else {
                return;
            };
            match status.status.as_str() {
                "completed" => {
                    let mut s = self.stats.lock().expect("stats");
                    s.runs_completed += 1;
                    let _ = s.run_us.record(started.elapsed().as_micros() as u64);
                    let _ = s.overhead_us.record(
                        (status.performance_metrics.coordination_overhead * 1e6).max(1.0) as u64,
                    );
                    return;
                }
                "failed" | "cancelled" => {
                    self.stats.lock().expect("stats").runs_failed += 1;
                    return;
                }
                _ => {}
            }
        }
    }

    async fn call_parse<T: serde::de::DeserializeOwned>(
        &mut self,
        ep: Endpoint,
        method: Method,
        path: &str,
        body: Bytes,
        expect: StatusCode,
        intended: Option<Instant>,
    ) -> Option<T> {
        let mut out = None;
        self.call(
            ep,
            method,
            path,
            body,
            expect,
            intended,
            |b| match serde_json::from_slice::<T>(b) {
                Ok(v) => {
                    out = Some(v);
                    true
                }
                Err(_) => false,
            },
        )
        .await?;
        out
    }

    /// One request: sent, timed (from `intended` when given), checked
    /// (status, then `check` on the body) and recorded. `Some` when it passed.
    #[allow(clippy::too_many_arguments)]
    async fn call(
        &mut self,
        ep: Endpoint,
        method: Method,
        path: &str,
        body: Bytes,
        expect: StatusCode,
        intended: Option<Instant>,
        check: impl FnOnce(&[u8]) -> bool,
    ) -> Option<()> {
        let started = intended.unwrap_or_else(Instant::now);
        let result = self.conn.send(method, path, body).await;
        let latency = started.elapsed().as_micros() as u64;
        let (bytes, fault) = match result {
            Err(Fault::Connection) => (0, Some(Cause::Connection)),
            Err(Fault::Timeout) => (0, Some(Cause::Timeout)),
            Ok((status, b)) if status != expect => (b.len(), Some(Cause::Status(status.as_u16()))),
            Ok((_, b)) => (b.len(), (!check(&b)).then_some(Cause::Body)),
        };
        self.stats
            .lock()
            .expect("stats")
            .record(ep, latency, bytes, fault);
        fault.is_none().then_some(())
    }
}

//! The sink: each turn's records and events leave the scheduler's thread here,
//! in order. Records go to the state store in one append per batch, events to
//! the log in one publish; what waited for durability (a run accepted, a run
//! ended) is answered once the store says so.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use baton_events::{Event, EventLog, Offset, Polled, SeekTo};
use serde_json::Value;
use tokio::sync::mpsc;

use super::signals::SIGNAL_GROUP;
use super::{Ack, Batch, Detail, FLUSH_EVERY, Msg, NO_AGENT, NO_ITEM, Out, Scheduler};
use crate::Error;
use crate::store::{self, Record, RunId, StateStore};

pub(super) type BoxFut<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Bytes of transitions per published event (more go into further events).
pub(super) const EVENT_BYTES: usize = 256 << 10;

/// Writes batches to the store and publishes them to the log, off the scheduler's
/// thread and in order; answers what waited for durability.
pub(super) async fn run(
    mut rx: mpsc::UnboundedReceiver<Batch>,
    store: Option<Arc<dyn DynStore>>,
    log: Option<(Arc<dyn DynLog>, String)>,
    scheduler: mpsc::UnboundedSender<Msg>,
    behind: Arc<AtomicUsize>,
) {
    let mut failed: Option<String> = None;
    while let Some(first) = rx.recv().await {
        // Whatever else has queued up goes out with it: one append, one publish.
        let mut batches = vec![first];
        while batches.len() < 64 {
            match rx.try_recv() {
                Ok(b) => batches.push(b),
                Err(_) => break,
            }
        }
        behind.fetch_sub(batches.len(), Ordering::Relaxed);
        let mut first_seq = None;
        if let Some(store) = &store
            && failed.is_none()
        {
            let records: Vec<Record> = batches
                .iter()
                .flat_map(|b| b.out.iter().filter_map(record))
                .collect();
            let n = records.len() as u64;
            match store.append(records) {
                Ok(last) => first_seq = Some(last + 1 - n),
                Err(e) => {
                    tracing::error!(error = %e, "the state store failed; no new runs are accepted");
                    failed = Some(e.to_string());
                    let _ = scheduler.send(Msg::StoreFailed(e.to_string()));
                }
            }
        }
        let mut offset = 0u64;
        for batch in &mut batches {
            // An ack names its output's position; outputs that are events only
            // (decisions) take no sequence number.
            let stored = stored_before(&batch.out);
            for (index, ack) in batch.acks.drain(..) {
                let index = stored.as_ref().map_or(index, |s| s[index]);
                match (&store, first_seq) {
                    (Some(store), Some(first)) => {
                        let store = store.clone();
                        let seq = first + offset + index as u64;
                        let scheduler = scheduler.clone();
                        tokio::spawn(async move {
                            let synced = store.sync(seq).await.map_err(Error::from);
                            if let (Ok(()), Ack::Submitted(_, run, slot)) = (&synced, &ack) {
                                let _ = scheduler.send(Msg::Admit {
                                    run: *run,
                                    slot: *slot,
                                });
                            }
                            answer(ack, synced);
                        });
                    }
                    (Some(_), None) => {
                        answer(ack, Err(Error::Store(store::Error::Closed(failed.clone()))))
                    }
                    (None, _) => answer(ack, Ok(())),
                }
            }
            offset += stored
                .as_ref()
                .map_or(batch.out.len(), |s| s.last().map_or(0, |&n| n + 1))
                as u64;
        }
        if let Some((log, topic)) = &log {
            let events: Vec<Event> = batches.iter().flat_map(|b| events(&b.out)).collect();
            if !events.is_empty()
                && let Err(e) = log.publish(topic, events).await
            {
                tracing::warn!(error = %e, topic, "cannot publish run transitions");
            }
        }
    }
}

pub(super) trait DynStore: Send + Sync {
    fn append(&self, records: Vec<Record>) -> Result<u64, store::Error>;
    fn sync(&self, seq: u64) -> BoxFut<'_, Result<(), store::Error>>;
    fn close(&self) -> BoxFut<'_, Result<(), store::Error>>;
}

impl<S: StateStore> DynStore for S {
    fn append(&self, records: Vec<Record>) -> Result<u64, store::Error> {
        StateStore::append(self, records)
    }
    fn sync(&self, seq: u64) -> BoxFut<'_, Result<(), store::Error>> {
        Box::pin(StateStore::sync(self, seq))
    }
    fn close(&self) -> BoxFut<'_, Result<(), store::Error>> {
        Box::pin(StateStore::close(self))
    }
}

pub(super) trait DynLog: Send + Sync {
    fn publish<'a>(
        &'a self,
        topic: &'a str,
        batch: Vec<Event>,
    ) -> BoxFut<'a, baton_events::Result<Vec<Offset>>>;
    fn poll<'a>(
        &'a self,
        topic: &'a str,
        max: usize,
        wait: Duration,
    ) -> BoxFut<'a, baton_events::Result<Polled>>;
    fn ack<'a>(
        &'a self,
        topic: &'a str,
        ids: &'a [Offset],
    ) -> BoxFut<'a, baton_events::Result<usize>>;
    fn seek<'a>(&'a self, topic: &'a str, to: SeekTo) -> BoxFut<'a, baton_events::Result<()>>;
}

impl<L: EventLog> DynLog for L {
    fn publish<'a>(
        &'a self,
        topic: &'a str,
        batch: Vec<Event>,
    ) -> BoxFut<'a, baton_events::Result<Vec<Offset>>> {
        Box::pin(EventLog::publish(self, topic, batch))
    }
    fn poll<'a>(
        &'a self,
        topic: &'a str,
        max: usize,
        wait: Duration,
    ) -> BoxFut<'a, baton_events::Result<Polled>> {
        Box::pin(EventLog::poll(
            self,
            topic,
            SIGNAL_GROUP,
            "engine",
            max,
            wait,
        ))
    }
    fn ack<'a>(
        &'a self,
        topic: &'a str,
        ids: &'a [Offset],
    ) -> BoxFut<'a, baton_events::Result<usize>> {
        Box::pin(EventLog::ack(self, topic, SIGNAL_GROUP, ids))
    }
    fn seek<'a>(&'a self, topic: &'a str, to: SeekTo) -> BoxFut<'a, baton_events::Result<()>> {
        Box::pin(EventLog::seek(self, topic, SIGNAL_GROUP, to))
    }
}

impl Scheduler {
    /// Writes the turn's records to the store and its events to the log; answers
    /// what waited for them once they are durable.
    pub(super) fn flush(&mut self) {
        let c = std::mem::take(&mut self.counts);
        let p = &self.progress;
        p.running.fetch_add(c.running as u64, Ordering::Relaxed);
        p.succeeded.fetch_add(c.succeeded, Ordering::Relaxed);
        p.failed.fetch_add(c.failed, Ordering::Relaxed);
        p.skipped.fetch_add(c.skipped, Ordering::Relaxed);
        if c.instances + c.instances_done > 0 {
            p.instances.fetch_add(c.instances, Ordering::Relaxed);
            p.instances_done
                .fetch_add(c.instances_done, Ordering::Relaxed);
        }
        if self.out.is_empty() {
            return;
        }
        let batch = Batch {
            out: std::mem::replace(&mut self.out, Vec::with_capacity(FLUSH_EVERY)),
            acks: std::mem::take(&mut self.acks),
        };
        if let Some((tx, _)) = &self.sink {
            self.sink_behind.fetch_add(1, Ordering::Relaxed);
            let _ = tx.send(batch);
        }
    }
}

pub(super) fn answer(ack: Ack, synced: Result<(), Error>) {
    match ack {
        Ack::Submitted(reply, id, _) => {
            let _ = reply.send(synced.map(|()| id));
        }
        Ack::Finished(waiters, summary) => {
            for w in waiters {
                let _ = w.send(match &synced {
                    Ok(()) => Ok(summary.clone()),
                    Err(e) => Err(Error::Store(store::Error::Closed(Some(e.to_string())))),
                });
            }
        }
    }
}

/// Per output, the position of its record among the batch's records, when some
/// outputs have none (`None`: every output is a record).
fn stored_before(out: &[Out]) -> Option<Vec<usize>> {
    if !out.iter().any(|o| matches!(o, Out::Event { .. })) {
        return None;
    }
    let mut n = 0usize;
    Some(
        out.iter()
            .map(|o| {
                let at = n;
                if !matches!(o, Out::Event { .. }) {
                    n += 1;
                }
                at
            })
            .collect(),
    )
}

/// The record an output is stored as; decisions are events only (each is
/// made again from recorded outputs when a run resumes).
pub(super) fn record(out: &Out) -> Option<Record> {
    Some(match out {
        Out::Workflow { key, document } => Record::Workflow {
            key: *key,
            document: document.to_string(),
        },
        Out::Created {
            run,
            key,
            input,
            at_ms,
            rerun_of,
        } => Record::RunCreated {
            run: *run,
            workflow: *key,
            input: input.to_string(),
            at_ms: *at_ms,
            rerun_of: *rerun_of,
        },
        Out::Task(t) => Record::Task {
            run: t.run,
            task: t.task,
            status: t.status,
            attempt: t.attempt,
            agent: t.agent,
            at_us: t.at_us,
            detail: t.detail.as_ref().map(Detail::text),
        },
        Out::Item {
            run,
            task,
            item,
            status,
            attempt,
            agent,
            at_us,
            detail,
        } => Record::Item {
            run: *run,
            task: *task,
            item: *item,
            status: *status,
            attempt: *attempt,
            agent: *agent,
            at_us: *at_us,
            detail: detail.as_ref().map(Detail::text),
        },
        Out::Run {
            run,
            status,
            at_ms,
            reason,
        } => Record::Run {
            run: *run,
            status: *status,
            at_ms: *at_ms,
            reason: reason.clone(),
        },
        Out::Event { .. } => return None,
    })
}

/// The turn's transitions as events: per run, `baton.transitions` events whose
/// payload is `{"run": ID, "transitions": [[task, status, attempt, agent, at_us(, detail)], ...]}`
/// (task as its index in the workflow, status as its name); per fan-out,
/// `baton.items` events, `{"run": ID, "task": TASK, "items": [[item, status, attempt, agent, at_us(, detail)], ...]}`;
/// `baton.decision` events for what a run decided (`{"run", "task", "decision":
/// "for_each", "items": N}` or `{…, "decision": "route", "route": NAME}`), and
/// `baton.run` events for run status changes.
pub(super) fn events(out: &[Out]) -> Vec<Event> {
    use std::fmt::Write;
    let mut events = Vec::new();
    // Bodies being filled: per run, its transitions (`NO_ITEM`) or a fan-out's items.
    let mut open: Vec<(RunId, u32, String)> = Vec::new();
    let close = |events: &mut Vec<Event>, (run, task, mut body): (RunId, u32, String)| {
        body.push_str("]}");
        let kind = if task == NO_ITEM {
            "baton.transitions"
        } else {
            "baton.items"
        };
        events.push(Event::new(kind, run.to_string(), body));
    };
    // The run's bodies go out before `what` (a decision, its end).
    let flush_run = |events: &mut Vec<Event>, open: &mut Vec<(RunId, u32, String)>, run: RunId| {
        while let Some(at) = open.iter().position(|(r, ..)| *r == run) {
            close(events, open.swap_remove(at));
        }
    };
    let entry = |body: &mut String, detail: &Option<Detail>| match detail {
        Some(Detail::Output(v)) => {
            let _ = write!(body, ",{}]", v);
        }
        Some(Detail::Error(e)) => {
            let _ = write!(body, ",{}]", Value::String(e.to_string()));
        }
        None => body.push(']'),
    };
    for o in out {
        match o {
            Out::Task(t) => {
                let at = match open
                    .iter()
                    .position(|(r, k, _)| *r == t.run && *k == NO_ITEM)
                {
                    Some(i) => i,
                    None => {
                        open.push((
                            t.run,
                            NO_ITEM,
                            format!("{{\"run\":\"{}\",\"transitions\":[", t.run),
                        ));
                        open.len() - 1
                    }
                };
                let body = &mut open[at].2;
                if !body.ends_with('[') {
                    body.push(',');
                }
                let agent = if t.agent == NO_AGENT {
                    -1
                } else {
                    i32::from(t.agent)
                };
                let _ = write!(
                    body,
                    "[{},\"{}\",{},{},{}",
                    t.task,
                    t.status.as_str(),
                    t.attempt,
                    agent,
                    t.at_us
                );
                entry(body, &t.detail);
                if body.len() >= EVENT_BYTES {
                    close(&mut events, open.swap_remove(at));
                }
            }
            Out::Run {
                run,
                status,
                reason,
                ..
            } => {
                // The run's transitions so far go first: consumers see a run end
                // after its tasks.
                flush_run(&mut events, &mut open, *run);
                let payload = serde_json::json!({"run": run.to_string(), "status": status.as_str(), "reason": reason});
                events.push(Event::new(
                    "baton.run",
                    run.to_string(),
                    payload.to_string(),
                ));
            }
            Out::Created { run, .. } => {
                let payload = serde_json::json!({"run": run.to_string(), "status": "created"});
                events.push(Event::new(
                    "baton.run",
                    run.to_string(),
                    payload.to_string(),
                ));
            }
            Out::Item {
                run,
                task,
                item,
                status,
                attempt,
                agent,
                at_us,
                detail,
            } => {
                let at = match open.iter().position(|(r, k, _)| r == run && k == task) {
                    Some(i) => i,
                    None => {
                        open.push((
                            *run,
                            *task,
                            format!("{{\"run\":\"{run}\",\"task\":{task},\"items\":["),
                        ));
                        open.len() - 1
                    }
                };
                let body = &mut open[at].2;
                if !body.ends_with('[') {
                    body.push(',');
                }
                let _ = write!(
                    body,
                    "[{item},\"{}\",{attempt},{agent},{at_us}",
                    status.as_str()
                );
                entry(body, detail);
                if body.len() >= EVENT_BYTES {
                    close(&mut events, open.swap_remove(at));
                }
            }
            Out::Event { run, kind, payload } => {
                // After the run's transitions so far: a decision follows the
                // output it was made from.
                flush_run(&mut events, &mut open, *run);
                events.push(Event::new(*kind, run.to_string(), payload.clone()));
            }
            Out::Workflow { .. } => {}
        }
    }
    for body in open {
        close(&mut events, body);
    }
    events
}

//! What agents report while a call runs. The tokens a model used are counted
//! per run (its summary) and published as `baton.usage` events. Progress and
//! partial output are carried
//! on `baton.runs` as `baton.progress` events, never recorded (the call's
//! final output is what is durable). Reports are coalesced per call: the
//! first goes out at once, later ones at most once per [`WINDOW`], each
//! window sending only the newest report it saw, so an agent reporting
//! thousands of times a second costs the log ten events a second.

use std::time::Duration;

use serde_json::{Value, json};
use tokio::time::Instant;

use super::{Job, NO_ITEM, Out, Scheduler, TimerKind};
use crate::agent::Report;
use crate::store::{RunId, TaskStatus};

/// The shortest time between two progress events of one call.
pub(super) const WINDOW: Duration = Duration::from_millis(100);

/// The largest report carried (its JSON text); larger ones are dropped with
/// a warning: partial output is a preview, not a channel for bulk data.
const MAX_BYTES: usize = 64 << 10;

/// One call's coalescing window: a report waiting for it to end.
pub(super) struct Window {
    pending: Option<Value>,
}

/// A call's identity across attempts: run, task, instance, attempt.
pub(super) type CallKey = (RunId, u32, u32, u32);

fn key(job: &Job) -> CallKey {
    (job.run, job.task, job.item, job.attempt)
}

impl Scheduler {
    /// An agent reported something for `job`'s call.
    pub(super) fn report(&mut self, job: Job, report: Report, now: Instant) {
        match report {
            Report::Progress(value) => self.progress(job, value, now),
            Report::Tokens { prompt, completion } => self.tokens(job, prompt, completion),
            Report::Input { question, reply } => self.ask(job, question, reply),
        }
    }

    /// A model's tokens for `job`'s call: counted for the run (its summary)
    /// and published as a `baton.usage` event, whether or not the call is
    /// still wanted (the tokens were spent).
    fn tokens(&mut self, job: Job, prompt: u64, completion: u64) {
        let Some(&slot) = self.by_id.get(&job.run) else {
            return;
        };
        let run = self.runs[slot as usize].as_mut().expect("live run");
        run.tokens[0] += prompt;
        run.tokens[1] += completion;
        let extra = json!({ "prompt_tokens": prompt, "completion_tokens": completion });
        self.call_event(&job, "baton.usage", extra);
    }

    /// An agent reported progress for `job`'s call.
    fn progress(&mut self, job: Job, value: Value, now: Instant) {
        if !self.call_running(&job) {
            return;
        }
        let text_len = value.to_string().len();
        if text_len > MAX_BYTES {
            tracing::warn!(run = %job.run, bytes = text_len, "a progress report larger than 64 KiB was dropped");
            return;
        }
        match self.windows.get_mut(&key(&job)) {
            // A window is open: the report waits for its end (the newest wins).
            Some(w) => w.pending = Some(value),
            None => {
                self.publish_progress(&job, value);
                self.windows.insert(key(&job), Window { pending: None });
                self.add_timer(TimerKind::Progress, now + WINDOW, job);
            }
        }
    }

    /// A call's window ended: the report it held goes out (and a new window
    /// opens), or, none held, the call may report at once again.
    pub(super) fn progress_window_ended(&mut self, job: Job, now: Instant) {
        let k = key(&job);
        let Some(w) = self.windows.get_mut(&k) else {
            return;
        };
        match w.pending.take() {
            Some(value) if self.call_running(&job) => {
                self.publish_progress(&job, value);
                self.add_timer(TimerKind::Progress, now + WINDOW, job);
            }
            _ => {
                self.windows.remove(&k);
            }
        }
    }

    /// Whether `job`'s call still runs (its run goes on and its task, or
    /// instance, is at that attempt).
    pub(super) fn call_running(&self, job: &Job) -> bool {
        let Some(&slot) = self.by_id.get(&job.run) else {
            return false;
        };
        let Some(run) = self.runs[slot as usize].as_ref() else {
            return false;
        };
        let state = &run.tasks[job.task as usize];
        if job.item == NO_ITEM {
            return state.status == TaskStatus::Running && state.attempt == job.attempt;
        }
        state.status == TaskStatus::Running
            && run
                .fanouts
                .get(&job.task)
                .and_then(|f| f.attempts.get(job.item as usize))
                == Some(&job.attempt)
    }

    fn publish_progress(&mut self, job: &Job, value: Value) {
        self.call_event(job, "baton.progress", json!({ "progress": value }));
    }

    /// An event about `job`'s call: `extra`'s fields with the run, the task,
    /// the attempt and the instance (for a fan-out's or a pattern's).
    pub(super) fn call_event(&mut self, job: &Job, kind: &'static str, extra: Value) {
        let Some(&slot) = self.by_id.get(&job.run) else {
            return;
        };
        let run = self.runs[slot as usize].as_ref().expect("live run");
        let mut payload = json!({
            "run": job.run.to_string(),
            "task": &*run.spec.ids[job.task as usize],
            "attempt": job.attempt,
        });
        if job.item != NO_ITEM {
            payload["instance"] = job.item.into();
        }
        if let (Some(p), Value::Object(extra)) = (payload.as_object_mut(), extra) {
            p.extend(extra);
        }
        self.out.push(Out::Event {
            run: job.run,
            kind,
            payload: payload.to_string(),
        });
    }
}

//! Signals: tasks with `wait_for` wait for a matching event, read from their
//! topic by one reader per topic and matched against the waiting tasks; events
//! that arrive before their task is ready are kept (up to a bound) for it.
//! Calls that need a person's input (an A2A task's `input-required`) wait
//! here too, for a `baton.input` event on the signals topic with the key
//! their `baton.input_required` event gave.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use baton_events::{Event, SeekTo};
use baton_model::EventFilter;
use serde_json::{Map, Value, json};
use tokio::sync::oneshot;
use tokio::time::Instant;

use super::{Job, Msg, NO_ITEM, Question, Scheduler, Signal, TimerKind, Waiter};
use crate::clock::now_ms;
use crate::store::{RunId, RunStatus};

/// The consumer group the engine reads `wait_for` topics with.
pub(super) const SIGNAL_GROUP: &str = "baton-engine";

/// Signals kept per topic for tasks that become ready after their event arrived.
pub(super) const SIGNAL_BUFFER: usize = 10_000;

/// The type of the event that answers a call's question.
pub(super) const INPUT_EVENT: &str = "baton.input";

impl Scheduler {
    /// `job`'s call asks a person for input: the question goes out as a
    /// `baton.input_required` event on the run's stream, naming the event
    /// that answers it; the answer is sent on `reply`. A call that is no
    /// longer running asks nothing (`reply` is dropped).
    pub(super) fn ask(&mut self, job: Job, question: Value, reply: oneshot::Sender<Value>) {
        if !self.call_running(&job) {
            return;
        }
        let topic: Arc<str> = self.options.signals_topic.as_str().into();
        if !self.signals.contains_key(&topic) {
            self.signals.insert(topic.clone(), VecDeque::new());
            self.spawn_reader(topic.clone());
        }
        let run = self.run_mut(job.slot, job.run).expect("live run");
        let label = &run.spec.ids[job.task as usize];
        let key = match job.item {
            NO_ITEM => format!("{}/{label}", job.run),
            item => format!("{}/{label}[{item}]", job.run),
        };
        let answer = json!({"topic": &*topic, "type": INPUT_EVENT, "key": &key});
        self.call_event(
            &job,
            "baton.input_required",
            json!({"question": question, "answer": answer}),
        );
        self.questions.push(Question {
            job,
            topic,
            key,
            asked_ms: now_ms(),
            reply,
        });
    }

    /// Hands a `baton.input` event to the call whose question it answers.
    fn answer_question(&mut self, topic: &Arc<str>, signal: &Signal) {
        // Questions of calls that ended (a timeout, a cancel) go.
        self.questions.retain(|q| !q.reply.is_closed());
        let event = &signal.event;
        let Some(at) = self.questions.iter().position(|q| {
            q.topic == *topic
                && event.key.as_ref() == q.key.as_bytes()
                && event.timestamp_ms >= q.asked_ms
                && event
                    .header("baton.run")
                    .is_none_or(|r| r.as_ref() == q.job.run.to_string().as_bytes())
        }) else {
            return;
        };
        let question = self.questions.swap_remove(at);
        let payload = signal_value(signal)
            .get_mut("payload")
            .map(Value::take)
            .unwrap_or(Value::Null);
        let _ = question.reply.send(payload);
    }

    pub(super) fn wait_for(&mut self, job: Job, filter: &EventFilter) {
        let topic: Arc<str> = filter
            .topic
            .as_deref()
            .unwrap_or(&self.options.signals_topic)
            .into();
        if !self.signals.contains_key(&topic) {
            self.signals.insert(topic.clone(), VecDeque::new());
            self.spawn_reader(topic.clone());
        }
        let run = self.run_mut(job.slot, job.run).expect("live run");
        let created_ms = run.created_ms;
        let matched = self.signals[&topic]
            .iter()
            .find(|s| matches(filter, s, job.run, created_ms))
            .map(signal_value);
        match matched {
            Some(value) => self.signalled(job, value),
            None => {
                if let Some(timeout) = filter.timeout {
                    self.add_timer(TimerKind::WaitTimeout, Instant::now() + timeout, job);
                }
                self.waiters.push(Waiter {
                    run: job.run,
                    slot: job.slot,
                    task: job.task,
                    attempt: job.attempt,
                    topic,
                });
            }
        }
    }

    pub(super) fn spawn_reader(&mut self, topic: Arc<str>) {
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let log = self.log.clone();
        let tx = self.tx.clone();
        let since = self
            .runs
            .iter()
            .flatten()
            .map(|r| r.created_ms)
            .min()
            .unwrap_or_else(now_ms);
        self.readers.push(handle.spawn(async move {
            // Events published since the oldest live run started may be for it.
            if let Err(e) = log.seek(&topic, SeekTo::Time(since)).await {
                tracing::warn!(error = %e, %topic, "cannot position the signal reader");
            }
            loop {
                match log.poll(&topic, 1000, Duration::from_secs(1)).await {
                    Ok(polled) if polled.is_empty() => {}
                    Ok(polled) => {
                        let offsets = polled.offsets();
                        let events = polled.iter().map(|d| d.event.clone()).collect();
                        if tx
                            .send(Msg::Signals {
                                topic: topic.clone(),
                                events,
                            })
                            .await
                            .is_err()
                        {
                            break;
                        }
                        let _ = log.ack(&topic, &offsets).await;
                    }
                    Err(baton_events::Error::Closed) => break,
                    Err(e) => {
                        tracing::warn!(error = %e, %topic, "cannot read signals");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                }
            }
        }));
    }

    pub(super) fn signals(&mut self, topic: &Arc<str>, events: Vec<Event>) {
        for event in events {
            let mut signal = Signal {
                payload: serde_json::from_slice(&event.payload).ok(),
                event,
            };
            if &*signal.event.kind == INPUT_EVENT {
                self.answer_question(topic, &signal);
            }
            // Hand the event to every task waiting for it.
            let mut i = 0;
            while i < self.waiters.len() {
                let w = &self.waiters[i];
                if w.topic != *topic {
                    i += 1;
                    continue;
                }
                let Some(run) = self
                    .runs
                    .get(w.slot as usize)
                    .and_then(|r| r.as_ref())
                    .filter(|r| r.id == w.run)
                else {
                    self.waiters.swap_remove(i);
                    continue;
                };
                let filter = run.spec.workflow.tasks[w.task as usize].wait_for.as_deref();
                if filter.is_some_and(|f| matches(f, &signal, run.id, run.created_ms)) {
                    let w = self.waiters.swap_remove(i);
                    let value = signal_value(&signal);
                    self.signalled(Job::forward(w.run, w.slot, w.task, w.attempt), value);
                } else {
                    i += 1;
                }
            }
            let buffer = self.signals.entry(topic.clone()).or_default();
            if buffer.len() == SIGNAL_BUFFER {
                buffer.pop_front();
            }
            signal.payload.get_or_insert(Value::Null);
            buffer.push_back(signal);
        }
    }

    pub(super) fn signalled(&mut self, job: Job, event: Value) {
        let now = Instant::now();
        let run = self.run_mut(job.slot, job.run).expect("live run");
        run.events.insert(job.task, event);
        // Coordination latency counts from the event, not from the wait's start.
        let at = Self::at_ns(run, now);
        run.tasks[job.task as usize].ready_at = at;
        if run.status == RunStatus::Paused {
            run.parked.push(job);
        } else {
            self.ready.push_back(job);
        }
    }
}

pub(super) fn matches(filter: &EventFilter, signal: &Signal, run: RunId, created_ms: u64) -> bool {
    let event = &signal.event;
    if &*event.kind != filter.event_type.as_str() || event.timestamp_ms < created_ms {
        return false;
    }
    if let Some(key) = &filter.key
        && event.key.as_ref() != key.as_bytes()
    {
        return false;
    }
    if let Some(target) = event.header("baton.run")
        && target.as_ref() != run.to_string().as_bytes()
    {
        return false;
    }
    match &filter.matches {
        None => true,
        Some(fields) => {
            let payload = match &signal.payload {
                Some(Value::Object(p)) => p,
                _ => return fields.is_empty(),
            };
            fields.iter().all(|(k, v)| payload.get(k) == Some(v))
        }
    }
}

pub(super) fn signal_value(signal: &Signal) -> Value {
    let mut m = Map::new();
    m.insert("type".into(), Value::String(signal.event.kind.to_string()));
    m.insert(
        "key".into(),
        Value::String(String::from_utf8_lossy(&signal.event.key).into_owned()),
    );
    m.insert(
        "payload".into(),
        signal.payload.clone().unwrap_or_else(|| {
            Value::String(String::from_utf8_lossy(&signal.event.payload).into_owned())
        }),
    );
    m.insert(
        "timestamp_ms".into(),
        Value::from(signal.event.timestamp_ms),
    );
    Value::Object(m)
}

//! Dispatch: ready jobs go to the agent [`allocate`](super::allocation::allocate)
//! picks, run inline or as a spawned call under the task's timeout, and come
//! back as a [`Done`](super::Done): success releases successors, failure retries
//! on a timer or fails the run.

use std::cmp::Reverse;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use baton_model::Compensation;
use serde_json::Value;
use tokio::time::Instant;

use super::allocation::{Allocation, allocate};
use super::input::call_input;
use super::{
    Detail, Done, FLUSH_EVERY, FORWARD, Job, Msg, NO_AGENT, NO_ITEM, PUMP_BUDGET, Scheduler, Timer,
    TimerKind, ns,
};
use crate::agent::{Call, Failure, Progress, Started};
use crate::retry;
use crate::spec::{CHILD, ON_ROUTE, Spec, Undo};
use crate::store::{RunStatus, TaskStatus};

impl Scheduler {
    /// Dispatches ready tasks; `true` when it stopped with work left (its budget
    /// spent), so the loop can yield before going on.
    pub(super) fn pump(&mut self) -> bool {
        for _ in 0..PUMP_BUDGET {
            while self.ready.len() < self.options.admit_below {
                match self.admit.pop_front() {
                    Some(slot) => self.start(slot),
                    None => break,
                }
            }
            // Bounded batches: memory stays flat and the store and log see a
            // steady stream even when one turn runs a million inline tasks.
            if self.out.len() >= FLUSH_EVERY {
                self.flush();
            }
            match self.ready.pop_front() {
                Some(job) => self.dispatch(job),
                None => {
                    if self.admit.is_empty() {
                        return false;
                    }
                }
            }
        }
        !self.ready.is_empty() || !self.admit.is_empty()
    }

    pub(super) fn dispatch(&mut self, job: Job) {
        let now = Instant::now();
        let Some(run) = self.run_mut(job.slot, job.run) else {
            return;
        };
        let forward = job.comp_of == FORWARD;
        if forward {
            match run.status {
                RunStatus::Running => {}
                RunStatus::Paused => {
                    run.parked.push(job);
                    return;
                }
                _ => return,
            }
            let wanted = if job.item == NO_ITEM {
                run.tasks[job.task as usize].status == TaskStatus::Ready
            } else {
                Self::item_wanted(run, &job)
            };
            if !wanted {
                return;
            }
        }
        let spec = run.spec.clone();
        // A task with a child run cannot fan out: its instances are a loop's
        // iterations, each a child run too.
        if forward && spec.tasks[job.task as usize].flags & CHILD != 0 {
            return self.start_child(job, now);
        }
        // A hierarchical supervisor's call to a team runs the team as a child.
        if forward
            && job.item != NO_ITEM
            && super::patterns::team_of(run, job.task, job.item).is_some()
        {
            return self.start_child(job, now);
        }
        let agents = run.agents.clone();
        // A pattern's turn runs on the agent the previous turn handed it to.
        let turn = (forward && job.item != NO_ITEM)
            .then(|| super::patterns::turn_agent(run, job.task, job.item))
            .flatten();
        let candidates = Candidates::of(&spec, &job, turn);
        let global = candidates
            .local()
            .iter()
            .map(|&local| agents[usize::from(local)]);
        let agent = match allocate(global, &self.agents, now) {
            Allocation::Agent(agent) => agent,
            Allocation::Wait(agent) => {
                self.agents[usize::from(agent)].waiting.push_back(job);
                return;
            }
            Allocation::Refused => return self.refuse(job, &spec, candidates.local(), now),
        };
        let runner = self.start_call(job, agent, now);
        if let Some(outcome) = runner.immediate() {
            return self.complete(Done::of(&job, agent, false, now, outcome));
        }
        let run = self.runs[job.slot as usize].as_mut().expect("live run");
        let call = Call {
            run: run.id,
            task: spec.ids[job.task as usize].clone(),
            attempt: job.attempt,
            input: if runner.reads_input() {
                call_input(run, &job)
            } else {
                Value::Null
            },
            estimate: spec.workflow.tasks[job.task as usize].estimate,
            iteration: if job.item != NO_ITEM
                && spec.workflow.tasks[job.task as usize].looping().is_some()
            {
                Some(u64::from(job.item))
            } else {
                run.input.get("iteration").and_then(Value::as_u64)
            },
            decisions: runner
                .offers_decisions()
                .then(|| super::patterns::decisions(run, job.task, job.item)),
            progress: runner.reports_progress().then(|| {
                let tx = self.outcomes_tx.clone();
                Progress::new(move |report| {
                    let _ = tx.send(Msg::Report { job, report });
                })
            }),
        };
        match runner.start(call) {
            Started::Done(outcome) => self.complete(Done::of(&job, agent, false, now, outcome)),
            Started::Later(future) => {
                let timeout = spec.workflow.tasks[job.task as usize].timeout;
                self.spawn_call(job, agent, future, timeout);
            }
        }
    }

    /// Every candidate's breaker is open: the attempt fails at once (and counts).
    fn refuse(&mut self, job: Job, spec: &Spec, candidates: &[u16], now: Instant) {
        let names: Vec<&str> = candidates
            .iter()
            .map(|&l| spec.agents[usize::from(l)].agent.name.as_str())
            .collect();
        let failure = Failure::retryable(format!("circuit breaker open for {}", names.join(", ")));
        self.fail_unstarted(job, failure, now);
    }

    /// A job fails before anything ran it (its attempt counts).
    pub(super) fn fail_unstarted(&mut self, job: Job, failure: Failure, now: Instant) {
        let run = self.runs[job.slot as usize].as_mut().expect("live run");
        if job.item != NO_ITEM {
            Self::item_started(run, &job);
            return self.item_failed(job, NO_AGENT, failure, now);
        }
        if job.comp_of == FORWARD {
            run.tasks[job.task as usize].attempt = job.attempt;
        }
        self.attempt_failed(job, failure, now);
    }

    /// What a dispatch closes, for the engine's figures: a child run's start
    /// (its first dispatch), and a decision (a loop's next iteration, the
    /// first attempt of a task a route chose).
    pub(super) fn dispatched(&mut self, job: &Job, now: Instant) {
        let run = self.runs[job.slot as usize].as_mut().expect("live run");
        if let Some(from) = run.child_from.take() {
            self.child_hist
                .saturating_record(ns(now.saturating_duration_since(from)).max(1));
        }
        if job.item != NO_ITEM {
            if let Some(decided) = run
                .fanouts
                .get_mut(&job.task)
                .and_then(|f| f.decided.take())
            {
                self.decision_hist
                    .saturating_record(ns(now.saturating_duration_since(decided)).max(1));
            }
        } else if job.comp_of == FORWARD
            && job.attempt == 1
            && run.spec.tasks[job.task as usize].flags & ON_ROUTE != 0
        {
            let spec = &run.spec;
            let chosen_at = spec
                .plan
                .preds(job.task)
                .iter()
                .filter(|&&p| spec.workflow.tasks[p as usize].routes.is_some())
                .map(|&p| run.tasks[p as usize].finished_at)
                .max();
            if let Some(end) = chosen_at {
                let at = Self::at_ns(run, now);
                self.decision_hist
                    .saturating_record(at.saturating_sub(end).max(1));
            }
        }
    }

    /// Books the call on `agent` (load, breaker) and records the task's move to
    /// running; returns the agent's runner.
    fn start_call(&mut self, job: Job, agent: u16, now: Instant) -> Arc<dyn crate::agent::Runner> {
        self.dispatched(&job, now);
        let run = self.runs[job.slot as usize].as_mut().expect("live run");
        let a = &mut self.agents[usize::from(agent)];
        a.in_flight += 1;
        a.calls += 1;
        if let Some(b) = a.breaker.as_mut() {
            b.started(now);
        }
        let runner = a.runner.clone();
        let at = Self::at_ns(run, now);
        if job.item != NO_ITEM {
            Self::item_started(run, &job);
            if job.attempt > 1 {
                self.progress.retries.fetch_add(1, Ordering::Relaxed);
            }
        } else if job.comp_of == FORWARD {
            let state = &mut run.tasks[job.task as usize];
            state.attempt = job.attempt;
            state.agent = agent;
            state.dispatched_at = at;
            self.dispatch_hist
                .saturating_record(at.saturating_sub(state.ready_at).max(1));
            if job.attempt > 1 {
                run.retries += 1;
                self.progress.retries.fetch_add(1, Ordering::Relaxed);
            }
            self.transition(job.slot, job.task, TaskStatus::Dispatched, None, now);
            self.transition(job.slot, job.task, TaskStatus::Running, None, now);
        } else if job.task != job.comp_of {
            let state = &mut run.tasks[job.task as usize];
            state.attempt = job.attempt;
            state.agent = agent;
            state.dispatched_at = at;
            self.transition(job.slot, job.task, TaskStatus::Running, None, now);
        }
        runner
    }

    /// Runs a call that completes later on its own task, under the task's
    /// timeout; its outcome comes back as a [`Msg::Done`].
    fn spawn_call(
        &mut self,
        job: Job,
        agent: u16,
        future: crate::agent::Pending,
        timeout: Option<std::time::Duration>,
    ) {
        let tx = self.outcomes_tx.clone();
        let handle = tokio::spawn(async move {
            let outcome = match timeout {
                Some(limit) => tokio::time::timeout(limit, future)
                    .await
                    .unwrap_or_else(|_| {
                        Err(Failure::retryable(format!(
                            "timed out after {}",
                            baton_model::duration::format(limit)
                        )))
                    }),
                None => future.await,
            };
            let _ = tx.send(Msg::Done(Done::of(
                &job,
                agent,
                true,
                Instant::now(),
                outcome,
            )));
        });
        self.inflight.insert(
            (job.run, job.task, job.comp_of, job.item),
            (handle.abort_handle(), agent),
        );
    }

    pub(super) fn release_agent(&mut self, agent: u16) {
        let a = &mut self.agents[usize::from(agent)];
        a.in_flight = a.in_flight.saturating_sub(1);
        if let Some(job) = a.waiting.pop_front() {
            self.ready.push_front(job);
        }
    }

    pub(super) fn complete(&mut self, done: Done) {
        if done.spawned
            && self
                .inflight
                .remove(&(done.run, done.task, done.comp_of, done.item))
                .is_none()
        {
            // Stopped already (its agent was released then).
            return;
        }
        let ok = done.outcome.is_ok();
        {
            let a = &mut self.agents[usize::from(done.agent)];
            if !ok {
                a.failures += 1;
            }
            if let Some(b) = a.breaker.as_mut()
                && let Some(state) = b.record(ok, done.finished)
            {
                tracing::info!(agent = %a.name, breaker = state.as_str(), "circuit breaker changed state");
            }
        }
        self.release_agent(done.agent);
        let job = Job {
            run: done.run,
            slot: done.slot,
            task: done.task,
            attempt: done.attempt,
            comp_of: done.comp_of,
            item: done.item,
        };
        let Some(run) = self.run_mut(done.slot, done.run) else {
            return;
        };
        if done.comp_of != FORWARD {
            self.compensation_done(job, done.outcome, done.finished);
            return;
        }
        if done.item != NO_ITEM {
            return self.item_done(job, done.agent, done.outcome, done.finished);
        }
        let state = run.tasks[done.task as usize];
        if state.attempt != done.attempt
            || !matches!(state.status, TaskStatus::Dispatched | TaskStatus::Running)
        {
            return;
        }
        match done.outcome {
            Ok(value) => {
                let value = match (value, run.events.remove(&done.task)) {
                    (Value::Null, Some(event)) => event,
                    (value, _) => value,
                };
                let routes = run.spec.workflow.tasks[done.task as usize].routes.is_some();
                if routes && let Err(failure) = Self::check_route(run, done.task, &value) {
                    return self.attempt_failed(job, failure, done.finished);
                }
                // A null output is stored as none: no allocation for `noop`.
                let detail = (!value.is_null()).then(|| Detail::Output(Arc::new(value)));
                self.finish(
                    done.slot,
                    done.task,
                    TaskStatus::Succeeded,
                    detail,
                    done.finished,
                );
                if routes {
                    self.route_taken(done.slot, done.task);
                }
                self.drain_newly_ready();
                self.check_done(done.slot);
            }
            Err(failure) => self.attempt_failed(job, failure, done.finished),
        }
    }

    pub(super) fn max_attempts(spec: &Spec, task: u32) -> (u32, Option<&baton_model::Backoff>) {
        match spec.workflow.tasks[task as usize].retry.as_deref() {
            Some(r) => (r.max_attempts, Some(&r.backoff)),
            None => (1, None),
        }
    }

    pub(super) fn attempt_failed(&mut self, job: Job, failure: Failure, now: Instant) {
        let Some(run) = self.run_mut(job.slot, job.run) else {
            return;
        };
        let spec = run.spec.clone();
        if job.comp_of != FORWARD {
            self.compensation_done(job, Err(failure), now);
            return;
        }
        let (max, backoff) = Self::max_attempts(&spec, job.task);
        let message: Arc<str> = failure.message.as_str().into();
        let live = matches!(run.status, RunStatus::Running | RunStatus::Paused);
        if failure.retryable && job.attempt < max && live {
            let delay = self.retry_delay(backoff, job.attempt + 1, &failure);
            self.transition(
                job.slot,
                job.task,
                TaskStatus::Pending,
                Some(Detail::Error(message)),
                now,
            );
            let retry = Job {
                attempt: job.attempt + 1,
                ..job
            };
            self.add_timer(TimerKind::Retry, now + delay, retry);
        } else {
            let attempts = if job.attempt > 1 {
                format!(" after {} attempts", job.attempt)
            } else {
                String::new()
            };
            let reason = format!(
                "task `{}` failed{attempts}: {}",
                spec.ids[job.task as usize], failure.message
            );
            self.finish(
                job.slot,
                job.task,
                TaskStatus::Failed,
                Some(Detail::Error(message)),
                now,
            );
            self.fail_run(job.slot, reason, false);
        }
    }

    /// How long before attempt `attempt`: the task's backoff, or longer when
    /// the failure asked for it (`Retry-After`, up to
    /// [`Failure::MAX_RETRY_AFTER`]).
    pub(super) fn retry_delay(
        &mut self,
        backoff: Option<&baton_model::Backoff>,
        attempt: u32,
        failure: &Failure,
    ) -> std::time::Duration {
        let backoff = backoff.cloned().unwrap_or_default();
        let delay = retry::delay(&backoff, attempt, &mut self.rng);
        let asked = failure.retry_after.unwrap_or_default();
        delay.max(asked.min(Failure::MAX_RETRY_AFTER))
    }

    pub(super) fn add_timer(&mut self, kind: TimerKind, at: Instant, job: Job) {
        self.timer_seq += 1;
        self.timers.push(Reverse(Timer {
            at,
            seq: self.timer_seq,
            kind,
            job,
        }));
    }

    pub(super) fn fire_timers(&mut self) {
        let now = Instant::now();
        while let Some(Reverse(t)) = self.timers.peek().copied() {
            if t.at > now {
                break;
            }
            self.timers.pop();
            let job = t.job;
            if t.kind == TimerKind::Progress {
                self.progress_window_ended(job, now);
                continue;
            }
            let Some(run) = self.run_mut(job.slot, job.run) else {
                continue;
            };
            match t.kind {
                TimerKind::Retry if job.comp_of != FORWARD => self.ready.push_back(job),
                TimerKind::Retry if job.item != NO_ITEM => self.item_retry(job),
                TimerKind::Retry => {
                    let state = &run.tasks[job.task as usize];
                    if state.status != TaskStatus::Pending || state.attempt + 1 != job.attempt {
                        continue;
                    }
                    if !matches!(run.status, RunStatus::Running | RunStatus::Paused) {
                        continue;
                    }
                    let at = Self::at_ns(run, now);
                    run.tasks[job.task as usize].ready_at = at;
                    self.transition(job.slot, job.task, TaskStatus::Ready, None, now);
                    let run = self.run_mut(job.slot, job.run).expect("live run");
                    let spec = run.spec.clone();
                    match spec.workflow.tasks[job.task as usize].wait_for.as_deref() {
                        Some(filter) => self.wait_for(job, filter),
                        None => self.ready.push_back(job),
                    }
                }
                TimerKind::WaitTimeout => {
                    let Some(at) = self.waiters.iter().position(|w| {
                        w.run == job.run && w.task == job.task && w.attempt == job.attempt
                    }) else {
                        continue;
                    };
                    self.waiters.swap_remove(at);
                    let run = self.runs[job.slot as usize].as_mut().expect("live run");
                    let spec = run.spec.clone();
                    let filter = spec.workflow.tasks[job.task as usize].wait_for.as_deref();
                    let failure = Failure::retryable(format!(
                        "no `{}` event arrived within {}",
                        filter.map_or("", |f| f.event_type.as_str()),
                        filter
                            .and_then(|f| f.timeout)
                            .map_or_else(String::new, baton_model::duration::format)
                    ));
                    // The attempt number is the one the wait was for.
                    run.tasks[job.task as usize].attempt = job.attempt;
                    self.attempt_failed(job, failure, now);
                }
                // Handled before: a window outlives its run.
                TimerKind::Progress => {}
            }
        }
    }
}

/// The spec-local agents a job may run on: a pattern's turn on the agent whose
/// turn it is, a compensation action on its named agent, or on the
/// candidates of the task it undoes.
enum Candidates<'s> {
    Named(u16),
    Any(&'s [u16]),
}

impl<'s> Candidates<'s> {
    fn of(spec: &'s Spec, job: &Job, turn: Option<u16>) -> Candidates<'s> {
        if let Some(agent) = turn {
            return Candidates::Named(agent);
        }
        let forward = job.comp_of == FORWARD;
        let action =
            !forward && matches!(spec.tasks[job.comp_of as usize].undo, Some(Undo::Action));
        let named = match spec.workflow.tasks[job.comp_of.min(job.task) as usize]
            .compensation
            .as_deref()
        {
            Some(Compensation::Action {
                agent: Some(name), ..
            }) if action => spec
                .agents
                .iter()
                .position(|a| &a.agent.name == name)
                .map(|i| i as u16),
            _ => None,
        };
        match named {
            Some(i) => Candidates::Named(i),
            None if action => Candidates::Any(&spec.tasks[job.comp_of as usize].candidates),
            None => Candidates::Any(&spec.tasks[job.task as usize].candidates),
        }
    }

    fn local(&self) -> &[u16] {
        match self {
            Candidates::Named(i) => std::slice::from_ref(i),
            Candidates::Any(all) => all,
        }
    }
}

impl Done {
    fn of(
        job: &Job,
        agent: u16,
        spawned: bool,
        finished: Instant,
        outcome: crate::agent::Outcome,
    ) -> Done {
        Done {
            run: job.run,
            slot: job.slot,
            task: job.task,
            attempt: job.attempt,
            comp_of: job.comp_of,
            item: job.item,
            agent,
            spawned,
            finished,
            outcome,
        }
    }
}

//! Reporting: a run's view and summary (actual critical path, coordination
//! overhead), the engine's statistics.

use std::collections::HashMap;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde_json::Value;
use tokio::time::Instant;

use super::dynamic::FanOut;
use super::patterns::turn_label;
use super::{NO_AGENT, Run, Scheduler};
use crate::Error;
use crate::store::{RunId, RunStatus, TaskStatus};
use crate::view::{
    AgentStats, InstancePage, InstanceView, ItemCounts, LATENCY_BUCKETS_S, Percentiles, RunEntry,
    RunQuery, RunView, Stats, Summary, TaskCounts, TaskView,
};

pub(super) fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 3_600_000_000_000, 3).expect("valid histogram bounds")
}

pub(super) fn percentiles(h: &Histogram<u64>) -> Percentiles {
    if h.is_empty() {
        return Percentiles::default();
    }
    // One pass over the recorded values (nanoseconds), not one per bucket:
    // this runs on the scheduler's loop.
    let mut buckets = [0u64; LATENCY_BUCKETS_S.len()];
    let mut sum_ns = 0f64;
    for v in h.iter_recorded() {
        let (value, n) = (v.value_iterated_to(), v.count_at_value());
        sum_ns += value as f64 * n as f64;
        let secs = value as f64 / 1e9;
        if let Some(first) = LATENCY_BUCKETS_S.iter().position(|&le| secs <= le) {
            buckets[first] += n;
        }
    }
    for i in 1..buckets.len() {
        buckets[i] += buckets[i - 1];
    }
    Percentiles {
        count: h.len(),
        p50_us: h.value_at_quantile(0.5) as f64 / 1e3,
        p99_us: h.value_at_quantile(0.99) as f64 / 1e3,
        max_us: h.max() as f64 / 1e3,
        sum_us: sum_ns / 1e3,
        buckets,
    }
}

impl Scheduler {
    pub(super) fn view(&self, id: RunId) -> Result<RunView, Error> {
        let run = match self.by_id.get(&id) {
            Some(&slot) => self.runs[slot as usize].as_ref().expect("live run"),
            None => self.finished.get(&id).ok_or(Error::UnknownRun(id))?,
        };
        let summary = match &run.summary {
            Some(s) => (**s).clone(),
            None => summarize(run),
        };
        let task_states = run
            .tasks
            .iter()
            .enumerate()
            .map(|(i, t)| {
                let message = run.errors.get(&(i as u32)).map(|e| e.to_string());
                let skipped = t.status == TaskStatus::Skipped;
                TaskView {
                    id: run.spec.ids[i].to_string(),
                    status: t.status,
                    attempt: t.attempt,
                    agent: (t.agent != NO_AGENT)
                        .then(|| self.agents[usize::from(t.agent)].name.clone()),
                    output: run.outputs[i].as_deref().cloned(),
                    items: run
                        .fanouts
                        .get(&(i as u32))
                        .map(FanOut::counts)
                        .or_else(|| run.ended_fanouts.get(&(i as u32)).map(FanOut::counts))
                        .map(|[waiting, running, succeeded, failed]| ItemCounts {
                            total: waiting + running + succeeded + failed,
                            waiting,
                            running,
                            succeeded,
                            failed,
                        }),
                    child: run
                        .children
                        .iter()
                        .filter(|((t, _), _)| *t == i as u32)
                        .max_by_key(|((_, item), _)| *item)
                        .map(|(_, c)| c)
                        .or_else(|| run.done_children.get(&(i as u32)).and_then(|c| c.last()))
                        .copied(),
                    reason: message.clone().filter(|_| skipped),
                    error: message.filter(|_| !skipped),
                }
            })
            .collect();
        Ok(RunView {
            summary,
            task_states,
        })
    }

    /// A page of a fan-out's or loop's instances: from the running fan-out,
    /// or the ended one (a fan-out that succeeded has its outputs in the
    /// task's output).
    pub(super) fn instances(
        &self,
        id: RunId,
        task: &str,
        offset: u32,
        limit: u32,
    ) -> Result<InstancePage, Error> {
        use super::dynamic::ItemState;
        let run = match self.by_id.get(&id) {
            Some(&slot) => self.runs[slot as usize].as_ref().expect("live run"),
            None => self.finished.get(&id).ok_or(Error::UnknownRun(id))?,
        };
        let spec = &run.spec;
        let Some(t) = spec.plan.id(task) else {
            return Err(Error::UnknownTask {
                run: id,
                task: task.into(),
                hint: baton_model::did_you_mean(task, spec.ids.iter().map(|s| &**s)),
            });
        };
        let declared = &spec.workflow.tasks[t as usize];
        let kind = match (declared.for_each.is_some(), declared.looping().is_some()) {
            (true, _) => "for_each",
            (_, true) => "loop",
            _ => {
                return Err(Error::NoInstances {
                    run: id,
                    task: task.into(),
                });
            }
        };
        let Some(f) = run.fanouts.get(&t).or_else(|| run.ended_fanouts.get(&t)) else {
            return Ok(InstancePage {
                task: task.into(),
                kind,
                total: 0,
                items: Vec::new(),
                next_offset: None,
            });
        };
        let collected = run.outputs[t as usize].as_deref().and_then(Value::as_array);
        let end = offset.saturating_add(limit.max(1)).min(f.len);
        let errors: HashMap<u32, &str> = f
            .failures
            .iter()
            .filter(|(i, _)| (offset..end).contains(i))
            .map(|(i, e)| (*i, &**e))
            .collect();
        let items = (offset..end)
            .map(|i| {
                let at = i as usize;
                let status = match f.state[at] {
                    ItemState::Waiting => "waiting",
                    ItemState::Running => "running",
                    ItemState::Succeeded => "succeeded",
                    ItemState::Failed => "failed",
                };
                let output = (f.state[at] == ItemState::Succeeded)
                    .then(|| match f.results.get(at).and_then(Option::as_deref) {
                        Some(v) => Some(v.clone()),
                        None if kind == "for_each" => collected.and_then(|c| c.get(at).cloned()),
                        None => None,
                    })
                    .flatten();
                InstanceView {
                    index: i,
                    status,
                    attempt: f.attempts[at],
                    agent: turn_label(run, t, i),
                    output,
                    error: errors.get(&i).map(|e| e.to_string()),
                }
            })
            .collect();
        Ok(InstancePage {
            task: task.into(),
            kind,
            total: f.len,
            items,
            next_offset: (end < f.len).then_some(end),
        })
    }

    /// The runs `query` selects, newest first.
    pub(super) fn list(&self, query: &RunQuery) -> Vec<RunEntry> {
        let live = self
            .by_id
            .values()
            .filter_map(|&slot| self.runs[slot as usize].as_ref());
        let matches = |run: &&Run| {
            query.before.is_none_or(|b| run.id < b)
                && (query.statuses.is_empty() || query.statuses.contains(&run.status))
                && query.since_ms.is_none_or(|t| run.created_ms >= t)
                && query
                    .parent
                    .is_none_or(|p| run.parent.is_some_and(|j| j.run == p))
                && query.until_ms.is_none_or(|t| run.created_ms < t)
                && query
                    .workflow
                    .as_deref()
                    .is_none_or(|w| run.spec.workflow.name.as_deref() == Some(w))
                && query
                    .tenant
                    .as_deref()
                    .is_none_or(|t| run.spec.workflow.tenant.as_deref() == Some(t))
        };
        let mut runs: Vec<&Run> = live.chain(self.finished.values()).filter(matches).collect();
        let limit = query.limit.max(1);
        if runs.len() > limit {
            runs.select_nth_unstable_by_key(limit - 1, |r| std::cmp::Reverse(r.id));
            runs.truncate(limit);
        }
        runs.sort_unstable_by_key(|r| std::cmp::Reverse(r.id));
        runs.into_iter()
            .map(|run| RunEntry {
                run: run.id,
                workflow: run.spec.workflow.name.clone(),
                tenant: run.spec.workflow.tenant.clone(),
                status: run.status,
                created_ms: run.created_ms,
                reason: run.reason.clone(),
                tasks: match &run.summary {
                    Some(s) => s.tasks,
                    None => counts(run),
                },
                parent: run.parent.map(|j| j.run),
                rerun_of: run.rerun_of,
            })
            .collect()
    }

    pub(super) fn stats(&self) -> Stats {
        let mut s = Stats {
            runs_completed: self.ended[0],
            runs_failed: self.ended[1],
            runs_cancelled: self.ended[2],
            transitions: self.transitions,
            ready_queue: self.ready.len() as u64,
            runs_queued: self.admit.len() as u64,
            dispatch_latency: percentiles(&self.dispatch_hist),
            release_latency: percentiles(&self.release_hist),
            decision_latency: percentiles(&self.decision_hist),
            child_start_latency: percentiles(&self.child_hist),
            ..Stats::default()
        };
        for run in self.runs.iter().flatten() {
            match run.status {
                RunStatus::Running => s.runs_running += 1,
                RunStatus::Paused => s.runs_paused += 1,
                RunStatus::Compensating => s.runs_compensating += 1,
                _ => {}
            }
        }
        let now = Instant::now();
        s.agents = self
            .agents
            .iter()
            .map(|a| AgentStats {
                name: a.name.clone(),
                kind: a.kind.clone(),
                in_flight: a.in_flight,
                concurrency: (a.concurrency != u32::MAX).then_some(a.concurrency),
                queued: a.waiting.len() as u64,
                calls: a.calls,
                failures: a.failures,
                breaker: a
                    .breaker
                    .as_ref()
                    .map_or("closed", |b| b.state(now).as_str()),
            })
            .collect();
        s
    }
}

/// A run's tasks by status.
fn counts(run: &Run) -> TaskCounts {
    let mut tasks = TaskCounts::default();
    for (i, t) in run.tasks.iter().enumerate() {
        // A compensation task counts only once it ran.
        if t.attempt > 0 || !run.spec.plan.is_handler(i as u32) {
            tasks.add(t.status);
        }
    }
    tasks
}

pub(super) fn summarize(run: &Run) -> Summary {
    let spec = &run.spec;
    let tasks = counts(run);
    let order = spec.plan.order();
    let mut latencies: Vec<u64> = order
        .iter()
        .map(|&t| &run.tasks[t as usize])
        .filter(|t| t.attempt > 0)
        .map(|t| t.dispatched_at.saturating_sub(t.ready_at))
        .collect();
    let coordination_overhead = if latencies.is_empty() {
        Percentiles::default()
    } else {
        let n = latencies.len();
        let mut at = |q: f64| {
            let i = ((q * n as f64).ceil() as usize).clamp(1, n) - 1;
            *latencies.select_nth_unstable(i).1
        };
        let (p50, p99, max) = (at(0.5), at(0.99), at(1.0));
        Percentiles {
            count: n as u64,
            p50_us: p50 as f64 / 1e3,
            p99_us: p99 as f64 / 1e3,
            max_us: max as f64 / 1e3,
            ..Percentiles::default()
        }
    };
    // The chain that determined the makespan.
    let last = order
        .iter()
        .copied()
        .filter(|&t| run.tasks[t as usize].status.is_final())
        .max_by_key(|&t| run.tasks[t as usize].finished_at);
    let mut path = Vec::new();
    let mut agent_ns = 0u64;
    let mut at = last;
    while let Some(t) = at {
        let s = &run.tasks[t as usize];
        path.push(spec.ids[t as usize].to_string());
        if s.attempt > 0 {
            agent_ns += s.finished_at.saturating_sub(s.dispatched_at);
        }
        at = spec
            .plan
            .preds(t)
            .iter()
            .copied()
            .max_by_key(|&p| run.tasks[p as usize].finished_at);
    }
    path.reverse();
    let makespan_ns = last.map_or(0, |t| run.tasks[t as usize].finished_at);
    let queue = run.base.map_or(Duration::ZERO, |b| {
        b.saturating_duration_since(run.submitted)
    });
    Summary {
        run: run.id,
        workflow: spec.workflow.name.clone(),
        tenant: spec.workflow.tenant.clone(),
        status: run.status,
        reason: run.reason.clone(),
        tasks,
        makespan_ms: makespan_ns as f64 / 1e6,
        queue_ms: queue.as_secs_f64() * 1e3,
        critical_path: path,
        critical_path_agent_ms: agent_ns as f64 / 1e6,
        coordination_overhead_ms: makespan_ns.saturating_sub(agent_ns) as f64 / 1e6,
        coordination_overhead,
        rerun_of: run.rerun_of,
        parent: run.parent.map(|j| j.run),
        retries: run.retries,
        instances: run
            .ended_fanouts
            .values()
            .chain(run.fanouts.values())
            .map(FanOut::counts)
            .map(|[_, _, ok, failed]| u64::from(ok + failed))
            .sum(),
        compensations: run.compensations,
        compensation_failures: run.compensation_failures.clone(),
        tokens: (run.tokens != [0, 0]).then_some(crate::view::Tokens {
            prompt: run.tokens[0],
            completion: run.tokens[1],
        }),
    }
}

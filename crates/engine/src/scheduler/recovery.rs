//! Recovery: runs rebuilt from their records, to resume them (after a restart,
//! or when taking over another instance's runs) or to answer for them.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use baton_model::{Format, Source};
use serde_json::Value;
use tokio::time::Instant;

use super::dynamic::{FanOut, ItemEnd};
use super::report::summarize;
use super::saga::undo_queue;
use super::{CANCELLED, Job, Scheduler};
use crate::Error;
use crate::spec::Spec;
use crate::store::{Record, RunId, RunStatus, TaskStatus};

/// A run as its records tell it.
struct Past {
    key: u128,
    input: String,
    at_ms: u64,
    rerun_of: Option<RunId>,
    status: RunStatus,
    reason: Option<String>,
    /// Task → its last status, attempt and detail.
    tasks: HashMap<u32, (TaskStatus, u32, Option<String>)>,
    /// Fan-out task → its instances that ended.
    items: HashMap<u32, Vec<ItemEnd>>,
}

/// What records fold into: the workflows they name, the runs they tell (in
/// the order the runs were created), and each child run's parent job (read
/// from the record that names the child).
struct Folded {
    documents: HashMap<u128, String>,
    runs: Vec<(RunId, Past)>,
    parents: HashMap<RunId, Job>,
}

/// The child a record's detail names (`{"child": ID}`), read only from a
/// detail that starts so.
fn child_named(detail: &Option<String>) -> Option<RunId> {
    let d = detail.as_deref().filter(|d| d.starts_with("{\"child\""))?;
    super::children::named_child(Some(d))
}

/// Records folded into what they tell. Records of a run whose creation is not
/// among them are ignored.
fn fold(records: Vec<Record>) -> Folded {
    let mut parents: HashMap<RunId, Job> = HashMap::new();
    let mut documents: HashMap<u128, String> = HashMap::new();
    let mut runs: Vec<(RunId, Past)> = Vec::new();
    let mut index: HashMap<RunId, usize> = HashMap::new();
    for record in records {
        match record {
            Record::Workflow { key, document } => {
                documents.insert(key, document);
            }
            Record::RunCreated {
                run,
                workflow,
                input,
                at_ms,
                rerun_of,
            } => {
                index.insert(run, runs.len());
                runs.push((
                    run,
                    Past {
                        key: workflow,
                        input,
                        at_ms,
                        rerun_of,
                        status: RunStatus::Running,
                        reason: None,
                        tasks: HashMap::new(),
                        items: HashMap::new(),
                    },
                ));
            }
            Record::Task {
                run,
                task,
                status,
                attempt,
                agent: _,
                detail,
                ..
            } => {
                if let Some(&i) = index.get(&run) {
                    if let Some(child) = child_named(&detail) {
                        parents.insert(child, Job::forward(run, 0, task, attempt));
                    }
                    runs[i].1.tasks.insert(task, (status, attempt, detail));
                }
            }
            Record::Item {
                run,
                task,
                item,
                status,
                attempt,
                detail,
                ..
            } => {
                if let Some(&i) = index.get(&run) {
                    if let Some(child) = child_named(&detail) {
                        let job = Job::forward(run, 0, task, attempt);
                        parents.insert(child, Job { item, ..job });
                    }
                    runs[i].1.items.entry(task).or_default().push(ItemEnd {
                        item,
                        status,
                        attempt,
                        detail,
                    });
                }
            }
            Record::Run {
                run,
                status,
                reason,
                ..
            } => {
                if let Some(&i) = index.get(&run) {
                    runs[i].1.status = status;
                    if reason.is_some() {
                        runs[i].1.reason = reason;
                    }
                }
            }
        }
    }
    Folded {
        documents,
        runs,
        parents,
    }
}

/// Puts the tasks' recorded states back: what had ended keeps its status (and a
/// success its output); what was in flight or waiting runs again. `true` when a
/// task that is not a failure handler had failed.
fn restore_tasks(run: &mut super::Run, spec: &Spec, past: &Past) -> bool {
    let mut failed = false;
    for (&task, (status, attempt, detail)) in &past.tasks {
        let state = &mut run.tasks[task as usize];
        state.attempt = *attempt;
        match status {
            TaskStatus::Succeeded
            | TaskStatus::Skipped
            | TaskStatus::Compensated
            | TaskStatus::Failed
            | TaskStatus::Cancelled => {
                state.status = *status;
                if *status == TaskStatus::Succeeded {
                    run.outputs[task as usize] = detail
                        .as_deref()
                        .map(|d| Arc::new(serde_json::from_str(d).unwrap_or(Value::Null)));
                }
                if *status == TaskStatus::Failed && !spec.plan.is_handler(task) {
                    failed = true;
                }
            }
            // A task whose attempt runs a child run: it waits for that child
            // again (`relink_children`).
            TaskStatus::Running if spec.children.contains_key(&(task, 0)) => {
                match super::children::named_child(detail.as_deref()) {
                    Some(child) => {
                        state.status = TaskStatus::Running;
                        run.children.insert((task, super::NO_ITEM), child);
                    }
                    None => state.status = TaskStatus::Pending,
                }
            }
            // In flight or waiting when the process stopped: run it again.
            _ => state.status = TaskStatus::Pending,
        }
    }
    failed
}

/// The instances of tasks that had ended (a fan-out or loop finished before
/// the restart) are rebuilt from their records, for status and instance
/// pages; only the unfinished tasks' instances are kept to replay.
fn restore_ended_instances(run: &mut super::Run) {
    let ended: Vec<u32> = run
        .recovered
        .keys()
        .copied()
        .filter(|&t| run.tasks[t as usize].status.is_final())
        .collect();
    for task in ended {
        // Only the instances' ends: a finished run keeps the records that
        // named its instances' children, not what they said while running.
        let mut ends = run.recovered.remove(&task).unwrap_or_default();
        ends.retain(|e| e.status.is_final());
        if ends.is_empty() {
            continue;
        }
        let repeat = run.spec.workflow.tasks[task as usize].looping().is_some();
        let f = FanOut::recorded(ends, repeat);
        run.started_instances += u64::from(f.len);
        run.ended_fanouts.insert(task, f);
    }
}

/// Which runs [`Scheduler::recover`] rebuilds from records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Rebuild {
    /// The unfinished ones, to resume them, and the finished children of
    /// those (a parent that fails undoes them).
    Unfinished,
    /// The finished ones, to answer for them.
    Finished,
    /// Both (an engine starting on its own store): a finished run whose
    /// workflow cannot be prepared again is skipped with a warning.
    All,
}

impl Scheduler {
    /// Rebuilds runs from their records: unfinished ones resume, finished
    /// ones are kept for status queries, as `which` says. Runs this engine
    /// already knows are skipped. Returns the ids of the runs rebuilt (with
    /// [`Rebuild::All`], of those resumed).
    pub(super) fn recover(
        &mut self,
        records: Vec<Record>,
        which: Rebuild,
    ) -> Result<Vec<RunId>, Error> {
        let Folded {
            documents,
            runs,
            parents,
        } = fold(records);
        let mut specs: HashMap<u128, Arc<Spec>> = HashMap::new();
        let mut resumed = Vec::new();
        // The runs rebuilt here: a finished child of one of them is rebuilt
        // too (a parent that fails later undoes it, see `link_done_child`).
        let mut rebuilt: HashSet<RunId> = HashSet::new();
        for (id, mut past) in runs {
            if self.options.node.is_none() {
                self.last_id = self.last_id.max(id.0);
            }
            let remember = past.status.is_final();
            let child_of_rebuilt = parents.get(&id).is_some_and(|p| rebuilt.contains(&p.run));
            let wanted = match which {
                Rebuild::Unfinished => !remember || child_of_rebuilt,
                Rebuild::Finished => remember,
                Rebuild::All => true,
            };
            if !wanted || self.by_id.contains_key(&id) || self.finished.contains_key(&id) {
                continue;
            }
            let spec = match specs.get(&past.key) {
                Some(s) => s.clone(),
                None => {
                    let resume_error = |message: String| Error::Resume { run: id, message };
                    let prepared = documents
                        .get(&past.key)
                        .ok_or_else(|| "its workflow is missing from the state store".to_string())
                        .and_then(|document| {
                            prepare_document(
                                document,
                                &self.options.agents(),
                                &self.options.operator_agents,
                            )
                        });
                    let spec = match prepared {
                        Ok(spec) => Arc::new(spec),
                        Err(message) if remember && which != Rebuild::Finished => {
                            tracing::warn!(run = %id, %message, "a finished run is not kept for status queries");
                            continue;
                        }
                        Err(message) => return Err(resume_error(message)),
                    };
                    specs.insert(past.key, spec.clone());
                    spec
                }
            };
            self.written.insert(past.key);
            let input: Value = serde_json::from_str(&past.input).unwrap_or(Value::Null);
            let slot = self.new_run(id, spec.clone(), Arc::new(input), past.at_ms);
            let run = self.runs[slot as usize].as_mut().expect("live run");
            run.status = past.status;
            run.reason = past.reason.clone();
            run.rerun_of = past.rerun_of;
            // The parent's slot is looked up when the child ends.
            run.parent = parents.get(&id).copied();
            let failed = restore_tasks(run, &spec, &past);
            run.recovered = std::mem::take(&mut past.items);
            restore_ended_instances(run);
            rebuilt.insert(id);
            if remember {
                self.remember_ended(slot, id, &spec, past.status);
                if past.status == RunStatus::Completed {
                    self.link_done_child(id, parents.get(&id).copied());
                }
                if which == Rebuild::Unfinished {
                    continue;
                }
            } else {
                let failing = failed
                    || past.status == RunStatus::Compensating
                    || past.status == RunStatus::Cancelled;
                let unfinished = self.rearm(slot, &spec, failing);
                tracing::info!(run = %id, unfinished, "resuming run");
                self.admit.push_back(slot);
            }
            if which != Rebuild::All || !remember {
                resumed.push(id);
            }
        }
        if which != Rebuild::Finished {
            self.relink_children(&resumed);
            // A run that was failing undoes its completed children too (they
            // were linked to it after its queue was first made).
            for id in &resumed {
                let Some(&slot) = self.by_id.get(id) else {
                    continue;
                };
                let run = self.runs[slot as usize].as_mut().expect("live run");
                if run.failed {
                    run.undo_queue = undo_queue(run);
                }
            }
        }
        Ok(resumed)
    }

    /// A child run that completed, rebuilt from its records: its parent (live
    /// or ended) counts it among the children its task completed, in the
    /// order they were created, so compensating the task undoes it as it
    /// would have before the restart.
    fn link_done_child(&mut self, child: RunId, parent: Option<Job>) {
        let Some(parent) = parent else { return };
        let run = match self.by_id.get(&parent.run) {
            Some(&slot) => self.runs[slot as usize].as_mut(),
            None => self.finished.get_mut(&parent.run),
        };
        if let Some(run) = run {
            run.done_children
                .entry(parent.task)
                .or_default()
                .push(child);
        }
    }

    /// A run that ended elsewhere, kept for status queries only (timing figures
    /// are not in the records, so they read zero).
    fn remember_ended(&mut self, slot: u32, id: RunId, spec: &Spec, status: RunStatus) {
        let run = self.runs[slot as usize].as_mut().expect("live run");
        let now = Instant::now();
        run.status = status;
        run.base = Some(now);
        run.ended = Some(now);
        run.unfinished = 0;
        run.summary = Some(Arc::new(summarize(run)));
        self.progress
            .total
            .fetch_sub(u64::from(spec.planned), Ordering::Relaxed);
        self.retire(slot, id);
    }

    /// Counts what the restored run has left and how many predecessors each task
    /// still waits for; a run that was failing (or compensating, or cancelled)
    /// goes on compensating. Returns the tasks left.
    fn rearm(&mut self, slot: u32, spec: &Spec, failing: bool) -> u32 {
        let run = self.runs[slot as usize].as_mut().expect("live run");
        let mut unfinished = 0;
        for &t in spec.plan.order() {
            let status = run.tasks[t as usize].status;
            let c = &mut self.counts;
            match status {
                TaskStatus::Succeeded | TaskStatus::Compensated => c.succeeded += 1,
                TaskStatus::Failed => c.failed += 1,
                TaskStatus::Skipped | TaskStatus::Cancelled => c.skipped += 1,
                TaskStatus::Running => {
                    c.running += 1;
                    unfinished += 1;
                }
                _ => unfinished += 1,
            }
            if status == TaskStatus::Skipped {
                run.skipped_any = true;
            }
            run.tasks[t as usize].deps_left = spec
                .plan
                .preds(t)
                .iter()
                .filter(|&&p| {
                    !matches!(
                        run.tasks[p as usize].status,
                        TaskStatus::Succeeded | TaskStatus::Skipped
                    )
                })
                .count() as u32;
        }
        run.unfinished = unfinished;
        if failing {
            run.failed = true;
            run.cancelled = run.reason.as_deref() == Some(CANCELLED);
            run.undo_queue = undo_queue(run);
            run.status = RunStatus::Compensating;
        }
        unfinished
    }
}

/// Prepares a stored workflow document again (on resume), the operator's
/// agents applied again (they hold what the document does not: see
/// [`Spec::sealed`]).
pub(super) fn prepare_document(
    document: &str,
    agents: &crate::agent::Options,
    operator: &[baton_model::Agent],
) -> Result<Spec, String> {
    let source = Source::from_str("stored workflow", document, Format::Json);
    let mut checked = baton_model::load(&source).map_err(|e| e.to_string())?;
    checked.workflow.override_agents(operator);
    let plan = baton_plan::plan_checked(&checked, &baton_plan::Options::default())
        .map_err(|d| d.message.clone())?;
    let sealed = crate::overrides::sealed(operator);
    Spec::build_sealed(checked, Arc::new(plan), agents, sealed).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task(run: u64, task: u32, status: TaskStatus, attempt: u32) -> Record {
        Record::Task {
            run: RunId(run),
            task,
            status,
            attempt,
            agent: 0,
            at_us: 0,
            detail: None,
        }
    }

    #[test]
    fn fold_keeps_the_last_state_of_each_task_the_last_reason_given_and_each_childs_parent() {
        let records = vec![
            Record::Workflow {
                key: 7,
                document: "{}".into(),
            },
            task(9, 0, TaskStatus::Running, 1), // a run whose creation is not here
            Record::RunCreated {
                run: RunId(1),
                workflow: 7,
                input: "null".into(),
                at_ms: 5,
                rerun_of: None,
            },
            task(1, 0, TaskStatus::Running, 1),
            task(1, 0, TaskStatus::Failed, 1),
            task(1, 0, TaskStatus::Running, 2),
            Record::Item {
                run: RunId(1),
                task: 3,
                item: 4,
                status: TaskStatus::Running,
                attempt: 1,
                agent: 0,
                at_us: 0,
                detail: Some(format!("{{\"child\":\"{}\"}}", RunId(77))),
            },
            Record::Run {
                run: RunId(1),
                status: RunStatus::Compensating,
                at_ms: 6,
                reason: Some("task a failed".into()),
            },
            Record::Run {
                run: RunId(1),
                status: RunStatus::Failed,
                at_ms: 7,
                reason: None,
            },
        ];
        let Folded {
            documents,
            runs,
            parents,
        } = fold(records);
        assert_eq!(documents.get(&7).map(String::as_str), Some("{}"));
        assert_eq!(runs.len(), 1, "records of unknown runs are ignored");
        let (id, past) = &runs[0];
        assert_eq!((*id, past.key, past.at_ms), (RunId(1), 7, 5));
        assert_eq!(past.status, RunStatus::Failed);
        assert_eq!(past.reason.as_deref(), Some("task a failed"));
        assert_eq!(past.tasks[&0], (TaskStatus::Running, 2, None));
        let parent = parents[&RunId(77)];
        assert_eq!(
            (parent.run, parent.task, parent.item),
            (RunId(1), 3, 4),
            "the loop iteration that started child 77"
        );
    }
}

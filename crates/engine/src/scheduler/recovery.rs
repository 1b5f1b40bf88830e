//! Recovery: runs rebuilt from their records, to resume them (after a restart,
//! or when taking over another instance's runs) or to answer for them.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use baton_model::{Format, Source};
use serde_json::Value;
use tokio::time::Instant;

use super::report::summarize;
use super::saga::undo_queue;
use super::{CANCELLED, Scheduler};
use crate::Error;
use crate::spec::Spec;
use crate::store::{Record, RunId, RunStatus, TaskStatus};

impl Scheduler {
    /// Rebuilds runs from their records: unfinished ones resume (`remember` false),
    /// or finished ones are kept for status queries (`remember` true). Runs this
    /// engine already knows are skipped. Returns the ids of the runs rebuilt.
    pub(super) fn recover(
        &mut self,
        records: Vec<Record>,
        remember: bool,
    ) -> Result<Vec<RunId>, Error> {
        struct Past {
            key: u128,
            input: String,
            at_ms: u64,
            status: RunStatus,
            reason: Option<String>,
            tasks: HashMap<u32, (TaskStatus, u32, Option<String>)>,
        }
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
                } => {
                    index.insert(run, runs.len());
                    runs.push((
                        run,
                        Past {
                            key: workflow,
                            input,
                            at_ms,
                            status: RunStatus::Running,
                            reason: None,
                            tasks: HashMap::new(),
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
                        runs[i].1.tasks.insert(task, (status, attempt, detail));
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
        let mut specs: HashMap<u128, Arc<Spec>> = HashMap::new();
        let mut resumed = Vec::new();
        for (id, past) in runs {
            if self.options.node.is_none() {
                self.last_id = self.last_id.max(id.0);
            }
            if past.status.is_final() != remember
                || self.by_id.contains_key(&id)
                || self.finished.contains_key(&id)
            {
                continue;
            }
            let resume_error = |message: String| Error::Resume { run: id, message };
            let spec = match specs.get(&past.key) {
                Some(s) => s.clone(),
                None => {
                    let document = documents.get(&past.key).ok_or_else(|| {
                        resume_error("its workflow is missing from the state store".into())
                    })?;
                    let spec = Arc::new(
                        prepare_document(document, &self.options.agents()).map_err(resume_error)?,
                    );
                    specs.insert(past.key, spec.clone());
                    spec
                }
            };
            self.written.insert(past.key);
            let input: Value = serde_json::from_str(&past.input).unwrap_or(Value::Null);
            let slot = self.new_run(id, spec.clone(), Arc::new(input), past.at_ms);
            let run = self.runs[slot as usize].as_mut().expect("live run");
            run.status = past.status;
            run.reason = past.reason;
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
                    // In flight or waiting when the process stopped: run it again.
                    _ => state.status = TaskStatus::Pending,
                }
            }
            if remember {
                // Ended elsewhere: kept for status queries only (timing figures
                // are not in the records, so they read zero).
                let now = Instant::now();
                run.status = past.status;
                run.base = Some(now);
                run.ended = Some(now);
                run.unfinished = 0;
                run.summary = Some(Arc::new(summarize(run)));
                self.progress
                    .total
                    .fetch_sub(u64::from(spec.planned), Ordering::Relaxed);
                self.retire(slot, id);
                resumed.push(id);
                continue;
            }
            let mut unfinished = 0;
            for &t in spec.plan.order() {
                let status = run.tasks[t as usize].status;
                let c = &mut self.counts;
                match status {
                    TaskStatus::Succeeded | TaskStatus::Compensated => c.succeeded += 1,
                    TaskStatus::Failed => c.failed += 1,
                    TaskStatus::Skipped | TaskStatus::Cancelled => c.skipped += 1,
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
            if failed
                || past.status == RunStatus::Compensating
                || past.status == RunStatus::Cancelled
            {
                run.failed = true;
                run.cancelled = run.reason.as_deref() == Some(CANCELLED);
                run.undo_queue = undo_queue(run);
                run.status = RunStatus::Compensating;
            }
            tracing::info!(run = %id, unfinished, "resuming run");
            self.admit.push_back(slot);
            resumed.push(id);
        }
        Ok(resumed)
    }
}

/// Prepares a stored workflow document again (on resume).
pub(super) fn prepare_document(
    document: &str,
    agents: &crate::agent::Options,
) -> Result<Spec, String> {
    let source = Source::from_str("stored workflow", document, Format::Json);
    let checked = baton_model::load(&source).map_err(|e| e.to_string())?;
    let plan = baton_plan::plan_checked(&checked, &baton_plan::Options::default())
        .map_err(|d| d.message.clone())?;
    Spec::build(checked, Arc::new(plan), agents).map_err(|e| e.to_string())
}

//! Rerun from a task: a new run of a finished run's workflow and input that
//! keeps the outputs of the tasks that succeeded, except the chosen task and
//! everything downstream of it, which run again (as does every task that had
//! not succeeded). The reused tasks are recorded as succeeded with their
//! outputs, so the new run is whole in the store by itself and resumes like
//! any other; it names the run it reran.

use std::sync::Arc;

use tokio::sync::oneshot;
use tokio::time::Instant;

use super::{Detail, Scheduler};
use crate::Error;
use crate::store::{RunId, TaskStatus};

impl Scheduler {
    pub(super) fn rerun(
        &mut self,
        of: RunId,
        from: &str,
        reply: oneshot::Sender<Result<RunId, Error>>,
    ) {
        if let Some(&slot) = self.by_id.get(&of) {
            let run = self.runs[slot as usize].as_ref().expect("live run");
            let _ = reply.send(Err(Error::Conflict {
                run: of,
                status: run.status,
                op: "rerun (it has not ended)",
            }));
            return;
        }
        let Some(original) = self.finished.get(&of) else {
            let _ = reply.send(Err(Error::UnknownRun(of)));
            return;
        };
        let spec = original.spec.clone();
        let Some(start) = spec.plan.id(from) else {
            let _ = reply.send(Err(Error::UnknownTask {
                run: of,
                task: from.into(),
                hint: baton_model::did_you_mean(from, spec.ids.iter().map(|s| &**s)),
            }));
            return;
        };
        // `start` and what depends on it, in one pass in plan order.
        let mut again = vec![false; spec.tasks.len()];
        again[start as usize] = true;
        for &t in spec.plan.order() {
            if spec.plan.preds(t).iter().any(|&p| again[p as usize]) {
                again[t as usize] = true;
            }
        }
        let reused: Vec<(u32, u32, Option<Arc<serde_json::Value>>)> = spec
            .plan
            .order()
            .iter()
            .copied()
            .filter(|&t| {
                !again[t as usize]
                    && !spec.plan.is_handler(t)
                    && original.tasks[t as usize].status == TaskStatus::Succeeded
            })
            .map(|t| {
                let state = original.tasks[t as usize];
                (t, state.attempt, original.outputs[t as usize].clone())
            })
            .collect();
        let input = (*original.input).clone();
        let Some((_, slot)) = self.create(spec.clone(), input, Some(of), reply) else {
            return;
        };
        let now = Instant::now();
        for (t, attempt, output) in &reused {
            let run = self.runs[slot as usize].as_mut().expect("live run");
            run.tasks[*t as usize].attempt = *attempt;
            run.outputs[*t as usize] = output.clone();
            let detail = output.clone().map(Detail::Output);
            self.transition(slot, *t, TaskStatus::Succeeded, detail, now);
        }
        let run = self.runs[slot as usize].as_mut().expect("live run");
        for &t in spec.plan.order() {
            run.tasks[t as usize].deps_left = spec
                .plan
                .preds(t)
                .iter()
                .filter(|&&p| run.tasks[p as usize].status != TaskStatus::Succeeded)
                .count() as u32;
        }
        run.unfinished -= reused.len() as u32;
        let extra = serde_json::json!({
            "of": of.to_string(),
            "from": from,
            "reused": reused.len(),
        });
        self.decide(slot, None, "rerun", extra);
    }
}

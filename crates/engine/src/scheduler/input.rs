//! What a task sees: the input of an agent call.

use baton_model::Compensation;
use serde_json::{Map, Value};

use super::dynamic::item_value;
use super::patterns::pattern_input;
use super::{FORWARD, Job, NO_ITEM, Run};

/// What the previous iteration of a loop handed on (`null` for the first).
pub(super) fn previous(run: &Run, task: u32, iteration: u32) -> Value {
    let Some(before) = iteration.checked_sub(1) else {
        return Value::Null;
    };
    run.fanouts
        .get(&task)
        .and_then(|f| f.results.get(before as usize))
        .and_then(|r| r.as_deref().cloned())
        .unwrap_or(Value::Null)
}

/// What an agent is given for a call.
pub(super) fn call_input(run: &Run, job: &Job) -> Value {
    let spec = &run.spec;
    let mut m = Map::new();
    m.insert("run".into(), Value::String(run.id.to_string()));
    m.insert(
        "task".into(),
        Value::String(spec.ids[job.task as usize].to_string()),
    );
    m.insert("attempt".into(), Value::from(job.attempt));
    m.insert(
        "input".into(),
        spec.workflow.tasks[job.task as usize]
            .input
            .as_deref()
            .cloned()
            .unwrap_or(Value::Null),
    );
    let mut upstream = Map::new();
    for &p in spec.plan.preds(job.task) {
        if let Some(o) = run.outputs[p as usize].as_deref() {
            upstream.insert(spec.ids[p as usize].to_string(), o.clone());
        }
    }
    m.insert("upstream".into(), Value::Object(upstream));
    m.insert("run_input".into(), (*run.input).clone());
    if job.item != NO_ITEM && spec.workflow.tasks[job.task as usize].looping().is_some() {
        m.insert("iteration".into(), Value::from(job.item));
        m.insert("previous".into(), previous(run, job.task, job.item));
        pattern_input(run, job.task, job.item, &mut m);
    } else if job.item != NO_ITEM {
        m.insert("item".into(), item_value(run, job.task, job.item));
        m.insert("index".into(), Value::from(job.item));
    }
    if let Some(e) = run.events.get(&job.task) {
        m.insert("event".into(), e.clone());
    }
    if job.comp_of != FORWARD {
        let orig = job.comp_of as usize;
        m.insert(
            "compensate".into(),
            Value::String(spec.ids[orig].to_string()),
        );
        m.insert(
            "output".into(),
            run.outputs[orig].as_deref().cloned().unwrap_or(Value::Null),
        );
        if let Some(Compensation::Action { action, input, .. }) =
            spec.workflow.tasks[orig].compensation.as_deref()
        {
            m.insert("action".into(), Value::String(action.clone()));
            m.insert("input".into(), input.clone().unwrap_or(Value::Null));
        }
    }
    Value::Object(m)
}

//! `memory`: what state costs.
//!
//! * `memory/plan/<n>/per_task`: `Plan::heap_bytes` of a random n-task plan
//!   over n (the planner's own accounting, not RSS).
//! * `memory/engine/runs/<r>x100/per_run` and `per_task`: resident-set
//!   growth while r runs of 100 tasks are submitted at once and retained
//!   (finished runs stay queryable, up to `keep_finished`), over r and over
//!   r × 100: everything included (run state, task states, the published
//!   transitions in the MemoryLog, the summaries).
//! * `memory/engine/single/<n>/per_task`: the same for one n-task run.
//!
//! RSS growth depends on the allocator (the `baton` binary uses mimalloc) and
//! on what the allocator kept from earlier suites: read it as an upper bound.
//! `memory/peak_rss/<suite>` (recorded after every suite) is the process's
//! peak resident set while that suite ran.

use crate::suites::{coordination, events};
use crate::{Config, Error, Record, Sink};

pub(crate) fn run(config: &Config, sink: &mut Sink<'_>) -> Result<(), Error> {
    for n in config.pick(&[1_000, 100_000, 1_000_000], &[1_000, 100_000], &[1_000]) {
        let workflow = baton_model::generate::workflow(&baton_model::generate::Spec::new(
            n,
            baton_model::generate::Shape::Random,
        ));
        let checked = baton_model::validate(workflow).expect("generated workflows are valid");
        let plan = baton_plan::plan_checked(&checked, &Default::default()).expect("acyclic");
        let bytes = plan.heap_bytes() + std::mem::size_of_val(&plan);
        sink.push(
            Record::new(
                format!("memory/plan/{n}/per_task"),
                "Plan::heap_bytes (plus the Plan itself) over the task count, random shape",
                "bytes",
                false,
                vec![bytes as f64 / n as f64],
            )
            .param("tasks", n)
            .derive("plan_bytes", bytes as f64),
        );
    }
    let rt = events::runtime();
    for runs in config.pick(&[1_000, 10_000], &[1_000], &[100]) {
        let spec = coordination::spec(100);
        let name = format!("memory/engine/runs/{runs}x100");
        let samples = coordination::measure(&rt, &name, &spec, runs, config.repeats)?;
        let growth: Vec<f64> = samples.iter().map(|s| s.rss_growth as f64).collect();
        sink.push(
            Record::new(
                format!("{name}/per_run"),
                "resident-set growth while R 100-task runs are submitted, run and retained, over R (everything included)",
                "bytes",
                false,
                growth.iter().map(|g| g / runs as f64).collect(),
            )
            .param("runs", runs),
        );
        sink.push(
            Record::new(
                format!("{name}/per_task"),
                "the same growth over R × 100 tasks",
                "bytes",
                false,
                growth.iter().map(|g| g / (runs * 100) as f64).collect(),
            )
            .param("runs", runs),
        );
    }
    for n in config.pick(&[1_000_000], &[100_000], &[1_000]) {
        let spec = coordination::spec(n);
        let name = format!("memory/engine/single/{n}");
        let samples = coordination::measure(&rt, &name, &spec, 1, config.repeats)?;
        sink.push(
            Record::new(
                format!("{name}/per_task"),
                "resident-set growth during one n-task run (state, published transitions, summary), over n",
                "bytes",
                false,
                samples.iter().map(|s| s.rss_growth as f64 / n as f64).collect(),
            )
            .param("tasks", n),
        );
    }
    Ok(())
}

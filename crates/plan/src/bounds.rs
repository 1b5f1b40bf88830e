//! What a dynamic workflow may become at run time, bounded: fan-outs at their
//! `max_items`, loops at their `max_iterations`, sub-workflows at their own
//! bounds, every route taken. A static workflow has no bounds (its plan is
//! exact).

use baton_model::{Pattern, SubWorkflow, Task, Workflow};
use serde::Serialize;

use crate::Plan;

/// Why a task's count or time is a bound, with the bound's factor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DynamicTask {
    /// The task.
    pub task: u32,
    /// `for_each`, `loop`, `workflow` or `routes`.
    pub kind: &'static str,
    /// Its instances at most (items, iterations × the body, or the child's
    /// tasks; 1 for a route's choice).
    pub instances: u64,
}

/// The worst case of a dynamic workflow.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Bounds {
    /// Task instances at most: every task once, a fan-out `max_items` times, a
    /// loop `max_iterations` times its body, a sub-workflow's own bound (its
    /// task included).
    pub tasks: u64,
    /// The critical path's length at most, µs: fan-outs run at `max_items` in
    /// waves of `max_parallel` (all at once without it), loops run
    /// `max_iterations` times, a sub-workflow takes its own worst critical path.
    pub critical_length: u64,
    /// That path's tasks.
    pub critical_path: Vec<u32>,
    /// Levels of runs at most (1: no sub-workflow).
    pub depth: u32,
    /// The tasks decided at run time.
    pub dynamic: Vec<DynamicTask>,
    /// Sub-workflows named by file or catalog, counted as one plain task each
    /// (`baton run` and `baton serve` read them when the run starts).
    pub unresolved: usize,
}

/// The worst case of `workflow` planned as `plan`, or `None` when nothing in it
/// is decided at run time.
pub fn bounds(workflow: &Workflow, plan: &Plan) -> Option<Bounds> {
    let dynamic = |t: &Task| {
        t.for_each.is_some() || t.looping().is_some() || t.workflow.is_some() || t.routes.is_some()
    };
    if !workflow.tasks.iter().any(dynamic) {
        return None;
    }
    Some(of(workflow, plan))
}

fn of(workflow: &Workflow, plan: &Plan) -> Bounds {
    let n = workflow.tasks.len();
    let mut count = vec![1u64; n];
    let mut time: Vec<u64> = (0..n as u32).map(|t| plan.weight(t)).collect();
    let mut dynamic = Vec::new();
    let mut depth = 1;
    let mut unresolved = 0;
    for (i, t) in workflow.tasks.iter().enumerate() {
        if plan.is_handler(i as u32) {
            continue;
        }
        let task = i as u32;
        match t.workflow.as_deref() {
            Some(SubWorkflow::Inline(child)) => match child_bounds(child) {
                Some(b) => {
                    count[i] = 1 + b.tasks;
                    time[i] = b.critical_length;
                    depth = depth.max(1 + b.depth);
                    unresolved += b.unresolved;
                    dynamic.push(DynamicTask {
                        task,
                        kind: "workflow",
                        instances: b.tasks,
                    });
                }
                None => unresolved += 1,
            },
            Some(_) => unresolved += 1,
            None => {}
        }
        if let Some(f) = t.for_each.as_deref() {
            let items = u64::from(f.max_items);
            let waves = f
                .max_parallel
                .map_or(1, |p| items.div_ceil(u64::from(p)).max(1));
            count[i] = count[i].saturating_mul(items);
            time[i] = time[i].saturating_mul(waves);
            dynamic.push(DynamicTask {
                task,
                kind: "for_each",
                instances: items,
            });
        }
        if let Some(l) = t.looping() {
            let iterations = u64::from(l.max_iterations);
            // A supervisor's delegated calls run side by side: its time is
            // that of its longest chain of turns.
            let sequential = t
                .pattern
                .as_deref()
                .map_or(iterations, |p| u64::from(p.longest_turns()));
            count[i] = count[i].saturating_mul(iterations);
            time[i] = time[i].saturating_mul(sequential);
            // A hierarchical supervisor's calls to teams are child runs: each
            // at the worst team's bounds.
            if let Some(Pattern::Supervisor {
                teams,
                max_turns,
                max_delegates,
                ..
            }) = t.pattern.as_deref()
                && !teams.is_empty()
            {
                let (mut tasks, mut length) = (0u64, 0u64);
                for team in teams {
                    match &team.workflow {
                        SubWorkflow::Inline(child) => match child_bounds(child) {
                            Some(b) => {
                                tasks = tasks.max(b.tasks);
                                length = length.max(b.critical_length);
                                depth = depth.max(1 + b.depth);
                                unresolved += b.unresolved;
                            }
                            None => unresolved += 1,
                        },
                        _ => unresolved += 1,
                    }
                }
                let calls = u64::from(*max_turns) * u64::from(*max_delegates);
                count[i] = count[i].saturating_add(calls.saturating_mul(tasks));
                let turn = plan.weight(task).max(length);
                time[i] = turn.saturating_mul(sequential);
            }
            dynamic.push(DynamicTask {
                task,
                kind: t.pattern.as_deref().map_or("loop", |p| p.name()),
                instances: count[i],
            });
        }
        if t.routes.is_some() {
            dynamic.push(DynamicTask {
                task,
                kind: "routes",
                instances: 1,
            });
        }
    }
    // The longest path under the worst-case times, in plan order.
    let mut finish = vec![0u64; n];
    let mut via = vec![u32::MAX; n];
    let mut last = None;
    for &t in plan.order() {
        let (start, from) = plan
            .preds(t)
            .iter()
            .map(|&p| (finish[p as usize], p))
            .max()
            .unwrap_or((0, u32::MAX));
        finish[t as usize] = start.saturating_add(time[t as usize]);
        via[t as usize] = from;
        if last.is_none_or(|l: u32| finish[t as usize] > finish[l as usize]) {
            last = Some(t);
        }
    }
    let mut path = Vec::new();
    let mut at = last.unwrap_or(u32::MAX);
    while at != u32::MAX {
        path.push(at);
        at = via[at as usize];
    }
    path.reverse();
    let tasks = (0..n)
        .filter(|&i| !plan.is_handler(i as u32))
        .map(|i| count[i])
        .fold(0u64, u64::saturating_add);
    Bounds {
        tasks,
        critical_length: last.map_or(0, |l| finish[l as usize]),
        critical_path: path,
        depth,
        dynamic,
        unresolved,
    }
}

/// An inline child's bounds (a static child is its plan: its tasks, its
/// critical path). `None` when it cannot be planned (validation reported why).
fn child_bounds(child: &Workflow) -> Option<Bounds> {
    let checked = baton_model::validate(child.clone()).ok()?;
    let plan = crate::plan_checked(&checked, &crate::Options::default()).ok()?;
    Some(of(&checked.workflow, &plan))
}

#[cfg(test)]
mod tests {
    use baton_model::{Format, Source};

    use super::*;

    fn bounds_of(yaml: &str) -> Option<(Bounds, Plan)> {
        let checked = baton_model::load(&Source::from_str("wf.yaml", yaml, Format::Yaml)).unwrap();
        let plan = crate::plan_checked(&checked, &crate::Options::default()).unwrap();
        bounds(&checked.workflow, &plan).map(|b| (b, plan))
    }

    #[test]
    fn a_static_workflow_has_no_bounds() {
        assert!(bounds_of("tasks: [{ id: a }, { id: b, depends_on: [a] }]").is_none());
    }

    #[test]
    fn fan_outs_loops_and_children_are_counted_at_their_bounds() {
        let (b, plan) = bounds_of(
            r#"
tasks:
  - { id: split, estimate: 1s }
  - { id: each, depends_on: [split], estimate: 2s, for_each: { items: split.output, max_items: 100, max_parallel: 10 } }
  - id: review
    depends_on: [each]
    loop: { max_iterations: 3 }
    workflow: { inline: { tasks: [{ id: edit, estimate: 5s }, { id: check, estimate: 1s, depends_on: [edit] }] } }
  - { id: side, depends_on: [split], estimate: 1s }
"#,
        )
        .unwrap();
        // split 1 + each 100 + review 3 × (1 + 2) + side 1.
        assert_eq!(b.tasks, 1 + 100 + 9 + 1);
        // split 1s, each 10 waves × 2s, review 3 × 6s.
        assert_eq!(b.critical_length, (1 + 20 + 18) * 1_000_000);
        let names: Vec<&str> = b.critical_path.iter().map(|&t| plan.name(t)).collect();
        assert_eq!(names, ["split", "each", "review"]);
        assert_eq!(b.depth, 2);
        let kinds: Vec<(&str, &str, u64)> = b
            .dynamic
            .iter()
            .map(|d| (plan.name(d.task), d.kind, d.instances))
            .collect();
        assert_eq!(
            kinds,
            [
                ("each", "for_each", 100),
                ("review", "workflow", 2),
                ("review", "loop", 9)
            ]
        );
        assert_eq!(b.unresolved, 0);
    }

    #[test]
    fn referenced_children_are_unresolved_and_fan_outs_without_max_parallel_run_at_once() {
        let (b, _) = bounds_of(
            r#"
tasks:
  - { id: split }
  - { id: each, depends_on: [split], for_each: split.output }
  - { id: team, depends_on: [each], workflow: { file: team.yaml } }
"#,
        )
        .unwrap();
        assert_eq!(b.tasks, 1 + 10_000 + 1);
        assert_eq!(b.critical_length, 3_000_000, "each item at once: 1 s");
        assert_eq!(b.unresolved, 1);
    }
}

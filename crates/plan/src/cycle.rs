//! Finding a dependency cycle, and reporting it like a validation error.

use baton_model::{Checked, Diagnostic};

/// One cycle among the tasks Kahn's algorithm left unprocessed (those with
/// `indegree > 0`), in flow order: each task depends on the one before it and
/// the first depends on the last; no task repeats. Rotated to start at its
/// lowest id, so the same graph always yields the same cycle.
///
/// Every unprocessed task has an unprocessed dependency (that is why its
/// in-degree never reached zero), so walking back along the first such
/// dependency must revisit a task: the walk between the two visits is a
/// cycle. O(n).
pub(crate) fn find(offsets: &[u32], preds: &[u32], indegree: &[u32]) -> Vec<u32> {
    let blocked = |t: u32| indegree[t as usize] > 0;
    let n = indegree.len() as u32;
    let Some(mut at) = (0..n).find(|&t| blocked(t)) else {
        return Vec::new();
    };
    let mut step = vec![u32::MAX; n as usize];
    let mut walk: Vec<u32> = Vec::new();
    while step[at as usize] == u32::MAX {
        step[at as usize] = walk.len() as u32;
        walk.push(at);
        let ps = &preds[offsets[at as usize] as usize..offsets[at as usize + 1] as usize];
        at = ps
            .iter()
            .copied()
            .find(|&u| blocked(u))
            .expect("a blocked task has a blocked dependency");
    }
    let mut cycle = walk.split_off(step[at as usize] as usize);
    cycle.reverse();
    let lowest = (0..cycle.len()).min_by_key(|&i| cycle[i]).unwrap_or(0);
    cycle.rotate_left(lowest);
    cycle
}

/// The cycle `tasks` (as in [`crate::Error::Cycle`]) as a diagnostic on
/// `checked`: code `cycle`, the full path of task names in the message, and
/// the JSON path of the `depends_on` entry that closes the cycle (the first
/// task's dependency on the last), so the CLI can locate it in the file.
pub fn diagnostic(checked: &Checked, tasks: &[u32]) -> Diagnostic {
    let name = |t: u32| checked.workflow.tasks[t as usize].id.as_str();
    let (Some(&first), Some(&last)) = (tasks.first(), tasks.last()) else {
        return Diagnostic::error("cycle", checked.root.key("tasks"), "dependency cycle");
    };
    let mut path = String::new();
    for &t in tasks.iter().chain([&first]) {
        if !path.is_empty() {
            path.push_str(" → ");
        }
        path.push_str(name(t));
    }
    let deps = checked
        .root
        .key("tasks")
        .index(first as usize)
        .key("depends_on");
    let entry = checked.workflow.tasks[first as usize]
        .depends_on
        .iter()
        .position(|d| d == name(last));
    let at = match entry {
        Some(j) => deps.index(j),
        None => deps,
    };
    let hint = if tasks.len() == 1 {
        format!("remove `{}` from its own `depends_on`", name(first))
    } else {
        format!(
            "a task cannot wait for itself through others: remove one of these dependencies, \
             for example `{}` from the `depends_on` of `{}`",
            name(last),
            name(first)
        )
    };
    Diagnostic::error("cycle", at, format!("dependency cycle: {path}")).with_hint(hint)
}

#[cfg(test)]
mod tests {
    use baton_model::Graph;

    use super::*;

    fn cycle_of(n: usize, edges: &[(u32, u32)]) -> Vec<u32> {
        let g = Graph::from_edges(n, edges);
        // Pretend nothing was processed: every task with a dependency is blocked.
        let mut indegree: Vec<u32> = g.pred_offsets.windows(2).map(|w| w[1] - w[0]).collect();
        // Peel tasks that are not on or behind a cycle, as Kahn would.
        loop {
            let free: Vec<u32> = (0..n as u32)
                .filter(|&t| indegree[t as usize] == 0)
                .collect();
            let mut changed = false;
            for v in 0..n as u32 {
                if indegree[v as usize] > 0 {
                    let live = g.preds(v).iter().filter(|u| !free.contains(u)).count() as u32;
                    changed |= live != indegree[v as usize];
                    indegree[v as usize] = live;
                }
            }
            if !changed {
                break;
            }
        }
        find(&g.pred_offsets, &g.preds, &indegree)
    }

    #[test]
    fn finds_the_cycle_in_flow_order() {
        // 0 → 1 → 2 → 3 → 1, and 4 hangs off the cycle.
        assert_eq!(
            cycle_of(5, &[(0, 1), (1, 2), (2, 3), (3, 1), (3, 4)]),
            [1, 2, 3]
        );
        assert_eq!(cycle_of(3, &[(2, 1), (1, 0), (0, 2)]), [0, 2, 1]);
    }

    #[test]
    fn self_loop() {
        assert_eq!(cycle_of(2, &[(0, 1), (1, 1)]), [1]);
    }
}

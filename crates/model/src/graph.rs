//! The dependency graph of a validated workflow, on integer task ids.

use serde::Serialize;

/// Dependencies as flat arrays: task `i`'s predecessors are
/// `preds[pred_offsets[i]..pred_offsets[i + 1]]`, in declaration order.
/// Task ids are positions in [`crate::Workflow::tasks`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Graph {
    /// `len() + 1` offsets into `preds`.
    pub pred_offsets: Vec<u32>,
    /// Predecessor ids, grouped by task.
    pub preds: Vec<u32>,
    /// Each task's weight in microseconds (its `estimate`, else [`Graph::UNIT`]).
    pub weights: Vec<u64>,
    /// Compensation tasks: they run only on rollback and are not planned.
    pub handler: Vec<bool>,
}

impl Graph {
    /// The weight of a task without an estimate: one unit, counted as 1 s.
    pub const UNIT: u64 = 1_000_000;

    /// A graph from `(from, to)` edges ("`to` depends on `from`"), for tests
    /// and generators. Edges keep their order per task; all weights are one unit.
    ///
    /// # Panics
    /// When an endpoint is `>= n`.
    pub fn from_edges(n: usize, edges: &[(u32, u32)]) -> Graph {
        let mut counts = vec![0u32; n + 1];
        for &(_, to) in edges {
            counts[to as usize + 1] += 1;
        }
        for i in 0..n {
            counts[i + 1] += counts[i];
        }
        let mut fill = counts.clone();
        let mut preds = vec![0u32; edges.len()];
        for &(from, to) in edges {
            assert!((from as usize) < n, "edge endpoint {from} out of range");
            preds[fill[to as usize] as usize] = from;
            fill[to as usize] += 1;
        }
        Graph {
            pred_offsets: counts,
            preds,
            weights: vec![Graph::UNIT; n],
            handler: vec![false; n],
        }
    }

    /// Number of tasks.
    pub fn len(&self) -> usize {
        self.weights.len()
    }

    /// Whether there are no tasks.
    pub fn is_empty(&self) -> bool {
        self.weights.is_empty()
    }

    /// Number of dependency edges.
    pub fn edge_count(&self) -> usize {
        self.preds.len()
    }

    /// The tasks `task` depends on.
    pub fn preds(&self, task: u32) -> &[u32] {
        let i = task as usize;
        &self.preds[self.pred_offsets[i] as usize..self.pred_offsets[i + 1] as usize]
    }

    /// Every task `task` depends on, directly or transitively (terminates on
    /// cycles too).
    pub fn ancestors(&self, task: u32) -> foldhash::HashSet<u32> {
        let mut seen = foldhash::HashSet::default();
        let mut stack: Vec<u32> = self.preds(task).to_vec();
        while let Some(t) = stack.pop() {
            if seen.insert(t) {
                stack.extend_from_slice(self.preds(t));
            }
        }
        seen
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn from_edges_groups_predecessors_in_order() {
        let g = Graph::from_edges(4, &[(0, 2), (1, 2), (2, 3), (0, 3)]);
        assert_eq!(g.preds(2), &[0, 1]);
        assert_eq!(g.preds(3), &[2, 0]);
        assert_eq!(g.preds(0), &[] as &[u32]);
        assert_eq!(g.edge_count(), 4);
        let mut a: Vec<_> = g.ancestors(3).into_iter().collect();
        a.sort();
        assert_eq!(a, [0, 1, 2]);
    }
}

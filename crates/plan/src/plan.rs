//! Compiling a [`Graph`] into a [`Plan`].

use baton_model::Graph;
use serde::Serialize;

use crate::names::Names;
use crate::reduce::{Redundancy, redundant_edges};
use crate::{Error, Options, cycle};

/// Marks a task that has no stage: a compensation task.
const NO_STAGE: u32 = u32::MAX;

/// A compiled workflow: everything the engine and the CLI need about its
/// shape, on integer ids and flat arrays.
///
/// Task ids are positions in the workflow the plan was compiled from
/// (`workflow.tasks[id]`). A plan served from a [`crate::PlanCache`] may have
/// been compiled from the same workflow with its tasks listed in another
/// order: translate through [`Plan::name`] and [`Plan::id`] when that
/// matters.
///
/// Compensation tasks take no part in the forward plan: they have no stage,
/// no timing, and count in neither the work nor the widths; they are listed
/// by [`Plan::handlers`].
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    names: Names,
    weights: Vec<u64>,
    handlers: Vec<u32>,
    pred_offsets: Vec<u32>,
    preds: Vec<u32>,
    succ_offsets: Vec<u32>,
    succs: Vec<u32>,
    /// Forward tasks grouped by stage, declaration order within a stage.
    order: Vec<u32>,
    /// `stage_count + 1` offsets into `order`.
    stage_offsets: Vec<u32>,
    stage_of: Vec<u32>,
    earliest_start: Vec<u64>,
    latest_start: Vec<u64>,
    critical_path: Vec<u32>,
    critical_length: u64,
    total_work: u64,
    redundancy: Redundancy,
    redundant_removed: bool,
    max_width: u32,
}

/// When a task can run, relative to the start of a run with unbounded
/// parallelism, in microseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Timing {
    /// Earliest start: every dependency finished as early as it could.
    pub earliest_start: u64,
    /// Earliest start plus the task's weight.
    pub earliest_finish: u64,
    /// Latest start that does not lengthen the critical path.
    pub latest_start: u64,
    /// `latest_start - earliest_start`: zero on the critical path.
    pub slack: u64,
}

impl Plan {
    /// Compiles `graph`, whose task `i` is called `names[i]`.
    ///
    /// Fails with [`Error::Cycle`] when the dependencies are cyclic and with
    /// [`Error::Malformed`] when the graph's arrays are inconsistent (never
    /// for a graph from [`baton_model::load`]).
    pub fn compile<'a>(
        graph: &Graph,
        names: impl IntoIterator<Item = &'a str>,
        options: &Options,
    ) -> Result<Plan, Error> {
        let n = graph.len();
        check_shape(graph)?;
        let names = Names::new(names, n)?;

        let handler = &graph.handler;
        let handlers: Vec<u32> = (0..n as u32).filter(|&i| handler[i as usize]).collect();
        // Validation forbids edges at compensation tasks; drop any anyway so a
        // hand-built graph cannot smuggle one into the forward plan.
        let touches_handler = !handlers.is_empty()
            && (0..n).any(|v| {
                let ps = &graph.preds
                    [graph.pred_offsets[v] as usize..graph.pred_offsets[v + 1] as usize];
                !ps.is_empty() && (handler[v] || ps.iter().any(|&u| handler[u as usize]))
            });
        let (mut pred_offsets, mut preds) = if touches_handler {
            filter_preds(&graph.pred_offsets, &graph.preds, |u, v| {
                !handler[u as usize] && !handler[v as usize]
            })
        } else {
            (graph.pred_offsets.clone(), graph.preds.clone())
        };
        let (mut succ_offsets, mut succs) = successors(&pred_offsets, &preds);

        // Kahn's algorithm by generations. The queue holds tasks in
        // non-decreasing stage order, so a task is released by its
        // highest-stage dependency and its stage is that one's plus one.
        let forward = n - handlers.len();
        let mut indegree: Vec<u32> = pred_offsets.windows(2).map(|w| w[1] - w[0]).collect();
        let mut stage_of = vec![NO_STAGE; n];
        let mut queue: Vec<u32> = Vec::with_capacity(forward);
        for v in 0..n {
            if indegree[v] == 0 && !handler[v] {
                stage_of[v] = 0;
                queue.push(v as u32);
            }
        }
        let mut head = 0;
        while head < queue.len() {
            let u = queue[head] as usize;
            head += 1;
            let next = stage_of[u] + 1;
            for &v in &succs[succ_offsets[u] as usize..succ_offsets[u + 1] as usize] {
                let d = &mut indegree[v as usize];
                *d -= 1;
                if *d == 0 {
                    stage_of[v as usize] = next;
                    queue.push(v);
                }
            }
        }
        if queue.len() < forward {
            let tasks = cycle::find(&pred_offsets, &preds, &indegree);
            let names = tasks.iter().map(|&t| names.get(t).to_string()).collect();
            return Err(Error::Cycle { tasks, names });
        }
        let stage_count = queue
            .last()
            .map_or(0, |&t| stage_of[t as usize] as usize + 1);

        // Counting sort of the tasks by stage, scanning ids in order, so each
        // stage lists its tasks in declaration order.
        let mut stage_offsets = vec![0u32; stage_count + 1];
        for &s in &stage_of {
            if s != NO_STAGE {
                stage_offsets[s as usize + 1] += 1;
            }
        }
        let mut max_width = 0;
        for s in 0..stage_count {
            max_width = max_width.max(stage_offsets[s + 1]);
            stage_offsets[s + 1] += stage_offsets[s];
        }
        let mut fill = queue; // reuse the allocation: `order` has the same length
        let mut cursor = stage_offsets[..stage_count].to_vec();
        for (v, &s) in stage_of.iter().enumerate() {
            if s != NO_STAGE {
                let c = &mut cursor[s as usize];
                fill[*c as usize] = v as u32;
                *c += 1;
            }
        }
        let order = fill;

        // Earliest starts forward, latest starts backward, over the stage
        // order (a topological order). Sums saturate: estimates are clamped
        // to u64::MAX µs upstream, so they could overflow.
        let weights = graph.weights.clone();
        let mut earliest_start = vec![0u64; n];
        let mut critical_length = 0u64;
        let mut total_work = 0u64;
        for &v in &order {
            let v = v as usize;
            let mut es = 0u64;
            for &u in &preds[pred_offsets[v] as usize..pred_offsets[v + 1] as usize] {
                es = es.max(earliest_start[u as usize].saturating_add(weights[u as usize]));
            }
            earliest_start[v] = es;
            critical_length = critical_length.max(es.saturating_add(weights[v]));
            total_work = total_work.saturating_add(weights[v]);
        }
        let mut latest_start = vec![0u64; n];
        for &u in order.iter().rev() {
            let u = u as usize;
            let mut lf = critical_length;
            for &v in &succs[succ_offsets[u] as usize..succ_offsets[u + 1] as usize] {
                lf = lf.min(latest_start[v as usize]);
            }
            latest_start[u] = lf.saturating_sub(weights[u]);
        }
        let critical_path = critical_path(
            &order,
            &pred_offsets,
            &preds,
            &earliest_start,
            &weights,
            critical_length,
        );

        let redundancy = match options.reduction.budget(preds.len()) {
            None => Redundancy::Skipped,
            Some(budget) => redundant_edges(&pred_offsets, &preds, &stage_of, budget),
        };
        // Removing redundant edges changes neither stages nor timings: each
        // one is matched by a longer path through the same tasks.
        let redundant_removed = options.remove_redundant && !redundancy.edges().is_empty();
        if redundant_removed {
            // Sorted by target, then source: find each target's run, then
            // binary-search it (predecessors are in declaration order).
            let drop = redundancy.edges();
            let mut run_start = 0;
            (pred_offsets, preds) = filter_preds(&pred_offsets, &preds, |u, v| {
                while run_start < drop.len() && drop[run_start].1 < v {
                    run_start += 1;
                }
                let run = &drop[run_start..];
                let run = &run[..run.partition_point(|e| e.1 == v)];
                run.binary_search_by_key(&u, |e| e.0).is_err()
            });
            (succ_offsets, succs) = successors(&pred_offsets, &preds);
        }

        Ok(Plan {
            names,
            weights,
            handlers,
            pred_offsets,
            preds,
            succ_offsets,
            succs,
            order,
            stage_offsets,
            stage_of,
            earliest_start,
            latest_start,
            critical_path,
            critical_length,
            total_work,
            redundancy,
            redundant_removed,
            max_width,
        })
    }

    /// Number of tasks, compensation tasks included.
    pub fn len(&self) -> usize {
        self.weights.len()
    }

    /// Whether the workflow has no tasks.
    pub fn is_empty(&self) -> bool {
        self.weights.is_empty()
    }

    /// The name of task `id`.
    ///
    /// # Panics
    /// When `id >= self.len()`.
    pub fn name(&self, id: u32) -> &str {
        self.names.get(id)
    }

    /// The id of the task called `name` (a hash lookup; the table is built
    /// on first use).
    pub fn id(&self, name: &str) -> Option<u32> {
        self.names.id(name)
    }

    /// Every task's name, by id.
    pub fn names(&self) -> &Names {
        &self.names
    }

    /// Task `id`'s weight in microseconds.
    pub fn weight(&self, id: u32) -> u64 {
        self.weights[id as usize]
    }

    /// Compensation tasks, by id.
    pub fn handlers(&self) -> &[u32] {
        &self.handlers
    }

    /// Whether task `id` is a compensation task.
    pub fn is_handler(&self, id: u32) -> bool {
        self.stage_of[id as usize] == NO_STAGE
    }

    /// Dependency edges in the plan (after removal of redundant ones when
    /// [`Options::remove_redundant`] was set).
    pub fn edge_count(&self) -> usize {
        self.preds.len()
    }

    /// The tasks `id` depends on, in declaration order.
    pub fn preds(&self, id: u32) -> &[u32] {
        let i = id as usize;
        &self.preds[self.pred_offsets[i] as usize..self.pred_offsets[i + 1] as usize]
    }

    /// The tasks that depend on `id`, in id order.
    pub fn succs(&self, id: u32) -> &[u32] {
        let i = id as usize;
        &self.succs[self.succ_offsets[i] as usize..self.succ_offsets[i + 1] as usize]
    }

    /// Number of parallel stages.
    pub fn stage_count(&self) -> usize {
        self.stage_offsets.len() - 1
    }

    /// Stage `s`: tasks whose dependencies all lie in earlier stages, at
    /// least one in stage `s - 1`, in declaration order.
    pub fn stage(&self, s: usize) -> &[u32] {
        &self.order[self.stage_offsets[s] as usize..self.stage_offsets[s + 1] as usize]
    }

    /// The stages in order.
    pub fn stages(&self) -> impl ExactSizeIterator<Item = &[u32]> + '_ {
        (0..self.stage_count()).map(|s| self.stage(s))
    }

    /// Every forward task, stage by stage: a topological order.
    pub fn order(&self) -> &[u32] {
        &self.order
    }

    /// The stage of task `id`, `None` for a compensation task.
    pub fn stage_of(&self, id: u32) -> Option<u32> {
        Some(self.stage_of[id as usize]).filter(|&s| s != NO_STAGE)
    }

    /// Tasks per stage.
    pub fn stage_widths(&self) -> impl ExactSizeIterator<Item = u32> + '_ {
        self.stage_offsets.windows(2).map(|w| w[1] - w[0])
    }

    /// The widest stage's width.
    pub fn max_width(&self) -> u32 {
        self.max_width
    }

    /// The critical path's length in microseconds: the shortest possible run
    /// with unbounded parallelism.
    pub fn critical_length(&self) -> u64 {
        self.critical_length
    }

    /// The critical path's tasks in order. Among equally long paths: the one
    /// ending at the lowest id, and at each step back the lowest-id
    /// dependency that finishes last.
    pub fn critical_path(&self) -> &[u32] {
        &self.critical_path
    }

    /// The sum of every forward task's weight, in microseconds.
    pub fn total_work(&self) -> u64 {
        self.total_work
    }

    /// Total work over critical path length: how many tasks run at once on
    /// average in an ideal run; 0 when there is no work.
    pub fn parallelism(&self) -> f64 {
        if self.critical_length == 0 {
            0.0
        } else {
            self.total_work as f64 / self.critical_length as f64
        }
    }

    /// Task `id`'s timing, `None` for a compensation task.
    pub fn timing(&self, id: u32) -> Option<Timing> {
        let i = id as usize;
        self.stage_of(id)?;
        let earliest_start = self.earliest_start[i];
        let latest_start = self.latest_start[i];
        Some(Timing {
            earliest_start,
            earliest_finish: earliest_start.saturating_add(self.weights[i]),
            latest_start,
            slack: latest_start.saturating_sub(earliest_start),
        })
    }

    /// Redundant edges, as found with [`Options::reduction`]; they are still
    /// in the plan unless [`Plan::redundant_removed`].
    pub fn redundancy(&self) -> &Redundancy {
        &self.redundancy
    }

    /// Whether the redundant edges found were removed from the plan.
    pub fn redundant_removed(&self) -> bool {
        self.redundant_removed
    }

    /// An estimate of the heap memory the plan holds, in bytes (what
    /// [`crate::PlanCache`] counts).
    pub fn heap_bytes(&self) -> usize {
        let u32s = self.handlers.capacity()
            + self.pred_offsets.capacity()
            + self.preds.capacity()
            + self.succ_offsets.capacity()
            + self.succs.capacity()
            + self.order.capacity()
            + self.stage_offsets.capacity()
            + self.stage_of.capacity()
            + self.critical_path.capacity();
        let u64s =
            self.weights.capacity() + self.earliest_start.capacity() + self.latest_start.capacity();
        self.names.heap_bytes() + u32s * 4 + u64s * 8 + self.redundancy.heap_bytes()
    }
}

fn check_shape(graph: &Graph) -> Result<(), Error> {
    let n = graph.len();
    let malformed = |reason: String| Err(Error::Malformed { reason });
    if n >= u32::MAX as usize {
        return malformed(format!("{n} tasks: at most {} are supported", u32::MAX - 1));
    }
    if graph.handler.len() != n {
        return malformed(format!(
            "{} handler flags for {n} tasks",
            graph.handler.len()
        ));
    }
    if graph.pred_offsets.len() != n + 1 || graph.pred_offsets[0] != 0 {
        return malformed(format!(
            "{} predecessor offsets for {n} tasks",
            graph.pred_offsets.len()
        ));
    }
    if graph.pred_offsets.windows(2).any(|w| w[0] > w[1])
        || graph.pred_offsets[n] as usize != graph.preds.len()
    {
        return malformed("predecessor offsets are not increasing up to the edge count".into());
    }
    if let Some(&bad) = graph.preds.iter().find(|&&u| u as usize >= n) {
        return malformed(format!("dependency on task {bad}, but there are {n} tasks"));
    }
    Ok(())
}

/// The predecessor CSR without the edges `keep` rejects, called in CSR order.
fn filter_preds(
    offsets: &[u32],
    preds: &[u32],
    mut keep: impl FnMut(u32, u32) -> bool,
) -> (Vec<u32>, Vec<u32>) {
    let mut new_offsets = Vec::with_capacity(offsets.len());
    let mut new_preds = Vec::with_capacity(preds.len());
    new_offsets.push(0);
    for v in 0..offsets.len() - 1 {
        for &u in &preds[offsets[v] as usize..offsets[v + 1] as usize] {
            if keep(u, v as u32) {
                new_preds.push(u);
            }
        }
        new_offsets.push(new_preds.len() as u32);
    }
    (new_offsets, new_preds)
}

/// The successor CSR by counting sort over the predecessor CSR: two passes,
/// two allocations, each list in id order.
fn successors(offsets: &[u32], preds: &[u32]) -> (Vec<u32>, Vec<u32>) {
    let n = offsets.len() - 1;
    let mut succ_offsets = vec![0u32; n + 1];
    for &u in preds {
        succ_offsets[u as usize + 1] += 1;
    }
    for i in 0..n {
        succ_offsets[i + 1] += succ_offsets[i];
    }
    let mut cursor = succ_offsets[..n].to_vec();
    let mut succs = vec![0u32; preds.len()];
    for v in 0..n {
        for &u in &preds[offsets[v] as usize..offsets[v + 1] as usize] {
            let c = &mut cursor[u as usize];
            succs[*c as usize] = v as u32;
            *c += 1;
        }
    }
    (succ_offsets, succs)
}

fn critical_path(
    order: &[u32],
    offsets: &[u32],
    preds: &[u32],
    earliest_start: &[u64],
    weights: &[u64],
    length: u64,
) -> Vec<u32> {
    let finish = |t: u32| earliest_start[t as usize].saturating_add(weights[t as usize]);
    let Some(mut at) = order.iter().copied().filter(|&t| finish(t) == length).min() else {
        return Vec::new();
    };
    let mut path = vec![at];
    loop {
        let start = earliest_start[at as usize];
        let ps = &preds[offsets[at as usize] as usize..offsets[at as usize + 1] as usize];
        // Some dependency finishes exactly at `start` unless there are none.
        match ps.iter().copied().filter(|&u| finish(u) == start).min() {
            Some(u) => {
                path.push(u);
                at = u;
            }
            None => break,
        }
    }
    path.reverse();
    path
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Reduction;

    fn names(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("t{i}")).collect()
    }

    fn compile(g: &Graph) -> Result<Plan, Error> {
        let names = names(g.len());
        Plan::compile(g, names.iter().map(String::as_str), &Options::default())
    }

    #[test]
    fn diamond() {
        // 0 → {1, 2} → 3; 2 is heavier.
        let mut g = Graph::from_edges(4, &[(0, 1), (0, 2), (1, 3), (2, 3)]);
        g.weights = vec![10, 20, 30, 40];
        let p = compile(&g).unwrap();
        assert_eq!(p.stages().collect::<Vec<_>>(), [&[0][..], &[1, 2], &[3]]);
        assert_eq!(p.stage_widths().collect::<Vec<_>>(), [1, 2, 1]);
        assert_eq!(p.max_width(), 2);
        assert_eq!(p.succs(0), &[1, 2]);
        assert_eq!(p.critical_path(), &[0, 2, 3]);
        assert_eq!(p.critical_length(), 80);
        assert_eq!(p.total_work(), 100);
        assert_eq!(p.parallelism(), 100.0 / 80.0);
        let t1 = p.timing(1).unwrap();
        assert_eq!((t1.earliest_start, t1.latest_start, t1.slack), (10, 20, 10));
        assert_eq!(p.timing(2).unwrap().slack, 0);
        assert_eq!(p.redundancy(), &Redundancy::Exact { edges: vec![] });
    }

    #[test]
    fn declaration_order_within_stages() {
        let g = Graph::from_edges(5, &[(4, 0), (3, 1), (4, 2)]);
        let p = compile(&g).unwrap();
        assert_eq!(p.stages().collect::<Vec<_>>(), [&[3, 4][..], &[0, 1, 2]]);
        assert_eq!(p.stage_of(0), Some(1));
    }

    #[test]
    fn critical_path_ties_go_to_lower_ids() {
        let g = Graph::from_edges(4, &[(1, 2), (0, 2), (0, 3)]);
        let p = compile(&g).unwrap();
        assert_eq!(p.critical_path(), &[0, 2]);
        assert_eq!(p.critical_length(), 2 * Graph::UNIT);
    }

    #[test]
    fn handlers_are_left_out() {
        let mut g = Graph::from_edges(3, &[(0, 1)]);
        g.handler[2] = true;
        let p = compile(&g).unwrap();
        assert_eq!(p.handlers(), &[2]);
        assert_eq!(p.stages().flatten().count(), 2);
        assert_eq!(p.total_work(), 2 * Graph::UNIT);
        assert_eq!(p.timing(2), None);
        assert!(p.is_handler(2));
        // An edge at a handler is dropped, not planned.
        let mut g = Graph::from_edges(3, &[(0, 1), (1, 2)]);
        g.handler[2] = true;
        let p = compile(&g).unwrap();
        assert_eq!(p.edge_count(), 1);
        assert_eq!(p.stage_count(), 2);
    }

    #[test]
    fn removes_redundant_edges_on_request() {
        let g = Graph::from_edges(3, &[(0, 1), (1, 2), (0, 2)]);
        let names = names(3);
        let keep =
            Plan::compile(&g, names.iter().map(String::as_str), &Options::default()).unwrap();
        assert_eq!(keep.redundancy().edges(), &[(0, 2)]);
        assert_eq!(keep.edge_count(), 3);
        let opts = Options {
            remove_redundant: true,
            ..Options::default()
        };
        let cut = Plan::compile(&g, names.iter().map(String::as_str), &opts).unwrap();
        assert!(cut.redundant_removed());
        assert_eq!(cut.edge_count(), 2);
        assert_eq!(cut.preds(2), &[1]);
        assert_eq!(cut.succs(0), &[1]);
        assert_eq!(cut.critical_length(), keep.critical_length());
        let off = Options {
            reduction: Reduction::Off,
            ..Options::default()
        };
        let skipped = Plan::compile(&g, names.iter().map(String::as_str), &off).unwrap();
        assert_eq!(skipped.redundancy(), &Redundancy::Skipped);
    }

    #[test]
    fn empty_and_saturating() {
        let p = compile(&Graph::from_edges(0, &[])).unwrap();
        assert_eq!(
            (p.stage_count(), p.critical_length(), p.parallelism()),
            (0, 0, 0.0)
        );
        assert!(p.critical_path().is_empty());
        let mut g = Graph::from_edges(2, &[(0, 1)]);
        g.weights = vec![u64::MAX, 5];
        let p = compile(&g).unwrap();
        assert_eq!(p.critical_length(), u64::MAX);
    }

    #[test]
    fn malformed_graphs_are_errors() {
        let mut g = Graph::from_edges(2, &[(0, 1)]);
        g.preds[0] = 7;
        assert!(matches!(compile(&g), Err(Error::Malformed { .. })));
        let g = Graph::from_edges(2, &[]);
        assert!(matches!(
            Plan::compile(&g, ["a"], &Options::default()),
            Err(Error::Malformed { .. })
        ));
    }
}

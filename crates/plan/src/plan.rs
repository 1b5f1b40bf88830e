//! Compiling a [`Graph`] into a [`Plan`].

use baton_model::Graph;
use serde::Serialize;

use crate::reduce::{Redundancy, bitset_cost, exact_by_bitsets, redundant_edges};
use crate::{Error, Options, Reduction, cycle};
use baton_model::Names;

/// Marks a task that has no stage: a compensation task.
const NO_STAGE: u32 = u32::MAX;

/// What the forward pass needs of a dependency, packed together.
#[derive(Debug, Clone, Copy, Default)]
struct Node {
    finish: u64,
    stage: u32,
}

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
    pub fn compile<'a, I>(graph: &Graph, names: I, options: &Options) -> Result<Plan, Error>
    where
        I: IntoIterator<Item = &'a str>,
        I::IntoIter: Clone,
    {
        let names = Names::new(names).map_err(|e| Error::Malformed {
            reason: e.to_string(),
        })?;
        Plan::compile_named(graph, names, options)
    }

    /// [`Plan::compile`] with the names already interned (a validated
    /// workflow carries them: [`baton_model::Checked::names`]).
    pub fn compile_named(graph: &Graph, names: Names, options: &Options) -> Result<Plan, Error> {
        let n = graph.len();
        check_shape(graph)?;
        if names.len() != n {
            return Err(Error::Malformed {
                reason: format!("{} task names given for {n} tasks", names.len()),
            });
        }

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

        // A topological order: declaration order when every dependency is
        // declared before its dependent (the common case, checked in one
        // sequential pass), else Kahn's algorithm.
        let forward = n - handlers.len();
        let declared_in_order = (0..n).all(|v| {
            preds[pred_offsets[v] as usize..pred_offsets[v + 1] as usize]
                .iter()
                .all(|&u| (u as usize) < v)
        });
        let topo = if declared_in_order {
            None
        } else {
            Some(
                kahn(
                    &pred_offsets,
                    &preds,
                    &succ_offsets,
                    &succs,
                    handler,
                    forward,
                )
                .map_err(|tasks| {
                    let names = tasks.iter().map(|&t| names.get(t).to_string()).collect();
                    Error::Cycle { tasks, names }
                })?,
            )
        };

        // One pass in topological order computes each task's stage (one more
        // than its latest dependency's) and earliest start. Both live in one
        // array so that each dependency costs one cache miss, not two: on
        // large random graphs these reads are the cost of planning.
        let weights = graph.weights.clone();
        let mut node = vec![Node::default(); n];
        let mut earliest_start = vec![0u64; n];
        let mut stage_of = vec![NO_STAGE; n];
        let mut critical_length = 0u64;
        let mut total_work = 0u64;
        let mut stage_count = 0u32;
        // Whether a task has a dependency two or more stages back: only
        // those can be redundant, and noting it here spares the reduction a
        // pass over every edge.
        let mut shortcut = vec![false; n];
        let mut critical_end = u32::MAX;
        let mut visit = |v: usize| {
            let mut start = 0u64;
            let mut stage = 0u32;
            let mut lowest = u32::MAX;
            let ps = &preds[pred_offsets[v] as usize..pred_offsets[v + 1] as usize];
            for &u in ps {
                let d = node[u as usize];
                start = start.max(d.finish);
                stage = stage.max(d.stage + 1);
                lowest = lowest.min(d.stage);
            }
            shortcut[v] = ps.len() >= 2 && lowest + 1 < stage;
            // Sums saturate: estimates are clamped to u64::MAX µs upstream.
            let finish = start.saturating_add(weights[v]);
            node[v] = Node { finish, stage };
            earliest_start[v] = start;
            stage_of[v] = stage;
            stage_count = stage_count.max(stage + 1);
            if finish > critical_length || (finish == critical_length && (v as u32) < critical_end)
            {
                critical_length = finish;
                critical_end = v as u32;
            }
            total_work = total_work.saturating_add(weights[v]);
        };
        match &topo {
            None => (0..n).filter(|&v| !handler[v]).for_each(&mut visit),
            Some(order) => order.iter().for_each(|&v| visit(v as usize)),
        }
        let stage_count = if forward == 0 {
            0
        } else {
            stage_count as usize
        };

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
        let mut order = vec![0u32; forward];
        let mut cursor = stage_offsets[..stage_count].to_vec();
        for (v, &s) in stage_of.iter().enumerate() {
            if s != NO_STAGE {
                let c = &mut cursor[s as usize];
                order[*c as usize] = v as u32;
                *c += 1;
            }
        }

        // Latest starts, in reverse topological order.
        let mut latest_start = vec![0u64; n];
        let mut visit_back = |u: usize| {
            let mut finish = critical_length;
            for &v in &succs[succ_offsets[u] as usize..succ_offsets[u + 1] as usize] {
                finish = finish.min(latest_start[v as usize]);
            }
            latest_start[u] = finish.saturating_sub(weights[u]);
        };
        match &topo {
            None => (0..n)
                .rev()
                .filter(|&v| !handler[v])
                .for_each(&mut visit_back),
            Some(_) => order.iter().rev().for_each(|&v| visit_back(v as usize)),
        }
        drop(topo);
        let critical_path = critical_path(
            &stage_of,
            &pred_offsets,
            &preds,
            &node,
            &earliest_start,
            critical_length,
        );

        let redundancy = reduce(
            &pred_offsets,
            &preds,
            &stage_of,
            &shortcut,
            &order,
            options.reduction,
        );
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
    stage_of: &[u32],
    offsets: &[u32],
    preds: &[u32],
    node: &[Node],
    earliest_start: &[u64],
    length: u64,
) -> Vec<u32> {
    let Some(mut at) =
        (0..node.len()).find(|&t| stage_of[t] != NO_STAGE && node[t].finish == length)
    else {
        return Vec::new();
    };
    let mut path = vec![at as u32];
    loop {
        let start = earliest_start[at];
        let ps = &preds[offsets[at] as usize..offsets[at + 1] as usize];
        // Some dependency finishes exactly at `start` unless there are none.
        match ps
            .iter()
            .copied()
            .filter(|&u| node[u as usize].finish == start)
            .min()
        {
            Some(u) => {
                path.push(u);
                at = u as usize;
            }
            None => break,
        }
    }
    path.reverse();
    path
}

/// Kahn's algorithm: a topological order of the forward tasks, or a cycle.
fn kahn(
    pred_offsets: &[u32],
    preds: &[u32],
    succ_offsets: &[u32],
    succs: &[u32],
    handler: &[bool],
    forward: usize,
) -> Result<Vec<u32>, Vec<u32>> {
    let n = handler.len();
    let mut indegree: Vec<u32> = pred_offsets.windows(2).map(|w| w[1] - w[0]).collect();
    let mut queue: Vec<u32> = Vec::with_capacity(forward);
    queue.extend((0..n as u32).filter(|&v| indegree[v as usize] == 0 && !handler[v as usize]));
    let mut head = 0;
    while head < queue.len() {
        let u = queue[head] as usize;
        head += 1;
        for &v in &succs[succ_offsets[u] as usize..succ_offsets[u + 1] as usize] {
            let d = &mut indegree[v as usize];
            *d -= 1;
            if *d == 0 {
                queue.push(v);
            }
        }
    }
    if queue.len() < forward {
        return Err(cycle::find(pred_offsets, preds, &indegree));
    }
    Ok(queue)
}

/// Transitive reduction as [`Reduction`] asks: the pruned search under a
/// budget, and for [`Reduction::Auto`] and [`Reduction::Unlimited`] the
/// exact bitset sweep when the search runs out (Auto: only while the sweep
/// is cheap).
fn reduce(
    offsets: &[u32],
    preds: &[u32],
    stage_of: &[u32],
    shortcut: &[bool],
    order: &[u32],
    reduction: Reduction,
) -> Redundancy {
    let searched = match reduction.budget(preds.len()) {
        None => return Redundancy::Skipped,
        Some(budget) => redundant_edges(offsets, preds, stage_of, Some(shortcut), budget),
    };
    let sweep_affordable = match reduction {
        Reduction::Auto => bitset_cost(order.len(), preds.len()) <= Reduction::AUTO_SWEEP_MAX,
        Reduction::Unlimited => true,
        Reduction::Off | Reduction::Budget(_) => false,
    };
    if searched.is_exact() || !sweep_affordable {
        searched
    } else {
        exact_by_bitsets(offsets, preds, order)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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

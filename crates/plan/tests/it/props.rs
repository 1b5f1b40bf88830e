//! Property tests on random graphs, against brute-force and petgraph oracles.

use baton_model::Graph;
use baton_plan::{Error, Key, Options, Plan, Reduction, Redundancy};
use petgraph::algo::tred::{dag_to_toposorted_adjacency_list, dag_transitive_reduction_closure};
use petgraph::algo::{bellman_ford, toposort};
use petgraph::graph::{DiGraph, NodeIndex};
use proptest::prelude::*;

/// A random DAG: edges go from lower to higher ids before `perm` renames
/// the tasks, so declaration order is not a topological order in general.
fn dag(max_n: usize) -> impl Strategy<Value = (Graph, Vec<String>)> {
    (1..=max_n)
        .prop_flat_map(|n| {
            let pairs = proptest::collection::vec((0..n as u32, 0..n as u32), 0..=3 * n);
            let weights = proptest::collection::vec(0..100u64, n);
            let perm = Just((0..n as u32).collect::<Vec<_>>()).prop_shuffle();
            (Just(n), pairs, weights, perm)
        })
        .prop_map(|(n, pairs, weights, perm)| {
            let mut edges: Vec<(u32, u32)> = pairs
                .into_iter()
                .filter(|(a, b)| a != b)
                .map(|(a, b)| (perm[a.min(b) as usize], perm[a.max(b) as usize]))
                .collect();
            edges.sort_unstable();
            edges.dedup();
            let mut g = Graph::from_edges(n, &edges);
            g.weights = weights;
            (g, names(n))
        })
}

/// Any directed graph without self-loops or parallel edges.
fn digraph(max_n: usize) -> impl Strategy<Value = Graph> {
    (1..=max_n)
        .prop_flat_map(|n| {
            (
                Just(n),
                proptest::collection::vec((0..n as u32, 0..n as u32), 0..=2 * n),
            )
        })
        .prop_map(|(n, pairs)| {
            let mut edges: Vec<_> = pairs.into_iter().filter(|(a, b)| a != b).collect();
            edges.sort_unstable();
            edges.dedup();
            Graph::from_edges(n, &edges)
        })
}

fn names(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("t{i}")).collect()
}

fn compile(g: &Graph, names: &[String], options: &Options) -> Result<Plan, Error> {
    Plan::compile(g, names.iter().map(String::as_str), options)
}

fn edges(g: &Graph) -> Vec<(u32, u32)> {
    (0..g.len() as u32)
        .flat_map(|v| g.preds(v).iter().map(move |&u| (u, v)))
        .collect()
}

/// reach[u][v]: a non-empty path from u to v.
fn closure(n: usize, edges: &[(u32, u32)]) -> Vec<Vec<bool>> {
    let mut reach = vec![vec![false; n]; n];
    for &(u, v) in edges {
        reach[u as usize][v as usize] = true;
    }
    // Warshall's algorithm, row by row.
    for k in 0..n {
        let via = reach[k].clone();
        for row in reach.iter_mut() {
            if row[k] {
                for (r, &v) in row.iter_mut().zip(&via) {
                    *r |= v;
                }
            }
        }
    }
    reach
}

/// Longest path by memoized recursion over predecessors: no topological order involved.
fn brute_longest(g: &Graph) -> u64 {
    fn finish(g: &Graph, v: u32, memo: &mut Vec<Option<u64>>) -> u64 {
        if let Some(f) = memo[v as usize] {
            return f;
        }
        let start = g
            .preds(v)
            .iter()
            .map(|&u| finish(g, u, memo))
            .max()
            .unwrap_or(0);
        let f = start + g.weights[v as usize];
        memo[v as usize] = Some(f);
        f
    }
    let mut memo = vec![None; g.len()];
    (0..g.len() as u32)
        .map(|v| finish(g, v, &mut memo))
        .max()
        .unwrap_or(0)
}

fn to_petgraph(g: &Graph) -> DiGraph<(), f64> {
    let mut pg = DiGraph::new();
    let nodes: Vec<NodeIndex> = (0..g.len()).map(|_| pg.add_node(())).collect();
    for (u, v) in edges(g) {
        pg.add_edge(
            nodes[u as usize],
            nodes[v as usize],
            -(g.weights[v as usize] as f64),
        );
    }
    pg
}

/// petgraph's longest path: Bellman-Ford on negated node weights from a
/// super-source.
fn petgraph_longest(g: &Graph) -> u64 {
    let mut pg = to_petgraph(g);
    let source = pg.add_node(());
    for v in 0..g.len() {
        pg.add_edge(source, NodeIndex::new(v), -(g.weights[v] as f64));
    }
    let paths = bellman_ford(&pg, source).expect("a DAG has no negative cycle");
    let shortest = paths.distances.iter().copied().fold(0.0, f64::min);
    (-shortest) as u64
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn stages_are_topological_generations((g, names) in dag(40)) {
        let plan = compile(&g, &names, &Options::default()).unwrap();
        for (u, v) in edges(&g) {
            prop_assert!(plan.stage_of(u).unwrap() < plan.stage_of(v).unwrap());
        }
        // Stages partition the tasks, each in declaration order.
        let mut seen = vec![0; g.len()];
        for (s, stage) in plan.stages().enumerate() {
            prop_assert!(!stage.is_empty());
            prop_assert!(stage.windows(2).all(|w| w[0] < w[1]));
            for &t in stage {
                seen[t as usize] += 1;
                prop_assert_eq!(plan.stage_of(t), Some(s as u32));
                // A generation: one more than the latest dependency.
                let expected = g.preds(t).iter().map(|&u| plan.stage_of(u).unwrap() + 1).max().unwrap_or(0);
                prop_assert_eq!(s as u32, expected);
            }
        }
        prop_assert!(seen.iter().all(|&c| c == 1));
        prop_assert_eq!(plan.max_width() as usize, plan.stages().map(<[u32]>::len).max().unwrap_or(0));
        for v in 0..g.len() as u32 {
            let mut succs: Vec<u32> = edges(&g).into_iter().filter(|e| e.0 == v).map(|e| e.1).collect();
            succs.sort_unstable();
            prop_assert_eq!(plan.succs(v), &succs[..]);
        }
    }

    #[test]
    fn critical_path_is_the_longest((g, names) in dag(40)) {
        let plan = compile(&g, &names, &Options::default()).unwrap();
        let best = brute_longest(&g);
        prop_assert_eq!(plan.critical_length(), best);
        prop_assert_eq!(plan.critical_length(), petgraph_longest(&g));
        // The path is a real path of that weight.
        let path = plan.critical_path();
        prop_assert!(path.windows(2).all(|w| g.preds(w[1]).contains(&w[0])));
        prop_assert_eq!(path.iter().map(|&t| g.weights[t as usize]).sum::<u64>(), best);
        prop_assert_eq!(plan.total_work(), g.weights.iter().sum::<u64>());
        for v in 0..g.len() as u32 {
            let t = plan.timing(v).unwrap();
            prop_assert!(t.latest_start >= t.earliest_start);
            prop_assert!(t.earliest_finish <= best);
            for &u in g.preds(v) {
                prop_assert!(plan.timing(u).unwrap().earliest_finish <= t.earliest_start);
            }
        }
        for &t in path {
            prop_assert_eq!(plan.timing(t).unwrap().slack, 0);
        }
    }

    #[test]
    fn redundant_edges_are_exactly_the_implied_ones((g, names) in dag(25)) {
        let n = g.len();
        let all = edges(&g);
        let exact = compile(&g, &names, &Options { reduction: Reduction::Unlimited, ..Options::default() }).unwrap();
        let Redundancy::Exact { edges: redundant } = exact.redundancy() else {
            panic!("unlimited reduction must be exact")
        };
        for &(u, v) in &all {
            let others: Vec<_> = all.iter().copied().filter(|&e| e != (u, v)).collect();
            let implied = closure(n, &others)[u as usize][v as usize];
            prop_assert_eq!(implied, redundant.contains(&(u, v)), "edge {:?}", (u, v));
        }
        // petgraph agrees on the size of the reduction.
        let pg = to_petgraph(&g);
        let order = toposort(&pg, None).unwrap();
        let (list, _) = dag_to_toposorted_adjacency_list::<_, u32>(&pg, &order);
        let (reduction, _) = dag_transitive_reduction_closure(&list);
        prop_assert_eq!(reduction.edge_count(), all.len() - redundant.len());
        // The default finds the same on graphs this small.
        let default = compile(&g, &names, &Options::default()).unwrap();
        prop_assert_eq!(default.redundancy(), exact.redundancy());
        // Removing them keeps reachability, stages and timings.
        let cut = compile(&g, &names, &Options { remove_redundant: true, reduction: Reduction::Unlimited }).unwrap();
        let kept: Vec<_> = (0..n as u32).flat_map(|v| cut.preds(v).iter().map(move |&u| (u, v))).collect();
        prop_assert_eq!(kept.len(), all.len() - redundant.len());
        prop_assert_eq!(closure(n, &kept), closure(n, &all));
        prop_assert_eq!(cut.stages().collect::<Vec<_>>(), exact.stages().collect::<Vec<_>>());
        prop_assert_eq!(cut.critical_length(), exact.critical_length());
        // A partial search reports a subset, and says so.
        let small = compile(&g, &names, &Options { reduction: Reduction::Budget(3), ..Options::default() }).unwrap();
        prop_assert!(small.redundancy().edges().iter().all(|e| redundant.contains(e)));
        if small.redundancy().edges().len() < redundant.len() {
            let is_partial = matches!(small.redundancy(), Redundancy::Partial { .. });
            prop_assert!(is_partial);
        }
    }

    #[test]
    fn a_reported_cycle_is_real(g in digraph(12)) {
        let names = names(g.len());
        let acyclic = toposort(&to_petgraph(&g), None).is_ok();
        match compile(&g, &names, &Options::default()) {
            Ok(_) => prop_assert!(acyclic),
            Err(Error::Cycle { tasks, names: cycle_names }) => {
                prop_assert!(!acyclic);
                prop_assert!(!tasks.is_empty());
                let mut unique = tasks.clone();
                unique.sort_unstable();
                unique.dedup();
                prop_assert_eq!(unique.len(), tasks.len());
                for i in 0..tasks.len() {
                    let (from, to) = (tasks[i], tasks[(i + 1) % tasks.len()]);
                    prop_assert!(g.preds(to).contains(&from), "{} -> {} is not an edge", from, to);
                }
                prop_assert_eq!(cycle_names, tasks.iter().map(|&t| format!("t{t}")).collect::<Vec<_>>());
            }
            Err(e) => prop_assert!(false, "unexpected error {}", e),
        }
    }

    #[test]
    fn compiling_is_deterministic_and_order_independent((g, names) in dag(30), seed in any::<u64>()) {
        let opts = Options::default();
        let a = compile(&g, &names, &opts).unwrap();
        prop_assert_eq!(&a, &compile(&g, &names, &opts).unwrap());
        // The same workflow with its tasks (and so their dependencies) listed
        // in another order: same key, same figures.
        let n = g.len();
        let mut perm: Vec<u32> = (0..n as u32).collect();
        let mut s = seed;
        for i in (1..n).rev() {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            perm.swap(i, (s >> 33) as usize % (i + 1));
        }
        let mut moved: Vec<(u32, u32)> = edges(&g).into_iter().map(|(u, v)| (perm[u as usize], perm[v as usize])).collect();
        moved.reverse();
        let mut h = Graph::from_edges(n, &moved);
        let mut h_names = vec![String::new(); n];
        for i in 0..n {
            h.weights[perm[i] as usize] = g.weights[i];
            h_names[perm[i] as usize] = names[i].clone();
        }
        let b = compile(&h, &h_names, &opts).unwrap();
        prop_assert_eq!(Key::of_graph(&g, names.iter().map(String::as_str), &opts),
                        Key::of_graph(&h, h_names.iter().map(String::as_str), &opts));
        prop_assert_eq!(a.critical_length(), b.critical_length());
        prop_assert_eq!(a.stage_widths().collect::<Vec<_>>(), b.stage_widths().collect::<Vec<_>>());
        prop_assert_eq!(a.redundancy().edges().len(), b.redundancy().edges().len());
        for i in 0..n as u32 {
            prop_assert_eq!(a.stage_of(i), b.stage_of(b.id(a.name(i)).unwrap()));
        }
    }
}

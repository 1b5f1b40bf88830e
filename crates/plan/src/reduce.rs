//! Transitive reduction: which dependency edges are implied by others.
//!
//! An edge `u → v` is redundant when `v` is reachable from `u` by another
//! path. In general this is as hard as a transitive closure, so the search is
//! pruned and bounded:
//!
//! * it runs once per dependent task `v` (not once per edge), backwards from
//!   `v`'s predecessors, and every predecessor it meets on the way is
//!   redundant;
//! * a predecessor in the stage right before `v`'s cannot be redundant (no
//!   task fits between them), so only predecessors at least two stages back
//!   are candidates, and a task with no candidate costs nothing;
//! * only tasks whose stage lies strictly above the lowest candidate's can
//!   lead to a candidate, so the search never goes below it;
//! * visited tasks carry a stamp (the target's id) instead of a set that
//!   would need clearing;
//! * it stops early once every candidate of `v` is found.
//!
//! The work (predecessor entries scanned) is counted against a budget; when
//! the budget runs out the result is [`Redundancy::Partial`]: every edge it
//! lists is redundant, but others may be too. Counting work rather than time
//! keeps the result deterministic.

use serde::Serialize;

/// Redundant edges found by transitive reduction, as `(from, to)` pairs
/// ("`to` depends on `from`"), sorted by `to`, then `from`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "status", rename_all = "lowercase")]
pub enum Redundancy {
    /// Every redundant edge, and no other.
    Exact {
        /// The redundant edges.
        edges: Vec<(u32, u32)>,
    },
    /// The work budget ran out: these edges are redundant, others may be.
    Partial {
        /// The redundant edges found.
        edges: Vec<(u32, u32)>,
        /// Tasks `0..checked` had all their dependencies checked.
        checked: u32,
        /// The budget that ran out, in predecessor entries scanned.
        budget: u64,
    },
    /// Not searched ([`crate::Reduction::Off`]).
    Skipped,
}

impl Redundancy {
    /// The redundant edges found (all of them when [`Redundancy::is_exact`]).
    pub fn edges(&self) -> &[(u32, u32)] {
        match self {
            Redundancy::Exact { edges } | Redundancy::Partial { edges, .. } => edges,
            Redundancy::Skipped => &[],
        }
    }

    /// Whether [`Redundancy::edges`] is the complete list.
    pub fn is_exact(&self) -> bool {
        matches!(self, Redundancy::Exact { .. })
    }

    pub(crate) fn heap_bytes(&self) -> usize {
        match self {
            Redundancy::Exact { edges } | Redundancy::Partial { edges, .. } => edges.capacity() * 8,
            Redundancy::Skipped => 0,
        }
    }
}

/// Finds redundant edges of the acyclic graph given by its predecessor CSR
/// and each task's stage (`stage[u] < stage[v]` for every edge `u → v`),
/// scanning at most about `budget` predecessor entries. `shortcut[v]`, when
/// given, says whether `v` has a dependency two or more stages back; tasks
/// without one are skipped unread.
pub(crate) fn redundant_edges(
    offsets: &[u32],
    preds: &[u32],
    stage: &[u32],
    shortcut: Option<&[bool]>,
    budget: u64,
) -> Redundancy {
    let n = stage.len();
    let preds_of = |t: u32| &preds[offsets[t as usize] as usize..offsets[t as usize + 1] as usize];
    // Stamps are `v + 1`, so zero means "never" without a clearing pass.
    let mut candidate = vec![0u32; n];
    let mut seen = vec![0u32; n];
    let mut stack: Vec<u32> = Vec::new();
    let mut found: Vec<(u32, u32)> = Vec::new();
    let mut work: u64 = 0;
    for v in 0..n as u32 {
        if shortcut.is_some_and(|s| !s[v as usize]) {
            continue;
        }
        let direct = preds_of(v);
        // One predecessor is never redundant: another path would need another.
        if direct.len() < 2 {
            continue;
        }
        let stamp = v + 1;
        let sv = stage[v as usize];
        let mut lowest = u32::MAX;
        let mut remaining = 0usize;
        for &u in direct {
            let su = stage[u as usize];
            if su + 1 < sv && candidate[u as usize] != stamp {
                candidate[u as usize] = stamp;
                remaining += 1;
                lowest = lowest.min(su);
            }
        }
        if remaining == 0 {
            continue;
        }
        let start = found.len();
        stack.clear();
        for &w in direct {
            if stage[w as usize] > lowest && seen[w as usize] != stamp {
                seen[w as usize] = stamp;
                stack.push(w);
            }
        }
        let mut exhausted = false;
        'search: while let Some(x) = stack.pop() {
            let up = preds_of(x);
            work += up.len() as u64;
            for &y in up {
                if candidate[y as usize] == stamp {
                    candidate[y as usize] = 0;
                    found.push((y, v));
                    remaining -= 1;
                    if remaining == 0 {
                        break 'search;
                    }
                }
                if stage[y as usize] > lowest && seen[y as usize] != stamp {
                    seen[y as usize] = stamp;
                    stack.push(y);
                }
            }
            if work > budget {
                exhausted = true;
                break;
            }
        }
        found[start..].sort_unstable();
        if exhausted {
            return Redundancy::Partial {
                edges: found,
                checked: v,
                budget,
            };
        }
    }
    Redundancy::Exact { edges: found }
}

/// Words of ancestor bits per task in [`exact_by_bitsets`]: 1,024 sources
/// per sweep.
const WORDS: usize = 16;

/// The work [`exact_by_bitsets`] does on a graph: words ORed, about
/// `edges × tasks / 128`.
pub(crate) fn bitset_cost(tasks: usize, edges: usize) -> u64 {
    (edges as u64).saturating_mul(tasks as u64) / 128
}

/// Every redundant edge, exactly, in O(edges × tasks / 64) word operations
/// whatever the shape: the fallback when the pruned search runs out of
/// budget on a graph small enough for this to be cheap.
///
/// Sources are taken 1,024 at a time in topological order; one sweep over
/// the tasks after them computes, for each task, the set of those sources
/// that are strict ancestors of it. An edge `u → v` from a source is
/// redundant exactly when `u` is a strict ancestor of another dependency of
/// `v`, that is, when `u` is in the union of `v`'s dependencies' sets.
pub(crate) fn exact_by_bitsets(offsets: &[u32], preds: &[u32], order: &[u32]) -> Redundancy {
    let n = offsets.len() - 1;
    let len = order.len();
    let mut pos = vec![u32::MAX; n];
    for (p, &v) in order.iter().enumerate() {
        pos[v as usize] = p as u32;
    }
    let span = 64 * WORDS;
    let mut rows: Vec<[u64; WORDS]> = Vec::with_capacity(len);
    let mut found = Vec::new();
    for first in (0..len).step_by(span) {
        rows.clear();
        rows.resize(len - first, [0; WORDS]);
        for p in first..len {
            let v = order[p] as usize;
            let ps = &preds[offsets[v] as usize..offsets[v + 1] as usize];
            let mut union = [0u64; WORDS];
            for &u in ps {
                let pu = pos[u as usize] as usize;
                if pu >= first {
                    // All WORDS words, even past the last source: a fixed
                    // length lets the compiler vectorize the OR.
                    for (a, b) in union.iter_mut().zip(&rows[pu - first]) {
                        *a |= *b;
                    }
                }
            }
            let mut own = union;
            for &u in ps {
                let bit = (pos[u as usize] as usize).wrapping_sub(first);
                if bit < span {
                    if union[bit / 64] & (1 << (bit % 64)) != 0 {
                        found.push((u, v as u32));
                    }
                    own[bit / 64] |= 1 << (bit % 64);
                }
            }
            rows[p - first] = own;
        }
    }
    found.sort_unstable_by_key(|&(u, v)| (v, u));
    Redundancy::Exact { edges: found }
}

#[cfg(test)]
mod tests {
    use baton_model::Graph;

    use super::*;

    fn stages(g: &Graph) -> Vec<u32> {
        // from_edges graphs in these tests list tasks in topological order.
        let mut s = vec![0u32; g.len()];
        for v in 0..g.len() as u32 {
            s[v as usize] = g
                .preds(v)
                .iter()
                .map(|&u| s[u as usize] + 1)
                .max()
                .unwrap_or(0);
        }
        s
    }

    fn run(n: usize, edges: &[(u32, u32)], budget: u64) -> Redundancy {
        let g = Graph::from_edges(n, edges);
        redundant_edges(&g.pred_offsets, &g.preds, &stages(&g), None, budget)
    }

    #[test]
    fn finds_shortcuts() {
        // 0 → 1 → 2 → 3, plus shortcuts 0 → 2, 0 → 3 and 1 → 3.
        let r = run(
            4,
            &[(0, 1), (1, 2), (2, 3), (0, 2), (0, 3), (1, 3)],
            u64::MAX,
        );
        assert_eq!(
            r,
            Redundancy::Exact {
                edges: vec![(0, 2), (0, 3), (1, 3)]
            }
        );
    }

    #[test]
    fn bitsets_agree_with_the_search() {
        let mut edges = vec![(0, 1), (1, 2), (2, 3), (0, 2), (0, 3), (1, 3)];
        // Enough tasks for several sweeps, with long-range shortcuts.
        for v in 4..2_500u32 {
            edges.push((v - 1, v));
            if v % 7 == 0 {
                edges.push((v - 5, v));
            }
            if v >= 1_500 && v % 1_000 == 0 {
                edges.push((v - 1_500, v));
            }
        }
        let g = Graph::from_edges(2_500, &edges);
        let order: Vec<u32> = (0..2_500).collect();
        let search = redundant_edges(&g.pred_offsets, &g.preds, &stages(&g), None, u64::MAX);
        assert_eq!(exact_by_bitsets(&g.pred_offsets, &g.preds, &order), search);
        assert_eq!(search.edges().len(), 3 + 357 + 1);
    }

    #[test]
    fn diamond_has_none() {
        let r = run(4, &[(0, 1), (0, 2), (1, 3), (2, 3)], u64::MAX);
        assert_eq!(r.edges(), &[]);
        assert!(r.is_exact());
    }

    #[test]
    fn shortcut_through_a_side_branch() {
        // 3 depends on 0 directly and through 1 → 2; 4 is unrelated.
        let r = run(5, &[(0, 1), (1, 2), (2, 3), (0, 3), (4, 3)], u64::MAX);
        assert_eq!(r.edges(), &[(0, 3)]);
    }

    #[test]
    fn a_small_budget_is_reported() {
        let mut edges = Vec::new();
        for v in 1..50u32 {
            edges.push((v - 1, v));
            if v >= 3 {
                edges.push((v - 3, v));
            }
        }
        let exact = run(50, &edges, u64::MAX);
        assert_eq!(exact.edges().len(), 47);
        let Redundancy::Partial {
            edges: some,
            checked,
            budget,
        } = run(50, &edges, 100)
        else {
            panic!("expected a partial result")
        };
        assert_eq!(budget, 100);
        assert!(some.len() < 47 && some.iter().all(|e| exact.edges().contains(e)));
        assert!(some.iter().all(|&(_, to)| to <= checked));
    }
}

//! [`PlanCache`]: a least-recently-used cache of plans, keyed by a
//! structural hash of the workflow.

use std::fmt;
use std::hash::BuildHasher;
use std::sync::Arc;

use baton_model::{Checked, Diagnostic, Graph};
use foldhash::quality::FixedState;
use serde::Serialize;

use crate::{Options, Plan, plan_checked};

/// A 128-bit structural hash of everything that shapes a plan: every task's
/// name, weight and compensation flag, the names of its dependencies, and
/// the [`Options`] it is compiled with.
///
/// Tasks are combined order-independently, and so are each task's
/// dependencies: the same workflow with tasks or `depends_on` lists in
/// another order has the same key. Each half comes from foldhash's quality
/// hasher under its own fixed seed, so keys are stable across processes.
/// foldhash is not a cryptographic hash: a party that controls workflows
/// could in principle craft two with one key, so do not share one cache
/// between tenants that distrust each other.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct Key(pub u128);

const SEEDS: [u64; 4] = [
    0x9e37_79b9_7f4a_7c15,
    0xc2b2_ae3d_27d4_eb4f,
    0x1656_67b1_9e37_79f9,
    0x85eb_ca77_c2b2_ae63,
];

fn hash128<T: std::hash::Hash>(value: &T, lo: u64, hi: u64) -> u128 {
    let lo = FixedState::with_seed(lo).hash_one(value);
    let hi = FixedState::with_seed(hi).hash_one(value);
    (u128::from(hi) << 64) | u128::from(lo)
}

impl Key {
    /// The key of a validated workflow planned with `options`.
    pub fn of(checked: &Checked, options: &Options) -> Key {
        Key::of_graph(
            &checked.graph,
            checked.workflow.tasks.iter().map(|t| t.id.as_str()),
            options,
        )
    }

    /// The key of `graph` whose task `i` is called `names[i]` (one name per
    /// task; missing names hash as empty).
    pub fn of_graph<'a>(
        graph: &Graph,
        names: impl IntoIterator<Item = &'a str>,
        options: &Options,
    ) -> Key {
        let n = graph.len();
        let mut name_hash = Vec::with_capacity(n);
        name_hash.extend(
            names
                .into_iter()
                .take(n)
                .map(|s| hash128(&s, SEEDS[0], SEEDS[1])),
        );
        name_hash.resize(n, hash128(&"", SEEDS[0], SEEDS[1]));
        // Sums are multiset hashes: order-independent, and with 128-bit
        // random-looking summands two different multisets collide with
        // negligible probability.
        let mut tasks = 0u128;
        for (i, &name) in name_hash.iter().enumerate() {
            let deps =
                &graph.preds[graph.pred_offsets[i] as usize..graph.pred_offsets[i + 1] as usize];
            let dep_sum = deps
                .iter()
                .fold(0u128, |acc, &d| acc.wrapping_add(name_hash[d as usize]));
            let item = (
                name,
                graph.weights[i],
                graph.handler[i],
                dep_sum,
                deps.len(),
            );
            tasks = tasks.wrapping_add(hash128(&item, SEEDS[2], SEEDS[3]));
        }
        Key(hash128(
            &(tasks, n, graph.edge_count(), options),
            SEEDS[0],
            SEEDS[3],
        ))
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:032x}", self.0)
    }
}

/// What a [`PlanCache`] has done so far, and holds now.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Stats {
    /// Lookups that found a plan.
    pub hits: u64,
    /// Lookups that did not.
    pub misses: u64,
    /// Plans dropped to make room.
    pub evictions: u64,
    /// Plans not cached because they alone exceed the byte bound.
    pub rejected: u64,
    /// Plans held.
    pub entries: usize,
    /// Estimated bytes held ([`Plan::heap_bytes`] at insertion plus the
    /// plan's own size).
    pub bytes: usize,
}

const NIL: u32 = u32::MAX;

#[derive(Debug)]
struct Slot {
    key: Key,
    plan: Option<Arc<Plan>>,
    bytes: usize,
    /// Towards the most recently used end.
    prev: u32,
    /// Towards the least recently used end.
    next: u32,
}

/// A least-recently-used cache of plans, bounded by entry count and by
/// bytes.
///
/// A hash map from [`Key`] to a slot index plus a doubly linked recency list
/// threaded through a slot vector: `get` and `insert` are O(1) (no scans),
/// and evicting takes the list's tail. Plans are shared as `Arc<Plan>`; ids
/// inside a plan are positions in the workflow it was compiled from, which
/// may list its tasks in another order than the one being looked up (see
/// [`Plan::id`]).
///
/// The cache takes `&mut self`; share it behind a `Mutex`.
///
/// ```
/// use std::sync::Arc;
/// use baton_model::Graph;
/// use baton_plan::{Key, Options, Plan, PlanCache};
///
/// let graph = Graph::from_edges(2, &[(0, 1)]);
/// let opts = Options::default();
/// let key = Key::of_graph(&graph, ["fetch", "parse"], &opts);
/// let mut cache = PlanCache::new(16, 64 << 20);
/// assert!(cache.get(key).is_none());
/// cache.insert(key, Arc::new(Plan::compile(&graph, ["fetch", "parse"], &opts)?));
/// assert_eq!(cache.get(key).unwrap().critical_path(), &[0, 1]);
/// assert_eq!((cache.stats().hits, cache.stats().misses), (1, 1));
/// # Ok::<(), baton_plan::Error>(())
/// ```
#[derive(Debug)]
pub struct PlanCache {
    map: foldhash::HashMap<Key, u32>,
    slots: Vec<Slot>,
    free: Vec<u32>,
    /// Most recently used.
    head: u32,
    /// Least recently used: evicted first.
    tail: u32,
    max_entries: usize,
    max_bytes: usize,
    stats: Stats,
}

impl Default for PlanCache {
    /// 64 plans, 256 MiB.
    fn default() -> Self {
        PlanCache::new(64, 256 << 20)
    }
}

impl PlanCache {
    /// A cache holding at most `max_entries` plans and about `max_bytes`.
    pub fn new(max_entries: usize, max_bytes: usize) -> PlanCache {
        PlanCache {
            map: foldhash::HashMap::default(),
            slots: Vec::new(),
            free: Vec::new(),
            head: NIL,
            tail: NIL,
            max_entries: max_entries.min(NIL as usize),
            max_bytes,
            stats: Stats::default(),
        }
    }

    /// The plan under `key`, now the most recently used; counts a hit or a miss.
    pub fn get(&mut self, key: Key) -> Option<Arc<Plan>> {
        match self.map.get(&key) {
            Some(&i) => {
                self.stats.hits += 1;
                self.unlink(i);
                self.push_front(i);
                self.slots[i as usize].plan.clone()
            }
            None => {
                self.stats.misses += 1;
                None
            }
        }
    }

    /// Whether a plan is cached under `key` (changes neither recency nor counters).
    pub fn contains(&self, key: Key) -> bool {
        self.map.contains_key(&key)
    }

    /// Caches `plan` under `key` as the most recently used, evicting the
    /// least recently used plans until both bounds hold. A plan larger than
    /// the byte bound on its own is not cached: returns `false`.
    pub fn insert(&mut self, key: Key, plan: Arc<Plan>) -> bool {
        let bytes = plan.heap_bytes() + size_of::<Plan>();
        self.remove(key);
        if bytes > self.max_bytes || self.max_entries == 0 {
            self.stats.rejected += 1;
            return false;
        }
        while self.stats.entries >= self.max_entries || self.stats.bytes + bytes > self.max_bytes {
            let lru = self.tail;
            let key = self.slots[lru as usize].key;
            self.remove(key);
            self.stats.evictions += 1;
        }
        let slot = Slot {
            key,
            plan: Some(plan),
            bytes,
            prev: NIL,
            next: NIL,
        };
        let i = match self.free.pop() {
            Some(i) => {
                self.slots[i as usize] = slot;
                i
            }
            None => {
                self.slots.push(slot);
                (self.slots.len() - 1) as u32
            }
        };
        self.map.insert(key, i);
        self.push_front(i);
        self.stats.entries += 1;
        self.stats.bytes += bytes;
        true
    }

    /// The cached plan for `checked`, or a newly compiled (and cached) one.
    pub fn get_or_compile(
        &mut self,
        checked: &Checked,
        options: &Options,
    ) -> Result<Arc<Plan>, Diagnostic> {
        let key = Key::of(checked, options);
        if let Some(plan) = self.get(key) {
            return Ok(plan);
        }
        let plan = Arc::new(plan_checked(checked, options)?);
        self.insert(key, plan.clone());
        Ok(plan)
    }

    /// Drops the plan under `key`, returning it.
    pub fn remove(&mut self, key: Key) -> Option<Arc<Plan>> {
        let i = self.map.remove(&key)?;
        self.unlink(i);
        let slot = &mut self.slots[i as usize];
        self.stats.entries -= 1;
        self.stats.bytes -= slot.bytes;
        self.free.push(i);
        slot.plan.take()
    }

    /// Drops every plan (counters stay).
    pub fn clear(&mut self) {
        self.map.clear();
        self.slots.clear();
        self.free.clear();
        self.head = NIL;
        self.tail = NIL;
        self.stats.entries = 0;
        self.stats.bytes = 0;
    }

    /// Counters and current size.
    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// Plans held.
    pub fn len(&self) -> usize {
        self.stats.entries
    }

    /// Whether no plan is held.
    pub fn is_empty(&self) -> bool {
        self.stats.entries == 0
    }

    /// Keys from most to least recently used (walks the list: for tests and
    /// debugging, not hot paths).
    pub fn keys(&self) -> impl Iterator<Item = Key> + '_ {
        let mut at = self.head;
        std::iter::from_fn(move || {
            let slot = self.slots.get(at as usize)?;
            at = slot.next;
            Some(slot.key)
        })
    }

    fn unlink(&mut self, i: u32) {
        let (prev, next) = {
            let s = &self.slots[i as usize];
            (s.prev, s.next)
        };
        match prev {
            NIL => self.head = next,
            p => self.slots[p as usize].next = next,
        }
        match next {
            NIL => self.tail = prev,
            n => self.slots[n as usize].prev = prev,
        }
        let s = &mut self.slots[i as usize];
        s.prev = NIL;
        s.next = NIL;
    }

    fn push_front(&mut self, i: u32) {
        let old = self.head;
        {
            let s = &mut self.slots[i as usize];
            s.prev = NIL;
            s.next = old;
        }
        match old {
            NIL => self.tail = i,
            h => self.slots[h as usize].prev = i,
        }
        self.head = i;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(n: usize) -> Arc<Plan> {
        let names: Vec<String> = (0..n).map(|i| format!("t{i}")).collect();
        let g = Graph::from_edges(n, &[]);
        Arc::new(Plan::compile(&g, names.iter().map(String::as_str), &Options::default()).unwrap())
    }

    #[test]
    fn list_stays_consistent() {
        let mut c = PlanCache::new(3, usize::MAX);
        for k in 0..3 {
            c.insert(Key(k), plan(1));
        }
        assert_eq!(c.keys().collect::<Vec<_>>(), [Key(2), Key(1), Key(0)]);
        c.get(Key(0));
        assert_eq!(c.keys().collect::<Vec<_>>(), [Key(0), Key(2), Key(1)]);
        c.remove(Key(2));
        assert_eq!(c.keys().collect::<Vec<_>>(), [Key(0), Key(1)]);
        c.insert(Key(1), plan(2));
        assert_eq!(c.keys().collect::<Vec<_>>(), [Key(1), Key(0)]);
        assert_eq!(c.len(), 2);
        c.clear();
        assert!(c.is_empty() && c.keys().next().is_none());
    }

    #[test]
    fn key_displays_as_hex() {
        assert_eq!(Key(255).to_string(), format!("{:0>32}", "ff"));
    }
}

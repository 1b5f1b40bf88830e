//! PlanCache: structural keys and LRU behaviour.

use std::sync::Arc;

use baton_model::{Format, Source, load};
use baton_plan::{Key, Options, Plan, PlanCache, Stats};

fn key(yaml: &str) -> Key {
    let checked = load(&Source::from_str("flow.yaml", yaml, Format::Yaml)).unwrap();
    Key::of(&checked, &Options::default())
}

const BASE: &str = "tasks:
  - { id: a }
  - { id: b, depends_on: [a], estimate: 2s }
  - { id: c, depends_on: [a, b] }
  - { id: d }
";

#[test]
fn identical_and_reordered_workflows_share_a_key() {
    assert_eq!(key(BASE), key(BASE));
    // Tasks in another order.
    let tasks = "tasks:
  - { id: d }
  - { id: c, depends_on: [a, b] }
  - { id: a }
  - { id: b, depends_on: [a], estimate: 2s }
";
    assert_eq!(key(BASE), key(tasks));
    // Dependencies in another order.
    let deps = BASE.replace("[a, b]", "[b, a]");
    assert_eq!(key(BASE), key(&deps));
    // Same estimate, written differently.
    assert_eq!(key(BASE), key(&BASE.replace("2s", "2000ms")));
}

#[test]
fn any_change_changes_the_key() {
    let base = key(BASE);
    let variants = [
        // An isolated task added.
        format!("{BASE}  - {{ id: e }}\n"),
        // A task renamed.
        BASE.replace("id: d", "id: e"),
        // An edge added.
        BASE.replace("{ id: d }", "{ id: d, depends_on: [c] }"),
        // An edge removed.
        BASE.replace("[a, b]", "[b]"),
        // An edge moved to another task.
        BASE.replace("[a, b]", "[a]")
            .replace("{ id: d }", "{ id: d, depends_on: [b] }"),
        // An estimate changed, added, or removed.
        BASE.replace("2s", "3s"),
        BASE.replace("{ id: d }", "{ id: d, estimate: 1s }")
            .replace("{ id: a }", "{ id: a, estimate: 5s }"),
        BASE.replace(", estimate: 2s", ""),
        // A task turned into a compensation task.
        BASE.replace("{ id: a }", "{ id: a, compensation: d }"),
    ];
    for v in &variants {
        assert_ne!(key(v), base, "same key for:\n{v}");
    }
    // Swapping which task carries the estimate changes it too.
    let swapped = BASE
        .replace(", estimate: 2s", "")
        .replace("{ id: d }", "{ id: d, estimate: 2s }");
    assert_ne!(key(&swapped), base);
    // So do the options.
    let checked = load(&Source::from_str("flow.yaml", BASE, Format::Yaml)).unwrap();
    let remove = Options {
        remove_redundant: true,
        ..Options::default()
    };
    assert_ne!(Key::of(&checked, &remove), base);
}

#[test]
fn a_hit_for_a_reordered_workflow_is_usable_by_name() {
    let mut cache = PlanCache::default();
    let first = load(&Source::from_str("a.yaml", BASE, Format::Yaml)).unwrap();
    let reordered = "tasks:\n  - { id: d }\n  - { id: c, depends_on: [b, a] }\n  - { id: b, depends_on: [a], estimate: 2s }\n  - { id: a }\n";
    let second = load(&Source::from_str("b.yaml", reordered, Format::Yaml)).unwrap();
    let opts = Options::default();
    let p1 = cache.get_or_compile(&first, &opts).unwrap();
    let p2 = cache.get_or_compile(&second, &opts).unwrap();
    assert!(Arc::ptr_eq(&p1, &p2));
    let path: Vec<&str> = p2.critical_path().iter().map(|&t| p2.name(t)).collect();
    assert_eq!(path, ["a", "b", "c"]);
    assert_eq!(p2.stage_of(p2.id("c").unwrap()), Some(2));
    assert_eq!(
        cache.stats(),
        Stats {
            hits: 1,
            misses: 1,
            entries: 1,
            bytes: cache.stats().bytes,
            ..Stats::default()
        }
    );
}

fn plan(n: usize) -> Arc<Plan> {
    let names: Vec<String> = (0..n).map(|i| format!("t{i}")).collect();
    let g = baton_model::Graph::from_edges(n, &[]);
    Arc::new(Plan::compile(&g, names.iter().map(String::as_str), &Options::default()).unwrap())
}

#[test]
fn evicts_least_recently_used_by_entries() {
    let mut cache = PlanCache::new(3, usize::MAX);
    for k in 1..=3 {
        cache.insert(Key(k), plan(1));
    }
    assert!(cache.get(Key(1)).is_some()); // 2 is now the oldest
    cache.insert(Key(4), plan(1));
    assert!(!cache.contains(Key(2)));
    assert_eq!(cache.keys().collect::<Vec<_>>(), [Key(4), Key(1), Key(3)]);
    cache.insert(Key(5), plan(1));
    assert!(!cache.contains(Key(3)));
    let s = cache.stats();
    assert_eq!((s.hits, s.misses, s.evictions, s.entries), (1, 0, 2, 3));
    assert!(cache.get(Key(2)).is_none());
    assert_eq!(cache.stats().misses, 1);
}

#[test]
fn evicts_least_recently_used_by_bytes() {
    let small = plan(10);
    let size = small.heap_bytes() + size_of::<Plan>();
    let mut cache = PlanCache::new(100, size * 3);
    for k in 1..=3 {
        cache.insert(Key(k), plan(10));
    }
    assert_eq!(cache.stats().bytes, size * 3);
    cache.get(Key(1));
    // Bigger than one small plan: two must go, the least recently used first.
    let big = (11..)
        .map(plan)
        .find(|p| p.heap_bytes() + size_of::<Plan>() > size + size / 2)
        .unwrap();
    let big_size = big.heap_bytes() + size_of::<Plan>();
    assert!(big_size <= 2 * size);
    cache.insert(Key(9), big);
    assert_eq!(cache.keys().collect::<Vec<_>>(), [Key(9), Key(1)]);
    assert_eq!(cache.stats().evictions, 2);
    assert_eq!(cache.stats().bytes, size + big_size);
    // A plan over the byte bound on its own is refused, not cached.
    assert!(!cache.insert(Key(10), plan(200)));
    assert_eq!(cache.stats().rejected, 1);
    assert!(!cache.contains(Key(10)) && cache.contains(Key(1)));
}

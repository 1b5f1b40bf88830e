//! Task names interned into one buffer, with an open-addressing index.
//!
//! Interning a million ids is one copy into a contiguous buffer instead of a
//! million scattered strings. Resolving millions of dependencies is bound by
//! cache misses, so each index slot keeps the name's length and first 16
//! bytes beside its id: a lookup of a short name touches one slot and
//! nothing else, where a slot of ids alone costs three misses (slot,
//! offsets, bytes).

use std::hash::BuildHasher;
use std::sync::OnceLock;

/// Task names, indexed by task id (position in declaration order).
#[derive(Debug, Default)]
pub struct Names {
    bytes: String,
    /// `len() + 1` offsets into `bytes`.
    offsets: Vec<u32>,
    index: OnceLock<Vec<Slot>>,
}

const EMPTY: u32 = u32::MAX;

/// Bytes of a name kept in its index slot.
const INLINE: usize = 16;

/// An index entry: the id, and enough of the name to compare without
/// leaving the slot when the name is short.
#[derive(Debug, Clone, Copy)]
struct Slot {
    id: u32,
    len: u32,
    prefix: [u8; INLINE],
}

impl Slot {
    const EMPTY: Slot = Slot {
        id: EMPTY,
        len: 0,
        prefix: [0; INLINE],
    };

    fn new(id: u32, name: &str) -> Slot {
        let mut prefix = [0; INLINE];
        let n = name.len().min(INLINE);
        prefix[..n].copy_from_slice(&name.as_bytes()[..n]);
        Slot {
            id,
            len: name.len() as u32,
            prefix,
        }
    }
}

/// A fixed seed keeps lookups reproducible; the table never sees names
/// from outside the workflow that owns it.
const SEED: foldhash::fast::FixedState =
    foldhash::fast::FixedState::with_seed(0x6261_746f_6e5f_6e6d);

/// The names do not fit: more than 4 GiB of names, or 2³² − 1 tasks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("task names exceed 4 GiB in total, or there are more than 4 billion tasks")]
pub struct TooLarge;

impl Names {
    /// Interns `names` in order.
    pub fn new<'a, I>(names: I) -> Result<Names, TooLarge>
    where
        I: IntoIterator<Item = &'a str>,
        I::IntoIter: Clone,
    {
        let names = names.into_iter();
        // Sized exactly up front: growing a multi-megabyte buffer by
        // doubling would copy it again and again.
        let total: usize = names.clone().map(str::len).sum();
        let mut bytes = String::with_capacity(total);
        let mut offsets = Vec::with_capacity(names.size_hint().0 + 1);
        offsets.push(0u32);
        for name in names {
            bytes.push_str(name);
            offsets.push(u32::try_from(bytes.len()).map_err(|_| TooLarge)?);
        }
        if offsets.len() > EMPTY as usize {
            return Err(TooLarge);
        }
        bytes.shrink_to_fit();
        Ok(Names {
            bytes,
            offsets,
            index: OnceLock::new(),
        })
    }

    /// Number of names.
    pub fn len(&self) -> usize {
        self.offsets.len().saturating_sub(1)
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The name of task `id`.
    ///
    /// # Panics
    /// When `id` is out of range.
    pub fn get(&self, id: u32) -> &str {
        let i = id as usize;
        &self.bytes[self.offsets[i] as usize..self.offsets[i + 1] as usize]
    }

    /// All names in id order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = &str> + '_ {
        (0..self.len() as u32).map(|i| self.get(i))
    }

    /// The id of the task called `name` (the first, should names repeat;
    /// empty names are never found).
    pub fn id(&self, name: &str) -> Option<u32> {
        let table = self.index.get_or_init(|| self.build_index(&mut |_, _| {}));
        if table.is_empty() {
            return None;
        }
        let mask = table.len() - 1;
        let mut i = SEED.hash_one(name) as usize & mask;
        loop {
            let slot = &table[i];
            if slot.id == EMPTY {
                return None;
            }
            if self.matches(slot, name) {
                return Some(slot.id);
            }
            i = (i + 1) & mask;
        }
    }

    /// Whether `slot` holds `name`; reads the buffer only for long names.
    fn matches(&self, slot: &Slot, name: &str) -> bool {
        let bytes = name.as_bytes();
        slot.len as usize == bytes.len()
            && slot.prefix[..bytes.len().min(INLINE)] == bytes[..bytes.len().min(INLINE)]
            && (bytes.len() <= INLINE || self.get(slot.id).as_bytes()[INLINE..] == bytes[INLINE..])
    }

    /// Builds the index now, calling `duplicate(id, first)` for every name
    /// that repeats an earlier one. Does nothing when already built.
    pub fn index_reporting_duplicates(&self, mut duplicate: impl FnMut(u32, u32)) {
        let _ = self.index.get_or_init(|| self.build_index(&mut duplicate));
    }

    fn build_index(&self, duplicate: &mut dyn FnMut(u32, u32)) -> Vec<Slot> {
        let n = self.len();
        if n == 0 {
            return Vec::new();
        }
        // Load factor at most 1/2 keeps linear probes short.
        let mut table = vec![Slot::EMPTY; (2 * n).next_power_of_two()];
        let mask = table.len() - 1;
        for id in 0..n as u32 {
            let name = self.get(id);
            if name.is_empty() {
                continue;
            }
            let mut i = SEED.hash_one(name) as usize & mask;
            loop {
                let slot = table[i];
                if slot.id == EMPTY {
                    table[i] = Slot::new(id, name);
                    break;
                }
                if self.matches(&slot, name) {
                    duplicate(id, slot.id);
                    break;
                }
                i = (i + 1) & mask;
            }
        }
        table
    }

    /// Heap bytes held (the index included once built).
    pub fn heap_bytes(&self) -> usize {
        self.bytes.capacity()
            + self.offsets.capacity() * 4
            + self.index.get().map_or(0, |t| t.capacity() * 4)
    }
}

/// A clone leaves the index behind (it is rebuilt on the first lookup): the
/// planner clones the names of every workflow it compiles, and rarely looks
/// one up.
impl Clone for Names {
    fn clone(&self) -> Self {
        Names {
            bytes: self.bytes.clone(),
            offsets: self.offsets.clone(),
            index: OnceLock::new(),
        }
    }
}

impl PartialEq for Names {
    fn eq(&self, other: &Self) -> bool {
        self.bytes == other.bytes && self.offsets == other.offsets
    }
}

impl Eq for Names {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interns_and_looks_up() {
        let names = Names::new(["fetch", "", "parse", "fetch2"]).unwrap();
        assert_eq!(names.get(0), "fetch");
        assert_eq!(names.get(1), "");
        assert_eq!(names.id("parse"), Some(2));
        assert_eq!(names.id("fetch2"), Some(3));
        assert_eq!(names.id("nope"), None);
        assert_eq!(names.id(""), None);
        assert_eq!(
            names.iter().collect::<Vec<_>>(),
            ["fetch", "", "parse", "fetch2"]
        );
        assert_eq!(Names::new([]).unwrap().id("a"), None);
    }

    #[test]
    fn duplicates_are_reported_with_the_first_occurrence() {
        let names = Names::new(["a", "b", "a", "", "", "b", "a"]).unwrap();
        let mut dups = Vec::new();
        names.index_reporting_duplicates(|id, first| dups.push((id, first)));
        assert_eq!(dups, [(2, 0), (5, 1), (6, 0)]);
        assert_eq!(names.id("a"), Some(0));
    }

    #[test]
    fn long_names_that_share_a_prefix_stay_apart() {
        let long = "a-very-long-task-name-that-exceeds-the-slot";
        let names = Names::new([
            long,
            "a-very-long-task-name-that-exceeds-the-other",
            "a-very-long-task-name-tha",
        ])
        .unwrap();
        assert_eq!(names.id(long), Some(0));
        assert_eq!(
            names.id("a-very-long-task-name-that-exceeds-the-other"),
            Some(1)
        );
        assert_eq!(names.id("a-very-long-task-name-tha"), Some(2));
        assert_eq!(names.id("a-very-long-task-name-that-exceeds-the-slo"), None);
        assert_eq!(names.id("a-very-long-task"), None);
        assert_eq!(names.id("ünïcödé-names-are-bytes-too"), None);
    }

    #[test]
    fn many_names_resolve() {
        let owned: Vec<String> = (0..100_000).map(|i| format!("t{i}")).collect();
        let names = Names::new(owned.iter().map(String::as_str)).unwrap();
        assert!((0..100_000u32).all(|i| names.id(&owned[i as usize]) == Some(i)));
    }
}

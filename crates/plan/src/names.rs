//! Task names interned into one buffer, with a lazily built lookup table.

use std::hash::BuildHasher;
use std::sync::OnceLock;

use crate::Error;

/// Task names, indexed by task id.
///
/// All names live in one `String` so that interning a million names is one
/// copy, not a million allocations. Looking a name up builds an
/// open-addressing table of ids on first use; plans that are only printed
/// never pay for it.
#[derive(Debug, Default)]
pub struct Names {
    bytes: String,
    /// `len() + 1` offsets into `bytes`.
    offsets: Vec<u32>,
    index: OnceLock<Vec<u32>>,
}

const EMPTY: u32 = u32::MAX;

/// Fixed seed: the table is private, but a fixed seed keeps lookups
/// reproducible when a plan is debugged.
const SEED: foldhash::fast::FixedState =
    foldhash::fast::FixedState::with_seed(0x6261_746f_6e5f_6e6d);

impl Names {
    /// Interns `names`; fails when their total length does not fit in `u32`.
    pub(crate) fn new<'a>(
        names: impl IntoIterator<Item = &'a str>,
        expected: usize,
    ) -> Result<Names, Error> {
        let mut bytes = String::new();
        let mut offsets = Vec::with_capacity(expected + 1);
        offsets.push(0u32);
        for name in names {
            bytes.push_str(name);
            let end = u32::try_from(bytes.len()).map_err(|_| Error::Malformed {
                reason: "task names exceed 4 GiB in total".into(),
            })?;
            offsets.push(end);
        }
        if offsets.len() != expected + 1 {
            return Err(Error::Malformed {
                reason: format!(
                    "{} task names given for {expected} tasks",
                    offsets.len() - 1
                ),
            });
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

    /// The id of the task called `name` (the first one, should names repeat).
    pub fn id(&self, name: &str) -> Option<u32> {
        let table = self.index.get_or_init(|| self.build_index());
        if table.is_empty() {
            return None;
        }
        let mask = table.len() - 1;
        let mut slot = SEED.hash_one(name) as usize & mask;
        loop {
            match table[slot] {
                EMPTY => return None,
                id if self.get(id) == name => return Some(id),
                _ => slot = (slot + 1) & mask,
            }
        }
    }

    fn build_index(&self) -> Vec<u32> {
        let n = self.len();
        if n == 0 {
            return Vec::new();
        }
        // Load factor at most 1/2 keeps linear probes short.
        let mut table = vec![EMPTY; (2 * n).next_power_of_two()];
        let mask = table.len() - 1;
        for id in 0..n as u32 {
            let name = self.get(id);
            let mut slot = SEED.hash_one(name) as usize & mask;
            loop {
                match table[slot] {
                    EMPTY => {
                        table[slot] = id;
                        break;
                    }
                    other if self.get(other) == name => break,
                    _ => slot = (slot + 1) & mask,
                }
            }
        }
        table
    }

    /// Heap bytes held (the lookup table included once built).
    pub(crate) fn heap_bytes(&self) -> usize {
        self.bytes.capacity()
            + self.offsets.capacity() * 4
            + self.index.get().map_or(0, |t| t.capacity() * 4)
    }
}

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
        let names = Names::new(["fetch", "", "parse", "fetch2"], 4).unwrap();
        assert_eq!(names.get(0), "fetch");
        assert_eq!(names.get(1), "");
        assert_eq!(names.id("parse"), Some(2));
        assert_eq!(names.id("fetch2"), Some(3));
        assert_eq!(names.id("nope"), None);
        assert_eq!(
            names.iter().collect::<Vec<_>>(),
            ["fetch", "", "parse", "fetch2"]
        );
    }

    #[test]
    fn count_mismatch_is_an_error() {
        assert!(Names::new(["a"], 2).is_err());
        assert!(Names::new(["a", "b"], 1).is_err());
        assert_eq!(Names::new([], 0).unwrap().id("a"), None);
    }
}

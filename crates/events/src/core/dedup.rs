//! The dedup window of one partition: the ids published recently, each with the
//! offset it was stored at, so that a publish of a known id returns that offset
//! instead of storing the event again. It runs once per published event, so it is
//! built for that: two generations dropped whole instead of per-id eviction, and
//! an open-addressing table whose probed part stays small enough for the caches.

use std::hash::BuildHasher;

use super::PartLimits;

/// Recently published ids of one partition, in two generations: ids go into `cur`;
/// when it holds half the window or is half the window's age old, it becomes `prev`
/// and the old `prev` is dropped whole. An id is so remembered for at least half and
/// at most all of the window (count and age), at the cost of one table insert per
/// event and no per-event eviction.
#[derive(Default)]
pub(crate) struct DedupWindow {
    cur: IdTable,
    prev: IdTable,
    cur_since_ms: u64,
    /// Counts rotations (and clears), so that [`DedupWindow::undo`] knows
    /// where the ids since a [`Mark`] went.
    generation: u64,
    /// Randomly seeded, because ids may be chosen by callers.
    hasher: foldhash::fast::RandomState,
}

impl DedupWindow {
    /// Starts a new generation if the current one is full or old.
    pub(super) fn rotate(&mut self, limits: &PartLimits, now_ms: u64) {
        let age = now_ms.saturating_sub(self.cur_since_ms);
        let max_age = limits.dedup_age.as_millis() as u64;
        if age >= max_age {
            // Both generations are past the window.
            self.cur.clear();
            self.prev.clear();
            self.cur_since_ms = now_ms;
            self.generation += 1;
        } else if self.cur.len() >= limits.dedup_ids.div_ceil(2) || age >= max_age / 2 {
            std::mem::swap(&mut self.cur, &mut self.prev);
            self.cur.clear();
            self.cur_since_ms = now_ms;
            self.generation += 1;
        }
    }

    /// Where the window is: what [`DedupWindow::undo`] goes back to.
    pub(super) fn mark(&self) -> Mark {
        Mark {
            generation: self.generation,
            len: self.cur.len(),
        }
    }

    /// Forgets the ids recorded since `mark` (their events were not stored
    /// after all), so that publishing them again stores them: a window must
    /// never answer with an offset that holds nothing. Ids of a generation
    /// rotated away meanwhile are all forgotten (more than half a window in
    /// one failed batch), which only makes dedup miss, never lie.
    pub(super) fn undo(&mut self, mark: Mark) {
        match self.generation - mark.generation {
            0 => self.cur.truncate(mark.len),
            1 => {
                // The ids since the mark: all of `cur`, and `prev`'s past `len`
                // (it was `cur`; after a clear it is empty).
                self.cur.clear();
                self.prev.truncate(mark.len);
            }
            _ => {
                self.cur.clear();
                self.prev.clear();
            }
        }
    }

    /// The hash both generations index `id` by.
    pub(super) fn hash(&self, id: u128) -> u64 {
        self.hasher.hash_one(id)
    }

    /// Loads the slots that ids with these hashes will probe. The loads do not depend
    /// on each other, so their cache misses overlap; the probes that follow, one after
    /// another, then mostly hit the cache.
    pub(super) fn warm(&self, hashes: &[u64]) {
        let mut acc = 0;
        for &h in hashes {
            acc ^= self.cur.slot(h) ^ self.prev.slot(h);
        }
        std::hint::black_box(acc);
    }

    /// Records `id` (whose [`DedupWindow::hash`] is `hash`) at `offset` unless it is
    /// already known; returns the known offset. This runs once per published event: a
    /// new id costs one probe of each generation's slots (the previous one only while
    /// it holds ids).
    pub(super) fn check_insert(
        &mut self,
        id: u128,
        hash: u64,
        offset: u64,
        limits: &PartLimits,
        now_ms: u64,
    ) -> Option<u64> {
        if self.cur.len() >= limits.dedup_ids.div_ceil(2) {
            self.rotate(limits, now_ms);
        }
        if !self.prev.is_empty()
            && let Some(o) = self.prev.get(id, hash)
        {
            return Some(o);
        }
        self.cur.get_or_insert(id, hash, offset)
    }
}

/// A point in a [`DedupWindow`]'s history.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Mark {
    generation: u64,
    len: usize,
}

/// A set of ids with the offset each was stored at: an open-addressing index over an
/// append-only list, made for the dedup window's pattern (inserts, lookups of mostly
/// absent ids, clearing all at once; no single removal).
///
/// The slots are 8 bytes (a 24-bit hash tag and a 40-bit position in `entries`), so
/// the part that is probed at random stays small enough for the CPU caches; `entries`
/// is only written in order and read when a tag matches. Hashes come from the caller,
/// so that they can be computed for a whole batch first.
#[derive(Default)]
struct IdTable {
    /// `(id, offset, hash)` in insertion order (the hash fills what would be padding,
    /// and spares rehashing when the slots grow).
    entries: Vec<(u128, u64, u64)>,
    /// Linear probing; 0 is empty, else `tag << 40 | (position + 1)`. The length is a
    /// power of two at least twice `entries.len()` (or zero).
    slots: Vec<u64>,
}

const POS_BITS: u32 = 40;
const POS_MASK: u64 = (1 << POS_BITS) - 1;

impl IdTable {
    fn len(&self) -> usize {
        self.entries.len()
    }

    fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    fn clear(&mut self) {
        if !self.entries.is_empty() {
            self.entries.clear();
            self.slots.fill(0);
        }
    }

    /// The first slot an id with this hash probes (0 if there are none).
    fn slot(&self, hash: u64) -> u64 {
        if self.slots.is_empty() {
            return 0;
        }
        self.slots[hash as usize & (self.slots.len() - 1)]
    }

    /// The slot holding `id`, or the empty slot where it would go.
    fn find(&self, id: u128, hash: u64) -> std::result::Result<usize, usize> {
        let mask = self.slots.len() - 1;
        let tag = hash >> POS_BITS;
        let mut i = hash as usize & mask;
        loop {
            let s = self.slots[i];
            if s == 0 {
                return Err(i);
            }
            if s >> POS_BITS == tag && self.entries[((s & POS_MASK) - 1) as usize].0 == id {
                return Ok(i);
            }
            i = (i + 1) & mask;
        }
    }

    fn offset_at(&self, slot: usize) -> u64 {
        self.entries[((self.slots[slot] & POS_MASK) - 1) as usize].1
    }

    fn get(&self, id: u128, hash: u64) -> Option<u64> {
        if self.entries.is_empty() {
            return None;
        }
        let i = self.find(id, hash).ok()?;
        Some(self.offset_at(i))
    }

    /// The offset `id` is known at, or `None` after recording it at `offset`.
    fn get_or_insert(&mut self, id: u128, hash: u64, offset: u64) -> Option<u64> {
        if (self.entries.len() + 1) * 2 > self.slots.len() {
            self.grow();
        }
        match self.find(id, hash) {
            Ok(i) => Some(self.offset_at(i)),
            Err(i) => {
                self.entries.push((id, offset, hash));
                self.slots[i] = (hash >> POS_BITS) << POS_BITS | self.entries.len() as u64;
                None
            }
        }
    }

    /// Removes the entries past the first `len`, newest first. With linear
    /// probing, an entry's slot can be emptied when every entry inserted
    /// after it is gone: no earlier entry's probe passed over it (it would
    /// have stopped there), and growth reinserts in insertion order.
    fn truncate(&mut self, len: usize) {
        while self.entries.len() > len {
            let Some((id, _, hash)) = self.entries.last().copied() else {
                break;
            };
            if let Ok(i) = self.find(id, hash) {
                self.slots[i] = 0;
            }
            self.entries.pop();
        }
    }

    fn grow(&mut self) {
        let len = (self.slots.len() * 2).max(64);
        self.slots.clear();
        self.slots.resize(len, 0);
        for n in 0..self.entries.len() {
            let (id, _, hash) = self.entries[n];
            // Ids in a table are distinct, so each finds an empty slot.
            let (Ok(i) | Err(i)) = self.find(id, hash);
            self.slots[i] = (hash >> POS_BITS) << POS_BITS | (n as u64 + 1);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn limits(ids: usize) -> PartLimits {
        PartLimits {
            max_events: None,
            max_bytes: None,
            max_age: None,
            dedup_ids: ids,
            dedup_age: Duration::from_secs(60),
        }
    }

    #[test]
    fn id_table_finds_what_it_holds_across_growth() {
        let mut w = DedupWindow::default();
        let l = limits(1 << 20);
        // Ids that differ only in their high bits, and sequential ones.
        let ids: Vec<u128> = (0..5000u128)
            .map(|i| if i % 2 == 0 { i << 100 } else { i })
            .collect();
        for (o, &id) in ids.iter().enumerate() {
            assert_eq!(w.check_insert(id, w.hash(id), o as u64, &l, 0), None);
        }
        for (o, &id) in ids.iter().enumerate() {
            assert_eq!(w.check_insert(id, w.hash(id), 9999, &l, 0), Some(o as u64));
        }
        assert_eq!(w.cur.len(), ids.len());
        assert!(w.cur.slots.len() >= 2 * ids.len());
    }

    /// Undone ids are forgotten (published again, they are stored), the ids
    /// before the mark are kept, across a rotation within the undone batch
    /// too.
    #[test]
    fn undo_forgets_exactly_the_ids_since_the_mark() {
        let l = limits(1 << 20);
        let mut w = DedupWindow::default();
        let ids: Vec<u128> = (0..3000u128)
            .map(|i| i.wrapping_mul(0x9e37_79b9_7f4a_7c15))
            .collect();
        for (o, &id) in ids[..1000].iter().enumerate() {
            assert_eq!(w.check_insert(id, w.hash(id), o as u64, &l, 0), None);
        }
        let mark = w.mark();
        for (o, &id) in ids[1000..].iter().enumerate() {
            assert_eq!(w.check_insert(id, w.hash(id), 1000 + o as u64, &l, 0), None);
        }
        w.undo(mark);
        for (o, &id) in ids.iter().enumerate() {
            let known = w.check_insert(id, w.hash(id), 7777, &l, 0);
            assert_eq!(known, (o < 1000).then_some(o as u64), "id {o}");
        }
        // A rotation between the mark and the undo.
        let small = limits(8);
        let mut w = DedupWindow::default();
        for id in 0..3u128 {
            w.check_insert(id, w.hash(id), id as u64, &small, 0);
        }
        let mark = w.mark();
        for id in 3..6u128 {
            w.check_insert(id, w.hash(id), id as u64, &small, 0);
        }
        assert_eq!(w.generation, mark.generation + 1);
        w.undo(mark);
        for id in 0..3u128 {
            assert_eq!(
                w.check_insert(id, w.hash(id), 99, &small, 0),
                Some(id as u64)
            );
        }
        assert_eq!(
            w.check_insert(4, w.hash(4), 44, &small, 0),
            None,
            "forgotten"
        );
    }

    #[test]
    fn window_keeps_two_generations_by_count_and_age() {
        let mut w = DedupWindow::default();
        let l = limits(4);
        for id in 0..4u128 {
            assert_eq!(w.check_insert(id, w.hash(id), id as u64, &l, 0), None);
        }
        // The newest half of the window is remembered, the rest may be forgotten.
        assert_eq!(w.check_insert(3, w.hash(3), 99, &l, 0), Some(3));
        assert_eq!(w.check_insert(2, w.hash(2), 99, &l, 0), Some(2));
        assert_eq!(w.check_insert(0, w.hash(0), 4, &l, 0), None);
        assert_eq!(w.check_insert(0, w.hash(0), 99, &l, 0), Some(4));
        // Past the window's age everything is forgotten.
        w.rotate(&l, 60_000);
        assert!(w.cur.is_empty() && w.prev.is_empty());
        assert_eq!(w.prev.get(5, w.hash(5)), None);
    }
}

//! A consumer group's state: per partition, the next offset never delivered, the
//! runs delivered and not yet acknowledged (who holds them, until when, how often
//! delivered), acknowledgements known ahead of `next`, and the member that owns the
//! partition while it has pending events (so one key is never processed by two
//! members at once).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::time::Instant;

use super::{FastMap, lock};

/// A delivered, unacknowledged run of consecutive events of one partition.
#[derive(Clone, Debug)]
pub(super) struct Run {
    pub(super) len: u32,
    /// Events of the run not acknowledged yet.
    pub(super) remaining: u32,
    pub(super) acked: Vec<bool>,
    pub(super) member: Arc<str>,
    pub(super) since_ms: u64,
    pub(super) deadline: Instant,
    pub(super) deliveries: u32,
}

/// A consumer group's view of one partition.
#[derive(Default)]
pub(crate) struct GroupPart {
    /// Next offset never delivered to the group.
    pub(crate) next: u64,
    pub(super) runs: BTreeMap<u64, Run>,
    /// Offsets at or after `next` that are already acknowledged (known after a restart).
    pub(crate) skip: BTreeSet<u64>,
    /// The member new events of this partition go to while it has pending events, so
    /// that one key's events are not processed by two members at once.
    pub(super) owner: Option<Arc<str>>,
    /// No run expires before this (it may be stale-early, never late).
    pub(super) earliest: Option<Instant>,
}

impl GroupPart {
    /// The lowest offset not acknowledged.
    pub(crate) fn committed(&self) -> u64 {
        self.runs
            .iter()
            .find_map(|(s, r)| r.acked.iter().position(|a| !a).map(|i| s + i as u64))
            .unwrap_or(self.next)
    }

    /// Offsets acknowledged above `committed()`.
    pub(crate) fn acked_above(&self, committed: u64) -> Vec<u64> {
        let mut out: Vec<u64> = self
            .runs
            .iter()
            .flat_map(|(s, r)| {
                r.acked
                    .iter()
                    .enumerate()
                    .filter(|(_, a)| **a)
                    .map(move |(i, _)| s + i as u64)
            })
            .filter(|&o| o > committed)
            .collect();
        out.extend(self.skip.iter().copied());
        out.sort_unstable();
        out
    }

    /// The start of the run holding `offset`.
    pub(super) fn run_of(&self, offset: u64) -> Option<u64> {
        let (&s, r) = self.runs.range(..=offset).next_back()?;
        (offset < s + r.len as u64).then_some(s)
    }

    /// Splits the run starting at `start` so that a run begins at `at`.
    pub(super) fn split(&mut self, start: u64, at: u64) {
        let Some(run) = self.runs.get_mut(&start) else {
            return;
        };
        if at <= start || at >= start + run.len as u64 {
            return;
        }
        let k = (at - start) as usize;
        let tail_acked = run.acked.split_off(k);
        let tail_remaining = tail_acked.iter().filter(|a| !**a).count() as u32;
        let tail = Run {
            len: tail_acked.len() as u32,
            remaining: tail_remaining,
            acked: tail_acked,
            member: run.member.clone(),
            since_ms: run.since_ms,
            deadline: run.deadline,
            deliveries: run.deliveries,
        };
        run.len = k as u32;
        run.remaining -= tail_remaining;
        let head_empty = run.remaining == 0;
        if head_empty {
            self.runs.remove(&start);
        }
        if tail.remaining > 0 {
            self.runs.insert(at, tail);
        }
    }

    pub(super) fn note_deadline(&mut self, d: Instant) {
        self.earliest = Some(self.earliest.map_or(d, |e| e.min(d)));
    }

    pub(super) fn release_if_idle(&mut self) -> bool {
        if self.runs.is_empty() && self.owner.is_some() {
            self.owner = None;
            self.earliest = None;
            return true;
        }
        false
    }
}

/// A consumer group of a topic.
pub(crate) struct Group {
    pub(crate) id: u32,
    pub(crate) name: Arc<str>,
    pub(crate) parts: Box<[Mutex<GroupPart>]>,
    /// Each member's last poll (wall-clock ms).
    pub(super) members: Mutex<FastMap<Arc<str>, u64>>,
    /// Spreads the partition a poll starts with.
    pub(super) rr: AtomicUsize,
}

impl Group {
    pub(crate) fn new(id: u32, name: &str, partitions: u32) -> Self {
        Group {
            id,
            name: name.into(),
            parts: (0..partitions)
                .map(|_| Mutex::new(GroupPart::default()))
                .collect(),
            members: Mutex::new(FastMap::default()),
            rr: AtomicUsize::new(0),
        }
    }

    pub(crate) fn part(&self, partition: u32) -> Option<MutexGuard<'_, GroupPart>> {
        self.parts.get(partition as usize).map(lock)
    }
}

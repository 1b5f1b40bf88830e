//! Events, ids and offsets.

use std::cell::Cell;
use std::fmt;
use std::hash::{BuildHasher, Hasher};
use std::str::FromStr;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::Result;

/// A 128-bit event id, used to drop a retried publish inside the dedup window.
///
/// Generated ids are 128 random bits from a per-thread generator seeded by the
/// standard library's random hasher keys: unique in practice, with no coordination and
/// no clock read (ids are generated per event on the hot path). Rendered as 32
/// lowercase hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EventId(pub u128);

thread_local! {
    // Seeded on first use (0 means not yet): a `const` initializer keeps the hot path
    // free of the lazy-initialization call.
    static ID_STATE: Cell<u64> = const { Cell::new(0) };
}

/// A per-thread random seed from the standard library's randomly keyed hasher.
#[cold]
fn id_seed() -> u64 {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(now_ms());
    h.finish() | 1
}

fn splitmix64(state: &Cell<u64>) -> u64 {
    let s = state.get().wrapping_add(0x9E37_79B9_7F4A_7C15);
    state.set(s);
    let mut z = s;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl EventId {
    /// A new random id.
    pub fn generate() -> Self {
        let (a, b) = ID_STATE.with(|s| {
            if s.get() == 0 {
                s.set(id_seed());
            }
            (splitmix64(s), splitmix64(s))
        });
        EventId(((a as u128) << 64) | b as u128)
    }

    /// An id derived from `key`: the same in every process, so that the dedup
    /// window stores what `key` names once however often it is published.
    pub fn derived(key: &[u8]) -> Self {
        let hi = key_hash(key);
        let mut salted = Vec::with_capacity(key.len() + 1);
        salted.push(0xff);
        salted.extend_from_slice(key);
        EventId((u128::from(hi) << 64) | u128::from(key_hash(&salted)))
    }
}

impl fmt::Display for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:032x}", self.0)
    }
}

impl fmt::Debug for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "EventId({self})")
    }
}

impl FromStr for EventId {
    type Err = std::num::ParseIntError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        u128::from_str_radix(s, 16).map(EventId)
    }
}

/// Milliseconds since the Unix epoch on the wall clock.
pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// One event: the unit that is published, stored, delivered and acknowledged.
///
/// Cloning is cheap: key and payload are reference-counted [`Bytes`].
#[derive(Clone, PartialEq, Eq)]
pub struct Event {
    /// Identity for deduplication; keep it when retrying a publish.
    pub id: EventId,
    /// Ordering key: events with the same key land in the same partition, in publish order.
    pub key: Bytes,
    /// The event's type, e.g. `"task.finished"`.
    pub kind: Arc<str>,
    /// When the event happened, in milliseconds since the Unix epoch (set by the producer).
    pub timestamp_ms: u64,
    /// Free-form metadata.
    pub headers: Vec<(String, Bytes)>,
    /// The body.
    pub payload: Bytes,
}

/// Bytes an event costs apart from its variable fields: the fixed part of its encoding.
pub(crate) const EVENT_OVERHEAD: usize = 16 + 8 + 4 + 2 + 2 + 4;

impl Event {
    /// A new event with a generated id and the current time.
    pub fn new(
        kind: impl Into<Arc<str>>,
        key: impl Into<Bytes>,
        payload: impl Into<Bytes>,
    ) -> Self {
        Event {
            id: EventId::generate(),
            key: key.into(),
            kind: kind.into(),
            timestamp_ms: now_ms(),
            headers: Vec::new(),
            payload: payload.into(),
        }
    }

    /// A new event whose payload is `value` as JSON.
    pub fn json<T: Serialize + ?Sized>(
        kind: impl Into<Arc<str>>,
        key: impl Into<Bytes>,
        value: &T,
    ) -> Result<Self> {
        Ok(Self::new(kind, key, serde_json::to_vec(value)?))
    }

    /// Decodes the payload as JSON.
    pub fn payload_json<T: DeserializeOwned>(&self) -> Result<T> {
        Ok(serde_json::from_slice(&self.payload)?)
    }

    /// Replaces the id, e.g. with one derived from a business key.
    #[must_use]
    pub fn with_id(mut self, id: EventId) -> Self {
        self.id = id;
        self
    }

    /// Adds a header.
    #[must_use]
    pub fn with_header(mut self, name: impl Into<String>, value: impl Into<Bytes>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Replaces the timestamp.
    #[must_use]
    pub fn with_timestamp(mut self, timestamp_ms: u64) -> Self {
        self.timestamp_ms = timestamp_ms;
        self
    }

    /// The value of the first header named `name`.
    pub fn header(&self, name: &str) -> Option<&Bytes> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v)
    }

    /// The event's encoded size: what limits and byte-based retention count.
    pub fn size(&self) -> usize {
        EVENT_OVERHEAD
            + self.key.len()
            + self.kind.len()
            + self.payload.len()
            + self
                .headers
                .iter()
                .map(|(n, v)| 6 + n.len() + v.len())
                .sum::<usize>()
    }
}

impl fmt::Debug for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Event")
            .field("id", &self.id)
            .field("key", &String::from_utf8_lossy(&self.key))
            .field("kind", &self.kind)
            .field("timestamp_ms", &self.timestamp_ms)
            .field("headers", &self.headers)
            .field("payload_len", &self.payload.len())
            .finish()
    }
}

/// Where an event sits in a topic: its partition and its position in that partition.
///
/// Offsets in a partition start at 0, grow by one per event and are never reused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Offset {
    /// The partition.
    pub partition: u32,
    /// Position in the partition.
    pub offset: u64,
}

impl Offset {
    /// An offset.
    pub const fn new(partition: u32, offset: u64) -> Self {
        Offset { partition, offset }
    }
}

impl fmt::Display for Offset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.partition, self.offset)
    }
}

impl FromStr for Offset {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (p, o) = s
            .split_once(':')
            .ok_or_else(|| format!("expected PARTITION:OFFSET, got {s:?}"))?;
        Ok(Offset {
            partition: p
                .parse()
                .map_err(|e| format!("bad partition in {s:?}: {e}"))?,
            offset: o.parse().map_err(|e| format!("bad offset in {s:?}: {e}"))?,
        })
    }
}

/// A stable 64-bit hash of a key, used to pick its partition.
///
/// Written out here rather than taken from a hashing crate because the mapping is
/// persisted implicitly (a key's earlier events sit in its partition on disk): it must
/// never change across versions, or per-key order would break after an upgrade.
pub fn key_hash(key: &[u8]) -> u64 {
    const M: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut h: u64 = 0x243F_6A88_85A3_08D3 ^ (key.len() as u64).wrapping_mul(M);
    let mut chunks = key.chunks_exact(8);
    for c in &mut chunks {
        let w = u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]);
        h = (h ^ w).wrapping_mul(M);
        h ^= h >> 29;
    }
    let rest = chunks.remainder();
    if !rest.is_empty() {
        let mut buf = [0u8; 8];
        buf[..rest.len()].copy_from_slice(rest);
        h = (h ^ u64::from_le_bytes(buf)).wrapping_mul(M);
        h ^= h >> 29;
    }
    h = h.wrapping_mul(0xBF58_476D_1CE4_E5B9);
    h ^ (h >> 32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_unique_and_round_trip() {
        let a = EventId::generate();
        let b = EventId::generate();
        assert_ne!(a, b);
        assert_eq!(a.to_string().len(), 32);
        assert_eq!(a.to_string().parse::<EventId>().unwrap(), a);
        let many: std::collections::HashSet<EventId> =
            (0..10_000).map(|_| EventId::generate()).collect();
        assert_eq!(many.len(), 10_000);
    }

    #[test]
    fn key_hash_is_stable() {
        // Pinned values: changing them would move keys to other partitions.
        assert_ne!(key_hash(b"a"), key_hash(b"b"));
        assert_ne!(key_hash(b"abcdefgh1"), key_hash(b"abcdefgh2"));
        let pinned = [key_hash(b"run-1"), key_hash(b"a-rather-longer-key-0001")];
        assert_eq!(pinned, [1870037617825862701, 5261118505000010266]);
    }

    #[test]
    fn json_helpers() {
        let e = Event::json("t", "k", &serde_json::json!({"a": 1})).unwrap();
        let v: serde_json::Value = e.payload_json().unwrap();
        assert_eq!(v["a"], 1);
        assert!(
            Event::new("t", "k", "not json")
                .payload_json::<u32>()
                .is_err()
        );
    }

    #[test]
    fn offsets_parse() {
        assert_eq!("3:17".parse::<Offset>().unwrap(), Offset::new(3, 17));
        assert!("3".parse::<Offset>().is_err());
        assert!("x:1".parse::<Offset>().is_err());
    }
}

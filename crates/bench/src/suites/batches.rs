//! The events the event-log benchmarks publish, built as a producer would, so
//! that the suites and their ceilings move the same bytes.

use std::sync::Arc;
use std::time::Instant;

use baton_events::{Event, EventId};
use bytes::Bytes;

/// Builds the benchmark's batches as a producer would: a fresh id per event, the
/// 64 keys in turn, `kind` `bench.event`, one payload per batch shared by its
/// events, whose first 8 bytes carry the send time (nanoseconds since `epoch`).
pub(crate) struct Batches {
    keys: Vec<Bytes>,
    kind: Arc<str>,
    /// Counts the events built; picks each one's key.
    pub(crate) seq: u64,
    payload: Vec<u8>,
}

impl Batches {
    /// Batches of events with `payload`-byte payloads (at least 8).
    pub(crate) fn new(payload: usize) -> Batches {
        Batches {
            keys: (0..64)
                .map(|k| Bytes::from(format!("key-{k:03}")))
                .collect(),
            kind: "bench.event".into(),
            seq: 0,
            payload: vec![b'x'; payload.max(8)],
        }
    }

    /// The next `n` events, stamped now.
    pub(crate) fn next(&mut self, n: usize, epoch: Instant) -> Vec<Event> {
        let stamp = (Instant::now() - epoch).as_nanos() as u64;
        self.payload[..8].copy_from_slice(&stamp.to_le_bytes());
        let body = Bytes::copy_from_slice(&self.payload);
        (0..n)
            .map(|_| {
                self.seq += 1;
                Event {
                    id: EventId::generate(),
                    key: self.keys[(self.seq % 64) as usize].clone(),
                    kind: self.kind.clone(),
                    timestamp_ms: 0,
                    headers: Vec::new(),
                    payload: body.clone(),
                }
            })
            .collect()
    }
}

//! The on-disk record format.
//!
//! A segment file is the 8-byte magic [`MAGIC`] followed by records:
//!
//! ```text
//! u32 body length | u32 crc32 of body | body
//! ```
//!
//! All integers are little-endian. The body's first byte is its kind; see the `put_*`
//! functions for each layout. A record is written whole by one `write` and is the unit
//! of recovery: it is either served intact or not at all.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use crate::core::AckRanges;
use crate::types::Chunk;
use crate::{Dedup, Event, EventId, Retention, TopicOptions};

/// First bytes of every segment; the digit is the format version.
pub(crate) const MAGIC: &[u8; 8] = b"BATNLOG1";
/// Length and checksum before each body.
pub(crate) const HEADER: usize = 8;

pub(crate) const TOPIC: u8 = 1;
pub(crate) const BATCH: u8 = 2;
pub(crate) const GROUP: u8 = 3;
pub(crate) const ACK: u8 = 4;
pub(crate) const SEEK: u8 = 5;
pub(crate) const START: u8 = 6;

/// Appends one framed record whose body `body` writes.
pub(crate) fn put_record(buf: &mut Vec<u8>, body: impl FnOnce(&mut Vec<u8>)) {
    let at = buf.len();
    buf.extend_from_slice(&[0; HEADER]);
    body(buf);
    let len = (buf.len() - at - HEADER) as u32;
    let crc = crc32fast::hash(&buf[at + HEADER..]);
    buf[at..at + 4].copy_from_slice(&len.to_le_bytes());
    buf[at + 4..at + 8].copy_from_slice(&crc.to_le_bytes());
}

fn put_u16(b: &mut Vec<u8>, v: u16) {
    b.extend_from_slice(&v.to_le_bytes());
}
fn put_u32(b: &mut Vec<u8>, v: u32) {
    b.extend_from_slice(&v.to_le_bytes());
}
fn put_u64(b: &mut Vec<u8>, v: u64) {
    b.extend_from_slice(&v.to_le_bytes());
}
fn put_str16(b: &mut Vec<u8>, s: &[u8]) {
    put_u16(b, s.len() as u16);
    b.extend_from_slice(s);
}
fn put_bytes32(b: &mut Vec<u8>, s: &[u8]) {
    put_u32(b, s.len() as u32);
    b.extend_from_slice(s);
}
fn put_opt(b: &mut Vec<u8>, v: Option<u64>) {
    put_u64(b, v.map_or(u64::MAX, |v| v.min(u64::MAX - 1)));
}

pub(crate) fn put_topic(b: &mut Vec<u8>, id: u32, name: &str, o: &TopicOptions) {
    put_record(b, |b| {
        b.push(TOPIC);
        put_u32(b, id);
        put_str16(b, name.as_bytes());
        put_u32(b, o.partitions);
        put_opt(b, o.retention.max_events);
        put_opt(b, o.retention.max_bytes);
        put_opt(b, o.retention.max_age.map(|d| d.as_millis() as u64));
        put_u64(b, o.dedup.max_ids as u64);
        put_u64(b, o.dedup.max_age.as_millis() as u64);
        put_u64(b, o.visibility_timeout.as_millis() as u64);
        put_u32(b, o.max_deliveries);
    });
}

pub(crate) fn put_batch(b: &mut Vec<u8>, topic: u32, partition: u32, chunk: &Chunk) {
    b.reserve(HEADER + 29 + chunk.bytes() as usize);
    put_record(b, |b| {
        b.push(BATCH);
        put_u32(b, topic);
        put_u32(b, partition);
        put_u64(b, chunk.base());
        put_u64(b, chunk.appended_ms());
        put_u32(b, chunk.events().len() as u32);
        for e in chunk.events() {
            b.extend_from_slice(&e.id.0.to_le_bytes());
            put_u64(b, e.timestamp_ms);
            put_bytes32(b, &e.key);
            put_str16(b, e.kind.as_bytes());
            put_u16(b, e.headers.len() as u16);
            for (n, v) in &e.headers {
                put_str16(b, n.as_bytes());
                put_bytes32(b, v);
            }
            put_bytes32(b, &e.payload);
        }
    });
}

/// The topic, partition and end offset of a batch record's body, read from its
/// header without decoding its events.
pub(crate) fn batch_span(body: &[u8]) -> Option<(u32, u32, u64)> {
    let head = body.get(..29).filter(|h| h[0] == BATCH)?;
    let u32_at = |i: usize| u32::from_le_bytes([head[i], head[i + 1], head[i + 2], head[i + 3]]);
    let mut base = [0; 8];
    base.copy_from_slice(&head[9..17]);
    let end = u64::from_le_bytes(base).checked_add(u64::from(u32_at(25)))?;
    Some((u32_at(1), u32_at(5), end))
}

pub(crate) fn put_group(b: &mut Vec<u8>, topic: u32, group: u32, name: &str) {
    put_record(b, |b| {
        b.push(GROUP);
        put_u32(b, topic);
        put_u32(b, group);
        put_str16(b, name.as_bytes());
    });
}

pub(crate) fn put_ack(b: &mut Vec<u8>, topic: u32, group: u32, acks: &AckRanges) {
    put_record(b, |b| {
        b.push(ACK);
        put_u32(b, topic);
        put_u32(b, group);
        put_u32(b, acks.len() as u32);
        for (p, ranges) in acks {
            put_u32(b, *p);
            put_u32(b, ranges.len() as u32);
            for &(s, n) in ranges {
                put_u64(b, s);
                put_u32(b, n);
            }
        }
    });
}

pub(crate) fn put_seek(b: &mut Vec<u8>, topic: u32, group: u32, positions: &[(u32, u64)]) {
    put_record(b, |b| {
        b.push(SEEK);
        put_u32(b, topic);
        put_u32(b, group);
        put_u32(b, positions.len() as u32);
        for &(p, o) in positions {
            put_u32(b, p);
            put_u64(b, o);
        }
    });
}

/// Where a partition's retained range starts (and at least where its next offset is),
/// written before older segments are deleted so offsets are never reused.
pub(crate) fn put_start(b: &mut Vec<u8>, topic: u32, partition: u32, start: u64) {
    put_record(b, |b| {
        b.push(START);
        put_u32(b, topic);
        put_u32(b, partition);
        put_u64(b, start);
    });
}

/// A decoded record.
pub(crate) enum Rec {
    Topic {
        id: u32,
        name: String,
        options: TopicOptions,
    },
    Batch {
        topic: u32,
        partition: u32,
        chunk: Chunk,
    },
    Group {
        topic: u32,
        group: u32,
        name: String,
    },
    Ack {
        topic: u32,
        group: u32,
        acks: AckRanges,
    },
    Seek {
        topic: u32,
        group: u32,
        positions: Vec<(u32, u64)>,
    },
    Start {
        topic: u32,
        partition: u32,
        start: u64,
    },
}

/// Reads fields from a record body; every read is bounds-checked.
struct Reader {
    body: Bytes,
    at: usize,
}

type R<T> = Result<T, String>;

impl Reader {
    fn take(&mut self, n: usize) -> R<&[u8]> {
        let end = self
            .at
            .checked_add(n)
            .filter(|&e| e <= self.body.len())
            .ok_or_else(|| format!("field of {n} bytes runs past the record end"))?;
        let s = &self.body[self.at..end];
        self.at = end;
        Ok(s)
    }
    fn u8(&mut self) -> R<u8> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> R<u16> {
        Ok(u16::from_le_bytes(
            self.take(2)?.try_into().map_err(|_| "short")?,
        ))
    }
    fn u32(&mut self) -> R<u32> {
        Ok(u32::from_le_bytes(
            self.take(4)?.try_into().map_err(|_| "short")?,
        ))
    }
    fn u64(&mut self) -> R<u64> {
        Ok(u64::from_le_bytes(
            self.take(8)?.try_into().map_err(|_| "short")?,
        ))
    }
    fn u128(&mut self) -> R<u128> {
        Ok(u128::from_le_bytes(
            self.take(16)?.try_into().map_err(|_| "short")?,
        ))
    }
    fn opt(&mut self) -> R<Option<u64>> {
        let v = self.u64()?;
        Ok((v != u64::MAX).then_some(v))
    }
    fn bytes(&mut self, n: usize) -> R<Bytes> {
        let start = self.at;
        self.take(n)?;
        Ok(self.body.slice(start..start + n))
    }
    fn str16(&mut self) -> R<String> {
        let n = self.u16()? as usize;
        String::from_utf8(self.take(n)?.to_vec()).map_err(|_| "name is not UTF-8".to_owned())
    }
    fn count(&mut self, min_each: usize) -> R<usize> {
        let n = self.u32()? as usize;
        // A count the rest of the record cannot hold means damage, not a huge allocation.
        if n.saturating_mul(min_each) > self.body.len() - self.at {
            return Err(format!("count {n} does not fit in the record"));
        }
        Ok(n)
    }
}

/// Interns event kinds while decoding, so recovery allocates one string per kind.
#[derive(Default)]
pub(crate) struct Kinds(HashMap<Vec<u8>, Arc<str>>);

impl Kinds {
    fn get(&mut self, raw: &[u8]) -> R<Arc<str>> {
        if let Some(k) = self.0.get(raw) {
            return Ok(k.clone());
        }
        let s: Arc<str> = std::str::from_utf8(raw)
            .map_err(|_| "event type is not UTF-8".to_owned())?
            .into();
        self.0.insert(raw.to_vec(), s.clone());
        Ok(s)
    }
}

/// Decodes a record body whose checksum has been verified.
pub(crate) fn decode(body: Bytes, kinds: &mut Kinds) -> R<Rec> {
    let mut r = Reader { body, at: 0 };
    let rec = match r.u8()? {
        TOPIC => {
            let id = r.u32()?;
            let name = r.str16()?;
            let options = TopicOptions {
                partitions: r.u32()?,
                retention: Retention {
                    max_events: r.opt()?,
                    max_bytes: r.opt()?,
                    max_age: r.opt()?.map(Duration::from_millis),
                },
                dedup: Dedup {
                    max_ids: r.u64()? as usize,
                    max_age: Duration::from_millis(r.u64()?),
                },
                visibility_timeout: Duration::from_millis(r.u64()?),
                max_deliveries: r.u32()?,
            };
            options.validate().map_err(|e| e.to_string())?;
            Rec::Topic { id, name, options }
        }
        BATCH => {
            let topic = r.u32()?;
            let partition = r.u32()?;
            let base = r.u64()?;
            let appended_ms = r.u64()?;
            let n = r.count(crate::event::EVENT_OVERHEAD)?;
            let mut events = Vec::with_capacity(n);
            for _ in 0..n {
                let id = EventId(r.u128()?);
                let timestamp_ms = r.u64()?;
                let klen = r.u32()? as usize;
                let key = r.bytes(klen)?;
                let tlen = r.u16()? as usize;
                let kind = kinds.get(r.take(tlen)?)?;
                let nh = r.u16()? as usize;
                let mut headers = Vec::with_capacity(nh);
                for _ in 0..nh {
                    let name = r.str16()?;
                    let vlen = r.u32()? as usize;
                    headers.push((name, r.bytes(vlen)?));
                }
                let plen = r.u32()? as usize;
                let payload = r.bytes(plen)?;
                events.push(Event {
                    id,
                    key,
                    kind,
                    timestamp_ms,
                    headers,
                    payload,
                });
            }
            Rec::Batch {
                topic,
                partition,
                chunk: Chunk::new(base, appended_ms, events),
            }
        }
        GROUP => Rec::Group {
            topic: r.u32()?,
            group: r.u32()?,
            name: r.str16()?,
        },
        ACK => {
            let topic = r.u32()?;
            let group = r.u32()?;
            let np = r.count(8)?;
            let mut acks = Vec::with_capacity(np);
            for _ in 0..np {
                let p = r.u32()?;
                let nr = r.count(12)?;
                let mut ranges = Vec::with_capacity(nr);
                for _ in 0..nr {
                    ranges.push((r.u64()?, r.u32()?));
                }
                acks.push((p, ranges));
            }
            Rec::Ack { topic, group, acks }
        }
        SEEK => {
            let topic = r.u32()?;
            let group = r.u32()?;
            let n = r.count(12)?;
            let mut positions = Vec::with_capacity(n);
            for _ in 0..n {
                positions.push((r.u32()?, r.u64()?));
            }
            Rec::Seek {
                topic,
                group,
                positions,
            }
        }
        START => Rec::Start {
            topic: r.u32()?,
            partition: r.u32()?,
            start: r.u64()?,
        },
        k => return Err(format!("unknown record kind {k}")),
    };
    if r.at != r.body.len() {
        return Err(format!(
            "{} unexpected bytes after the record",
            r.body.len() - r.at
        ));
    }
    Ok(rec)
}

/// What a scan of one segment found.
pub(crate) enum Scan {
    /// A verified record body and the position after it.
    Record(Bytes, usize),
    /// The end of the data.
    End,
    /// An incomplete or damaged record at this position.
    Bad(String),
}

/// Reads the record at `at` in a segment's contents.
pub(crate) fn scan(data: &Bytes, at: usize) -> Scan {
    let rest = data.len() - at;
    if rest == 0 {
        return Scan::End;
    }
    if rest < HEADER {
        return Scan::Bad(format!("{rest} bytes are too few for a record header"));
    }
    let len = u32::from_le_bytes(data[at..at + 4].try_into().unwrap_or([0; 4])) as usize;
    let crc = u32::from_le_bytes(data[at + 4..at + 8].try_into().unwrap_or([0; 4]));
    if len == 0 {
        return Scan::Bad("zero-length record".into());
    }
    if len > rest - HEADER {
        return Scan::Bad(format!(
            "record claims {len} bytes but only {} remain",
            rest - HEADER
        ));
    }
    let body = data.slice(at + HEADER..at + HEADER + len);
    if crc32fast::hash(&body) != crc {
        return Scan::Bad("checksum mismatch".into());
    }
    Scan::Record(body, at + HEADER + len)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_round_trips() {
        let events = vec![
            Event::new("a.b", "k1", "payload").with_header("h", "v"),
            Event::new("a.b", "", ""),
        ];
        let chunk = Chunk::new(42, 7, events.clone());
        let mut buf = MAGIC.to_vec();
        put_batch(&mut buf, 3, 1, &chunk);
        put_seek(&mut buf, 3, 0, &[(1, 5)]);
        let data = Bytes::from(buf);
        let Scan::Record(body, next) = scan(&data, MAGIC.len()) else {
            panic!("no record")
        };
        // What compaction reads without decoding: topic, partition, end offset.
        assert_eq!(batch_span(&body), Some((3, 1, 44)));
        let Scan::Record(seek, _) = scan(&data, next) else {
            panic!("no seek")
        };
        assert_eq!(batch_span(&seek), None);
        let mut kinds = Kinds::default();
        match decode(body, &mut kinds).unwrap() {
            Rec::Batch {
                topic,
                partition,
                chunk,
            } => {
                assert_eq!(
                    (topic, partition, chunk.base(), chunk.appended_ms()),
                    (3, 1, 42, 7)
                );
                assert_eq!(chunk.events(), &events[..]);
            }
            _ => panic!("wrong kind"),
        }
        assert!(matches!(scan(&data, next), Scan::Record(..)));
    }

    #[test]
    fn damage_is_detected() {
        let mut buf = Vec::new();
        put_group(&mut buf, 1, 2, "g");
        let n = buf.len();
        for i in 0..n {
            let mut bad = buf.clone();
            bad[i] ^= 0x40;
            let data = Bytes::from(bad);
            match scan(&data, 0) {
                Scan::Bad(_) => {}
                Scan::Record(body, _) => {
                    // Flipping a length bit can still frame a record; its body must then
                    // fail the checksum, so reaching here means the CRC matched by chance.
                    panic!("damaged byte {i} accepted: {body:?}");
                }
                Scan::End => panic!("end"),
            }
        }
        // Truncation anywhere is detected.
        for cut in 1..n {
            let data = Bytes::from(buf[..cut].to_vec());
            assert!(matches!(scan(&data, 0), Scan::Bad(_)));
        }
    }

    #[test]
    fn garbage_counts_do_not_allocate() {
        let mut buf = Vec::new();
        put_record(&mut buf, |b| {
            b.push(ACK);
            put_u32(b, 1);
            put_u32(b, 1);
            put_u32(b, u32::MAX);
        });
        let Scan::Record(body, _) = scan(&Bytes::from(buf), 0) else {
            panic!()
        };
        assert!(decode(body, &mut Kinds::default()).is_err());
    }
}

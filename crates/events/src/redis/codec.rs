//! How an event is stored in a stream entry, and reading the scripts' replies.
//!
//! An entry has one field, `e`, holding the event encoded as:
//!
//! ```text
//! id u128 BE | timestamp_ms u64 LE | kind len u16 LE | kind | key len u32 LE | key
//! | header count u16 LE | (name len u16 LE | name | value len u32 LE | value)*
//! | payload (the rest)
//! ```
//!
//! The id comes first so that the publish script can take it with one `string.sub`
//! for dedup. One field instead of one per event field keeps `XADD` cheap.

use std::sync::Arc;

use bytes::Bytes;
use redis::Value;

use crate::event::EVENT_OVERHEAD;
use crate::redis::Error;
use crate::{Event, EventId};

/// Bytes of an encoded event that are not variable fields.
const FIXED: usize = 16 + 8 + 2 + 4 + 2;

/// What [`Event::size`] counts beyond an encoded event's length; the publish script
/// adds it to each entry's length for byte-based retention.
pub(crate) const SIZE_DELTA: usize = EVENT_OVERHEAD - FIXED;

/// Encodes `e` into `buf` (cleared first).
pub(crate) fn encode(e: &Event, buf: &mut Vec<u8>) {
    buf.clear();
    buf.reserve(e.size());
    buf.extend_from_slice(&e.id.0.to_be_bytes());
    buf.extend_from_slice(&e.timestamp_ms.to_le_bytes());
    // Lengths were checked against the limits; the casts cannot truncate for any
    // event under `Limits::max_event_bytes`' ceiling of u32.
    put_u16(buf, e.kind.len());
    buf.extend_from_slice(e.kind.as_bytes());
    put_u32(buf, e.key.len());
    buf.extend_from_slice(&e.key);
    put_u16(buf, e.headers.len());
    for (name, value) in &e.headers {
        put_u16(buf, name.len());
        buf.extend_from_slice(name.as_bytes());
        put_u32(buf, value.len());
        buf.extend_from_slice(value);
    }
    buf.extend_from_slice(&e.payload);
}

fn put_u16(buf: &mut Vec<u8>, n: usize) {
    buf.extend_from_slice(&u16::try_from(n).unwrap_or(u16::MAX).to_le_bytes());
}

fn put_u32(buf: &mut Vec<u8>, n: usize) {
    buf.extend_from_slice(&u32::try_from(n).unwrap_or(u32::MAX).to_le_bytes());
}

/// Checks what [`encode`] cannot represent, before anything is sent.
pub(crate) fn check(e: &Event, index: usize) -> Result<(), Error> {
    let too_long = |what: &'static str| Error::Encode { index, what };
    if e.kind.len() > u16::MAX as usize {
        return Err(too_long("type longer than 65,535 bytes"));
    }
    if e.key.len() > u32::MAX as usize {
        return Err(too_long("key longer than 4 GiB"));
    }
    if e.headers.len() > u16::MAX as usize {
        return Err(too_long("more than 65,535 headers"));
    }
    for (name, value) in &e.headers {
        if name.len() > u16::MAX as usize || value.len() > u32::MAX as usize {
            return Err(too_long(
                "a header name over 65,535 bytes or value over 4 GiB",
            ));
        }
    }
    Ok(())
}

/// Decodes an entry stored by [`encode`].
pub(crate) fn decode(raw: Vec<u8>) -> Result<Event, String> {
    let data = Bytes::from(raw);
    let mut r = Reader { data: &data, at: 0 };
    let id = u128::from_be_bytes(r.array()?);
    let timestamp_ms = u64::from_le_bytes(r.array()?);
    let n = u16::from_le_bytes(r.array()?) as usize;
    let kind: Arc<str> = std::str::from_utf8(r.take(n)?)
        .map_err(|_| "the event type is not UTF-8".to_owned())?
        .into();
    let n = u32::from_le_bytes(r.array()?) as usize;
    let key = r.bytes(n)?;
    let count = u16::from_le_bytes(r.array()?) as usize;
    let mut headers = Vec::with_capacity(count.min(64));
    for _ in 0..count {
        let n = u16::from_le_bytes(r.array()?) as usize;
        let name = std::str::from_utf8(r.take(n)?)
            .map_err(|_| "a header name is not UTF-8".to_owned())?
            .to_owned();
        let n = u32::from_le_bytes(r.array()?) as usize;
        headers.push((name, r.bytes(n)?));
    }
    let payload = data.slice(r.at..);
    Ok(Event {
        id: EventId(id),
        key,
        kind,
        timestamp_ms,
        headers,
        payload,
    })
}

struct Reader<'a> {
    data: &'a Bytes,
    at: usize,
}

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], String> {
        let end = self
            .at
            .checked_add(n)
            .filter(|&e| e <= self.data.len())
            .ok_or_else(|| format!("entry ends early (wanted {n} bytes at byte {})", self.at))?;
        let s = &self.data[self.at..end];
        self.at = end;
        Ok(s)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], String> {
        let s = self.take(N)?;
        let mut a = [0u8; N];
        a.copy_from_slice(s);
        Ok(a)
    }

    fn bytes(&mut self, n: usize) -> Result<Bytes, String> {
        let start = self.at;
        self.take(n)?;
        Ok(self.data.slice(start..self.at))
    }
}

/// Reading the scripts' replies: each helper names what it expected, for the error.
pub(crate) mod reply {
    use super::Value;

    /// A reply that is not what the script returns.
    pub(crate) fn unexpected(what: &str, got: &Value) -> String {
        let mut shown = format!("{got:?}");
        if shown.len() > 120 {
            let mut cut = 120;
            while !shown.is_char_boundary(cut) {
                cut -= 1;
            }
            shown.truncate(cut);
            shown.push_str("...");
        }
        format!("expected {what}, got {shown}")
    }

    /// An array.
    pub(crate) fn array(v: Value, what: &str) -> Result<Vec<Value>, String> {
        match v {
            Value::Array(a) | Value::Set(a) => Ok(a),
            Value::Nil => Ok(Vec::new()),
            other => Err(unexpected(what, &other)),
        }
    }

    /// An integer (also given as a decimal string).
    pub(crate) fn int(v: &Value, what: &str) -> Result<i64, String> {
        match v {
            Value::Int(i) => Ok(*i),
            Value::BulkString(b) => std::str::from_utf8(b)
                .ok()
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| unexpected(what, v)),
            Value::SimpleString(s) => s.parse().map_err(|_| unexpected(what, v)),
            other => Err(unexpected(what, other)),
        }
    }

    /// A non-negative integer.
    pub(crate) fn uint(v: &Value, what: &str) -> Result<u64, String> {
        let i = int(v, what)?;
        u64::try_from(i).map_err(|_| unexpected(what, v))
    }

    /// A binary string.
    pub(crate) fn bytes(v: Value, what: &str) -> Result<Vec<u8>, String> {
        match v {
            Value::BulkString(b) => Ok(b),
            Value::SimpleString(s) => Ok(s.into_bytes()),
            other => Err(unexpected(what, &other)),
        }
    }

    /// A UTF-8 string.
    pub(crate) fn string(v: Value, what: &str) -> Result<String, String> {
        let b = bytes(v, what)?;
        String::from_utf8(b).map_err(|e| format!("expected {what} in UTF-8: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_size() {
        let e = Event::new("task.done", "run-7", vec![1u8, 2, 3])
            .with_header("a", "x")
            .with_header("trace", vec![0u8; 40]);
        let mut buf = Vec::new();
        encode(&e, &mut buf);
        assert_eq!(buf.len() + SIZE_DELTA, e.size());
        assert_eq!(&buf[..16], &e.id.0.to_be_bytes());
        assert_eq!(decode(buf).unwrap(), e);
        let empty = Event::new("", "", Vec::new());
        let mut buf = Vec::new();
        encode(&empty, &mut buf);
        assert_eq!(decode(buf).unwrap(), empty);
    }

    #[test]
    fn damaged_entries_are_errors() {
        let e = Event::new("k", "key", "payload").with_header("h", "v");
        let mut buf = Vec::new();
        encode(&e, &mut buf);
        for cut in 0..buf.len() - "payload".len() {
            assert!(decode(buf[..cut].to_vec()).is_err(), "cut at {cut}");
        }
        // A key length far beyond the entry (after id, timestamp and the 1-byte type).
        let mut bad = buf.clone();
        bad[27..31].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(decode(bad).is_err());
        let mut bad = buf;
        bad[26] = 0xff; // the type is no longer UTF-8
        assert!(decode(bad).is_err());
    }
}

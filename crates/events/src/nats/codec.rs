//! How events, names and server metadata are written on NATS: the event encoding in a
//! message body, the escaping of topic and group names into stream and consumer names,
//! and the parsing of the server's acknowledgement subjects and timestamps.

use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};

use crate::{Event, EventId};

/// First byte of every encoded event; a different value means a foreign message.
const VERSION: u8 = 1;

/// Bytes [`encode_event`] writes for `e`.
pub(crate) fn encoded_len(e: &Event) -> usize {
    let headers: usize = e.headers.iter().map(|(n, v)| 6 + n.len() + v.len()).sum();
    1 + 16 + 8 + 2 + e.kind.len() + 4 + e.key.len() + 2 + headers + e.payload.len()
}

/// Encodes an event as a message body: version, id, timestamp, type, key, headers,
/// then the payload (the rest of the body, so it needs no length). Appends to `b`
/// and returns the body, split off `b` (so one buffer can serve a whole batch).
pub(crate) fn encode_event(b: &mut BytesMut, e: &Event) -> Bytes {
    b.reserve(encoded_len(e));
    b.put_u8(VERSION);
    b.put_u128_le(e.id.0);
    b.put_u64_le(e.timestamp_ms);
    put_short(b, e.kind.as_bytes());
    b.put_u32_le(e.key.len() as u32);
    b.put_slice(&e.key);
    b.put_u16_le(e.headers.len().min(u16::MAX as usize) as u16);
    for (name, value) in e.headers.iter().take(u16::MAX as usize) {
        put_short(b, name.as_bytes());
        b.put_u32_le(value.len() as u32);
        b.put_slice(value);
    }
    b.put_slice(&e.payload);
    b.split().freeze()
}

fn put_short(b: &mut BytesMut, s: &[u8]) {
    let s = &s[..s.len().min(u16::MAX as usize)];
    b.put_u16_le(s.len() as u16);
    b.put_slice(s);
}

/// A cursor over a message body that fails instead of panicking on short input.
struct Reader {
    body: Bytes,
    pos: usize,
}

impl Reader {
    fn take(&mut self, n: usize, what: &str) -> Result<Bytes, String> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.body.len())
            .ok_or_else(|| {
                format!(
                    "body ends inside the {what} (needs {n} bytes at byte {}, has {})",
                    self.pos,
                    self.body.len()
                )
            })?;
        let out = self.body.slice(self.pos..end);
        self.pos = end;
        Ok(out)
    }

    fn array<const N: usize>(&mut self, what: &str) -> Result<[u8; N], String> {
        let b = self.take(N, what)?;
        let mut out = [0u8; N];
        out.copy_from_slice(&b);
        Ok(out)
    }

    fn u16(&mut self, what: &str) -> Result<usize, String> {
        Ok(u16::from_le_bytes(self.array(what)?) as usize)
    }

    fn u32(&mut self, what: &str) -> Result<usize, String> {
        Ok(u32::from_le_bytes(self.array(what)?) as usize)
    }

    fn string(&mut self, n: usize, what: &str) -> Result<String, String> {
        let b = self.take(n, what)?;
        String::from_utf8(b.to_vec()).map_err(|_| format!("the {what} is not UTF-8"))
    }
}

/// Decodes a body written by [`encode_event`]; the payload shares the body's buffer.
pub(crate) fn decode_event(body: Bytes) -> Result<Event, String> {
    let mut r = Reader { body, pos: 0 };
    let [version] = r.array::<1>("version")?;
    if version != VERSION {
        return Err(format!(
            "unknown encoding version {version} (expected {VERSION}); \
             the stream holds messages not written by Baton"
        ));
    }
    let id = EventId(u128::from_le_bytes(r.array("id")?));
    let timestamp_ms = u64::from_le_bytes(r.array("timestamp")?);
    let n = r.u16("type length")?;
    let kind: Arc<str> = r.string(n, "type")?.into();
    let n = r.u32("key length")?;
    let key = r.take(n, "key")?;
    let count = r.u16("header count")?;
    let mut headers = Vec::with_capacity(count);
    for _ in 0..count {
        let n = r.u16("header name length")?;
        let name = r.string(n, "header name")?;
        let n = r.u32("header value length")?;
        headers.push((name, r.take(n, "header value")?));
    }
    let payload = r.body.slice(r.pos..);
    Ok(Event {
        id,
        key,
        kind,
        timestamp_ms,
        headers,
        payload,
    })
}

/// Escapes a topic or group name into a stream or consumer name token: JetStream
/// names may not contain `.`, so `.` becomes `_2E` and `_` (the escape character)
/// becomes `_5F`; every other character of a valid name is kept.
pub(crate) fn encode_name(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 8);
    for c in name.chars() {
        match c {
            '.' => out.push_str("_2E"),
            '_' => out.push_str("_5F"),
            c => out.push(c),
        }
    }
    out
}

/// Reverses [`encode_name`]; `None` for anything it cannot have produced.
pub(crate) fn decode_name(token: &str) -> Option<String> {
    let mut out = String::with_capacity(token.len());
    let mut rest = token;
    while let Some(i) = rest.find('_') {
        out.push_str(&rest[..i]);
        let code = rest.get(i + 1..i + 3)?;
        out.push(match code {
            "2E" => '.',
            "5F" => '_',
            _ => return None,
        });
        rest = &rest[i + 3..];
    }
    out.push_str(rest);
    Some(out)
}

/// What the acknowledgement subject of a delivered message says about it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct AckInfo {
    /// Times delivered, this time included.
    pub deliveries: u32,
    /// The message's stream sequence.
    pub stream_seq: u64,
    /// When the stream stored it, ms since the Unix epoch.
    pub stored_ms: u64,
}

/// Parses `$JS.ACK.<stream>.<consumer>.<delivered>.<sseq>.<dseq>.<ns>.<pending>` and the
/// newer form with a domain and an account hash after `ACK`.
pub(crate) fn parse_ack_subject(reply: &str) -> Option<AckInfo> {
    let tokens: Vec<&str> = reply.split('.').collect();
    if tokens.len() < 9 || tokens[0] != "$JS" || tokens[1] != "ACK" {
        return None;
    }
    let base = if tokens.len() == 9 { 4 } else { 6 };
    let deliveries = tokens.get(base)?.parse::<u64>().ok()?;
    Some(AckInfo {
        deliveries: deliveries.min(u32::MAX as u64) as u32,
        stream_seq: tokens.get(base + 1)?.parse().ok()?,
        stored_ms: tokens.get(base + 3)?.parse::<u64>().ok()? / 1_000_000,
    })
}

/// Milliseconds since the Unix epoch of an RFC 3339 UTC time as the server writes it
/// (`2024-05-01T12:00:00.123456789Z`); `None` if it is not in that form.
pub(crate) fn parse_rfc3339_ms(s: &str) -> Option<u64> {
    let b = s.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || b[10] != b'T' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> { s.get(r)?.parse().ok() };
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hour, min, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
    let mut rest = &s[19..];
    let mut millis = 0i64;
    if let Some(frac) = rest.strip_prefix('.') {
        let digits = frac.bytes().take_while(u8::is_ascii_digit).count();
        let ms_digits = &frac[..digits.min(3)];
        millis = ms_digits.parse::<i64>().ok()? * 10i64.pow(3 - ms_digits.len() as u32);
        rest = &frac[digits..];
    }
    let offset_s = match rest {
        "Z" | "z" => 0,
        _ => {
            let sign = match rest.as_bytes().first()? {
                b'+' => 1,
                b'-' => -1,
                _ => return None,
            };
            let h: i64 = rest.get(1..3)?.parse().ok()?;
            let m: i64 = rest.get(4..6)?.parse().ok()?;
            sign * (h * 3600 + m * 60)
        }
    };
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || min > 59 {
        return None;
    }
    let days = days_from_civil(year, month, day);
    let secs = days * 86_400 + hour * 3600 + min * 60 + sec - offset_s;
    u64::try_from(secs * 1000 + millis).ok()
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// An RFC 3339 UTC time with nanoseconds for `ms` since the Unix epoch.
#[cfg(test)]
pub(crate) fn format_rfc3339(ms: u64) -> String {
    let secs = (ms / 1000) as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Inverse of `days_from_civil`.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}000000Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        ms % 1000
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_round_trip() {
        let e = Event::new("task.ready", "run-1", "payload")
            .with_header("a", "1")
            .with_header("dlq.reason", vec![0u8, 255, 10]);
        let mut buf = BytesMut::new();
        let back = decode_event(encode_event(&mut buf, &e)).unwrap();
        assert_eq!(back, e);
        let empty = Event::new("", "", "");
        assert_eq!(decode_event(encode_event(&mut buf, &empty)).unwrap(), empty);
        assert_eq!(encode_event(&mut buf, &e).len(), encoded_len(&e));
    }

    #[test]
    fn bad_bodies_are_errors_not_panics() {
        let body = encode_event(
            &mut BytesMut::new(),
            &Event::new("t", "key", "p").with_header("h", "v"),
        );
        // Any prefix that cuts into the fixed part or the headers (all but the one-byte
        // payload) fails cleanly.
        for n in 0..body.len() - 1 {
            assert!(decode_event(body.slice(..n)).is_err(), "prefix {n}");
        }
        assert!(
            decode_event(Bytes::from_static(b"\x07rest"))
                .unwrap_err()
                .contains("version 7")
        );
        assert!(decode_event(Bytes::new()).is_err());
    }

    #[test]
    fn names_escape_and_round_trip() {
        for n in ["tasks", "a.b", "a_b", "a._5F.", "runs.task-1_x", "_2E"] {
            let enc = encode_name(n);
            assert!(!enc.contains('.'), "{enc}");
            assert_eq!(decode_name(&enc).as_deref(), Some(n));
        }
        assert_ne!(encode_name("a.b"), encode_name("a_b"));
        assert_eq!(decode_name("a_ZZ"), None);
        assert_eq!(decode_name("a_"), None);
    }

    #[test]
    fn ack_subjects() {
        let v1 = "$JS.ACK.S.c.3.17.40.1795755182612675019.5";
        assert_eq!(
            parse_ack_subject(v1),
            Some(AckInfo {
                deliveries: 3,
                stream_seq: 17,
                stored_ms: 1_795_755_182_612
            })
        );
        let v2 = "$JS.ACK.dom.hash.S.c.2.9.11.1795755182612675019.0.rand";
        assert_eq!(parse_ack_subject(v2).unwrap().stream_seq, 9);
        assert_eq!(parse_ack_subject("_INBOX.x"), None);
        assert_eq!(parse_ack_subject("$JS.ACK.S.c.x.1.1.1.1"), None);
    }

    #[test]
    fn times() {
        assert_eq!(parse_rfc3339_ms("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(
            parse_rfc3339_ms("2026-11-27T04:53:02.569026848Z"),
            Some(1_795_755_182_569)
        );
        assert_eq!(
            parse_rfc3339_ms("2026-11-27T05:53:02.5+01:00"),
            Some(1_795_755_182_500)
        );
        assert_eq!(parse_rfc3339_ms("yesterday"), None);
        for ms in [0, 1_795_755_182_569, 951_782_400_000 /* 2000-02-29 */] {
            assert_eq!(parse_rfc3339_ms(&format_rfc3339(ms)), Some(ms));
        }
    }
}

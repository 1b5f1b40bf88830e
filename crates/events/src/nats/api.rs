//! The parts of the JetStream API (`$JS.API.*` request and response bodies) the
//! backend uses, written out so that they match what a 2.9 server accepts and sends.

use std::time::Duration;

use serde::Deserialize;
use serde_json::{Value, json};

use crate::TopicOptions;

/// `error.err_code` values the backend tells apart.
pub(crate) mod code {
    /// Stream not found.
    pub const STREAM_NOT_FOUND: u64 = 10059;
    /// Stream name already in use with a different configuration.
    pub const STREAM_NAME_IN_USE: u64 = 10058;
    /// The server could not create a stream's storage (transient: see `create_streams`).
    pub const STREAM_STORE_FAILED: u64 = 10049;
    /// Consumer not found.
    pub const CONSUMER_NOT_FOUND: u64 = 10014;
}

/// An error the server answered with.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
pub struct ApiError {
    /// HTTP-like status.
    pub code: u16,
    /// JetStream's own error number (10059: stream not found, ...).
    #[serde(default)]
    pub err_code: u64,
    /// The server's message.
    #[serde(default)]
    pub description: String,
}

/// Any API response: an error or the body.
#[derive(Deserialize)]
#[serde(untagged)]
pub(crate) enum Response<T> {
    Err { error: ApiError },
    Ok(T),
}

#[derive(Debug, Deserialize)]
pub(crate) struct StreamInfo {
    pub config: StreamConfig,
    pub state: StreamState,
}

#[derive(Debug, Deserialize)]
pub(crate) struct StreamConfig {
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
}

#[derive(Clone, Copy, Debug, Default, Deserialize)]
pub(crate) struct StreamState {
    pub messages: u64,
    pub bytes: u64,
    pub first_seq: u64,
    pub last_seq: u64,
}

impl StreamState {
    /// The oldest retained offset (the end if nothing is retained).
    pub fn start(&self) -> u64 {
        if self.messages == 0 {
            self.last_seq
        } else {
            self.first_seq.saturating_sub(1)
        }
    }
}

#[derive(Debug, Deserialize)]
pub(crate) struct StreamList {
    #[serde(default)]
    pub total: u64,
    #[serde(default)]
    pub streams: Option<Vec<StreamInfo>>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct StreamNames {
    #[serde(default)]
    pub total: u64,
    #[serde(default)]
    pub streams: Option<Vec<String>>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct ConsumerList {
    #[serde(default)]
    pub total: u64,
    #[serde(default)]
    pub consumers: Option<Vec<ConsumerInfo>>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct ConsumerInfo {
    pub name: String,
    pub ack_floor: SeqPair,
    /// The last message the consumer delivered, to anyone.
    #[serde(default)]
    pub delivered: SeqPair,
    #[serde(default)]
    pub num_ack_pending: u64,
    #[serde(default)]
    pub num_pending: u64,
}

#[derive(Clone, Copy, Debug, Default, Deserialize)]
pub(crate) struct SeqPair {
    #[serde(default)]
    pub stream_seq: u64,
}

#[derive(Debug, Deserialize)]
pub(crate) struct PubAck {
    #[serde(rename = "seq")]
    pub sequence: u64,
    #[serde(default)]
    pub duplicate: bool,
}

#[derive(Debug, Deserialize)]
pub(crate) struct Advisory {
    pub stream: String,
    pub consumer: String,
    pub stream_seq: u64,
    #[serde(default)]
    pub deliveries: u64,
}

#[derive(Debug, Deserialize)]
pub(crate) struct Empty {}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// Whether the topic's dedup window is on at all.
pub(crate) fn dedup_enabled(o: &TopicOptions) -> bool {
    o.dedup.max_ids > 0 && !o.dedup.max_age.is_zero()
}

/// The smallest duplicate window JetStream accepts.
const MIN_WINDOW: Duration = Duration::from_millis(100);

/// The stream of one partition. Count and byte bounds are split evenly over
/// partitions (rounding up), as the in-process backends do; the duplicate window is
/// the dedup age, at least 100 ms and at most the retention age (JetStream's bounds).
/// Fails for a retention age under 100 ms, which JetStream cannot combine with any
/// duplicate window.
pub(crate) fn stream_config(
    name: &str,
    subject: &str,
    description: &str,
    o: &TopicOptions,
    replicas: usize,
) -> Result<Value, String> {
    let n = u64::from(o.partitions);
    let limit = |v: Option<u64>| v.map_or(-1i64, |v| v.div_ceil(n).min(i64::MAX as u64) as i64);
    // With dedup off no ids are sent, so the window stays empty whatever its length.
    let mut window = if dedup_enabled(o) {
        o.dedup.max_age.max(MIN_WINDOW)
    } else {
        MIN_WINDOW
    };
    if let Some(age) = o.retention.max_age {
        if age < MIN_WINDOW {
            return Err(format!(
                "retention max_age of {age:?} is below the 100 ms NATS JetStream needs \
                 (its duplicate window may not be longer than the retention age)"
            ));
        }
        window = window.min(age);
    }
    Ok(json!({
        "name": name,
        "description": description,
        "subjects": [subject],
        "retention": "limits",
        "max_consumers": -1,
        "max_msgs": limit(o.retention.max_events),
        "max_bytes": limit(o.retention.max_bytes),
        "max_age": o.retention.max_age.map_or(0, nanos),
        "max_msgs_per_subject": -1,
        "max_msg_size": -1,
        "discard": "old",
        "storage": "file",
        "num_replicas": replicas,
        "duplicate_window": nanos(window),
        "allow_direct": true,
    }))
}

/// Where a durable consumer starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Start {
    /// The oldest retained message.
    All,
    /// Only messages stored after the consumer is created.
    New,
    /// This stream sequence.
    Seq(u64),
}

/// A group's durable pull consumer on one partition stream: explicit acks, the
/// visibility timeout as `ack_wait`, `max_deliveries` as `max_deliver`, and no bound
/// on unacknowledged messages (the trait has none).
pub(crate) fn consumer_config(durable: &str, group: &str, o: &TopicOptions, start: Start) -> Value {
    let mut c = json!({
        "durable_name": durable,
        "description": format!("baton group {group}"),
        "deliver_policy": "all",
        "ack_policy": "explicit",
        "ack_wait": nanos(o.visibility_timeout),
        "max_deliver": if o.max_deliveries == 0 { -1 } else { i64::from(o.max_deliveries) },
        "max_ack_pending": -1,
        "replay_policy": "instant",
    });
    match start {
        Start::All => {}
        Start::New => c["deliver_policy"] = json!("new"),
        Start::Seq(seq) => {
            c["deliver_policy"] = json!("by_start_sequence");
            c["opt_start_seq"] = json!(seq.max(1));
        }
    }
    c
}

/// The topic's options as stored in every partition stream's description, so that
/// every process sees the same partition count and bounds. Durations are in
/// nanoseconds so they round-trip exactly.
pub(crate) fn describe(topic: &str, o: &TopicOptions) -> String {
    json!({
        "baton_topic": topic,
        "partitions": o.partitions,
        "max_events": o.retention.max_events,
        "max_bytes": o.retention.max_bytes,
        "max_age_ns": o.retention.max_age.map(nanos),
        "dedup_ids": o.dedup.max_ids,
        "dedup_age_ns": nanos(o.dedup.max_age),
        "visibility_ns": nanos(o.visibility_timeout),
        "max_deliveries": o.max_deliveries,
    })
    .to_string()
}

/// Reads [`describe`] back: the topic name and its options.
pub(crate) fn parse_description(s: &str) -> Option<(String, TopicOptions)> {
    let v: Value = serde_json::from_str(s).ok()?;
    let u = |k: &str| v.get(k).and_then(Value::as_u64);
    let opt = |k: &str| -> Option<Option<u64>> {
        match v.get(k)? {
            Value::Null => Some(None),
            x => Some(Some(x.as_u64()?)),
        }
    };
    let o = TopicOptions {
        partitions: u32::try_from(u("partitions")?).ok()?,
        retention: crate::Retention {
            max_events: opt("max_events")?,
            max_bytes: opt("max_bytes")?,
            max_age: opt("max_age_ns")?.map(Duration::from_nanos),
        },
        dedup: crate::Dedup {
            max_ids: usize::try_from(u("dedup_ids")?).ok()?,
            max_age: Duration::from_nanos(u("dedup_age_ns")?),
        },
        visibility_timeout: Duration::from_nanos(u("visibility_ns")?),
        max_deliveries: u32::try_from(u("max_deliveries")?).ok()?,
    };
    Some((v.get("baton_topic")?.as_str()?.to_owned(), o))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descriptions_round_trip() {
        let mut o = TopicOptions::default();
        assert_eq!(
            parse_description(&describe("a.b", &o)),
            Some(("a.b".to_owned(), o.clone()))
        );
        o.retention.max_age = None;
        o.retention.max_events = Some(7);
        o.visibility_timeout = Duration::from_nanos(1_234_567);
        assert_eq!(parse_description(&describe("t", &o)).unwrap().1, o);
        assert_eq!(parse_description("not json"), None);
        assert_eq!(parse_description("{\"partitions\": 3}"), None);
    }

    #[test]
    fn stream_limits_split_over_partitions() {
        let mut o = TopicOptions {
            partitions: 3,
            ..TopicOptions::default()
        };
        o.retention.max_events = Some(100);
        o.retention.max_age = Some(Duration::from_secs(60));
        let c = stream_config("s", "x.s", "", &o, 1).unwrap();
        assert_eq!(c["max_msgs"], 34);
        // The 5-minute dedup window is cut to the 1-minute retention.
        assert_eq!(c["duplicate_window"], 60_000_000_000u64);
        o.retention.max_bytes = None;
        assert_eq!(
            stream_config("s", "x.s", "", &o, 1).unwrap()["max_bytes"],
            -1
        );
    }

    #[test]
    fn duplicate_windows_stay_within_jetstream_bounds() {
        let mut o = TopicOptions::default();
        o.dedup.max_ids = 0;
        let window = |o: &TopicOptions| {
            stream_config("s", "x.s", "", o, 1).map(|c| c["duplicate_window"].clone())
        };
        assert_eq!(
            window(&o).unwrap(),
            100_000_000u64,
            "dedup off: the minimum"
        );
        o.dedup.max_ids = 10;
        o.dedup.max_age = Duration::from_millis(5);
        assert_eq!(window(&o).unwrap(), 100_000_000u64);
        o.retention.max_age = Some(Duration::from_millis(50));
        assert!(window(&o).unwrap_err().contains("100 ms"));
    }
}

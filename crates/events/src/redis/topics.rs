//! Topics on Redis: options stored once under `…:meta` (every duration exact, in
//! nanoseconds) and registered in `…:topics`, cached per process, created on first
//! use with the defaults. It exists so that every call finds its topic, and its
//! keys, the same way, and so that a topic's options never change after creation
//! whichever process created it.

use super::*;

pub(super) async fn create_topic(log: &RedisLog, topic: &str, options: TopicOptions) -> Result<()> {
    log.create(topic, Some(options)).await.map(drop)
}

impl RedisLog {
    fn cached(&self, name: &str) -> Option<Arc<Topic>> {
        self.inner
            .topics
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(name)
            .cloned()
    }

    fn remember(&self, t: Topic) -> Arc<Topic> {
        let mut topics = self.inner.topics.write().unwrap_or_else(|e| e.into_inner());
        topics
            .entry(t.name.clone())
            .or_insert_with(|| Arc::new(t))
            .clone()
    }

    fn meta_key(&self, name: &str) -> String {
        format!("{}:{{{name}}}:meta", self.inner.prefix)
    }

    fn decode_meta(&self, raw: Value) -> Result<TopicOptions> {
        let raw = reply::bytes(raw, "the topic's options")
            .map_err(|d| self.reply_err("reading a topic", d))?;
        let stored: Stored = serde_json::from_slice(&raw)
            .map_err(|e| self.reply_err("reading a topic", format!("topic options: {e}")))?;
        Ok(stored.into())
    }

    /// Creates the topic in Redis unless it exists; returns it as stored. With
    /// `explicit`, different stored options are an error.
    async fn create(&self, name: &str, options: Option<TopicOptions>) -> Result<Arc<Topic>> {
        check_name("topic", name)?;
        let explicit = options.is_some();
        let options = options
            .unwrap_or_else(|| rules::topic_defaults(&self.inner.options.topic_defaults, name));
        options.validate()?;
        let existing = match self.cached(name) {
            Some(t) => t,
            None => {
                self.check_open()?;
                let c = &self.inner.conns;
                let json = serde_json::to_vec(&Stored::from(&options))?;
                // Registered first: a topic whose options never got stored is skipped
                // by `topics`, while the opposite would hide a topic.
                let mut sadd = redis::cmd("SADD");
                sadd.arg(format!("{}:topics", self.inner.prefix)).arg(name);
                c.query("registering a topic", &sadd).await?;
                let mut set = redis::cmd("SET");
                set.arg(self.meta_key(name)).arg(json).arg("NX").arg("GET");
                let stored = match c.query("creating a topic", &set).await? {
                    Value::Nil => options.clone(),
                    raw => self.decode_meta(raw)?,
                };
                self.remember(Topic::new(&self.inner.prefix, name, stored))
            }
        };
        rules::check_same(name, &existing.options, explicit.then_some(&options))?;
        Ok(existing)
    }

    /// A topic that must exist.
    pub(super) async fn existing(&self, name: &str) -> Result<Arc<Topic>> {
        if let Some(t) = self.cached(name) {
            return Ok(t);
        }
        self.check_open()?;
        let mut get = redis::cmd("GET");
        get.arg(self.meta_key(name));
        match self.inner.conns.query("reading a topic", &get).await? {
            Value::Nil => Err(crate::Error::UnknownTopic(name.to_owned())),
            raw => {
                let options = self.decode_meta(raw)?;
                Ok(self.remember(Topic::new(&self.inner.prefix, name, options)))
            }
        }
    }

    pub(super) async fn topic_or_create(&self, name: &str) -> Result<Arc<Topic>> {
        match self.cached(name) {
            Some(t) => Ok(t),
            None => self.create(name, None).await,
        }
    }
}

/// Topic options as stored in `…:meta` (every duration exact, in nanoseconds).
#[derive(Serialize, Deserialize)]
struct Stored {
    partitions: u32,
    visibility_timeout_ns: u64,
    max_deliveries: u32,
    dedup_max_ids: usize,
    dedup_max_age_ns: u64,
    retention_max_events: Option<u64>,
    retention_max_bytes: Option<u64>,
    retention_max_age_ns: Option<u64>,
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

impl From<&TopicOptions> for Stored {
    fn from(o: &TopicOptions) -> Self {
        Stored {
            partitions: o.partitions,
            visibility_timeout_ns: nanos(o.visibility_timeout),
            max_deliveries: o.max_deliveries,
            dedup_max_ids: o.dedup.max_ids,
            dedup_max_age_ns: nanos(o.dedup.max_age),
            retention_max_events: o.retention.max_events,
            retention_max_bytes: o.retention.max_bytes,
            retention_max_age_ns: o.retention.max_age.map(nanos),
        }
    }
}

impl From<Stored> for TopicOptions {
    fn from(s: Stored) -> Self {
        TopicOptions {
            partitions: s.partitions,
            retention: Retention {
                max_events: s.retention_max_events,
                max_bytes: s.retention_max_bytes,
                max_age: s.retention_max_age_ns.map(Duration::from_nanos),
            },
            dedup: Dedup {
                max_ids: s.dedup_max_ids,
                max_age: Duration::from_nanos(s.dedup_max_age_ns),
            },
            visibility_timeout: Duration::from_nanos(s.visibility_timeout_ns),
            max_deliveries: s.max_deliveries,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_options_round_trip_exactly() {
        let o = TopicOptions {
            partitions: 3,
            visibility_timeout: Duration::from_micros(1500),
            retention: Retention {
                max_events: Some(10),
                max_bytes: None,
                max_age: Some(Duration::from_nanos(7)),
            },
            ..TopicOptions::default()
        };
        let json = serde_json::to_vec(&Stored::from(&o)).unwrap();
        let back: TopicOptions = serde_json::from_slice::<Stored>(&json).unwrap().into();
        assert_eq!(back, o);
    }
}

//! Topics and groups on JetStream: a topic is one file-backed stream per
//! partition, its options in the streams' descriptions (partition 0's stream,
//! created last, marks the topic complete); a group is a durable pull consumer per
//! partition. It exists so that every process finds, creates and checks topics and
//! groups the same way, crash-safe halfway through a creation.

use super::*;

pub(super) async fn create_topic(log: &NatsLog, topic: &str, options: TopicOptions) -> Result<()> {
    log.check_open()?;
    log.topic(topic, Some(&options), true).await.map(drop)
}

impl NatsLog {
    pub(super) fn new_topic(&self, name: &str, options: TopicOptions) -> Arc<Topic> {
        let prefix = &self.inner.opts.prefix;
        let enc = encode_name(name);
        let n = options.partitions;
        Arc::new(Topic {
            name: name.to_owned(),
            streams: (0..n).map(|p| self.stream_name(name, p)).collect(),
            subjects: (0..n)
                .map(|p| Subject::from(format!("{prefix}.{enc}.{p}")))
                .collect(),
            wildcard: format!("{prefix}.{enc}.*"),
            options,
            groups: Mutex::new(HashMap::new()),
        })
    }

    /// The topic, loaded from the server if this process has not seen it; created if
    /// `create` (with `explicit` options, or the defaults).
    pub(super) async fn topic(
        &self,
        name: &str,
        explicit: Option<&TopicOptions>,
        create: bool,
    ) -> Result<Arc<Topic>> {
        check_name("topic", name)?;
        if let Some(o) = explicit {
            o.validate()?;
        }
        let cached = lock(&self.inner.topics).get(name).cloned();
        if let Some(t) = cached {
            check_same(&t, explicit)?;
            return Ok(t);
        }
        let t = self.load_topic(name, explicit, create).await?;
        let t = lock(&self.inner.topics)
            .entry(name.to_owned())
            .or_insert(t)
            .clone();
        check_same(&t, explicit)?;
        Ok(t)
    }

    async fn load_topic(
        &self,
        name: &str,
        explicit: Option<&TopicOptions>,
        create: bool,
    ) -> Result<Arc<Topic>> {
        let first = self.stream_name(name, 0);
        let mut attempts = 0;
        loop {
            attempts += 1;
            if let Some(info) = self.stream_info(&first).await? {
                let (_, options) = info
                    .config
                    .description
                    .as_deref()
                    .and_then(parse_description)
                    .ok_or_else(|| Error::Foreign {
                        stream: first.clone(),
                        reason: "its description is not Baton topic metadata".into(),
                    })?;
                let t = self.new_topic(name, options);
                check_same(&t, explicit)?;
                if create {
                    // A process that crashed while creating the topic may have left
                    // partitions missing; streams that exist are left as they are.
                    self.create_streams(&t, 1..t.options.partitions, true)
                        .await?;
                }
                return Ok(t);
            }
            if !create {
                return Err(crate::Error::UnknownTopic(name.to_owned()));
            }
            let options = explicit.cloned().unwrap_or_else(|| {
                rules::topic_defaults(&self.inner.opts.log.topic_defaults, name)
            });
            let t = self.new_topic(name, options);
            // Partition 0 last: its stream is what marks the topic as complete.
            let created = match self
                .create_streams(&t, 1..t.options.partitions, false)
                .await
            {
                Ok(()) => self.create_streams(&t, 0..1, false).await,
                Err(e) => Err(e),
            };
            match created {
                Ok(()) => return Ok(t),
                // Another process is creating it with other options: look again.
                Err(crate::Error::Nats(Error::Api { error, .. }))
                    if error.err_code == code::STREAM_NAME_IN_USE && attempts < 20 =>
                {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(e) => return Err(e),
            }
        }
    }

    async fn create_streams(
        &self,
        t: &Topic,
        partitions: std::ops::Range<u32>,
        keep_existing: bool,
    ) -> Result<()> {
        let description = describe(&t.name, &t.options);
        let replicas = self.inner.opts.replicas;
        let results = join_all(partitions.map(|p| {
            let stream = &t.streams[p as usize];
            let config = stream_config(
                stream,
                t.subjects[p as usize].as_str(),
                &description,
                &t.options,
                replicas,
            );
            async move {
                let config = config.map_err(crate::Error::InvalidOptions)?;
                let what = format!("creating stream {stream}");
                let mut attempt = 0;
                loop {
                    attempt += 1;
                    match self
                        .api::<Empty>(&format!("STREAM.CREATE.{stream}"), &config, &what)
                        .await?
                    {
                        Ok(_) => return Ok(()),
                        Err(e) if keep_existing && e.err_code == code::STREAM_NAME_IN_USE => {
                            return Ok(());
                        }
                        // The server removes its streams directory when the last stream
                        // goes, and a creation racing with that fails; it is transient.
                        Err(e) if e.err_code == code::STREAM_STORE_FAILED && attempt < 5 => {
                            tracing::debug!(%stream, error = %e.description, "retrying stream creation");
                            tokio::time::sleep(Duration::from_millis(20 * attempt)).await;
                        }
                        Err(e) => return Err(api_error(what, e)),
                    }
                }
            }
        }))
        .await;
        results.into_iter().collect()
    }

    /// The group, with its consumers checked (and created at the oldest retained
    /// event) once per process.
    pub(super) async fn group(&self, t: &Topic, name: &str) -> Result<Arc<Group>> {
        let g = self.group_entry(t, name)?;
        if !g.ready.load(Ordering::Acquire) {
            let _only_one = g.ensuring.lock().await;
            if !g.ready.load(Ordering::Acquire) {
                let results = join_all(
                    (0..t.options.partitions).map(|p| self.ensure_consumer(t, &g, p, Start::All)),
                )
                .await;
                results.into_iter().collect::<Result<Vec<()>>>()?;
                g.ready.store(true, Ordering::Release);
            }
        }
        Ok(g)
    }

    /// The group's local state, without asking the server.
    pub(super) fn group_entry(&self, t: &Topic, name: &str) -> Result<Arc<Group>> {
        check_name("group", name)?;
        let mut groups = lock(&t.groups);
        Ok(groups
            .entry(name.to_owned())
            .or_insert_with(|| {
                Arc::new(Group {
                    name: name.to_owned(),
                    consumer: encode_name(name),
                    ready: AtomicBool::new(false),
                    ensuring: tokio::sync::Mutex::new(()),
                    next: AtomicUsize::new(0),
                    state: Mutex::new(GroupState {
                        parts: (0..t.options.partitions).map(|_| Part::default()).collect(),
                        members: BTreeMap::new(),
                        pruned: None,
                    }),
                })
            })
            .clone())
    }

    pub(super) async fn consumer_info(
        &self,
        t: &Topic,
        consumer: &str,
        p: u32,
    ) -> Result<Option<ConsumerInfo>> {
        let stream = &t.streams[p as usize];
        let what = format!("reading consumer {consumer} of stream {stream}");
        match self
            .api::<ConsumerInfo>(
                &format!("CONSUMER.INFO.{stream}.{consumer}"),
                &json!({}),
                &what,
            )
            .await?
        {
            Ok(info) => Ok(Some(info)),
            Err(e) if e.err_code == code::CONSUMER_NOT_FOUND => Ok(None),
            Err(e) => Err(api_error(what, e)),
        }
    }

    async fn ensure_consumer(&self, t: &Topic, g: &Group, p: u32, start: Start) -> Result<()> {
        if self.consumer_info(t, &g.consumer, p).await?.is_some() {
            return Ok(());
        }
        self.create_consumer(t, g, p, start).await
    }

    pub(super) async fn create_consumer(
        &self,
        t: &Topic,
        g: &Group,
        p: u32,
        start: Start,
    ) -> Result<()> {
        let stream = &t.streams[p as usize];
        let what = format!("creating consumer {} on stream {stream}", g.consumer);
        let body = json!({
            "stream_name": stream,
            "config": consumer_config(&g.consumer, &g.name, &t.options, start),
        });
        match self
            .api::<Empty>(
                &format!("CONSUMER.DURABLE.CREATE.{stream}.{}", g.consumer),
                &body,
                &what,
            )
            .await?
        {
            Ok(_) => Ok(()),
            // Created meanwhile by another process: that one is the group's.
            Err(_)
                if start == Start::All
                    && self.consumer_info(t, &g.consumer, p).await?.is_some() =>
            {
                Ok(())
            }
            Err(e) => Err(api_error(what, e)),
        }
    }

    pub(super) async fn delete_consumer(&self, t: &Topic, consumer: &str, p: u32) -> Result<()> {
        let stream = &t.streams[p as usize];
        let what = format!("deleting consumer {consumer} of stream {stream}");
        match self
            .api::<Empty>(
                &format!("CONSUMER.DELETE.{stream}.{consumer}"),
                &json!({}),
                &what,
            )
            .await?
        {
            Ok(_) => Ok(()),
            Err(e) if e.err_code == code::CONSUMER_NOT_FOUND => Ok(()),
            Err(e) => Err(api_error(what, e)),
        }
    }

    /// Every partition's consumer info of a group that must exist.
    pub(super) async fn group_infos(
        &self,
        t: &Topic,
        group: &str,
    ) -> Result<Vec<Option<ConsumerInfo>>> {
        check_name("group", group)?;
        let consumer = encode_name(group);
        let infos =
            join_all((0..t.options.partitions).map(|p| self.consumer_info(t, &consumer, p)))
                .await
                .into_iter()
                .collect::<Result<Vec<_>>>()?;
        if infos.iter().all(Option::is_none) {
            return Err(crate::Error::UnknownGroup {
                topic: t.name.clone(),
                group: group.to_owned(),
            });
        }
        Ok(infos)
    }
}

fn check_same(t: &Topic, requested: Option<&TopicOptions>) -> Result<()> {
    rules::check_same(&t.name, &t.options, requested)
}

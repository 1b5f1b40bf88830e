//! Inspecting and administering a JetStream log: pending lists, groups, topics,
//! reads by offset and time, seeks (consumers re-created at the new start),
//! closing, and deleting topics. It exists apart from the delivery path because
//! none of it is on a producer's or consumer's hot path.

use super::*;

pub(super) async fn pending(
    log: &NatsLog,
    topic: &str,
    group: &str,
    limit: usize,
) -> Result<Vec<PendingEntry>> {
    log.check_open()?;
    let t = log.topic(topic, None, false).await?;
    let infos = log.group_infos(&t, group).await?;
    let g = log.group_entry(&t, group)?;
    let mut out = Vec::new();
    let mut st = lock(&g.state);
    st.prune(&infos);
    for (p, part) in st.parts.iter().enumerate() {
        for (&seq, h) in &part.held {
            out.push(PendingEntry {
                offset: Offset::new(p as u32, seq - 1),
                member: h.member.clone(),
                since_ms: h.since_ms,
                deliveries: h.deliveries,
                claimable_at_ms: h.claimable_ms,
            });
        }
    }
    out.sort_by_key(|e| e.offset);
    out.truncate(limit);
    Ok(out)
}

pub(super) async fn groups(log: &NatsLog, topic: &str) -> Result<Vec<GroupInfo>> {
    log.check_open()?;
    let t = log.topic(topic, None, false).await?;
    let lists = join_all((0..t.options.partitions).map(|p| log.consumers(&t, p)))
        .await
        .into_iter()
        .collect::<Result<Vec<_>>>()?;
    let mut by_group: BTreeMap<String, Vec<Option<ConsumerInfo>>> = BTreeMap::new();
    for (p, list) in lists.into_iter().enumerate() {
        for info in list {
            let Some(name) = decode_name(&info.name) else {
                continue;
            };
            by_group
                .entry(name)
                .or_insert_with(|| (0..t.options.partitions).map(|_| None).collect())[p] =
                Some(info);
        }
    }
    let mut out = Vec::new();
    for (name, infos) in by_group {
        let mut members = Vec::new();
        if let Some(g) = lock(&t.groups).get(&name).cloned() {
            let st = lock(&g.state);
            for (m, &last_seen_ms) in &st.members {
                let pending = st
                    .parts
                    .iter()
                    .flat_map(|part| part.held.values())
                    .filter(|h| &h.member == m)
                    .count() as u64;
                members.push(MemberInfo {
                    name: m.clone(),
                    last_seen_ms,
                    pending,
                });
            }
        }
        let flat = infos.iter().flatten();
        out.push(GroupInfo {
            pending: flat.clone().map(|i| i.num_ack_pending).sum(),
            lag: flat.map(|i| i.num_pending).sum(),
            committed: infos
                .iter()
                .enumerate()
                .map(|(p, i)| {
                    Offset::new(p as u32, i.as_ref().map_or(0, |i| i.ack_floor.stream_seq))
                })
                .collect(),
            name,
            members,
        });
    }
    Ok(out)
}

pub(super) async fn topics(log: &NatsLog) -> Result<Vec<TopicInfo>> {
    log.check_open()?;
    let mut streams: Vec<StreamInfo> = Vec::new();
    loop {
        let body = json!({"offset": streams.len(), "subject": format!("{}.>", log.prefix())});
        let page: StreamList = log
            .api("STREAM.LIST", &body, "listing streams")
            .await?
            .map_err(|e| api_error("listing streams", e))?;
        let list = page.streams.unwrap_or_default();
        let done = list.is_empty() || streams.len() + list.len() >= page.total as usize;
        streams.extend(list);
        if done {
            break;
        }
    }
    let mut topics: BTreeMap<String, (TopicOptions, Vec<PartitionInfo>)> = BTreeMap::new();
    for s in streams {
        let Some((name, p)) = log.parse_stream_name(&s.config.name) else {
            continue;
        };
        let Some((_, options)) = s.config.description.as_deref().and_then(parse_description) else {
            continue;
        };
        let n = options.partitions;
        let entry = topics.entry(name).or_insert_with(|| {
            let empty = PartitionInfo {
                start: 0,
                end: 0,
                bytes: 0,
            };
            (options, vec![empty; n as usize])
        });
        if let Some(slot) = entry.1.get_mut(p as usize) {
            *slot = PartitionInfo {
                start: s.state.start(),
                end: s.state.last_seq,
                bytes: s.state.bytes,
            };
        }
    }
    let mut out = Vec::with_capacity(topics.len());
    for (name, (options, partitions)) in topics {
        let t = log.new_topic(&name, options);
        let mut groups: Vec<String> = log
            .consumers(&t, 0)
            .await?
            .into_iter()
            .filter_map(|c| decode_name(&c.name))
            .collect();
        groups.sort();
        out.push(TopicInfo {
            name,
            partitions,
            groups,
        });
    }
    Ok(out)
}

pub(super) async fn read(
    log: &NatsLog,
    topic: &str,
    partition: u32,
    from: u64,
    max: usize,
) -> Result<Vec<Record>> {
    log.check_open()?;
    let t = log.topic(topic, None, false).await?;
    rules::check_partition(topic, partition, t.options.partitions)?;
    if max == 0 {
        return Ok(Vec::new());
    }
    let state = log.partition_state(&t, partition).await?;
    let first = from.max(state.start()) + 1;
    let last = state.last_seq.min(first.saturating_add(max as u64 - 1));
    if first > last {
        return Ok(Vec::new());
    }
    let stream = &t.streams[partition as usize];
    let gets = futures_util::stream::iter(first..=last)
        .map(|seq| log.direct_get(stream, seq, None))
        .buffered(64)
        .collect::<Vec<_>>()
        .await;
    let mut out = Vec::with_capacity(gets.len());
    for got in gets {
        // Retention may drop the oldest while we read.
        let Some(m) = got? else { continue };
        let event = decode_event(m.payload).map_err(|reason| Error::Foreign {
            stream: stream.clone(),
            reason: format!("message {} does not decode: {reason}", m.seq),
        })?;
        out.push(Record {
            offset: Offset::new(partition, m.seq - 1),
            appended_ms: m.stored_ms,
            event,
        });
    }
    Ok(out)
}

pub(super) async fn offsets_at(log: &NatsLog, topic: &str, time_ms: u64) -> Result<Vec<Offset>> {
    log.check_open()?;
    let t = log.topic(topic, None, false).await?;
    join_all((0..t.options.partitions).map(|p| {
        let t = &t;
        async move { Ok(Offset::new(p, log.offset_at(t, p, time_ms).await?)) }
    }))
    .await
    .into_iter()
    .collect()
}

pub(super) async fn seek(log: &NatsLog, topic: &str, group: &str, to: SeekTo) -> Result<()> {
    log.check_open()?;
    let t = log.topic(topic, None, true).await?;
    let g = log.group_entry(&t, group)?;
    let n = t.options.partitions;
    let targets: Vec<(u32, Start)> = match to {
        SeekTo::Earliest => (0..n).map(|p| (p, Start::All)).collect(),
        SeekTo::Latest => (0..n).map(|p| (p, Start::New)).collect(),
        SeekTo::Time(ms) => log
            .offsets_at(topic, ms)
            .await?
            .into_iter()
            .map(|o| (o.partition, Start::Seq(o.offset + 1)))
            .collect(),
        SeekTo::Offsets(offsets) => {
            if let Some(bad) = offsets.iter().find(|o| o.partition >= n) {
                return Err(rules::unknown_partition(topic, bad.partition, n));
            }
            offsets
                .iter()
                .map(|o| (o.partition, Start::Seq(o.offset + 1)))
                .collect()
        }
    };
    let results = join_all(targets.iter().map(|&(p, start)| {
        let (t, g) = (&t, &g);
        async move {
            // A concurrent poll elsewhere may recreate the consumer between the
            // delete and the create; then try again.
            let mut attempt = 0;
            loop {
                attempt += 1;
                log.delete_consumer(t, &g.consumer, p).await?;
                match log.create_consumer(t, g, p, start).await {
                    Ok(()) => return Ok(()),
                    Err(e) if attempt >= 3 => return Err(e),
                    Err(_) => {}
                }
            }
        }
    }))
    .await;
    {
        let mut st = lock(&g.state);
        for &(p, _) in &targets {
            let part = &mut st.parts[p as usize];
            part.held.clear();
            part.owner = None;
        }
    }
    // Partitions not moved may have no consumer yet (a new group).
    g.ready.store(false, Ordering::Release);
    results.into_iter().collect()
}

pub(super) async fn close(log: &NatsLog) -> Result<()> {
    if log.inner.closed.swap(true, Ordering::AcqRel) {
        return Ok(());
    }
    if let Some(task) = lock(&log.inner.advisories).take() {
        task.abort();
    }
    log.inner
        .client
        .flush()
        .await
        .map_err(|e| request_error("closing", e))?;
    Ok(())
}

impl NatsLog {
    /// Deletes one topic: its partition streams and with them its groups. Returns
    /// whether it existed.
    pub async fn delete_topic(&self, topic: &str) -> Result<bool> {
        self.check_open()?;
        check_name("topic", topic)?;
        lock(&self.inner.topics).remove(topic);
        let mut found = false;
        for stream in self.stream_names().await? {
            if self
                .parse_stream_name(&stream)
                .is_some_and(|(t, _)| t == topic)
            {
                found |= self.delete_stream(&stream).await?;
            }
        }
        Ok(found)
    }

    /// Deletes every topic of the prefix (their partition streams, and with them
    /// their groups); returns how many topics were deleted. Meant for tests and for
    /// tearing a deployment down.
    pub async fn delete_all_topics(&self) -> Result<usize> {
        self.check_open()?;
        lock(&self.inner.topics).clear();
        let mut deleted = std::collections::HashSet::new();
        for stream in self.stream_names().await? {
            if let Some((topic, _)) = self.parse_stream_name(&stream)
                && self.delete_stream(&stream).await?
            {
                deleted.insert(topic);
            }
        }
        Ok(deleted.len())
    }

    async fn partition_state(&self, t: &Topic, p: u32) -> Result<StreamState> {
        Ok(self
            .stream_info(&t.streams[p as usize])
            .await?
            .map(|i| i.state)
            .unwrap_or_default())
    }

    /// The first offset of partition `p` stored at or after `time_ms`.
    async fn offset_at(&self, t: &Topic, p: u32, time_ms: u64) -> Result<u64> {
        let state = self.partition_state(t, p).await?;
        if state.messages == 0 {
            return Ok(state.last_seq);
        }
        let (mut lo, mut hi) = (state.first_seq, state.last_seq + 1);
        let stream = &t.streams[p as usize];
        let subject = &t.subjects[p as usize];
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            match self.direct_get(stream, mid, Some(subject)).await? {
                Some(m) if m.stored_ms < time_ms => lo = m.seq + 1,
                _ => hi = mid,
            }
        }
        Ok((lo - 1).clamp(state.start(), state.last_seq))
    }

    /// Every consumer of partition `p`'s stream.
    async fn consumers(&self, t: &Topic, p: u32) -> Result<Vec<ConsumerInfo>> {
        let stream = &t.streams[p as usize];
        let what = format!("listing consumers of stream {stream}");
        let mut out = Vec::new();
        loop {
            let page = match self
                .api::<ConsumerList>(
                    &format!("CONSUMER.LIST.{stream}"),
                    &json!({"offset": out.len()}),
                    &what,
                )
                .await?
            {
                Ok(page) => page,
                Err(e) if e.err_code == code::STREAM_NOT_FOUND => return Ok(out),
                Err(e) => return Err(api_error(what, e)),
            };
            let list = page.consumers.unwrap_or_default();
            let done = list.is_empty() || out.len() + list.len() >= page.total as usize;
            out.extend(list);
            if done {
                return Ok(out);
            }
        }
    }
}

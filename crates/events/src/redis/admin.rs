//! Inspecting and administering a Redis log: pending lists, groups, topics, reads
//! by offset and time, seeks, closing, and deleting every topic of a prefix. It
//! exists apart from the delivery path because none of it is on a producer's or
//! consumer's hot path, and it reads the keys the scripts write without changing
//! what they mean.

use super::*;

pub(super) async fn pending(
    log: &RedisLog,
    topic: &str,
    group: &str,
    limit: usize,
) -> Result<Vec<PendingEntry>> {
    const OP: &str = "listing pending deliveries";
    let t = log.existing(topic).await?;
    log.check_open()?;
    let mut keys = vec![t.groups.clone(), t.group_key(group, "h")];
    keys.extend(t.parts.iter().map(|p| p.stream.clone()));
    let mut cmd = eval_cmd(&log.inner.scripts.pending, &keys);
    cmd.arg(group)
        .arg(limit.min(MAX_PER_CALL))
        .arg(t.visibility_ms);
    let reply = log
        .inner
        .conns
        .eval(OP, &log.inner.scripts.pending, &cmd)
        .await?;
    if let Value::Int(_) = reply {
        log.count_or_unknown_group(OP, &reply, &t, group)?;
    }
    let err = |d| log.reply_err(OP, d);
    let flat = reply::array(reply, "pending entries").map_err(err)?;
    let mut out = Vec::with_capacity(flat.len() / 6);
    for e in flat.chunks_exact(6) {
        let p = reply::uint(&e[0], "a partition").map_err(err)?;
        out.push(PendingEntry {
            offset: Offset::new(
                u32::try_from(p).map_err(|_| err(format!("partition {p}")))?,
                reply::uint(&e[1], "an offset").map_err(err)?,
            ),
            member: reply::string(e[2].clone(), "a member").map_err(err)?,
            since_ms: reply::uint(&e[3], "a time").map_err(err)?,
            deliveries: u32::try_from(reply::uint(&e[4], "a count").map_err(err)?)
                .unwrap_or(u32::MAX),
            claimable_at_ms: reply::uint(&e[5], "a time").map_err(err)?,
        });
    }
    Ok(out)
}

pub(super) async fn groups(log: &RedisLog, topic: &str) -> Result<Vec<GroupInfo>> {
    const OP: &str = "reporting groups";
    let t = log.existing(topic).await?;
    log.check_open()?;
    let c = &log.inner.conns;
    let err = |d| log.reply_err(OP, d);
    let mut smembers = redis::cmd("SMEMBERS");
    smembers.arg(&t.groups);
    let mut names: Vec<String> = reply::array(c.query(OP, &smembers).await?, "group names")
        .map_err(err)?
        .into_iter()
        .map(|v| reply::string(v, "a group name").map_err(err))
        .collect::<Result<_>>()?;
    names.sort();
    let mut out = Vec::with_capacity(names.len());
    for name in names {
        let mut keys = vec![t.group_key(&name, "m")];
        for p in &t.parts {
            keys.push(p.stream.clone());
            keys.push(p.state.clone());
        }
        let mut cmd = eval_cmd(&log.inner.scripts.group_info, &keys);
        cmd.arg(&name);
        let reply = c.eval(OP, &log.inner.scripts.group_info, &cmd).await?;
        let mut r = reply::array(reply, "parts, held and members").map_err(err)?;
        if r.len() != 3 {
            return Err(err(format!("{} results instead of 3", r.len())));
        }
        let seen = reply::array(r.pop().unwrap_or_default(), "members").map_err(err)?;
        let held = reply::array(r.pop().unwrap_or_default(), "held counts").map_err(err)?;
        let parts = reply::array(r.pop().unwrap_or_default(), "partitions").map_err(err)?;
        let mut held_by: HashMap<String, u64> = HashMap::new();
        for pair in held.chunks_exact(2) {
            let m = reply::string(pair[0].clone(), "a member").map_err(err)?;
            *held_by.entry(m).or_default() += reply::uint(&pair[1], "a count").map_err(err)?;
        }
        let mut members: Vec<MemberInfo> = Vec::with_capacity(seen.len() / 2);
        for pair in seen.chunks_exact(2) {
            let name = reply::string(pair[0].clone(), "a member").map_err(err)?;
            members.push(MemberInfo {
                pending: held_by.remove(&name).unwrap_or(0),
                last_seen_ms: reply::uint(&pair[1], "a time").map_err(err)?,
                name,
            });
        }
        // Holders the member list does not know (their entry was removed by hand).
        members.extend(held_by.into_iter().map(|(name, pending)| MemberInfo {
            name,
            last_seen_ms: 0,
            pending,
        }));
        members.sort_by(|a, b| a.name.cmp(&b.name));
        let (mut pending, mut lag, mut committed) = (0, 0, Vec::with_capacity(t.parts.len()));
        for (p, v) in parts.chunks_exact(3).enumerate() {
            committed.push(Offset::new(
                p as u32,
                reply::uint(&v[0], "an offset").map_err(err)?,
            ));
            pending += reply::uint(&v[1], "a count").map_err(err)?;
            lag += reply::uint(&v[2], "a count").map_err(err)?;
        }
        out.push(GroupInfo {
            name,
            members,
            pending,
            lag,
            committed,
        });
    }
    Ok(out)
}

pub(super) async fn topics(log: &RedisLog) -> Result<Vec<TopicInfo>> {
    const OP: &str = "reporting topics";
    log.check_open()?;
    let c = &log.inner.conns;
    let err = |d| log.reply_err(OP, d);
    let mut smembers = redis::cmd("SMEMBERS");
    smembers.arg(format!("{}:topics", log.inner.prefix));
    let mut names: Vec<String> = reply::array(c.query(OP, &smembers).await?, "topic names")
        .map_err(err)?
        .into_iter()
        .map(|v| reply::string(v, "a topic name").map_err(err))
        .collect::<Result<_>>()?;
    names.sort();
    let mut out = Vec::with_capacity(names.len());
    for name in names {
        let t = match log.existing(&name).await {
            Ok(t) => t,
            // Registered by a process that died before storing its options.
            Err(crate::Error::UnknownTopic(_)) => continue,
            Err(e) => return Err(e),
        };
        let mut keys = vec![t.groups.as_str()];
        for p in &t.parts {
            keys.extend([p.stream.as_str(), p.index.as_str(), p.state.as_str()]);
        }
        let mut cmd = eval_cmd(&log.inner.scripts.topic_info, &keys);
        cmd.arg(t.max_events).arg(t.max_bytes).arg(t.max_age_ms);
        let reply = c.eval(OP, &log.inner.scripts.topic_info, &cmd).await?;
        let mut r = reply::array(reply, "partitions and groups").map_err(err)?;
        if r.len() != 2 {
            return Err(err(format!("{} results instead of 2", r.len())));
        }
        let mut groups: Vec<String> = reply::array(r.pop().unwrap_or_default(), "groups")
            .map_err(err)?
            .into_iter()
            .map(|v| reply::string(v, "a group name").map_err(err))
            .collect::<Result<_>>()?;
        groups.sort();
        let parts = reply::array(r.pop().unwrap_or_default(), "partitions").map_err(err)?;
        let partitions = parts
            .chunks_exact(3)
            .map(|v| {
                Ok(PartitionInfo {
                    start: reply::uint(&v[0], "an offset").map_err(err)?,
                    end: reply::uint(&v[1], "an offset").map_err(err)?,
                    bytes: reply::uint(&v[2], "a size").map_err(err)?,
                })
            })
            .collect::<Result<_>>()?;
        out.push(TopicInfo {
            name,
            partitions,
            groups,
        });
    }
    Ok(out)
}

pub(super) async fn read(
    log: &RedisLog,
    topic: &str,
    partition: u32,
    from: u64,
    max: usize,
) -> Result<Vec<Record>> {
    const OP: &str = "reading";
    let t = log.existing(topic).await?;
    t.check_partition(partition)?;
    log.check_open()?;
    if max == 0 {
        return Ok(Vec::new());
    }
    let part = &t.parts[partition as usize];
    let keys = [
        part.stream.as_str(),
        part.index.as_str(),
        part.state.as_str(),
    ];
    let mut cmd = eval_cmd(&log.inner.scripts.read, &keys);
    // Offsets stay far below 2^53 (Lua numbers are doubles).
    cmd.arg(from.min(1 << 53))
        .arg(max.min(MAX_PER_CALL))
        .arg(t.max_events)
        .arg(t.max_bytes)
        .arg(t.max_age_ms);
    let reply = log
        .inner
        .conns
        .eval(OP, &log.inner.scripts.read, &cmd)
        .await?;
    let err = |d| log.reply_err(OP, d);
    let mut r = reply::array(reply, "entries and batches").map_err(err)?;
    if r.len() != 2 {
        return Err(err(format!("{} results instead of 2", r.len())));
    }
    let batches = reply::array(r.pop().unwrap_or_default(), "batches").map_err(err)?;
    let mut times: Vec<(u64, u64)> = Vec::with_capacity(batches.len());
    for b in batches {
        let m = reply::string(b, "a batch").map_err(err)?;
        let mut it = m.split(':').map(str::parse::<u64>);
        match (it.next(), it.next()) {
            (Some(Ok(base)), Some(Ok(ms))) => times.push((base, ms)),
            _ => return Err(err(format!("batch index member {m:?}"))),
        }
    }
    times.sort_unstable();
    let entries = reply::array(r.pop().unwrap_or_default(), "entries").map_err(err)?;
    let mut out = Vec::with_capacity(entries.len() / 2);
    let mut it = entries.into_iter();
    while let (Some(o), Some(e)) = (it.next(), it.next()) {
        let o = reply::uint(&o, "an offset").map_err(err)?;
        let event = codec::decode(reply::bytes(e, "an entry").map_err(err)?)
            .map_err(|e| err(format!("entry {partition}:{o} of topic {topic:?}: {e}")))?;
        let i = times.partition_point(|&(base, _)| base <= o);
        out.push(Record {
            offset: Offset::new(partition, o),
            appended_ms: if i == 0 { 0 } else { times[i - 1].1 },
            event,
        });
    }
    Ok(out)
}

pub(super) async fn offsets_at(log: &RedisLog, topic: &str, time_ms: u64) -> Result<Vec<Offset>> {
    let t = log.existing(topic).await?;
    log.check_open()?;
    let offsets = log.run_offsets_at(&t, time_ms).await?;
    Ok(offsets
        .into_iter()
        .enumerate()
        .map(|(p, o)| Offset::new(p as u32, o))
        .collect())
}

pub(super) async fn seek(log: &RedisLog, topic: &str, group: &str, to: SeekTo) -> Result<()> {
    const OP: &str = "moving a group";
    let t = log.topic_or_create(topic).await?;
    check_name("group", group)?;
    log.check_open()?;
    let n = t.parts.len();
    let targets: Vec<String> = match &to {
        SeekTo::Earliest => vec!["E".into(); n],
        SeekTo::Latest => vec!["L".into(); n],
        SeekTo::Time(ms) => log
            .run_offsets_at(&t, *ms)
            .await?
            .into_iter()
            .map(|o| o.to_string())
            .collect(),
        SeekTo::Offsets(list) => {
            let mut targets = vec!["-".to_owned(); n];
            for o in list {
                t.check_partition(o.partition)?;
                targets[o.partition as usize] = o.offset.to_string();
            }
            targets
        }
    };
    let mut keys = vec![
        t.groups.clone(),
        t.group_key(group, "o"),
        t.group_key(group, "h"),
    ];
    for p in &t.parts {
        keys.push(p.stream.clone());
        keys.push(p.state.clone());
    }
    let mut cmd = eval_cmd(&log.inner.scripts.seek, &keys);
    cmd.arg(group);
    for target in &targets {
        cmd.arg(target);
    }
    log.inner
        .conns
        .eval(OP, &log.inner.scripts.seek, &cmd)
        .await?;
    Ok(())
}

pub(super) async fn close(log: &RedisLog) -> Result<()> {
    log.inner.closed.store(true, Ordering::Release);
    log.inner.closing.send_replace(true);
    log.inner.conns.drop_idle();
    Ok(())
}

impl RedisLog {
    /// Deletes every topic under the prefix: events, groups, dedup windows and the
    /// topic list; returns how many topics were deleted. Other processes using the
    /// prefix see the topics vanish (and re-create them with their defaults on next
    /// use), so stop them first. Meant for tests and for tearing a deployment down.
    pub async fn delete_all_topics(&self) -> Result<usize> {
        const OP: &str = "deleting the log";
        self.check_open()?;
        let c = &self.inner.conns;
        let err = |d| self.reply_err(OP, d);
        let registry = format!("{}:topics", self.inner.prefix);
        let mut smembers = redis::cmd("SMEMBERS");
        smembers.arg(&registry);
        let names = reply::array(c.query(OP, &smembers).await?, "topic names").map_err(err)?;
        let deleted = names.len();
        for name in names {
            let name = reply::string(name, "a topic name").map_err(err)?;
            let tag = format!("{}:{{{name}}}", self.inner.prefix);
            let mut smembers = redis::cmd("SMEMBERS");
            smembers.arg(format!("{tag}:groups"));
            let groups = reply::array(c.query(OP, &smembers).await?, "group names").map_err(err)?;
            let mut keys = ["meta", "groups", "d", "d0", "d1"]
                .map(|w| format!("{tag}:{w}"))
                .to_vec();
            for g in groups {
                let g = reply::string(g, "a group name").map_err(err)?;
                keys.extend(["o", "h", "m"].map(|w| format!("{tag}:g:{g}:{w}")));
            }
            // The partition count may be unknown (options never stored): every
            // partition a topic can have is tried, in slices.
            let partitions = match self.existing(&name).await {
                Ok(t) => t.partitions(),
                Err(crate::Error::UnknownTopic(_)) => 4096,
                Err(e) => return Err(e),
            };
            for p in 0..partitions {
                let s = format!("{tag}:p{p}");
                keys.extend(["i", "s"].map(|w| format!("{s}:{w}")));
                keys.push(s);
                if keys.len() >= 500 || p + 1 == partitions {
                    let mut unlink = redis::cmd("UNLINK");
                    unlink.arg(&keys);
                    c.query(OP, &unlink).await?;
                    keys.clear();
                }
            }
            let mut srem = redis::cmd("SREM");
            srem.arg(&registry).arg(&name);
            c.query(OP, &srem).await?;
            self.inner
                .topics
                .write()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&name);
        }
        Ok(deleted)
    }

    async fn run_offsets_at(&self, t: &Topic, time_ms: u64) -> Result<Vec<u64>> {
        const OP: &str = "finding offsets by time";
        let keys: Vec<&str> = t
            .parts
            .iter()
            .flat_map(|p| [p.stream.as_str(), p.index.as_str(), p.state.as_str()])
            .collect();
        let mut cmd = eval_cmd(&self.inner.scripts.offsets, &keys);
        cmd.arg(time_ms);
        let reply = self
            .inner
            .conns
            .eval(OP, &self.inner.scripts.offsets, &cmd)
            .await?;
        let err = |d| self.reply_err(OP, d);
        let list = reply::array(reply, "one offset per partition").map_err(err)?;
        if list.len() != t.parts.len() {
            return Err(err(format!(
                "{} offsets for {} partitions",
                list.len(),
                t.parts.len()
            )));
        }
        list.iter()
            .map(|v| reply::uint(v, "an offset").map_err(err))
            .collect()
    }
}

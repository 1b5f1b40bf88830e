//! Polling, acknowledging and nacking on JetStream: pull requests to each
//! partition's consumer, the member that holds a partition while it has pending
//! events, redelivery after the visibility timeout, and dead letters (driven by the
//! `MAX_DELIVERIES` advisory, with ids that are the same in every process). It
//! exists apart because delivery is where the at-least-once and per-key ordering
//! guarantees are kept, and that logic reads best in one place.

use super::*;

pub(super) async fn poll(
    log: &NatsLog,
    topic: &str,
    group: &str,
    member: &str,
    max: usize,
    wait: Duration,
) -> Result<Polled> {
    log.check_open()?;
    check_name("member", member)?;
    let t = log.topic(topic, None, true).await?;
    let g = log.group(&t, group).await?;
    lock(&g.state).members.insert(member.to_owned(), now_ms());
    if max == 0 {
        return Ok(Polled::new());
    }
    let deadline = Instant::now() + wait;
    // Listening before the first look, so a publish in between is not missed.
    let mut wake = if wait.is_zero() {
        None
    } else {
        Some(
            log.inner
                .client
                .subscribe(t.wildcard.clone())
                .await
                .map_err(|e| request_error(format!("waiting on topic {topic:?}"), e))?,
        )
    };
    loop {
        log.check_open()?;
        if !g.ready.load(Ordering::Acquire) {
            log.group(&t, group).await?;
        }
        log.prune_if_due(&t, &g).await?;
        log.dead_letter_exhausted(&t, &g).await?;
        let mut claims = Claims {
            group: &g,
            parts: Vec::new(),
        };
        let fetched = match log.fetch(&t, &g, member, max, &mut claims).await {
            Ok(fetched) => fetched,
            Err(e) => {
                // What the server delivered to this poll is lost with it.
                claims.lost(t.options.visibility_timeout + LOST_MARGIN);
                return Err(e);
            }
        };
        if !fetched.is_empty() {
            // The claims are released after the delivery is recorded.
            return Ok(log.deliver(&t, &g, member, fetched));
        }
        drop(claims);
        let now = Instant::now();
        if now >= deadline {
            return Ok(Polled::new());
        }
        let until = log.next_wake(&g, now).min(deadline);
        match wake.as_mut() {
            Some(sub) => {
                tokio::select! {
                    got = sub.next() => if got.is_none() { wake = None },
                    () = tokio::time::sleep_until(until) => {}
                }
            }
            None => tokio::time::sleep_until(until).await,
        }
    }
}

pub(super) async fn ack(log: &NatsLog, topic: &str, group: &str, ids: &[Offset]) -> Result<usize> {
    log.check_open()?;
    let t = log.topic(topic, None, false).await?;
    let g = log.group_entry(&t, group)?;
    let n = t.options.partitions;
    // Per partition, the subjects to acknowledge on.
    let mut subjects: Vec<Vec<String>> = vec![Vec::new(); n as usize];
    let mut counted = 0;
    {
        let mut st = lock(&g.state);
        for id in ids.iter().filter(|id| id.partition < n) {
            let part = &mut st.parts[id.partition as usize];
            let seq = id.offset + 1;
            match part.held.remove(&seq) {
                Some(h) => {
                    counted += 1;
                    subjects[id.partition as usize].push(h.reply.to_string());
                }
                None => subjects[id.partition as usize].push(constructed_ack(
                    &t.streams[id.partition as usize],
                    &g.consumer,
                    seq,
                )),
            }
            if part.held.is_empty() {
                part.owner = None;
            }
        }
    }
    log.send_acks(subjects, Bytes::from_static(b"+ACK")).await?;
    Ok(counted)
}

pub(super) async fn nack(
    log: &NatsLog,
    topic: &str,
    group: &str,
    ids: &[Offset],
    delay: Duration,
) -> Result<usize> {
    log.check_open()?;
    let t = log.topic(topic, None, false).await?;
    let g = log.group_entry(&t, group)?;
    let n = t.options.partitions;
    let body = if delay.is_zero() {
        Bytes::from_static(b"-NAK")
    } else {
        Bytes::from(format!("-NAK {{\"delay\": {}}}", delay.as_nanos()))
    };
    let now = Instant::now();
    let mut subjects: Vec<Vec<String>> = vec![Vec::new(); n as usize];
    let mut counted = 0;
    {
        let mut st = lock(&g.state);
        for id in ids.iter().filter(|id| id.partition < n) {
            if let Some(h) = st.parts[id.partition as usize]
                .held
                .get_mut(&(id.offset + 1))
            {
                counted += 1;
                h.claimable = now + delay;
                h.claimable_ms = now_ms() + delay.as_millis() as u64;
                subjects[id.partition as usize].push(h.reply.to_string());
            }
        }
    }
    log.send_acks(subjects, body).await?;
    Ok(counted)
}

impl NatsLog {
    /// Asks the group's consumers for up to `max` messages without waiting, on the
    /// partitions it can claim for `member`.
    async fn fetch(
        &self,
        t: &Arc<Topic>,
        g: &Arc<Group>,
        member: &str,
        max: usize,
        claims: &mut Claims<'_>,
    ) -> Result<Vec<Fetched>> {
        let now = Instant::now();
        let mut candidates: VecDeque<u32> = (0..t.options.partitions).collect();
        let first = g.next.fetch_add(1, Ordering::Relaxed) % candidates.len();
        candidates.rotate_left(first);
        let client = &self.inner.client;
        let inbox = client.new_inbox();
        let what = || format!("polling topic {:?} for group {:?}", t.name, g.name);
        let mut sub = client
            .subscribe(format!("{inbox}.*"))
            .await
            .map_err(|e| request_error(what(), e))?;
        let mut out = Vec::new();
        // Partitions that filled their share and may have more.
        let mut more: Vec<u32> = Vec::new();
        // Per partition, the highest sequence received; and the partitions whose
        // requests went unanswered.
        let mut seen: HashMap<u32, u64> = HashMap::new();
        let mut unanswered: Vec<u32> = Vec::new();
        'rounds: loop {
            let remaining = max - out.len();
            if remaining == 0 {
                break;
            }
            let mut round: Vec<u32> = std::mem::take(&mut more);
            {
                let mut st = lock(&g.state);
                while round.len() < remaining {
                    let Some(p) = candidates.pop_front() else {
                        break;
                    };
                    let part = &mut st.parts[p as usize];
                    if part.free_for(member, now) {
                        part.fetching = true;
                        claims.parts.push(p);
                        round.push(p);
                    }
                }
            }
            round.truncate(remaining);
            if round.is_empty() {
                break;
            }
            let mut asked: HashMap<u32, (usize, usize)> = HashMap::new();
            for (i, &p) in round.iter().enumerate() {
                let share = remaining / round.len() + usize::from(i < remaining % round.len());
                let body = json!({
                    "batch": share,
                    "no_wait": true,
                    "expires": NO_WAIT_EXPIRY.as_nanos() as u64,
                });
                client
                    .publish_with_reply(
                        format!(
                            "$JS.API.CONSUMER.MSG.NEXT.{}.{}",
                            t.streams[p as usize], g.consumer
                        ),
                        format!("{inbox}.{p}"),
                        Bytes::from(body.to_string()),
                    )
                    .await
                    .map_err(|e| request_error(what(), e))?;
                asked.insert(p, (share, 0));
            }
            // Past the answer timeout, only what this client has already received.
            let mut late = false;
            while !asked.is_empty() {
                // The server ends each request within its expiry, or drops it silently
                // (see PULL_ANSWER_TIMEOUT).
                let next = if late {
                    sub.next().now_or_never()
                } else {
                    tokio::time::timeout(
                        NO_WAIT_EXPIRY + self.inner.opts.request_timeout.min(PULL_ANSWER_TIMEOUT),
                        sub.next(),
                    )
                    .await
                    .ok()
                };
                let msg = match next {
                    Some(Some(msg)) => msg,
                    Some(None) => {
                        return Err(request_error(what(), "the connection was closed"));
                    }
                    None if late => {
                        tracing::debug!(
                            topic = %t.name, group = %g.name, partitions = ?asked.keys(),
                            "expired pull requests left unanswered"
                        );
                        unanswered.extend(asked.keys());
                        break 'rounds;
                    }
                    None => {
                        late = true;
                        continue;
                    }
                };
                let Some(p) = reply_index(&msg.subject).map(|p| p as u32) else {
                    continue;
                };
                let Some(&(share, got)) = asked.get(&p) else {
                    continue;
                };
                match self.receive(t, g, p, msg).await {
                    Received::Message(f) => {
                        let high = seen.entry(p).or_default();
                        *high = (*high).max(f.seq);
                        out.push(*f);
                        if got + 1 >= share {
                            asked.remove(&p);
                            more.push(p);
                        } else {
                            asked.insert(p, (share, got + 1));
                        }
                    }
                    Received::Skipped(seq) => {
                        let high = seen.entry(p).or_default();
                        *high = (*high).max(seq);
                        asked.insert(p, (share, got + 1));
                    }
                    Received::End => {
                        asked.remove(&p);
                    }
                    Received::Ignored => {}
                }
            }
        }
        {
            let mut st = lock(&g.state);
            for (&p, &seq) in &seen {
                let part = &mut st.parts[p as usize];
                part.seen = part.seen.max(seq);
            }
        }
        if !unanswered.is_empty() {
            // Those partitions stay claimed until what is in flight to them is settled.
            claims.parts.retain(|p| !unanswered.contains(p));
            tokio::spawn(
                self.clone()
                    .settle_late(t.clone(), g.clone(), sub, unanswered),
            );
        }
        Ok(out)
    }

    /// After pull requests went unanswered past the answer timeout (a busy machine):
    /// the server may have delivered to them all the same. Keeps listening on the
    /// poll's inbox until each partition has received what its consumer delivered (its
    /// last delivered sequence), hands what arrives late back with `-NAK`, so the
    /// server delivers it again at once and before anything newer, and only then lets
    /// the partitions be asked again. A partition whose deliveries do not arrive within
    /// [`LATE_GRACE`] waits for their redelivery after the visibility timeout instead,
    /// so later events of its keys never overtake them. Deliveries by other processes
    /// look the same from here, which only delays the partition.
    async fn settle_late(self, t: Arc<Topic>, g: Arc<Group>, mut sub: Subscriber, parts: Vec<u32>) {
        let _claimed = Claims {
            group: &g,
            parts: parts.clone(),
        };
        let infos = join_all(
            parts
                .iter()
                .map(|&p| self.consumer_info(&t, &g.consumer, p)),
        )
        .await;
        // Per partition still owed a delivery, the last sequence its consumer delivered.
        let mut owed: HashMap<u32, u64> = HashMap::new();
        let mut lost: Vec<u32> = Vec::new();
        {
            let st = lock(&g.state);
            for (&p, info) in parts.iter().zip(infos) {
                match info {
                    Ok(Some(info)) if info.delivered.stream_seq > st.parts[p as usize].seen => {
                        owed.insert(p, info.delivered.stream_seq);
                    }
                    Ok(_) => {}
                    Err(e) => {
                        tracing::warn!(
                            topic = %t.name, group = %g.name, partition = p, error = %e,
                            "could not tell whether a delivery is in flight"
                        );
                        lost.push(p);
                    }
                }
            }
        }
        let deadline = Instant::now() + LATE_GRACE;
        let mut late: Vec<Vec<String>> = vec![Vec::new(); t.options.partitions as usize];
        while !owed.is_empty() {
            let Ok(Some(msg)) = tokio::time::timeout_at(deadline, sub.next()).await else {
                break;
            };
            let Some(p) = reply_index(&msg.subject).map(|p| p as u32) else {
                continue;
            };
            let Some(&last) = owed.get(&p) else {
                continue;
            };
            let seq = match self.receive(&t, &g, p, msg).await {
                Received::Message(f) => {
                    late[p as usize].push(f.reply.to_string());
                    f.seq
                }
                Received::Skipped(seq) => seq,
                Received::End => {
                    // The request is over: what else was delivered went elsewhere.
                    owed.remove(&p);
                    continue;
                }
                Received::Ignored => continue,
            };
            let part = &mut lock(&g.state).parts[p as usize];
            part.seen = part.seen.max(seq);
            if seq >= last {
                owed.remove(&p);
            }
        }
        drop(sub);
        let handed_back: Vec<u32> = (0..t.options.partitions)
            .filter(|&p| !late[p as usize].is_empty())
            .collect();
        if !handed_back.is_empty() {
            tracing::debug!(
                topic = %t.name, group = %g.name, partitions = ?handed_back,
                "deliveries that arrived after their poll are handed back"
            );
        }
        if let Err(e) = self.send_acks(late, Bytes::from_static(b"-NAK")).await {
            tracing::warn!(
                topic = %t.name, group = %g.name, error = %e,
                "could not hand back deliveries that arrived after their poll"
            );
            lost.extend(handed_back);
        }
        lost.extend(owed.keys());
        let until = Instant::now() + t.options.visibility_timeout + LOST_MARGIN;
        let mut st = lock(&g.state);
        for p in lost {
            let part = &mut st.parts[p as usize];
            tracing::warn!(
                topic = %t.name, group = %g.name, partition = p, received = part.seen,
                "a delivery was lost in flight; the partition waits for its redelivery"
            );
            part.lost_until = Some(until);
        }
    }

    /// Interprets one answer to a pull request.
    async fn receive(&self, t: &Topic, g: &Group, p: u32, msg: Message) -> Received {
        if let Some(status) = msg.status
            && status.as_u16() != 200
        {
            return match status.as_u16() {
                100 => Received::Ignored,
                404 | 408 => Received::End,
                code => {
                    // 409 (consumer deleted, too many waiting requests) or 503 (no
                    // consumer): check the consumers again on the next poll.
                    tracing::debug!(
                        topic = %t.name, group = %g.name, partition = p, code,
                        description = msg.description.as_deref().unwrap_or(""),
                        "pull request ended"
                    );
                    g.ready.store(false, Ordering::Release);
                    Received::End
                }
            };
        }
        let Some(reply) = msg.reply else {
            return Received::Ignored;
        };
        let Some(info) = parse_ack_subject(reply.as_str()) else {
            tracing::warn!(subject = %reply, "delivery without a JetStream reply subject");
            return Received::Ignored;
        };
        match decode_event(msg.payload) {
            Ok(event) => Received::Message(Box::new(Fetched {
                partition: p,
                seq: info.stream_seq,
                deliveries: info.deliveries,
                stored_ms: info.stored_ms,
                reply,
                event,
            })),
            Err(reason) => {
                tracing::error!(
                    stream = %t.streams[p as usize], seq = info.stream_seq, %reason,
                    "message is not a Baton event; terminating its delivery"
                );
                if let Err(e) = self.ack_sync(reply.to_string(), "+TERM").await {
                    tracing::warn!(error = %e, "could not terminate the delivery");
                }
                Received::Skipped(info.stream_seq)
            }
        }
    }

    /// Records what a poll delivered and shapes it into slices.
    fn deliver(&self, t: &Topic, g: &Group, member: &str, mut fetched: Vec<Fetched>) -> Polled {
        fetched.sort_by_key(|f| (f.partition, f.seq));
        let now = Instant::now();
        let since_ms = now_ms();
        let vis = t.options.visibility_timeout;
        let claimable = now + vis;
        let claimable_ms = since_ms + vis.as_millis() as u64;
        let mut polled = Polled::new();
        let mut st = lock(&g.state);
        let mut run: Vec<Event> = Vec::new();
        let mut head: Option<(u32, u64, u32, u64)> = None; // partition, first seq, deliveries, stored
        let flush = |polled: &mut Polled, head: Option<(u32, u64, u32, u64)>, run: Vec<Event>| {
            if let Some((p, seq, deliveries, stored)) = head {
                let len = run.len();
                let chunk = Chunk::new(seq - 1, stored, run);
                polled.push(Slice::new(p, deliveries, Arc::new(chunk), 0..len));
            }
        };
        for f in fetched {
            let part = &mut st.parts[f.partition as usize];
            part.held.insert(
                f.seq,
                Held {
                    reply: f.reply,
                    member: member.to_owned(),
                    since_ms,
                    deliveries: f.deliveries,
                    claimable,
                    claimable_ms,
                },
            );
            part.owner = Some((member.to_owned(), claimable));
            let continues = head.is_some_and(|(p, first, d, _)| {
                p == f.partition && d == f.deliveries && first + run.len() as u64 == f.seq
            });
            if !continues {
                flush(&mut polled, head.take(), std::mem::take(&mut run));
                head = Some((f.partition, f.seq, f.deliveries, f.stored_ms));
            }
            run.push(f.event);
        }
        flush(&mut polled, head, run);
        polled
    }

    /// When a waiting poll should look again, before its own deadline.
    fn next_wake(&self, g: &Group, now: Instant) -> Instant {
        let mut wake = now + self.inner.opts.recheck_interval;
        let st = lock(&g.state);
        for part in &st.parts {
            if let Some(t) = part.lost_until.filter(|&t| t > now) {
                wake = wake.min(t);
            }
            for h in part.held.values() {
                if h.claimable > now {
                    // Just after the server's own deadline for it.
                    wake = wake.min(h.claimable + Duration::from_millis(2));
                } else if now.duration_since(h.claimable) < Duration::from_secs(2) {
                    // Expired here but not redelivered yet: the server's timer may run a
                    // little behind ours.
                    wake = wake.min(now + Duration::from_millis(20));
                }
            }
        }
        wake
    }

    /// Now and then, drops the records of expired deliveries that were acknowledged
    /// elsewhere, so a long-running process does not keep them.
    async fn prune_if_due(&self, t: &Topic, g: &Group) -> Result<()> {
        let now = Instant::now();
        let due = {
            let st = lock(&g.state);
            st.pruned
                .is_none_or(|at| now.duration_since(at) >= PRUNE_INTERVAL)
                && st
                    .parts
                    .iter()
                    .any(|part| part.held.values().any(|h| h.claimable <= now))
        };
        if !due {
            return Ok(());
        }
        let infos =
            join_all((0..t.options.partitions).map(|p| self.consumer_info(t, &g.consumer, p)))
                .await
                .into_iter()
                .collect::<Result<Vec<_>>>()?;
        lock(&g.state).prune(&infos);
        Ok(())
    }

    /// Dead-letters the deliveries this process made that have used up their
    /// deliveries and expired.
    async fn dead_letter_exhausted(&self, t: &Topic, g: &Group) -> Result<()> {
        let max = t.options.max_deliveries;
        if max == 0 {
            return Ok(());
        }
        let now = Instant::now();
        let due: Vec<(u32, u64, u32, Subject)> = {
            let mut st = lock(&g.state);
            let mut due = Vec::new();
            for (p, part) in st.parts.iter_mut().enumerate() {
                let seqs: Vec<u64> = part
                    .held
                    .iter()
                    .filter(|(_, h)| h.deliveries >= max && h.claimable <= now)
                    .map(|(&s, _)| s)
                    .collect();
                for s in seqs {
                    if let Some(h) = part.held.remove(&s) {
                        due.push((p as u32, s, h.deliveries, h.reply));
                    }
                }
            }
            due
        };
        for (p, seq, deliveries, reply) in due {
            self.dead_letter(t, &g.name, p, seq, deliveries, Some(reply))
                .await?;
        }
        Ok(())
    }

    /// Publishes message `seq` of partition `p` to the dead-letter topic, then
    /// acknowledges it in the group.
    async fn dead_letter(
        &self,
        t: &Topic,
        group: &str,
        p: u32,
        seq: u64,
        deliveries: u32,
        reply: Option<Subject>,
    ) -> Result<()> {
        let stream = &t.streams[p as usize];
        let offset = Offset::new(p, seq - 1);
        match self.direct_get(stream, seq, None).await? {
            Some(stored) => match decode_event(stored.payload) {
                Ok(mut e) => {
                    tracing::warn!(
                        topic = %t.name, group, %offset, deliveries,
                        "event exhausted its deliveries; moving it to the dead-letter topic"
                    );
                    let original = e.id;
                    e.id = dead_letter_id(&t.name, group, p, seq);
                    let reason = crate::rules::dead_letter_reason(t.options.max_deliveries);
                    e.headers.extend([
                        ("dlq.reason".to_owned(), Bytes::from(reason)),
                        ("dlq.topic".to_owned(), Bytes::from(t.name.clone())),
                        ("dlq.group".to_owned(), Bytes::from(group.to_owned())),
                        ("dlq.offset".to_owned(), Bytes::from(offset.to_string())),
                        (
                            "dlq.deliveries".to_owned(),
                            Bytes::from(deliveries.to_string()),
                        ),
                        ("dlq.event_id".to_owned(), Bytes::from(original.to_string())),
                    ]);
                    let dlq = self.topic(&dead_letter_topic(&t.name), None, true).await?;
                    self.publish_to(&dlq, vec![e]).await?;
                }
                Err(reason) => tracing::error!(
                    %stream, seq, %reason, "exhausted message is not a Baton event; dropping it"
                ),
            },
            None => tracing::warn!(
                topic = %t.name, group, %offset,
                "event exhausted its deliveries but retention dropped it first"
            ),
        }
        let subject = match reply {
            Some(r) => r.to_string(),
            None => constructed_ack(stream, &encode_name(group), seq),
        };
        self.ack_sync(subject, "+ACK").await
    }

    async fn on_max_deliveries(&self, body: &[u8]) -> Result<()> {
        let a: Advisory = serde_json::from_slice(body)?;
        let Some((topic, p)) = self.parse_stream_name(&a.stream) else {
            return Ok(()); // another prefix's
        };
        let Some(group) = decode_name(&a.consumer) else {
            return Ok(());
        };
        let t = match self.topic(&topic, None, false).await {
            Ok(t) => t,
            Err(crate::Error::UnknownTopic(_)) => return Ok(()),
            Err(e) => return Err(e),
        };
        if p >= t.options.partitions || a.stream_seq == 0 {
            return Ok(());
        }
        let g = lock(&t.groups).get(&group).cloned();
        let reply = g.and_then(|g| {
            lock(&g.state).parts[p as usize]
                .held
                .remove(&a.stream_seq)
                .map(|h| h.reply)
        });
        let deliveries = u32::try_from(a.deliveries).unwrap_or(u32::MAX);
        self.dead_letter(&t, &group, p, a.stream_seq, deliveries, reply)
            .await
    }

    /// Sends per-partition acknowledgements: all but the last of each partition
    /// without waiting, the last as a request, so the answer means the consumer has
    /// applied them all (it applies one connection's acknowledgements in order).
    async fn send_acks(&self, subjects: Vec<Vec<String>>, body: Bytes) -> Result<()> {
        let client = &self.inner.client;
        let results = join_all(subjects.into_iter().filter(|s| !s.is_empty()).map(
            |mut subjects| {
                let body = body.clone();
                async move {
                    let last = subjects.pop().unwrap_or_default();
                    for s in subjects {
                        client
                            .publish(s, body.clone())
                            .await
                            .map_err(|e| request_error("acknowledging", e))?;
                    }
                    match self.request(last.clone(), body).await {
                        Ok(_) => Ok(()),
                        Err(e) if e.kind() == RequestErrorKind::TimedOut => Err(Error::Timeout {
                            what: format!("acknowledging via {last}"),
                            timeout: self.inner.opts.request_timeout,
                        }
                        .into()),
                        Err(e) => Err(request_error(format!("acknowledging via {last}"), e)),
                    }
                }
            },
        ))
        .await;
        results.into_iter().collect()
    }
}

/// How long the server keeps a no-wait pull request. It answers at once when nothing
/// at all is queued, but holds the request while messages wait for a nack delay or
/// have used up their deliveries; this bounds that wait, so that a poll without a wait
/// does not take events that only become due later.
const NO_WAIT_EXPIRY: Duration = Duration::from_millis(20);

/// How often a poll drops records of deliveries acknowledged by other processes.
const PRUNE_INTERVAL: Duration = Duration::from_secs(30);

/// How long past its expiry a no-wait pull request may stay unanswered before the
/// poll counts it as over. The server (2.9) drops a request that expired while it was
/// busy delivering to others without answering it, and it never delivers to an expired
/// request, so past this margin nothing more can arrive for it.
const PULL_ANSWER_TIMEOUT: Duration = Duration::from_millis(200);

/// How long a poll's inbox keeps listening, after its answer timeout, for what the
/// server delivered to it: on a busy machine the answer can sit in this process's
/// buffers for a while.
const LATE_GRACE: Duration = Duration::from_secs(5);

/// How long past the visibility timeout a partition that lost a delivery in flight
/// waits: the server's redelivery timer may run a little behind ours.
const LOST_MARGIN: Duration = Duration::from_secs(1);

/// Partitions a poll has claimed for its pull requests, released when it is dropped.
struct Claims<'a> {
    group: &'a Group,
    parts: Vec<u32>,
}

impl Claims<'_> {
    /// A poll that failed midway may have been sent events it never recorded: its
    /// partitions wait until those come back.
    fn lost(&self, wait: Duration) {
        let until = Instant::now() + wait;
        let mut st = lock(&self.group.state);
        for &p in &self.parts {
            st.parts[p as usize].lost_until = Some(until);
        }
    }
}

impl Drop for Claims<'_> {
    fn drop(&mut self) {
        let mut st = lock(&self.group.state);
        for &p in &self.parts {
            st.parts[p as usize].fetching = false;
        }
    }
}

/// One message a poll received.
struct Fetched {
    partition: u32,
    seq: u64,
    deliveries: u32,
    stored_ms: u64,
    reply: Subject,
    event: Event,
}

/// The id of the dead letter of one event in one group: the same in every process,
/// so that the dead-letter topic's dedup window stores it once.
fn dead_letter_id(topic: &str, group: &str, partition: u32, seq: u64) -> EventId {
    EventId::derived(format!("dlq\0{topic}\0{group}\0{partition}\0{seq}").as_bytes())
}

/// An acknowledgement subject for a message this process has no delivery of. The
/// server finds the pending message by its stream sequence; a consumer sequence of 0
/// never moves the acknowledgement floor by itself.
fn constructed_ack(stream: &str, consumer: &str, seq: u64) -> String {
    format!("$JS.ACK.{stream}.{consumer}.1.{seq}.0.0.0")
}

enum Received {
    Message(Box<Fetched>),
    /// A delivery (of this stream sequence) that counts against the request but
    /// yields no event.
    Skipped(u64),
    /// The request is over.
    End,
    Ignored,
}

pub(super) async fn advisory_loop(inner: Weak<Inner>, mut sub: Subscriber) {
    while let Some(msg) = sub.next().await {
        let Some(inner) = inner.upgrade() else {
            break;
        };
        if inner.closed.load(Ordering::Acquire) {
            break;
        }
        let log = NatsLog { inner };
        if let Err(e) = log.on_max_deliveries(&msg.payload).await {
            tracing::warn!(error = %e, "could not dead-letter after a max-deliveries advisory");
        }
    }
}

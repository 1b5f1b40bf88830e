//! Publishing to JetStream: the batch checked against the limits, split by
//! partition and sent as pipelined publishes (dedup by `Nats-Msg-Id`), waiting for
//! every acknowledgement before it returns the offsets. It exists apart because it
//! is the hot path of every producer.

use super::*;

/// How often one publish sends its unacknowledged events again after the
/// connection dropped, before it fails.
const MAX_RESENDS: u32 = 3;

pub(super) async fn publish(log: &NatsLog, topic: &str, batch: Vec<Event>) -> Result<Vec<Offset>> {
    log.check_open()?;
    check_name("topic", topic)?;
    rules::check_batch(&log.inner.opts.log.limits, &batch)?;
    if batch.is_empty() {
        return Ok(Vec::new());
    }
    let t = log.topic(topic, None, true).await?;
    log.publish_to(&t, batch).await
}

impl NatsLog {
    pub(super) async fn publish_to(&self, t: &Topic, batch: Vec<Event>) -> Result<Vec<Offset>> {
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        let what = || format!("publishing to topic {:?}", t.name);
        let client = &self.inner.client;
        let n = u64::from(t.options.partitions);
        let dedup = dedup_enabled(&t.options);
        let inbox = client.new_inbox();
        let mut acks = client
            .subscribe(format!("{inbox}.*"))
            .await
            .map_err(|e| request_error(what(), e))?;
        let parts: Vec<u32> = batch
            .iter()
            .map(|e| (key_hash(&e.key) % n) as u32)
            .collect();
        let mut offsets: Vec<Option<Offset>> = vec![None; batch.len()];
        let window = self.inner.opts.publish_window.max(1);
        // One buffer for the bodies of the whole batch, each split off it.
        let mut buf = BytesMut::with_capacity(batch.iter().map(encoded_len).sum());
        let (mut sent, mut acked) = (0, 0);
        let mut dropped = self.inner.disconnects.subscribe();
        let mut resent = 0;
        let send = |i: usize, buf: &mut BytesMut| {
            let e = &batch[i];
            let subject = t.subjects[parts[i] as usize].clone();
            let reply = format!("{inbox}.{i}");
            let body = encode_event(buf, e);
            async move {
                if dedup {
                    let mut headers = HeaderMap::new();
                    headers.insert("Nats-Msg-Id", e.id.to_string().as_str());
                    client
                        .publish_with_reply_and_headers(subject, reply, headers, body)
                        .await
                } else {
                    client.publish_with_reply(subject, reply, body).await
                }
            }
        };
        while acked < batch.len() {
            while sent < batch.len() && sent - acked < window {
                send(sent, &mut buf)
                    .await
                    .map_err(|e| request_error(what(), e))?;
                sent += 1;
            }
            let next = tokio::select! {
                next = tokio::time::timeout(self.inner.opts.request_timeout, acks.next()) => next,
                _ = dropped.changed() => {
                    // What was sent and not acknowledged may be lost with the
                    // connection: sent again (the same ids: stored once), or,
                    // without dedup, left to the caller.
                    if !dedup || resent == MAX_RESENDS {
                        return Err(request_error(
                            what(),
                            format!(
                                "the connection to the server dropped ({acked} of {} events \
                                 acknowledged; publish the batch again with the same ids)",
                                batch.len()
                            ),
                        ));
                    }
                    resent += 1;
                    for i in (0..sent).filter(|&i| offsets[i].is_none()) {
                        send(i, &mut buf)
                            .await
                            .map_err(|e| request_error(what(), e))?;
                    }
                    continue;
                }
            };
            let msg = match next {
                Ok(Some(msg)) => msg,
                Ok(None) => return Err(request_error(what(), "the connection was closed")),
                Err(_) => {
                    return Err(Error::Timeout {
                        what: format!(
                            "{} ({acked} of {} events acknowledged; publish the batch again \
                             with the same ids, dedup keeps what was stored)",
                            what(),
                            batch.len()
                        ),
                        timeout: self.inner.opts.request_timeout,
                    }
                    .into());
                }
            };
            let Some(i) = reply_index(&msg.subject).filter(|&i| i < batch.len()) else {
                continue;
            };
            if offsets[i].is_some() {
                continue;
            }
            if let Some(status) = msg.status
                && status.as_u16() != 200
            {
                let reason = if status == StatusCode::NO_RESPONDERS {
                    format!(
                        "no stream stores subject {} (was stream {} deleted?)",
                        t.subjects[parts[i] as usize], t.streams[parts[i] as usize]
                    )
                } else {
                    format!(
                        "status {}: {}",
                        status.as_u16(),
                        msg.description.as_deref().unwrap_or("")
                    )
                };
                return Err(request_error(what(), reason));
            }
            match serde_json::from_slice::<Response<PubAck>>(&msg.payload) {
                Ok(Response::Ok(ack)) if ack.sequence > 0 => {
                    if ack.duplicate {
                        tracing::debug!(topic = %t.name, seq = ack.sequence, "duplicate publish");
                    }
                    offsets[i] = Some(Offset::new(parts[i], ack.sequence - 1));
                }
                Ok(Response::Ok(_)) => {
                    return Err(request_error(
                        what(),
                        "publish acknowledged with sequence 0",
                    ));
                }
                Ok(Response::Err { error }) => return Err(api_error(what(), error)),
                Err(e) => return Err(request_error(what(), format!("unexpected answer: {e}"))),
            }
            acked += 1;
        }
        Ok(offsets.into_iter().flatten().collect())
    }
}

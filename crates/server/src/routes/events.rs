//! `/api/v1/events` and `/api/v1/topics/...`: publish, consumer-group poll
//! and ack, and what the log holds (topics, groups, a partition's events).

use std::time::Duration;

use axum::Extension;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, Request, State};
use axum::http::StatusCode;
use axum::response::Response;
use baton_api as api;
use baton_events::{Event, EventId, EventLog as _, Offset};
use bytes::Bytes;
use serde::Deserialize;
use serde_json::Value;

use crate::AppState;
use crate::body::{self, Json};
use crate::error::ApiError;
use crate::tokens::Caller;

use super::tenancy;
use super::{ApiResult, St, query, reply};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct TopicQuery {
    topic: Option<String>,
}

/// `POST /api/v1/events` as parsed here: payloads stay raw JSON text (no tree is
/// built and serialized again), the shape is [`api::PublishRequest`]'s.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PublishBody<'a> {
    topic: Option<String>,
    #[serde(borrow)]
    events: Vec<EventRaw<'a>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EventRaw<'a> {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    key: String,
    #[serde(borrow, default)]
    payload: Option<&'a serde_json::value::RawValue>,
    #[serde(default)]
    headers: std::collections::BTreeMap<String, String>,
    id: Option<String>,
}

pub(super) async fn publish(
    State(state): St,
    caller: Option<Extension<Caller>>,
    q: Result<Query<TopicQuery>, QueryRejection>,
    req: Request,
) -> ApiResult<Response> {
    let q = query(q)?;
    let bytes = body::json_bytes(req, &()).await?;
    let req: PublishBody<'_> = body::parse(&bytes)?;
    let topic = match (q.topic, req.topic) {
        (Some(a), Some(b)) if a != b => {
            return Err(ApiError::invalid(
                "$.topic",
                format!("`?topic={a}` and the body's `topic: {b}` disagree"),
            ));
        }
        (Some(t), _) | (None, Some(t)) => t,
        (None, None) => state.options.engine.signals_topic.clone(),
    };
    let tenant = tenancy::tenant(&caller);
    if tenant.is_some() && topic != state.options.engine.signals_topic {
        tenancy::topic(tenant, &topic)?;
    }
    if let Some(why) = reserved(&topic, &state.options.engine) {
        return Err(ApiError::Forbidden(format!(
            "`{topic}` is {why}, which only the server publishes to; publish to `{}` (the \
             signals `wait_for` tasks and questions wait for) or a topic of your own",
            state.options.engine.signals_topic
        )));
    }
    let n = req.events.len();
    if n == 0 {
        return Err(ApiError::invalid(
            "$.events",
            "`events` must hold at least one event",
        ));
    }
    if n > state.options.max_batch_events {
        return Err(ApiError::PayloadTooLarge(format!(
            "{n} events in one batch, over the limit of {}; publish in smaller batches",
            state.options.max_batch_events
        )));
    }
    if let Some(Extension(caller)) = &caller {
        state.limits.events(caller, n)?;
    }
    if let Some(tenant) = tenant
        && topic == state.options.engine.signals_topic
    {
        let runs = req
            .events
            .iter()
            .map(|e| e.headers.get("baton.run").map(String::as_str));
        tenancy::signal_targets(&state, tenant, runs).await?;
    }
    let mut batch = Vec::with_capacity(n);
    for (i, e) in req.events.into_iter().enumerate() {
        let payload = Bytes::copy_from_slice(e.payload.map_or("null", |p| p.get()).as_bytes());
        let mut event = Event::new(e.kind, e.key, payload);
        if let Some(id) = &e.id {
            let id = id.parse::<EventId>().map_err(|_| {
                ApiError::invalid(&format!("$.events[{i}].id"), "an event id is 32 hex digits")
            })?;
            event = event.with_id(id);
        }
        for (k, v) in e.headers {
            event = event.with_header(k, v);
        }
        batch.push(event);
    }
    let offsets = state.log.publish(&topic, batch).await?;
    state.metrics.published(offsets.len() as u64);
    Ok(reply(
        StatusCode::OK,
        &api::PublishResponse {
            topic,
            offsets: offsets
                .into_iter()
                .map(|o| api::OffsetRef {
                    partition: o.partition,
                    offset: o.offset,
                })
                .collect(),
        },
    ))
}

pub(crate) fn event_out(offset: Offset, e: &Event, deliveries: Option<u32>) -> api::EventOut {
    api::EventOut {
        partition: offset.partition,
        offset: offset.offset,
        id: e.id.to_string(),
        kind: e.kind.to_string(),
        key: String::from_utf8_lossy(&e.key).into_owned(),
        timestamp_ms: e.timestamp_ms,
        headers: e
            .headers
            .iter()
            .map(|(k, v)| (k.clone(), String::from_utf8_lossy(v).into_owned()))
            .collect(),
        payload: serde_json::from_slice(&e.payload)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&e.payload).into_owned())),
        deliveries,
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct PollQuery {
    member: Option<String>,
    max: Option<usize>,
    wait_ms: Option<u64>,
}

pub(super) async fn poll(
    State(state): St,
    Path((topic, group)): Path<(String, String)>,
    caller: Option<Extension<Caller>>,
    q: Result<Query<PollQuery>, QueryRejection>,
) -> ApiResult<Response> {
    may_use(&topic, caller.as_ref())?;
    let q = query(q)?;
    let max = q.max.unwrap_or(100);
    if !(1..=10_000).contains(&max) {
        return Err(ApiError::invalid(
            "max",
            "`max` must be between 1 and 10000",
        ));
    }
    let wait =
        Duration::from_millis(q.wait_ms.unwrap_or(0).min(30_000)).min(state.options.long_poll_max);
    let member = q.member.unwrap_or_else(|| "http".into());
    let polled = tokio::select! {
        p = state.log.poll(&topic, &group, &member, max, wait) => p?,
        _ = state.stopping.cancelled() => Default::default(),
    };
    let events: Vec<_> = polled
        .iter()
        .map(|d| event_out(d.offset, d.event, Some(d.deliveries)))
        .collect();
    let again = polled.iter().filter(|d| d.deliveries > 1).count();
    state.metrics.delivered(events.len() as u64, again as u64);
    Ok(reply(StatusCode::OK, &api::PollResponse { events }))
}

pub(super) async fn ack(
    State(state): St,
    Path((topic, group)): Path<(String, String)>,
    caller: Option<Extension<Caller>>,
    Json(req): Json<api::AckRequest>,
) -> ApiResult<Response> {
    may_use(&topic, caller.as_ref())?;
    let ids: Vec<Offset> = req
        .offsets
        .iter()
        .map(|o| Offset::new(o.partition, o.offset))
        .collect();
    let acknowledged = state.log.ack(&topic, &group, &ids).await?;
    Ok(reply(StatusCode::OK, &api::AckResponse { acknowledged }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct PendingQuery {
    limit: Option<usize>,
}

/// `GET /api/v1/topics/{topic}/groups/{group}/pending`: who holds what.
pub(super) async fn pending(
    State(state): St,
    Path((topic, group)): Path<(String, String)>,
    caller: Option<Extension<Caller>>,
    q: Result<Query<PendingQuery>, QueryRejection>,
) -> ApiResult<Response> {
    may_use(&topic, caller.as_ref())?;
    let limit = query(q)?.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::invalid(
            "limit",
            "`limit` must be between 1 and 1000",
        ));
    }
    // Asking about a group must not create its topic or the group.
    let known = state
        .log
        .topics()
        .await?
        .into_iter()
        .any(|t| t.name == topic && t.groups.contains(&group));
    if !known {
        return Err(ApiError::NotFound(format!(
            "topic `{topic}` has no consumer group `{group}`"
        )));
    }
    let mut entries = state.log.pending(&topic, &group, limit).await?;
    entries.sort_by_key(|e| (e.since_ms, e.offset.partition, e.offset.offset));
    let pending = entries
        .into_iter()
        .map(|e| api::PendingOut {
            partition: e.offset.partition,
            offset: e.offset.offset,
            member: e.member,
            since_ms: e.since_ms,
            deliveries: e.deliveries,
            claimable_at_ms: e.claimable_at_ms,
        })
        .collect();
    Ok(reply(StatusCode::OK, &api::PendingResponse { pending }))
}

/// `POST /api/v1/topics/{topic}/redrive`: the oldest letters of a dead-letter
/// topic back to their topic ([`baton_events::redrive`]).
pub(super) async fn redrive(
    State(state): St,
    Path(dlq): Path<String>,
    caller: Option<Extension<Caller>>,
    Json(req): Json<api::RedriveRequest>,
) -> ApiResult<Response> {
    may_use(&dlq, caller.as_ref())?;
    if !(1..=100_000).contains(&req.max) {
        return Err(ApiError::invalid(
            "$.max",
            "`max` must be between 1 and 100000",
        ));
    }
    let Some(topic) = dlq.strip_suffix(baton_events::DEAD_LETTER_SUFFIX) else {
        return Err(ApiError::NotFound(format!(
            "no dead-letter topic `{dlq}`: the dead letters of `{dlq}` are in `{dlq}.dlq`, \
             which is what is redriven (to `{dlq}`)"
        )));
    };
    if let Some(why) = reserved(topic, &state.options.engine) {
        return Err(ApiError::Forbidden(format!(
            "`{topic}` is {why}, which only the server publishes to: its dead letters stay where they are"
        )));
    }
    if !state.log.topics().await?.iter().any(|t| t.name == dlq) {
        return Err(ApiError::NotFound(format!("no topic named `{dlq}`")));
    }
    let done = baton_events::redrive(&*state.log, &dlq, req.max).await?;
    state.metrics.published(done.moved);
    let remaining = state
        .log
        .groups(&dlq)
        .await?
        .into_iter()
        .find(|g| g.name == baton_events::REDRIVE_GROUP)
        .map_or(0, |g| g.lag + g.pending);
    tracing::info!(topic = %dlq, moved = done.moved, remaining, "dead letters redriven");
    Ok(reply(
        StatusCode::OK,
        &api::RedriveResponse {
            topic: done.topic,
            moved: done.moved,
            remaining,
        },
    ))
}

/// `GET /api/v1/topics`: every topic with its partitions, and each group's
/// lag, pending events and members.
pub(super) async fn topics(
    State(state): St,
    caller: Option<Extension<Caller>>,
) -> ApiResult<Response> {
    let tenant = tenancy::tenant(&caller);
    let mut topics = Vec::new();
    for t in state.log.topics().await? {
        if tenant.is_some_and(|tenant| !tenancy::owns_topic(tenant, &t.name)) {
            continue;
        }
        let groups = state
            .log
            .groups(&t.name)
            .await?
            .into_iter()
            .map(|g| api::Group {
                name: g.name,
                lag: g.lag,
                pending: g.pending,
                members: g
                    .members
                    .into_iter()
                    .map(|m| api::Member {
                        name: m.name,
                        last_seen_ms: m.last_seen_ms,
                        pending: m.pending,
                    })
                    .collect(),
            })
            .collect();
        topics.push(api::Topic {
            events: t.events(),
            bytes: t.partitions.iter().map(|p| p.bytes).sum(),
            partitions: t
                .partitions
                .iter()
                .zip(0u32..)
                .map(|(p, partition)| api::Partition {
                    partition,
                    start: p.start,
                    end: p.end,
                    bytes: p.bytes,
                })
                .collect(),
            name: t.name,
            groups,
        });
    }
    topics.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(reply(StatusCode::OK, &api::Topics { topics }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ReadQuery {
    partition: Option<u32>,
    from: Option<u64>,
    max: Option<usize>,
}

/// `GET /api/v1/topics/{topic}/events`: retained events of one partition
/// from an offset, outside any group (nothing is delivered or acknowledged):
/// what a dead-letter topic holds, say.
pub(super) async fn read(
    State(state): St,
    Path(topic): Path<String>,
    caller: Option<Extension<Caller>>,
    q: Result<Query<ReadQuery>, QueryRejection>,
) -> ApiResult<Response> {
    may_use(&topic, caller.as_ref())?;
    let q = query(q)?;
    read_partition(&state, &topic, q.partition.unwrap_or(0), q.from, q.max).await
}

/// `GET /api/v1/audit`: the audit trail from an offset (admins only, by the
/// route's scope).
pub(super) async fn audit(
    State(state): St,
    q: Result<Query<AuditQuery>, QueryRejection>,
) -> ApiResult<Response> {
    let q = query(q)?;
    if state.audit.level() == crate::audit::Level::Off {
        return Err(ApiError::NotFound(
            "the audit trail is off (`[server] audit = \"off\"`)".into(),
        ));
    }
    read_partition(&state, crate::audit::TOPIC, 0, q.from, q.max).await
}

/// Query of `GET /api/v1/audit`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct AuditQuery {
    from: Option<u64>,
    max: Option<usize>,
}

/// Whether a caller may read, consume or redrive `topic`: the audit trail
/// (a topic of the log) is the admins', whatever route reaches it; a
/// tenant's caller reaches its tenant's topics only.
fn may_use(topic: &str, caller: Option<&Extension<Caller>>) -> ApiResult<()> {
    let caller = caller.map(|c| &c.0);
    if topic == crate::audit::TOPIC && !caller.is_none_or(Caller::is_admin) {
        return Err(ApiError::Forbidden(
            "the audit trail is read with `GET /api/v1/audit` and an admin token".into(),
        ));
    }
    tenancy::topic(caller.and_then(Caller::tenant), topic)
}

async fn read_partition(
    state: &AppState,
    topic: &str,
    partition: u32,
    from: Option<u64>,
    max: Option<usize>,
) -> ApiResult<Response> {
    let max = max.unwrap_or(100);
    if !(1..=1000).contains(&max) {
        return Err(ApiError::invalid("max", "`max` must be between 1 and 1000"));
    }
    let info = state
        .log
        .topics()
        .await?
        .into_iter()
        .find(|t| t.name == topic)
        .ok_or_else(|| ApiError::NotFound(format!("no topic `{topic}`")))?;
    let Some(p) = info.partitions.get(partition as usize) else {
        return Err(ApiError::NotFound(format!(
            "topic `{topic}` has no partition {partition}: it has {}, numbered from 0",
            info.partitions.len()
        )));
    };
    let records = state
        .log
        .read(topic, partition, from.unwrap_or(0), max)
        .await?;
    let next = records
        .last()
        .map(|r| r.offset.offset + 1)
        .filter(|n| *n < p.end);
    let events = records
        .iter()
        .map(|r| event_out(r.offset, &r.event, None))
        .collect();
    Ok(reply(
        StatusCode::OK,
        &api::ReadResponse {
            events,
            next_from: next,
        },
    ))
}

/// Why a caller may not publish to `topic`: it is the engine's run events
/// (which streams and run state trust), a dead-letter topic, or another of
/// the `baton.` namespace; the signals topic is open to callers.
fn reserved(topic: &str, engine: &baton_engine::Options) -> Option<&'static str> {
    if topic == engine.signals_topic {
        None
    } else if topic == engine.topic {
        Some("the engine's run events")
    } else if topic.ends_with(".dlq") {
        Some("a dead-letter topic")
    } else if topic.starts_with("baton.") {
        Some("in the server's `baton.` namespace")
    } else {
        None
    }
}

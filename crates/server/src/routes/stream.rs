//! `GET /api/v1/executions/{id}/events`: the run's events from the topic
//! `baton.runs` (key = the run id) as Server-Sent Events. Each SSE `id` is the
//! event's log offset, so a client reconnecting with `Last-Event-ID` resumes
//! after it. The stream ends after the run's final `baton.run` event.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use baton_engine::store::RunStatus;
use baton_events::{EventLog as _, key_hash};

use crate::AppState;
use crate::error::ApiError;

/// Records read per step.
const BATCH: usize = 512;
/// Pause when caught up.
const IDLE: Duration = Duration::from_millis(25);

struct Cursor {
    state: Arc<AppState>,
    run: baton_engine::store::RunId,
    key: String,
    partition: u32,
    from: u64,
    queue: std::collections::VecDeque<SseEvent>,
    done: bool,
    /// When the engine was first seen reporting the run ended while the log had
    /// nothing more: its final events are published off the scheduler's loop, so
    /// they may land a little later.
    over_since: Option<std::time::Instant>,
}

/// How long to wait for a run's final event after the engine reports it ended.
const GRACE: Duration = Duration::from_secs(3);

pub(super) async fn stream(
    State(state): State<Arc<AppState>>,
    caller: Option<axum::Extension<crate::tokens::Caller>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    origin: crate::forward::Origin,
) -> Result<Response, ApiError> {
    let run = super::executions::run_id(&id)?;
    // Unknown runs (and another tenant's) are 404 before the stream starts; a
    // run another instance drives is streamed by that instance.
    match crate::forward::on_owner(&state, run, origin, || state.engine.status(run)).await? {
        Err(forwarded) => return Ok(forwarded),
        Ok(v)
            if !super::tenancy::sees(
                super::tenancy::tenant(&caller),
                v.summary.tenant.as_deref(),
            ) =>
        {
            return Err(ApiError::NotFound(format!("no execution {run}")));
        }
        Ok(_) => {}
    }
    let topic = &state.options.engine.topic;
    let partitions = partitions(&state, topic).await;
    let key = run.to_string();
    let partition = (key_hash(key.as_bytes()) % u64::from(partitions.max(1))) as u32;
    let from = match headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
    {
        Some(last) => last + 1,
        None => {
            // Start near the run's creation rather than at the partition's oldest event.
            let created = state.executions.get(run).map(|e| e.created_ms);
            match created {
                Some(ms) => state
                    .log
                    .offsets_at(topic, ms.saturating_sub(1_000))
                    .await
                    .ok()
                    .and_then(|o| o.into_iter().find(|o| o.partition == partition))
                    .map_or(0, |o| o.offset),
                None => 0,
            }
        }
    };
    let cursor = Cursor {
        state,
        run,
        key,
        partition,
        from,
        queue: Default::default(),
        done: false,
        over_since: None,
    };
    let stream = futures_util::stream::unfold(cursor, |mut c| async move {
        loop {
            if let Some(e) = c.queue.pop_front() {
                return Some((Ok::<_, Infallible>(e), c));
            }
            if c.done {
                return None;
            }
            step(&mut c).await;
        }
    });
    Ok(Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response())
}

async fn partitions(state: &AppState, topic: &str) -> u32 {
    if let Ok(topics) = state.log.topics().await
        && let Some(t) = topics.iter().find(|t| t.name == topic)
    {
        return t.partitions.len() as u32;
    }
    state.options.log.log.topic_defaults.partitions
}

/// Reads the next records into the queue; ends the stream after the final event,
/// when the run has ended and nothing more is in the log, or on shutdown.
async fn step(c: &mut Cursor) {
    let topic = c.state.options.engine.topic.clone();
    let records = match c.state.log.read(&topic, c.partition, c.from, BATCH).await {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(error = %e, "reading run events");
            c.done = true;
            return;
        }
    };
    if records.is_empty() {
        // Caught up: if the run is over (or forgotten), nothing more will come.
        let over = match c.state.engine.status(c.run).await {
            Ok(v) => matches!(
                v.summary.status,
                RunStatus::Completed | RunStatus::Failed | RunStatus::Cancelled
            ),
            Err(_) => true,
        };
        if over {
            let since = *c.over_since.get_or_insert_with(std::time::Instant::now);
            if since.elapsed() >= GRACE {
                c.done = true;
                return;
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(IDLE) => {}
            _ = c.state.stopping.cancelled() => c.done = true,
        }
        return;
    }
    push(c, records);
}

fn push(c: &mut Cursor, records: Vec<baton_events::Record>) {
    for r in records {
        c.from = r.offset.offset + 1;
        if r.event.key.as_ref() != c.key.as_bytes() {
            continue;
        }
        let out = super::events::event_out(r.offset, &r.event, None);
        let last = &*r.event.kind == "baton.run"
            && matches!(
                out.payload.get("status").and_then(|s| s.as_str()),
                Some("completed" | "failed" | "cancelled")
            );
        let data = serde_json::to_string(&out).unwrap_or_default();
        c.queue.push_back(
            SseEvent::default()
                .id(r.offset.offset.to_string())
                .event(&*r.event.kind)
                .data(data),
        );
        if last {
            c.done = true;
            return;
        }
    }
}

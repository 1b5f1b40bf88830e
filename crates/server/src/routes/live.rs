//! `GET /api/v1/agents` and `GET /api/v1/stats`: what the server is doing now
//! (the console's Agents and Live pages).

use std::collections::BTreeMap;

use axum::Extension;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use baton_api as api;

use super::{ApiResult, St, reply, tenancy};

/// Agents listed at most.
const MAX_AGENTS: usize = 1000;
/// Leases listed at most.
const MAX_LEASES: usize = 200;

pub(super) async fn agents(
    State(state): St,
    caller: Option<Extension<crate::tokens::Caller>>,
) -> ApiResult<Response> {
    tenancy::across_tenants(&caller, "the agents page")?;
    let stats = state.engine.stats().await?;
    let pool = state.options.engine.workers.snapshot(MAX_LEASES);
    let operator = |name: &str| state.options.agents.iter().any(|a| a.name == name);
    let mut agents: BTreeMap<String, api::AgentOut> = BTreeMap::new();
    for a in stats.agents {
        agents.insert(
            a.name.clone(),
            api::AgentOut {
                operator: operator(&a.name),
                name: a.name,
                kind: a.kind,
                in_flight: a.in_flight,
                concurrency: a.concurrency,
                queued: a.queued,
                calls: a.calls,
                failures: a.failures,
                breaker: a.breaker.to_owned(),
                ..Default::default()
            },
        );
    }
    for (name, waiting, leased) in pool.agents {
        // A worker agent no run has called since the server started.
        let a = agents.entry(name.clone()).or_insert_with(|| api::AgentOut {
            operator: operator(&name),
            name,
            kind: "worker".into(),
            breaker: "closed".into(),
            ..Default::default()
        });
        a.waiting = waiting as u64;
        a.leased = leased as u64;
    }
    let truncated = agents.len() > MAX_AGENTS;
    let workers = pool
        .workers
        .into_iter()
        .map(|w| api::WorkerOut {
            name: w.name,
            agents: w.agents,
            polling: w.polling,
            leases: w.leases,
            last_seen_ms: w.last_seen_ms,
        })
        .collect();
    let leases = pool
        .leases
        .into_iter()
        .map(|l| api::LeaseOut {
            agent: l.agent,
            worker: l.worker,
            run: l.run,
            task: l.task,
            attempt: l.attempt,
            expires_ms: l.expires_ms,
        })
        .collect();
    #[cfg(feature = "postgres")]
    let instances = match &state.cluster {
        Some(c) => Some(c.instances().await?),
        None => None,
    };
    #[cfg(not(feature = "postgres"))]
    let instances = None;
    Ok(reply(
        StatusCode::OK,
        &api::AgentsResponse {
            agents: agents.into_values().take(MAX_AGENTS).collect(),
            truncated,
            workers,
            leases,
            leased: pool.leased as u64,
            instances,
        },
    ))
}

pub(super) async fn stats(State(state): St) -> ApiResult<Response> {
    Ok(reply(
        StatusCode::OK,
        &api::StatsResponse {
            interval_ms: state.options.sample_interval.as_millis() as u64,
            samples: state.history.samples(),
        },
    ))
}

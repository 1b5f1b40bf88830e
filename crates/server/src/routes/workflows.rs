//! `/api/v1/workflows`: create, list, get and plan workflows.

use std::sync::Arc;

use axum::Extension;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;
use baton_api as api;
use baton_model::{Format, SubWorkflow};
use serde::Deserialize;

use crate::AppState;
use crate::body::{self};
use crate::catalog::Entry;
use crate::error::ApiError;
use crate::tokens::Caller;

use super::tenancy::{self, sees};
use super::{ApiResult, St, limit, parse_id, query, reply};

/// Workflow `id`, if a caller of `tenant` sees it (another tenant's is 404).
pub(super) async fn workflow(
    state: &AppState,
    tenant: Option<&str>,
    id: &str,
) -> ApiResult<Arc<Entry>> {
    let n = parse_id("workflow", id)?;
    let found = state.catalog.get(n);
    #[cfg(feature = "postgres")]
    let found = match (found, &state.cluster) {
        (None, Some(cluster)) => cluster.fetch_workflow(&state.catalog, n).await?,
        (found, _) => found,
    };
    found
        .filter(|e| sees(tenant, e.tenant.as_deref()))
        .ok_or_else(|| ApiError::NotFound(format!("no workflow {id}")))
}

fn info(e: &Entry) -> api::WorkflowInfo {
    api::WorkflowInfo {
        id: format!("{:016x}", e.id),
        version: e.version,
        name: e.name.clone(),
        tenant: e.tenant.as_deref().map(str::to_string),
        created_ms: e.created_ms,
        plan: e.summary.clone(),
    }
}

pub(super) async fn create_workflow(
    State(state): St,
    caller: Option<Extension<Caller>>,
    headers: HeaderMap,
    req: Request,
) -> ApiResult<Response> {
    let tenant = tenancy::tenant(&caller).map(str::to_string);
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/json");
    let media = ct
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    let format = match media.as_str() {
        "application/json" | "text/json" => Some(Format::Json),
        m if m.ends_with("+json") => Some(Format::Json),
        "application/yaml" | "application/x-yaml" | "text/yaml" | "text/x-yaml" => {
            Some(Format::Yaml)
        }
        // curl's `-d` without a content type: JSON or YAML, told by the content.
        m if body::curl_default(m) => None,
        _ => {
            return Err(ApiError::UnsupportedMediaType(format!(
                "expected `Content-Type: application/json` or `application/yaml`, got `{ct}`: {}",
                body::SEND_JSON
            )));
        }
    };
    let body = body::bytes(req, &()).await?;
    let state2 = state.clone();
    let entry = tokio::task::spawn_blocking(move || {
        state2
            .catalog
            .create(body.to_vec(), format, tenant.as_deref(), |checked| {
                admit(&state2, checked)
            })
    })
    .await
    .map_err(|e| ApiError::Internal(e.to_string()))??;
    #[cfg(feature = "postgres")]
    if let Some(cluster) = &state.cluster {
        cluster.share_workflow(&state.catalog, &entry).await?;
    }
    let warnings = state
        .catalog
        .compiled(&entry)?
        .checked
        .warnings
        .diagnostics
        .iter()
        .map(crate::catalog::field_error)
        .collect();
    let created = api::WorkflowCreated {
        id: format!("{:016x}", entry.id),
        version: entry.version,
        name: entry.name.clone(),
        plan: entry.summary.clone(),
        warnings,
    };
    let mut res = reply(StatusCode::CREATED, &created);
    if let Ok(v) = header::HeaderValue::from_str(&format!("/api/v1/workflows/{}", created.id)) {
        res.headers_mut().insert(header::LOCATION, v);
    }
    Ok(res)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ListQuery {
    limit: Option<usize>,
    cursor: Option<String>,
}

pub(super) async fn list_workflows(
    State(state): St,
    caller: Option<Extension<Caller>>,
    q: Result<Query<ListQuery>, QueryRejection>,
) -> ApiResult<Response> {
    let q = query(q)?;
    let limit = limit(q.limit)?;
    let cursor = match &q.cursor {
        None => None,
        // Only what `next_cursor` holds: lowercase hex digits (no sign, no case games).
        Some(c) => Some(
            c.bytes()
                .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
                .then(|| usize::from_str_radix(c, 16).ok())
                .flatten()
                .filter(|_| c.len() <= 15)
                .ok_or_else(|| {
                    ApiError::invalid("cursor", "`cursor` is not one this server gave")
                })?,
        ),
    };
    #[cfg(feature = "postgres")]
    if let Some(cluster) = &state.cluster {
        cluster.sync_catalog(&state.catalog).await?;
    }
    let (items, next) = state.catalog.list(tenancy::tenant(&caller), limit, cursor);
    Ok(reply(
        StatusCode::OK,
        &api::Page {
            items: items.iter().map(|e| info(e)).collect(),
            next_cursor: next.map(|n| format!("{n:x}")),
        },
    ))
}

pub(super) async fn get_workflow(
    State(state): St,
    caller: Option<Extension<Caller>>,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let e = workflow(&state, tenancy::tenant(&caller), &id).await?;
    let compiled = state.catalog.compiled(&e)?;
    Ok(reply(
        StatusCode::OK,
        &api::WorkflowDetail {
            info: info(&e),
            document: redacted(compiled.document.clone()),
        },
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct PlanQuery {
    schedule: Option<bool>,
}

pub(super) async fn get_plan(
    State(state): St,
    caller: Option<Extension<Caller>>,
    Path(id): Path<String>,
    q: Result<Query<PlanQuery>, QueryRejection>,
) -> ApiResult<Response> {
    let schedule = query(q)?.schedule.unwrap_or(false);
    let e = workflow(&state, tenancy::tenant(&caller), &id).await?;
    let compiled = state.catalog.compiled(&e)?;
    Ok(reply(
        StatusCode::OK,
        &plan_detail(&compiled.plan, e.summary.clone(), schedule),
    ))
}

/// A plan as the API shows it: figures, stages, redundant edges, and each
/// task's schedule when asked.
pub(super) fn plan_detail(
    plan: &baton_plan::Plan,
    summary: api::PlanSummary,
    schedule: bool,
) -> api::PlanDetail {
    let name = |t: u32| plan.name(t).to_string();
    let secs = |us: u64| us as f64 / 1e6;
    api::PlanDetail {
        schedule: schedule.then(|| {
            plan.timings()
                .map(|(t, timing)| api::Scheduled {
                    id: name(t),
                    stage: plan.stage_of(t).map_or(0, |s| s + 1),
                    earliest_start: secs(timing.earliest_start),
                    latest_start: secs(timing.latest_start),
                    slack: secs(timing.slack),
                })
                .collect()
        }),
        summary,
        stages: plan
            .stages()
            .map(|s| s.iter().map(|&t| name(t)).collect())
            .collect(),
        redundant_edges: plan
            .redundancy()
            .edges()
            .iter()
            .map(|&(a, b)| [name(a), name(b)])
            .collect(),
    }
}

/// Refuses a workflow that defines agents the server's policy does not let
/// callers define (`command`, `http`): 403 `agent-not-allowed`, each agent with
/// the setting that would allow it.
/// The workflow with its `name:` sub-workflows replaced by the catalog's (the
/// newest version unless one is given), at every depth; `None` when it runs
/// none. `file:` sub-workflows are refused: they would read the server's disk.
pub(super) fn resolved(
    state: &AppState,
    workflow: &baton_model::Workflow,
) -> ApiResult<Option<baton_model::Workflow>> {
    if workflow.tasks.iter().all(|t| t.sub_workflows().is_empty()) {
        return Ok(None);
    }
    let mut wf = workflow.clone();
    let mut find = |sub: &SubWorkflow, _: &()| match sub {
        SubWorkflow::Catalog { name, version } => {
            let e = state
                .catalog
                .find(workflow.tenant.as_deref(), name, *version)
                .ok_or_else(|| format!("the catalog has no {}", sub.describe()))?;
            let compiled = state.catalog.compiled(&e).map_err(|e| e.to_string())?;
            Ok((
                format!("{name} v{}", e.version),
                compiled.checked.workflow.clone(),
                (),
            ))
        }
        other => Err(format!(
            "its {} would be read from the server's disk: post the child to the catalog and name it (`workflow: {{ name: … }}`), or write it inline",
            other.describe()
        )),
    };
    let top = workflow
        .name
        .clone()
        .unwrap_or_else(|| "the workflow".into());
    baton_model::resolve_children(&mut wf, &top, &(), baton_engine::MAX_DEPTH, &mut find)
        .map_err(|e| ApiError::invalid("$.tasks", e))?;
    Ok(Some(wf))
}

/// Whether the server runs `workflow` as posted: its sub-workflows can be
/// found (among its tenant's), a tenant's waits only on its own topics, and it
/// (children included) defines only agents callers may define.
pub(super) fn admit(state: &AppState, checked: &baton_model::Checked) -> ApiResult<()> {
    let resolved = resolved(state, &checked.workflow)?;
    if let Some(tenant) = checked.workflow.tenant.as_deref() {
        foreign_topics(
            resolved.as_ref().unwrap_or(&checked.workflow),
            tenant,
            &state.options.engine.signals_topic,
        )?;
    }
    let refused = state.options.workflow_agents.check(
        resolved.as_ref().unwrap_or(&checked.workflow),
        &state.options.agents,
    );
    if refused.is_empty() {
        return Ok(());
    }
    let names: Vec<String> = refused.iter().map(|r| format!("`{}`", r.agent)).collect();
    Err(ApiError::AgentNotAllowed {
        detail: format!(
            "the workflow defines agents this server does not let callers define: {}",
            names.join(", ")
        ),
        errors: refused
            .into_iter()
            .map(|r| api::FieldError {
                code: "agent-not-allowed".into(),
                path: r.path.clone(),
                hint: Some(match r.kind {
                    "command" => format!(
                        "use an agent the operator defined (`[agents.{}]` in the server's config replaces this one), or ask the operator to set `[server] allow_workflow_command_agents = true`",
                        r.agent
                    ),
                    _ => format!(
                        "use an agent the operator defined (`[agents.{}]` in the server's config replaces this one), or ask the operator to list the URL's prefix in `[server] allow_workflow_http_urls`",
                        r.agent
                    ),
                }),
                message: r.message,
                location: None,
            })
            .collect(),
    })
}

/// Refuses a tenant's workflow whose tasks (children's included) wait on a
/// topic that is not the tenant's (`<tenant>.…`) or the signals topic
/// (where a tenant's events name the run they are for).
fn foreign_topics(wf: &baton_model::Workflow, tenant: &str, signals: &str) -> ApiResult<()> {
    for (i, task) in wf.tasks.iter().enumerate() {
        if let Some(topic) = task.wait_for.as_ref().and_then(|w| w.topic.as_deref())
            && topic != signals
            && !tenancy::owns_topic(tenant, topic)
        {
            return Err(ApiError::Forbidden(format!(
                "task `{}` waits on topic `{topic}` (at $.tasks[{i}].wait_for.topic): a workflow of tenant `{tenant}` waits on its own topics, named `{tenant}.…`",
                task.id
            )));
        }
        for (_, sub) in task.sub_workflows() {
            if let SubWorkflow::Inline(child) = sub {
                foreign_topics(child, tenant, signals)?;
            }
        }
    }
    Ok(())
}

/// A workflow document as it is shown: the values of every agent's
/// `headers` and `env` (credentials live there) replaced by `***`, in
/// inline sub-workflows and teams too.
pub(super) fn redacted(mut document: serde_json::Value) -> serde_json::Value {
    fn walk(v: &mut serde_json::Value) {
        match v {
            serde_json::Value::Object(map) => {
                if let Some(serde_json::Value::Object(agents)) = map.get_mut("agents") {
                    for agent in agents.values_mut() {
                        for secret in ["headers", "env"] {
                            if let Some(serde_json::Value::Object(pairs)) = agent.get_mut(secret) {
                                for value in pairs.values_mut() {
                                    *value = serde_json::Value::String("***".into());
                                }
                            }
                        }
                    }
                }
                map.values_mut().for_each(walk);
            }
            serde_json::Value::Array(items) => items.iter_mut().for_each(walk),
            _ => {}
        }
    }
    walk(&mut document);
    document
}

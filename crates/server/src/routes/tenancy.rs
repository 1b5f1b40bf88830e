//! Tenants: what a token of a tenant may reach. Its tenant's workflows and
//! runs (another tenant's answer 404, as if they did not exist), topics
//! named `<tenant>.…`, the signals topic for its own runs, and its
//! tenant's `worker` calls; nothing that spans tenants (the agents and
//! workers page, the server's figures, the audit trail). A caller without
//! a tenant (the admin token, a token made without `--tenant`, anyone on a
//! server without auth) reaches everything, as before tenants.

use axum::Extension;
use baton_engine::store::RunId;

use crate::AppState;
use crate::error::{ApiError, ApiResult};
use crate::forward::{Origin, on_owner};
use crate::tokens::Caller;

/// The caller's tenant, if it acts for one.
pub(super) fn tenant(caller: &Option<Extension<Caller>>) -> Option<&str> {
    caller.as_deref().and_then(Caller::tenant)
}

/// Whether a caller of `tenant` sees what belongs to `owner`.
pub(super) fn sees(tenant: Option<&str>, owner: Option<&str>) -> bool {
    tenant.is_none_or(|t| owner == Some(t))
}

/// Refuses a caller of a tenant on a route whose answer spans tenants.
pub(super) fn across_tenants(caller: &Option<Extension<Caller>>, what: &str) -> ApiResult<()> {
    match tenant(caller) {
        None => Ok(()),
        Some(t) => Err(ApiError::Forbidden(format!(
            "{what} spans every tenant, and this token acts for tenant `{t}`: it needs a token without a tenant"
        ))),
    }
}

/// Whether a caller of `tenant` may use `topic`: its own (`<tenant>.…`)
/// only. The signals topic is checked per event ([`signal_targets`]).
pub(super) fn topic(tenant: Option<&str>, topic: &str) -> ApiResult<()> {
    match tenant {
        Some(t) if !owns_topic(t, topic) => Err(ApiError::Forbidden(format!(
            "a token of tenant `{t}` reaches the topics named `{t}.…`, not `{topic}`"
        ))),
        _ => Ok(()),
    }
}

/// Whether `topic` is one of `tenant`'s.
pub(crate) fn owns_topic(tenant: &str, topic: &str) -> bool {
    topic
        .strip_prefix(tenant)
        .is_some_and(|rest| rest.len() > 1 && rest.starts_with('.'))
}

/// Answers `Some(response)` when the call was forwarded to the instance
/// that drives `run` (which checks the caller itself); `Ok(None)` when the
/// caller may go on here; 404 when `run` is another tenant's.
pub(super) async fn own_run(
    state: &AppState,
    tenant: Option<&str>,
    run: RunId,
    origin: &Origin,
) -> ApiResult<Option<axum::response::Response>> {
    let Some(tenant) = tenant else {
        return Ok(None);
    };
    let owner = on_owner(state, run, origin.clone(), || async {
        state.engine.status(run).await.map(|v| v.summary.tenant)
    })
    .await?;
    match owner {
        Err(forwarded) => Ok(Some(forwarded)),
        Ok(owner) if owner.as_deref() == Some(tenant) => Ok(None),
        Ok(_) => Err(ApiError::NotFound(format!("no execution {run}"))),
    }
}

/// A caller of a tenant publishes to the signals topic for its own runs:
/// every event names one (`baton.run` header), which must be its tenant's;
/// an event without one would reach every tenant's waiting tasks.
pub(super) async fn signal_targets<'a>(
    state: &AppState,
    tenant: &str,
    runs: impl Iterator<Item = Option<&'a str>>,
) -> ApiResult<()> {
    let mut checked: Vec<&str> = Vec::new();
    for (i, run) in runs.enumerate() {
        let Some(run) = run else {
            return Err(ApiError::invalid(
                &format!("$.events[{i}].headers"),
                format!(
                    "a token of tenant `{tenant}` signals its own runs: set header `baton.run` to the execution id"
                ),
            ));
        };
        if checked.contains(&run) {
            continue;
        }
        let theirs = match run.parse::<RunId>() {
            Ok(id) => state
                .engine
                .status(id)
                .await
                .is_ok_and(|v| v.summary.tenant.as_deref() == Some(tenant)),
            Err(_) => false,
        };
        if !theirs {
            return Err(ApiError::NotFound(format!(
                "no execution {run} (at $.events[{i}].headers.baton.run)"
            )));
        }
        checked.push(run);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tenant_owns_the_topics_under_its_name_only() {
        assert!(owns_topic("acme", "acme.orders"));
        assert!(owns_topic("acme", "acme.orders.dlq"));
        assert!(!owns_topic("acme", "acme"));
        assert!(!owns_topic("acme", "acme."));
        assert!(!owns_topic("acme", "acme-x.orders"));
        assert!(!owns_topic("acme", "acmex.orders"));
        assert!(!owns_topic("acme", "bolt.acme.orders"));
        assert!(!owns_topic("acme", "baton.runs"));
        assert!(sees(None, Some("acme")) && sees(None, None));
        assert!(sees(Some("acme"), Some("acme")));
        assert!(!sees(Some("acme"), Some("bolt")) && !sees(Some("acme"), None));
    }
}

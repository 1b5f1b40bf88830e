//! The middleware: request ids and the access log, bearer-token auth, and
//! the request metrics and timeout.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::error::ApiError;
use crate::request_id::{CURRENT, REQUEST_ID, given_id, new_id};
use crate::tokens::{Caller, Refusal, Scope};

use super::St;

/// Checks the bearer token against the scope of the route the request
/// matched (`/metrics`: `metrics`), and hands the caller on for the audit
/// trail.
pub(super) async fn auth(State(state): St, req: Request, next: Next) -> Response {
    // With mTLS between instances, only an instance forwards.
    #[cfg(feature = "postgres")]
    if req.headers().contains_key(crate::cluster::FORWARDED)
        && state
            .options
            .tls
            .as_ref()
            .is_some_and(|t| t.client_ca.is_some())
        && req.extensions().get::<crate::tls::PeerVerified>().is_none()
    {
        return ApiError::Forbidden(
            "a forwarded call comes from an instance, with a certificate of the server's `tls_client_ca`"
                .into(),
        )
        .into_response();
    }
    // Without tokens there is nothing to look up: a server without auth
    // pays no more per request than it did before scopes.
    if !state.tokens.required() {
        return with_caller(&state, Caller::Anonymous, req, next).await;
    }
    let scope = match req
        .extensions()
        .get::<MatchedPath>()
        .map(MatchedPath::as_str)
    {
        Some("/metrics") => Scope::Metrics,
        Some(path) => crate::openapi::ROUTES
            .iter()
            .find(|r| r.path == path && req.method().as_str().eq_ignore_ascii_case(r.method))
            .and_then(|r| r.scope)
            // A route the table does not know (a test proves there is none) is the admin's.
            .unwrap_or(Scope::Admin),
        None => Scope::Admin,
    };
    // The scheme is case-insensitive (RFC 6750, RFC 9110).
    let given = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim_start());
    match state.tokens.check(given, scope) {
        Ok(caller) => with_caller(&state, caller, req, next).await,
        Err(Refusal::Unauthenticated) => {
            let mut res = ApiError::Unauthorized.into_response();
            res.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            res
        }
        Err(Refusal::Scope(scope, caller)) => {
            let mut res = ApiError::InsufficientScope(scope).into_response();
            res.extensions_mut().insert(caller);
            if let Ok(value) = HeaderValue::from_str(&format!(
                "Bearer error=\"insufficient_scope\", scope=\"{scope}\""
            )) {
                res.headers_mut().insert(header::WWW_AUTHENTICATE, value);
            }
            res
        }
    }
}

/// Answers an authenticated request within the caller's rate limit, with
/// the caller on the request (for handlers) and on the response (for the
/// audit trail).
async fn with_caller(
    state: &crate::AppState,
    caller: Caller,
    mut req: Request,
    next: Next,
) -> Response {
    if let Err(over) = state.limits.request(&caller) {
        let mut res = ApiError::from(over).into_response();
        res.extensions_mut().insert(caller);
        return res;
    }
    req.extensions_mut().insert(caller.clone());
    let mut res = next.run(req).await;
    res.extensions_mut().insert(caller);
    res
}

/// The route template a matched request took, for the access log.
#[derive(Clone)]
struct Route(Arc<str>);

/// The longest URI read; longer is 414 (as problem+json).
const MAX_URI: usize = 8 << 10;
/// The most header bytes read (names and values); more is 431.
const MAX_HEADERS: usize = 64 << 10;

/// Gives every request an id (the caller's `x-request-id`, or a new one),
/// answers it in `x-request-id`, makes it the id problem+json bodies carry,
/// and writes the access log line when it is on.
pub(super) async fn request_id(State(state): St, req: Request, next: Next) -> Response {
    let started = Instant::now();
    let id = given_id(&req).unwrap_or_else(new_id);
    let method = req.method().clone();
    let uri_len = req.uri().path().len() + req.uri().query().map_or(0, |q| q.len() + 1);
    let header_bytes: usize = req
        .headers()
        .iter()
        .map(|(n, v)| n.as_str().len() + v.len())
        .sum();
    let handled = async {
        if uri_len > MAX_URI {
            return ApiError::UriTooLong(format!(
                "the URI is {uri_len} bytes, over the {MAX_URI} this server reads"
            ))
            .into_response();
        }
        if header_bytes > MAX_HEADERS {
            return ApiError::HeadersTooLarge(format!(
                "the headers are {header_bytes} bytes, over the {MAX_HEADERS} this server reads"
            ))
            .into_response();
        }
        next.run(req).await
    };
    let mut res = CURRENT.scope(id.clone(), handled).await;
    if let Ok(value) = HeaderValue::from_str(&id) {
        res.headers_mut().insert(REQUEST_ID, value);
    }
    if state.options.access_log {
        let route = res.extensions().get::<Route>().map(|r| r.0.clone());
        tracing::info!(
            target: "baton::access",
            method = %method,
            route = route.as_deref().unwrap_or("unmatched"),
            status = res.status().as_u16(),
            latency_us = started.elapsed().as_micros() as u64,
            request_id = &*id,
        );
    }
    res
}

/// Counts and times every matched request; applies the request timeout.
pub(super) async fn track(State(state): St, req: Request, next: Next) -> Response {
    let started = Instant::now();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "unmatched".into());
    let method = req.method().clone();
    // A cheap clone (shared bytes): the path is copied only when audited.
    let uri = req.uri().clone();
    let long = crate::openapi::is_long(method.as_str(), &route);
    let res = if long {
        next.run(req).await
    } else {
        let limit = state.options.request_timeout;
        match tokio::time::timeout(limit, next.run(req)).await {
            Ok(res) => res,
            Err(_) => ApiError::Timeout(limit).into_response(),
        }
    };
    let key = format!("{method} {route}");
    state
        .metrics
        .request(&key, res.status().as_u16(), started.elapsed());
    let status = res.status().as_u16();
    if crate::audit::wanted(state.audit.level(), method.as_str(), &route, status) {
        let known = res.extensions().get::<Caller>();
        let caller = match known {
            Some(caller) => caller.id().to_string(),
            None if status == 401 => "unauthenticated".to_string(),
            None => Caller::Anonymous.id().to_string(),
        };
        state.audit.record(crate::audit::Record {
            at_ms: crate::catalog::now_ms(),
            caller,
            tenant: known.and_then(Caller::tenant).map(str::to_string),
            method: method.to_string(),
            route: route.clone(),
            path: uri.path().to_string(),
            status,
            request_id: CURRENT.try_with(|id| id.to_string()).unwrap_or_default(),
        });
    }
    let mut res = res;
    res.extensions_mut().insert(Route(route.into()));
    res
}

//! The middleware: bearer-token auth, and the request metrics and timeout.

use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::error::ApiError;

use super::St;

/// Compares in time that depends only on the lengths, not on where bytes differ.
pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

pub(super) async fn auth(State(state): St, req: Request, next: Next) -> Response {
    if let Some(token) = &state.options.auth_token {
        let given = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or_default();
        if !constant_time_eq(given.as_bytes(), token.as_bytes()) {
            let mut res = ApiError::Unauthorized.into_response();
            res.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer"),
            );
            return res;
        }
    }
    next.run(req).await
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
    res
}

//! The one error boundary: every failure of a handler is an [`ApiError`], answered
//! with its status and an `application/problem+json` body with a stable `code`.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use baton_api::{FieldError, PROBLEM_JSON, Problem};

/// What a handler returns: a value, or the error answered as problem+json.
pub(crate) type ApiResult<T> = Result<T, ApiError>;

/// Why a request failed.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The workflow does not validate or plan: every finding, located.
    #[error("{detail}")]
    InvalidWorkflow {
        /// A summary.
        detail: String,
        /// Every finding.
        errors: Vec<FieldError>,
    },
    /// The body is well-formed JSON but not what the route takes.
    #[error("{detail}")]
    InvalidRequest {
        /// What is wrong.
        detail: String,
        /// Per-field findings.
        errors: Vec<FieldError>,
    },
    /// The body could not be read (malformed JSON, a bad query string).
    #[error("{0}")]
    BadRequest(String),
    /// No such resource.
    #[error("{0}")]
    NotFound(String),
    /// The method does not apply to the route.
    #[error("{0}")]
    MethodNotAllowed(String),
    /// The operation does not apply in the resource's state.
    #[error("{0}")]
    Conflict(String),
    /// The body, the batch or an event is over a limit.
    #[error("{0}")]
    PayloadTooLarge(String),
    /// The body's media type is not one the route reads.
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// The request's URI is longer than the server reads.
    #[error("{0}")]
    UriTooLong(String),
    /// The request's headers are larger than the server reads.
    #[error("{0}")]
    HeadersTooLarge(String),
    /// The workflow defines agents the server does not let callers define.
    #[error("{detail}")]
    AgentNotAllowed {
        /// A summary.
        detail: String,
        /// One finding per agent, with the setting that would allow it.
        errors: Vec<FieldError>,
    },
    /// No or a wrong bearer token.
    #[error("a valid bearer token is required: send `Authorization: Bearer <token>`")]
    Unauthorized,
    /// The token is valid but lacks the scope the operation needs.
    #[error(
        "this token lacks the `{0}` scope this operation needs: use a token created with \
         `baton token create --scope {0}` (or `admin`)"
    )]
    InsufficientScope(crate::tokens::Scope),
    /// The caller is over its rate limit.
    #[error("{detail}")]
    RateLimited {
        /// Which limit, and what to do.
        detail: String,
        /// When a retry would pass.
        retry_after: std::time::Duration,
    },
    /// What the caller asks is the server's alone (its own topics).
    #[error("{0}")]
    Forbidden(String),
    /// The request took longer than the server's request timeout.
    #[error("the request took longer than {0:?}")]
    Timeout(std::time::Duration),
    /// The engine has stopped (shutting down), or a run is changing hands.
    #[error("{0}")]
    Unavailable(String),
    /// Storage stopped accepting writes (a full disk, an I/O error).
    #[error("{0}")]
    Storage(String),
    /// A failure of the server; the detail is logged, not sent.
    #[error("{0}")]
    Internal(String),
}

impl From<crate::limits::Over> for ApiError {
    fn from(over: crate::limits::Over) -> ApiError {
        use crate::limits::Over;
        let whose = |tenant: &Option<String>| match tenant {
            Some(t) => format!("tenant `{t}`'s"),
            None => "this caller's".to_string(),
        };
        match over {
            Over::Wait {
                tenant,
                what,
                rate,
                after,
            } => ApiError::RateLimited {
                detail: format!(
                    "over {} limit of {rate} {what}/s: retry after {:.1} s ({})",
                    whose(&tenant),
                    after.as_secs_f64(),
                    match &tenant {
                        Some(t) =>
                            format!("the tenant's quota: `[tenants.{t}]` in the server's config"),
                        None =>
                            "a token's own limit: `baton token create --rps`/`--events-per-sec`; \
                             the server's: `[server] rate_limit_rps`/`rate_limit_events_per_sec`"
                                .to_string(),
                    }
                ),
                retry_after: after,
            },
            Over::Never { tenant, rate } => ApiError::invalid(
                "$.events",
                format!(
                    "more events than {} limit of {rate} events/s allows in one \
                     publish: send batches of at most {}",
                    whose(&tenant),
                    rate.floor()
                ),
            ),
            Over::Runs { tenant, max } => ApiError::RateLimited {
                detail: format!(
                    "tenant `{tenant}` has {max} runs executing, its quota (`[tenants.{tenant}] \
                     max_concurrent_runs`): retry when one ends"
                ),
                retry_after: std::time::Duration::from_secs(1),
            },
        }
    }
}

impl ApiError {
    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::InvalidWorkflow { .. } | ApiError::InvalidRequest { .. } => {
                StatusCode::UNPROCESSABLE_ENTITY
            }
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::UriTooLong(_) => StatusCode::URI_TOO_LONG,
            ApiError::HeadersTooLarge(_) => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::AgentNotAllowed { .. }
            | ApiError::Forbidden(_)
            | ApiError::InsufficientScope(_) => StatusCode::FORBIDDEN,
            ApiError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Timeout(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Unavailable(_) | ApiError::Storage(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The stable code.
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::InvalidWorkflow { .. } => "invalid-workflow",
            ApiError::InvalidRequest { .. } => "invalid-request",
            ApiError::BadRequest(_) => "bad-request",
            ApiError::NotFound(_) => "not-found",
            ApiError::MethodNotAllowed(_) => "method-not-allowed",
            ApiError::Conflict(_) => "conflict",
            ApiError::PayloadTooLarge(_) => "payload-too-large",
            ApiError::UnsupportedMediaType(_) => "unsupported-media-type",
            ApiError::UriTooLong(_) => "uri-too-long",
            ApiError::HeadersTooLarge(_) => "headers-too-large",
            ApiError::Unauthorized => "unauthorized",
            ApiError::AgentNotAllowed { .. } => "agent-not-allowed",
            ApiError::Forbidden(_) => "forbidden",
            ApiError::InsufficientScope(_) => "insufficient-scope",
            ApiError::RateLimited { .. } => "rate-limited",
            ApiError::Timeout(_) => "timeout",
            ApiError::Unavailable(_) | ApiError::Storage(_) => "unavailable",
            ApiError::Internal(_) => "internal",
        }
    }

    /// A request-shape error with one finding.
    pub fn invalid(path: &str, message: impl Into<String>) -> ApiError {
        let message = message.into();
        ApiError::InvalidRequest {
            detail: format!("{message} (at {path})"),
            errors: vec![FieldError {
                code: "invalid-value".into(),
                message,
                path: path.into(),
                location: None,
                hint: None,
            }],
        }
    }

    /// The problem body.
    pub fn problem(&self) -> Problem {
        let detail = match self {
            ApiError::Internal(_) => "internal error; the server log has the details".into(),
            other => other.to_string(),
        };
        let mut p = Problem::new(self.status().as_u16(), self.code(), detail);
        if let ApiError::InvalidWorkflow { errors, .. }
        | ApiError::InvalidRequest { errors, .. }
        | ApiError::AgentNotAllowed { errors, .. } = self
        {
            p.errors = errors.clone();
        }
        p
    }
}

impl From<baton_engine::Error> for ApiError {
    fn from(e: baton_engine::Error) -> Self {
        use baton_engine::Error as E;
        match e {
            E::UnknownRun(run) => ApiError::NotFound(format!("no execution {run}")),
            E::Conflict { .. } => ApiError::Conflict(e.to_string()),
            E::UnknownTask { .. } | E::NoInstances { .. } => ApiError::NotFound(e.to_string()),
            E::Stopped => ApiError::Unavailable("the engine has stopped".into()),
            E::Moved(_) => ApiError::Unavailable(format!("{e}: retry, any instance answers")),
            E::Store(_) => ApiError::Unavailable(e.to_string()),
            other => ApiError::Internal(other.to_string()),
        }
    }
}

impl From<baton_events::Error> for ApiError {
    fn from(e: baton_events::Error) -> Self {
        use baton_events::Error as E;
        match e {
            E::EventTooLarge { .. } | E::BatchTooLarge { .. } => {
                ApiError::PayloadTooLarge(e.to_string())
            }
            E::InvalidName { what, .. } => ApiError::invalid(what, e.to_string()),
            // Consumer-group routes name a topic, group or partition that may not
            // exist: the client's mistake, not the server's.
            E::UnknownTopic(_) | E::UnknownGroup { .. } | E::UnknownPartition { .. } => {
                ApiError::NotFound(e.to_string())
            }
            E::Closed => ApiError::Unavailable("the event log is closed".into()),
            E::Stalled(_) => ApiError::Storage(format!(
                "{e}; nothing it acknowledged was lost. Free space on the data \
                 directory's disk"
            )),
            E::Failed(why) => ApiError::Storage(format!(
                "the event log stopped accepting writes ({why}); nothing it acknowledged was lost. \
                 Free space (or fix the disk), then restart the server"
            )),
            other => ApiError::Internal(other.to_string()),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let ApiError::Internal(detail) = &self {
            let request_id = current_request_id();
            tracing::error!(detail, request_id = request_id.as_deref(), "internal error");
        }
        let mut res = problem_response(&self.problem());
        // When to try again: a moment for what passes by itself (a takeover,
        // a timeout), longer for storage, which needs an operator.
        let after = match &self {
            ApiError::Unavailable(_) | ApiError::Timeout(_) => Some("1"),
            ApiError::Storage(_) => Some("30"),
            _ => None,
        };
        if let Some(after) = after {
            res.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static(after));
        }
        if let ApiError::RateLimited { retry_after, .. } = &self {
            // Whole seconds, rounded up (RFC 9110).
            let secs = retry_after.as_secs() + u64::from(retry_after.subsec_nanos() > 0);
            res.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs.max(1)));
        }
        res
    }
}

/// The id of the request being answered, if any.
fn current_request_id() -> Option<String> {
    crate::request_id::CURRENT
        .try_with(|id| id.to_string())
        .ok()
}

/// A problem as a response, with the id of the request it answers.
pub fn problem_response(p: &Problem) -> Response {
    let status = StatusCode::from_u16(p.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let body = match current_request_id() {
        Some(id) if p.request_id.is_none() => serde_json::to_vec(&Problem {
            request_id: Some(id),
            ..p.clone()
        }),
        _ => serde_json::to_vec(p),
    }
    .unwrap_or_default();
    let mut res = (status, body).into_response();
    res.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
    res
}

#[cfg(test)]
mod tests {
    use axum::response::IntoResponse as _;

    use super::*;

    /// A log that stopped accepting writes (a full disk) is 503 with a
    /// Retry-After and what to do, not a 500 that points at an empty log.
    #[test]
    fn a_failed_log_is_503_with_retry_after() {
        let e = ApiError::from(baton_events::Error::Failed(
            "writing segment: No space left on device".into(),
        ));
        let p = e.problem();
        assert_eq!(p.status, 503);
        assert_eq!(p.code, "unavailable");
        assert!(
            p.detail.contains("No space left") && p.detail.contains("restart"),
            "{}",
            p.detail
        );
        let res = e.into_response();
        assert_eq!(res.headers()[header::RETRY_AFTER], "30");
        let busy = ApiError::Unavailable("taking over".into()).into_response();
        assert_eq!(busy.headers()[header::RETRY_AFTER], "1");
        let limited = ApiError::RateLimited {
            detail: String::new(),
            retry_after: std::time::Duration::from_millis(1500),
        }
        .into_response();
        assert_eq!(limited.status(), 429);
        assert_eq!(limited.headers()[header::RETRY_AFTER], "2", "rounded up");
        let bad = ApiError::NotFound("x".into()).into_response();
        assert!(bad.headers().get(header::RETRY_AFTER).is_none());
    }

    /// Every code has its own title: "Internal error" is the 500's alone.
    #[test]
    fn every_code_has_a_title() {
        let every = [
            ApiError::BadRequest(String::new()),
            ApiError::NotFound(String::new()),
            ApiError::MethodNotAllowed(String::new()),
            ApiError::Conflict(String::new()),
            ApiError::PayloadTooLarge(String::new()),
            ApiError::UnsupportedMediaType(String::new()),
            ApiError::UriTooLong(String::new()),
            ApiError::HeadersTooLarge(String::new()),
            ApiError::Unauthorized,
            ApiError::InsufficientScope(crate::tokens::Scope::Admin),
            ApiError::Forbidden(String::new()),
            ApiError::AgentNotAllowed {
                detail: String::new(),
                errors: Vec::new(),
            },
            ApiError::Timeout(std::time::Duration::ZERO),
            ApiError::RateLimited {
                detail: String::new(),
                retry_after: std::time::Duration::ZERO,
            },
            ApiError::Unavailable(String::new()),
            ApiError::invalid("$", ""),
        ];
        for e in every {
            assert_ne!(baton_api::title(e.code()), "Internal error", "{}", e.code());
        }
    }
}

//! A call about a run that another instance drives is forwarded to it: the
//! request kept ([`Origin`]) and the local-or-owner rule ([`on_owner`]).

use axum::http::{HeaderMap, Method};
use axum::response::Response;
use baton_engine::store::RunId;

use crate::AppState;
use crate::error::{ApiError, ApiResult};

/// A call about one run, kept so that it can be forwarded to the instance that
/// drives the run.
#[cfg_attr(not(feature = "postgres"), allow(dead_code))]
#[derive(Clone)]
pub(crate) struct Origin {
    method: Method,
    uri: axum::http::Uri,
    headers: HeaderMap,
}

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for Origin {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _: &S,
    ) -> Result<Self, Self::Rejection> {
        // Routes are not nested: the URI is the one the client sent.
        Ok(Origin {
            method: parts.method.clone(),
            uri: parts.uri.clone(),
            headers: parts.headers.clone(),
        })
    }
}

/// Asks the local engine about `run`. When it does not hold the run and instances
/// share a state store, the run's owner answers instead (`Err(response)`: the
/// call was forwarded), or the run is taken from its history and asked again.
pub(crate) async fn on_owner<T, F, Fut>(
    state: &AppState,
    run: RunId,
    origin: Origin,
    ask: F,
) -> ApiResult<Result<T, Response>>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<T, baton_engine::Error>>,
{
    match ask().await {
        Err(baton_engine::Error::UnknownRun(_) | baton_engine::Error::Moved(_)) => {}
        other => return Ok(Ok(other?)),
    }
    #[cfg(feature = "postgres")]
    if let Some(cluster) = &state.cluster {
        use crate::cluster::{Call, Routed};
        let call = Call {
            method: origin.method,
            uri: &origin.uri,
            headers: &origin.headers,
            body: bytes::Bytes::new(),
        };
        return match cluster.route(&state.engine, run, call).await? {
            Routed::Response(r) => Ok(Err(r)),
            Routed::Local => match ask().await {
                // The store already names this instance, the engine has not
                // adopted the run yet: a takeover in progress, not a 404.
                Err(baton_engine::Error::UnknownRun(_)) => Err(ApiError::Unavailable(format!(
                    "execution {run} is being taken over by this instance; retry in a second"
                ))),
                other => Ok(Ok(other?)),
            },
        };
    }
    let _ = (state, origin);
    Err(ApiError::NotFound(format!("no execution {run}")))
}

//! The JSON body extractor: axum's rejections answered as problem+json
//! (malformed → 400, wrong shape → 422, over the body limit → 413, wrong media
//! type → 415).

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::header;
use serde::Deserialize;
use serde::de::DeserializeOwned;

use crate::error::ApiError;

/// A JSON body.
pub struct Json<T>(pub T);

/// Reads the whole body, mapping the limit to 413.
pub async fn bytes<S: Send + Sync>(req: Request, state: &S) -> Result<Bytes, ApiError> {
    Bytes::from_request(req, state).await.map_err(|e| {
        if e.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::PayloadTooLarge(format!(
                "the request body is over the server's limit ({e}); send less, or raise `server.body_limit`"
            ))
        } else {
            ApiError::BadRequest(format!("cannot read the request body: {e}"))
        }
    })
}

/// Parses JSON: syntax errors are 400, shape errors 422 with the line and column.
pub fn parse<'a, T: Deserialize<'a>>(body: &'a [u8]) -> Result<T, ApiError> {
    // An empty body is an empty object: every field of our requests has a default
    // or is reported missing.
    let body: &[u8] = if body.iter().all(u8::is_ascii_whitespace) {
        b"{}"
    } else {
        body
    };
    serde_json::from_slice(body).map_err(|e| {
        use serde_json::error::Category;
        match e.classify() {
            Category::Data => ApiError::InvalidRequest {
                detail: format!("the request body does not have the expected shape: {e}"),
                errors: vec![baton_api::FieldError {
                    code: "invalid-value".into(),
                    message: e.to_string(),
                    path: "$".into(),
                    location: Some(baton_api::Location {
                        line: e.line(),
                        column: e.column(),
                    }),
                    hint: None,
                }],
            },
            _ => ApiError::BadRequest(format!("the request body is not valid JSON: {e}")),
        }
    })
}

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for Json<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let body = json_bytes(req, state).await?;
        parse(&body).map(Json)
    }
}

/// What a 415 suggests.
pub const SEND_JSON: &str =
    "send `Content-Type: application/json` (with curl: `-H 'Content-Type: application/json'`)";

/// Whether `media` is the form type curl's `-d` sends when nobody says
/// otherwise: its body is taken as the JSON (or YAML) it almost always is.
pub fn curl_default(media: &str) -> bool {
    media.eq_ignore_ascii_case("application/x-www-form-urlencoded")
}

/// Checks the media type (JSON, or none) and reads the body. A body sent as
/// curl's default form type is read as JSON when it is JSON.
pub async fn json_bytes<S: Send + Sync>(req: Request, state: &S) -> Result<Bytes, ApiError> {
    let mut form = None;
    if let Some(ct) = req.headers().get(header::CONTENT_TYPE) {
        let ct = ct.to_str().unwrap_or_default();
        let media = ct.split(';').next().unwrap_or_default().trim();
        if curl_default(media) {
            form = Some(ct.to_string());
        } else if !(media.eq_ignore_ascii_case("application/json") || media.ends_with("+json")) {
            return Err(ApiError::UnsupportedMediaType(format!(
                "expected `Content-Type: application/json`, got `{ct}`: {SEND_JSON}"
            )));
        }
    }
    let body = bytes(req, state).await?;
    if let Some(ct) = form {
        let empty = body.iter().all(u8::is_ascii_whitespace);
        if !empty && serde_json::from_slice::<serde::de::IgnoredAny>(&body).is_err() {
            return Err(ApiError::UnsupportedMediaType(format!(
                "the body was sent as `{ct}` and is not JSON: {SEND_JSON}"
            )));
        }
    }
    Ok(body)
}

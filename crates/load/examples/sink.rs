//! A stand-in for `baton serve` with no work behind it: `GET /healthz` and
//! `POST /api/v1/events` answered at once (one offset per event, the shape
//! the API promises, so `baton load`'s body check passes). It measures what
//! the load generator itself can push: against it, the server's cost is
//! only HTTP parsing and reading the body.
//!
//! Counts events by their `{` (the generator's payloads are strings without
//! braces); not a general JSON reader.
//!
//! ```sh
//! cargo run --release -p baton-load --example sink -- 127.0.0.1:8099 &
//! baton load --target http://127.0.0.1:8099 --scenario high-throughput --batch 10000 --users 4 --run-time 10s
//! ```

#![allow(clippy::unwrap_used, reason = "an example stops at the first failure")]

use std::cell::RefCell;
use std::collections::HashMap;

use axum::Router;
use axum::body::Bytes;
use axum::extract::DefaultBodyLimit;
use axum::http::header;
use axum::routing::{get, post};

thread_local! {
    static RESPONSES: RefCell<HashMap<usize, Bytes>> = RefCell::new(HashMap::new());
}

async fn publish(body: Bytes) -> ([(header::HeaderName, &'static str); 1], Bytes) {
    let n = body
        .iter()
        .filter(|&&c| c == b'{')
        .count()
        .saturating_sub(1);
    let response = RESPONSES.with(|r| {
        r.borrow_mut()
            .entry(n)
            .or_insert_with(|| {
                let offsets: Vec<String> = (0..n)
                    .map(|i| format!(r#"{{"partition":0,"offset":{i}}}"#))
                    .collect();
                Bytes::from(format!(
                    r#"{{"topic":"load","offsets":[{}]}}"#,
                    offsets.join(",")
                ))
            })
            .clone()
    });
    ([(header::CONTENT_TYPE, "application/json")], response)
}

#[tokio::main]
async fn main() {
    let bind = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:0".into());
    let listener = tokio::net::TcpListener::bind(&bind).await.expect("bind");
    eprintln!(
        "sink: listening on http://{}",
        listener.local_addr().expect("bound")
    );
    let app = Router::new()
        .route("/healthz", get(|| async { r#"{"status":"ok"}"# }))
        .route("/api/v1/events", post(publish))
        .layer(DefaultBodyLimit::disable());
    axum::serve(listener, app).await.expect("serve");
}

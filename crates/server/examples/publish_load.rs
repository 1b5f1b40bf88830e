//! Measures `POST /api/v1/events` over loopback: `CONNS` keep-alive connections
//! each posting batches of `BATCH` events (about 100 bytes of payload each) for
//! `SECS` seconds, against a server started in this process on a temporary data
//! directory (disk log, fsync before every reply) or at `URL` if given.
//!
//! Measures: accepted events per second and request latency (client side,
//! including JSON encoding in the server and the log's group commit). Excludes:
//! building the request bodies (done once, up front).
//!
//! `cargo run --release -p baton-server --example publish_load -- [BATCH] [CONNS] [SECS] [URL]`

#![allow(clippy::unwrap_used, reason = "an example stops at the first failure")]

use std::time::{Duration, Instant};

use baton_server::{Server, ServerOptions};
use http_body_util::{BodyExt as _, Full};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tokio_util::sync::CancellationToken;

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let batch: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(1000);
    let conns: usize = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(8);
    let secs: u64 = args.get(3).and_then(|a| a.parse().ok()).unwrap_or(5);
    let dir = tempfile::tempdir().unwrap();
    let (url, stop) = match args.get(4) {
        Some(url) => (url.clone(), None),
        None => {
            let server = Server::build(ServerOptions {
                bind: "127.0.0.1:0".parse().unwrap(),
                data_dir: dir.path().to_path_buf(),
                ..ServerOptions::default()
            })
            .await
            .unwrap();
            let url = format!("http://{}", server.local_addr());
            let cancel = CancellationToken::new();
            let task = tokio::spawn(server.run(cancel.clone()));
            (url, Some((cancel, task)))
        }
    };
    let events: Vec<String> = (0..batch)
        .map(|i| {
            format!(
                r#"{{"type":"order.created","key":"customer-{}","payload":{{"order":{i},"total":42.5,"items":["a","b","c"],"note":"loopback load test"}}}}"#,
                i % 64
            )
        })
        .collect();
    let body = Bytes::from(format!(
        r#"{{"topic":"load","events":[{}]}}"#,
        events.join(",")
    ));
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let deadline = Instant::now() + Duration::from_secs(secs);
    let mut tasks = Vec::new();
    for _ in 0..conns {
        let client = client.clone();
        let body = body.clone();
        let url = format!("{url}/api/v1/events");
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            while Instant::now() < deadline {
                let started = Instant::now();
                let req = hyper::Request::post(&url)
                    .header("content-type", "application/json")
                    .body(Full::new(body.clone()))
                    .unwrap();
                let res = client.request(req).await.unwrap();
                let ok = res.status().is_success();
                res.into_body().collect().await.unwrap();
                assert!(ok, "publish failed");
                lat.push(started.elapsed());
            }
            lat
        }));
    }
    let started = Instant::now();
    let mut lat = Vec::new();
    for t in tasks {
        lat.extend(t.await.unwrap());
    }
    let took = started.elapsed().as_secs_f64();
    lat.sort();
    let pct = |p: f64| lat[((lat.len() as f64 * p) as usize).min(lat.len() - 1)];
    println!(
        "{} requests × {batch} events over {conns} connections in {took:.2} s: {:.0} events/s, {:.0} req/s; latency p50 {:?} p99 {:?} max {:?}",
        lat.len(),
        (lat.len() * batch) as f64 / took,
        lat.len() as f64 / took,
        pct(0.5),
        pct(0.99),
        lat[lat.len() - 1]
    );
    if let Some((cancel, task)) = stop {
        cancel.cancel();
        task.await.unwrap().unwrap();
    }
}

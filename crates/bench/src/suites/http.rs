//! `http`: the HTTP API as a client sees it, through `baton serve`.
//!
//! The suite starts the `baton` binary (`baton serve --bind 127.0.0.1:0
//! --data-dir TMP`: the embedded defaults, disk event log with fsync, durable
//! state store) and reads the address it prints. A small client on
//! hyper-util's pooled HTTP/1 client (keep-alive) then measures, per sample:
//!
//! * `http/events/publish/<c>c`: `POST /api/v1/events` with batches of 1,000
//!   events (JSON, 100-byte payloads) from `c` concurrent connections for a
//!   fixed number of batches: events/s, and per-request latency (p50, p99,
//!   max) from an HDR histogram. The request is timed from sending to the
//!   whole response body read, so it includes JSON encoding on the server,
//!   the log's durability promise and the loopback.
//! * `http/execute/*`: `POST /api/v1/workflows/{id}/execute` of a stored
//!   100-task workflow (noop agents): the request's latency (the run
//!   accepted, durably), and `complete`: execute → `GET
//!   /api/v1/executions/{id}` first reporting `completed` (polled every
//!   millisecond, so ±1 ms).
//!
//! `http/ceiling/events/publish/<c>c` is the same publish workload against a
//! minimal axum handler in this process that only reads each body: the
//! machine's (and the client's) own limit, which the publish figure is shown as
//! a share of.
//!
//! Excluded: starting the server, storing the workflow, building request
//! bodies (made once per sample, before the clock starts). Client and server
//! share the machine's cores: see "loopback limits" in docs/performance.md.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};

use crate::{Config, Error, Record, Sink};

type HttpClient = Client<HttpConnector, Full<Bytes>>;

async fn call(
    client: &HttpClient,
    method: &str,
    url: &str,
    body: Bytes,
) -> Result<(u16, Bytes), String> {
    let req = hyper::Request::builder()
        .method(method)
        .uri(url)
        .header("content-type", "application/json")
        .body(Full::new(body))
        .map_err(|e| e.to_string())?;
    let res = client.request(req).await.map_err(|e| e.to_string())?;
    let status = res.status().as_u16();
    let body = res
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    Ok((status, body))
}

async fn expect(
    client: &HttpClient,
    method: &str,
    url: &str,
    body: Bytes,
    ok: u16,
) -> Result<Value, String> {
    let (status, body) = call(client, method, url, body).await?;
    if status != ok {
        return Err(format!(
            "{method} {url}: {status} (expected {ok}): {}",
            String::from_utf8_lossy(&body)
        ));
    }
    serde_json::from_slice(&body).map_err(|e| format!("{method} {url}: {e}"))
}

fn batch_body(n: usize, seed: usize) -> Bytes {
    let payload = "x".repeat(100);
    let events: Vec<Value> = (0..n)
        .map(|i| {
            json!({
                "type": "bench.event",
                "key": format!("key-{:03}", (seed + i) % 64),
                "payload": payload,
            })
        })
        .collect();
    Bytes::from(serde_json::to_vec(&json!({ "topic": "bench", "events": events })).expect("json"))
}

struct Publish {
    seconds: f64,
    events: usize,
    latency_us: Histogram<u64>,
}

async fn publish(
    client: &HttpClient,
    base: &str,
    conns: usize,
    batches: usize,
) -> Result<Publish, String> {
    let url = format!("{base}/api/v1/events");
    let per = batches.div_ceil(conns);
    let bodies: Arc<Vec<Bytes>> = Arc::new((0..4).map(|s| batch_body(1_000, s * 7)).collect());
    let started = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..conns {
        let (client, url, bodies) = (client.clone(), url.clone(), bodies.clone());
        tasks.push(tokio::spawn(async move {
            let mut h = Histogram::<u64>::new(3).expect("valid");
            for i in 0..per {
                let t = Instant::now();
                let (status, body) = call(
                    &client,
                    "POST",
                    &url,
                    bodies[(c + i) % bodies.len()].clone(),
                )
                .await?;
                if !(200..300).contains(&status) {
                    return Err(format!(
                        "POST {url}: {status}: {}",
                        String::from_utf8_lossy(&body)
                    ));
                }
                h.record(t.elapsed().as_micros() as u64).ok();
            }
            Ok::<_, String>(h)
        }));
    }
    let mut latency_us = Histogram::<u64>::new(3).expect("valid");
    for t in tasks {
        latency_us.add(t.await.map_err(|e| e.to_string())??).ok();
    }
    Ok(Publish {
        seconds: started.elapsed().as_secs_f64(),
        events: per * conns * 1_000,
        latency_us,
    })
}

struct Execute {
    accept_us: Vec<f64>,
    complete_s: Vec<f64>,
}

async fn execute(
    client: &HttpClient,
    base: &str,
    workflow: &str,
    runs: usize,
) -> Result<Execute, String> {
    let url = format!("{base}/api/v1/workflows/{workflow}/execute");
    let body = Bytes::from_static(br#"{"input_data": null}"#);
    let mut accept_us = Vec::new();
    let mut complete_s = Vec::new();
    for _ in 0..runs {
        let t = Instant::now();
        let v = expect(client, "POST", &url, body.clone(), 202).await?;
        accept_us.push(t.elapsed().as_secs_f64() * 1e6);
        let id = v["execution_id"]
            .as_str()
            .ok_or("no execution_id")?
            .to_string();
        let status_url = format!("{base}/api/v1/executions/{id}");
        loop {
            let v = expect(client, "GET", &status_url, Bytes::new(), 200).await?;
            match v["status"].as_str() {
                Some("completed") => break,
                Some("failed" | "cancelled") => return Err(format!("run {id}: {v}")),
                _ => tokio::time::sleep(Duration::from_millis(1)).await,
            }
            if t.elapsed() > Duration::from_secs(60) {
                return Err(format!("run {id} did not complete in 60 s"));
            }
        }
        complete_s.push(t.elapsed().as_secs_f64());
    }
    Ok(Execute {
        accept_us,
        complete_s,
    })
}

/// The machine's limit for the publish workload: a minimal axum handler, on the
/// client's runtime, that reads each request's whole body and answers `{}`. Its
/// address, and the task serving it (aborted by the caller).
async fn bare_server() -> Result<(String, tokio::task::JoinHandle<()>), String> {
    let app = axum::Router::new().route(
        "/api/v1/events",
        axum::routing::post(|body: Bytes| async move {
            std::hint::black_box(body.len());
            "{}"
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| e.to_string())?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let task = tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            eprintln!("the http ceiling's server stopped: {e}");
        }
    });
    Ok((format!("http://{addr}"), task))
}

fn quantiles(h: &Histogram<u64>) -> [f64; 3] {
    [
        h.value_at_quantile(0.5) as f64,
        h.value_at_quantile(0.99) as f64,
        h.max() as f64,
    ]
}

pub(crate) fn run(config: &Config, sink: &mut Sink<'_>) -> Result<(), Error> {
    let Some(baton) = config.baton.as_deref() else {
        return Err(Error::Unavailable(
            "the http suite starts `baton serve`: run it through the `baton` binary".into(),
        ));
    };
    let rt = crate::suites::events::runtime();
    // The same `baton serve` launcher as `baton load --spawn-server`.
    let server = rt
        .block_on(baton_load::spawn::Server::start(baton))
        .map_err(|e| Error::Unavailable(format!("http suite: {e}")))?;
    let base = server.url.clone();
    let failed = |benchmark: &str| {
        let benchmark = benchmark.to_string();
        move |message| Error::Failed { benchmark, message }
    };
    let client: HttpClient = Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(30))
        .build_http();
    // Publish, and its ceiling.
    let (bare, bare_task) = rt
        .block_on(bare_server())
        .map_err(|e| Error::Unavailable(format!("http suite: {e}")))?;
    let batches = config.pick(&[200usize], &[50], &[4])[0];
    for conns in config.pick(&[1usize, 4], &[1, 4], &[1]) {
        let name = format!("http/events/publish/{conns}c");
        let ceiling_name = format!("http/ceiling/events/publish/{conns}c");
        rt.block_on(publish(&client, &base, conns, batches.min(8)))
            .map_err(failed(&name))?;
        rt.block_on(publish(&client, &bare, conns, batches.min(8)))
            .map_err(failed(&ceiling_name))?;
        let mut rates = Vec::new();
        let mut lat = Vec::new();
        let mut ceiling_rates = Vec::new();
        for _ in 0..config.repeats.max(1) {
            let p = rt
                .block_on(publish(&client, &base, conns, batches))
                .map_err(failed(&name))?;
            rates.push(p.events as f64 / p.seconds);
            lat.push(quantiles(&p.latency_us));
            let c = rt
                .block_on(publish(&client, &bare, conns, batches))
                .map_err(failed(&ceiling_name))?;
            ceiling_rates.push(c.events as f64 / c.seconds);
        }
        let ceiling = Record::new(
            ceiling_name,
            "the machine's limit for this workload: the same requests, from the same client, to a minimal axum handler in this process that reads each body and answers {}",
            "events/s",
            true,
            ceiling_rates,
        )
        .param("connections", conns)
        .param("batch", 1_000)
        .param("batches", batches);
        sink.push(
            Record::new(
                format!("{name}/throughput"),
                "events/s through POST /api/v1/events, batches of 1,000 JSON events (100-byte payloads), C keep-alive connections, to baton serve's disk log (fsync always)",
                "events/s",
                true,
                rates,
            )
            .param("connections", conns)
            .param("batch", 1_000)
            .param("batches", batches)
            .within(&ceiling),
        );
        sink.push(ceiling);
        for (i, label) in ["p50", "p99", "max"].into_iter().enumerate() {
            sink.push(
                Record::new(
                    format!("{name}/latency_{label}"),
                    "one POST /api/v1/events of 1,000 events: request sent → response body read",
                    "us",
                    false,
                    lat.iter().map(|q| q[i]).collect(),
                )
                .param("connections", conns),
            );
        }
    }
    // Execute.
    let workflow = {
        let w = baton_model::generate::workflow(&baton_model::generate::Spec::new(
            100,
            baton_model::generate::Shape::Random,
        ));
        let body = Bytes::from(serde_json::to_vec(&w).expect("json"));
        let v = rt
            .block_on(expect(
                &client,
                "POST",
                &format!("{base}/api/v1/workflows"),
                body,
                201,
            ))
            .map_err(failed("http/execute"))?;
        v["id"].as_str().unwrap_or_default().to_string()
    };
    let runs = config.pick(&[50usize], &[20], &[3])[0];
    rt.block_on(execute(&client, &base, &workflow, 2))
        .map_err(failed("http/execute"))?;
    let mut accept = Vec::new();
    let mut complete = Vec::new();
    for _ in 0..config.repeats.max(1) {
        let e = rt
            .block_on(execute(&client, &base, &workflow, runs))
            .map_err(failed("http/execute"))?;
        accept.push(crate::stats::median(&e.accept_us));
        complete.push(crate::stats::median(&e.complete_s));
    }
    sink.push(
        Record::new(
            "http/execute/accept",
            "POST /api/v1/workflows/{id}/execute of a stored 100-task workflow: request → 202 (the run accepted durably); per sample, the median of the sample's runs",
            "us",
            false,
            accept,
        )
        .param("tasks", 100)
        .param("runs_per_sample", runs),
    );
    sink.push(
        Record::new(
            "http/execute/complete",
            "execute → GET /api/v1/executions/{id} first says completed (polled every ms); per sample, the median of the sample's runs",
            "s",
            false,
            complete,
        )
        .param("tasks", 100)
        .param("runs_per_sample", runs),
    );
    bare_task.abort();
    drop(server);
    Ok(())
}

//! Several `baton serve` instances sharing one PostgreSQL state store (and one
//! shared event log: Redis or NATS).
//!
//! - **Ownership**: an instance drives the runs it created, and the runs it took
//!   over. The store fences every write: records of a run another instance now
//!   owns are rejected, and the run is released here ([`Handle::release`]).
//! - **Leases**: every instance renews its lease every third of the lease time.
//!   An instance whose lease expired (killed, frozen, cut off) loses its unfinished
//!   runs to the survivors, which claim them in batches and resume them
//!   ([`Handle::adopt`]): takeover happens within one lease time plus one tick.
//! - **Routing**: any instance answers for any run. A call about a run held
//!   elsewhere is forwarded to its owner's advertised address (once: a forwarded
//!   call is never forwarded again); a run that ended on an instance that since
//!   died is answered from its history ([`Handle::remember`]); a run whose owner
//!   died and whose takeover is pending is answered 503 with `Retry-After`.
//! - **Catalog**: workflows posted to any instance are stored in the database too,
//!   and fetched by the others on first use.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::response::Response;
use baton_engine::Handle;
use baton_engine::store::{Postgres, RunId};
use bytes::Bytes;
use http::{HeaderValue, Method, header};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::catalog::Catalog;
use crate::error::ApiError;

/// Marks a forwarded call, so that it is not forwarded again.
const FORWARDED: &str = "x-baton-forwarded";

/// Most runs claimed from dead instances per round trip.
const CLAIM_BATCH: usize = 200;

/// What answers a call about a run this instance does not hold.
pub(crate) enum Routed {
    /// The owner's answer.
    Response(Response),
    /// The run is held here now (taken over, or learned from its history): ask
    /// the local engine again.
    Local,
}

/// A call to forward.
pub(crate) struct Call<'a> {
    /// Its method.
    pub method: Method,
    /// Its path and query.
    pub uri: &'a http::Uri,
    /// Its headers (authorization is passed on; `x-baton-forwarded` is checked).
    pub headers: &'a http::HeaderMap,
    /// Its body.
    pub body: Bytes,
}

/// This instance's part in the cluster.
pub(crate) struct Cluster {
    store: Arc<Postgres>,
    lease_ttl: Duration,
    client: Client<HttpConnector, Full<Bytes>>,
}

impl Cluster {
    /// Joins the cluster through `store` (already open: this instance is
    /// registered and its lease is running). Creates the shared catalog's table.
    pub(crate) async fn join(
        store: Arc<Postgres>,
        lease_ttl: Duration,
    ) -> Result<Cluster, sqlx::Error> {
        // The pool's connections have the store's schema as their search path.
        // Instances starting together would race on `CREATE TABLE IF NOT EXISTS`
        // (it is not atomic in PostgreSQL): one at a time, under a lock.
        let mut tx = store.pool().begin().await?;
        sqlx::query("SELECT pg_advisory_xact_lock(hashtext(current_schema() || '.catalog'))")
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "CREATE TABLE IF NOT EXISTS catalog (
                id bigint PRIMARY KEY,
                version integer NOT NULL,
                created_ms bigint NOT NULL,
                document jsonb NOT NULL
            )",
        )
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(Duration::from_secs(2)));
        Ok(Cluster {
            store,
            lease_ttl,
            client: Client::builder(TokioExecutor::new()).build(connector),
        })
    }

    /// This instance's number in run ids.
    pub(crate) fn node(&self) -> u16 {
        (self.store.instance().rem_euclid(1024)) as u16
    }

    /// Renews the lease, releases runs lost to fencing and takes over the runs of
    /// instances whose lease expired, every third of the lease time, until `cancel`.
    pub(crate) async fn run(self: Arc<Self>, engine: Handle, cancel: CancellationToken) {
        let tick = self.lease_ttl / 3;
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tokio::time::sleep(tick) => {}
            }
            if let Err(e) = self.store.heartbeat().await {
                tracing::error!(error = %e, "cannot renew this instance's lease");
            }
            let lost = self.store.lost();
            if !lost.is_empty() {
                match engine.release(lost).await {
                    Ok(n) if n > 0 => tracing::warn!(runs = n, "runs lost to another instance"),
                    _ => {}
                }
            }
            loop {
                match self.store.claim_expired(CLAIM_BATCH).await {
                    Ok(records) if records.is_empty() => break,
                    Ok(records) => match engine.adopt(records).await {
                        Ok(runs) => tracing::info!(
                            runs = runs.len(),
                            "took over runs of an instance whose lease expired"
                        ),
                        Err(e) => {
                            tracing::error!(error = %e, "cannot resume runs taken over");
                            break;
                        }
                    },
                    Err(e) => {
                        tracing::error!(error = %e, "cannot claim runs of expired instances");
                        break;
                    }
                }
            }
        }
    }

    /// Answers a call about `run`, which the local engine does not hold.
    pub(crate) async fn route(
        &self,
        engine: &Handle,
        run: RunId,
        call: Call<'_>,
    ) -> Result<Routed, ApiError> {
        let unknown = || ApiError::NotFound(format!("no execution {run}"));
        let location = self
            .store
            .locate(run)
            .await
            .map_err(|e| ApiError::Unavailable(format!("the state store: {e}")))?
            .ok_or_else(unknown)?;
        let here = location.owner == Some(self.store.instance());
        let forwarded = call.headers.contains_key(FORWARDED);
        if !here
            && !forwarded
            && location.live
            && let Some(address) = &location.address
        {
            return self.forward(address, call).await.map(Routed::Response);
        }
        if location.status.is_some_and(|s| s.is_final()) {
            // Ended on an instance that is gone (or is this one and forgot it).
            let records = self
                .store
                .run_records(run)
                .await
                .map_err(|e| ApiError::Unavailable(format!("the state store: {e}")))?;
            engine.remember(records).await?;
            return Ok(Routed::Local);
        }
        if here {
            // Taken over between the local call and the lookup.
            return Ok(Routed::Local);
        }
        let wait = self.lease_ttl.as_secs().max(1);
        Err(ApiError::Unavailable(format!(
            "execution {run} is being taken over from an instance that stopped; retry in {wait} s"
        )))
    }

    async fn forward(&self, address: &str, call: Call<'_>) -> Result<Response, ApiError> {
        let path = call
            .uri
            .path_and_query()
            .map_or_else(|| call.uri.path(), |p| p.as_str());
        let url = format!("{}{path}", address.trim_end_matches('/'));
        let mut request = http::Request::builder()
            .method(call.method)
            .uri(&url)
            .header(FORWARDED, "1");
        for name in [header::AUTHORIZATION, header::CONTENT_TYPE, header::ACCEPT] {
            if let Some(v) = call.headers.get(&name) {
                request = request.header(name, v);
            }
        }
        if let Some(v) = call.headers.get("last-event-id") {
            request = request.header("last-event-id", v);
        }
        let request = request
            .body(Full::new(call.body))
            .map_err(|e| ApiError::Internal(format!("forwarding to {url}: {e}")))?;
        let response = self.client.request(request).await.map_err(|e| {
            ApiError::Unavailable(format!(
                "the run's instance at {address} did not answer: {e}"
            ))
        })?;
        let (mut parts, body) = response.into_parts();
        parts
            .headers
            .insert(FORWARDED, HeaderValue::from_static("1"));
        // Streamed through: event streams work across instances too.
        Ok(Response::from_parts(
            parts,
            Body::new(body.map_err(axum::Error::new)),
        ))
    }

    /// Stores a workflow posted here, for the other instances.
    pub(crate) async fn share_workflow(
        &self,
        id: u64,
        version: u32,
        created_ms: u64,
        document: &Value,
    ) -> Result<(), ApiError> {
        sqlx::query(
            "INSERT INTO catalog (id, version, created_ms, document) VALUES ($1, $2, $3, $4)
             ON CONFLICT (id) DO NOTHING",
        )
        .bind(id as i64)
        .bind(version as i32)
        .bind(created_ms as i64)
        .bind(sqlx::types::Json(document))
        .execute(self.store.pool())
        .await
        .map(|_| ())
        .map_err(|e| ApiError::Unavailable(format!("sharing the workflow: {e}")))
    }

    /// Fetches a workflow posted to another instance into the local catalog.
    pub(crate) async fn fetch_workflow(
        &self,
        catalog: &Catalog,
        id: u64,
    ) -> Result<Option<Arc<crate::catalog::Entry>>, ApiError> {
        let row: Option<(i32, i64, sqlx::types::Json<Value>)> =
            sqlx::query_as("SELECT version, created_ms, document FROM catalog WHERE id = $1")
                .bind(id as i64)
                .fetch_optional(self.store.pool())
                .await
                .map_err(|e| ApiError::Unavailable(format!("reading the shared catalog: {e}")))?;
        Ok(row.and_then(|(version, created_ms, document)| {
            catalog.add_shared(id, version as u32, created_ms as u64, document.0)
        }))
    }

    /// Fetches every workflow of the shared catalog this instance has not seen.
    pub(crate) async fn sync_catalog(&self, catalog: &Catalog) -> Result<(), ApiError> {
        let rows: Vec<(i64, i32, i64, sqlx::types::Json<Value>)> = sqlx::query_as(
            "SELECT id, version, created_ms, document FROM catalog ORDER BY created_ms",
        )
        .fetch_all(self.store.pool())
        .await
        .map_err(|e| ApiError::Unavailable(format!("reading the shared catalog: {e}")))?;
        for (id, version, created_ms, document) in rows {
            let id = id as u64;
            if catalog.get(id).is_none() {
                catalog.add_shared(id, version as u32, created_ms as u64, document.0);
            }
        }
        Ok(())
    }
}

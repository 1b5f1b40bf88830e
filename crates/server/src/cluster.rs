//! Several `baton serve` instances sharing one PostgreSQL state store (and one
//! shared event log: Redis or NATS).
//!
//! - **Ownership, leases, takeover**: the engine's rules
//!   ([`baton_engine::cluster`]): an instance drives the runs it created and those
//!   it took over; it releases runs fenced away from it and takes over the runs of
//!   instances whose lease expired, within one lease time plus one tick.
//! - **Routing**: any instance answers for any run. A call about a run held
//!   elsewhere is forwarded to its owner's advertised address (once: a forwarded
//!   call is never forwarded again); a run that ended on an instance that since
//!   died is answered from its history ([`Handle::remember`]); a run whose owner
//!   died and whose takeover is pending is answered 503 with `Retry-After`.
//! - **Catalog**: workflows posted to any instance are stored in the database too
//!   (the store's shared catalog, documents kept as written), and fetched by the
//!   others on first use.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::response::Response;
use baton_engine::Handle;
use baton_engine::cluster::Member;
use baton_engine::store::{Postgres, RunId, SharedWorkflow};
use bytes::Bytes;
use http::{HeaderValue, Method, header};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::catalog::{Catalog, Entry};
use crate::error::ApiError;

/// Marks a forwarded call, so that it is not forwarded again; with a client
/// CA, it must come with an instance's certificate.
pub(crate) const FORWARDED: &str = "x-baton-forwarded";

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

/// This instance's part in the cluster: the engine's [`Member`] (lease,
/// fencing, takeover) and the client that forwards calls to other instances.
pub(crate) struct Cluster {
    member: Member,
    client: Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>,
}

impl Cluster {
    /// Joins the cluster through `store` (already open: this instance is
    /// registered and its lease is running). With `tls`, calls go to the
    /// other instances' `https://` addresses, verified against the client CA
    /// and made with this instance's certificate (mTLS).
    pub(crate) fn join(
        store: Arc<Postgres>,
        tls: Option<&crate::TlsFiles>,
    ) -> Result<Cluster, crate::tls::Error> {
        let mut http = HttpConnector::new();
        http.set_nodelay(true);
        http.set_connect_timeout(Some(Duration::from_secs(2)));
        http.enforce_http(false);
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(crate::tls::client_config(tls)?)
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        Ok(Cluster {
            member: Member::new(store, baton_engine::cluster::Options::default()),
            client: Client::builder(TokioExecutor::new()).build(connector),
        })
    }

    /// The engine's options for this instance (its node number in run ids).
    pub(crate) fn engine_options(&self, options: baton_engine::Options) -> baton_engine::Options {
        self.member.engine_options(options)
    }

    fn store(&self) -> &Postgres {
        self.member.store()
    }

    /// The instances sharing the store, this one marked.
    pub(crate) async fn instances(&self) -> Result<Vec<baton_api::InstanceOut>, ApiError> {
        let this = self.store().instance();
        let all =
            self.store().instances().await.map_err(|e| {
                ApiError::Unavailable(format!("the state store is not answering: {e}"))
            })?;
        Ok(all
            .into_iter()
            .map(|i| baton_api::InstanceOut {
                this: i.id == this,
                id: i.id,
                name: i.name,
                address: i.address,
                started_at_ms: i.started_at_ms,
                lease_left_ms: i.lease_left_ms,
                runs: i.runs,
            })
            .collect())
    }

    /// Keeps this instance's lease, releases runs lost to fencing and takes over
    /// the runs of instances whose lease expired, until `cancel`. A lease found
    /// gone is logged and tried again at the next tick.
    pub(crate) async fn run(self: Arc<Self>, engine: Handle, cancel: CancellationToken) {
        while let Err(e) = self.member.run(&engine, cancel.cancelled()).await {
            tracing::error!(error = %e, "this instance's lease is gone; its runs belong to others");
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
            .store()
            .locate(run)
            .await
            .map_err(|e| ApiError::Unavailable(format!("the state store: {e}")))?
            .ok_or_else(unknown)?;
        let here = location.owner == Some(self.store().instance());
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
                .store()
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
        let wait = self.store().lease_ttl().as_secs().max(1);
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
        // One id for the request on both instances, to follow it in both logs.
        use crate::request_id::{CURRENT, REQUEST_ID};
        if let Ok(id) = CURRENT.try_with(|id| id.clone()) {
            request = request.header(REQUEST_ID, &*id);
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
        catalog: &Catalog,
        entry: &Entry,
    ) -> Result<(), ApiError> {
        let shared = SharedWorkflow {
            id: entry.id,
            version: entry.version,
            created_ms: entry.created_ms,
            document: catalog.compiled(entry)?.document.to_string(),
        };
        self.store()
            .share_workflow(&shared)
            .await
            .map_err(|e| ApiError::Unavailable(format!("sharing the workflow: {e}")))
    }

    /// Fetches a workflow posted to another instance into the local catalog.
    pub(crate) async fn fetch_workflow(
        &self,
        catalog: &Catalog,
        id: u64,
    ) -> Result<Option<Arc<Entry>>, ApiError> {
        let shared = self
            .store()
            .shared_workflow(id)
            .await
            .map_err(|e| ApiError::Unavailable(format!("reading the shared catalog: {e}")))?;
        Ok(shared.and_then(|w| add(catalog, w)))
    }

    /// Fetches every workflow of the shared catalog this instance has not seen.
    pub(crate) async fn sync_catalog(&self, catalog: &Catalog) -> Result<(), ApiError> {
        let shared = self
            .store()
            .shared_workflows()
            .await
            .map_err(|e| ApiError::Unavailable(format!("reading the shared catalog: {e}")))?;
        for workflow in shared {
            if catalog.get(workflow.id).is_none() {
                add(catalog, workflow);
            }
        }
        Ok(())
    }
}

/// Adds a shared workflow to the local catalog (`None`, logged, if its document
/// does not parse here).
fn add(catalog: &Catalog, workflow: SharedWorkflow) -> Option<Arc<Entry>> {
    match serde_json::from_str::<Value>(&workflow.document) {
        Ok(document) => {
            catalog.add_shared(workflow.id, workflow.version, workflow.created_ms, document)
        }
        Err(e) => {
            tracing::warn!(id = workflow.id, error = %e, "a shared workflow is not JSON");
            None
        }
    }
}

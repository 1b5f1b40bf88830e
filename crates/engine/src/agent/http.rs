//! The `http` agent: calls a remote agent with an A2A-style JSON-RPC 2.0
//! `message/send` request.
//!
//! The call's input travels as the single `data` part of a user message; the
//! answer's data and text parts become the task's output. Each agent has one
//! HTTP/1.1 client, so calls reuse kept-alive connections.
//!
//! | answer | outcome |
//! |---|---|
//! | 2xx, JSON-RPC `result` | the output: data and text parts of the message or of the task's artifacts; a task still `submitted` or `working` is asked after with `tasks/get` (after 0.2 s, doubling up to 5 s) until it ends |
//! | 2xx, JSON-RPC `error` | permanent failure with its code and message |
//! | 5xx, 408, 429, connection error | retryable failure (after the answer's `Retry-After`, in seconds, when it gives one) |
//! | other 4xx and 1xx/3xx | permanent failure |
//! | a body that is not JSON, or larger than 16 MiB | permanent failure |
//!
//! `https://` URLs are reached over TLS (rustls, TLS 1.2 and 1.3) with the
//! system's trusted roots (`SSL_CERT_FILE` or `SSL_CERT_DIR` add an internal
//! certificate authority); a certificate that does not verify is a permanent
//! failure.
//!
//! Where an agent may connect is its [`Egress`]: with [`Egress::Public`] (what
//! `baton serve` uses) an address that is not public (loopback, private,
//! link-local such as a cloud's metadata service, unique-local, shared,
//! reserved) is refused unless the URL's host is listed, whether the URL names
//! the address or a name resolves to it; the check is made on the addresses the
//! connection really uses, so a name that changes its answer (DNS rebinding)
//! gains nothing. Redirects are never followed (a 3xx is a failure), a
//! connection must be made within 10 s and an answer is read up to 16 MiB.

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::header::{ACCEPT, CONTENT_TYPE};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, StatusCode, Uri};
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper_rustls::{ConfigBuilderExt, HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::connect::dns::Name;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use serde_json::{Value, json};

use super::{Call, Failure, Outcome, Runner, Started};

/// The largest response body read.
const BODY_LIMIT: usize = 16 << 20;
/// The longest a connection may take to open.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Where `http` agents may connect.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Egress {
    /// Anywhere: what a person running their own workflow gets (`baton run`).
    #[default]
    Open,
    /// Public addresses only, except for the hosts listed (as written in URLs:
    /// `127.0.0.1`, `[::1]`, `agents.internal`; compared without case), which
    /// may be anywhere: what a server gets.
    Public {
        /// Hosts allowed at addresses that are not public.
        private_hosts: Vec<String>,
    },
}

impl Egress {
    /// Whether `host` may be reached at any address.
    fn anywhere(&self, host: &str) -> bool {
        match self {
            Egress::Open => true,
            Egress::Public { private_hosts } => private_hosts.iter().any(|h| {
                let listed = h.trim_start_matches('[').trim_end_matches(']');
                listed.eq_ignore_ascii_case(host.trim_start_matches('[').trim_end_matches(']'))
            }),
        }
    }
}

/// Whether an address is on the public internet: not loopback, private,
/// link-local, unique-local, shared (carrier NAT), documentation, multicast,
/// broadcast, unspecified or reserved. IPv6 addresses that carry an IPv4 one
/// (mapped, NAT64) are judged by it.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            !(v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_broadcast()
                || v4.is_documentation()
                || v4.is_unspecified()
                || v4.is_multicast()
                || a == 0
                || a >= 240
                || (a == 100 && (64..128).contains(&b))
                || (a == 192 && b == 0 && v4.octets()[2] == 0)
                || (a == 198 && (18..20).contains(&b)))
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public(IpAddr::V4(v4));
            }
            let s = v6.segments();
            // NAT64 (64:ff9b::/96): the last 32 bits are the IPv4 address.
            if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
                let [.., a, b, c, d] = v6.octets();
                return is_public(IpAddr::V4(std::net::Ipv4Addr::new(a, b, c, d)));
            }
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || v6.is_unique_local()
                || v6.is_unicast_link_local()
                || (s[0] == 0x2001 && s[1] == 0x0db8)
                || (s[0] == 0x0100 && s[1..4] == [0; 3]))
        }
    }
}

/// A connection [`Egress`] refused; permanent, since trying again changes nothing.
#[derive(Debug, thiserror::Error)]
#[error(
    "`{host}` is at {addr}, which is not a public address: list `{host}` in the server's `allow_private_hosts` to let agents reach it"
)]
struct Refused {
    host: String,
    addr: IpAddr,
}

/// Resolves names with the system's resolver and drops the addresses
/// [`Egress`] refuses.
#[derive(Debug, Clone)]
struct Resolve {
    /// Whether every address is fine (the host is listed, or egress is open).
    anywhere: bool,
}

impl tower_service::Service<Name> for Resolve {
    type Response = std::vec::IntoIter<SocketAddr>;
    type Error = std::io::Error;
    type Future = Pin<Box<dyn Future<Output = std::io::Result<Self::Response>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, name: Name) -> Self::Future {
        let anywhere = self.anywhere;
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let found: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            if anywhere {
                return Ok(found.into_iter());
            }
            let public: Vec<SocketAddr> = found
                .iter()
                .copied()
                .filter(|a| is_public(a.ip()))
                .collect();
            match (public.is_empty(), found.first()) {
                (true, Some(first)) => Err(std::io::Error::new(
                    std::io::ErrorKind::PermissionDenied,
                    Refused {
                        host,
                        addr: first.ip(),
                    },
                )),
                _ => Ok(public.into_iter()),
            }
        })
    }
}
/// How much of an unexpected body a failure message quotes.
const EXCERPT: usize = 200;

/// An agent reached over HTTP with JSON-RPC `message/send` (or
/// `message/stream`).
#[derive(Debug, Clone)]
pub struct Http {
    inner: Arc<Endpoint>,
    /// Whether calls use `message/stream`.
    stream: bool,
    /// For an agent given its card's URL (`inner` gets the card): the agent
    /// the card describes, once read.
    card: Option<Arc<tokio::sync::OnceCell<Http>>>,
    /// The headers and the egress the described agent is built with.
    built_with: Arc<BuiltWith>,
}

/// What an agent was built with, for the agent its card describes.
struct BuiltWith {
    headers: Vec<(String, String)>,
    egress: Egress,
}

impl std::fmt::Debug for BuiltWith {
    /// Header values often carry credentials: only their names are shown.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BuiltWith")
            .field(
                "headers",
                &self.headers.iter().map(|(n, _)| n).collect::<Vec<_>>(),
            )
            .field("egress", &self.egress)
            .finish()
    }
}

/// A URL that JSON is posted to, with one pooled HTTP/1.1 client, under an
/// [`Egress`] policy: what the `http` and `llm` agents share.
#[derive(Debug)]
pub(super) struct Endpoint {
    client: Client<HttpsConnector<HttpConnector<Resolve>>, Full<Bytes>>,
    url: Uri,
    /// Sent with every request: the configured ones plus the JSON content type.
    headers: HeaderMap,
}

impl Http {
    /// An agent posting to `url` with `headers` added to each request.
    ///
    /// Fails, with a message for people, on a URL that is not
    /// `http[s]://host[:port]/...`, a header that is not valid HTTP, an address
    /// that `egress` refuses, or an `https://` URL on a system without trusted
    /// roots.
    pub fn new(url: &str, headers: &[(String, String)], egress: &Egress) -> Result<Http, String> {
        Ok(Http {
            inner: Arc::new(Endpoint::new(url, headers, egress)?),
            stream: false,
            card: super::card::is_card_url(url).then(Default::default),
            built_with: Arc::new(BuiltWith {
                headers: headers.to_vec(),
                egress: egress.clone(),
            }),
        })
    }

    /// The agent calls go to: this one, or the one its card describes (the
    /// card read at the first call; a card that cannot be read fails the
    /// call, and the next call reads it again).
    async fn target(&self) -> Result<Http, Failure> {
        let Some(cell) = &self.card else {
            return Ok(self.clone());
        };
        cell.get_or_try_init(|| async {
            let card = super::card::fetch(&self.inner).await?;
            let BuiltWith { headers, egress } = &*self.built_with;
            let agent = Http::new(&card.url, headers, egress).map_err(Failure::permanent)?;
            Ok(agent.streaming(self.stream || card.streaming))
        })
        .await
        .cloned()
    }

    /// The same agent asking with `message/stream` (`true`) or
    /// `message/send`.
    pub fn streaming(self, stream: bool) -> Http {
        Http { stream, ..self }
    }
}

impl Endpoint {
    /// See [`Http::new`]: the same checks, the same messages.
    pub(super) fn new(
        url: &str,
        headers: &[(String, String)],
        egress: &Egress,
    ) -> Result<Endpoint, String> {
        let tls = match url.get(..8) {
            Some(scheme) if scheme.eq_ignore_ascii_case("https://") => system_tls()?,
            _ => OFF_TLS.get_or_init(untrusting_tls).clone(),
        };
        Endpoint::with_tls(url, headers, egress, tls)
    }

    /// [`Endpoint::new`] with the TLS configuration given (the system's
    /// roots, or a test's own).
    pub(super) fn with_tls(
        url: &str,
        headers: &[(String, String)],
        egress: &Egress,
        tls: rustls::ClientConfig,
    ) -> Result<Endpoint, String> {
        let uri: Uri = url
            .parse()
            .map_err(|e| format!("`{url}` is not a valid URL: {e}"))?;
        match uri.scheme_str() {
            Some("http" | "https") => {}
            Some(other) => {
                return Err(format!(
                    "`{url}`: unsupported scheme `{other}`, expected http[s]://host[:port]/path"
                ));
            }
            None => {
                return Err(format!(
                    "`{url}` is not an absolute URL: expected http[s]://host[:port]/path"
                ));
            }
        }
        let Some(host) = uri.host().filter(|h| !h.is_empty()) else {
            return Err(format!(
                "`{url}` has no host: expected http[s]://host[:port]/path"
            ));
        };
        let anywhere = egress.anywhere(host);
        // The connector does not resolve an address: check it here.
        if let Ok(addr) = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
            && !anywhere
            && !is_public(addr)
        {
            return Err(format!(
                "`{url}`: {}",
                Refused {
                    host: host.to_owned(),
                    addr
                }
            ));
        }

        let mut map = HeaderMap::new();
        for (name, value) in headers {
            let header = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| format!("`{name}` is not a valid HTTP header name"))?;
            let mut value = HeaderValue::from_str(value).map_err(|_| {
                format!("the value of header `{name}` is not valid in HTTP (control characters?)")
            })?;
            // Configured headers often carry credentials: keep them out of `Debug` output.
            value.set_sensitive(true);
            map.append(header, value);
        }
        let json = HeaderValue::from_static("application/json");
        if !map.contains_key(CONTENT_TYPE) {
            map.insert(CONTENT_TYPE, json.clone());
        }
        if !map.contains_key(ACCEPT) {
            map.insert(ACCEPT, json);
        }

        let mut connector = HttpConnector::new_with_resolver(Resolve { anywhere });
        // Requests are small and latency matters more than packet count.
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(CONNECT_TIMEOUT));
        // The TLS layer sees `https://` URLs; plain ones pass through.
        connector.enforce_http(false);
        let connector = HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(connector);
        let client = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(Duration::from_secs(60))
            .build(connector);
        Ok(Endpoint {
            client,
            url: uri,
            headers: map,
        })
    }

    /// The URL posted to.
    pub(super) fn url(&self) -> &Uri {
        &self.url
    }

    /// A request to the URL with the agent's headers.
    fn request(&self, method: Method, body: Vec<u8>) -> Request<Full<Bytes>> {
        let mut request = Request::new(Full::new(Bytes::from(body)));
        *request.method_mut() = method;
        *request.uri_mut() = self.url.clone();
        *request.headers_mut() = self.headers.clone();
        request
    }

    /// Posts `body` and reads the answer (at most 16 MiB): its status, its
    /// headers and its body. A connection that cannot be made is retryable,
    /// unless egress refused it.
    pub(super) async fn post(
        &self,
        body: Vec<u8>,
    ) -> Result<(StatusCode, HeaderMap, Bytes), Failure> {
        self.answer(self.request(Method::POST, body)).await
    }

    /// Gets the URL (an A2A agent card), as [`Endpoint::post`] posts.
    pub(super) async fn get(&self) -> Result<(StatusCode, HeaderMap, Bytes), Failure> {
        let mut request = self.request(Method::GET, Vec::new());
        request.headers_mut().remove(CONTENT_TYPE);
        self.answer(request).await
    }

    async fn answer(
        &self,
        request: Request<Full<Bytes>>,
    ) -> Result<(StatusCode, HeaderMap, Bytes), Failure> {
        let url = &self.url;
        let response = self.client.request(request).await.map_err(|e| Failure {
            message: format!("cannot reach {url}: {}", chain(&e)),
            retryable: !refused(&e),
            retry_after: None,
        })?;
        let status = response.status();
        let headers = response.headers().clone();
        let body = Limited::new(response.into_body(), BODY_LIMIT)
            .collect()
            .await
            .map(|collected| collected.to_bytes())
            .map_err(|e| {
                if e.downcast_ref::<LengthLimitError>().is_some() {
                    Failure::permanent(format!(
                        "the answer from {url} is larger than {} MiB",
                        BODY_LIMIT >> 20
                    ))
                } else {
                    Failure::retryable(format!(
                        "the answer from {url} broke off: {}",
                        chain(e.as_ref())
                    ))
                }
            })?;
        Ok((status, headers, body))
    }
}

/// The TLS configuration of `https://` agents: the system's trusted roots,
/// read once per process.
fn system_tls() -> Result<rustls::ClientConfig, String> {
    static SYSTEM: OnceLock<Result<rustls::ClientConfig, String>> = OnceLock::new();
    SYSTEM
        .get_or_init(|| {
            tls_builder()
                .with_native_roots()
                .map(|b| b.with_no_client_auth())
                .map_err(|e| {
                    format!(
                        "https needs trusted certificate authorities and none were found \
                         ({e}): install the system's CA certificates (Debian: ca-certificates) \
                         or name a PEM bundle in SSL_CERT_FILE"
                    )
                })
        })
        .clone()
}

/// What a plain `http://` endpoint's connector holds: it never makes a TLS
/// connection, so it trusts no one.
static OFF_TLS: OnceLock<rustls::ClientConfig> = OnceLock::new();

fn untrusting_tls() -> rustls::ClientConfig {
    tls_builder()
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth()
}

/// rustls on ring (named, not the process default: several providers may be
/// built in) with the safe protocol versions.
pub(super) fn tls_builder() -> rustls::ConfigBuilder<rustls::ClientConfig, rustls::WantsVerifier> {
    rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .expect("ring supports the default TLS versions")
}

/// What a streaming request was answered with.
pub(super) enum Streamed {
    /// A server-sent event stream, whose events were handed over one by one.
    Events,
    /// A plain body (a server that does not stream this request).
    Body(Bytes),
}

impl Endpoint {
    /// Posts `body` asking for a server-sent event stream, and hands the
    /// `data` of each event to `on_data` as it arrives (several `data` lines
    /// joined with newlines), up to 16 MiB in all; an error from `on_data`
    /// ends the stream with it. A 2xx answer that is not `text/event-stream`
    /// is read whole and returned; a non-2xx one is the failure
    /// [`status_failure`] makes of it.
    pub(super) async fn post_stream(
        &self,
        body: Vec<u8>,
        mut on_data: impl FnMut(&str) -> Result<(), Failure>,
    ) -> Result<Streamed, Failure> {
        let url = &self.url;
        let mut request = self.request(Method::POST, body);
        request
            .headers_mut()
            .insert(ACCEPT, HeaderValue::from_static("text/event-stream"));
        let response = self.client.request(request).await.map_err(|e| Failure {
            message: format!("cannot reach {url}: {}", chain(&e)),
            retryable: !refused(&e),
            retry_after: None,
        })?;
        let status = response.status();
        let headers = response.headers().clone();
        let events = headers
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim_start().starts_with("text/event-stream"));
        let broke = |e: &(dyn std::error::Error + 'static)| {
            Failure::retryable(format!("the answer from {url} broke off: {}", chain(e)))
        };
        if !status.is_success() || !events {
            let body = Limited::new(response.into_body(), BODY_LIMIT)
                .collect()
                .await
                .map(|c| c.to_bytes())
                .map_err(|e| match e.downcast_ref::<LengthLimitError>() {
                    Some(_) => Failure::permanent(format!(
                        "the answer from {url} is larger than {} MiB",
                        BODY_LIMIT >> 20
                    )),
                    None => broke(e.as_ref()),
                })?;
            if !status.is_success() {
                return Err(status_failure(url, status, &headers, &body));
            }
            return Ok(Streamed::Body(body));
        }
        let mut body = response.into_body();
        let mut sse = Sse::default();
        let mut read = 0;
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| broke(&e))?;
            let Ok(data) = frame.into_data() else {
                continue;
            };
            read += data.len();
            if read > BODY_LIMIT {
                return Err(Failure::permanent(format!(
                    "the event stream from {url} is larger than {} MiB",
                    BODY_LIMIT >> 20
                )));
            }
            sse.feed(&data, &mut on_data)?;
        }
        sse.feed(b"\n\n", &mut on_data)?;
        Ok(Streamed::Events)
    }
}

/// A server-sent event stream cut into events: only `data` lines count
/// (`event`, `id`, `retry` and comments are skipped).
#[derive(Default)]
struct Sse {
    /// The start of a line not ended yet.
    line: Vec<u8>,
    /// The data of the event not ended yet.
    data: String,
    /// Whether the event has a `data` line (an empty one counts).
    has_data: bool,
}

impl Sse {
    fn feed(
        &mut self,
        mut bytes: &[u8],
        on_data: &mut impl FnMut(&str) -> Result<(), Failure>,
    ) -> Result<(), Failure> {
        while let Some(end) = bytes.iter().position(|&b| b == b'\n') {
            self.line.extend_from_slice(&bytes[..end]);
            bytes = &bytes[end + 1..];
            let mut line = std::mem::take(&mut self.line);
            if line.last() == Some(&b'\r') {
                line.pop();
            }
            if line.is_empty() {
                if std::mem::take(&mut self.has_data) {
                    let data = std::mem::take(&mut self.data);
                    on_data(&data)?;
                }
                continue;
            }
            let text = String::from_utf8_lossy(&line);
            if let Some(value) = text.strip_prefix("data:") {
                if self.has_data {
                    self.data.push('\n');
                }
                self.data.push_str(value.strip_prefix(' ').unwrap_or(value));
                self.has_data = true;
            }
        }
        self.line.extend_from_slice(bytes);
        Ok(())
    }
}

/// A 2xx answer's body as JSON; a permanent failure quoting it otherwise.
pub(super) fn json_answer(url: &Uri, body: &[u8]) -> Result<Value, Failure> {
    serde_json::from_slice(body).map_err(|e| {
        Failure::permanent(format!(
            "{url} answered with something that is not JSON ({e}): {}",
            excerpt(body)
        ))
    })
}

/// A failure for an answer that is not 2xx: retryable for 5xx, 408 and 429,
/// after the answer's `Retry-After` (in seconds) when it gives one.
pub(super) fn status_failure(
    url: &Uri,
    status: StatusCode,
    headers: &HeaderMap,
    body: &[u8],
) -> Failure {
    let message = format!("{url} answered HTTP {status}: {}", excerpt(body));
    let retryable = status.is_server_error()
        || status == StatusCode::TOO_MANY_REQUESTS
        || status == StatusCode::REQUEST_TIMEOUT;
    let retry_after = headers
        .get(http::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs);
    Failure {
        message,
        retryable,
        retry_after,
    }
}

impl Runner for Http {
    /// Streamed answers are reported as they arrive, and a task that needs
    /// input asks for it through the reporter.
    fn reports_progress(&self) -> bool {
        true
    }

    fn start(&self, call: Call) -> Started {
        Started::Later(Box::pin(send(self.clone(), call)))
    }
}

/// The JSON-RPC request for a call: `method` (`message/send` or
/// `message/stream`) with `input` as the message's data part, in the A2A
/// task `resume` names (its id and context) when it continues one.
fn request_body(call: &Call, method: &str, input: &Value, resume: Option<&Value>) -> Value {
    let id = format!("{}/{}/{}", call.run, call.task, call.attempt);
    let mut message = json!({
        "role": "user",
        "messageId": id,
        "parts": [{"kind": "data", "data": input}],
        "metadata": {
            "baton": {
                "run": call.run.to_string(),
                "task": &*call.task,
                "attempt": call.attempt,
            }
        }
    });
    if let Some(task) = resume {
        message["messageId"] = format!("{id}/{}", now_ns()).into();
        message["taskId"] = task.get("id").cloned().unwrap_or(Value::Null);
        if let Some(context) = task.get("contextId") {
            message["contextId"] = context.clone();
        }
    }
    json!({"jsonrpc": "2.0", "id": id, "method": method, "params": {"message": message}})
}

/// A unique enough suffix for the id of a message that continues a task.
fn now_ns() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos())
}

/// The first wait before asking how an A2A task that has not finished is
/// doing; each next wait doubles, up to [`POLL_MAX`].
const POLL_FIRST: Duration = Duration::from_millis(200);
const POLL_MAX: Duration = Duration::from_secs(5);

/// Sends one call and interprets the answer. An A2A task that is
/// `submitted` or `working` is asked after (`tasks/get`) until it ends; one
/// that is `input-required` gets its input from a person through the run's
/// events (see [`super::Progress::ask`]) and goes on; the task's `timeout`
/// bounds it all.
async fn send(agent: Http, call: Call) -> Outcome {
    let agent = agent.target().await?;
    let mut result = message(&agent, &call, &call.input, None).await?;
    let mut wait = POLL_FIRST;
    loop {
        match state(&result) {
            Some("submitted" | "working") => {
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(POLL_MAX);
                let id_of = format!("{}/{}/{}", call.run, call.task, call.attempt);
                let id = result.get("id").cloned().unwrap_or(Value::Null);
                let ask = json!({"jsonrpc": "2.0", "id": id_of, "method": "tasks/get", "params": {"id": id}});
                result = rpc(&agent.inner, &call, ask).await?;
            }
            Some("input-required") if call.progress.is_some() => {
                let question = result
                    .pointer("/status/message/parts")
                    .and_then(Value::as_array)
                    .map_or(Value::Null, |parts| parts_value(parts.iter()));
                let Some(progress) = &call.progress else {
                    return output(&result);
                };
                let answer = progress.ask(question).await?;
                result = message(&agent, &call, &answer, Some(&result)).await?;
                wait = POLL_FIRST;
            }
            _ => return output(&result),
        }
    }
}

/// The state of an A2A task (`None` for a message or another result).
fn state(result: &Value) -> Option<&str> {
    if result.get("kind").and_then(Value::as_str) != Some("task") {
        return None;
    }
    result.pointer("/status/state").and_then(Value::as_str)
}

/// Sends `input` as a message (continuing the task `resume`, if given),
/// with `message/stream` or `message/send` as the agent does.
async fn message(
    agent: &Http,
    call: &Call,
    input: &Value,
    resume: Option<&Value>,
) -> Result<Value, Failure> {
    if !agent.stream {
        return rpc(
            &agent.inner,
            call,
            request_body(call, "message/send", input, resume),
        )
        .await;
    }
    let request = request_body(call, "message/stream", input, resume);
    let body = serde_json::to_vec(&request)
        .map_err(|e| Failure::permanent(format!("cannot encode the input as JSON: {e}")))?;
    let url = &agent.inner.url;
    let mut task: Option<Value> = resume.cloned();
    let mut answer: Option<Value> = None;
    let streamed = agent
        .inner
        .post_stream(body, |data| {
            let result = rpc_result(url, data.as_bytes())?;
            follow(&mut task, &mut answer, result, call.progress.as_ref());
            Ok(())
        })
        .await?;
    if let Streamed::Body(body) = streamed {
        return rpc_result(url, &body);
    }
    answer.or(task).ok_or_else(|| {
        Failure::retryable(format!(
            "the event stream from {url} ended without a task or a message"
        ))
    })
}

/// One result of a `message/stream`: a message is the answer; a task is the
/// task as it is now; a status or an artifact update changes it, and is
/// reported as progress (`{"state", "message"}` or `{"artifact"}`).
fn follow(
    task: &mut Option<Value>,
    answer: &mut Option<Value>,
    result: Value,
    progress: Option<&super::Progress>,
) {
    match result.get("kind").and_then(Value::as_str) {
        Some("status-update") => {
            let current = task.get_or_insert_with(|| json!({"kind": "task", "artifacts": []}));
            current["kind"] = "task".into();
            for (from, to) in [("taskId", "id"), ("contextId", "contextId")] {
                if let Some(v) = result.get(from) {
                    current[to] = v.clone();
                }
            }
            let status = result.get("status").cloned().unwrap_or(Value::Null);
            if let Some(p) = progress {
                let mut report = json!({"state": status.get("state")});
                if let Some(parts) = status.pointer("/message/parts").and_then(Value::as_array) {
                    report["message"] = parts_value(parts.iter());
                }
                p.report(report);
            }
            current["status"] = status;
        }
        Some("artifact-update") => {
            let current = task.get_or_insert_with(|| json!({"kind": "task", "artifacts": []}));
            let artifact = result.get("artifact").cloned().unwrap_or(Value::Null);
            let parts = artifact
                .get("parts")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            if let Some(p) = progress {
                p.report(json!({"artifact": parts_value(parts.iter())}));
            }
            let append = result.get("append").and_then(Value::as_bool) == Some(true);
            let id = artifact.get("artifactId").cloned();
            if !current.get("artifacts").is_some_and(Value::is_array) {
                current["artifacts"] = json!([]);
            }
            let Some(list) = current.get_mut("artifacts").and_then(Value::as_array_mut) else {
                return;
            };
            let same = list
                .iter_mut()
                .find(|a| id.is_some() && a.get("artifactId") == id.as_ref());
            match same {
                Some(existing) if append => {
                    if let Some(existing) = existing.get_mut("parts").and_then(Value::as_array_mut)
                    {
                        existing.extend(parts);
                    }
                }
                Some(existing) => *existing = artifact,
                None => list.push(artifact),
            }
        }
        Some("task") => *task = Some(result),
        _ => *answer = Some(result),
    }
}

/// One JSON-RPC request and its `result`.
async fn rpc(inner: &Endpoint, call: &Call, request: Value) -> Result<Value, Failure> {
    let url = &inner.url;
    let body = serde_json::to_vec(&request)
        .map_err(|e| Failure::permanent(format!("cannot encode the input as JSON: {e}")))?;
    let (status, headers, body) = inner.post(body).await?;
    tracing::debug!(
        run = %call.run,
        task = %call.task,
        attempt = call.attempt,
        %url,
        status = status.as_u16(),
        bytes = body.len(),
        "http agent answered"
    );
    if !status.is_success() {
        return Err(status_failure(url, status, &headers, &body));
    }
    rpc_result(url, &body)
}

/// The `result` of a JSON-RPC answer; its `error` as a permanent failure.
fn rpc_result(url: &Uri, body: &[u8]) -> Result<Value, Failure> {
    let answer = json_answer(url, body)?;
    if let Some(error) = answer.get("error") {
        let code = error.get("code").map_or(Value::Null, Value::clone);
        let message = error
            .get("message")
            .and_then(Value::as_str)
            .unwrap_or("(no message)");
        let mut text = format!("{url} answered JSON-RPC error {code}: {message}");
        if let Some(data) = error.get("data") {
            text.push_str(&format!(" ({})", excerpt(data.to_string().as_bytes())));
        }
        return Err(Failure::permanent(text));
    }
    match answer.get("result") {
        Some(result) => Ok(result.clone()),
        None => Err(Failure::permanent(format!(
            "{url} answered without a JSON-RPC `result` or `error`: {}",
            excerpt(body)
        ))),
    }
}

/// The task's output from a JSON-RPC `result`:
/// - a message (`kind: "message"`): its parts;
/// - a task (`kind: "task"`): the parts of its artifacts, or a permanent failure
///   if the task `failed`, was `rejected` or `canceled`, or waits for
///   something Baton does not give (`auth-required`);
/// - anything else: the result as is.
///
/// Parts become values: a data part its `data`, a text part its `text` as a
/// string, a file part its `file` object, others as they are. One part gives
/// that value, several an array of them, none `null`.
fn output(result: &Value) -> Outcome {
    match result.get("kind").and_then(Value::as_str) {
        Some("message") => Ok(parts_value(
            result
                .get("parts")
                .and_then(Value::as_array)
                .into_iter()
                .flatten(),
        )),
        Some("task") => {
            let state = result.pointer("/status/state").and_then(Value::as_str);
            match state {
                None | Some("completed") => {}
                Some(state @ ("failed" | "rejected" | "canceled")) => {
                    let parts = result
                        .pointer("/status/message/parts")
                        .and_then(Value::as_array);
                    let text: Vec<&str> = parts
                        .into_iter()
                        .flatten()
                        .filter_map(|part| part.get("text").and_then(Value::as_str))
                        .collect();
                    let text = if text.is_empty() {
                        "(no message)".to_owned()
                    } else {
                        text.join(" ")
                    };
                    return Err(Failure::permanent(format!(
                        "the agent's task {state}: {text}"
                    )));
                }
                Some(state) => {
                    return Err(Failure::permanent(format!(
                        "the agent's task ended `{state}`, which Baton cannot answer \
                         (an `input-required` task is answered through the run's events \
                         when the call can report; see docs/patterns.md)"
                    )));
                }
            }
            let parts = result
                .get("artifacts")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(|artifact| artifact.get("parts").and_then(Value::as_array))
                .flatten();
            Ok(parts_value(parts))
        }
        _ => Ok(result.clone()),
    }
}

/// One value for a list of parts (see [`output`]).
fn parts_value<'a>(parts: impl Iterator<Item = &'a Value>) -> Value {
    let mut values: Vec<Value> = parts
        .map(|part| {
            let field = match part.get("kind").and_then(Value::as_str) {
                Some("data") => "data",
                Some("text") => "text",
                Some("file") => "file",
                _ => return part.clone(),
            };
            part.get(field).cloned().unwrap_or(Value::Null)
        })
        .collect();
    match values.len() {
        0 => Value::Null,
        1 => values.pop().unwrap_or(Value::Null),
        _ => Value::Array(values),
    }
}

/// The start of a body, for messages.
pub(super) fn excerpt(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    if text.is_empty() {
        return "(empty body)".to_owned();
    }
    match text.char_indices().nth(EXCERPT) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_owned(),
    }
}

/// Whether the connection failed in a way trying again does not change:
/// [`Egress`] refused it, or TLS did (a certificate that does not verify, no
/// protocol in common), somewhere in the error's causes.
fn refused(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut source = Some(error);
    while let Some(e) = source {
        if e.is::<Refused>() || e.is::<rustls::Error>() {
            return true;
        }
        // An I/O error's `source` skips the error it wraps: look at it too
        // (the TLS layer wraps one I/O error in another).
        if let Some(inner) = e
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
            && refused(inner)
        {
            return true;
        }
        source = e.source();
    }
    false
}

/// An error with its causes: hyper's own messages are terse ("client error (Connect)").
fn chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
    use tokio::net::TcpListener;
    use tokio::sync::mpsc;

    use super::*;
    use crate::store::RunId;

    /// What the test server saw of one request.
    #[derive(Debug)]
    struct Seen {
        request_line: String,
        /// Header names in lower case.
        headers: Vec<(String, String)>,
        body: Value,
    }

    impl Seen {
        fn header(&self, name: &str) -> Option<&str> {
            self.headers
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.as_str())
        }
    }

    /// A server on 127.0.0.1 that answers every request with `status` and
    /// `body`, keeps connections alive, and reports each request.
    struct Server {
        url: String,
        seen: mpsc::UnboundedReceiver<Seen>,
        connections: Arc<AtomicUsize>,
    }

    async fn serve(status: &'static str, body: &'static str) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/a2a", listener.local_addr().unwrap());
        let (tx, seen) = mpsc::unbounded_channel();
        let connections = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&connections);
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                counter.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(connection(stream, status, body, tx.clone()));
            }
        });
        Server {
            url,
            seen,
            connections,
        }
    }

    /// [`serve`] over TLS, with the test certificate of `localhost` and
    /// 127.0.0.1 (tests/fixtures/tls, signed by the test CA).
    async fn serve_tls(status: &'static str, body: &'static str) -> Server {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let certs = CertificateDer::pem_slice_iter(SERVER_CERT)
            .collect::<Result<Vec<_>, _>>()
            .unwrap();
        let key = PrivateKeyDer::from_pem_slice(SERVER_KEY).unwrap();
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!(
            "https://localhost:{}/a2a",
            listener.local_addr().unwrap().port()
        );
        let (tx, seen) = mpsc::unbounded_channel();
        let connections = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&connections);
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                counter.fetch_add(1, Ordering::SeqCst);
                let acceptor = acceptor.clone();
                let tx = tx.clone();
                tokio::spawn(async move {
                    // A client that does not trust the certificate hangs up.
                    if let Ok(stream) = acceptor.accept(stream).await {
                        connection(stream, status, body, tx).await;
                    }
                });
            }
        });
        Server {
            url,
            seen,
            connections,
        }
    }

    const CA_CERT: &[u8] = include_bytes!("../../tests/fixtures/tls/ca.pem");
    const SERVER_CERT: &[u8] = include_bytes!("../../tests/fixtures/tls/server.pem");
    const SERVER_KEY: &[u8] = include_bytes!("../../tests/fixtures/tls/server.key");

    /// A client configuration that trusts the test CA only.
    fn trusting_the_test_ca() -> rustls::ClientConfig {
        use rustls::pki_types::CertificateDer;
        use rustls::pki_types::pem::PemObject;
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(CA_CERT) {
            roots.add(cert.unwrap()).unwrap();
        }
        tls_builder()
            .with_root_certificates(roots)
            .with_no_client_auth()
    }

    #[tokio::test]
    async fn https_agents_verify_the_certificate_and_talk_over_tls() {
        let mut server = serve_tls("200 OK", MESSAGE).await;
        let agent = Http {
            inner: Arc::new(
                Endpoint::with_tls(&server.url, &[], &Egress::Open, trusting_the_test_ca())
                    .unwrap(),
            ),
            stream: false,
            card: None,
            built_with: Arc::new(BuiltWith {
                headers: Vec::new(),
                egress: Egress::Open,
            }),
        };
        let output = outcome(&agent, json!({"q": 1})).await.unwrap();
        assert_eq!(output, json!({"summary": "short", "words": 2}));
        let seen = server.seen.recv().await.unwrap();
        assert_eq!(seen.request_line, "POST /a2a HTTP/1.1");
        assert_eq!(
            seen.body["params"]["message"]["parts"][0]["data"],
            json!({"q": 1})
        );

        // The system's roots do not include the test CA: a permanent failure
        // that says why, and nothing was sent.
        let stranger = Http::new(&server.url, &[], &Egress::Open).unwrap();
        let failure = outcome(&stranger, json!({})).await.unwrap_err();
        assert!(!failure.retryable, "{failure:?}");
        assert!(
            failure.message.contains("certificate"),
            "{}",
            failure.message
        );
        assert!(server.seen.try_recv().is_err());
    }

    async fn connection(
        stream: impl tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
        status: &str,
        body: &str,
        seen: mpsc::UnboundedSender<Seen>,
    ) {
        let mut stream = BufReader::new(stream);
        loop {
            let mut request_line = String::new();
            if stream.read_line(&mut request_line).await.unwrap_or(0) == 0 {
                return;
            }
            let mut headers = Vec::new();
            loop {
                let mut line = String::new();
                stream.read_line(&mut line).await.unwrap();
                let line = line.trim_end();
                if line.is_empty() {
                    break;
                }
                let (name, value) = line.split_once(':').unwrap();
                headers.push((name.to_ascii_lowercase(), value.trim().to_owned()));
            }
            let length: usize = headers
                .iter()
                .find(|(n, _)| n == "content-length")
                .map_or(0, |(_, v)| v.parse().unwrap());
            let mut raw = vec![0; length];
            stream.read_exact(&mut raw).await.unwrap();
            let _ = seen.send(Seen {
                request_line: request_line.trim_end().to_owned(),
                headers,
                body: serde_json::from_slice(&raw).unwrap_or(Value::Null),
            });
            let answer = format!(
                "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            );
            stream.get_mut().write_all(answer.as_bytes()).await.unwrap();
            stream.get_mut().flush().await.unwrap();
        }
    }

    fn call(input: Value) -> Call {
        Call {
            run: RunId(0x0000_0190_abcd_0001),
            task: Arc::from("summarize"),
            attempt: 3,
            input,
            estimate: None,
            decisions: None,
            progress: None,
        }
    }

    async fn outcome(agent: &Http, input: Value) -> Outcome {
        match agent.start(call(input)) {
            Started::Done(outcome) => outcome,
            Started::Later(pending) => pending.await,
        }
    }

    const MESSAGE: &str = r#"{"jsonrpc":"2.0","id":"x","result":{"kind":"message","role":"agent","messageId":"m1","parts":[{"kind":"data","data":{"summary":"short","words":2}}]}}"#;

    #[tokio::test]
    async fn sends_a_message_and_takes_the_data_part() {
        let mut server = serve("200 OK", MESSAGE).await;
        let agent = Http::new(
            &server.url,
            &[("Authorization".to_owned(), "Bearer s3cret".to_owned())],
            &Egress::Open,
        )
        .unwrap();
        assert!(!format!("{agent:?}").contains("s3cret"));
        let input = json!({"input": {"text": "a long text"}, "upstream": {}});
        let out = outcome(&agent, input.clone()).await;
        assert_eq!(out, Ok(json!({"summary": "short", "words": 2})));

        let seen = server.seen.recv().await.unwrap();
        assert_eq!(seen.request_line, "POST /a2a HTTP/1.1");
        assert_eq!(seen.header("content-type"), Some("application/json"));
        assert_eq!(seen.header("authorization"), Some("Bearer s3cret"));
        let id = "00000190abcd0001/summarize/3";
        assert_eq!(
            seen.body,
            json!({
                "jsonrpc": "2.0",
                "id": id,
                "method": "message/send",
                "params": {"message": {
                    "role": "user",
                    "messageId": id,
                    "parts": [{"kind": "data", "data": input}],
                    "metadata": {"baton": {"run": "00000190abcd0001", "task": "summarize", "attempt": 3}},
                }},
            })
        );
    }

    #[tokio::test]
    async fn calls_reuse_one_connection() {
        let server = serve("200 OK", MESSAGE).await;
        let agent = Http::new(&server.url, &[], &Egress::Open).unwrap();
        for _ in 0..3 {
            assert!(outcome(&agent, Value::Null).await.is_ok());
        }
        assert_eq!(server.connections.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn several_parts_make_an_array_with_text_as_strings() {
        let server = serve(
            "200 OK",
            r#"{"jsonrpc":"2.0","id":"x","result":{"kind":"message","parts":[{"kind":"text","text":"done"},{"kind":"data","data":[1,2]}]}}"#,
        )
        .await;
        let agent = Http::new(&server.url, &[], &Egress::Open).unwrap();
        assert_eq!(
            outcome(&agent, Value::Null).await,
            Ok(json!(["done", [1, 2]]))
        );
    }

    #[tokio::test]
    async fn a_completed_task_gives_its_artifacts() {
        let server = serve(
            "200 OK",
            r#"{"jsonrpc":"2.0","id":"x","result":{"kind":"task","id":"t9","contextId":"c","status":{"state":"completed"},"artifacts":[{"artifactId":"a1","parts":[{"kind":"data","data":{"score":0.9}}]}]}}"#,
        )
        .await;
        let agent = Http::new(&server.url, &[], &Egress::Open).unwrap();
        assert_eq!(
            outcome(&agent, Value::Null).await,
            Ok(json!({"score": 0.9}))
        );
    }

    #[tokio::test]
    async fn a_failed_task_is_permanent_with_its_status_message() {
        let server = serve(
            "200 OK",
            r#"{"jsonrpc":"2.0","id":"x","result":{"kind":"task","id":"t9","status":{"state":"failed","message":{"kind":"message","role":"agent","parts":[{"kind":"text","text":"model overloaded"}]}}}}"#,
        )
        .await;
        let agent = Http::new(&server.url, &[], &Egress::Open).unwrap();
        let failure = outcome(&agent, Value::Null).await.unwrap_err();
        assert_eq!(
            failure,
            Failure::permanent("the agent's task failed: model overloaded")
        );
    }

    #[tokio::test]
    async fn a_task_waiting_for_input_is_permanent() {
        let server = serve(
            "200 OK",
            r#"{"jsonrpc":"2.0","id":"x","result":{"kind":"task","id":"t9","status":{"state":"input-required"}}}"#,
        )
        .await;
        let agent = Http::new(&server.url, &[], &Egress::Open).unwrap();
        let failure = outcome(&agent, Value::Null).await.unwrap_err();
        assert!(!failure.retryable);
        assert!(
            failure.message.contains("`input-required`"),
            "{}",
            failure.message
        );
    }

    #[tokio::test]
    async fn another_result_is_the_output_as_is() {
        let server = serve(
            "200 OK",
            r#"{"jsonrpc":"2.0","id":"x","result":{"answer":42}}"#,
        )
        .await;
        let agent = Http::new(&server.url, &[], &Egress::Open).unwrap();
        assert_eq!(
            outcome(&agent, Value::Null).await,
            Ok(json!({"answer": 42}))
        );
    }

    #[tokio::test]
    async fn a_json_rpc_error_is_permanent() {
        let server = serve(
            "200 OK",
            r#"{"jsonrpc":"2.0","id":"x","error":{"code":-32601,"message":"Method not found"}}"#,
        )
        .await;
        let agent = Http::new(&server.url, &[], &Egress::Open).unwrap();
        let failure = outcome(&agent, Value::Null).await.unwrap_err();
        assert!(!failure.retryable);
        assert_eq!(
            failure.message,
            format!(
                "{} answered JSON-RPC error -32601: Method not found",
                server.url
            )
        );
    }

    #[tokio::test]
    async fn a_503_is_retryable() {
        let server = serve("503 Service Unavailable", r#"{"busy":true}"#).await;
        let agent = Http::new(&server.url, &[], &Egress::Open).unwrap();
        let failure = outcome(&agent, Value::Null).await.unwrap_err();
        assert!(failure.retryable);
        assert!(
            failure.message.contains("HTTP 503 Service Unavailable"),
            "{}",
            failure.message
        );
        assert!(
            failure.message.contains(r#"{"busy":true}"#),
            "{}",
            failure.message
        );
    }

    #[tokio::test]
    async fn a_429_is_retryable_and_a_404_is_not() {
        let server = serve("429 Too Many Requests", "").await;
        let agent = Http::new(&server.url, &[], &Egress::Open).unwrap();
        assert!(outcome(&agent, Value::Null).await.unwrap_err().retryable);

        let server = serve("404 Not Found", "no such path").await;
        let agent = Http::new(&server.url, &[], &Egress::Open).unwrap();
        let failure = outcome(&agent, Value::Null).await.unwrap_err();
        assert!(!failure.retryable);
        assert!(
            failure.message.contains("HTTP 404 Not Found: no such path"),
            "{}",
            failure.message
        );
    }

    #[tokio::test]
    async fn a_body_that_is_not_json_is_permanent_with_an_excerpt() {
        let server = serve("200 OK", "<html>oops</html>").await;
        let agent = Http::new(&server.url, &[], &Egress::Open).unwrap();
        let failure = outcome(&agent, Value::Null).await.unwrap_err();
        assert!(!failure.retryable);
        assert!(failure.message.contains("not JSON"), "{}", failure.message);
        assert!(
            failure.message.ends_with("<html>oops</html>"),
            "{}",
            failure.message
        );
    }

    #[tokio::test]
    async fn connection_refused_is_retryable() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/", listener.local_addr().unwrap());
        drop(listener);
        let agent = Http::new(&url, &[], &Egress::Open).unwrap();
        let failure = outcome(&agent, Value::Null).await.unwrap_err();
        assert!(failure.retryable);
        assert!(
            failure.message.starts_with(&format!("cannot reach {url}")),
            "{}",
            failure.message
        );
        assert!(failure.message.contains("refused"), "{}", failure.message);
    }

    #[test]
    fn server_sent_events_are_cut_wherever_the_bytes_break() {
        let stream = b": a comment\r\nevent: x\r\ndata: {\"a\":\r\ndata: 1}\r\n\r\nid: 7\ndata:[DONE]\n\ndata\n\n";
        // Every way of cutting the stream in two gives the same events.
        for cut in 0..=stream.len() {
            let mut sse = Sse::default();
            let mut seen = Vec::new();
            let mut on = |d: &str| {
                seen.push(d.to_owned());
                Ok(())
            };
            sse.feed(&stream[..cut], &mut on).unwrap();
            sse.feed(&stream[cut..], &mut on).unwrap();
            assert_eq!(seen, ["{\"a\":\n1}", "[DONE]"], "cut at {cut}");
        }
        // An error from the handler ends the stream with it.
        let mut sse = Sse::default();
        let failed = sse.feed(b"data: 1\n\ndata: 2\n\n", &mut |_| {
            Err(Failure::permanent("no"))
        });
        assert_eq!(failed.unwrap_err().message, "no");
    }

    #[test]
    fn bad_urls_and_headers_are_refused() {
        assert!(Http::new("https://agents.example/a2a", &[], &Egress::Open).is_ok());
        assert!(
            Http::new("ftp://host/", &[], &Egress::Open)
                .unwrap_err()
                .contains("scheme")
        );
        assert!(
            Http::new("/just/a/path", &[], &Egress::Open)
                .unwrap_err()
                .contains("absolute")
        );
        assert!(Http::new("not a url", &[], &Egress::Open).is_err());
        let header = Http::new(
            "http://host/",
            &[("bad name".into(), "v".into())],
            &Egress::Open,
        )
        .unwrap_err();
        assert!(header.contains("`bad name`"), "{header}");
        assert!(Http::new("http://127.0.0.1:9/a2a", &[], &Egress::Open).is_ok());
    }

    #[test]
    fn public_addresses_are_told_apart() {
        for (ip, public) in [
            ("8.8.8.8", true),
            ("1.1.1.1", true),
            ("2606:4700::1111", true),
            ("127.0.0.1", false),
            ("10.1.2.3", false),
            ("172.16.0.1", false),
            ("192.168.1.1", false),
            ("169.254.169.254", false),
            ("100.64.0.1", false),
            ("0.0.0.0", false),
            ("255.255.255.255", false),
            ("224.0.0.1", false),
            ("240.0.0.1", false),
            ("192.0.2.1", false),
            ("198.18.0.1", false),
            ("::1", false),
            ("::", false),
            ("fe80::1", false),
            ("fd00::1", false),
            ("ff02::1", false),
            ("2001:db8::1", false),
            ("::ffff:10.0.0.1", false),
            ("::ffff:8.8.8.8", true),
            ("64:ff9b::a9fe:a9fe", false),
            ("64:ff9b::808:808", true),
        ] {
            assert_eq!(is_public(ip.parse().unwrap()), public, "{ip}");
        }
    }

    #[tokio::test]
    async fn a_server_refuses_private_addresses_it_was_not_told_of() {
        let public = Egress::Public {
            private_hosts: Vec::new(),
        };
        for url in [
            "http://127.0.0.1:9/a2a",
            "http://169.254.169.254/latest/meta-data/",
            "http://[::1]:9/",
            "http://10.0.0.5/",
        ] {
            let err = Http::new(url, &[], &public).unwrap_err();
            assert!(
                err.contains("which is not a public address"),
                "{url}: {err}"
            );
            assert!(err.contains("allow_private_hosts"), "{url}: {err}");
        }
        // A name that resolves to a private address is refused when connecting,
        // permanently: no request is sent.
        let mut server = serve("200 OK", MESSAGE).await;
        let by_name = server.url.replace("127.0.0.1", "localhost");
        let agent = Http::new(&by_name, &[], &public).unwrap();
        let failure = outcome(&agent, json!({})).await.unwrap_err();
        assert!(!failure.retryable, "{}", failure.message);
        assert!(
            failure.message.contains("which is not a public address"),
            "{}",
            failure.message
        );
        assert!(server.seen.try_recv().is_err());
        // Listed hosts may be anywhere.
        let listed = Egress::Public {
            private_hosts: vec!["LOCALHOST".into(), "127.0.0.1".into()],
        };
        for url in [&server.url, &by_name] {
            let agent = Http::new(url, &[], &listed).unwrap();
            let out = outcome(&agent, json!({})).await;
            assert_eq!(out, Ok(json!({"summary": "short", "words": 2})), "{url}");
        }
    }

    #[tokio::test]
    async fn redirects_are_not_followed() {
        let mut server = serve("302 Found\r\nLocation: http://169.254.169.254/", "{}").await;
        let agent = Http::new(&server.url, &[], &Egress::Open).unwrap();
        let failure = outcome(&agent, json!({})).await.unwrap_err();
        assert!(!failure.retryable);
        assert!(failure.message.contains("HTTP 302"), "{}", failure.message);
        assert!(server.seen.recv().await.is_some());
        assert!(server.seen.try_recv().is_err(), "one request only");
    }

    #[tokio::test]
    async fn hostile_input_stays_in_the_body() {
        let mut server = serve("200 OK", MESSAGE).await;
        let agent = Http::new(&server.url, &[], &Egress::Open).unwrap();
        let hostile =
            json!({"path": "../../admin?x=1#y", "header": "a\r\nX-Injected: 1", "at": "@evil.net"});
        outcome(&agent, hostile.clone()).await.unwrap();
        let seen = server.seen.recv().await.unwrap();
        assert_eq!(seen.request_line, "POST /a2a HTTP/1.1");
        assert!(seen.header("x-injected").is_none());
        assert_eq!(seen.body["params"]["message"]["parts"][0]["data"], hostile);
    }

    #[test]
    fn excerpts_are_short() {
        let long = "é".repeat(1000);
        let cut = excerpt(long.as_bytes());
        assert_eq!(cut.chars().count(), EXCERPT + 1);
        assert!(cut.ends_with('…'));
        assert_eq!(excerpt(b"  "), "(empty body)");
    }
}

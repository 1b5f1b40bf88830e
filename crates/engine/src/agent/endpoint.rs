//! What the `http` and `llm` agents share: an [`Endpoint`], a URL that JSON
//! is posted to (or a server-sent event stream read from) with one pooled
//! HTTP/1.1 client, under an [`Egress`] policy.
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
use serde_json::Value;

use super::Failure;

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

/// A URL that JSON is posted to, with one pooled HTTP/1.1 client, under an
/// [`Egress`] policy: what the `http` and `llm` agents share.
#[derive(Debug)]
pub(super) struct Endpoint {
    client: Client<HttpsConnector<HttpConnector<Resolve>>, Full<Bytes>>,
    url: Uri,
    /// Sent with every request: the configured ones plus the JSON content type.
    headers: HeaderMap,
}

impl Endpoint {
    /// An endpoint posting to `url` with `headers` added to each request.
    ///
    /// Fails, with a message for people, on a URL that is not
    /// `http[s]://host[:port]/...`, a header that is not valid HTTP, an address
    /// that `egress` refuses, or an `https://` URL on a system without trusted
    /// roots.
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
        let response = self.send(request).await?;
        let status = response.status();
        let headers = response.headers().clone();
        let body = self.whole(response.into_body()).await?;
        Ok((status, headers, body))
    }

    /// Sends a request: a connection that cannot be made is retryable,
    /// unless egress or TLS refused it.
    async fn send(
        &self,
        request: Request<Full<Bytes>>,
    ) -> Result<http::Response<hyper::body::Incoming>, Failure> {
        let url = &self.url;
        self.client.request(request).await.map_err(|e| Failure {
            message: format!("cannot reach {url}: {}", chain(&e)),
            retryable: !refused(&e),
            retry_after: None,
        })
    }

    /// An answer's whole body, up to 16 MiB.
    async fn whole(&self, body: hyper::body::Incoming) -> Result<Bytes, Failure> {
        let url = &self.url;
        Limited::new(body, BODY_LIMIT)
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
            })
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
        let response = self.send(request).await?;
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
            let body = self.whole(response.into_body()).await?;
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
    use super::*;

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

    #[test]
    fn excerpts_are_short() {
        let long = "é".repeat(1000);
        let cut = excerpt(long.as_bytes());
        assert_eq!(cut.chars().count(), EXCERPT + 1);
        assert!(cut.ends_with('…'));
        assert_eq!(excerpt(b"  "), "(empty body)");
    }
}

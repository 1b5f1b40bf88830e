//! One simulated user's HTTP connection: HTTP/1.1 keep-alive on a connection
//! the user owns (like a Locust user's session), opened lazily and opened
//! again after an error.
//!
//! A connection per user, instead of a shared pool, keeps the hot path free
//! of a pool lock and gives the server exactly one connection per user, as
//! real clients do.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Method, Request, StatusCode, Uri, header};
use http_body_util::{BodyExt as _, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;

/// Where the load goes: `http://host:port` or `https://host:port` (no path).
#[derive(Debug, Clone)]
pub struct Target {
    /// `http[s]://host:port`, without a trailing slash.
    pub base: String,
    /// `host:port`, what is connected to.
    pub authority: String,
    /// Whether the host is a loopback address (client and server share the machine).
    pub loopback: bool,
    /// For `https://`: the TLS configuration (the system's trusted roots, or
    /// the bundle `SSL_CERT_FILE` names) and the name the certificate must
    /// carry.
    tls: Option<(Arc<rustls::ClientConfig>, ServerName<'static>)>,
}

impl Target {
    /// Parses `http[s]://host[:port][/]`. An `https://` target needs trusted
    /// certificate authorities: the system's, or a PEM bundle in
    /// `SSL_CERT_FILE` (a private CA).
    pub fn parse(url: &str) -> Result<Target, String> {
        let uri: Uri = url
            .trim_end_matches('/')
            .parse()
            .map_err(|e| format!("`{url}` is not a URL: {e}"))?;
        let https = match uri.scheme_str() {
            Some("http") => false,
            Some("https") => true,
            _ => {
                return Err(format!(
                    "`{url}`: give an http:// or https:// URL, e.g. http://127.0.0.1:8080"
                ));
            }
        };
        if !matches!(uri.path(), "" | "/") {
            return Err(format!(
                "`{url}`: give the server's base URL without a path, e.g. http://127.0.0.1:8080"
            ));
        }
        let host = uri.host().ok_or_else(|| format!("`{url}` has no host"))?;
        let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        let loopback = bare == "localhost"
            || bare
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback());
        let tls = if https {
            let name = ServerName::try_from(bare.to_string())
                .map_err(|e| format!("`{url}`: `{bare}` cannot name a TLS server: {e}"))?;
            Some((Arc::new(tls_config()?), name))
        } else {
            None
        };
        Ok(Target {
            base: format!("{}://{host}:{port}", if https { "https" } else { "http" }),
            authority: format!("{host}:{port}"),
            loopback,
            tls,
        })
    }
}

/// rustls on ring with the system's trusted roots (`SSL_CERT_FILE` adds a
/// bundle), HTTP/1.1 by ALPN.
fn tls_config() -> Result<rustls::ClientConfig, String> {
    use hyper_rustls::ConfigBuilderExt as _;
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| format!("TLS: {e}"))?
    .with_native_roots()
    .map_err(|e| {
        format!(
            "https needs trusted certificate authorities and none were found ({e}): install the \
             system's CA certificates or name a PEM bundle in SSL_CERT_FILE"
        )
    })?
    .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// Why a request failed before a status was read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Connecting, writing or reading failed.
    Connection,
    /// No whole response within the request timeout.
    Timeout,
}

/// A connection a user owns.
pub struct Conn {
    authority: String,
    host: HeaderValue,
    tls: Option<(tokio_rustls::TlsConnector, ServerName<'static>)>,
    auth: Option<HeaderValue>,
    timeout: Duration,
    sender: Option<SendRequest<Full<Bytes>>>,
    last_error: Option<String>,
}

impl Conn {
    /// A connection to `target`, opened on first use.
    pub fn new(target: &Target, timeout: Duration) -> Conn {
        Conn {
            authority: target.authority.clone(),
            host: HeaderValue::from_str(&target.authority).expect("an authority is a header value"),
            tls: target
                .tls
                .as_ref()
                .map(|(config, name)| (config.clone().into(), name.clone())),
            auth: None,
            timeout,
            sender: None,
            last_error: None,
        }
    }

    /// Why the last request failed before a status was read (a refused
    /// connection, a certificate not trusted, ...).
    pub fn last_error(&self) -> Option<&str> {
        self.last_error.as_deref()
    }

    /// Sends `Authorization: Bearer TOKEN` with every request.
    pub fn with_token(mut self, token: Option<&str>) -> Conn {
        self.auth = token.and_then(|t| HeaderValue::from_str(&format!("Bearer {t}")).ok());
        self
    }

    /// Sends one request and reads the whole response body.
    pub async fn send(
        &mut self,
        method: Method,
        path: &str,
        body: Bytes,
    ) -> Result<(StatusCode, Bytes), Fault> {
        match tokio::time::timeout(self.timeout, self.exchange(method, path, body)).await {
            Ok(Ok(r)) => Ok(r),
            Ok(Err(e)) => {
                self.sender = None;
                self.last_error = Some(e);
                Err(Fault::Connection)
            }
            Err(_) => {
                // The response may still arrive on this connection: never reuse it.
                self.sender = None;
                self.last_error = Some(format!("no answer within {:?}", self.timeout));
                Err(Fault::Timeout)
            }
        }
    }

    async fn exchange(
        &mut self,
        method: Method,
        path: &str,
        body: Bytes,
    ) -> Result<(StatusCode, Bytes), String> {
        if self.sender.is_none() {
            self.sender = Some(self.connect().await?);
        }
        let sender = self.sender.as_mut().expect("connected");
        sender.ready().await.map_err(|e| e.to_string())?;
        let mut req = Request::builder()
            .method(method)
            .uri(path)
            .header(header::HOST, self.host.clone());
        if !body.is_empty() {
            req = req.header(header::CONTENT_TYPE, "application/json");
        }
        if let Some(auth) = &self.auth {
            req = req.header(header::AUTHORIZATION, auth.clone());
        }
        let req = req.body(Full::new(body)).map_err(|e| e.to_string())?;
        let res = sender.send_request(req).await.map_err(|e| e.to_string())?;
        let status = res.status();
        let body = res
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        Ok((status, body))
    }

    async fn connect(&self) -> Result<SendRequest<Full<Bytes>>, String> {
        let stream = TcpStream::connect(&self.authority)
            .await
            .map_err(|e| format!("connecting to {}: {e}", self.authority))?;
        stream.set_nodelay(true).map_err(|e| e.to_string())?;
        match &self.tls {
            None => handshake(stream).await,
            Some((connector, name)) => {
                let stream = connector
                    .connect(name.clone(), stream)
                    .await
                    .map_err(|e| format!("TLS with {}: {e}", self.authority))?;
                handshake(stream).await
            }
        }
    }
}

/// HTTP/1.1 over `io`, its connection driven on a task of its own.
async fn handshake<T>(io: T) -> Result<SendRequest<Full<Bytes>>, String>
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static,
{
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(sender)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets() {
        let t = Target::parse("http://127.0.0.1:8080/").unwrap();
        assert_eq!(t.base, "http://127.0.0.1:8080");
        assert!(t.loopback);
        assert!(Target::parse("http://localhost:1").unwrap().loopback);
        assert!(!Target::parse("http://10.0.0.1:1").unwrap().loopback);
        let t = Target::parse("https://localhost").unwrap();
        assert_eq!(
            (t.base.as_str(), t.tls.is_some()),
            ("https://localhost:443", true)
        );
        assert!(Target::parse("ftp://x:1").is_err());
        assert!(Target::parse("http://x:1/api").is_err());
    }
}

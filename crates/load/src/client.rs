//! One simulated user's HTTP connection: HTTP/1.1 keep-alive on a connection
//! the user owns (like a Locust user's session), opened lazily and opened
//! again after an error.
//!
//! A connection per user, instead of a shared pool, keeps the hot path free
//! of a pool lock and gives the server exactly one connection per user, as
//! real clients do.

use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Method, Request, StatusCode, Uri, header};
use http_body_util::{BodyExt as _, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// Where the load goes: `http://host:port` (no TLS, no path).
#[derive(Debug, Clone)]
pub struct Target {
    /// `http://host:port`, without a trailing slash.
    pub base: String,
    /// `host:port`, what is connected to.
    pub authority: String,
    /// Whether the host is a loopback address (client and server share the machine).
    pub loopback: bool,
}

impl Target {
    /// Parses `http://host[:port][/]`.
    pub fn parse(url: &str) -> Result<Target, String> {
        let uri: Uri = url
            .trim_end_matches('/')
            .parse()
            .map_err(|e| format!("`{url}` is not a URL: {e}"))?;
        if uri.scheme_str() != Some("http") {
            return Err(format!(
                "`{url}`: only http:// targets are supported (no TLS); e.g. http://127.0.0.1:8080"
            ));
        }
        if !matches!(uri.path(), "" | "/") {
            return Err(format!(
                "`{url}`: give the server's base URL without a path, e.g. http://127.0.0.1:8080"
            ));
        }
        let host = uri.host().ok_or_else(|| format!("`{url}` has no host"))?;
        let port = uri.port_u16().unwrap_or(80);
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        let loopback = bare == "localhost"
            || bare
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback());
        Ok(Target {
            base: format!("http://{host}:{port}"),
            authority: format!("{host}:{port}"),
            loopback,
        })
    }
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
    auth: Option<HeaderValue>,
    timeout: Duration,
    sender: Option<SendRequest<Full<Bytes>>>,
}

impl Conn {
    /// A connection to `target`, opened on first use.
    pub fn new(target: &Target, timeout: Duration) -> Conn {
        Conn {
            authority: target.authority.clone(),
            host: HeaderValue::from_str(&target.authority).expect("an authority is a header value"),
            auth: None,
            timeout,
            sender: None,
        }
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
            Ok(Err(())) => {
                self.sender = None;
                Err(Fault::Connection)
            }
            Err(_) => {
                // The response may still arrive on this connection: never reuse it.
                self.sender = None;
                Err(Fault::Timeout)
            }
        }
    }

    async fn exchange(
        &mut self,
        method: Method,
        path: &str,
        body: Bytes,
    ) -> Result<(StatusCode, Bytes), ()> {
        if self.sender.is_none() {
            self.sender = Some(self.connect().await?);
        }
        let sender = self.sender.as_mut().expect("connected");
        sender.ready().await.map_err(|_| ())?;
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
        let req = req.body(Full::new(body)).map_err(|_| ())?;
        let res = sender.send_request(req).await.map_err(|_| ())?;
        let status = res.status();
        let body = res.into_body().collect().await.map_err(|_| ())?.to_bytes();
        Ok((status, body))
    }

    async fn connect(&self) -> Result<SendRequest<Full<Bytes>>, ()> {
        let stream = TcpStream::connect(&self.authority).await.map_err(|_| ())?;
        stream.set_nodelay(true).map_err(|_| ())?;
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|_| ())?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(sender)
    }
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
        assert!(Target::parse("https://x:1").is_err());
        assert!(Target::parse("http://x:1/api").is_err());
    }
}

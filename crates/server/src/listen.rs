//! The accept loop: what `axum::serve` does, plus the limits it does not
//! offer. At most `max_connections` connections are open at once (further
//! clients wait in the kernel's backlog, and the log says so, at most every
//! 10 s); a connection whose next request's headers have not all arrived
//! within `idle_timeout` is closed, whether it is idle between requests or
//! sending them a byte at a time (slowloris). Accept errors (out of file
//! descriptors) are logged and retried, never fatal. On shutdown each
//! connection finishes its request in flight and closes. With TLS, the
//! handshake must end within `idle_timeout` too.

use std::pin::pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio_util::sync::CancellationToken;

use crate::tls::{PeerVerified, Tls};

/// How often a limit reached (or an accept failing) is logged, at most.
const SAY_EVERY: Duration = Duration::from_secs(10);

/// Serves `app` on `listener` until `stop` is cancelled, then waits for the
/// open connections to finish.
pub(crate) async fn serve(
    listener: TcpListener,
    app: Router,
    tls: Option<Arc<Tls>>,
    max_connections: usize,
    idle_timeout: Duration,
    stop: CancellationToken,
) {
    let max = max_connections.clamp(1, Semaphore::MAX_PERMITS);
    let permits = Arc::new(Semaphore::new(max));
    let (closing, closed) = watch::channel(false);
    let mut said_full: Option<Instant> = None;
    let mut said_error: Option<Instant> = None;
    let due = |said: &Option<Instant>| said.is_none_or(|t| t.elapsed() >= SAY_EVERY);
    loop {
        if permits.available_permits() == 0 && due(&said_full) {
            tracing::warn!(
                max_connections = max,
                "connection limit reached: new connections wait until one closes (raise [server] max_connections)"
            );
            said_full = Some(Instant::now());
        }
        let permit = tokio::select! {
            p = Arc::clone(&permits).acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
            _ = stop.cancelled() => break,
        };
        let (stream, _peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    if due(&said_error) {
                        tracing::warn!(error = %e, "cannot accept connections (out of file descriptors?); retrying");
                        said_error = Some(Instant::now());
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = stop.cancelled() => break,
        };
        let _ = stream.set_nodelay(true);
        let app = app.clone();
        let closed = closed.clone();
        let acceptor = tls.as_ref().map(|tls| tls.acceptor());
        tokio::spawn(async move {
            let _permit = permit;
            match acceptor {
                None => {
                    let service = TowerToHyperService::new(app);
                    connection(TokioIo::new(stream), service, idle_timeout, closed).await
                }
                Some(acceptor) => {
                    // A client that does not finish its handshake in time,
                    // does not trust the certificate or presents one the
                    // client CA did not issue, is dropped.
                    let Ok(Ok(stream)) =
                        tokio::time::timeout(idle_timeout, acceptor.accept(stream)).await
                    else {
                        return;
                    };
                    // A certificate is there only if the client CA verified it.
                    let verified = stream.get_ref().1.peer_certificates().is_some();
                    let app = tower::ServiceExt::map_request(
                        app,
                        move |mut req: hyper::Request<hyper::body::Incoming>| {
                            if verified {
                                req.extensions_mut().insert(PeerVerified);
                            }
                            req
                        },
                    );
                    let service = TowerToHyperService::new(app);
                    connection(TokioIo::new(stream), service, idle_timeout, closed).await;
                }
            }
        });
    }
    drop(listener);
    let _ = closing.send(true);
    // Every permit back: every connection has closed.
    let _ = permits.acquire_many(max as u32).await;
}

/// Serves HTTP/1.1 on one connection until it closes or the server stops.
async fn connection<I, S>(
    io: TokioIo<I>,
    service: TowerToHyperService<S>,
    idle_timeout: Duration,
    mut closed: watch::Receiver<bool>,
) where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    S: tower::Service<
            hyper::Request<hyper::body::Incoming>,
            Response = axum::response::Response,
            Error = std::convert::Infallible,
        > + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    let mut builder = http1::Builder::new();
    // Room for heads past the server's own limits (URI 8 KiB, headers
    // 64 KiB), so that the middleware answers those with problem+json
    // rather than hyper with a bare 431.
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(idle_timeout)
        .max_buf_size(1 << 20)
        .keep_alive(true);
    let mut conn = pin!(builder.serve_connection(io, service));
    tokio::select! {
        _ = conn.as_mut() => {}
        _ = closed.changed() => {
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
    }
}

//! The collector's HTTP(S) server: its own accept loop over hyper, so that no client can
//! hold it. Every connection is bounded:
//!
//! * admission: at most `max_connections` open, and `max_connections_per_client` from one
//!   address; a client over either is answered 503 and closed at once, never queued. A
//!   connection stops counting against its address once a request on it carries a live token
//!   ([`Vouched::trust`]): hosts behind one NAT, or people behind one proxy, are bounded by
//!   the total and their tokens' own limits, while anonymous clients are bounded per address;
//! * TLS: the handshake must end within `header_timeout`;
//! * a request's headers must arrive within `header_timeout` (hyper's timer, which also
//!   runs while a kept-alive connection waits for its next request), its body within
//!   `body_timeout` ([`crate::api::read_body`]);
//! * a connection on which nothing moves, either way, for `idle_timeout` is closed
//!   ([`Stalled`]): a client that stops reading its answer cannot keep it open.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio::time::{Instant, Sleep};

use crate::api::{App, Vouched};
use crate::metrics::Refusal;

/// What a connection turned away is told, in the few bytes the socket takes at once.
const BUSY: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n\
Content-Length: 49\r\nConnection: close\r\n\r\n{\"error\":\"too many connections; try again later\"}";

/// Serves `router` on `listener` until `shutdown` ends, then gives open requests 5 s.
pub async fn serve(
    app: Arc<App>,
    listener: TcpListener,
    router: Router,
    tls: Option<tokio_rustls::TlsAcceptor>,
    shutdown: impl Future<Output = ()>,
) {
    let clients = Arc::new(Mutex::new(HashMap::<IpAddr, usize>::new()));
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of descriptors, most likely: let some connections end.
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let Some(slot) = Connection::take(&app, &clients, peer) else {
            let _ = stream.try_write(BUSY);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let config = &app.config;
        let io = Stalled::new(stream, config.idle_timeout);
        let mut http = hyper::server::conn::http1::Builder::new();
        // A request's head (line and headers) fits in 64 KiB or is refused with 431: what one
        // connection may make the collector hold before it knows who is asking.
        http.timer(TokioTimer::new())
            .header_read_timeout(config.header_timeout)
            .max_header_size(64 << 10);
        let connection = Arc::new(slot);
        let service = {
            let (router, connection) = (router.clone(), Arc::clone(&connection));
            hyper::service::service_fn(move |mut request: hyper::Request<hyper::body::Incoming>| {
                let vouched: Arc<dyn Vouched> = Arc::clone(&connection) as _;
                request.extensions_mut().insert(vouched);
                let mut router = router.clone();
                async move {
                    tower_service::Service::call(&mut router, request.map(axum::body::Body::new))
                        .await
                }
            })
        };
        let handshake = config.header_timeout;
        let tls = tls.clone();
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let _connection = connection;
            let served = match tls {
                None => {
                    let conn = http.serve_connection(TokioIo::new(io), service);
                    watcher.watch(conn).await
                }
                Some(tls) => match tokio::time::timeout(handshake, tls.accept(io)).await {
                    Ok(Ok(io)) => {
                        let conn = http.serve_connection(TokioIo::new(io), service);
                        watcher.watch(conn).await
                    }
                    Ok(Err(e)) => {
                        tracing::debug!("{peer}: TLS handshake failed: {e}");
                        return;
                    }
                    Err(_) => {
                        tracing::debug!("{peer}: TLS handshake timed out");
                        return;
                    }
                },
            };
            if let Err(e) = served {
                tracing::debug!("{peer}: {e}");
            }
        });
    }
    drop(listener);
    tokio::select! {
        () = graceful.shutdown() => {}
        () = tokio::time::sleep(Duration::from_secs(5)) => {
            tracing::info!("stopped with requests or streams still open");
        }
    }
}

/// A connection's place under the limits, given back when it closes.
pub struct Connection {
    app: Arc<App>,
    clients: Arc<Mutex<HashMap<IpAddr, usize>>>,
    ip: IpAddr,
    /// Whether it still counts against its address.
    anonymous: AtomicBool,
}

impl Vouched for Connection {
    fn is_anonymous(&self) -> bool {
        self.anonymous.load(Ordering::Relaxed)
    }

    /// A request on this connection carried a live token: it no longer counts against its
    /// address (only against the total).
    fn trust(&self) {
        if self.anonymous.swap(false, Ordering::Relaxed) {
            self.leave_address();
        }
    }
}

impl Connection {
    fn leave_address(&self) {
        let mut open = self
            .clients
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(n) = open.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                open.remove(&self.ip);
            }
        }
    }
    fn take(
        app: &Arc<App>,
        clients: &Arc<Mutex<HashMap<IpAddr, usize>>>,
        peer: SocketAddr,
    ) -> Option<Self> {
        let mut open = clients
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let total = app.metrics.connections.load(Ordering::Relaxed);
        if total >= app.config.max_connections as u64 {
            app.metrics.refused(Refusal::Connections);
            return None;
        }
        let mine = open.entry(peer.ip()).or_default();
        if *mine >= app.config.max_connections_per_client {
            app.metrics.refused(Refusal::ClientConnections);
            return None;
        }
        *mine += 1;
        app.metrics.connections.fetch_add(1, Ordering::Relaxed);
        Some(Self {
            app: Arc::clone(app),
            clients: Arc::clone(clients),
            ip: peer.ip(),
            anonymous: AtomicBool::new(true),
        })
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        if *self.anonymous.get_mut() {
            self.leave_address();
        }
        self.app.metrics.connections.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A socket that fails once nothing has moved on it, either way, for `limit` while
/// something waited to move: the reader of an answer who stopped reading, the sender of a
/// request who stopped sending.
struct Stalled<T> {
    inner: T,
    limit: Duration,
    /// When a byte last moved.
    moved: Instant,
    timer: Pin<Box<Sleep>>,
}

impl<T> Stalled<T> {
    fn new(inner: T, limit: Duration) -> Self {
        let now = Instant::now();
        Self {
            inner,
            limit,
            moved: now,
            timer: Box::pin(tokio::time::sleep_until(now + limit)),
        }
    }

    /// Called when the socket is not ready: an error once it has been still too long,
    /// else a wake-up set for that moment.
    fn check(&mut self, cx: &mut Context<'_>) -> io::Result<()> {
        let deadline = self.moved + self.limit;
        if self.timer.deadline() != deadline {
            self.timer.as_mut().reset(deadline);
        }
        match self.timer.as_mut().poll(cx) {
            Poll::Ready(()) => Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the connection was idle too long",
            )),
            Poll::Pending => Ok(()),
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Stalled<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if buf.filled().len() > before {
                    this.moved = Instant::now();
                }
                Poll::Ready(Ok(()))
            }
            Poll::Pending => match this.check(cx) {
                Ok(()) => Poll::Pending,
                Err(e) => Poll::Ready(Err(e)),
            },
            other => other,
        }
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Stalled<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_write(cx, data) {
            Poll::Ready(Ok(n)) => {
                if n > 0 {
                    this.moved = Instant::now();
                }
                Poll::Ready(Ok(n))
            }
            Poll::Pending => match this.check(cx) {
                Ok(()) => Poll::Pending,
                Err(e) => Poll::Ready(Err(e)),
            },
            other => other,
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// The TLS acceptor for a PEM certificate chain and key.
pub fn tls_acceptor(
    cert: &std::path::Path,
    key: &std::path::Path,
) -> anyhow::Result<tokio_rustls::TlsAcceptor> {
    use anyhow::Context as _;
    use rustls::pki_types::pem::PemObject as _;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs = CertificateDer::pem_file_iter(cert)
        .and_then(Iterator::collect::<Result<Vec<_>, _>>)
        .with_context(|| format!("cannot read the TLS certificate {}", cert.display()))?;
    let key = PrivateKeyDer::from_pem_file(key)
        .with_context(|| format!("cannot read the TLS key {}", key.display()))?;
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .context("TLS")?
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .context("the TLS certificate and key do not go together")?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

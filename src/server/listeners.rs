//! The listeners: binding HTTP (and the optional STOMP/TCP and metrics ports), accepting, the
//! per-address and total caps, TLS when it is configured, and handing each connection to its
//! own task (the TLS handshake and the HTTP or STOMP one run there, never in the accept loop).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn};

use super::StartError;
use crate::config::Config;
use crate::delivery::{SessionOrigin, Transport};
use crate::http::{self, PeerAddr};
use crate::http_guard::{HttpSlots, Lingering};
use crate::metrics::Metrics;
use crate::per_ip::{IpGuard, PerIpLimit, guarded};
use crate::session::{self, SessionContext};
use crate::tls::Tls;

/// The configured listeners, bound: HTTP always, STOMP/TCP and metrics when configured.
pub(super) struct Listeners {
    http: (TcpListener, SocketAddr),
    stomp: Option<(TcpListener, SocketAddr)>,
    metrics: Option<(TcpListener, SocketAddr)>,
    /// Connections per client address on the HTTP and STOMP listeners (not on metrics).
    per_ip: Option<Arc<PerIpLimit>>,
    /// TLS on the HTTP and STOMP listeners (not on metrics).
    tls: Option<Tls>,
}

impl Listeners {
    pub(super) async fn bind(config: &Config) -> Result<Listeners, StartError> {
        let server = &config.server;
        let tls = match (&server.tls_cert_file, &server.tls_key_file) {
            (Some(cert), Some(key)) => Some(Tls::load(cert, key)?),
            _ => None,
        };
        let (web, ws) = if tls.is_some() {
            ("https", "wss")
        } else {
            ("http", "ws")
        };
        let http_listener = bind(server.http_addr).await?;
        let http_addr = local_addr(&http_listener, server.http_addr);
        info!(addr = %http_addr, "listening for HTTP and WebSocket ({web}://{http_addr}, {ws}://{http_addr}/ws/im)");
        let stomp = bind_optional(server.stomp_tcp_addr).await?;
        if let Some((_, addr)) = &stomp {
            let over = if tls.is_some() { "TLS" } else { "TCP" };
            info!(addr = %addr, "listening for STOMP over {over}");
        }
        let metrics = bind_optional(server.metrics_addr).await?;
        if let Some((_, addr)) = &metrics {
            info!(addr = %addr, "serving metrics (http://{addr}/metrics)");
        }
        Ok(Listeners {
            http: (http_listener, http_addr),
            stomp,
            metrics,
            per_ip: PerIpLimit::new(server.max_connections_per_ip),
            tls,
        })
    }

    pub(super) fn addrs(&self) -> (SocketAddr, Option<SocketAddr>, Option<SocketAddr>) {
        (
            self.http.1,
            self.stomp.as_ref().map(|(_, addr)| *addr),
            self.metrics.as_ref().map(|(_, addr)| *addr),
        )
    }

    /// Accepts on every listener until `shutdown`, each connection a task of `tracker`.
    pub(super) fn serve(
        self,
        config: &Config,
        routes: http::HttpRouter,
        sessions: SessionContext,
        slots: Arc<Semaphore>,
        shutdown: &CancellationToken,
        tracker: &TaskTracker,
    ) {
        let header_timeout = config.connect_timeout();
        if let Some(tls) = &self.tls {
            tracker.spawn(tls.clone().reload_on_hangup(shutdown.clone()));
        }
        tracker.spawn(
            HttpListener {
                listener: self.http.0,
                routes,
                slots: HttpSlots::new(config.server.max_http_connections),
                header_timeout,
                per_ip: self.per_ip.clone(),
                tls: self.tls.as_ref().map(|tls| tls.http().clone()),
            }
            .serve(shutdown.clone(), tracker.clone()),
        );
        if let Some((listener, _)) = self.metrics {
            tracker.spawn(
                HttpListener {
                    listener,
                    routes: http::metrics_routes(),
                    slots: HttpSlots::new(config.server.max_http_connections),
                    header_timeout,
                    // The operators' listener: its own connection budget, no per-address cap,
                    // plain HTTP for the scraper.
                    per_ip: None,
                    tls: None,
                }
                .serve(shutdown.clone(), tracker.clone()),
            );
        }
        if let Some((listener, _)) = self.stomp {
            tracker.spawn(serve_stomp_tcp(
                listener,
                StompTcp {
                    sessions,
                    slots,
                    per_ip: self.per_ip,
                    tls: self.tls.as_ref().map(|tls| tls.stomp().clone()),
                    handshake_timeout: header_timeout,
                },
                shutdown.clone(),
                tracker.clone(),
            ));
        }
    }
}

/// Binds a listener when one is configured, with its real address.
async fn bind_optional(
    asked: Option<SocketAddr>,
) -> Result<Option<(TcpListener, SocketAddr)>, StartError> {
    match asked {
        Some(asked) => {
            let listener = bind(asked).await?;
            let addr = local_addr(&listener, asked);
            Ok(Some((listener, addr)))
        }
        None => Ok(None),
    }
}

async fn bind(addr: SocketAddr) -> Result<TcpListener, StartError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| StartError::Bind { addr, source })
}

fn local_addr(listener: &TcpListener, asked: SocketAddr) -> SocketAddr {
    listener.local_addr().unwrap_or(asked)
}

/// The next connection, or `None` once `shutdown` is cancelled. Accept errors such as EMFILE
/// are transient: it waits a little instead of spinning.
async fn accept(
    listener: &TcpListener,
    shutdown: &CancellationToken,
) -> Option<(tokio::net::TcpStream, SocketAddr)> {
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return None,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => return Some(accepted),
                Err(error) => {
                    warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
        }
    }
}

/// Counts a connection from `peer` against the per-address cap, if there is one. `Err` when the
/// address is at the cap: the connection must be closed.
fn admit_from(per_ip: Option<&Arc<PerIpLimit>>, peer: SocketAddr) -> Result<Option<IpGuard>, ()> {
    let Some(limit) = per_ip else {
        return Ok(None);
    };
    match limit.admit(peer.ip()) {
        Some(guard) => Ok(Some(guard)),
        None => {
            Metrics::get().connections_refused_per_ip.increment(1);
            debug!(%peer, "connection refused: too many from this address");
            Err(())
        }
    }
}

/// Completes a TLS handshake within `timeout`: a client that starts one and stalls holds a
/// connection slot no longer than it may take to send a request's head.
async fn handshake<S>(
    acceptor: &TlsAcceptor,
    stream: S,
    timeout: Duration,
    peer: SocketAddr,
) -> Option<tokio_rustls::server::TlsStream<S>>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    match tokio::time::timeout(timeout, acceptor.accept(stream)).await {
        Ok(Ok(stream)) => Some(stream),
        Ok(Err(error)) => {
            debug!(%peer, %error, "TLS handshake failed");
            None
        }
        Err(_) => {
            debug!(%peer, "TLS handshake timed out");
            None
        }
    }
}

/// One HTTP listener and what its connections share.
struct HttpListener {
    listener: TcpListener,
    routes: axum::Router,
    slots: HttpSlots,
    header_timeout: Duration,
    per_ip: Option<Arc<PerIpLimit>>,
    tls: Option<TlsAcceptor>,
}

impl HttpListener {
    async fn serve(self, shutdown: CancellationToken, tracker: TaskTracker) {
        while let Some((stream, peer)) = accept(&self.listener, &shutdown).await {
            // Closed without an answer: writing one well would take a task per refused
            // connection, which is what a flood from one address would like.
            let Ok(guard) = admit_from(self.per_ip.as_ref(), peer) else {
                continue;
            };
            let Some(slot) = self.slots.admit(&stream) else {
                continue;
            };
            let _ = stream.set_nodelay(true);
            let routes = self.routes.clone();
            let shutdown = shutdown.clone();
            let tls = self.tls.clone();
            let header_timeout = self.header_timeout;
            tracker.spawn(async move {
                let _slot = slot;
                let io = Lingering::new(guarded(stream, guard));
                match tls {
                    None => serve_http(io, routes, header_timeout, peer, shutdown).await,
                    Some(acceptor) => {
                        if let Some(io) = handshake(&acceptor, io, header_timeout, peer).await {
                            serve_http(io, routes, header_timeout, peer, shutdown).await;
                        }
                    }
                }
            });
        }
    }
}

/// Serves one HTTP/1.1 connection (with upgrades) until it ends or the broker shuts down.
async fn serve_http<IO>(
    io: IO,
    routes: axum::Router,
    header_timeout: Duration,
    peer: SocketAddr,
    shutdown: CancellationToken,
) where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    // The peer's address travels with each request (the WebSocket upgrade reads it).
    let service = TowerToHyperService::new(tower::ServiceExt::map_request(
        routes,
        move |mut request: hyper::Request<hyper::body::Incoming>| {
            request.extensions_mut().insert(PeerAddr(peer));
            request
        },
    ));
    let connection = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout)
        .serve_connection(TokioIo::new(io), service)
        .with_upgrades();
    tokio::pin!(connection);
    let result = tokio::select! {
        result = connection.as_mut() => result,
        () = shutdown.cancelled() => {
            connection.as_mut().graceful_shutdown();
            connection.await
        }
    };
    if let Err(error) = result {
        debug!(%peer, %error, "http connection ended with an error");
    }
}

/// What the STOMP/TCP listener's connections share.
struct StompTcp {
    sessions: SessionContext,
    slots: Arc<Semaphore>,
    per_ip: Option<Arc<PerIpLimit>>,
    tls: Option<TlsAcceptor>,
    handshake_timeout: Duration,
}

async fn serve_stomp_tcp(
    listener: TcpListener,
    shared: StompTcp,
    shutdown: CancellationToken,
    tracker: TaskTracker,
) {
    while let Some((stream, peer)) = accept(&listener, &shutdown).await {
        let Ok(guard) = admit_from(shared.per_ip.as_ref(), peer) else {
            continue;
        };
        let Ok(permit) = shared.slots.clone().try_acquire_owned() else {
            Metrics::get().connections_refused.increment(1);
            drop(stream);
            continue;
        };
        Metrics::get().connections_total.increment(1);
        let _ = stream.set_nodelay(true);
        let sessions = shared.sessions.clone();
        let tls = shared.tls.clone();
        let timeout = shared.handshake_timeout;
        tracker.spawn(async move {
            let _permit = permit;
            let _guard = guard;
            let origin = SessionOrigin {
                transport: Transport::Tcp,
                remote: Some(peer),
            };
            match tls {
                None => {
                    let (inbound, outbound) = session::transport::tcp(stream);
                    session::run(inbound, outbound, None, origin, sessions).await;
                }
                Some(acceptor) => {
                    if let Some(stream) = handshake(&acceptor, stream, timeout, peer).await {
                        let (inbound, outbound) = session::transport::stream(stream);
                        session::run(inbound, outbound, None, origin, sessions).await;
                    }
                }
            }
        });
    }
}

//! HTTP routes: the WebSocket upgrade to STOMP, health, readiness, metrics, the demo client, and
//! the REST API of [`crate::api`] nested under `/api/v1` behind [`crate::http_guard::guard_api`].
//!
//! The upgrade is done here rather than with axum's `ws` feature so that the broker uses one
//! tungstenite version with its own buffer sizes, which are the main per-connection memory cost.

use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use axum::Router as HttpRouter;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use hyper_util::rt::TokioIo;
use tokio::sync::Semaphore;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use tokio_util::task::TaskTracker;
use tracing::debug;

use crate::api::ApiState;
use crate::metrics::Metrics;
use crate::session::{self, SessionContext};

/// What the HTTP handlers share.
#[derive(Clone)]
pub struct HttpState {
    /// For new sessions.
    pub sessions: SessionContext,
    /// Session slots (`server.max_connections`).
    pub slots: Arc<Semaphore>,
    /// Tracks session tasks for draining at shutdown.
    pub tracker: TaskTracker,
    /// WebSocket buffer sizes and limits.
    pub websocket: WebSocketConfig,
    /// The REST API, when the IM layer runs.
    pub rest: Option<ApiState>,
    /// The built demo client (`server.web_dir`).
    pub web_dir: PathBuf,
    /// Bounds on REST request bodies.
    pub request_limits: crate::http_guard::RequestLimits,
    /// Whether `/metrics` is served here (`server.metrics_addr` unset).
    pub serve_metrics: bool,
}

/// The subprotocols we speak, most preferred first.
const SUBPROTOCOLS: [&str; 3] = ["v12.stomp", "v11.stomp", "v10.stomp"];

/// The routes.
pub fn routes(state: HttpState) -> HttpRouter {
    let limits = state.request_limits;
    let api = state.rest.clone().map(|rest| {
        crate::api::routes(rest).layer(axum::middleware::from_fn_with_state(
            limits,
            crate::http_guard::guard_api,
        ))
    });
    let mut routes = HttpRouter::new()
        .route("/ws/im", get(upgrade))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(ready));
    if state.serve_metrics {
        routes = routes.route("/metrics", get(metrics));
    }
    let routes = routes
        .route("/", get(index))
        .route("/assets/{*path}", get(asset))
        .with_state(state);
    match api {
        // The nest does not take `/api/v1/` itself; it is as unknown as any other API path.
        Some(api) => routes
            .nest("/api/v1", api)
            .route("/api/v1/", axum::routing::any(crate::api::not_found)),
        None => routes,
    }
}

/// The routes of the metrics listener (`server.metrics_addr`): `/metrics` alone.
pub fn metrics_routes() -> HttpRouter {
    HttpRouter::new().route("/metrics", get(metrics))
}

/// tungstenite settings. Its read buffer is allocated at once and kept for the connection's
/// life, and also bounds each read: 512 bytes keeps idle connections cheap and takes a typical
/// chat SEND in one or two reads. Message and frame limits follow the STOMP frame limit (a STOMP frame may span WebSocket messages, so the
/// codec enforces the real limit).
pub fn websocket_config(max_frame_bytes: usize) -> WebSocketConfig {
    let max_message = max_frame_bytes.saturating_mul(2).max(64 * 1024);
    WebSocketConfig::default()
        .read_buffer_size(512)
        .write_buffer_size(16 * 1024)
        .max_write_buffer_size(1024 * 1024)
        .max_message_size(Some(max_message))
        .max_frame_size(Some(max_message))
}

async fn ready(State(state): State<HttpState>) -> Response {
    if !state.sessions.router.hub().relay().is_connected() {
        return (StatusCode::SERVICE_UNAVAILABLE, "relay not connected\n").into_response();
    }
    if !state.sessions.router.hub().queues_connected() {
        return (StatusCode::SERVICE_UNAVAILABLE, "queues not connected\n").into_response();
    }
    if let Some(rest) = &state.rest
        && !rest.im.store().ping().await
    {
        return (StatusCode::SERVICE_UNAVAILABLE, "storage unreachable\n").into_response();
    }
    (StatusCode::OK, "ready\n").into_response()
}

async fn metrics() -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        crate::metrics::render(),
    )
        .into_response()
}

/// What `/` answers when the client has not been built.
const NOT_BUILT: &str = "<!doctype html>\n<meta charset=\"utf-8\">\n<title>broker</title>\n\
<h1>broker</h1>\n<p>The demo client has not been built. From the repository, run:</p>\n\
<pre>npm --prefix web ci &amp;&amp; npm --prefix web run build</pre>\n\
<p>and reload. STOMP over WebSocket is at <code>/ws/im</code>.</p>\n";

async fn index(State(state): State<HttpState>, headers: HeaderMap) -> Response {
    let page = match tokio::fs::read(state.web_dir.join("index.html")).await {
        Ok(bytes) => Body::from(bytes),
        Err(_) => Body::from(NOT_BUILT),
    };
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok());
    let policy = HeaderValue::from_str(&client_policy(host))
        .unwrap_or_else(|_| HeaderValue::from_static(CLIENT_POLICY_WITHOUT_HOST));
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/html; charset=utf-8"),
            ),
            // The page names the hashed assets of the current build: always revalidate it.
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
            (header::CONTENT_SECURITY_POLICY, policy),
        ],
        page,
    )
        .into_response()
}

/// The demo client's policy when the request names no usable host.
const CLIENT_POLICY_WITHOUT_HOST: &str = "default-src 'self'; connect-src 'self'; \
img-src 'self' blob: data:; object-src 'none'; base-uri 'none'; frame-ancestors 'none'";

/// The Content-Security-Policy of the demo client: scripts, styles and everything else from
/// this origin only; connections to this origin and to its WebSocket, named as `ws://` and
/// `wss://` of the request's host because browsers before CSP 3 do not count those as 'self';
/// images also from `blob:` and `data:` (previews of uploads); no plugins, no `<base>`, no
/// framing. A `Host` that is not a plain host name or address (it comes from the client) is
/// left out rather than written into the header.
fn client_policy(host: Option<&str>) -> String {
    let plain_host = |h: &&str| {
        !h.is_empty()
            && h.len() <= 255
            && h.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':' | b'[' | b']'))
    };
    match host.filter(plain_host) {
        Some(host) => format!(
            "default-src 'self'; connect-src 'self' ws://{host} wss://{host}; \
             img-src 'self' blob: data:; object-src 'none'; base-uri 'none'; \
             frame-ancestors 'none'"
        ),
        None => CLIENT_POLICY_WITHOUT_HOST.to_owned(),
    }
}

/// A file of the built client under `<web_dir>/assets/`. Asset names carry a content hash, so
/// they may be cached for good.
async fn asset(State(state): State<HttpState>, request: Request) -> Response {
    let path = request.uri().path();
    let Some(relative) = path.strip_prefix("/assets/").and_then(safe_relative) else {
        return plain(StatusCode::NOT_FOUND, "not found\n");
    };
    let file = state.web_dir.join("assets").join(relative);
    match tokio::fs::read(&file).await {
        Ok(bytes) => (
            [
                (header::CONTENT_TYPE, content_type(&file)),
                (header::CACHE_CONTROL, "public, max-age=31536000, immutable"),
            ],
            bytes,
        )
            .into_response(),
        Err(_) => plain(StatusCode::NOT_FOUND, "not found\n"),
    }
}

/// A request path as a relative path inside the asset directory, or `None` when it could leave
/// it: only plain names of `A-Z a-z 0-9 - _ .` separated by `/`, none starting with a dot, so
/// no `..`, no hidden files, no percent-encoded tricks and no absolute paths.
fn safe_relative(path: &str) -> Option<&Path> {
    let plain_segment = |segment: &str| {
        !segment.is_empty()
            && !segment.starts_with('.')
            && segment
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
    };
    path.split('/').all(plain_segment).then(|| Path::new(path))
}

/// The content type of a built asset, from its extension.
fn content_type(file: &Path) -> &'static str {
    match file.extension().and_then(|e| e.to_str()).unwrap_or("") {
        "html" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "json" | "map" => "application/json",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "webp" => "image/webp",
        "ico" => "image/x-icon",
        "woff2" => "font/woff2",
        "txt" => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

fn plain(status: StatusCode, text: &'static str) -> Response {
    (status, text).into_response()
}

/// Picks the best subprotocol the client offers; `None` when it offers none we know (or none
/// at all, which is accepted).
fn choose_subprotocol(headers: &HeaderMap) -> Option<&'static str> {
    let offered: Vec<String> = headers
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|p| p.trim().to_ascii_lowercase())
        .collect();
    SUBPROTOCOLS
        .into_iter()
        .find(|ours| offered.iter().any(|o| o == ours))
}

fn query_token(request: &Request) -> Option<String> {
    let query = request.uri().query()?;
    query.split('&').find_map(|pair| {
        let (name, value) = pair.split_once('=')?;
        (name == "access_token").then(|| percent_decode(value))
    })
}

/// Decodes `%XX` and `+` in a query value; JWTs rarely need it, but a client may encode.
fn percent_decode(value: &str) -> String {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3])
                    .ok()
                    .and_then(|h| u8::from_str_radix(h, 16).ok());
                match hex {
                    Some(byte) => {
                        out.push(byte);
                        i += 3;
                    }
                    None => {
                        out.push(b'%');
                        i += 1;
                    }
                }
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            other => {
                out.push(other);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The address of the peer of the HTTP connection a request came on, set by the listener.
#[derive(Clone, Copy, Debug)]
pub struct PeerAddr(pub std::net::SocketAddr);

async fn upgrade(State(state): State<HttpState>, mut request: Request) -> Response {
    let headers = request.headers();
    let is_upgrade = headers
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
    let connection_upgrade = headers
        .get(header::CONNECTION)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(',')
                .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
        });
    if !is_upgrade || !connection_upgrade {
        return plain(
            StatusCode::UPGRADE_REQUIRED,
            "this endpoint speaks STOMP over WebSocket\n",
        );
    }
    if headers
        .get(header::SEC_WEBSOCKET_VERSION)
        .is_none_or(|v| v.as_bytes() != b"13")
    {
        return plain(StatusCode::BAD_REQUEST, "unsupported WebSocket version\n");
    }
    let Some(key) = headers.get(header::SEC_WEBSOCKET_KEY) else {
        return plain(StatusCode::BAD_REQUEST, "missing Sec-WebSocket-Key\n");
    };
    let accept = derive_accept_key(key.as_bytes());
    let subprotocol = choose_subprotocol(headers);
    let Ok(permit) = state.slots.clone().try_acquire_owned() else {
        Metrics::get().connections_refused.increment(1);
        return plain(StatusCode::SERVICE_UNAVAILABLE, "too many connections\n");
    };
    let token = query_token(&request);
    let origin = crate::delivery::SessionOrigin {
        transport: crate::delivery::Transport::WebSocket,
        remote: request.extensions().get::<PeerAddr>().map(|peer| peer.0),
    };
    let on_upgrade = hyper::upgrade::on(&mut request);
    Metrics::get().connections_total.increment(1);
    let sessions = state.sessions.clone();
    let config = state.websocket;
    state.tracker.spawn(async move {
        let _permit = permit;
        match on_upgrade.await {
            Ok(upgraded) => {
                let socket = WebSocketStream::from_raw_socket(
                    session::transport::counted(TokioIo::new(upgraded)),
                    Role::Server,
                    Some(config),
                )
                .await;
                let (inbound, outbound) = session::transport::websocket(socket);
                session::run(inbound, outbound, token, origin, sessions).await;
            }
            Err(error) => debug!(%error, "websocket upgrade failed"),
        }
    });

    let mut response = Response::new(Body::empty());
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let out = response.headers_mut();
    out.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    out.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    if let Ok(value) = HeaderValue::from_str(&accept) {
        out.insert(header::SEC_WEBSOCKET_ACCEPT, value);
    }
    if let Some(protocol) = subprotocol {
        out.insert(
            header::SEC_WEBSOCKET_PROTOCOL,
            HeaderValue::from_static(protocol),
        );
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn highest_offered_subprotocol_wins() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::SEC_WEBSOCKET_PROTOCOL,
            HeaderValue::from_static("v10.stomp, v12.stomp, v11.stomp"),
        );
        assert_eq!(choose_subprotocol(&headers), Some("v12.stomp"));
        assert_eq!(choose_subprotocol(&HeaderMap::new()), None);
    }

    #[test]
    fn asset_paths_stay_inside_the_directory() {
        assert_eq!(safe_relative("app-3F2A.js"), Some(Path::new("app-3F2A.js")));
        assert_eq!(
            safe_relative("img/logo.svg"),
            Some(Path::new("img/logo.svg"))
        );
        for bad in [
            "../secret",
            "a/../../b",
            ".env",
            "",
            "a//b",
            "/etc/passwd",
            "%2e%2e/x",
            "a\\b",
        ] {
            assert_eq!(safe_relative(bad), None, "{bad}");
        }
    }

    #[test]
    fn content_types_follow_the_extension() {
        assert_eq!(
            content_type(Path::new("a.js")),
            "text/javascript; charset=utf-8"
        );
        assert_eq!(content_type(Path::new("a.css")), "text/css; charset=utf-8");
        assert_eq!(content_type(Path::new("a.bin")), "application/octet-stream");
    }

    #[test]
    fn the_client_policy_names_the_websocket_of_the_host_only_when_it_is_plain() {
        let policy = client_policy(Some("chat.example:8443"));
        assert!(
            policy.contains("connect-src 'self' ws://chat.example:8443 wss://chat.example:8443;"),
            "{policy}"
        );
        assert_eq!(client_policy(None), CLIENT_POLICY_WITHOUT_HOST);
        assert_eq!(
            client_policy(Some("x; script-src *")),
            CLIENT_POLICY_WITHOUT_HOST
        );
        assert!(client_policy(Some("[::1]:8080")).contains("ws://[::1]:8080"));
    }

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("a%2Eb+c"), "a.b c");
        assert_eq!(percent_decode("bad%zz"), "bad%zz");
        assert_eq!(percent_decode("end%2"), "end%2");
    }
}

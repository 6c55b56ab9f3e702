//! What a hostile HTTP client cannot do to a listener: hold more than
//! `server.max_http_connections` connections, take longer than `server.request_timeout_ms` to
//! send a request body, or make the broker read a REST body over `limits.json_max_bytes`.
//!
//! And how a refusal still reaches a client that is busy sending a body: a connection is closed
//! only after its answer went out and the client had a moment to read it (a lingering close).
//! Closing a socket with unread bytes makes the kernel reset it, and a client still writing its
//! body (a browser's `fetch`) then sees EPIPE instead of the 413 it was sent.
//!
//! Bodies are bounded as their handlers read them, never read ahead: a request refused before
//! its body is needed (a bad token, a rate limit) leaves it unread. Uploads keep the deadline
//! and are limited in size by `api::files`, which streams them.

use std::pin::Pin;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, LazyLock};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use hyper::body::{Body as HttpBody, Frame, SizeHint};
use metrics::{Counter, Gauge};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::{Instant, Sleep};

use crate::app_error::{AppError, ErrorCode};

/// The connection budget of one HTTP listener (`server.max_http_connections`).
#[derive(Clone)]
pub struct HttpSlots {
    slots: Arc<Semaphore>,
    open: Gauge,
    refused: Counter,
}

/// A connection's place in the budget, given back when the connection ends or is upgraded to a
/// WebSocket (which then holds a session slot instead).
pub struct HttpSlot {
    _permit: OwnedSemaphorePermit,
    open: Gauge,
}

/// What a refused connection is sent, if its socket takes it at once.
static REFUSED: LazyLock<Vec<u8>> = LazyLock::new(|| {
    let body = AppError::new(ErrorCode::Unavailable, "too many HTTP connections").to_json();
    format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n\
         content-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
});

impl HttpSlots {
    /// A budget of `max` connections.
    pub fn new(max: usize) -> HttpSlots {
        // The recorder must be installed before the handles are taken, or they count nothing.
        crate::metrics::Metrics::get();
        HttpSlots {
            slots: Arc::new(Semaphore::new(max)),
            open: metrics::gauge!("broker_http_connections"),
            refused: metrics::counter!("broker_http_connections_refused_total"),
        }
    }

    /// A slot for a newly accepted connection, or `None` when every slot is taken. A refused
    /// connection is written a 503 if its socket takes it without waiting, and is to be dropped:
    /// nothing of it is read.
    pub fn admit(&self, stream: &TcpStream) -> Option<HttpSlot> {
        match self.slots.clone().try_acquire_owned() {
            Ok(permit) => {
                self.open.increment(1);
                Some(HttpSlot {
                    _permit: permit,
                    open: self.open.clone(),
                })
            }
            Err(_) => {
                self.refused.increment(1);
                let _ = stream.try_write(&REFUSED);
                None
            }
        }
    }
}

impl Drop for HttpSlot {
    fn drop(&mut self) {
        self.open.decrement(1);
    }
}

/// The longest a closing connection keeps reading what its client still sends.
const LINGER_MAX: Duration = Duration::from_secs(5);
/// A closing connection from which nothing arrives for this long is closed at once.
const LINGER_IDLE: Duration = Duration::from_millis(500);
/// The most bytes a closing connection reads and discards.
const LINGER_MAX_BYTES: usize = 64 * 1024 * 1024;

/// A connection's socket whose shutdown lingers: it sends the FIN after everything written,
/// then reads and discards what the client still sends until the client closes, nothing comes
/// for [`LINGER_IDLE`], [`LINGER_MAX`] passed or [`LINGER_MAX_BYTES`] were read. Only then is
/// the socket closed, so that it is closed without unread bytes (a reset) whenever the client
/// plays along. hyper shuts a connection down this way when it closes it after an answer; an
/// upgraded WebSocket never goes through it.
pub struct Lingering<T> {
    io: T,
    state: Linger,
}

enum Linger {
    Open,
    Draining {
        idle: Pin<Box<Sleep>>,
        until: Instant,
        left: usize,
    },
    Closed,
}

impl<T> Lingering<T> {
    /// Wraps a connection's socket.
    pub fn new(io: T) -> Lingering<T> {
        Lingering {
            io,
            state: Linger::Open,
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Lingering<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_read(cx, buf)
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin> AsyncWrite for Lingering<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        loop {
            match &mut this.state {
                Linger::Open => {
                    ready!(Pin::new(&mut this.io).poll_shutdown(cx))?;
                    this.state = Linger::Draining {
                        idle: Box::pin(tokio::time::sleep(LINGER_IDLE)),
                        until: Instant::now() + LINGER_MAX,
                        left: LINGER_MAX_BYTES,
                    };
                }
                Linger::Draining { idle, until, left } => {
                    let mut scratch = [0u8; 4096];
                    let mut buf = ReadBuf::new(&mut scratch);
                    match Pin::new(&mut this.io).poll_read(cx, &mut buf) {
                        Poll::Ready(Ok(())) if !buf.filled().is_empty() => {
                            *left = left.saturating_sub(buf.filled().len());
                            let now = Instant::now();
                            if *left == 0 || now >= *until {
                                this.state = Linger::Closed;
                            } else {
                                let next = (now + LINGER_IDLE).min(*until);
                                idle.as_mut().reset(next);
                            }
                        }
                        // The client closed (or reset): nothing is left to read.
                        Poll::Ready(_) => this.state = Linger::Closed,
                        Poll::Pending => {
                            ready!(idle.as_mut().poll(cx));
                            this.state = Linger::Closed;
                        }
                    }
                }
                Linger::Closed => return Poll::Ready(Ok(())),
            }
        }
    }
}

/// The bounds on a REST request's body.
#[derive(Clone, Copy, Debug)]
pub struct RequestLimits {
    /// How long the body may take, from the end of the head.
    pub timeout: Duration,
    /// Largest JSON body.
    pub json_max_bytes: usize,
    /// Largest body of `POST /api/v1/notifications`, whose list of recipients may be long.
    pub notification_max_bytes: usize,
}

impl RequestLimits {
    /// The body limit of a notification to `max_users` recipients: the JSON limit for the
    /// notification itself, and room for every recipient's id (at most 64 characters, quoted,
    /// with a comma).
    pub fn notification_body(json_max_bytes: usize, max_users: usize) -> usize {
        json_max_bytes.saturating_add(max_users.saturating_mul(67))
    }
}

/// Whether the request is a notification, whose body may name many recipients.
fn is_notification(method: &Method, path: &str) -> bool {
    method == Method::POST && (path == "/notifications" || path.ends_with("/api/v1/notifications"))
}

/// The error of a request body that did not arrive within its deadline.
#[derive(Debug, thiserror::Error)]
#[error("the request body did not arrive within {0:?}")]
pub struct BodyTimeout(Duration);

/// The error of a request body that went past its limit.
#[derive(Debug, thiserror::Error)]
#[error("the request body is larger than {0} bytes")]
struct BodyTooLarge(usize);

/// How a guarded body ended, for the middleware to answer in the contract's terms whatever the
/// handler (or its extractor) made of the error.
const BODY_OK: u8 = 0;
const BODY_TOO_LARGE: u8 = 1;
const BODY_TIMED_OUT: u8 = 2;

/// A request body that fails when it is not over by a deadline, or when it passes a limit.
/// Nothing is read ahead: a handler that refuses the request before reading its body (a bad
/// token) leaves it unread.
struct Guarded {
    body: Body,
    deadline: Pin<Box<Sleep>>,
    timeout: Duration,
    /// Bytes still allowed and the limit; `None` for a body its handler limits (uploads).
    left: Option<(usize, usize)>,
    outcome: Arc<AtomicU8>,
}

impl HttpBody for Guarded {
    type Data = Bytes;
    type Error = axum::BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        if let Poll::Ready(frame) = Pin::new(&mut this.body).poll_frame(cx) {
            if let (Some(Ok(frame)), Some((left, limit))) = (&frame, &mut this.left)
                && let Some(data) = frame.data_ref()
            {
                if data.len() > *left {
                    this.outcome.store(BODY_TOO_LARGE, Ordering::Relaxed);
                    return Poll::Ready(Some(Err(Box::new(BodyTooLarge(*limit)))));
                }
                *left -= data.len();
            }
            return Poll::Ready(frame.map(|f| f.map_err(Into::into)));
        }
        ready!(this.deadline.as_mut().poll(cx));
        this.outcome.store(BODY_TIMED_OUT, Ordering::Relaxed);
        Poll::Ready(Some(Err(Box::new(BodyTimeout(this.timeout)))))
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// The contract's error for a request body that could not be read: `REQUEST_TIMEOUT` when it
/// came too slowly, else `INVALID_ARGUMENT`.
pub fn body_error(error: &axum::Error) -> AppError {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(cause) = source {
        if let Some(timeout) = cause.downcast_ref::<BodyTimeout>() {
            return AppError::new(ErrorCode::RequestTimeout, timeout.to_string());
        }
        source = cause.source();
    }
    AppError::invalid(format!("the request body was interrupted: {error}"))
}

/// The `Content-Length` of a request, when it has a valid one.
pub fn content_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok())
}

/// `PAYLOAD_TOO_LARGE` for a body over `limit` bytes.
pub fn too_large(what: &str, limit: u64) -> AppError {
    AppError::new(
        ErrorCode::PayloadTooLarge,
        format!("the {what} is larger than {limit} bytes"),
    )
}

/// Whether the request is an upload, whose body `api::files` streams itself.
fn is_upload(method: &Method, path: &str) -> bool {
    method == Method::POST && (path == "/files" || path.ends_with("/api/v1/files"))
}

/// Middleware of the REST API: every body must arrive within `server.request_timeout_ms` of
/// the head, else the answer is 408 `REQUEST_TIMEOUT`; a JSON body over `limits.json_max_bytes`
/// (a notification's: over [`RequestLimits::notification_body`]) is refused with 413 `PAYLOAD_TOO_LARGE` by its `Content-Length` before it is read, or as
/// soon as it passes the limit. Uploads keep the deadline and limit their size themselves.
pub async fn guard_api(
    State(limits): State<RequestLimits>,
    request: Request,
    next: Next,
) -> Response {
    let (parts, body) = request.into_parts();
    let limit = if is_notification(&parts.method, parts.uri.path()) {
        limits.notification_max_bytes
    } else {
        limits.json_max_bytes
    };
    let limit_u64 = u64::try_from(limit).unwrap_or(u64::MAX);
    let upload = is_upload(&parts.method, parts.uri.path());
    if !upload && content_length(&parts.headers).is_some_and(|length| length > limit_u64) {
        return too_large("request body", limit_u64).into_response();
    }
    let outcome = Arc::new(AtomicU8::new(BODY_OK));
    let body = Guarded {
        body,
        deadline: Box::pin(tokio::time::sleep(limits.timeout)),
        timeout: limits.timeout,
        left: (!upload).then_some((limit, limit)),
        outcome: outcome.clone(),
    };
    let response = next.run(Request::from_parts(parts, Body::new(body))).await;
    match outcome.load(Ordering::Relaxed) {
        BODY_TOO_LARGE => too_large("request body", limit_u64).into_response(),
        BODY_TIMED_OUT => AppError::new(
            ErrorCode::RequestTimeout,
            BodyTimeout(limits.timeout).to_string(),
        )
        .into_response(),
        _ => response,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    #[test]
    fn uploads_are_recognised_inside_and_outside_the_api_nest() {
        assert!(is_upload(&Method::POST, "/files"));
        assert!(is_upload(&Method::POST, "/api/v1/files"));
        assert!(!is_upload(&Method::GET, "/files"));
        assert!(!is_upload(&Method::POST, "/messages"));
    }

    #[test]
    fn the_refusal_is_a_whole_http_answer() {
        let text = String::from_utf8(REFUSED.clone()).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 503"));
        assert!(head.contains(&format!("content-length: {}", body.len())));
        assert!(body.contains("UNAVAILABLE"));
    }

    #[tokio::test]
    async fn a_body_past_its_deadline_is_a_request_timeout() {
        let (_tx, rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, std::io::Error>>(1);
        let stalled = http_body_util::StreamBody::new(tokio_stream_of(rx));
        let outcome = Arc::new(AtomicU8::new(BODY_OK));
        let guarded = Guarded {
            body: Body::new(stalled),
            deadline: Box::pin(tokio::time::sleep(Duration::from_millis(20))),
            timeout: Duration::from_millis(20),
            left: None,
            outcome: outcome.clone(),
        };
        let error = Body::new(guarded).collect().await.unwrap_err();
        assert_eq!(body_error(&error).code, ErrorCode::RequestTimeout);
        assert_eq!(outcome.load(Ordering::Relaxed), BODY_TIMED_OUT);
    }

    #[tokio::test]
    async fn a_body_past_its_limit_fails_as_soon_as_it_passes_it() {
        let outcome = Arc::new(AtomicU8::new(BODY_OK));
        let guarded = Guarded {
            body: Body::from(vec![0u8; 11]),
            deadline: Box::pin(tokio::time::sleep(Duration::from_secs(60))),
            timeout: Duration::from_secs(60),
            left: Some((10, 10)),
            outcome: outcome.clone(),
        };
        assert!(Body::new(guarded).collect().await.is_err());
        assert_eq!(outcome.load(Ordering::Relaxed), BODY_TOO_LARGE);
    }

    fn tokio_stream_of<T>(
        mut rx: tokio::sync::mpsc::Receiver<T>,
    ) -> impl futures_util::Stream<Item = T> {
        futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
    }
}

//! The two ways STOMP reaches the broker: WebSocket messages and a plain TCP byte stream.
//! Sessions see only bytes in and encoded frames out; message boundaries mean nothing to them,
//! except that a WebSocket message that has begun to arrive and is not complete yet is reported
//! ([`Inbound::incomplete_since`]), so that it is held to the same deadline as a STOMP frame.

use std::cell::Cell;
use std::future::Future;
use std::io;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes, BytesMut};
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::time::Instant;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{Error as WsError, Message, Utf8Bytes};
use tokio_util::io::InspectReader;

/// Reads what the peer sends.
pub trait Inbound: Send + 'static {
    /// Appends the next bytes received to `buf`. `Ok(false)` when the peer closed cleanly; an
    /// error of kind [`io::ErrorKind::FileTooLarge`] when the peer sent more than the transport
    /// accepts at once. Cancel-safe: dropping the future loses nothing.
    fn read(&mut self, buf: &mut BytesMut) -> impl Future<Output = io::Result<bool>> + Send;

    /// Since when the transport holds the beginning of a message that it has not appended to
    /// a buffer yet (bytes the session does not see); `None` when it holds none. A read returns
    /// as soon as such a message begins, with nothing appended, so that the caller can arm a
    /// deadline for it.
    fn incomplete_since(&self) -> Option<Instant> {
        None
    }
}

/// Writes encoded frames to the peer.
pub trait Outbound: Send + 'static {
    /// Queues one encoded frame (or a heart-beat EOL); may write if its buffer is full.
    fn write(&mut self, frame: Bytes) -> impl Future<Output = io::Result<()>> + Send;
    /// Writes everything queued. Cancel-safe: what was not written stays queued.
    fn flush(&mut self) -> impl Future<Output = io::Result<()>> + Send;
    /// Closes the connection; `going_away` when the server is shutting down.
    fn close(&mut self, going_away: bool) -> impl Future<Output = ()> + Send;
}

fn ws_error(error: WsError) -> io::Error {
    match error {
        WsError::Io(error) => error,
        other => io::Error::other(other),
    }
}

thread_local! {
    /// Bytes a WebSocket read from its socket during the current poll of a [`WsInbound`]: the
    /// socket's [`Counted`] wrapper adds to it, and the inbound half reads it back within the
    /// same poll, on the same thread.
    static BYTES_READ: Cell<usize> = const { Cell::new(0) };
}

/// The socket under a WebSocket, counting what is read from it: how the inbound half learns
/// that a message has begun although tungstenite holds it until it is complete.
pub type Counted<S> = InspectReader<S, fn(&[u8])>;

/// Wraps the socket under a WebSocket (see [`Counted`]).
pub fn counted<S: AsyncRead>(inner: S) -> Counted<S> {
    InspectReader::new(inner, count_read)
}

fn count_read(read: &[u8]) {
    BYTES_READ.with(|count| count.set(count.get() + read.len()));
}

/// The receiving half of a WebSocket.
pub struct WsInbound<S> {
    stream: SplitStream<WebSocketStream<Counted<S>>>,
    /// Bytes read from the socket that no message delivered so far accounts for: the
    /// beginning of the next message, when not zero.
    unaccounted: usize,
    incomplete_since: Option<Instant>,
}

/// The sending half of a WebSocket.
pub struct WsOutbound<S> {
    sink: SplitSink<WebSocketStream<Counted<S>>, Message>,
}

/// Splits a WebSocket into the session's halves.
pub fn websocket<S>(socket: WebSocketStream<Counted<S>>) -> (WsInbound<S>, WsOutbound<S>)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (sink, stream) = socket.split();
    (
        WsInbound {
            stream,
            unaccounted: 0,
            incomplete_since: None,
        },
        WsOutbound { sink },
    )
}

impl<S> WsInbound<S>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    fn poll_message(&mut self, cx: &mut Context<'_>, buf: &mut BytesMut) -> Poll<io::Result<bool>> {
        loop {
            BYTES_READ.with(|count| count.set(0));
            let polled = self.stream.poll_next_unpin(cx);
            self.unaccounted += BYTES_READ.with(|count| count.replace(0));
            let data = match polled {
                Poll::Pending => {
                    if self.unaccounted > 0 && self.incomplete_since.is_none() {
                        self.incomplete_since = Some(Instant::now());
                        // Woken already by what the stream registered; returning now lets the
                        // session arm the deadline of this message.
                        return Poll::Ready(Ok(true));
                    }
                    return Poll::Pending;
                }
                Poll::Ready(None | Some(Ok(Message::Close(_)))) => return Poll::Ready(Ok(false)),
                Poll::Ready(Some(Ok(Message::Text(text)))) => Bytes::from(text),
                Poll::Ready(Some(Ok(Message::Binary(bytes)))) => bytes,
                // Pings are answered by tungstenite itself; neither carries STOMP. A client's
                // control frame is masked and short: 2 header octets, 4 of mask, the payload.
                // What else was read belongs to a message still arriving, which a ping must not
                // excuse.
                Poll::Ready(Some(Ok(Message::Ping(payload) | Message::Pong(payload)))) => {
                    self.unaccounted = self.unaccounted.saturating_sub(6 + payload.len());
                    if self.unaccounted == 0 {
                        self.incomplete_since = None;
                    }
                    continue;
                }
                Poll::Ready(Some(Ok(Message::Frame(_)))) => continue,
                Poll::Ready(Some(Err(WsError::ConnectionClosed | WsError::AlreadyClosed))) => {
                    return Poll::Ready(Ok(false));
                }
                // A message over the WebSocket limit holds a frame over the STOMP one; the
                // session answers it like any oversized frame.
                Poll::Ready(Some(Err(WsError::Capacity(error)))) => {
                    return Poll::Ready(Err(io::Error::new(io::ErrorKind::FileTooLarge, error)));
                }
                Poll::Ready(Some(Err(error))) => return Poll::Ready(Err(ws_error(error))),
            };
            // Bytes of a next message read together with this one stay unaccounted for until
            // more arrives (at most one socket read, `read_buffer_size`).
            self.unaccounted = 0;
            self.incomplete_since = None;
            buf.extend_from_slice(&data);
            return Poll::Ready(Ok(true));
        }
    }
}

impl<S> Inbound for WsInbound<S>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    async fn read(&mut self, buf: &mut BytesMut) -> io::Result<bool> {
        // Cancel-safe: what the stream holds, and the counts, stay in `self`.
        std::future::poll_fn(|cx| self.poll_message(cx, buf)).await
    }

    fn incomplete_since(&self) -> Option<Instant> {
        self.incomplete_since
    }
}

impl<S> Outbound for WsOutbound<S>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    async fn write(&mut self, frame: Bytes) -> io::Result<()> {
        // The contract: text messages for UTF-8 frames, binary otherwise.
        let message = match Utf8Bytes::try_from(frame.clone()) {
            Ok(text) => Message::Text(text),
            Err(_) => Message::Binary(frame),
        };
        self.sink.feed(message).await.map_err(ws_error)
    }

    async fn flush(&mut self) -> io::Result<()> {
        self.sink.flush().await.map_err(ws_error)
    }

    async fn close(&mut self, going_away: bool) {
        let frame = CloseFrame {
            code: if going_away {
                CloseCode::Away
            } else {
                CloseCode::Normal
            },
            reason: Utf8Bytes::from_static(""),
        };
        let _ = self.sink.send(Message::Close(Some(frame))).await;
        let _ = self.sink.close().await;
    }
}

/// The receiving half of a byte-stream connection (TCP, or TLS over TCP).
pub struct TcpInbound<R = OwnedReadHalf> {
    half: R,
}

/// The sending half of a byte-stream connection, with its write buffer.
pub struct TcpOutbound<W = OwnedWriteHalf> {
    half: W,
    buf: BytesMut,
}

/// Splits a TCP stream into the session's halves.
pub fn tcp(stream: tokio::net::TcpStream) -> (TcpInbound, TcpOutbound) {
    let (read, write) = stream.into_split();
    (
        TcpInbound { half: read },
        TcpOutbound {
            half: write,
            buf: BytesMut::new(),
        },
    )
}

/// Splits any byte stream (STOMP over TLS) into the session's halves.
pub fn stream<S>(stream: S) -> (TcpInbound<ReadHalf<S>>, TcpOutbound<WriteHalf<S>>)
where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    let (read, write) = tokio::io::split(stream);
    (
        TcpInbound { half: read },
        TcpOutbound {
            half: write,
            buf: BytesMut::new(),
        },
    )
}

/// Above this the write buffer is flushed before more is added.
const TCP_WRITE_CHUNK: usize = 64 * 1024;

impl<R: AsyncRead + Unpin + Send + 'static> Inbound for TcpInbound<R> {
    async fn read(&mut self, buf: &mut BytesMut) -> io::Result<bool> {
        use tokio::io::AsyncReadExt;
        if buf.capacity() - buf.len() < 1024 {
            buf.reserve(4096);
        }
        Ok(self.half.read_buf(buf).await? > 0)
    }
}

impl<W: AsyncWrite + Unpin + Send + 'static> Outbound for TcpOutbound<W> {
    async fn write(&mut self, frame: Bytes) -> io::Result<()> {
        if self.buf.len() >= TCP_WRITE_CHUNK {
            self.flush().await?;
        }
        self.buf.extend_from_slice(&frame);
        Ok(())
    }

    async fn flush(&mut self) -> io::Result<()> {
        // write_buf advances the buffer only by what was written, so a cancelled flush leaves
        // the rest queued and the byte stream intact.
        while self.buf.has_remaining() {
            if self.half.write_buf(&mut self.buf).await? == 0 {
                return Err(io::ErrorKind::WriteZero.into());
            }
        }
        if self.buf.capacity() > 4 * TCP_WRITE_CHUNK {
            self.buf = BytesMut::new();
        }
        Ok(())
    }

    async fn close(&mut self, _going_away: bool) {
        let _ = self.flush().await;
        let _ = self.half.shutdown().await;
    }
}

//! The two ways STOMP reaches the broker: WebSocket messages and a plain TCP byte stream.
//! Sessions see only bytes in and encoded frames out; message boundaries mean nothing to them.

use std::future::Future;
use std::io;

use bytes::{Buf, Bytes, BytesMut};
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{Error as WsError, Message, Utf8Bytes};

/// Reads what the peer sends.
pub trait Inbound: Send + 'static {
    /// Appends the next bytes received to `buf`. `Ok(false)` when the peer closed cleanly; an
    /// error of kind [`io::ErrorKind::FileTooLarge`] when the peer sent more than the transport
    /// accepts at once. Cancel-safe: dropping the future loses nothing.
    fn read(&mut self, buf: &mut BytesMut) -> impl Future<Output = io::Result<bool>> + Send;
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

/// The receiving half of a WebSocket.
pub struct WsInbound<S> {
    stream: SplitStream<WebSocketStream<S>>,
}

/// The sending half of a WebSocket.
pub struct WsOutbound<S> {
    sink: SplitSink<WebSocketStream<S>, Message>,
}

/// Splits a WebSocket into the session's halves.
pub fn websocket<S>(socket: WebSocketStream<S>) -> (WsInbound<S>, WsOutbound<S>)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (sink, stream) = socket.split();
    (WsInbound { stream }, WsOutbound { sink })
}

impl<S> Inbound for WsInbound<S>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    async fn read(&mut self, buf: &mut BytesMut) -> io::Result<bool> {
        loop {
            match self.stream.next().await {
                None | Some(Ok(Message::Close(_))) => return Ok(false),
                Some(Ok(Message::Text(text))) => {
                    buf.extend_from_slice(text.as_bytes());
                    return Ok(true);
                }
                Some(Ok(Message::Binary(bytes))) => {
                    buf.extend_from_slice(&bytes);
                    return Ok(true);
                }
                // Pings are answered by tungstenite itself; neither carries STOMP.
                Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => {}
                Some(Err(WsError::ConnectionClosed | WsError::AlreadyClosed)) => return Ok(false),
                // A message over the WebSocket limit holds a frame over the STOMP one; the
                // session answers it like any oversized frame.
                Some(Err(WsError::Capacity(error))) => {
                    return Err(io::Error::new(io::ErrorKind::FileTooLarge, error));
                }
                Some(Err(error)) => return Err(ws_error(error)),
            }
        }
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

/// The receiving half of a TCP connection.
pub struct TcpInbound {
    half: OwnedReadHalf,
}

/// The sending half of a TCP connection, with its write buffer.
pub struct TcpOutbound {
    half: OwnedWriteHalf,
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

/// Above this the write buffer is flushed before more is added.
const TCP_WRITE_CHUNK: usize = 64 * 1024;

impl Inbound for TcpInbound {
    async fn read(&mut self, buf: &mut BytesMut) -> io::Result<bool> {
        use tokio::io::AsyncReadExt;
        if buf.capacity() - buf.len() < 1024 {
            buf.reserve(4096);
        }
        Ok(self.half.read_buf(buf).await? > 0)
    }
}

impl Outbound for TcpOutbound {
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

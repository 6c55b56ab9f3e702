//! An in-memory transport pair: a session's [`Inbound`] and [`Outbound`] halves joined by
//! channels to a [`MemoryPeer`] that plays the client. It lets the session's state machine
//! (handshake, frames, receipts, errors, close) be tested without a socket; bytes cross
//! unchanged, so the session cannot tell it from TCP.

use std::io;

use bytes::{Bytes, BytesMut};
use stomp_codec::{DecodeError, Decoded, Decoder, Frame, Limits, Version, encode};
use tokio::sync::mpsc;

use super::transport::{Inbound, Outbound};

/// The session's receiving half: what the peer sent.
pub struct MemoryInbound {
    from_peer: mpsc::UnboundedReceiver<Bytes>,
}

/// The session's sending half: frames are handed to the peer when flushed.
pub struct MemoryOutbound {
    /// `None` once the session closed the connection.
    to_peer: Option<mpsc::UnboundedSender<Bytes>>,
    pending: Vec<Bytes>,
}

/// The client's end of the pair.
pub struct MemoryPeer {
    /// `None` once the client hung up.
    to_session: Option<mpsc::UnboundedSender<Bytes>>,
    from_session: mpsc::UnboundedReceiver<Bytes>,
    received: BytesMut,
    decoder: Decoder,
    version: Version,
}

/// A connected pair: the session's halves and the client's end.
pub fn pair() -> (MemoryInbound, MemoryOutbound, MemoryPeer) {
    let (to_session, from_peer) = mpsc::unbounded_channel();
    let (to_peer, from_session) = mpsc::unbounded_channel();
    (
        MemoryInbound { from_peer },
        MemoryOutbound {
            to_peer: Some(to_peer),
            pending: Vec::new(),
        },
        MemoryPeer {
            to_session: Some(to_session),
            from_session,
            received: BytesMut::new(),
            decoder: Decoder::new(Limits::default()),
            version: Version::V1_2,
        },
    )
}

impl Inbound for MemoryInbound {
    async fn read(&mut self, buf: &mut BytesMut) -> io::Result<bool> {
        // Cancel-safe: a message stays in the channel until `recv` returns it.
        match self.from_peer.recv().await {
            Some(bytes) => {
                buf.extend_from_slice(&bytes);
                Ok(true)
            }
            None => Ok(false),
        }
    }
}

impl Outbound for MemoryOutbound {
    async fn write(&mut self, frame: Bytes) -> io::Result<()> {
        self.pending.push(frame);
        Ok(())
    }

    async fn flush(&mut self) -> io::Result<()> {
        let Some(to_peer) = &self.to_peer else {
            return Err(io::ErrorKind::NotConnected.into());
        };
        for frame in self.pending.drain(..) {
            to_peer
                .send(frame)
                .map_err(|_| io::Error::from(io::ErrorKind::BrokenPipe))?;
        }
        Ok(())
    }

    async fn close(&mut self, _going_away: bool) {
        let _ = self.flush().await;
        self.to_peer = None;
    }
}

impl MemoryPeer {
    /// Sends raw bytes to the session; false when it has stopped reading.
    pub fn send_bytes(&self, bytes: impl Into<Bytes>) -> bool {
        self.to_session
            .as_ref()
            .is_some_and(|to_session| to_session.send(bytes.into()).is_ok())
    }

    /// Encodes and sends a frame (in the version agreed, 1.2 before CONNECTED).
    pub fn send(&self, frame: &Frame) -> bool {
        let mut buf = BytesMut::new();
        encode(frame, self.version, &mut buf);
        self.send_bytes(buf.freeze())
    }

    /// Decodes later frames in `version` (after CONNECTED).
    pub fn set_version(&mut self, version: Version) {
        self.version = version;
        self.decoder.set_version(version);
    }

    /// The next frame from the session, skipping heart-beats; `Ok(None)` once the session has
    /// closed the connection and every frame before the close has been read.
    ///
    /// # Errors
    ///
    /// [`DecodeError`] when the session sent bytes that are not a STOMP frame.
    pub async fn frame(&mut self) -> Result<Option<Frame>, DecodeError> {
        loop {
            match self.decoder.decode(&mut self.received)? {
                Some(Decoded::Frame(frame)) => return Ok(Some(frame)),
                Some(Decoded::HeartBeat) => continue,
                None => {}
            }
            let Some(bytes) = self.from_session.recv().await else {
                return Ok(None);
            };
            self.received.extend_from_slice(&bytes);
        }
    }

    /// Closes the client's sending side, as a client that goes away.
    pub fn hang_up(&mut self) {
        self.to_session = None;
    }
}

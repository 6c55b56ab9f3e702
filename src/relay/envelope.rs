//! The bytes a publication travels as between nodes: origin node, route, STOMP headers, body.
//!
//! A small length-prefixed binary layout, so that bodies of any bytes pass unchanged and no
//! JSON escaping sits on the per-delivery path. Decoding never panics: a malformed envelope is
//! an error and is dropped by the receiver, as is one whose headers hold a NUL, which STOMP
//! cannot carry.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use stomp_codec::Headers;

use crate::delivery::Route;

const VERSION: u8 = 1;
const KIND_TOPIC: u8 = 1;
const KIND_USER: u8 = 2;

/// A publication as carried between nodes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Envelope {
    /// The node that published it (and already served its own sessions).
    pub origin: String,
    /// Where it goes.
    pub route: Route,
    /// The place in the topic's sequence, if any.
    pub sequence: Option<i64>,
    /// STOMP headers of the MESSAGE.
    pub headers: Headers,
    /// The body.
    pub body: Bytes,
}

/// The envelope is not one this node can read.
#[derive(Debug, thiserror::Error)]
#[error("malformed relay envelope")]
pub struct Malformed;

fn put_text(buf: &mut BytesMut, text: &str) {
    let bytes = text.as_bytes();
    let len = u32::try_from(bytes.len()).unwrap_or(u32::MAX);
    buf.put_u32(len);
    buf.put_slice(&bytes[..len as usize]);
}

fn take_text(buf: &mut Bytes) -> Result<String, Malformed> {
    if buf.remaining() < 4 {
        return Err(Malformed);
    }
    let len = buf.get_u32() as usize;
    if buf.remaining() < len {
        return Err(Malformed);
    }
    let text = buf.split_to(len);
    String::from_utf8(text.to_vec()).map_err(|_| Malformed)
}

impl Envelope {
    /// Encodes the envelope.
    pub fn encode(
        origin: &str,
        route: &Route,
        sequence: Option<i64>,
        headers: &Headers,
        body: &[u8],
    ) -> Vec<u8> {
        let mut buf = BytesMut::with_capacity(64 + body.len());
        buf.put_u8(VERSION);
        put_text(&mut buf, origin);
        match route {
            Route::Topic(name) => {
                buf.put_u8(KIND_TOPIC);
                put_text(&mut buf, name);
            }
            Route::User { user, queue } => {
                buf.put_u8(KIND_USER);
                put_text(&mut buf, user);
                put_text(&mut buf, queue);
            }
        }
        // 0 means "not sequenced": seqs start at 1.
        buf.put_i64(sequence.unwrap_or(0));
        buf.put_u16(u16::try_from(headers.len()).unwrap_or(u16::MAX));
        for (name, value) in headers.iter().take(usize::from(u16::MAX)) {
            put_text(&mut buf, name);
            put_text(&mut buf, value);
        }
        buf.put_slice(body);
        buf.to_vec()
    }

    /// Decodes an envelope.
    ///
    /// # Errors
    ///
    /// [`Malformed`] when the bytes are not an envelope of this version.
    pub fn decode(bytes: Bytes) -> Result<Envelope, Malformed> {
        let mut buf = bytes;
        if buf.remaining() < 1 || buf.get_u8() != VERSION {
            return Err(Malformed);
        }
        let origin = take_text(&mut buf)?;
        if buf.remaining() < 1 {
            return Err(Malformed);
        }
        let route = match buf.get_u8() {
            KIND_TOPIC => Route::Topic(take_text(&mut buf)?),
            KIND_USER => Route::User {
                user: take_text(&mut buf)?,
                queue: take_text(&mut buf)?,
            },
            _ => return Err(Malformed),
        };
        if buf.remaining() < 10 {
            return Err(Malformed);
        }
        let sequence = Some(buf.get_i64()).filter(|seq| *seq > 0);
        let count = buf.get_u16();
        let mut headers = Headers::with_capacity(usize::from(count));
        for _ in 0..count {
            let name = take_text(&mut buf)?;
            let value = take_text(&mut buf)?;
            // Nodes relay only headers that passed the STOMP decoder, which refuses NUL; one
            // here was not written by a node and must not reach a subscriber.
            if name.contains('\0') || value.contains('\0') {
                return Err(Malformed);
            }
            headers.push(name, value);
        }
        Ok(Envelope {
            origin,
            route,
            sequence,
            headers,
            body: buf,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let mut headers = Headers::new();
        headers.push("event", "message.new");
        headers.push("content-type", "application/json");
        let route = Route::User {
            user: "alice".into(),
            queue: "messages".into(),
        };
        let bytes = Envelope::encode("node-1", &route, Some(7), &headers, b"{\"a\":1}\0binary");
        let envelope = Envelope::decode(Bytes::from(bytes)).unwrap();
        assert_eq!(envelope.origin, "node-1");
        assert_eq!(envelope.route, route);
        assert_eq!(envelope.sequence, Some(7));
        assert_eq!(envelope.headers, headers);
        assert_eq!(&envelope.body[..], b"{\"a\":1}\0binary");
    }

    #[test]
    fn truncated_envelopes_are_errors_not_panics() {
        let bytes = Envelope::encode(
            "n",
            &Route::Topic("t".into()),
            None,
            &Headers::new(),
            b"body",
        );
        for cut in 0..bytes.len() - 4 {
            assert!(Envelope::decode(Bytes::copy_from_slice(&bytes[..cut])).is_err());
        }
        assert!(Envelope::decode(Bytes::from_static(&[9, 0, 0])).is_err());
    }

    #[test]
    fn an_envelope_with_a_nul_in_a_header_is_refused() {
        for (name, value) in [("x-bad", "a\0b"), ("x\0bad", "v")] {
            let mut headers = Headers::new();
            headers.push(name, value);
            let bytes = Envelope::encode("n", &Route::Topic("t".into()), None, &headers, b"");
            assert!(Envelope::decode(Bytes::from(bytes)).is_err(), "{name:?}");
        }
    }
}

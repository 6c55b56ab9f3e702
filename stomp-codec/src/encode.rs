//! Encoding frames into a byte buffer, and pre-encoded MESSAGE bodies for fan-out.

use std::sync::OnceLock;

use bytes::{BufMut, Bytes, BytesMut};

use crate::escape::{lines_need_no_escape, put_eol, put_header_text};
use crate::frame::{Command, Frame, Headers, Version};

const CONTENT_LENGTH: &str = "content-length";

/// Appends `frame` to `dst`, escaped for `version`.
///
/// A `content-length` header is always computed from the body (any given one is replaced), and
/// written whenever the body is not empty, so that bodies may contain NUL octets.
///
/// ```
/// use bytes::BytesMut;
/// use stomp_codec::{encode, Command, Frame, Version};
///
/// let frame = Frame::new(Command::Receipt).header("receipt-id", "77");
/// let mut buf = BytesMut::new();
/// encode(&frame, Version::V1_2, &mut buf);
/// assert_eq!(&buf[..], b"RECEIPT\nreceipt-id:77\n\n\0");
/// ```
pub fn encode(frame: &Frame, version: Version, dst: &mut BytesMut) {
    let escaped = frame.command.escapes_headers();
    dst.reserve(encoded_len_hint(&frame.headers, frame.body.len()) + 16);
    dst.put_slice(frame.command.as_str().as_bytes());
    dst.put_u8(b'\n');
    let start = dst.len();
    let mut had_length = false;
    let mut lines = 0;
    for (name, value) in frame.headers.iter() {
        if name == CONTENT_LENGTH {
            had_length = true;
            continue;
        }
        dst.put_slice(name.as_bytes());
        dst.put_u8(b':');
        dst.put_slice(value.as_bytes());
        put_eol(dst, value, version, escaped);
        lines += 1;
    }
    if !lines_need_no_escape(&dst[start..], lines, version, escaped) {
        // Rare: some name or value needs escaping (or, unescaped, holds an LF). Write the lines
        // again, one text at a time.
        dst.truncate(start);
        for (name, value) in frame.headers.iter() {
            if name != CONTENT_LENGTH {
                put_header(dst, name, value, version, escaped);
            }
        }
    }
    put_body(dst, &frame.body, had_length);
}

/// Appends a heart-beat (a lone EOL).
pub fn encode_heartbeat(dst: &mut BytesMut) {
    dst.put_u8(b'\n');
}

fn put_header(dst: &mut BytesMut, name: &str, value: &str, version: Version, escaped: bool) {
    put_header_text(dst, name, version, escaped);
    dst.put_u8(b':');
    put_header_text(dst, value, version, escaped);
    put_eol(dst, value, version, escaped);
}

fn put_body(dst: &mut BytesMut, body: &[u8], always_length: bool) {
    if !body.is_empty() || always_length {
        dst.put_slice(b"content-length:");
        dst.put_slice(itoa::Buffer::new().format(body.len()).as_bytes());
        dst.put_u8(b'\n');
    }
    dst.put_u8(b'\n');
    dst.put_slice(body);
    dst.put_u8(0);
}

fn encoded_len_hint(headers: &Headers, body: usize) -> usize {
    headers
        .iter()
        .map(|(n, v)| n.len() + v.len() + 2)
        .sum::<usize>()
        + body
        + 32
}

/// A MESSAGE whose shared headers and body are encoded once and reused for every subscriber.
///
/// Fan-out is the hot path of a broker: one publish becomes thousands of MESSAGE frames that
/// differ only in `subscription`, `message-id` and `ack`. The template encodes everything else
/// (escaped per version, on first use) into one shared buffer; [`MessageTemplate::encode_to`]
/// then writes the few per-subscriber headers and copies that buffer, without re-escaping or
/// re-serialising anything.
///
/// ```
/// use bytes::{Bytes, BytesMut};
/// use stomp_codec::{Headers, MessageTemplate, Version};
///
/// let mut headers = Headers::new();
/// headers.push("destination", "/topic/news");
/// let template = MessageTemplate::new(headers, Bytes::from_static(b"hi"));
/// let mut buf = BytesMut::new();
/// template.encode_to(Version::V1_2, "sub-1", "m-1", None, &mut buf);
/// assert_eq!(
///     &buf[..],
///     &b"MESSAGE\nsubscription:sub-1\nmessage-id:m-1\ndestination:/topic/news\ncontent-length:2\n\nhi\0"[..]
/// );
/// ```
#[derive(Debug)]
pub struct MessageTemplate {
    headers: Headers,
    body: Bytes,
    /// The encoded tail (shared headers, content-length, body, NUL), one per version.
    tails: [OnceLock<Bytes>; 3],
}

impl MessageTemplate {
    /// A template for a MESSAGE with these shared headers and body. `subscription`,
    /// `message-id`, `ack` and `content-length` among `headers` are ignored: they are per
    /// subscriber or computed.
    pub fn new(mut headers: Headers, body: Bytes) -> MessageTemplate {
        for name in ["subscription", "message-id", "ack", CONTENT_LENGTH] {
            headers.remove(name);
        }
        MessageTemplate {
            headers,
            body,
            tails: Default::default(),
        }
    }

    /// The shared headers.
    pub fn headers(&self) -> &Headers {
        &self.headers
    }

    /// The body.
    pub fn body(&self) -> &Bytes {
        &self.body
    }

    /// The encoded shared part for `version`, built on first use and then reused.
    pub fn tail(&self, version: Version) -> &Bytes {
        let slot = match version {
            Version::V1_0 => &self.tails[0],
            Version::V1_1 => &self.tails[1],
            Version::V1_2 => &self.tails[2],
        };
        slot.get_or_init(|| {
            let mut tail =
                BytesMut::with_capacity(encoded_len_hint(&self.headers, self.body.len()));
            for (name, value) in self.headers.iter() {
                put_header(&mut tail, name, value, version, true);
            }
            put_body(&mut tail, &self.body, true);
            tail.freeze()
        })
    }

    /// Appends the MESSAGE frame for one subscriber.
    pub fn encode_to(
        &self,
        version: Version,
        subscription: &str,
        message_id: &str,
        ack: Option<&str>,
        dst: &mut BytesMut,
    ) {
        let tail = self.tail(version);
        dst.reserve(tail.len() + subscription.len() + message_id.len() + 64);
        dst.put_slice(Command::Message.as_str().as_bytes());
        dst.put_u8(b'\n');
        put_header(dst, "subscription", subscription, version, true);
        put_header(dst, "message-id", message_id, version, true);
        if let Some(ack) = ack {
            put_header(dst, "ack", ack, version, true);
        }
        dst.put_slice(tail);
    }

    /// The complete frame for one subscriber, as the decoder would return it.
    pub fn to_frame(&self, subscription: &str, message_id: &str, ack: Option<&str>) -> Frame {
        let mut headers = Headers::with_capacity(self.headers.len() + 4);
        headers.push("subscription", subscription);
        headers.push("message-id", message_id);
        if let Some(ack) = ack {
            headers.push("ack", ack);
        }
        for (name, value) in self.headers.iter() {
            headers.push(name, value);
        }
        headers.push(CONTENT_LENGTH, self.body.len().to_string());
        Frame {
            command: Command::Message,
            headers,
            body: self.body.clone(),
        }
    }
}

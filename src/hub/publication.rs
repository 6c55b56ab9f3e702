//! What is published through the hub ([`Publication`]) and how many local sessions a
//! publication reached ([`Fanout`]).

use std::sync::Arc;

use bytes::Bytes;
use bytestring::ByteString;
use stomp_codec::Headers;

use crate::delivery::AckHook;

/// A message to publish: its headers (beyond the destination, which the route gives) and body.
#[derive(Clone, Default)]
pub struct Publication {
    /// Headers such as `content-type` and `event`.
    pub headers: Headers,
    /// The body.
    pub body: Bytes,
    /// Called when a client-ack subscriber ACKs or NACKs it.
    pub ack_hook: Option<Arc<dyn AckHook>>,
    /// A session that must not get it (the one whose action caused it).
    pub exclude_session: Option<u64>,
    /// The publication's place in its topic's sequence (a group message's seq): subscribers
    /// get sequenced publications in this order even when they arrive from several nodes.
    pub sequence: Option<i64>,
}

/// How many local sessions a publication was queued to.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Fanout {
    /// Subscriptions with `ack:auto`: delivered once queued.
    pub auto: usize,
    /// Client-ack subscriptions: delivered when ACKed.
    pub client: usize,
}

impl Fanout {
    /// All sessions it was queued to.
    pub fn total(&self) -> usize {
        self.auto + self.client
    }
}

impl Publication {
    /// A JSON publication with an `event` header, as the IM layer sends.
    pub fn json_event(event: &'static str, body: impl Into<Bytes>) -> Publication {
        // Static names and values: a publication is built for every push, and these would
        // otherwise be copied into four allocations each time.
        let mut headers = Headers::with_capacity(2);
        headers.push(
            ByteString::from_static("content-type"),
            ByteString::from_static("application/json"),
        );
        headers.push(
            ByteString::from_static("event"),
            ByteString::from_static(event),
        );
        Publication {
            headers,
            body: body.into(),
            ..Publication::default()
        }
    }
}

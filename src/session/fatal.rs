//! The ERROR a session ends with: a protocol fault's reason (for metrics), `message` header,
//! one-line explanation and the `receipt` of the frame at fault, and its encoding.

use bytes::{Bytes, BytesMut};
use bytestring::ByteString;
use stomp_codec::{Command, DecodeError, ErrorKind, Frame, Version, encode};

use crate::metrics::ErrorReason;

/// A fatal protocol error: sent as an ERROR frame, then the connection closes.
#[derive(Debug)]
pub(super) struct Fatal {
    pub(super) reason: ErrorReason,
    pub(super) message: String,
    pub(super) detail: String,
    pub(super) receipt: Option<ByteString>,
    pub(super) extra: Option<(&'static str, &'static str)>,
}

impl Fatal {
    pub(super) fn new(
        reason: ErrorReason,
        message: impl Into<String>,
        detail: impl Into<String>,
    ) -> Fatal {
        Fatal {
            reason,
            message: message.into(),
            detail: detail.into(),
            receipt: None,
            extra: None,
        }
    }

    pub(super) fn with_receipt(mut self, frame: &Frame) -> Fatal {
        self.receipt = frame.headers.get_shared("receipt").cloned();
        self
    }

    pub(super) fn missing(header: &str, frame: &Frame) -> Fatal {
        Fatal::new(
            ErrorReason::BadHeader,
            format!("missing {header} header"),
            format!("{} frames need a {header} header", frame.command),
        )
        .with_receipt(frame)
    }

    pub(super) fn unauthorized(detail: impl Into<String>) -> Fatal {
        Fatal::new(ErrorReason::Unauthorized, "unauthorized", detail)
    }

    pub(super) fn encode(&self, version: Version) -> Bytes {
        let mut frame = Frame::new(Command::Error)
            .header("message", self.message.as_str())
            // Exactly text/plain: UTF-8 is STOMP's default, and some clients (stompit) read an
            // ERROR's body only for this type.
            .header("content-type", "text/plain");
        if let Some(receipt) = &self.receipt {
            frame.headers.push("receipt-id", receipt.clone());
        }
        if let Some((name, value)) = self.extra {
            frame.headers.push(name, value);
        }
        frame.body = Bytes::from(self.detail.clone());
        let mut buf = BytesMut::new();
        encode(&frame, version, &mut buf);
        buf.freeze()
    }
}

impl From<DecodeError> for Fatal {
    fn from(error: DecodeError) -> Fatal {
        let reason = match error.kind {
            ErrorKind::FrameTooLarge { .. }
            | ErrorKind::BodyTooLarge { .. }
            | ErrorKind::HeaderLineTooLong { .. }
            | ErrorKind::TooManyHeaders { .. } => ErrorReason::TooLarge,
            _ => ErrorReason::Malformed,
        };
        let message = match &error.kind {
            ErrorKind::FrameTooLarge { .. } | ErrorKind::BodyTooLarge { .. } => "frame too large",
            ErrorKind::TooManyHeaders { .. } => "too many headers",
            ErrorKind::HeaderLineTooLong { .. } => "header too long",
            ErrorKind::UnknownCommand(_) => "unknown command",
            _ => "malformed frame",
        };
        let mut fatal = Fatal::new(reason, message, error.kind.to_string());
        fatal.receipt = error.receipt;
        fatal
    }
}

/// The ERROR for a transport message over the transport's own limit (a WebSocket message over
/// twice `max_frame_bytes`): it held a frame over the limit.
pub(super) fn transport_too_large(error: &std::io::Error) -> Fatal {
    Fatal::new(ErrorReason::TooLarge, "frame too large", error.to_string())
}

//! A sans-IO STOMP 1.0, 1.1 and 1.2 frame codec.
//!
//! The crate turns bytes into [`Frame`]s and back, and does nothing else: no sockets, no tasks,
//! no clocks. A connection owns a [`Decoder`] and a `BytesMut` it fills from its transport;
//! [`Decoder::decode`] returns one [`Decoded`] item at a time, or `None` when it needs more bytes.
//! [`encode`] appends a frame to an output buffer, and [`MessageTemplate`] encodes a MESSAGE's
//! shared part once for any number of subscribers.
//!
//! ```
//! use bytes::BytesMut;
//! use stomp_codec::{encode, Command, Decoded, Decoder, Frame, Limits, Version};
//!
//! let frame = Frame::new(Command::Send)
//!     .header("destination", "/queue/a:b")
//!     .body(&b"with\0nul"[..]);
//! let mut wire = BytesMut::new();
//! encode(&frame, Version::V1_2, &mut wire);
//!
//! let mut decoder = Decoder::new(Limits::default());
//! let Some(Decoded::Frame(decoded)) = decoder.decode(&mut wire).unwrap() else {
//!     unreachable!()
//! };
//! assert_eq!(decoded.get("destination"), Some("/queue/a:b"));
//! assert_eq!(&decoded.body[..], b"with\0nul");
//! ```

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod decode;
mod encode;
mod escape;
mod frame;

pub use bytestring::ByteString;
pub use decode::{DecodeError, Decoded, Decoder, ErrorKind, Limits};
pub use encode::{MessageTemplate, encode, encode_heartbeat};
pub use frame::{Command, Frame, Headers, Version};

// Compiles and runs the README's examples with the doc tests, so they cannot go stale.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;

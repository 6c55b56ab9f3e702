//! Incremental decoding of STOMP frames from a byte buffer.
//!
//! The parser is written with nom's streaming combinators over the buffered bytes: when a frame
//! is not complete yet it reports "need more bytes" and consumes nothing, so the caller simply
//! appends what the socket gives next and calls again. Limits are checked on the bytes seen so
//! far, before anything is allocated or awaited, so a peer cannot make the decoder buffer more
//! than `max_frame_bytes`.

use std::ops::Range;

use bytes::{Buf, Bytes, BytesMut};
use bytestring::ByteString;
use nom::bytes::{tag, take, take_until};
use nom::sequence::terminated;
use nom::{IResult, Parser};

use crate::escape::unescape;
use crate::frame::{Command, Frame, Headers, Version};

/// Size limits enforced while parsing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// The largest frame (command, headers and body) accepted, in bytes.
    pub max_frame_bytes: usize,
    /// The most header lines one frame may have.
    pub max_headers: usize,
    /// The longest command or header line, in bytes, without its EOL.
    pub max_header_line_bytes: usize,
    /// The largest body, in bytes.
    pub max_body_bytes: usize,
}

impl Default for Limits {
    /// 64 KiB frames and bodies, 64 headers of at most 8 KiB each.
    fn default() -> Limits {
        Limits {
            max_frame_bytes: 64 * 1024,
            max_headers: 64,
            max_header_line_bytes: 8 * 1024,
            max_body_bytes: 64 * 1024,
        }
    }
}

/// A refused stream: what is wrong with it, and the `receipt` of the frame at fault when that
/// header had been read before the fault, so that the ERROR sent back can name the frame.
/// Every error is fatal for the connection.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{kind}")]
pub struct DecodeError {
    /// What is wrong.
    pub kind: ErrorKind,
    /// The value of the frame's first `receipt` header, when its line came before the fault
    /// (or the whole header block had been read) and is itself valid.
    pub receipt: Option<ByteString>,
}

impl From<ErrorKind> for DecodeError {
    fn from(kind: ErrorKind) -> DecodeError {
        DecodeError {
            kind,
            receipt: None,
        }
    }
}

/// Why a byte stream is not valid STOMP.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ErrorKind {
    /// The frame is, or will be, larger than `max_frame_bytes`.
    #[error("frame of {size} bytes exceeds the limit of {max} bytes")]
    FrameTooLarge {
        /// Bytes of the frame seen or announced so far.
        size: usize,
        /// The configured limit.
        max: usize,
    },
    /// More header lines than `max_headers`.
    #[error("more than {max} headers")]
    TooManyHeaders {
        /// The configured limit.
        max: usize,
    },
    /// A command or header line longer than `max_header_line_bytes`.
    #[error("header line of {len} bytes exceeds the limit of {max} bytes")]
    HeaderLineTooLong {
        /// Bytes of the line seen so far.
        len: usize,
        /// The configured limit.
        max: usize,
    },
    /// A body larger than `max_body_bytes`.
    #[error("body of {len} bytes exceeds the limit of {max} bytes")]
    BodyTooLarge {
        /// Bytes of the body seen or announced so far.
        len: usize,
        /// The configured limit.
        max: usize,
    },
    /// The command line names no STOMP command.
    #[error("unknown command {0:?}")]
    UnknownCommand(String),
    /// A header line without a colon.
    #[error("malformed header line {0:?}")]
    MalformedHeader(String),
    /// A backslash escape that the negotiated version does not define.
    #[error("undefined escape sequence in header {0:?}")]
    InvalidEscape(String),
    /// A header name or value that is not UTF-8.
    #[error("header is not valid UTF-8")]
    InvalidUtf8,
    /// A header line holding an octet that STOMP forbids there: NUL in any frame, or (1.2, in
    /// frames whose headers are escaped) a CR that is not part of the EOL.
    #[error("header line {line:?} holds the forbidden octet 0x{octet:02x}")]
    ForbiddenOctet {
        /// The octet.
        octet: u8,
        /// The line, shortened.
        line: String,
    },
    /// A `content-length` that is not a decimal octet count.
    #[error("invalid content-length {0:?}")]
    InvalidContentLength(String),
    /// The `content-length` octets are not followed by the NUL that ends a frame.
    #[error("frame body is not terminated by NUL after content-length octets")]
    MissingNul,
    /// A body on a command that must not have one.
    #[error("{0} frames must not have a body")]
    UnexpectedBody(Command),
    /// A CR between frames that is not followed by LF.
    #[error("stray carriage return between frames")]
    StrayCarriageReturn,
}

/// What one call to [`Decoder::decode`] produced.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decoded {
    /// A complete frame.
    Frame(Frame),
    /// An EOL between frames: a heart-beat from the peer.
    HeartBeat,
}

/// Where a header's name and value lie in the buffer; kept in a scratch vector that is reused
/// between frames so that parsing allocates nothing of its own.
#[derive(Debug, Clone)]
struct RawHeaderSlot(Range<usize>, Range<usize>);

/// Where the parts of a complete frame lie in the buffer.
struct Layout {
    command: Command,
    body: Range<usize>,
    len: usize,
}

/// Decodes frames from a buffer that the caller fills from a socket.
///
/// ```
/// use bytes::BytesMut;
/// use stomp_codec::{Decoded, Decoder, Limits};
///
/// let mut decoder = Decoder::new(Limits::default());
/// let mut buf = BytesMut::from(&b"SEND\ndestination:/queue/a\n\nhi\0\nSEN"[..]);
/// let Some(Decoded::Frame(frame)) = decoder.decode(&mut buf).unwrap() else { panic!() };
/// assert_eq!(frame.get("destination"), Some("/queue/a"));
/// assert_eq!(decoder.decode(&mut buf).unwrap(), Some(Decoded::HeartBeat));
/// assert_eq!(decoder.decode(&mut buf).unwrap(), None); // the next frame is not complete yet
/// assert_eq!(&buf[..], b"SEN");
/// ```
#[derive(Debug)]
pub struct Decoder {
    limits: Limits,
    version: Version,
    scratch: Vec<RawHeaderSlot>,
    /// Whether the frame being parsed has escaped headers (for the receipt of an error).
    escaping: bool,
}

impl Decoder {
    /// A decoder for STOMP 1.2 with the given limits.
    pub fn new(limits: Limits) -> Decoder {
        Decoder {
            limits,
            version: Version::V1_2,
            scratch: Vec::new(),
            escaping: false,
        }
    }

    /// Frees the scratch space kept between frames: for a connection about to sit idle, where
    /// memory matters more than one allocation on its next frame.
    pub fn release_memory(&mut self) {
        self.scratch = Vec::new();
    }

    /// Sets the version whose escaping rules apply to the frames that follow (after CONNECT).
    pub fn set_version(&mut self, version: Version) {
        self.version = version;
    }

    /// The version whose escaping rules apply.
    pub fn version(&self) -> Version {
        self.version
    }

    /// The limits this decoder enforces.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Takes the next frame or heart-beat off the front of `buf`.
    ///
    /// Returns `Ok(None)` and leaves `buf` untouched when more bytes are needed.
    ///
    /// # Errors
    ///
    /// A [`DecodeError`] when the bytes are not valid STOMP or break a limit; the stream cannot
    /// be resynchronised after that and the connection should be closed.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Decoded>, DecodeError> {
        match buf.first() {
            None => return Ok(None),
            Some(b'\n') => {
                buf.advance(1);
                return Ok(Some(Decoded::HeartBeat));
            }
            Some(b'\r') => {
                return match buf.get(1) {
                    None => Ok(None),
                    Some(b'\n') => {
                        buf.advance(2);
                        Ok(Some(Decoded::HeartBeat))
                    }
                    Some(_) => Err(ErrorKind::StrayCarriageReturn.into()),
                };
            }
            Some(_) => {}
        }
        let layout = match self.parse(buf) {
            Ok(Some(layout)) => layout,
            Ok(None) => return Ok(None),
            Err(kind) => {
                let receipt = self.receipt(buf);
                return Err(DecodeError { kind, receipt });
            }
        };
        let raw = buf.split_to(layout.len).freeze();
        let escaped = self.escaping;
        let mut headers = Headers::with_capacity(self.scratch.len());
        for at in 0..self.scratch.len() {
            let slot = self.scratch[at].clone();
            match header_text(&raw, slot, escaped, self.version) {
                Ok((name, value)) => headers.push(name, value),
                Err(kind) => {
                    // The whole header block was read: the receipt may stand after the fault.
                    let receipt = self.receipt(&raw);
                    return Err(DecodeError { kind, receipt });
                }
            }
        }
        self.scratch.clear();
        let body = if layout.body.is_empty() {
            Bytes::new()
        } else {
            raw.slice(layout.body)
        };
        Ok(Some(Decoded::Frame(Frame {
            command: layout.command,
            headers,
            body,
        })))
    }

    /// Whether the headers of `command` are escaped in the negotiated version.
    fn escaped(&self, command: Command) -> bool {
        self.version != Version::V1_0 && command.escapes_headers()
    }

    /// The first `receipt` header among those whose lines `self.scratch` holds, when its value
    /// is valid; for the ERROR of a frame refused after that line was read.
    fn receipt(&self, input: &[u8]) -> Option<ByteString> {
        let RawHeaderSlot(_, value) = self
            .scratch
            .iter()
            .find(|RawHeaderSlot(name, _)| input.get(name.clone()) == Some(&b"receipt"[..]))?;
        let bytes = input.get(value.clone())?;
        let text = if self.escaping && memchr::memchr(b'\\', bytes).is_some() {
            unescape(bytes, self.version)?
        } else {
            bytes.to_vec()
        };
        ByteString::try_from(Bytes::from(text)).ok()
    }

    /// Finds the extent of the frame at the front of `input`, recording its header positions in
    /// `self.scratch`. `None` means the frame is not complete yet.
    fn parse(&mut self, input: &[u8]) -> Result<Option<Layout>, ErrorKind> {
        // Slots of an earlier, incomplete attempt at this frame would be recorded again.
        self.scratch.clear();
        let limits = self.limits;
        let too_large = |size: usize| ErrorKind::FrameTooLarge {
            size,
            max: limits.max_frame_bytes,
        };
        let line_too_long = |len: usize| ErrorKind::HeaderLineTooLong {
            len,
            max: limits.max_header_line_bytes,
        };
        // An incomplete line that is already over a limit is refused now rather than buffered.
        // A CR at its end may be the first half of the EOL, which the limit does not count.
        let incomplete_line = |partial: &[u8]| {
            let len = partial.strip_suffix(b"\r").unwrap_or(partial).len();
            if len > limits.max_header_line_bytes {
                Err(line_too_long(len))
            } else if input.len() > limits.max_frame_bytes {
                Err(too_large(input.len()))
            } else {
                Ok(None)
            }
        };

        let (mut rest, command_line) = match line(input) {
            Ok(parsed) => parsed,
            Err(_) => return incomplete_line(input),
        };
        if command_line.len() > limits.max_header_line_bytes {
            return Err(line_too_long(command_line.len()));
        }
        let command = Command::from_bytes(command_line)
            .ok_or_else(|| ErrorKind::UnknownCommand(printable(command_line)))?;
        // STOMP 1.2's grammar excludes CR from header names and values; escaped frames write it
        // `\r`. Earlier versions and unescaped frames have no other way to carry one.
        let forbids_cr = self.version == Version::V1_2 && command.escapes_headers();
        self.escaping = self.escaped(command);

        let mut content_length: Option<usize> = None;
        loop {
            let offset = input.len() - rest.len();
            let (after, header_line) = match line(rest) {
                Ok(parsed) => parsed,
                Err(_) => return incomplete_line(rest),
            };
            rest = after;
            if header_line.is_empty() {
                break;
            }
            if header_line.len() > limits.max_header_line_bytes {
                return Err(line_too_long(header_line.len()));
            }
            if self.scratch.len() == limits.max_headers {
                return Err(ErrorKind::TooManyHeaders {
                    max: limits.max_headers,
                });
            }
            let forbidden = if forbids_cr {
                memchr::memchr2(0, b'\r', header_line)
            } else {
                memchr::memchr(0, header_line)
            };
            if let Some(at) = forbidden {
                return Err(ErrorKind::ForbiddenOctet {
                    octet: header_line[at],
                    line: printable(header_line),
                });
            }
            let colon = memchr::memchr(b':', header_line)
                .ok_or_else(|| ErrorKind::MalformedHeader(printable(header_line)))?;
            let name = &header_line[..colon];
            if content_length.is_none() && name == b"content-length" {
                content_length = Some(parse_content_length(&header_line[colon + 1..])?);
            }
            self.scratch.push(RawHeaderSlot(
                offset..offset + colon,
                offset + colon + 1..offset + header_line.len(),
            ));
        }

        let body_start = input.len() - rest.len();
        if body_start > limits.max_frame_bytes {
            return Err(too_large(body_start));
        }
        let body_len = match content_length {
            Some(len) => {
                if len > limits.max_body_bytes {
                    return Err(ErrorKind::BodyTooLarge {
                        len,
                        max: limits.max_body_bytes,
                    });
                }
                if body_start + len + 1 > limits.max_frame_bytes {
                    return Err(too_large(body_start + len + 1));
                }
                match sized_body(rest, len) {
                    Ok(_) => len,
                    Err(nom::Err::Incomplete(_)) => return Ok(None),
                    Err(_) => return Err(ErrorKind::MissingNul),
                }
            }
            None => match nul_terminated_body(rest) {
                Ok((_, body)) => body.len(),
                Err(_) => {
                    if rest.len() > limits.max_body_bytes {
                        return Err(ErrorKind::BodyTooLarge {
                            len: rest.len(),
                            max: limits.max_body_bytes,
                        });
                    }
                    if input.len() > limits.max_frame_bytes {
                        return Err(too_large(input.len()));
                    }
                    return Ok(None);
                }
            },
        };
        let len = body_start + body_len + 1;
        if len > limits.max_frame_bytes {
            return Err(too_large(len));
        }
        if body_len > limits.max_body_bytes {
            return Err(ErrorKind::BodyTooLarge {
                len: body_len,
                max: limits.max_body_bytes,
            });
        }
        if body_len > 0 && !command.allows_body() {
            return Err(ErrorKind::UnexpectedBody(command));
        }
        Ok(Some(Layout {
            command,
            body: body_start..body_start + body_len,
            len,
        }))
    }
}

type ParseResult<'a, T> = IResult<&'a [u8], T>;

/// A line up to LF, without the LF and without a CR right before it (EOL is LF or CRLF).
fn line(input: &[u8]) -> ParseResult<'_, &[u8]> {
    let (rest, line) = terminated(take_until(&b"\n"[..]), tag(&b"\n"[..])).parse(input)?;
    Ok((rest, line.strip_suffix(b"\r").unwrap_or(line)))
}

/// Exactly `len` octets, NUL allowed among them, then the terminating NUL.
fn sized_body(input: &[u8], len: usize) -> ParseResult<'_, &[u8]> {
    terminated(take(len), tag(&b"\0"[..])).parse(input)
}

/// Octets up to the first NUL, which ends the frame.
fn nul_terminated_body(input: &[u8]) -> ParseResult<'_, &[u8]> {
    terminated(take_until(&b"\0"[..]), tag(&b"\0"[..])).parse(input)
}

fn parse_content_length(value: &[u8]) -> Result<usize, ErrorKind> {
    let invalid = || ErrorKind::InvalidContentLength(printable(value));
    if value.is_empty() || value.len() > 19 || !value.iter().all(u8::is_ascii_digit) {
        return Err(invalid());
    }
    value
        .iter()
        .try_fold(0usize, |acc, digit| {
            acc.checked_mul(10)?.checked_add(usize::from(digit - b'0'))
        })
        .ok_or_else(invalid)
}

/// Header names that most frames carry, shared instead of sliced from each frame's buffer.
const COMMON_NAMES: [&str; 16] = [
    "destination",
    "id",
    "ack",
    "receipt",
    "content-type",
    "content-length",
    "subscription",
    "message-id",
    "transaction",
    "accept-version",
    "host",
    "heart-beat",
    "login",
    "passcode",
    "version",
    "receipt-id",
];

fn header_text(
    raw: &Bytes,
    RawHeaderSlot(name_range, value_range): RawHeaderSlot,
    escaped: bool,
    version: Version,
) -> Result<(ByteString, ByteString), ErrorKind> {
    let name_bytes = &raw[name_range.clone()];
    let name = match COMMON_NAMES
        .iter()
        .find(|common| common.as_bytes() == name_bytes)
    {
        Some(common) => ByteString::from_static(common),
        None => text(raw, name_range, escaped, version)?,
    };
    let value = text(raw, value_range, escaped, version)?;
    Ok((name, value))
}

fn text(
    raw: &Bytes,
    range: Range<usize>,
    escaped: bool,
    version: Version,
) -> Result<ByteString, ErrorKind> {
    let bytes = &raw[range.clone()];
    if escaped && memchr::memchr(b'\\', bytes).is_some() {
        let unescaped =
            unescape(bytes, version).ok_or_else(|| ErrorKind::InvalidEscape(printable(bytes)))?;
        return ByteString::try_from(unescaped).map_err(|_| ErrorKind::InvalidUtf8);
    }
    if range.is_empty() {
        return Ok(ByteString::new());
    }
    ByteString::try_from(raw.slice(range)).map_err(|_| ErrorKind::InvalidUtf8)
}

/// The offending bytes for an error message, shortened so that an error never echoes a flood.
fn printable(bytes: &[u8]) -> String {
    const MAX: usize = 64;
    let shown = &bytes[..bytes.len().min(MAX)];
    let mut text = String::from_utf8_lossy(shown).into_owned();
    if bytes.len() > MAX {
        text.push('…');
    }
    text
}

//! Properties of the codec over generated frames and byte streams.
//!
//! The number of cases per property is proptest's default (256) unless `PROPTEST_CASES` says
//! otherwise, so CI can run a longer pass without a code change.

use bytes::BytesMut;
use proptest::prelude::*;
use proptest::sample::{Index, select};
use stomp_codec::{
    Command, DecodeError, Decoded, Decoder, ErrorKind, Frame, Headers, Limits, Version, encode,
    encode_heartbeat,
};

const VERSIONS: [Version; 3] = [Version::V1_0, Version::V1_1, Version::V1_2];

fn version() -> impl Strategy<Value = Version> {
    select(&VERSIONS[..])
}

fn command() -> impl Strategy<Value = Command> {
    select(&Command::ALL[..])
}

/// Characters for header text, weighted towards the ones escaping and framing care about. NUL
/// is never one: no version can carry it in a header (see
/// `nul_in_a_header_line_is_always_refused`).
fn header_char(allow_lf: bool, allow_colon: bool) -> BoxedStrategy<char> {
    let mut special = vec!['\r', '\\', ' ', '\t', 'é', '✓'];
    if allow_lf {
        special.push('\n');
    }
    if allow_colon {
        special.push(':');
    }
    prop_oneof![
        4 => prop::char::range('a', 'z'),
        3 => select(special),
        1 => any::<char>().prop_filter("excluded character", move |c| {
            *c != '\0' && (allow_lf || *c != '\n') && (allow_colon || *c != ':')
        }),
    ]
    .boxed()
}

fn header_text(allow_lf: bool, allow_colon: bool) -> impl Strategy<Value = String> {
    prop::collection::vec(header_char(allow_lf, allow_colon), 0..12)
        .prop_map(|chars| chars.into_iter().collect())
}

/// A frame that `encode` can represent exactly for `version`.
///
/// Escaped frames may hold any text. CONNECT, STOMP, CONNECTED and everything in 1.0 are written
/// raw, so their names cannot hold `:` and neither names nor values can hold LF.
fn frame_for(command: Command, version: Version) -> impl Strategy<Value = Frame> {
    let escaped = command.escapes_headers() && version != Version::V1_0;
    let header = (header_text(escaped, escaped), header_text(escaped, true));
    let headers = prop::collection::vec(header, 0..8);
    let body = if command.allows_body() {
        prop::collection::vec(any::<u8>(), 0..300).boxed()
    } else {
        Just(Vec::new()).boxed()
    };
    // A stale content-length must be replaced by the encoder, wherever it stands.
    let stale_length = prop::option::of((0usize..8, "[0-9]{0,4}"));
    (headers, body, stale_length).prop_map(move |(mut headers, body, stale_length)| {
        if let Some((at, value)) = stale_length {
            headers.insert(at.min(headers.len()), ("content-length".into(), value));
        }
        Frame {
            command,
            headers: headers.into_iter().collect(),
            body: body.into(),
        }
    })
}

fn versioned_frame() -> impl Strategy<Value = (Version, Frame)> {
    (version(), command()).prop_flat_map(|(version, command)| {
        frame_for(command, version).prop_map(move |frame| (version, frame))
    })
}

fn without_content_length(frame: &Frame) -> Frame {
    let mut headers = frame.headers.clone();
    headers.remove("content-length");
    Frame {
        headers,
        ..frame.clone()
    }
}

fn encoded(frame: &Frame, version: Version) -> BytesMut {
    let mut buf = BytesMut::new();
    encode(frame, version, &mut buf);
    buf
}

fn roomy_limits() -> Limits {
    Limits {
        max_frame_bytes: 1 << 20,
        max_headers: 1024,
        max_header_line_bytes: 1 << 20,
        max_body_bytes: 1 << 20,
    }
}

/// Small limits so that streams run into every limit check, at every point of a frame.
fn limits() -> impl Strategy<Value = Limits> {
    prop_oneof![
        Just(roomy_limits()),
        (0usize..600, 0usize..10, 0usize..80, 0usize..400).prop_map(
            |(max_frame_bytes, max_headers, max_header_line_bytes, max_body_bytes)| Limits {
                max_frame_bytes,
                max_headers,
                max_header_line_bytes,
                max_body_bytes,
            }
        ),
    ]
}

/// What a decoder made of a stream: the items before the first error, and whether there was one.
///
/// Only the presence of an error is compared between ways of feeding the same bytes: a decoder
/// that sees a frame in part may refuse it for one limit before a decoder that sees it whole
/// reaches another check that also fails. Either way the stream is refused at the same frame.
#[derive(Debug, PartialEq)]
struct Outcome {
    items: Vec<Decoded>,
    error: bool,
    left: Vec<u8>,
}

/// Feeds `chunks` one after the other, decoding all complete items after each, as a connection
/// would. Also checks the contract of every call: `Ok(None)` consumes nothing and an item always
/// consumes something.
fn feed<'a>(
    limits: Limits,
    version: Version,
    chunks: impl IntoIterator<Item = &'a [u8]>,
) -> Result<Outcome, TestCaseError> {
    let mut decoder = Decoder::new(limits);
    decoder.set_version(version);
    let mut buf = BytesMut::new();
    let mut items = Vec::new();
    for chunk in chunks {
        buf.extend_from_slice(chunk);
        loop {
            let before = buf.clone();
            match decoder.decode(&mut buf) {
                Ok(None) => {
                    prop_assert_eq!(&buf, &before, "Ok(None) consumed bytes");
                    break;
                }
                Ok(Some(item)) => {
                    prop_assert!(buf.len() < before.len(), "item without consuming bytes");
                    items.push(item);
                }
                Err(_) => {
                    return Ok(Outcome {
                        items,
                        error: true,
                        left: Vec::new(),
                    });
                }
            }
        }
    }
    Ok(Outcome {
        items,
        error: false,
        left: buf.to_vec(),
    })
}

/// `bytes` split at `cuts` (positions in any order, possibly repeated or out of range).
fn chunks(bytes: &[u8], cuts: &[usize]) -> Vec<Vec<u8>> {
    let mut cuts: Vec<usize> = cuts.iter().map(|cut| cut % (bytes.len() + 1)).collect();
    cuts.push(0);
    cuts.push(bytes.len());
    cuts.sort_unstable();
    cuts.windows(2)
        .map(|pair| bytes[pair[0]..pair[1]].to_vec())
        .collect()
}

/// An item of a valid stream: a frame, written with LF or CRLF line endings, or a heart-beat.
#[derive(Clone, Debug)]
enum StreamItem {
    Frame { frame: Frame, crlf: bool },
    HeartBeat { crlf: bool },
}

fn stream_item(version: Version) -> impl Strategy<Value = StreamItem> {
    prop_oneof![
        3 => (command().prop_flat_map(move |command| frame_for(command, version)), any::<bool>())
            .prop_map(|(frame, crlf)| StreamItem::Frame { frame, crlf }),
        1 => any::<bool>().prop_map(|crlf| StreamItem::HeartBeat { crlf }),
    ]
}

fn stream(max_items: usize) -> impl Strategy<Value = (Version, Vec<StreamItem>)> {
    version().prop_flat_map(move |version| {
        (
            Just(version),
            prop::collection::vec(stream_item(version), 0..max_items),
        )
    })
}

/// Rewrites the command and header lines of one encoded frame with CRLF endings, as some
/// clients send them. Header text in the encoder's output never holds a raw LF, and a line
/// already ending in CR before its LF keeps its meaning only if that CR stays the EOL's.
fn with_crlf(encoded: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(encoded.len() + 32);
    let mut rest = encoded;
    loop {
        let eol = rest
            .iter()
            .position(|&b| b == b'\n')
            .expect("header section ends");
        let line = &rest[..eol];
        let content = line.strip_suffix(b"\r").unwrap_or(line);
        out.extend_from_slice(content);
        out.extend_from_slice(b"\r\n");
        rest = &rest[eol + 1..];
        if content.is_empty() {
            break;
        }
    }
    out.extend_from_slice(rest);
    out
}

fn encode_stream(version: Version, items: &[StreamItem]) -> BytesMut {
    let mut wire = BytesMut::new();
    for item in items {
        match item {
            StreamItem::Frame { frame, crlf: false } => encode(frame, version, &mut wire),
            StreamItem::Frame { frame, crlf: true } => {
                wire.extend_from_slice(&with_crlf(&encoded(frame, version)))
            }
            StreamItem::HeartBeat { crlf: true } => wire.extend_from_slice(b"\r\n"),
            StreamItem::HeartBeat { crlf: false } => encode_heartbeat(&mut wire),
        }
    }
    wire
}

/// Limits that sit exactly on a size found in `wire`, so that "at the limit" and "one over"
/// are both exercised; `pick` chooses which limit and which size.
fn edge_limits(wire: &[u8], items: &[StreamItem], limit: usize, pick: Index) -> Limits {
    let frames = || {
        items.iter().filter_map(|item| match item {
            StreamItem::Frame { frame, .. } => Some(frame),
            StreamItem::HeartBeat { .. } => None,
        })
    };
    let sizes: Vec<usize> = match limit {
        0 => wire
            .split(|&b| b == b'\n')
            .map(|line| line.strip_suffix(b"\r").unwrap_or(line).len())
            .collect(),
        1 => wire
            .split_inclusive(|&b| b == 0)
            .map(|frame| frame.len())
            .collect(),
        2 => frames().map(|frame| frame.headers.len()).collect(),
        _ => frames().map(|frame| frame.body.len()).collect(),
    };
    let size = if sizes.is_empty() {
        0
    } else {
        *pick.get(&sizes)
    };
    let mut limits = roomy_limits();
    match limit {
        0 => limits.max_header_line_bytes = size,
        1 => limits.max_frame_bytes = size,
        2 => limits.max_headers = size,
        _ => limits.max_body_bytes = size,
    }
    limits
}

/// Bytes that look like STOMP often enough to reach deep into the parser.
fn stomp_like_bytes() -> impl Strategy<Value = Vec<u8>> {
    const FRAGMENTS: &[&[u8]] = &[
        b"SEND\n",
        b"MESSAGE\r\n",
        b"CONNECT\n",
        b"SUBSCRIBE\n",
        b"content-length:",
        b"content-length:3\n",
        b"destination:/q\n",
        b"a:b\n",
        b":",
        b"\\",
        b"\\c",
        b"\\r",
        b"\\t",
        b"\n",
        b"\r",
        b"\r\n",
        b"\n\n",
        b"\0",
        b"7",
        b"\xff",
        b"\xc3\xa9",
    ];
    let token = prop_oneof![
        2 => select(FRAGMENTS).prop_map(<[u8]>::to_vec),
        1 => prop::collection::vec(any::<u8>(), 1..8),
    ];
    prop::collection::vec(token, 0..40).prop_map(|tokens| tokens.concat())
}

proptest! {
    #[test]
    fn encode_then_decode_is_identity((version, frame) in versioned_frame()) {
        let mut wire = encoded(&frame, version);
        let mut decoder = Decoder::new(roomy_limits());
        decoder.set_version(version);
        let decoded = match decoder.decode(&mut wire) {
            Ok(Some(Decoded::Frame(decoded))) => decoded,
            other => return Err(TestCaseError::fail(format!("{other:?}"))),
        };
        prop_assert!(wire.is_empty(), "left over: {:?}", &wire[..]);
        prop_assert_eq!(without_content_length(&decoded), without_content_length(&frame));
        // The encoder computes content-length and writes it whenever the body is not empty.
        let expected_length = (!frame.body.is_empty() || frame.get("content-length").is_some())
            .then(|| frame.body.len().to_string());
        prop_assert_eq!(decoded.get("content-length"), expected_length.as_deref());
    }

    #[test]
    fn decode_then_encode_then_decode_is_stable((version, frame) in versioned_frame()) {
        // Whatever the decoder produces, the encoder writes back to the same frame.
        let mut decoder = Decoder::new(roomy_limits());
        decoder.set_version(version);
        let Ok(Some(Decoded::Frame(first))) = decoder.decode(&mut encoded(&frame, version)) else {
            return Err(TestCaseError::fail("first decode"));
        };
        let Ok(Some(Decoded::Frame(second))) = decoder.decode(&mut encoded(&first, version)) else {
            return Err(TestCaseError::fail("second decode"));
        };
        prop_assert_eq!(second, first);
    }

    #[test]
    fn chunking_does_not_change_the_items(
        (version, items) in stream(8),
        limits in limits(),
        cuts in prop::collection::vec(any::<usize>(), 0..12),
    ) {
        let wire = encode_stream(version, &items);
        let whole = feed(limits, version, [&wire[..]])?;
        let chunked = chunks(&wire, &cuts);
        let pieces = feed(limits, version, chunked.iter().map(Vec::as_slice))?;
        prop_assert_eq!(&pieces, &whole);
        if limits == roomy_limits() {
            // Within roomy limits a valid stream decodes to exactly what was encoded.
            prop_assert!(!whole.error && whole.left.is_empty(), "{:?}", whole);
            let expected: Vec<Frame> = items
                .iter()
                .filter_map(|item| match item {
                    StreamItem::Frame { frame, .. } => Some(without_content_length(frame)),
                    StreamItem::HeartBeat { .. } => None,
                })
                .collect();
            let frames: Vec<Frame> = whole
                .items
                .iter()
                .filter_map(|item| match item {
                    Decoded::Frame(frame) => Some(without_content_length(frame)),
                    Decoded::HeartBeat => None,
                })
                .collect();
            prop_assert_eq!(frames, expected);
            prop_assert_eq!(whole.items.len(), items.len());
        }
    }

    #[test]
    fn every_split_point_agrees_at_the_edge_of_each_limit(
        (version, items) in stream(4),
        limit in 0usize..4,
        pick in any::<Index>(),
    ) {
        let wire = encode_stream(version, &items);
        let limits = edge_limits(&wire, &items, limit, pick);
        let whole = feed(limits, version, [&wire[..]])?;
        for split in 0..=wire.len() {
            let (head, tail) = wire.split_at(split);
            let pieces = feed(limits, version, [head, tail])?;
            prop_assert_eq!(&pieces, &whole, "split at {}", split);
        }
    }

    #[test]
    fn byte_at_a_time_matches_whole((version, items) in stream(8)) {
        let wire = encode_stream(version, &items);
        let whole = feed(roomy_limits(), version, [&wire[..]])?;
        let bytes = feed(roomy_limits(), version, wire.chunks(1))?;
        prop_assert_eq!(bytes, whole);
    }

    #[test]
    fn arbitrary_bytes_never_panic_nor_consume_on_none(
        bytes in stomp_like_bytes(),
        version in version(),
        limits in limits(),
        cuts in prop::collection::vec(any::<usize>(), 0..8),
    ) {
        // `feed` asserts the consumption contract on every call.
        let whole = feed(limits, version, [&bytes[..]])?;
        let chunked = chunks(&bytes, &cuts);
        let pieces = feed(limits, version, chunked.iter().map(Vec::as_slice))?;
        prop_assert_eq!(pieces, whole);
    }

    #[test]
    fn uniformly_random_bytes_never_panic(
        bytes in prop::collection::vec(any::<u8>(), 0..512),
        version in version(),
    ) {
        feed(Limits::default(), version, [&bytes[..]])?;
    }

    #[test]
    fn nul_in_a_header_line_is_always_refused(
        (version, frame) in versioned_frame(),
        at in 0usize..8,
        text in "[a-z]{0,4}",
        in_name in any::<bool>(),
    ) {
        let mut frame = frame;
        let (name, value) = if in_name {
            (format!("{text}\0"), text.clone())
        } else {
            ("x-nul".to_owned(), format!("{text}\0{text}"))
        };
        let mut headers: Vec<(String, String)> = frame
            .headers
            .iter()
            .map(|(n, v)| (n.to_owned(), v.to_owned()))
            .collect();
        headers.insert(at.min(headers.len()), (name, value));
        frame.headers = headers.into_iter().collect();
        let mut decoder = Decoder::new(roomy_limits());
        decoder.set_version(version);
        let refused = decoder.decode(&mut encoded(&frame, version));
        prop_assert!(
            matches!(&refused, Err(e) if matches!(e.kind, ErrorKind::ForbiddenOctet { octet: 0, .. })),
            "{:?}", refused
        );
    }

    #[test]
    fn errors_are_sticky_for_the_same_bytes(bytes in stomp_like_bytes(), version in version()) {
        // A refused stream is refused again from the same point: errors do not depend on
        // decoder state left over from earlier calls.
        let mut buf = BytesMut::from(&bytes[..]);
        let mut decoder = Decoder::new(Limits::default());
        decoder.set_version(version);
        loop {
            let before = buf.clone();
            match decoder.decode(&mut buf) {
                Ok(Some(_)) => continue,
                Ok(None) => break,
                Err(first) => {
                    let mut fresh = Decoder::new(Limits::default());
                    fresh.set_version(version);
                    let again: Result<_, DecodeError> = fresh.decode(&mut before.clone());
                    prop_assert_eq!(again, Err(first));
                    break;
                }
            }
        }
    }
}

#[test]
fn chunks_cover_the_input_in_order() {
    let bytes = b"0123456789";
    let pieces = chunks(bytes, &[3, 3, 25, 7]);
    assert_eq!(pieces.concat(), bytes);
    assert_eq!(pieces.len(), 5);
}

#[test]
fn generated_headers_survive_with_every_special_character() {
    let tricky = ":\n\r\\\\c\\n\r\r\n:";
    let frame = Frame {
        command: Command::Message,
        headers: Headers::from_iter([(tricky, tricky), ("", ""), ("k", "\r")]),
        body: bytes::Bytes::from_static(b"\0"),
    };
    for version in [Version::V1_1, Version::V1_2] {
        let mut decoder = Decoder::new(Limits::default());
        decoder.set_version(version);
        let Some(Decoded::Frame(decoded)) = decoder.decode(&mut encoded(&frame, version)).unwrap()
        else {
            panic!()
        };
        assert_eq!(without_content_length(&decoded), frame, "{version}");
    }
}

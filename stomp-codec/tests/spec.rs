//! A checklist of what STOMP 1.0, 1.1 and 1.2 require of a frame codec, one behaviour per test.
//!
//! Section names in the comments refer to the STOMP 1.2 specification unless a version is named.

use bytes::{Bytes, BytesMut};
use stomp_codec::{
    Command, DecodeError, Decoded, Decoder, ErrorKind, Frame, Headers, Limits, MessageTemplate,
    Version, encode, encode_heartbeat,
};

fn decoder(version: Version) -> Decoder {
    let mut decoder = Decoder::new(Limits::default());
    decoder.set_version(version);
    decoder
}

/// Decodes everything in `wire`; fails the test if bytes are left over.
fn decode_all_with(decoder: &mut Decoder, wire: &[u8]) -> Result<Vec<Decoded>, ErrorKind> {
    let mut buf = BytesMut::from(wire);
    let mut items = Vec::new();
    while let Some(item) = decoder.decode(&mut buf).map_err(|e| e.kind)? {
        items.push(item);
    }
    assert!(buf.is_empty(), "undecoded bytes left: {:?}", &buf[..]);
    Ok(items)
}

fn decode_all(version: Version, wire: &[u8]) -> Result<Vec<Decoded>, ErrorKind> {
    decode_all_with(&mut decoder(version), wire)
}

/// The only item of `wire`, which must be one complete frame.
fn frame(version: Version, wire: &[u8]) -> Frame {
    match decode_all(version, wire).expect("valid frame").as_slice() {
        [Decoded::Frame(frame)] => frame.clone(),
        other => panic!("expected one frame, got {other:?}"),
    }
}

fn frame_v12(wire: &[u8]) -> Frame {
    frame(Version::V1_2, wire)
}

/// The refusal of `wire`, with the receipt it names.
fn refusal(version: Version, wire: &[u8]) -> DecodeError {
    let mut buf = BytesMut::from(wire);
    let mut decoder = decoder(version);
    loop {
        match decoder.decode(&mut buf) {
            Ok(Some(_)) => continue,
            Ok(None) => panic!("no error; {} bytes left", buf.len()),
            Err(error) => return error,
        }
    }
}

fn error(version: Version, wire: &[u8]) -> ErrorKind {
    refusal(version, wire).kind
}

fn error_v12(wire: &[u8]) -> ErrorKind {
    error(Version::V1_2, wire)
}

/// What a decoder with `limits` makes of `wire` when it has received only that much.
fn decode_partial(limits: Limits, wire: &[u8]) -> Result<Option<Decoded>, ErrorKind> {
    let mut buf = BytesMut::from(wire);
    let result = Decoder::new(limits).decode(&mut buf).map_err(|e| e.kind);
    if let Ok(None) = result {
        assert_eq!(&buf[..], wire, "bytes consumed without a result");
    }
    result
}

fn encoded(frame: &Frame, version: Version) -> Vec<u8> {
    let mut buf = BytesMut::new();
    encode(frame, version, &mut buf);
    buf.to_vec()
}

fn headers(frame: &Frame) -> Vec<(&str, &str)> {
    frame.headers.iter().collect()
}

// ---------------------------------------------------------------------------------------------
// Frame structure (§ "STOMP Frames")
// ---------------------------------------------------------------------------------------------

#[test]
fn command_headers_blank_line_body_nul() {
    let frame = frame_v12(b"SEND\ndestination:/queue/a\ncontent-type:text/plain\n\nhello\0");
    assert_eq!(frame.command, Command::Send);
    assert_eq!(
        headers(&frame),
        [("destination", "/queue/a"), ("content-type", "text/plain")]
    );
    assert_eq!(&frame.body[..], b"hello");
}

#[test]
fn frame_without_headers_or_body() {
    let frame = frame_v12(b"DISCONNECT\n\n\0");
    assert_eq!(frame.command, Command::Disconnect);
    assert!(frame.headers.is_empty());
    assert!(frame.body.is_empty());
}

#[test]
fn every_command_is_recognised() {
    for command in Command::ALL {
        let wire = format!("{command}\n\n\0");
        assert_eq!(frame_v12(wire.as_bytes()).command, command);
    }
}

#[test]
fn stomp_command_is_its_own_command() {
    assert_eq!(
        frame_v12(b"STOMP\naccept-version:1.2\nhost:h\n\n\0").command,
        Command::Stomp
    );
}

#[test]
fn commands_are_case_sensitive() {
    assert_eq!(
        error_v12(b"send\n\n\0"),
        ErrorKind::UnknownCommand("send".into())
    );
}

#[test]
fn unknown_command() {
    assert_eq!(
        error_v12(b"PUBLISH\ndestination:/a\n\n\0"),
        ErrorKind::UnknownCommand("PUBLISH".into())
    );
}

#[test]
fn command_with_trailing_space_is_unknown() {
    assert_eq!(
        error_v12(b"SEND \n\n\0"),
        ErrorKind::UnknownCommand("SEND ".into())
    );
}

#[test]
fn crlf_line_endings_are_accepted() {
    let frame = frame_v12(b"SEND\r\ndestination:/queue/a\r\nreceipt:7\r\n\r\nbody\0");
    assert_eq!(frame.command, Command::Send);
    assert_eq!(
        headers(&frame),
        [("destination", "/queue/a"), ("receipt", "7")]
    );
    assert_eq!(&frame.body[..], b"body");
}

#[test]
fn lf_and_crlf_may_be_mixed_in_one_frame() {
    let frame = frame_v12(b"SEND\r\ndestination:/queue/a\nreceipt:7\r\n\nbody\0");
    assert_eq!(
        headers(&frame),
        [("destination", "/queue/a"), ("receipt", "7")]
    );
}

#[test]
fn only_one_cr_before_lf_belongs_to_the_eol() {
    // 1.1 has no escape for CR, so a value may end in one; the EOL takes only the last.
    let frame = frame(Version::V1_1, b"SEND\ndestination:/a\r\r\n\n\0");
    assert_eq!(frame.get("destination"), Some("/a\r"));
}

#[test]
fn cr_inside_a_line_is_part_of_it() {
    let frame = frame(Version::V1_1, b"SEND\ndestination:/a\rb\n\n\0");
    assert_eq!(frame.get("destination"), Some("/a\rb"));
}

// ---------------------------------------------------------------------------------------------
// Bodies (§ "Body", § "Header content-length")
// ---------------------------------------------------------------------------------------------

#[test]
fn body_without_content_length_ends_at_first_nul() {
    let items = decode_all(Version::V1_2, b"SEND\ndestination:/a\n\nab\0SEND\n\n\0").unwrap();
    let [Decoded::Frame(first), Decoded::Frame(second)] = items.as_slice() else {
        panic!("{items:?}")
    };
    assert_eq!(&first.body[..], b"ab");
    assert_eq!(second.command, Command::Send);
}

#[test]
fn content_length_body_may_contain_nul() {
    let frame = frame_v12(b"SEND\ndestination:/a\ncontent-length:5\n\na\0b\0c\0");
    assert_eq!(&frame.body[..], b"a\0b\0c");
}

#[test]
fn content_length_body_may_contain_eols() {
    let frame = frame_v12(b"MESSAGE\ncontent-length:4\n\n\r\n\n\n\0");
    assert_eq!(&frame.body[..], b"\r\n\n\n");
}

#[test]
fn content_length_header_is_kept_among_the_headers() {
    let frame = frame_v12(b"SEND\ndestination:/a\ncontent-length:2\n\nhi\0");
    assert_eq!(frame.get("content-length"), Some("2"));
}

#[test]
fn content_length_octets_must_be_followed_by_nul() {
    assert_eq!(
        error_v12(b"SEND\ncontent-length:2\n\nhij\0"),
        ErrorKind::MissingNul
    );
}

#[test]
fn content_length_zero_is_an_empty_body() {
    let frame = frame_v12(b"SEND\ndestination:/a\ncontent-length:0\n\n\0");
    assert!(frame.body.is_empty());
}

#[test]
fn content_length_must_be_a_decimal_octet_count() {
    for bad in [
        "",
        "-1",
        "+1",
        " 1",
        "1 ",
        "0x10",
        "1.0",
        "one",
        "99999999999999999999",
    ] {
        let wire = format!("SEND\ncontent-length:{bad}\n\n\0");
        assert_eq!(
            error_v12(wire.as_bytes()),
            ErrorKind::InvalidContentLength(bad.into()),
            "content-length {bad:?}"
        );
    }
}

#[test]
fn content_length_with_leading_zeros_is_decimal() {
    let frame = frame_v12(b"SEND\ncontent-length:003\n\nabc\0");
    assert_eq!(&frame.body[..], b"abc");
}

#[test]
fn repeated_content_length_first_wins() {
    let frame = frame_v12(b"SEND\ncontent-length:3\ncontent-length:1\n\na\0c\0");
    assert_eq!(&frame.body[..], b"a\0c");
}

#[test]
fn nul_terminated_body_with_trailing_eols() {
    let items = decode_all(Version::V1_2, b"SEND\ndestination:/a\n\nbody\0\n\r\n\n").unwrap();
    assert_eq!(items.len(), 4);
    let Decoded::Frame(frame) = &items[0] else {
        panic!("{items:?}")
    };
    assert_eq!(&frame.body[..], b"body");
    assert!(items[1..].iter().all(|item| *item == Decoded::HeartBeat));
}

#[test]
fn body_may_be_binary() {
    let body: Vec<u8> = (1..=255).collect();
    let mut wire = b"MESSAGE\n\n".to_vec();
    wire.extend_from_slice(&body);
    wire.push(0);
    assert_eq!(&frame_v12(&wire).body[..], &body[..]);
}

#[test]
fn only_send_message_and_error_may_have_a_body() {
    for command in Command::ALL {
        let wire = format!("{command}\n\nx\0");
        let result = decode_all(Version::V1_2, wire.as_bytes());
        if command.allows_body() {
            assert!(result.is_ok(), "{command}: {result:?}");
        } else {
            assert_eq!(result, Err(ErrorKind::UnexpectedBody(command)), "{command}");
        }
    }
}

#[test]
fn body_on_subscribe_is_refused() {
    assert_eq!(
        error_v12(b"SUBSCRIBE\nid:1\ndestination:/a\n\nbody\0"),
        ErrorKind::UnexpectedBody(Command::Subscribe)
    );
}

#[test]
fn body_given_by_content_length_on_ack_is_refused() {
    assert_eq!(
        error_v12(b"ACK\nid:1\ncontent-length:1\n\n\0\0"),
        ErrorKind::UnexpectedBody(Command::Ack)
    );
}

#[test]
fn content_length_zero_is_allowed_on_frames_without_body() {
    let frame = frame_v12(b"SUBSCRIBE\nid:1\ndestination:/a\ncontent-length:0\n\n\0");
    assert!(frame.body.is_empty());
}

// ---------------------------------------------------------------------------------------------
// Headers (§ "STOMP Frames", § "Repeated Header Entries")
// ---------------------------------------------------------------------------------------------

#[test]
fn headers_keep_wire_order() {
    let frame = frame_v12(b"SEND\nz:1\na:2\nm:3\n\n\0");
    assert_eq!(headers(&frame), [("z", "1"), ("a", "2"), ("m", "3")]);
}

#[test]
fn repeated_header_first_value_wins() {
    let frame = frame_v12(b"MESSAGE\nfoo:World\nfoo:Hello\n\n\0");
    assert_eq!(frame.get("foo"), Some("World"));
    assert_eq!(headers(&frame), [("foo", "World"), ("foo", "Hello")]);
}

#[test]
fn header_value_with_colon_after_the_first() {
    // Unescaped frames (CONNECT, STOMP 1.0) carry colons raw: the first one ends the name.
    let connect = frame_v12(b"CONNECT\npasscode:a:b::c\n\n\0");
    assert_eq!(connect.get("passcode"), Some("a:b::c"));
    let send = frame(Version::V1_0, b"SEND\ndestination:/a:b\n\n\0");
    assert_eq!(send.get("destination"), Some("/a:b"));
}

#[test]
fn empty_header_value() {
    let frame = frame_v12(b"SEND\nempty:\nnext:x\n\n\0");
    assert_eq!(headers(&frame), [("empty", ""), ("next", "x")]);
}

#[test]
fn header_whitespace_is_preserved() {
    let frame = frame_v12(b"SEND\n name :  padded value \t\n\n\0");
    assert_eq!(headers(&frame), [(" name ", "  padded value \t")]);
}

#[test]
fn header_names_are_case_sensitive() {
    let frame = frame_v12(b"SEND\nDestination:/a\n\n\0");
    assert_eq!(frame.get("destination"), None);
    assert_eq!(frame.get("Destination"), Some("/a"));
}

#[test]
fn malformed_header_without_colon() {
    assert_eq!(
        error_v12(b"SEND\ndestination/a\n\n\0"),
        ErrorKind::MalformedHeader("destination/a".into())
    );
}

#[test]
fn headers_are_utf8() {
    let frame = frame_v12("SEND\nnom:Grüße ✓\n\n\0".as_bytes());
    assert_eq!(frame.get("nom"), Some("Grüße ✓"));
}

#[test]
fn header_that_is_not_utf8_is_refused() {
    assert_eq!(
        error_v12(b"SEND\nname:\xff\xfe\n\n\0"),
        ErrorKind::InvalidUtf8
    );
}

#[test]
fn header_names_that_are_not_utf8_are_refused() {
    assert_eq!(error_v12(b"SEND\n\xc3:v\n\n\0"), ErrorKind::InvalidUtf8);
}

#[test]
fn nul_in_a_header_value_is_refused_in_every_version() {
    // NUL ends a frame; a header holding one would end it early for a peer that reads to it.
    for version in [Version::V1_0, Version::V1_1, Version::V1_2] {
        assert_eq!(
            error(version, b"SEND\ndestination:/a\0b\n\n\0"),
            ErrorKind::ForbiddenOctet {
                octet: 0,
                line: "destination:/a\0b".into()
            },
            "{version}"
        );
    }
}

#[test]
fn nul_in_a_header_name_is_refused() {
    assert!(matches!(
        error_v12(b"SEND\nx\0y:1\n\n\0"),
        ErrorKind::ForbiddenOctet { octet: 0, .. }
    ));
}

#[test]
fn nul_in_a_connect_header_is_refused() {
    assert!(matches!(
        error_v12(b"CONNECT\nlogin:a\0\n\n\0"),
        ErrorKind::ForbiddenOctet { octet: 0, .. }
    ));
}

#[test]
fn raw_cr_inside_a_header_line_is_refused_in_1_2() {
    // 1.2's grammar excludes CR from names and values; escaped frames write it `\r`.
    assert!(matches!(
        error_v12(b"SEND\ndestination:/a\rb\n\n\0"),
        ErrorKind::ForbiddenOctet { octet: b'\r', .. }
    ));
    assert!(matches!(
        error_v12(b"SEND\ndestination:/a\r\r\n\n\0"),
        ErrorKind::ForbiddenOctet { octet: b'\r', .. }
    ));
}

#[test]
fn raw_cr_is_kept_where_the_version_cannot_escape_it() {
    // 1.1, 1.0 and the unescaped CONNECT have no escape for CR (see also the 1.1 tests above).
    assert_eq!(
        frame(Version::V1_0, b"SEND\nk:a\rb\n\n\0").get("k"),
        Some("a\rb")
    );
    assert_eq!(frame_v12(b"CONNECT\nk:a\rb\n\n\0").get("k"), Some("a\rb"));
}

// ---------------------------------------------------------------------------------------------
// The receipt of a refused frame (§ "ERROR": "If the error is related to a specific frame sent
// from the client, the server SHOULD add additional headers ... receipt-id")
// ---------------------------------------------------------------------------------------------

#[test]
fn refusal_after_the_receipt_line_names_the_receipt() {
    for wire in [
        &b"SEND\nreceipt:r-1\ncontent-length:2\n\nbody\0"[..],
        b"SEND\nreceipt:r-1\nno colon\n\n\0",
        b"SEND\nreceipt:r-1\nbad:\\t\n\n\0",
        b"SUBSCRIBE\nreceipt:r-1\n\nbody\0",
        b"SEND\nreceipt:r-1\nx:\0\n\n\0",
    ] {
        let refused = refusal(Version::V1_2, wire);
        assert_eq!(refused.receipt.as_deref(), Some("r-1"), "{refused:?}");
    }
}

#[test]
fn a_bad_escape_before_the_receipt_line_still_names_the_receipt() {
    // The whole header block was read before the escape was found.
    let refused = refusal(Version::V1_2, b"SEND\nbad:\\t\nreceipt:r-2\n\n\0");
    assert_eq!(refused.kind, ErrorKind::InvalidEscape("\\t".into()));
    assert_eq!(refused.receipt.as_deref(), Some("r-2"));
}

#[test]
fn refusal_before_the_receipt_line_names_no_receipt() {
    let refused = refusal(Version::V1_2, b"SEND\nno colon\nreceipt:r-3\n\n\0");
    assert_eq!(refused.receipt, None);
    let refused = refusal(Version::V1_2, b"BOGUS\nreceipt:r-3\n\n\0");
    assert_eq!(refused.receipt, None);
}

#[test]
fn the_receipt_of_a_refusal_is_unescaped() {
    let refused = refusal(
        Version::V1_2,
        b"SEND\nreceipt:a\\cb\ncontent-length:0\n\nx\0",
    );
    assert_eq!(refused.receipt.as_deref(), Some("a:b"));
    // A receipt that is itself invalid is not echoed.
    let refused = refusal(
        Version::V1_2,
        b"SEND\nreceipt:a\\qb\ncontent-length:0\n\nx\0",
    );
    assert_eq!(refused.receipt, None);
}

#[test]
fn a_frame_over_the_limit_names_a_receipt_already_read() {
    let mut decoder = Decoder::new(limits(64, 64, 1024, 1024));
    let mut buf = BytesMut::from(&b"SEND\nreceipt:big\n\n"[..]);
    buf.extend_from_slice(&[b'x'; 100]);
    let refused = decoder.decode(&mut buf).unwrap_err();
    assert!(matches!(refused.kind, ErrorKind::FrameTooLarge { .. }));
    assert_eq!(refused.receipt.as_deref(), Some("big"));
}

// ---------------------------------------------------------------------------------------------
// Value encoding (§ "Value Encoding"; 1.1 § "Value Encoding"; 1.0 has none)
// ---------------------------------------------------------------------------------------------

#[test]
fn v1_2_escapes_are_decoded() {
    let frame = frame_v12(b"SEND\nv:a\\rb\\nc\\cd\\\\e\n\n\0");
    assert_eq!(frame.get("v"), Some("a\rb\nc:d\\e"));
}

#[test]
fn escaped_header_names_are_decoded() {
    let frame = frame_v12(b"SEND\na\\cb\\nc:v\n\n\0");
    assert_eq!(headers(&frame), [("a:b\nc", "v")]);
}

#[test]
fn escaped_backslash_is_not_an_escape_introducer() {
    let frame = frame_v12(b"SEND\nv:\\\\n\n\n\0");
    assert_eq!(frame.get("v"), Some("\\n"));
}

#[test]
fn undefined_escape_is_an_error() {
    assert_eq!(
        error_v12(b"SEND\nv:a\\tb\n\n\0"),
        ErrorKind::InvalidEscape("a\\tb".into())
    );
}

#[test]
fn backslash_at_end_of_value_is_an_error() {
    assert_eq!(
        error_v12(b"SEND\nv:a\\\n\n\0"),
        ErrorKind::InvalidEscape("a\\".into())
    );
}

#[test]
fn undefined_escape_in_a_name_is_an_error() {
    assert_eq!(
        error_v12(b"SEND\na\\x:v\n\n\0"),
        ErrorKind::InvalidEscape("a\\x".into())
    );
}

#[test]
fn connect_headers_are_not_unescaped() {
    let frame = frame_v12(b"CONNECT\nlogin:a\\nb\npasscode:c\\td\\\n\n\0");
    assert_eq!(frame.get("login"), Some("a\\nb"));
    assert_eq!(frame.get("passcode"), Some("c\\td\\"));
}

#[test]
fn stomp_headers_are_not_unescaped() {
    let frame = frame_v12(b"STOMP\nlogin:a\\cb\n\n\0");
    assert_eq!(frame.get("login"), Some("a\\cb"));
}

#[test]
fn connected_headers_are_not_unescaped() {
    let frame = frame_v12(b"CONNECTED\nserver:x\\y\n\n\0");
    assert_eq!(frame.get("server"), Some("x\\y"));
}

#[test]
fn v1_0_frames_are_not_unescaped() {
    let frame = frame(Version::V1_0, b"SEND\ndestination:a\\nb\\tc\\\n\n\0");
    assert_eq!(frame.get("destination"), Some("a\\nb\\tc\\"));
}

#[test]
fn v1_1_unescapes_lf_colon_and_backslash() {
    let frame = frame(Version::V1_1, b"MESSAGE\nv:a\\nb\\cc\\\\d\n\n\0");
    assert_eq!(frame.get("v"), Some("a\nb:c\\d"));
}

#[test]
fn v1_1_rejects_escaped_cr() {
    assert_eq!(
        error(Version::V1_1, b"SEND\nv:a\\rb\n\n\0"),
        ErrorKind::InvalidEscape("a\\rb".into())
    );
}

#[test]
fn set_version_changes_the_escaping_of_later_frames() {
    let mut decoder = decoder(Version::V1_0);
    let wire = b"SEND\nv:a\\cb\n\n\0";
    let [Decoded::Frame(raw)] = &decode_all_with(&mut decoder, wire).unwrap()[..] else {
        panic!()
    };
    assert_eq!(raw.get("v"), Some("a\\cb"));
    decoder.set_version(Version::V1_2);
    assert_eq!(decoder.version(), Version::V1_2);
    let [Decoded::Frame(unescaped)] = &decode_all_with(&mut decoder, wire).unwrap()[..] else {
        panic!()
    };
    assert_eq!(unescaped.get("v"), Some("a:b"));
}

#[test]
fn decoder_starts_with_v1_2_escaping() {
    assert_eq!(Decoder::new(Limits::default()).version(), Version::V1_2);
}

// ---------------------------------------------------------------------------------------------
// Heart-beats (§ "Heart-beating": an EOL between frames)
// ---------------------------------------------------------------------------------------------

#[test]
fn heartbeat_eol_between_frames_is_reported() {
    let items = decode_all(Version::V1_2, b"\nSEND\n\n\0\r\n\nSEND\n\n\0\n").unwrap();
    let kinds: Vec<&str> = items
        .iter()
        .map(|item| match item {
            Decoded::Frame(_) => "frame",
            Decoded::HeartBeat => "beat",
        })
        .collect();
    assert_eq!(kinds, ["beat", "frame", "beat", "beat", "frame", "beat"]);
}

#[test]
fn lone_cr_waits_for_its_lf() {
    assert_eq!(decode_partial(Limits::default(), b"\r"), Ok(None));
}

#[test]
fn cr_between_frames_not_followed_by_lf_is_an_error() {
    assert_eq!(error_v12(b"\rSEND\n\n\0"), ErrorKind::StrayCarriageReturn);
}

#[test]
fn encode_heartbeat_is_a_lone_eol() {
    let mut buf = BytesMut::new();
    encode_heartbeat(&mut buf);
    assert_eq!(&buf[..], b"\n");
    assert_eq!(
        decode_all(Version::V1_2, &buf),
        Ok(vec![Decoded::HeartBeat])
    );
}

// ---------------------------------------------------------------------------------------------
// Streaming
// ---------------------------------------------------------------------------------------------

#[test]
fn incomplete_frame_consumes_nothing() {
    let wire = b"SEND\r\ndestination:/a\ncontent-length:3\n\na\0b\0";
    for end in 1..wire.len() {
        let mut buf = BytesMut::from(&wire[..end]);
        let result = Decoder::new(Limits::default()).decode(&mut buf);
        assert_eq!(result, Ok(None), "prefix of {end} bytes");
        assert_eq!(&buf[..], &wire[..end], "prefix of {end} bytes");
    }
}

#[test]
fn incomplete_nul_terminated_frame_consumes_nothing() {
    let wire = b"MESSAGE\nsubscription:1\n\nbody\0";
    for end in 1..wire.len() {
        assert_eq!(decode_partial(Limits::default(), &wire[..end]), Ok(None));
    }
}

#[test]
fn empty_buffer_needs_more_bytes() {
    assert_eq!(decode_partial(Limits::default(), b""), Ok(None));
}

#[test]
fn many_frames_in_one_buffer() {
    let mut wire = Vec::new();
    for i in 0..100 {
        wire.extend_from_slice(format!("SEND\ndestination:/q/{i}\n\nmsg {i}\0").as_bytes());
    }
    let items = decode_all(Version::V1_2, &wire).unwrap();
    assert_eq!(items.len(), 100);
    for (i, item) in items.iter().enumerate() {
        let Decoded::Frame(frame) = item else {
            panic!("{item:?}")
        };
        assert_eq!(frame.get("destination"), Some(format!("/q/{i}").as_str()));
        assert_eq!(frame.body, format!("msg {i}").as_bytes());
    }
}

#[test]
fn decoding_leaves_the_next_frame_in_the_buffer() {
    let mut buf = BytesMut::from(&b"ACK\nid:1\n\n\0NACK\nid"[..]);
    let mut decoder = decoder(Version::V1_2);
    let Some(Decoded::Frame(ack)) = decoder.decode(&mut buf).unwrap() else {
        panic!()
    };
    assert_eq!(ack.command, Command::Ack);
    assert_eq!(decoder.decode(&mut buf), Ok(None));
    assert_eq!(&buf[..], b"NACK\nid");
}

#[test]
fn byte_at_a_time_gives_the_same_items() {
    let wire = b"\nSEND\r\nv:a\\cb\ncontent-length:3\n\nx\0y\0\r\nMESSAGE\nk:v\n\nbody\0\n";
    let whole = decode_all(Version::V1_2, wire).unwrap();
    let mut decoder = decoder(Version::V1_2);
    let mut buf = BytesMut::new();
    let mut items = Vec::new();
    for &byte in wire {
        buf.extend_from_slice(&[byte]);
        while let Some(item) = decoder.decode(&mut buf).unwrap() {
            items.push(item);
        }
    }
    assert_eq!(items, whole);
    assert!(buf.is_empty());
}

#[test]
fn decoded_frame_shares_the_received_bytes() {
    let mut buf = BytesMut::from(&b"SEND\ncustom-name:value\n\nbody\0"[..]);
    let start = buf.as_ptr() as usize;
    let end = start + buf.len();
    let Some(Decoded::Frame(frame)) = decoder(Version::V1_2).decode(&mut buf).unwrap() else {
        panic!()
    };
    let body = frame.body.as_ptr() as usize;
    assert!((start..end).contains(&body), "body was copied");
}

// ---------------------------------------------------------------------------------------------
// Size limits (§ "Size Limits")
// ---------------------------------------------------------------------------------------------

fn limits(max_frame: usize, max_headers: usize, max_line: usize, max_body: usize) -> Limits {
    Limits {
        max_frame_bytes: max_frame,
        max_headers,
        max_header_line_bytes: max_line,
        max_body_bytes: max_body,
    }
}

#[test]
fn default_limits() {
    assert_eq!(
        Limits::default(),
        limits(64 * 1024, 64, 8 * 1024, 64 * 1024)
    );
    assert_eq!(
        *Decoder::new(limits(1, 2, 3, 4)).limits(),
        limits(1, 2, 3, 4)
    );
}

#[test]
fn frame_over_max_frame_bytes_is_refused_before_it_is_complete() {
    let limits = limits(32, 64, 1024, 1024);
    // Still in the headers.
    let headers = b"SEND\ndestination:/queue/aaaaaaaaaaaaaaaaaa";
    assert!(headers.len() > 32);
    assert_eq!(
        decode_partial(limits, headers),
        Err(ErrorKind::FrameTooLarge {
            size: headers.len(),
            max: 32
        })
    );
    // In a body that has no content-length.
    let body = b"SEND\n\naaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    assert_eq!(
        decode_partial(limits, body),
        Err(ErrorKind::FrameTooLarge {
            size: body.len(),
            max: 32
        })
    );
}

#[test]
fn frame_over_max_frame_bytes_from_content_length_is_refused_before_body_arrives() {
    let wire = b"SEND\ncontent-length:40\n\n";
    assert_eq!(
        decode_partial(limits(32, 64, 1024, 1024), wire),
        Err(ErrorKind::FrameTooLarge {
            size: wire.len() + 40 + 1,
            max: 32
        })
    );
}

#[test]
fn frame_of_exactly_max_frame_bytes_is_accepted() {
    let wire = b"SEND\n\n0123456789\0";
    assert!(decode_partial(limits(wire.len(), 64, 1024, 1024), wire).is_ok_and(|x| x.is_some()));
    assert_eq!(
        decode_partial(limits(wire.len() - 1, 64, 1024, 1024), wire),
        Err(ErrorKind::FrameTooLarge {
            size: wire.len(),
            max: wire.len() - 1
        })
    );
}

#[test]
fn too_many_headers_error_carries_limit() {
    assert_eq!(
        decode_partial(limits(1024, 2, 1024, 1024), b"SEND\na:1\nb:2\nc:3\n\n\0"),
        Err(ErrorKind::TooManyHeaders { max: 2 })
    );
}

#[test]
fn max_headers_is_inclusive() {
    assert!(
        decode_partial(limits(1024, 2, 1024, 1024), b"SEND\na:1\nb:2\n\n\0")
            .is_ok_and(|x| x.is_some())
    );
}

#[test]
fn too_many_headers_is_refused_before_the_frame_is_complete() {
    assert_eq!(
        decode_partial(limits(1024, 2, 1024, 1024), b"SEND\na:1\nb:2\nc:3\n"),
        Err(ErrorKind::TooManyHeaders { max: 2 })
    );
}

#[test]
fn header_line_too_long() {
    assert_eq!(
        decode_partial(limits(1024, 64, 8, 1024), b"SEND\nabcd:efghi\n\n\0"),
        Err(ErrorKind::HeaderLineTooLong { len: 10, max: 8 })
    );
}

#[test]
fn header_line_too_long_is_refused_before_its_eol() {
    assert_eq!(
        decode_partial(limits(1024, 64, 8, 1024), b"SEND\nabcd:efgh"),
        Err(ErrorKind::HeaderLineTooLong { len: 9, max: 8 })
    );
}

#[test]
fn header_line_limit_excludes_the_eol() {
    let limits = limits(1024, 64, 8, 1024);
    assert!(decode_partial(limits, b"SEND\nabcd:efg\r\n\n\0").is_ok_and(|x| x.is_some()));
}

#[test]
fn header_line_at_the_limit_split_before_its_lf_waits_for_more() {
    // The CR may be the first half of the EOL, so it does not count against the limit yet.
    let limits = limits(1024, 64, 8, 1024);
    assert_eq!(decode_partial(limits, b"SEND\nabcd:efg\r"), Ok(None));
    assert_eq!(decode_partial(limits, b"SEND\r"), Ok(None));
    assert_eq!(
        decode_partial(limits, b"SEND\nabcd:efgh\r"),
        Err(ErrorKind::HeaderLineTooLong { len: 9, max: 8 })
    );
}

#[test]
fn command_line_too_long_is_refused_before_its_eol() {
    // A peer that never sends an EOL cannot make the decoder buffer without bound.
    assert_eq!(
        decode_partial(limits(1024, 64, 8, 1024), b"GARBAGE-WITHOUT-EOL"),
        Err(ErrorKind::HeaderLineTooLong { len: 19, max: 8 })
    );
}

#[test]
fn body_too_large_from_content_length_is_refused_before_body_arrives() {
    assert_eq!(
        decode_partial(limits(1024, 64, 1024, 16), b"SEND\ncontent-length:17\n\n"),
        Err(ErrorKind::BodyTooLarge { len: 17, max: 16 })
    );
}

#[test]
fn body_too_large_without_content_length_is_refused_before_its_nul() {
    assert_eq!(
        decode_partial(limits(1024, 64, 1024, 4), b"SEND\n\n12345"),
        Err(ErrorKind::BodyTooLarge { len: 5, max: 4 })
    );
}

#[test]
fn body_of_exactly_max_body_bytes_is_accepted() {
    let limits = limits(1024, 64, 1024, 4);
    assert!(decode_partial(limits, b"SEND\n\n1234\0").is_ok_and(|x| x.is_some()));
    assert!(
        decode_partial(limits, b"SEND\ncontent-length:4\n\n1\x0034\0").is_ok_and(|x| x.is_some())
    );
}

#[test]
fn error_does_not_echo_a_flood() {
    let mut wire = vec![b'X'; 1000];
    wire.extend_from_slice(b"\n\n\0");
    let ErrorKind::UnknownCommand(shown) = error_v12(&wire) else {
        panic!()
    };
    assert_eq!(shown, format!("{}…", "X".repeat(64)));
}

// ---------------------------------------------------------------------------------------------
// Encoding (§ "Value Encoding": "the reverse transformation MUST be applied")
// ---------------------------------------------------------------------------------------------

#[test]
fn encoder_writes_command_headers_blank_line_and_nul() {
    let frame = Frame::new(Command::Subscribe)
        .header("id", "0")
        .header("destination", "/queue/a");
    assert_eq!(
        encoded(&frame, Version::V1_2),
        b"SUBSCRIBE\nid:0\ndestination:/queue/a\n\n\0"
    );
}

#[test]
fn encoder_escapes_per_version() {
    let frame = Frame::new(Command::Message).header("k:\\", "a\rb\nc:d\\e");
    assert_eq!(
        encoded(&frame, Version::V1_2),
        b"MESSAGE\nk\\c\\\\:a\\rb\\nc\\cd\\\\e\n\n\0"
    );
    assert_eq!(
        encoded(&frame, Version::V1_1),
        b"MESSAGE\nk\\c\\\\:a\rb\\nc\\cd\\\\e\n\n\0"
    );
    // 1.0 cannot carry an LF in a value; it becomes a space so the frame stays well-formed.
    assert_eq!(
        encoded(&frame, Version::V1_0),
        b"MESSAGE\nk:\\:a\rb c:d\\e\n\n\0"
    );
}

#[test]
fn encoder_does_not_escape_connect_stomp_or_connected() {
    for command in [Command::Connect, Command::Stomp, Command::Connected] {
        let frame = Frame::new(command).header("passcode", "a:b\\c");
        let expected = format!("{command}\npasscode:a:b\\c\n\n\0");
        assert_eq!(
            encoded(&frame, Version::V1_2),
            expected.as_bytes(),
            "{command}"
        );
    }
}

#[test]
fn encoder_writes_content_length() {
    let frame = Frame::new(Command::Send)
        .header("destination", "/a")
        .body(&b"a\0b"[..]);
    let wire = encoded(&frame, Version::V1_2);
    assert_eq!(wire, b"SEND\ndestination:/a\ncontent-length:3\n\na\0b\0");
    assert_eq!(frame_v12(&wire).body, frame.body);
}

#[test]
fn encoder_omits_content_length_for_an_empty_body() {
    let frame = Frame::new(Command::Send).header("destination", "/a");
    assert_eq!(
        encoded(&frame, Version::V1_2),
        b"SEND\ndestination:/a\n\n\0"
    );
}

#[test]
fn encoder_replaces_a_given_content_length() {
    let frame = Frame::new(Command::Send)
        .header("content-length", "999")
        .header("destination", "/a")
        .header("content-length", "1")
        .body(&b"xy"[..]);
    assert_eq!(
        encoded(&frame, Version::V1_2),
        b"SEND\ndestination:/a\ncontent-length:2\n\nxy\0"
    );
}

#[test]
fn encoder_keeps_a_given_content_length_on_an_empty_body() {
    let frame = Frame::new(Command::Send).header("content-length", "5");
    assert_eq!(
        encoded(&frame, Version::V1_2),
        b"SEND\ncontent-length:0\n\n\0"
    );
}

#[test]
fn encoder_appends_to_the_buffer() {
    let mut buf = BytesMut::from(&b"before"[..]);
    encode(&Frame::new(Command::Disconnect), Version::V1_2, &mut buf);
    encode_heartbeat(&mut buf);
    assert_eq!(&buf[..], b"beforeDISCONNECT\n\n\0\n");
}

#[test]
fn encoded_value_ending_in_cr_survives_where_cr_is_not_escaped() {
    // 1.1, 1.0 and CONNECT have no escape for CR; a CR right before the EOL would be taken as
    // part of it, so the encoder ends such a line with CRLF and the decoder strips only that CR.
    for (command, version) in [
        (Command::Send, Version::V1_1),
        (Command::Send, Version::V1_0),
        (Command::Connect, Version::V1_2),
    ] {
        let sent = Frame::new(command).header("k\r", "v\r");
        let wire = encoded(&sent, version);
        assert_eq!(frame(version, &wire), sent, "{command} {version}");
    }
}

#[test]
fn encoder_output_decodes_to_the_same_frame() {
    let frame = Frame::new(Command::Error)
        .header("message", "bad: \"frame\"\n\\")
        .header("receipt-id", "r-1")
        .body(&b"\0\n\r"[..]);
    for version in [Version::V1_1, Version::V1_2] {
        let decoded = self::frame(version, &encoded(&frame, version));
        assert_eq!(decoded.get("message"), frame.get("message"));
        assert_eq!(decoded.body, frame.body);
    }
}

// ---------------------------------------------------------------------------------------------
// MessageTemplate (fan-out)
// ---------------------------------------------------------------------------------------------

fn template() -> MessageTemplate {
    let mut headers = Headers::new();
    headers.push("destination", "/topic/a:b");
    headers.push("content-type", "application/json");
    headers.push("x-note", "line1\nline2\\");
    MessageTemplate::new(headers, Bytes::from_static(b"{\"k\":\"\\u0000\"}\0"))
}

#[test]
fn message_template_matches_plain_encode() {
    let template = template();
    for version in [Version::V1_0, Version::V1_1, Version::V1_2] {
        for ack in [None, Some("ack:1")] {
            let mut fast = BytesMut::new();
            template.encode_to(version, "sub:0", "m\\1", ack, &mut fast);
            let plain = encoded(&template.to_frame("sub:0", "m\\1", ack), version);
            assert_eq!(&fast[..], &plain[..], "{version} ack={ack:?}");
        }
    }
}

#[test]
fn message_template_decodes_to_its_frame() {
    let template = template();
    let mut wire = BytesMut::new();
    template.encode_to(Version::V1_2, "s-1", "m-1", Some("a-1"), &mut wire);
    assert_eq!(
        frame_v12(&wire),
        template.to_frame("s-1", "m-1", Some("a-1"))
    );
}

#[test]
fn message_template_drops_per_subscriber_headers() {
    let mut shared = Headers::new();
    for name in ["subscription", "message-id", "ack", "content-length"] {
        shared.push(name, "stale");
    }
    shared.push("destination", "/a");
    let template = MessageTemplate::new(shared, Bytes::new());
    assert_eq!(
        template.headers().iter().collect::<Vec<_>>(),
        [("destination", "/a")]
    );
    let frame = template.to_frame("s", "m", None);
    assert_eq!(
        headers(&frame),
        [
            ("subscription", "s"),
            ("message-id", "m"),
            ("destination", "/a"),
            ("content-length", "0")
        ]
    );
}

#[test]
fn message_template_encodes_its_shared_part_once_per_version() {
    let template = template();
    let first = template.tail(Version::V1_2).as_ptr();
    let mut buf = BytesMut::new();
    template.encode_to(Version::V1_2, "s", "m", None, &mut buf);
    assert_eq!(template.tail(Version::V1_2).as_ptr(), first);
    assert_ne!(template.tail(Version::V1_0), template.tail(Version::V1_2));
    assert_eq!(
        template.body(),
        &Bytes::from_static(b"{\"k\":\"\\u0000\"}\0")
    );
}

// ---------------------------------------------------------------------------------------------
// Versions (§ "Protocol Negotiation")
// ---------------------------------------------------------------------------------------------

#[test]
fn negotiation_picks_the_highest_common_version() {
    assert_eq!(Version::negotiate(Some("1.0,1.1,1.2")), Some(Version::V1_2));
    assert_eq!(Version::negotiate(Some("1.1, 1.0")), Some(Version::V1_1));
    assert_eq!(Version::negotiate(Some("1.2,2.0")), Some(Version::V1_2));
}

#[test]
fn missing_accept_version_means_v1_0() {
    assert_eq!(Version::negotiate(None), Some(Version::V1_0));
}

#[test]
fn no_common_version_is_none() {
    assert_eq!(Version::negotiate(Some("2.0,3.1")), None);
    assert_eq!(Version::negotiate(Some("")), None);
}

#[test]
fn version_strings() {
    for version in [Version::V1_0, Version::V1_1, Version::V1_2] {
        assert_eq!(Version::parse(version.as_str()), Some(version));
        assert_eq!(version.to_string(), version.as_str());
    }
}

#[test]
fn set_replaces_the_first_header_of_a_name_drops_its_repeats_and_appends_a_missing_one() {
    for set_static in [false, true] {
        let mut headers = Headers::new();
        headers.push("destination", "/a");
        headers.push("x", "1");
        headers.push("destination", "/b");
        let mut set = |name: &'static str, value: &str| {
            if set_static {
                headers.set_static(name, value.to_owned());
            } else {
                headers.set(name, value.to_owned());
            }
        };
        set("destination", "/c");
        set("content-type", "text/plain");
        let entries: Vec<(&str, &str)> = headers.iter().collect();
        assert_eq!(
            entries,
            [
                ("destination", "/c"),
                ("x", "1"),
                ("content-type", "text/plain")
            ]
        );
    }
}

//! Feeds arbitrary bytes to the decoder in two chunks split at a fuzzer-chosen point, with small
//! limits, and checks that
//!
//! - the decoder never panics, consumes nothing when it needs more bytes and always consumes
//!   something when it yields an item;
//! - the two chunks give the same items (and the same refusal) as the whole input at once;
//! - every decoded frame, encoded again for the same version and decoded again, is the same
//!   frame (`content-length` aside, which the encoder computes and moves last).
//!
//! Input layout: one control byte (version, limits), two bytes of split point, then the stream.

#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use stomp_codec::{Decoded, Decoder, Frame, Limits, Version, encode};

const VERSIONS: [Version; 3] = [Version::V1_0, Version::V1_1, Version::V1_2];

#[derive(Debug, PartialEq)]
struct Outcome {
    items: Vec<Decoded>,
    refused: bool,
}

fn feed(limits: Limits, version: Version, chunks: &[&[u8]]) -> Outcome {
    let mut decoder = Decoder::new(limits);
    decoder.set_version(version);
    let mut buf = BytesMut::new();
    let mut items = Vec::new();
    for chunk in chunks {
        buf.extend_from_slice(chunk);
        loop {
            let before = buf.len();
            match decoder.decode(&mut buf) {
                Ok(None) => {
                    assert_eq!(buf.len(), before, "Ok(None) consumed bytes");
                    break;
                }
                Ok(Some(item)) => {
                    assert!(buf.len() < before, "an item that consumed nothing");
                    items.push(item);
                }
                Err(_) => {
                    return Outcome {
                        items,
                        refused: true,
                    };
                }
            }
        }
    }
    Outcome {
        items,
        refused: false,
    }
}

fn without_content_length(frame: &Frame) -> Frame {
    let mut frame = frame.clone();
    frame.headers.remove("content-length");
    frame
}

fn limits(control: u8) -> Limits {
    if control & 0x80 != 0 {
        // Tiny limits, so that every limit check is reached at every point of a frame.
        Limits {
            max_frame_bytes: 96,
            max_headers: 3,
            max_header_line_bytes: 24,
            max_body_bytes: 32,
        }
    } else {
        Limits {
            max_frame_bytes: 1024,
            max_headers: 16,
            max_header_line_bytes: 256,
            max_body_bytes: 512,
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let [control, split_lo, split_hi, stream @ ..] = data else {
        return;
    };
    let version = VERSIONS[usize::from(control & 0x03) % 3];
    let limits = limits(*control);
    let split = usize::from(u16::from_le_bytes([*split_lo, *split_hi])) % (stream.len() + 1);
    let (head, tail) = stream.split_at(split);

    let whole = feed(limits, version, &[stream]);
    let pieces = feed(limits, version, &[head, tail]);
    assert_eq!(pieces, whole, "split at {split}");

    let roomy = Limits {
        max_frame_bytes: usize::MAX,
        max_headers: usize::MAX,
        max_header_line_bytes: usize::MAX,
        max_body_bytes: usize::MAX,
    };
    for item in &whole.items {
        let Decoded::Frame(frame) = item else {
            continue;
        };
        let mut wire = BytesMut::new();
        encode(frame, version, &mut wire);
        let mut decoder = Decoder::new(roomy);
        decoder.set_version(version);
        let again = match decoder.decode(&mut wire) {
            Ok(Some(Decoded::Frame(again))) => again,
            other => panic!("re-encoded {frame:?} decodes to {other:?}"),
        };
        assert!(wire.is_empty(), "re-encoded frame left {:?}", &wire[..]);
        assert_eq!(
            without_content_length(&again),
            without_content_length(frame)
        );
    }
});

//! Decode and encode of typical frames, side by side with the `stomp-parser` crate.
//!
//! Run with `cargo bench -p stomp-codec --bench codec`. Every case sets its throughput in frames,
//! so criterion reports frames per second for both implementations.
//!
//! `stomp-parser` parses one complete frame held in an owned `Vec<u8>` and serialises while it
//! builds a frame from owned values. The cases give each implementation the same starting point
//! and the same end result:
//!
//! - single-frame decode: the frame's bytes are prepared outside the timed part (a `BytesMut`
//!   for us, a `Vec<u8>` for stomp-parser), and parsing yields a frame with headers and body;
//! - encode: each serialises its own in-memory form of the same frame, prepared outside the
//!   timed part (a `Frame` for us, a builder for stomp-parser, whose frames exist only as
//!   builders until `build` serialises them); `build_*` rows also time building the frame from
//!   borrowed strings;
//! - stream: 1500-byte chunks arrive one after the other; for us each chunk is appended to one
//!   buffer and all complete frames are decoded; stomp-parser cannot find a frame's end in a
//!   stream, so its side splits frames at the NUL (the bodies hold none) and copies each frame
//!   into the `Vec` it needs.
//!
//! Time is the benchmark thread's CPU time, not wall-clock time: the machines this runs on are
//! shared (two cores, with builds and test servers running beside it), and wall-clock samples
//! there mostly measure how long the thread waited for a core. Set `CODEC_BENCH_WALL_TIME=1`
//! to measure wall-clock time instead.

use std::hint::black_box;

use bytes::{Bytes, BytesMut};
use std::time::Duration;

use criterion::measurement::{Measurement, ValueFormatter, WallTime};
use criterion::{BatchSize, Criterion, Throughput};
use stomp_codec::{Command, Decoded, Decoder, Frame, Headers, Limits, MessageTemplate, Version};
use stomp_parser::client::{ClientFrame, SendFrameBuilder};
use stomp_parser::server::{MessageFrameBuilder, ServerFrame};

const JSON_BODY: &str =
    r#"{"from":"alice","to":"bob","text":"Are we still on for lunch at noon?","ts":1700000000}"#;
const DESTINATION: &str = "/queue/conversation.4f1c2a";
const CONTENT_TYPE: &str = "application/json;charset=utf-8";
const RECEIPT: &str = "receipt-000017";

const STREAM_FRAMES: usize = 1000;
const CHUNK: usize = 1500;

fn limits() -> Limits {
    Limits {
        max_frame_bytes: 1 << 20,
        max_body_bytes: 1 << 20,
        ..Limits::default()
    }
}

/// A SEND of about 200 bytes with a JSON body.
fn send_frame() -> Frame {
    Frame::new(Command::Send)
        .header("destination", DESTINATION)
        .header("content-type", CONTENT_TYPE)
        .header("receipt", RECEIPT)
        .body(Bytes::from_static(JSON_BODY.as_bytes()))
}

/// stomp-parser's counterpart of [`send_frame`]: its frames exist only as builders until they
/// are serialised.
fn send_builder(body: &[u8]) -> SendFrameBuilder {
    SendFrameBuilder::new(DESTINATION.to_owned())
        .content_type(CONTENT_TYPE.to_owned())
        .content_length(body.len() as u32)
        .receipt(RECEIPT.to_owned())
        .body(body.to_vec())
}

const MESSAGE_CUSTOM: [(&str, &str); 3] = [
    ("x-sender", "alice@example.org"),
    ("x-conversation", "4f1c2a9e-7d11-4c0b-9a51-3c2f0e8d6b7a"),
    // No ':' or other character that STOMP 1.2 escapes: stomp-parser writes values as they
    // are, so such a value would make the two encoders produce different frames.
    ("x-sent-at", "1714564800000"),
];

/// A MESSAGE with 8 headers.
fn message_frame() -> Frame {
    let mut frame = Frame::new(Command::Message)
        .header("subscription", "sub-0")
        .header("message-id", "msg-000000001234")
        .header("destination", DESTINATION)
        .header("content-type", CONTENT_TYPE)
        .header("content-length", JSON_BODY.len().to_string());
    for (name, value) in MESSAGE_CUSTOM {
        frame = frame.header(name, value);
    }
    frame.body(Bytes::from_static(JSON_BODY.as_bytes()))
}

/// stomp-parser implements only `Into<Vec<u8>>` for its frames.
fn to_bytes(frame: impl Into<Vec<u8>>) -> Vec<u8> {
    frame.into()
}

fn message_builder() -> MessageFrameBuilder {
    let mut builder = MessageFrameBuilder::new(
        "msg-000000001234".to_owned(),
        DESTINATION.to_owned(),
        "sub-0".to_owned(),
    )
    .content_type(CONTENT_TYPE.to_owned())
    .content_length(JSON_BODY.len() as u32);
    for (name, value) in MESSAGE_CUSTOM {
        builder = builder.add_custom_header(name.to_owned(), value.to_owned());
    }
    builder.body(JSON_BODY.as_bytes().to_vec())
}

/// A SEND with a 64 KiB body, without NUL so that both parsers accept it.
fn big_body() -> Bytes {
    (0..64 * 1024).map(|i| b'a' + (i % 26) as u8).collect()
}

fn wire(frame: &Frame) -> Vec<u8> {
    let mut buf = BytesMut::new();
    stomp_codec::encode(frame, Version::V1_2, &mut buf);
    buf.to_vec()
}

fn decode_one(decoder: &mut Decoder, buf: &mut BytesMut) -> Frame {
    match decoder.decode(buf) {
        Ok(Some(Decoded::Frame(frame))) => frame,
        other => panic!("{other:?}"),
    }
}

fn client_frame(bytes: Vec<u8>) -> ClientFrame {
    ClientFrame::try_from(bytes).expect("stomp-parser accepts the frame")
}

fn server_frame(bytes: Vec<u8>) -> ServerFrame {
    ServerFrame::try_from(bytes).expect("stomp-parser accepts the frame")
}

fn bench_decode<M: Measurement>(c: &mut Criterion<M>) {
    let cases: [(&str, Vec<u8>, bool); 3] = [
        ("send_200b_json", wire(&send_frame()), true),
        ("message_8_headers", wire(&message_frame()), false),
        (
            "send_64kib_body",
            wire(&send_frame().body(big_body())),
            true,
        ),
    ];
    let mut group = c.benchmark_group("decode");
    group.throughput(Throughput::Elements(1));
    for (name, bytes, client) in &cases {
        // Both sides must accept the same bytes for the comparison to mean anything.
        let mut decoder = Decoder::new(limits());
        decode_one(&mut decoder, &mut BytesMut::from(&bytes[..]));
        if *client {
            client_frame(bytes.clone());
        } else {
            server_frame(bytes.clone());
        }

        group.bench_function(format!("{name}/stomp-codec"), |b| {
            let mut decoder = Decoder::new(limits());
            b.iter_batched_ref(
                || BytesMut::from(&bytes[..]),
                |buf| decode_one(&mut decoder, buf),
                BatchSize::SmallInput,
            )
        });
        group.bench_function(format!("{name}/stomp-parser"), |b| {
            b.iter_batched(
                || bytes.clone(),
                |bytes| {
                    if *client {
                        drop(black_box(client_frame(bytes)));
                    } else {
                        drop(black_box(server_frame(bytes)));
                    }
                },
                BatchSize::SmallInput,
            )
        });
    }

    let stream: Vec<u8> = (0..STREAM_FRAMES)
        .flat_map(|_| wire(&send_frame()))
        .collect();
    group.throughput(Throughput::Elements(STREAM_FRAMES as u64));
    group.bench_function("stream_1000_in_1500b_chunks/stomp-codec", |b| {
        b.iter(|| {
            let mut decoder = Decoder::new(limits());
            let mut buf = BytesMut::with_capacity(4 * CHUNK);
            let mut frames = 0;
            for chunk in stream.chunks(CHUNK) {
                buf.extend_from_slice(chunk);
                while let Some(item) = decoder.decode(&mut buf).expect("valid stream") {
                    black_box(item);
                    frames += 1;
                }
            }
            assert_eq!(frames, STREAM_FRAMES);
        })
    });
    group.bench_function("stream_1000_in_1500b_chunks/stomp-parser", |b| {
        b.iter(|| {
            let mut buf: Vec<u8> = Vec::with_capacity(4 * CHUNK);
            let mut frames = 0;
            for chunk in stream.chunks(CHUNK) {
                buf.extend_from_slice(chunk);
                let mut start = 0;
                while let Some(nul) = memchr::memchr(0, &buf[start..]) {
                    let end = start + nul + 1;
                    black_box(client_frame(buf[start..end].to_vec()));
                    frames += 1;
                    start = end;
                }
                buf.drain(..start);
            }
            assert_eq!(frames, STREAM_FRAMES);
        })
    });
    group.finish();
}

/// The frame `bytes` decode to, with headers sorted: stomp-parser writes required headers
/// before optional and custom ones, so the two encoders agree on the set, not the order.
fn canonical(bytes: &[u8]) -> (Command, Vec<(String, String)>, Bytes) {
    let frame = decode_one(&mut Decoder::new(limits()), &mut BytesMut::from(bytes));
    let mut headers: Vec<(String, String)> = frame
        .headers
        .iter()
        .map(|(n, v)| (n.to_owned(), v.to_owned()))
        .collect();
    headers.sort();
    (frame.command, headers, frame.body)
}

fn bench_encode<M: Measurement>(c: &mut Criterion<M>) {
    // Both sides must produce the same frames for the comparison to mean anything.
    for (ours, theirs) in [
        (
            send_frame(),
            to_bytes(send_builder(JSON_BODY.as_bytes()).build()),
        ),
        (message_frame(), to_bytes(message_builder().build())),
    ] {
        assert_eq!(canonical(&wire(&ours)), canonical(&theirs));
    }

    let mut group = c.benchmark_group("encode");
    group.throughput(Throughput::Elements(1));
    let json = Bytes::from_static(JSON_BODY.as_bytes());
    let big = big_body();

    for (name, body) in [("send_200b_json", &json), ("send_64kib_body", &big)] {
        let frame = send_frame().body(body.clone());
        group.bench_function(format!("{name}/stomp-codec"), |b| {
            let mut buf = BytesMut::new();
            b.iter(|| {
                buf.clear();
                stomp_codec::encode(&frame, Version::V1_2, &mut buf);
                black_box(&buf);
            })
        });
        group.bench_function(format!("{name}/stomp-parser"), |b| {
            b.iter_batched(
                || send_builder(body),
                |builder| black_box(to_bytes(builder.build())),
                BatchSize::SmallInput,
            )
        });
    }

    let message = message_frame();
    group.bench_function("message_8_headers/stomp-codec", |b| {
        let mut buf = BytesMut::new();
        b.iter(|| {
            buf.clear();
            stomp_codec::encode(&message, Version::V1_2, &mut buf);
            black_box(&buf);
        })
    });
    group.bench_function("message_8_headers/stomp-parser", |b| {
        b.iter_batched(
            message_builder,
            |builder| black_box(to_bytes(builder.build())),
            BatchSize::SmallInput,
        )
    });

    // Fan-out: the same MESSAGE for many subscribers. stomp-parser has no equivalent, so this
    // row has no peer; it shows what the template saves over a plain encode per subscriber.
    let mut shared = Headers::new();
    shared.push("destination", DESTINATION);
    shared.push("content-type", CONTENT_TYPE);
    for (name, value) in MESSAGE_CUSTOM {
        shared.push(name, value);
    }
    let template = MessageTemplate::new(shared, json.clone());
    group.bench_function("message_8_headers_template/stomp-codec", |b| {
        let mut buf = BytesMut::new();
        b.iter(|| {
            buf.clear();
            template.encode_to(Version::V1_2, "sub-0", "msg-000000001234", None, &mut buf);
            black_box(&buf);
        })
    });

    // Building from borrowed strings and serialising: what an application pays to send a frame
    // it did not receive. stomp-parser's builders need owned values and serialise on build.
    group.bench_function("build_send_200b_json/stomp-codec", |b| {
        let mut buf = BytesMut::new();
        b.iter(|| {
            buf.clear();
            stomp_codec::encode(&send_frame(), Version::V1_2, &mut buf);
            black_box(&buf);
        })
    });
    group.bench_function("build_send_200b_json/stomp-parser", |b| {
        b.iter(|| black_box(to_bytes(send_builder(&json).build())))
    });

    let frames = vec![send_frame(); STREAM_FRAMES];
    group.throughput(Throughput::Elements(STREAM_FRAMES as u64));
    group.bench_function("stream_1000/stomp-codec", |b| {
        let mut buf = BytesMut::new();
        b.iter(|| {
            buf.clear();
            for frame in &frames {
                stomp_codec::encode(frame, Version::V1_2, &mut buf);
            }
            black_box(&buf);
        })
    });
    group.bench_function("stream_1000/stomp-parser", |b| {
        let mut buf = Vec::new();
        b.iter_batched(
            || {
                (0..STREAM_FRAMES)
                    .map(|_| send_builder(&json))
                    .collect::<Vec<_>>()
            },
            |builders| {
                buf.clear();
                for builder in builders {
                    buf.extend_from_slice(&to_bytes(builder.build()));
                }
                black_box(&buf);
            },
            BatchSize::LargeInput,
        )
    });
    group.finish();
}

/// CPU time consumed by the calling thread, which is the thread that runs the benchmark loop.
struct ThreadCpuTime;

impl ThreadCpuTime {
    fn now() -> Duration {
        let mut now = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: `now` is a valid, writable timespec for the duration of the call.
        let status = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut now) };
        assert_eq!(status, 0, "clock_gettime(CLOCK_THREAD_CPUTIME_ID) failed");
        Duration::new(
            u64::try_from(now.tv_sec).expect("non-negative"),
            u32::try_from(now.tv_nsec).expect("below one second"),
        )
    }
}

impl Measurement for ThreadCpuTime {
    type Intermediate = Duration;
    type Value = Duration;

    fn start(&self) -> Duration {
        Self::now()
    }
    fn end(&self, start: Duration) -> Duration {
        Self::now().saturating_sub(start)
    }
    fn add(&self, a: &Duration, b: &Duration) -> Duration {
        *a + *b
    }
    fn zero(&self) -> Duration {
        Duration::ZERO
    }
    fn to_f64(&self, value: &Duration) -> f64 {
        value.as_nanos() as f64
    }
    fn formatter(&self) -> &dyn ValueFormatter {
        // Durations either way, so wall time's formatting (ns, µs, elements/s) applies.
        static WALL_TIME: WallTime = WallTime;
        WALL_TIME.formatter()
    }
}

fn run<M: Measurement>(mut criterion: Criterion<M>) {
    bench_decode(&mut criterion);
    bench_encode(&mut criterion);
    criterion.final_summary();
}

fn main() {
    let config = Criterion::default().configure_from_args();
    if std::env::var_os("CODEC_BENCH_WALL_TIME").is_some_and(|v| v != "0") {
        run(config);
    } else {
        run(config.with_measurement(ThreadCpuTime));
    }
}

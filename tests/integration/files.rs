//! Uploads and downloads over real sockets on every configured backend: limits enforced while
//! streaming, image checks with size and thumbnail, access for the uploader and the members of
//! conversations the file was sent in, and attachment validation on send.

use crate::common;

use std::io::Cursor;

use crate::common::{TestBroker, db};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// One raw HTTP request; `chunked` sends the body without a Content-Length.
async fn raw(
    broker: &TestBroker,
    method: &str,
    path: &str,
    user: &str,
    content_type: &str,
    body: &[u8],
    chunked: bool,
) -> (u16, String, Vec<u8>) {
    let token = broker.token(user);
    let length = if chunked {
        "Transfer-Encoding: chunked\r\n".to_owned()
    } else {
        format!("Content-Length: {}\r\n", body.len())
    };
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\nContent-Type: {content_type}\r\n{length}Connection: close\r\n\r\n"
    );
    let mut stream = TcpStream::connect(broker.http_addr()).await.unwrap();
    stream.write_all(head.as_bytes()).await.unwrap();
    if chunked {
        for chunk in body.chunks(1000) {
            let _ = stream
                .write_all(format!("{:x}\r\n", chunk.len()).as_bytes())
                .await;
            let _ = stream.write_all(chunk).await;
            let _ = stream.write_all(b"\r\n").await;
        }
        let _ = stream.write_all(b"0\r\n\r\n").await;
    } else {
        let _ = stream.write_all(body).await;
    }
    let mut response = Vec::new();
    let _ = tokio::time::timeout(common::WAIT, stream.read_to_end(&mut response)).await;
    let split = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("response head");
    let head = String::from_utf8_lossy(&response[..split]).into_owned();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, head, response[split + 4..].to_vec())
}

fn json_of(body: &[u8]) -> Value {
    serde_json::from_slice(body).unwrap_or(Value::Null)
}

fn png(width: u32, height: u32) -> Vec<u8> {
    let picture = image::RgbImage::from_fn(width, height, |x, y| {
        image::Rgb([(x % 256) as u8, (y % 256) as u8, 90])
    });
    let mut bytes = Vec::new();
    picture
        .write_to(&mut Cursor::new(&mut bytes), image::ImageFormat::Png)
        .unwrap();
    bytes
}

/// `user` fetches a stored file (or its thumbnail) at `path`.
async fn download(broker: &TestBroker, path: &str, user: &str) -> (u16, String, Vec<u8>) {
    raw(broker, "GET", path, user, "text/plain", b"", false).await
}

/// Bob uploads a PNG under `name` (URL-encoded); the attachment object of a 201.
async fn upload_png(broker: &TestBroker, name: &str, bytes: &[u8], label: &str) -> Value {
    let path = format!("/api/v1/files?name={name}");
    let (status, _, body) = raw(broker, "POST", &path, "bob", "image/png", bytes, false).await;
    let attachment = json_of(&body);
    assert_eq!(status, 201, "{label}: {attachment}");
    attachment
}

fn files_in(dir: &std::path::Path) -> usize {
    std::fs::read_dir(dir).map(|d| d.count()).unwrap_or(0)
}

#[tokio::test]
async fn images_are_checked_measured_thumbnailed_and_shared_with_conversation_members() {
    for database in db::all().await {
        let label = database.label;
        let dir = tempfile::tempdir().unwrap();
        let files_dir: &'static str = Box::leak(dir.path().display().to_string().into_boxed_str());
        let broker = TestBroker::start_im(&database.url, &[("BROKER_FILES_DIR", files_dir)]).await;
        let picture = png(640, 320);
        let attachment = upload_png(&broker, "cat%20photo.png", &picture, label).await;
        assert_eq!(attachment["name"], "cat photo.png");
        assert_eq!(attachment["mime"], "image/png");
        assert_eq!(attachment["size"], picture.len());
        assert_eq!(
            (attachment["width"].as_i64(), attachment["height"].as_i64()),
            (Some(640), Some(320))
        );
        let url = attachment["url"].as_str().unwrap().to_owned();
        let thumbnail = attachment["thumbnailUrl"].as_str().unwrap().to_owned();

        let (status, head, bytes) = download(&broker, &url, "bob").await;
        assert_eq!(status, 200, "{label}: the uploader");
        assert!(
            head.to_ascii_lowercase()
                .contains("content-type: image/png"),
            "{head}"
        );
        assert_eq!(bytes, picture);
        let (status, _, _) = download(&broker, &url, "alice").await;
        assert_eq!(status, 404, "{label}: not shared yet");

        let (status, sent) = broker
            .api(
                "POST",
                "/api/v1/messages",
                "bob",
                Some(json!({"to": "alice", "clientMsgId": "img-1", "format": "image", "attachment": attachment})),
            )
            .await;
        assert_eq!(status, 201, "{label}: {sent}");
        let (status, _, bytes) = download(&broker, &url, "alice").await;
        assert_eq!(
            (status, bytes.len()),
            (200, picture.len()),
            "{label}: a member"
        );
        let (status, head, bytes) = download(&broker, &thumbnail, "alice").await;
        assert_eq!(status, 200, "{label}");
        assert!(
            head.to_ascii_lowercase()
                .contains("content-type: image/jpeg")
        );
        let small = image::load_from_memory(&bytes).unwrap();
        assert_eq!((small.width(), small.height()), (256, 128));
        let (status, _, _) = download(&broker, &url, "carol").await;
        assert_eq!(status, 404, "{label}: not a member");

        // Carol cannot attach bob's file to a message of hers.
        let (status, body) = broker
            .api(
                "POST",
                "/api/v1/messages",
                "carol",
                Some(json!({"to": "dave", "clientMsgId": "steal", "format": "image", "attachment": attachment})),
            )
            .await;
        assert_eq!(
            (status, body["code"].as_str()),
            (400, Some("INVALID_ARGUMENT")),
            "{label}"
        );

        // Not an image, though declared one.
        let (status, _, body) = raw(
            &broker,
            "POST",
            "/api/v1/files",
            "bob",
            "image/png",
            b"hello, not a png",
            false,
        )
        .await;
        assert_eq!(
            (status, json_of(&body)["code"].as_str()),
            (400, Some("INVALID_ARGUMENT"))
        );
        // Any other file is stored as declared.
        let (status, _, body) = raw(
            &broker,
            "POST",
            "/api/v1/files?name=notes.pdf",
            "bob",
            "application/pdf",
            b"%PDF-1.4 tiny",
            false,
        )
        .await;
        let file = json_of(&body);
        assert_eq!(status, 201, "{file}");
        assert_eq!(file["mime"], "application/pdf");
        assert!(file.get("width").is_none() && file.get("thumbnailUrl").is_none());
        let (status, _, _) = raw(
            &broker,
            "POST",
            "/api/v1/files",
            "bob",
            "application/pdf",
            b"",
            false,
        )
        .await;
        assert_eq!(status, 400, "empty");
    }
}

#[tokio::test]
async fn uploads_over_the_limit_are_refused_while_streaming_and_leave_nothing() {
    for database in db::all().await {
        let label = database.label;
        let dir = tempfile::tempdir().unwrap();
        let files_dir: &'static str = Box::leak(dir.path().display().to_string().into_boxed_str());
        let broker = TestBroker::start_im(
            &database.url,
            &[
                ("BROKER_FILES_DIR", files_dir),
                ("BROKER_LIMITS_IMAGE_MAX_BYTES", "2000"),
                ("BROKER_LIMITS_FILE_MAX_BYTES", "5000"),
            ],
        )
        .await;
        let big = png(300, 300);
        assert!(big.len() > 2000);
        for chunked in [false, true] {
            let (status, _, body) = raw(
                &broker,
                "POST",
                "/api/v1/files",
                "bob",
                "image/png",
                &big,
                chunked,
            )
            .await;
            assert_eq!(
                (status, json_of(&body)["code"].as_str()),
                (413, Some("PAYLOAD_TOO_LARGE")),
                "{label}: chunked {chunked}"
            );
            let (status, _, _) = raw(
                &broker,
                "POST",
                "/api/v1/files",
                "bob",
                "application/zip",
                &[7u8; 6000],
                chunked,
            )
            .await;
            assert_eq!(status, 413, "{label}: chunked {chunked}");
        }
        assert_eq!(
            files_in(dir.path()),
            0,
            "{label}: nothing partial left behind"
        );
        let (status, _, _) = raw(
            &broker,
            "POST",
            "/api/v1/files",
            "bob",
            "application/zip",
            &[7u8; 4000],
            true,
        )
        .await;
        assert_eq!(status, 201, "{label}: within the file limit");
    }
}

#[tokio::test]
async fn attachments_are_validated() {
    let database = db::sqlite();
    let broker = TestBroker::start_im(
        &database.url,
        &[(
            "BROKER_FILES_EXTERNAL_URL_PREFIXES",
            r#"["https://cdn.example/"]"#,
        )],
    )
    .await;
    let good = json!({"url": "https://cdn.example/x.mp3", "name": "x.mp3", "size": 10, "mime": "audio/mpeg", "durationMs": 3000});
    let (status, body) = broker
        .api(
            "POST",
            "/api/v1/messages",
            "alice",
            Some(json!({"to": "bob", "clientMsgId": "v1", "format": "voice", "attachment": good})),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    for (format, attachment) in [
        (
            "image",
            json!({"url": "u", "name": "n", "mime": "image/png"}),
        ),
        (
            "file",
            json!({"url": "u", "name": "n", "size": -1, "mime": "m"}),
        ),
        (
            "video",
            json!({"url": "u", "name": "n", "size": 1, "mime": "m", "width": "wide"}),
        ),
        (
            "image",
            json!({"url": "u", "name": "n", "size": 1, "mime": "m", "extra": 1}),
        ),
        (
            "card",
            json!({"bizType": "order", "bizId": 42, "title": "t"}),
        ),
        ("card", json!({"bizType": "order", "bizId": "42"})),
        ("file", json!("not an object")),
    ] {
        let (status, body) = broker
            .api("POST", "/api/v1/messages", "alice", Some(json!({"to": "bob", "clientMsgId": format!("bad-{attachment}"), "format": format, "attachment": attachment})))
            .await;
        assert_eq!(
            (status, body["code"].as_str()),
            (400, Some("INVALID_ARGUMENT")),
            "{attachment}"
        );
    }
}

/// The S3-compatible server of the tests (`tests/s3/start.sh`), or a failure in CI when it is
/// missing.
fn s3_url() -> Option<String> {
    match std::env::var("BROKER_TEST_S3_URL") {
        Ok(url) if !url.is_empty() => Some(url.trim_end_matches('/').to_owned()),
        _ => {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "CI=true but BROKER_TEST_S3_URL is not set"
            );
            eprintln!("skipped: BROKER_TEST_S3_URL is not set (tests/s3/start.sh starts a server)");
            None
        }
    }
}

/// A fresh bucket on the test server (which takes unsigned requests), by one raw `PUT`.
async fn fresh_bucket(url: &str) -> String {
    let bucket = format!("broker-test-{:016x}", rand::random::<u64>());
    let host = url.strip_prefix("http://").expect("an http:// test URL");
    let mut stream = TcpStream::connect(host).await.expect("the S3 test server");
    let request = format!(
        "PUT /{bucket} HTTP/1.1\r\nHost: {host}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    let _ = tokio::time::timeout(common::WAIT, stream.read_to_end(&mut response)).await;
    let head = String::from_utf8_lossy(&response);
    assert!(head.starts_with("HTTP/1.1 200"), "create bucket: {head}");
    bucket
}

/// A client of the bucket, to look at what the broker stored.
fn bucket_client(url: &str, bucket: &str) -> object_store::aws::AmazonS3 {
    object_store::aws::AmazonS3Builder::new()
        .with_endpoint(url)
        .with_bucket_name(bucket)
        .with_region("us-east-1")
        .with_access_key_id("test")
        .with_secret_access_key("test")
        .with_allow_http(true)
        .build()
        .unwrap()
}

async fn object_names(client: &object_store::aws::AmazonS3) -> Vec<String> {
    use futures_util::StreamExt;
    use object_store::ObjectStore;
    let mut names: Vec<String> = client
        .list(None)
        .map(|meta| meta.expect("list").location.to_string())
        .collect()
        .await;
    names.sort();
    names
}

fn s3_overrides<'a>(url: &'a str, bucket: &'a str, files_dir: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("BROKER_FILES_STORE", "s3"),
        ("BROKER_FILES_DIR", files_dir),
        ("BROKER_FILES_S3_ENDPOINT", url),
        ("BROKER_FILES_S3_BUCKET", bucket),
        ("BROKER_FILES_S3_PREFIX", "chat/uploads"),
        ("BROKER_FILES_S3_ACCESS_KEY_ID", "test"),
        ("BROKER_FILES_S3_SECRET_ACCESS_KEY", "test"),
        ("BROKER_FILES_S3_ALLOW_HTTP", "true"),
        ("BROKER_LIMITS_IMAGE_MAX_BYTES", "200000"),
    ]
}

#[tokio::test]
async fn uploads_kept_in_an_s3_compatible_store_are_served_after_a_restart() {
    let Some(url) = s3_url() else { return };
    for database in db::all().await {
        let label = database.label;
        let bucket = fresh_bucket(&url).await;
        let dir = tempfile::tempdir().unwrap();
        let files_dir = dir.path().display().to_string();
        let overrides = s3_overrides(&url, &bucket, &files_dir);
        let broker = TestBroker::start_im(&database.url, &overrides).await;

        let picture = png(400, 200);
        let attachment = upload_png(&broker, "map.png", &picture, label).await;
        let url_path = attachment["url"].as_str().unwrap().to_owned();
        let id = url_path.rsplit('/').next().unwrap().to_owned();
        let thumbnail = attachment["thumbnailUrl"].as_str().unwrap().to_owned();

        // The bytes went to the bucket, under the prefix, and not to the local directory.
        let client = bucket_client(&url, &bucket);
        assert_eq!(
            object_names(&client).await,
            vec![
                format!("chat/uploads/{id}"),
                format!("chat/uploads/{id}.thumb")
            ],
            "{label}"
        );
        assert_eq!(files_in(dir.path()), 0, "{label}: nothing stored locally");

        // Over the limit: refused while streaming, nothing added to the bucket.
        let big = vec![0u8; 300_000];
        let (status, _, _) = raw(
            &broker,
            "POST",
            "/api/v1/files",
            "bob",
            "image/png",
            &big,
            true,
        )
        .await;
        assert_eq!(status, 413, "{label}");
        assert_eq!(object_names(&client).await.len(), 2, "{label}");

        // Shared in a message, then read back by the other member from a restarted broker.
        let (status, sent) = broker
            .api(
                "POST",
                "/api/v1/messages",
                "bob",
                Some(json!({"to": "alice", "clientMsgId": "s3-1", "format": "image", "attachment": attachment})),
            )
            .await;
        assert_eq!(status, 201, "{label}: {sent}");
        common::im::stop(broker).await;
        let broker = TestBroker::start_im(&database.url, &overrides).await;
        let (status, head, bytes) = download(&broker, &url_path, "alice").await;
        assert_eq!(status, 200, "{label}: {head}");
        assert!(
            head.to_ascii_lowercase()
                .contains("content-type: image/png")
        );
        assert_eq!(bytes, picture, "{label}");
        let (status, _, bytes) = download(&broker, &thumbnail, "alice").await;
        assert_eq!(status, 200, "{label}");
        let small = image::load_from_memory(&bytes).unwrap();
        assert_eq!((small.width(), small.height()), (256, 128), "{label}");
        let (status, _, _) = download(&broker, &url_path, "carol").await;
        assert_eq!(status, 404, "{label}: not a member");
    }
}

#[tokio::test]
async fn an_object_store_that_does_not_answer_gets_unavailable_and_the_broker_carries_on() {
    // A port nobody listens on.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let database = db::sqlite();
    let dir = tempfile::tempdir().unwrap();
    let files_dir = dir.path().display().to_string();
    let mut overrides = s3_overrides(&endpoint, "nowhere", &files_dir);
    overrides.push(("BROKER_FILES_S3_TIMEOUT_MS", "1500"));
    let broker = TestBroker::start_im(&database.url, &overrides).await;

    let (status, _, body) = raw(
        &broker,
        "POST",
        "/api/v1/files?name=a.txt",
        "bob",
        "text/plain",
        b"hello",
        false,
    )
    .await;
    assert_eq!(
        (status, json_of(&body)["code"].as_str()),
        (503, Some("UNAVAILABLE"))
    );
    // No file row was recorded, and the rest of the broker still answers.
    let (status, _) = broker.get("/healthz").await;
    assert_eq!(status, 200);
    let (status, sent) = broker
        .api(
            "POST",
            "/api/v1/messages",
            "bob",
            Some(json!({"to": "alice", "clientMsgId": "after", "format": "text", "content": "still here"})),
        )
        .await;
    assert_eq!(status, 201, "{sent}");
}

/// The value of `name` in an answer head (case-insensitive name).
fn header_of<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().find_map(|line| {
        let (key, value) = line.split_once(':')?;
        key.trim()
            .eq_ignore_ascii_case(name)
            .then_some(value.trim())
    })
}

/// Bob uploads `bytes` as `mime` under `name` (URL-encoded) and downloads it; the answer head.
async fn upload_and_download(
    broker: &TestBroker,
    mime: &str,
    name: &str,
    bytes: &[u8],
    label: &str,
) -> String {
    let path = format!("/api/v1/files?name={name}");
    let (status, _, body) = raw(broker, "POST", &path, "bob", mime, bytes, false).await;
    let attachment = json_of(&body);
    assert_eq!(status, 201, "{label} {mime}: {attachment}");
    let (status, head, _) = download(broker, attachment["url"].as_str().unwrap(), "bob").await;
    assert_eq!(status, 200, "{label} {mime}");
    head
}

#[tokio::test]
async fn downloads_are_never_sniffed_and_run_sandboxed() {
    for database in db::all().await {
        let label = database.label;
        let broker = TestBroker::start_im(&database.url, &[]).await;
        let head = upload_and_download(&broker, "image/png", "a.png", &png(8, 8), label).await;
        assert_eq!(header_of(&head, "x-content-type-options"), Some("nosniff"));
        assert_eq!(header_of(&head, "content-security-policy"), Some("sandbox"));
        let head = upload_and_download(&broker, "text/html", "a.html", b"<script>", label).await;
        assert_eq!(header_of(&head, "x-content-type-options"), Some("nosniff"));
        assert_eq!(header_of(&head, "content-security-policy"), Some("sandbox"));
    }
}

#[tokio::test]
async fn html_xml_and_other_files_are_downloaded_as_attachments() {
    for database in db::all().await {
        let label = database.label;
        let broker = TestBroker::start_im(&database.url, &[]).await;
        for (mime, name, bytes) in [
            ("text/html", "page.html", &b"<script>alert(1)</script>"[..]),
            ("application/xhtml+xml", "page.xhtml", b"<html/>"),
            ("text/xml", "feed.xml", b"<?xml version=\"1.0\"?><a/>"),
            ("application/pdf", "notes.pdf", b"%PDF-1.4"),
            ("text/plain", "notes.txt", b"hello"),
        ] {
            let head = upload_and_download(&broker, mime, name, bytes, label).await;
            assert_eq!(
                header_of(&head, "content-disposition"),
                Some(format!("attachment; filename=\"{name}\"; filename*=UTF-8''{name}").as_str()),
                "{label} {mime}: {head}"
            );
        }
    }
}

#[tokio::test]
async fn raster_images_audio_and_video_are_shown_inline() {
    for database in db::all().await {
        let label = database.label;
        let broker = TestBroker::start_im(&database.url, &[]).await;
        for (mime, name, bytes) in [
            ("image/png", "cat.png", png(8, 8)),
            ("audio/mpeg", "voice.mp3", b"ID3".to_vec()),
            ("video/mp4", "clip.mp4", b"\0\0\0\x18ftypmp42".to_vec()),
        ] {
            let head = upload_and_download(&broker, mime, name, &bytes, label).await;
            let disposition = header_of(&head, "content-disposition").unwrap_or_default();
            assert!(
                disposition.starts_with("inline;"),
                "{label} {mime}: {disposition}"
            );
        }
    }
}

#[tokio::test]
async fn a_download_carries_its_file_name_encoded_per_rfc_6266() {
    let database = db::sqlite();
    let broker = TestBroker::start_im(&database.url, &[]).await;
    // "報告 2026.pdf", URL-encoded in the query.
    let head = upload_and_download(
        &broker,
        "application/pdf",
        "%E5%A0%B1%E5%91%8A%202026.pdf",
        b"%PDF-1.4",
        "sqlite",
    )
    .await;
    assert_eq!(
        header_of(&head, "content-disposition"),
        Some(
            "attachment; filename=\"__ 2026.pdf\"; filename*=UTF-8''%E5%A0%B1%E5%91%8A%202026.pdf"
        )
    );
}

/// A grayscale PNG of `width` x `height` black pixels, compressed as well as DEFLATE allows
/// (258 bytes per 13 bits): a few hundred KB that decode to `width * height` bytes. Written by
/// hand so that making it does not allocate the bitmap in this process.
fn png_bomb(width: u32, height: u32) -> Vec<u8> {
    struct Bits {
        out: Vec<u8>,
        bit: u32,
    }
    impl Bits {
        fn put(&mut self, value: u32, count: u32) {
            for i in 0..count {
                if self.bit == 0 {
                    self.out.push(0);
                }
                if (value >> i) & 1 == 1 {
                    *self.out.last_mut().unwrap() |= 1 << self.bit;
                }
                self.bit = (self.bit + 1) % 8;
            }
        }
        /// Huffman codes go most significant bit first.
        fn code(&mut self, code: u32, length: u32) {
            for i in (0..length).rev() {
                self.put((code >> i) & 1, 1);
            }
        }
    }
    fn crc32(bytes: &[u8]) -> u32 {
        let mut crc = 0xFFFF_FFFFu32;
        for byte in bytes {
            crc ^= u32::from(*byte);
            for _ in 0..8 {
                crc = if crc & 1 == 1 {
                    (crc >> 1) ^ 0xEDB8_8320
                } else {
                    crc >> 1
                };
            }
        }
        !crc
    }
    fn chunk(png: &mut Vec<u8>, kind: &[u8], data: &[u8]) {
        png.extend_from_slice(&u32::try_from(data.len()).unwrap().to_be_bytes());
        let start = png.len();
        png.extend_from_slice(kind);
        png.extend_from_slice(data);
        let crc = crc32(&png[start..]);
        png.extend_from_slice(&crc.to_be_bytes());
    }
    // Every scanline is a filter byte 0 and `width` zero bytes: all zeros.
    let raw = u64::from(height) * (u64::from(width) + 1);
    let mut bits = Bits {
        out: vec![0x78, 0x01],
        bit: 0,
    };
    bits.put(1, 1); // the final block
    bits.put(1, 2); // fixed Huffman codes
    bits.code(0x30, 8); // the literal 0
    let mut left = raw - 1;
    while left >= 258 {
        bits.code(0xC5, 8); // length 258
        bits.code(0, 5); // distance 1
        left -= 258;
    }
    for _ in 0..left {
        bits.code(0x30, 8);
    }
    bits.code(0, 7); // end of block
    let mut zlib = bits.out;
    let adler = (u32::try_from(raw % 65521).unwrap() << 16) | 1;
    zlib.extend_from_slice(&adler.to_be_bytes());

    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut header = Vec::new();
    header.extend_from_slice(&width.to_be_bytes());
    header.extend_from_slice(&height.to_be_bytes());
    header.extend_from_slice(&[8, 0, 0, 0, 0]);
    chunk(&mut png, b"IHDR", &header);
    chunk(&mut png, b"IDAT", &zlib);
    chunk(&mut png, b"IEND", &[]);
    png
}

/// The most memory this process has held (VmHWM), in KiB.
fn peak_rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM")
}

#[tokio::test]
async fn the_png_bomb_generator_makes_a_readable_image() {
    let small = png_bomb(300, 200);
    let image = image::load_from_memory(&small).unwrap();
    assert_eq!((image.width(), image.height()), (300, 200));
}

#[tokio::test]
async fn a_small_png_declaring_a_huge_bitmap_is_refused_without_decoding_it() {
    let database = db::sqlite();
    let broker = TestBroker::start_im(&database.url, &[]).await;
    // 10 000 x 10 000 pixels (100 MB decoded, over the default 40 megapixels) in about 600 KB.
    let bomb = png_bomb(10_000, 10_000);
    assert!(bomb.len() < 1024 * 1024, "{}", bomb.len());
    let before = peak_rss_kib();
    let (status, _, body) = raw(
        &broker,
        "POST",
        "/api/v1/files",
        "bob",
        "image/png",
        &bomb,
        false,
    )
    .await;
    let error = json_of(&body);
    assert_eq!(
        (status, error["code"].as_str()),
        (413, Some("PAYLOAD_TOO_LARGE")),
        "{error}"
    );
    assert!(
        error["message"].as_str().unwrap_or("").contains("pixels"),
        "{error}"
    );
    let grew = peak_rss_kib().saturating_sub(before);
    assert!(grew < 64 * 1024, "peak memory grew by {grew} KiB");
}

#[tokio::test]
async fn image_max_pixels_bounds_the_images_taken() {
    let database = db::sqlite();
    let broker =
        TestBroker::start_im(&database.url, &[("BROKER_FILES_IMAGE_MAX_PIXELS", "10000")]).await;
    upload_png(&broker, "ok.png", &png(100, 100), "at the limit").await;
    let (status, _, body) = raw(
        &broker,
        "POST",
        "/api/v1/files",
        "bob",
        "image/png",
        &png(101, 100),
        false,
    )
    .await;
    assert_eq!(
        (status, json_of(&body)["code"].as_str()),
        (413, Some("PAYLOAD_TOO_LARGE"))
    );
}

#[tokio::test]
async fn concurrent_image_uploads_are_decoded_at_most_one_per_core_at_once() {
    let database = db::sqlite();
    let broker = std::sync::Arc::new(TestBroker::start_im(&database.url, &[]).await);
    let picture = std::sync::Arc::new(png(300, 300));
    let slots = broker::files::decode::slots();
    let uploads: Vec<_> = (0..slots * 3)
        .map(|i| {
            let broker = broker.clone();
            let picture = picture.clone();
            tokio::spawn(async move {
                let path = format!("/api/v1/files?name=p{i}.png");
                raw(&broker, "POST", &path, "bob", "image/png", &picture, false)
                    .await
                    .0
            })
        })
        .collect();
    for upload in uploads {
        assert_eq!(upload.await.unwrap(), 201);
    }
    let peak = broker::files::decode::peak();
    assert!(
        (1..=slots).contains(&peak),
        "{peak} decodes at once on {slots} slots"
    );
}

/// Sends the head of an upload by `user` announcing `length` bytes, and nothing of its body;
/// the answer's status and JSON body. An answer proves the broker decided on the head alone.
async fn upload_head_only(broker: &TestBroker, user: &str, length: u64) -> (u16, Value) {
    let token = broker.token(user);
    let head = format!(
        "POST /api/v1/files?name=x.bin HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/octet-stream\r\nContent-Length: {length}\r\n\
         Connection: close\r\n\r\n"
    );
    let mut stream = TcpStream::connect(broker.http_addr()).await.unwrap();
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    tokio::time::timeout(common::WAIT, stream.read_to_end(&mut response))
        .await
        .expect("an answer without the body")
        .unwrap();
    let text = String::from_utf8_lossy(&response);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, serde_json::from_str(body).unwrap_or(Value::Null))
}

/// `user` uploads `size` bytes; the status.
async fn upload_bytes(broker: &TestBroker, user: &str, size: usize, chunked: bool) -> u16 {
    let body = vec![7u8; size];
    let path = "/api/v1/files?name=x.bin";
    raw(
        broker,
        "POST",
        path,
        user,
        "application/octet-stream",
        &body,
        chunked,
    )
    .await
    .0
}

#[tokio::test]
async fn uploads_beyond_the_upload_rate_are_refused_before_the_body_is_read() {
    for database in db::all().await {
        let label = database.label;
        let broker =
            TestBroker::start_im(&database.url, &[("BROKER_LIMITS_UPLOAD_RATE", "2/1h")]).await;
        assert_eq!(
            upload_bytes(&broker, "bob", 10, false).await,
            201,
            "{label}"
        );
        assert_eq!(upload_bytes(&broker, "bob", 10, true).await, 201, "{label}");
        let (status, error) = upload_head_only(&broker, "bob", 10).await;
        assert_eq!(
            (status, error["code"].as_str()),
            (429, Some("RATE_LIMITED")),
            "{label}: {error}"
        );
        assert_eq!(
            upload_bytes(&broker, "alice", 10, false).await,
            201,
            "{label}: counted per user"
        );
    }
}

#[tokio::test]
async fn uploads_beyond_the_daily_byte_quota_are_refused_before_the_body_is_read() {
    for database in db::all().await {
        let label = database.label;
        let broker = TestBroker::start_im(
            &database.url,
            &[("BROKER_FILES_QUOTA_BYTES_PER_DAY", "3000")],
        )
        .await;
        assert_eq!(
            upload_bytes(&broker, "bob", 2000, false).await,
            201,
            "{label}"
        );
        let (status, error) = upload_head_only(&broker, "bob", 1001).await;
        assert_eq!(
            (status, error["code"].as_str()),
            (429, Some("RATE_LIMITED")),
            "{label}: {error}"
        );
        // Without a Content-Length the size is counted once read.
        assert_eq!(
            upload_bytes(&broker, "bob", 1000, true).await,
            201,
            "{label}"
        );
        assert_eq!(
            upload_bytes(&broker, "bob", 1, true).await,
            429,
            "{label}: nothing left"
        );
        assert_eq!(
            upload_bytes(&broker, "alice", 3000, false).await,
            201,
            "{label}"
        );
    }
}

#[tokio::test]
async fn two_brokers_on_one_redis_share_the_upload_quota() {
    let redis = match std::env::var("BROKER_TEST_REDIS_URL") {
        Ok(url) if !url.is_empty() => url,
        _ => {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "CI=true but BROKER_TEST_REDIS_URL is not set"
            );
            eprintln!("skipped: BROKER_TEST_REDIS_URL is not set");
            return;
        }
    };
    let run = format!("{:08x}", rand::random::<u32>());
    let database = db::sqlite();
    let start = |node: String| {
        let redis = redis.clone();
        let url = database.url.clone();
        async move {
            TestBroker::start_im(
                &url,
                &[
                    ("BROKER_PRESENCE_REDIS_URL", &redis),
                    ("BROKER_CLUSTER_NODE_ID", &node),
                    ("BROKER_FILES_QUOTA_BYTES_PER_DAY", "3000"),
                    ("BROKER_LIMITS_UPLOAD_RATE", "3/1h"),
                ],
            )
            .await
        }
    };
    let a = start(format!("quota-{run}-a")).await;
    let b = start(format!("quota-{run}-b")).await;
    // Users of this run only: the counts live in Redis for a day.
    let bob = format!("bob-{run}");
    let carol = format!("carol-{run}");

    assert_eq!(upload_bytes(&a, &bob, 2000, false).await, 201);
    let (status, error) = upload_head_only(&b, &bob, 1001).await;
    assert_eq!(
        (status, error["code"].as_str()),
        (429, Some("RATE_LIMITED")),
        "{error}"
    );
    assert_eq!(upload_bytes(&b, &bob, 1000, false).await, 201);

    for node in [&a, &b, &a] {
        assert_eq!(upload_bytes(node, &carol, 10, false).await, 201);
    }
    let (status, error) = upload_head_only(&b, &carol, 10).await;
    assert_eq!(
        (status, error["code"].as_str()),
        (429, Some("RATE_LIMITED")),
        "{error}"
    );
}

#[cfg(unix)]
fn mode_of(path: &std::path::Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

#[cfg(unix)]
#[tokio::test]
async fn uploaded_files_and_thumbnails_are_owner_only() {
    for database in db::all().await {
        let label = database.label;
        let root = tempfile::tempdir().unwrap();
        let files_dir = root.path().join("data/files");
        let broker = TestBroker::start_im(
            &database.url,
            &[("BROKER_FILES_DIR", &files_dir.display().to_string())],
        )
        .await;
        let attachment = upload_png(&broker, "a.png", &png(300, 200), label).await;
        let id = attachment["url"]
            .as_str()
            .unwrap()
            .rsplit('/')
            .next()
            .unwrap();
        assert_eq!(mode_of(&root.path().join("data")), 0o700, "{label}");
        assert_eq!(mode_of(&files_dir), 0o700, "{label}");
        assert_eq!(mode_of(&files_dir.join(id)), 0o600, "{label}");
        assert_eq!(
            mode_of(&files_dir.join(format!("{id}.thumb"))),
            0o600,
            "{label}"
        );
    }
}

#[cfg(unix)]
#[tokio::test]
async fn a_new_sqlite_database_and_its_wal_and_shm_are_owner_only() {
    let root = tempfile::tempdir().unwrap();
    let path = root.path().join("data/db/broker.db");
    let url = format!("sqlite://{}", path.display());
    let broker = TestBroker::start_im(&url, &[]).await;
    // A write, so that the write-ahead log is in use.
    let (status, body) = broker
        .api(
            "POST",
            "/api/v1/messages",
            "alice",
            Some(json!({"to": "bob", "clientMsgId": "m1", "content": "hi"})),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(mode_of(&root.path().join("data")), 0o700);
    assert_eq!(mode_of(&root.path().join("data/db")), 0o700);
    for file in ["broker.db", "broker.db-wal", "broker.db-shm"] {
        assert_eq!(
            mode_of(&root.path().join("data/db").join(file)),
            0o600,
            "{file}"
        );
    }
}

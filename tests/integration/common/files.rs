//! Uploads and downloads over raw HTTP, for the tests of attachments and file shares.

use std::io::Cursor;

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::{TestBroker, WAIT};

/// One HTTP/1.1 request with `user`'s token; returns the status, the head and the body bytes.
pub async fn request(
    broker: &TestBroker,
    method: &str,
    path: &str,
    user: &str,
    content_type: &str,
    body: &[u8],
) -> (u16, String, Vec<u8>) {
    let token = broker.token(user);
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let mut stream = TcpStream::connect(broker.http_addr())
        .await
        .expect("connect");
    stream.write_all(head.as_bytes()).await.expect("write");
    stream.write_all(body).await.expect("write body");
    let mut response = Vec::new();
    tokio::time::timeout(WAIT, stream.read_to_end(&mut response))
        .await
        .expect("response in time")
        .expect("read");
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

/// A PNG of the given size.
pub fn png(width: u32, height: u32) -> Vec<u8> {
    let picture = image::RgbImage::from_fn(width, height, |x, y| {
        image::Rgb([(x % 256) as u8, (y % 256) as u8, 90])
    });
    let mut bytes = Vec::new();
    picture
        .write_to(&mut Cursor::new(&mut bytes), image::ImageFormat::Png)
        .expect("encode png");
    bytes
}

/// `user` uploads `bytes` as `mime` under `name`; the attachment object of the 201.
pub async fn upload(
    broker: &TestBroker,
    user: &str,
    name: &str,
    mime: &str,
    bytes: &[u8],
) -> Value {
    let path = format!("/api/v1/files?name={name}");
    let (status, _, body) = request(broker, "POST", &path, user, mime, bytes).await;
    let attachment: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    assert_eq!(status, 201, "upload: {attachment}");
    attachment
}

/// `user` uploads a 64x48 PNG; its attachment object.
pub async fn upload_png(broker: &TestBroker, user: &str) -> Value {
    upload(broker, user, "picture.png", "image/png", &png(64, 48)).await
}

/// The status of `user`'s GET of `path` (a file or its thumbnail).
pub async fn download_status(broker: &TestBroker, path: &str, user: &str) -> u16 {
    request(broker, "GET", path, user, "text/plain", b"")
        .await
        .0
}

//! Test harness: a broker started in-process on port 0, and a small STOMP client built on
//! `stomp-codec` that speaks over a real WebSocket or TCP socket.

#![allow(dead_code)]

pub mod cluster;
pub mod db;
pub mod im;

use std::net::SocketAddr;
use std::time::Duration;

use broker::auth::Role;
use broker::config::Config;
use broker::router::Extensions;
use broker::server::Server;
use bytes::{Bytes, BytesMut};
use futures_util::{SinkExt, StreamExt};
use stomp_codec::{Command, Decoded, Decoder, Frame, Limits, Version, encode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;

/// How long a test waits for a frame before it fails.
pub const WAIT: Duration = Duration::from_secs(5);

/// A broker running in this process.
pub struct TestBroker {
    pub server: Server,
    _dir: tempfile::TempDir,
}

/// Overrides for the test configuration, as `BROKER_<SECTION>_<KEY>` pairs.
pub fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

impl TestBroker {
    pub async fn start() -> TestBroker {
        TestBroker::start_with(&[], |_| Extensions::new()).await
    }

    pub async fn start_env(overrides: &[(&str, &str)]) -> TestBroker {
        TestBroker::start_with(overrides, |_| Extensions::new()).await
    }

    pub async fn start_with(
        overrides: &[(&str, &str)],
        extensions: impl FnOnce(&broker::hub::Hub) -> Extensions,
    ) -> TestBroker {
        let dir = tempfile::tempdir().expect("temp dir");
        let secret_file = dir.path().join("jwt-secret");
        let mut pairs = env(&[
            ("BROKER_SERVER_HTTP_ADDR", "127.0.0.1:0"),
            ("BROKER_SERVER_STOMP_TCP_ADDR", "127.0.0.1:0"),
            ("BROKER_AUTH_JWT_SECRET", "test-secret"),
            ("BROKER_CLUSTER_NODE_ID", "test-node"),
        ]);
        pairs.push((
            "BROKER_AUTH_GENERATED_SECRET_FILE".into(),
            secret_file.display().to_string(),
        ));
        pairs.push((
            "BROKER_STORAGE_URL".into(),
            format!("sqlite://{}", dir.path().join("broker.db").display()),
        ));
        pairs.extend(env(overrides));
        let config = Config::from_toml("test", "", pairs).expect("test config");
        let server = Server::start_with(config, extensions)
            .await
            .expect("broker starts");
        TestBroker { server, _dir: dir }
    }

    pub fn http_addr(&self) -> SocketAddr {
        self.server.http_addr()
    }

    pub fn stomp_addr(&self) -> SocketAddr {
        self.server
            .stomp_addr()
            .expect("STOMP/TCP enabled in tests")
    }

    pub fn token(&self, sub: &str) -> String {
        self.token_with(sub, &[Role::User], Duration::from_secs(3600))
    }

    pub fn system_token(&self, sub: &str) -> String {
        self.token_with(sub, &[Role::System], Duration::from_secs(3600))
    }

    pub fn token_with(&self, sub: &str, roles: &[Role], ttl: Duration) -> String {
        self.server.auth().mint(sub, roles, ttl).expect("mint")
    }

    /// A WebSocket that has not sent CONNECT yet.
    pub async fn ws_raw(&self) -> Client {
        Client::websocket(self.http_addr(), None, &["v12.stomp"]).await
    }

    /// A WebSocket session connected as `sub` (role user).
    pub async fn ws(&self, sub: &str) -> Client {
        let token = self.token(sub);
        let mut client = self.ws_raw().await;
        client.connect(&token).await;
        client
    }

    /// A TCP connection that has not sent CONNECT yet.
    pub async fn tcp_raw(&self) -> Client {
        Client::tcp(self.stomp_addr()).await
    }

    /// A TCP session connected with `token`.
    pub async fn tcp(&self, token: &str) -> Client {
        let mut client = self.tcp_raw().await;
        client.connect(token).await;
        client
    }

    /// GET a path and return status and body.
    pub async fn get(&self, path: &str) -> (u16, String) {
        http_get(self.http_addr(), path).await
    }
}

/// A minimal HTTP/1.1 GET over a raw socket.
pub async fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut response = Vec::new();
    tokio::time::timeout(WAIT, stream.read_to_end(&mut response))
        .await
        .expect("response in time")
        .expect("read");
    let text = String::from_utf8_lossy(&response).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

enum Transport {
    Ws(Box<WebSocketStream<TcpStream>>),
    Tcp(TcpStream),
}

/// What the client received.
#[derive(Debug)]
pub enum Received {
    Frame(Frame),
    /// The connection closed.
    Closed,
}

/// A STOMP test client.
pub struct Client {
    transport: Transport,
    decoder: Decoder,
    buf: BytesMut,
    version: Version,
    /// The subprotocol the server chose, for WebSocket clients.
    pub subprotocol: Option<String>,
    /// Every WebSocket message kind received: true for text.
    pub text_messages: Vec<bool>,
    pub heartbeats: usize,
}

impl Client {
    pub async fn websocket(addr: SocketAddr, query: Option<&str>, protocols: &[&str]) -> Client {
        let url = match query {
            Some(q) => format!("ws://{addr}/ws/im?{q}"),
            None => format!("ws://{addr}/ws/im"),
        };
        let mut request = url.into_client_request().expect("request");
        if !protocols.is_empty() {
            request.headers_mut().insert(
                "Sec-WebSocket-Protocol",
                HeaderValue::from_str(&protocols.join(", ")).expect("header"),
            );
        }
        let stream = TcpStream::connect(addr).await.expect("tcp connect");
        let (socket, response) = tokio_tungstenite::client_async(request, stream)
            .await
            .expect("websocket handshake");
        let subprotocol = response
            .headers()
            .get("Sec-WebSocket-Protocol")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        Client::new(Transport::Ws(Box::new(socket)), subprotocol)
    }

    pub async fn tcp(addr: SocketAddr) -> Client {
        let stream = TcpStream::connect(addr).await.expect("tcp connect");
        Client::new(Transport::Tcp(stream), None)
    }

    fn new(transport: Transport, subprotocol: Option<String>) -> Client {
        Client {
            transport,
            decoder: Decoder::new(Limits {
                max_frame_bytes: 16 * 1024 * 1024,
                max_body_bytes: 16 * 1024 * 1024,
                ..Limits::default()
            }),
            buf: BytesMut::new(),
            version: Version::V1_2,
            subprotocol,
            text_messages: Vec::new(),
            heartbeats: 0,
        }
    }

    /// Sets the version used to encode frames and decode headers (after CONNECTED).
    pub fn set_version(&mut self, version: Version) {
        self.version = version;
        self.decoder.set_version(version);
    }

    /// Sends raw bytes as one WebSocket text message (or onto the TCP stream).
    pub async fn send_raw(&mut self, bytes: &[u8]) {
        match &mut self.transport {
            Transport::Ws(ws) => {
                let message = match std::str::from_utf8(bytes) {
                    Ok(text) => Message::text(text.to_owned()),
                    Err(_) => Message::binary(Bytes::copy_from_slice(bytes)),
                };
                let _ = ws.send(message).await;
            }
            Transport::Tcp(tcp) => {
                let _ = tcp.write_all(bytes).await;
            }
        }
    }

    /// Sends raw bytes as one binary WebSocket message.
    pub async fn send_binary(&mut self, bytes: &[u8]) {
        if let Transport::Ws(ws) = &mut self.transport {
            let _ = ws
                .send(Message::binary(Bytes::copy_from_slice(bytes)))
                .await;
        }
    }

    pub async fn send(&mut self, frame: &Frame) {
        let mut buf = BytesMut::new();
        encode(frame, self.version, &mut buf);
        self.send_raw(&buf).await;
    }

    async fn fill(&mut self) -> bool {
        match &mut self.transport {
            Transport::Ws(ws) => loop {
                match ws.next().await {
                    Some(Ok(Message::Text(text))) => {
                        self.text_messages.push(true);
                        self.buf.extend_from_slice(text.as_bytes());
                        return true;
                    }
                    Some(Ok(Message::Binary(bytes))) => {
                        self.text_messages.push(false);
                        self.buf.extend_from_slice(&bytes);
                        return true;
                    }
                    Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return false,
                    Some(Ok(_)) => {}
                }
            },
            Transport::Tcp(tcp) => {
                let mut chunk = [0u8; 8192];
                match tcp.read(&mut chunk).await {
                    Ok(0) | Err(_) => false,
                    Ok(n) => {
                        self.buf.extend_from_slice(&chunk[..n]);
                        true
                    }
                }
            }
        }
    }

    /// The next frame or the close, skipping heart-beats; panics after [`WAIT`].
    pub async fn receive(&mut self) -> Received {
        tokio::time::timeout(WAIT, self.receive_inner())
            .await
            .expect("a frame or close within the wait")
    }

    async fn receive_inner(&mut self) -> Received {
        loop {
            match self.decoder.decode(&mut self.buf) {
                Ok(Some(Decoded::Frame(frame))) => return Received::Frame(frame),
                Ok(Some(Decoded::HeartBeat)) => {
                    self.heartbeats += 1;
                    continue;
                }
                Ok(None) => {}
                Err(error) => panic!("server sent invalid STOMP: {error}"),
            }
            if !self.fill().await {
                return Received::Closed;
            }
        }
    }

    /// Waits up to `wait` for a frame; `None` if none came (the connection stays usable only
    /// when nothing was partially read, which holds for whole-message WebSocket frames).
    pub async fn receive_within(&mut self, wait: Duration) -> Option<Received> {
        tokio::time::timeout(wait, self.receive_inner()).await.ok()
    }

    /// The next frame, which must exist.
    pub async fn frame(&mut self) -> Frame {
        match self.receive().await {
            Received::Frame(frame) => frame,
            Received::Closed => panic!("connection closed while a frame was expected"),
        }
    }

    /// The next frame, which must be `command`.
    pub async fn expect(&mut self, command: Command) -> Frame {
        let frame = self.frame().await;
        assert_eq!(
            frame.command,
            command,
            "expected {command}, got {frame:?} ({})",
            String::from_utf8_lossy(&frame.body)
        );
        frame
    }

    /// Expects an ERROR with this `message` header, then the close.
    pub async fn expect_error(&mut self, message: &str) -> Frame {
        let frame = self.expect(Command::Error).await;
        assert_eq!(
            frame.get("message"),
            Some(message),
            "ERROR body: {}",
            String::from_utf8_lossy(&frame.body)
        );
        self.expect_closed().await;
        frame
    }

    /// Expects the connection to close, allowing no further frame.
    pub async fn expect_closed(&mut self) {
        match self.receive().await {
            Received::Closed => {}
            Received::Frame(frame) => panic!("expected close, got {frame:?}"),
        }
    }

    /// Sends CONNECT with the token as `passcode` and expects CONNECTED.
    pub async fn connect(&mut self, token: &str) -> Frame {
        self.send(
            &Frame::new(Command::Connect)
                .header("accept-version", "1.2")
                .header("host", "localhost")
                .header("login", "x")
                .header("passcode", token),
        )
        .await;
        self.expect(Command::Connected).await
    }

    /// SUBSCRIBE with a receipt, waiting for it.
    pub async fn subscribe(&mut self, destination: &str, id: &str, ack: &str) {
        let receipt = format!("sub-{id}");
        self.send(
            &Frame::new(Command::Subscribe)
                .header("destination", destination)
                .header("id", id)
                .header("ack", ack)
                .header("receipt", receipt.as_str()),
        )
        .await;
        let frame = self.expect(Command::Receipt).await;
        assert_eq!(frame.get("receipt-id"), Some(receipt.as_str()));
    }

    /// SEND with a receipt, waiting for it.
    pub async fn send_with_receipt(&mut self, destination: &str, body: &str, receipt: &str) {
        self.send(
            &Frame::new(Command::Send)
                .header("destination", destination)
                .header("receipt", receipt)
                .body(body.to_owned()),
        )
        .await;
        let frame = self.expect(Command::Receipt).await;
        assert_eq!(frame.get("receipt-id"), Some(receipt));
    }

    /// SEND without a receipt.
    pub async fn publish(&mut self, destination: &str, body: &str) {
        self.send(
            &Frame::new(Command::Send)
                .header("destination", destination)
                .body(body.to_owned()),
        )
        .await;
    }

    /// The next MESSAGE, with its body as text.
    pub async fn message(&mut self) -> (Frame, String) {
        let frame = self.expect(Command::Message).await;
        let body = String::from_utf8_lossy(&frame.body).into_owned();
        (frame, body)
    }

    /// Asserts that no frame arrives within `wait`.
    pub async fn expect_nothing(&mut self, wait: Duration) {
        if let Some(received) = self.receive_within(wait).await {
            panic!("expected nothing, got {received:?}");
        }
    }
}

//! Test harness: a broker started in-process on port 0, and a small STOMP client built on
//! `stomp-codec` that speaks over a real WebSocket or TCP socket.

#![allow(dead_code)]

pub mod cluster;
pub mod db;
pub mod files;
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
        TestBroker::start_keyed(overrides, Some("test-secret"), None, extensions).await
    }

    /// A broker that verifies tokens with the secret generated in (or read from) `secret_file`,
    /// as `broker token` does when no `auth.jwt_secret` is configured.
    pub async fn start_with_secret_file(
        secret_file: &std::path::Path,
        overrides: &[(&str, &str)],
    ) -> TestBroker {
        TestBroker::start_keyed(overrides, None, Some(secret_file), |_| Extensions::new()).await
    }

    async fn start_keyed(
        overrides: &[(&str, &str)],
        jwt_secret: Option<&str>,
        secret_file: Option<&std::path::Path>,
        extensions: impl FnOnce(&broker::hub::Hub) -> Extensions,
    ) -> TestBroker {
        let dir = tempfile::tempdir().expect("temp dir");
        let secret_file = secret_file.map_or_else(|| dir.path().join("jwt-secret"), Into::into);
        let mut pairs = env(&[
            ("BROKER_SERVER_HTTP_ADDR", "127.0.0.1:0"),
            ("BROKER_SERVER_STOMP_TCP_ADDR", "127.0.0.1:0"),
            ("BROKER_CLUSTER_NODE_ID", "test-node"),
        ]);
        if let Some(secret) = jwt_secret {
            pairs.push(("BROKER_AUTH_JWT_SECRET".into(), secret.into()));
        }
        pairs.push((
            "BROKER_AUTH_GENERATED_SECRET_FILE".into(),
            secret_file.display().to_string(),
        ));
        pairs.push((
            "BROKER_STORAGE_URL".into(),
            format!("sqlite://{}", dir.path().join("broker.db").display()),
        ));
        // Not the working tree's web/dist: what `/` answers must not depend on a local build.
        pairs.push((
            "BROKER_SERVER_WEB_DIR".into(),
            dir.path().join("web").display().to_string(),
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
    /// Every WebSocket message received, as it came.
    pub raw_messages: Vec<Bytes>,
    /// The close code of the WebSocket close frame, when one came.
    pub close_code: Option<u16>,
    pub heartbeats: usize,
    /// Frames read ahead (MESSAGEs that came before an awaited RECEIPT), returned first.
    stash: std::collections::VecDeque<Frame>,
}

impl Client {
    pub async fn websocket(addr: SocketAddr, query: Option<&str>, protocols: &[&str]) -> Client {
        let stream = TcpStream::connect(addr).await.expect("tcp connect");
        Client::websocket_over(stream, addr, query, protocols).await
    }

    /// A WebSocket whose TCP receive buffer is as small as the OS allows.
    pub async fn websocket_small_window(addr: SocketAddr) -> Client {
        let socket = tokio::net::TcpSocket::new_v4().expect("socket");
        socket.set_recv_buffer_size(4096).expect("SO_RCVBUF");
        let stream = socket.connect(addr).await.expect("tcp connect");
        Client::websocket_over(stream, addr, None, &["v12.stomp"]).await
    }

    async fn websocket_over(
        stream: TcpStream,
        addr: SocketAddr,
        query: Option<&str>,
        protocols: &[&str],
    ) -> Client {
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
            raw_messages: Vec::new(),
            close_code: None,
            heartbeats: 0,
            stash: std::collections::VecDeque::new(),
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

    /// Writes bytes straight to the socket under the WebSocket (or the TCP stream), bypassing
    /// WebSocket framing: to send part of a WebSocket frame.
    pub async fn send_socket_bytes(&mut self, bytes: &[u8]) {
        match &mut self.transport {
            Transport::Ws(ws) => {
                let _ = ws.get_mut().write_all(bytes).await;
            }
            Transport::Tcp(tcp) => {
                let _ = tcp.write_all(bytes).await;
            }
        }
    }

    /// Sends a WebSocket ping.
    pub async fn send_ws_ping(&mut self, payload: &[u8]) {
        if let Transport::Ws(ws) = &mut self.transport {
            let _ = ws
                .send(Message::Ping(Bytes::copy_from_slice(payload)))
                .await;
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
                        self.raw_messages
                            .push(Bytes::copy_from_slice(text.as_bytes()));
                        return true;
                    }
                    Some(Ok(Message::Binary(bytes))) => {
                        self.text_messages.push(false);
                        self.buf.extend_from_slice(&bytes);
                        self.raw_messages.push(bytes);
                        return true;
                    }
                    Some(Ok(Message::Close(frame))) => {
                        self.close_code = frame.map(|f| u16::from(f.code));
                        return false;
                    }
                    None | Some(Err(_)) => return false,
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
        if let Some(frame) = self.stash.pop_front() {
            return Received::Frame(frame);
        }
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

    /// SUBSCRIBE with a receipt, waiting for it. MESSAGEs that arrive before the receipt (a
    /// queue hands over what waited for a consumer at once) are kept for the next reads.
    pub async fn subscribe(&mut self, destination: &str, id: &str, ack: &str) {
        self.subscribe_with(destination, id, &[("ack", ack)]).await;
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

/// What a connection produced next, heart-beats included.
#[derive(Debug)]
pub enum Event {
    Frame(Frame),
    HeartBeat,
    Closed,
}

impl Event {
    /// The frame, which must be one.
    pub fn frame(self) -> Frame {
        match self {
            Event::Frame(frame) => frame,
            other => panic!("expected a frame, got {other:?}"),
        }
    }
}

impl TestBroker {
    /// The server, to shut it down, and the directory that must outlive it.
    pub fn into_parts(self) -> (Server, tempfile::TempDir) {
        (self.server, self._dir)
    }

    /// A WebSocket that has not sent CONNECT yet, opened with `?<query>` on the upgrade URL.
    pub async fn ws_query(&self, query: &str) -> Client {
        Client::websocket(self.http_addr(), Some(query), &["v12.stomp"]).await
    }

    /// A WebSocket session connected with `token`.
    pub async fn ws_token(&self, token: &str) -> Client {
        let mut client = self.ws_raw().await;
        client.connect(token).await;
        client
    }

    /// A WebSocket session connected as `sub` with role system.
    pub async fn ws_system(&self, sub: &str) -> Client {
        let token = self.system_token(sub);
        self.ws_token(&token).await
    }

    /// The text of `/metrics`.
    pub async fn metrics(&self) -> String {
        let (status, body) = self.get("/metrics").await;
        assert_eq!(status, 200, "/metrics answers 200");
        body
    }

    /// The value of one series of `/metrics` (0 when absent).
    pub async fn metric(&self, series: &str) -> f64 {
        metric_value(&self.metrics().await, series).unwrap_or(0.0)
    }
}

/// The value of the series `series` (name and labels exactly as rendered) in a Prometheus text.
pub fn metric_value(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .find_map(|line| {
            let (name, value) = line.rsplit_once(' ')?;
            (name == series).then(|| value.parse().ok()).flatten()
        })
}

/// Builds a CONNECT (or STOMP) frame from header pairs.
pub fn connect_frame(command: Command, headers: &[(&str, &str)]) -> Frame {
    headers
        .iter()
        .fold(Frame::new(command), |frame, (name, value)| {
            frame.header(*name, *value)
        })
}

/// Encodes frames back to back, as one buffer.
pub fn encode_all(frames: &[Frame], version: Version) -> BytesMut {
    let mut buf = BytesMut::new();
    for frame in frames {
        encode(frame, version, &mut buf);
    }
    buf
}

/// The JSON body of an application error MESSAGE (`event:error`).
pub fn app_error(frame: &Frame) -> serde_json::Value {
    assert_eq!(
        frame.command,
        Command::Message,
        "an error MESSAGE: {frame:?}"
    );
    assert_eq!(frame.get("event"), Some("error"), "event:error: {frame:?}");
    assert_eq!(frame.get("destination"), Some("/user/queue/errors"));
    serde_json::from_slice(&frame.body).expect("JSON error body")
}

impl Client {
    /// A TCP connection whose receive buffer is as small as the OS allows, so that a client that
    /// stops reading makes the broker's writes back up quickly.
    pub async fn tcp_small_window(addr: SocketAddr) -> Client {
        let socket = tokio::net::TcpSocket::new_v4().expect("socket");
        socket.set_recv_buffer_size(4096).expect("SO_RCVBUF");
        let stream = socket.connect(addr).await.expect("tcp connect");
        Client::new(Transport::Tcp(stream), None)
    }

    /// The next frame, heart-beat or close; panics after [`WAIT`].
    pub async fn next_event(&mut self) -> Event {
        tokio::time::timeout(WAIT, self.next_event_inner())
            .await
            .expect("a frame, heart-beat or close within the wait")
    }

    /// The next frame, heart-beat or close within `wait`; `None` when nothing came.
    pub async fn next_event_within(&mut self, wait: Duration) -> Option<Event> {
        tokio::time::timeout(wait, self.next_event_inner())
            .await
            .ok()
    }

    async fn next_event_inner(&mut self) -> Event {
        if let Some(frame) = self.stash.pop_front() {
            return Event::Frame(frame);
        }
        loop {
            match self.decoder.decode(&mut self.buf) {
                Ok(Some(Decoded::Frame(frame))) => return Event::Frame(frame),
                Ok(Some(Decoded::HeartBeat)) => {
                    self.heartbeats += 1;
                    return Event::HeartBeat;
                }
                Ok(None) => {}
                Err(error) => panic!("server sent invalid STOMP: {error}"),
            }
            if !self.fill().await {
                return Event::Closed;
            }
        }
    }

    /// Sends a CONNECT (or STOMP) frame with exactly these headers and returns the answer.
    pub async fn connect_with(&mut self, command: Command, headers: &[(&str, &str)]) -> Frame {
        self.send(&connect_frame(command, headers)).await;
        self.frame().await
    }

    /// Sends CONNECT with a token, asking for `heart-beat`, and expects CONNECTED.
    pub async fn connect_heartbeat(&mut self, token: &str, heart_beat: &str) -> Frame {
        let connected = self
            .connect_with(
                Command::Connect,
                &[
                    ("accept-version", "1.2"),
                    ("host", "localhost"),
                    ("passcode", token),
                    ("heart-beat", heart_beat),
                ],
            )
            .await;
        assert_eq!(connected.command, Command::Connected, "{connected:?}");
        connected
    }

    /// Sends a frame that carries `receipt:<id>` and expects that RECEIPT next.
    pub async fn request(&mut self, frame: Frame, receipt: &str) {
        self.send(&frame.header("receipt", receipt)).await;
        self.expect_receipt(receipt).await;
    }

    /// Expects a RECEIPT for `receipt` as the next frame.
    pub async fn expect_receipt(&mut self, receipt: &str) -> Frame {
        let frame = self.expect(Command::Receipt).await;
        assert_eq!(frame.get("receipt-id"), Some(receipt), "{frame:?}");
        frame
    }

    /// A round trip: a frame with a receipt that must be answered, proving the session is open.
    pub async fn ping(&mut self, receipt: &str) {
        // UNSUBSCRIBE of an unknown id has no effect but its receipt.
        self.request(
            Frame::new(Command::Unsubscribe).header("id", "no-such-subscription"),
            receipt,
        )
        .await;
    }

    /// SUBSCRIBE with extra headers, waiting for its receipt.
    pub async fn subscribe_with(&mut self, destination: &str, id: &str, extra: &[(&str, &str)]) {
        let receipt = format!("sub-{id}");
        let frame = extra.iter().fold(
            Frame::new(Command::Subscribe)
                .header("destination", destination)
                .header("id", id),
            |frame, (name, value)| frame.header(*name, *value),
        );
        self.send(&frame.header("receipt", receipt.as_str())).await;
        self.expect_receipt_after_messages(&receipt).await;
    }

    /// Waits for the RECEIPT of `receipt`, keeping the MESSAGEs that come before it for the
    /// next reads.
    pub async fn expect_receipt_after_messages(&mut self, receipt: &str) -> Frame {
        let mut ahead = Vec::new();
        let found = loop {
            let frame = self.frame().await;
            match frame.command {
                Command::Receipt if frame.get("receipt-id") == Some(receipt) => break frame,
                Command::Message => ahead.push(frame),
                _ => panic!("expected RECEIPT {receipt}, got {frame:?}"),
            }
        };
        self.stash.extend(ahead);
        found
    }

    /// ACK (or NACK) a delivery by its `ack` header, waiting for a receipt.
    pub async fn ack(&mut self, command: Command, message: &Frame, receipt: &str) {
        let id = message
            .get("ack")
            .expect("a client-ack MESSAGE has an ack header");
        self.request(Frame::new(command).header("id", id), receipt)
            .await;
    }

    /// The next `n` MESSAGE bodies.
    pub async fn bodies(&mut self, n: usize) -> Vec<String> {
        let mut bodies = Vec::with_capacity(n);
        for _ in 0..n {
            bodies.push(self.message().await.1);
        }
        bodies
    }

    /// Sends DISCONNECT with a receipt and waits for the receipt and the close.
    pub async fn disconnect(&mut self) {
        self.send(&Frame::new(Command::Disconnect).header("receipt", "bye"))
            .await;
        self.expect_receipt("bye").await;
        self.expect_closed().await;
    }
}

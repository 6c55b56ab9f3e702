//! A real broker for the body fuzz targets: started once per fuzzing process, in this process, on
//! loopback ports, with a SQLite database in a temporary directory and limits raised so that the
//! fuzzer reaches the handlers' validation instead of the rate limits. The targets talk to it
//! over real sockets, as clients do: STOMP over TCP for the `/app/*` handlers, HTTP/1.1 for the
//! REST API.
//!
//! A panic anywhere in the broker (a handler's task included, which tokio would otherwise
//! swallow) aborts the process, so that libFuzzer records the input.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::OnceLock;
use std::time::Duration;

use broker::auth::Role;
use broker::config::Config;
use broker::server::Server;
use bytes::{Bytes, BytesMut};
use stomp_codec::{Command, Decoded, Decoder, Frame, Limits, Version, encode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::runtime::Runtime;

/// How long an answer may take before the input counts as a hang.
pub const ANSWER_WITHIN: Duration = Duration::from_secs(10);

/// The running broker and what the targets need to address it.
pub struct Fixture {
    pub runtime: Runtime,
    pub http: SocketAddr,
    pub stomp: SocketAddr,
    /// Tokens: `alice` (user), `bob` (user), `ops` (system), `root` (admin).
    pub alice: String,
    pub bob: String,
    pub system: String,
    pub admin: String,
    /// A group owned by alice with bob as member.
    pub group: String,
    /// A message alice sent to bob.
    pub message: String,
    _server: Server,
    _dir: tempfile::TempDir,
}

static FIXTURE: OnceLock<Fixture> = OnceLock::new();

/// The broker, started on first use.
pub fn fixture() -> &'static Fixture {
    FIXTURE.get_or_init(start)
}

fn start() -> Fixture {
    std::panic::set_hook(Box::new(|info| {
        eprintln!("panic: {info}");
        std::process::abort();
    }));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let dir = tempfile::tempdir().expect("temp dir");
    let path = |name: &str| dir.path().join(name).display().to_string();
    let pairs: Vec<(String, String)> = [
        ("BROKER_SERVER_HTTP_ADDR", "127.0.0.1:0".to_owned()),
        ("BROKER_SERVER_STOMP_TCP_ADDR", "127.0.0.1:0".to_owned()),
        ("BROKER_CLUSTER_NODE_ID", "fuzz".to_owned()),
        ("BROKER_AUTH_JWT_SECRET", "fuzz-secret".to_owned()),
        ("BROKER_AUTH_GENERATED_SECRET_FILE", path("jwt-secret")),
        ("BROKER_STORAGE_URL", format!("sqlite://{}", path("broker.db"))),
        ("BROKER_FILES_DIR", path("files")),
        ("BROKER_SERVER_WEB_DIR", path("web")),
        ("BROKER_LIMITS_SEND_RATE", "1000000/1s".to_owned()),
        ("BROKER_LIMITS_STRANGER_RATE", "1000000/1s".to_owned()),
        ("BROKER_LIMITS_STRANGER_BEFORE_REPLY", "1000000".to_owned()),
        ("BROKER_MODERATION_BAN_THRESHOLD", "1000000000".to_owned()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .chain(extra_limits())
    .collect();
    let config = Config::from_toml("fuzz", "", pairs).expect("fuzz config");
    let server = runtime
        .block_on(Server::start(config))
        .expect("broker starts");
    let auth = server.auth().clone();
    let hour = Duration::from_secs(3600 * 24);
    let mint = |sub: &str, role: Role| auth.mint(sub, &[role], hour).expect("mint");
    let (http, stomp) = (server.http_addr(), server.stomp_addr().expect("stomp"));
    let alice = mint("alice", Role::User);
    let bob = mint("bob", Role::User);
    let (group, message) = runtime.block_on(async {
        let mut rest = Rest::new(http);
        let (status, body) = rest
            .call(
                "POST",
                "/api/v1/groups",
                &alice,
                "application/json",
                br#"{"name":"fuzz","memberIds":["bob"]}"#,
            )
            .await;
        assert_eq!(status, 201, "group: {body}");
        let group = json_field(&body, "id");
        let (status, body) = rest
            .call(
                "POST",
                "/api/v1/messages",
                &alice,
                "application/json",
                br#"{"to":"bob","clientMsgId":"seed","content":"hello"}"#,
            )
            .await;
        assert!(status == 201 || status == 200, "message: {body}");
        (group, json_field(&body, "id"))
    });
    Fixture {
        http,
        stomp,
        system: mint("ops", Role::System),
        admin: mint("root", Role::Admin),
        alice,
        bob,
        group,
        message,
        runtime,
        _server: server,
        _dir: dir,
    }
}

/// Rate limits that exist besides the send rate, raised like it. Keys the broker does not have
/// would be refused by the configuration, so only those in the shipped `broker.toml` are set.
fn extra_limits() -> Vec<(String, String)> {
    const DEFAULTS: &str = include_str!("../../../broker.toml");
    let mut pairs = Vec::new();
    let mut section = String::new();
    for line in DEFAULTS.lines() {
        let line = line.trim();
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = name.to_owned();
        } else if let Some((key, _)) = line.split_once('=') {
            let key = key.trim();
            if key.ends_with("_rate") && key != "send_rate" && key != "stranger_rate" {
                pairs.push((
                    format!("BROKER_{}_{}", section.to_uppercase(), key.to_uppercase()),
                    "1000000/1s".to_owned(),
                ));
            }
        }
    }
    pairs
}

/// A string field of a JSON object.
pub fn json_field(body: &str, name: &str) -> String {
    let value: serde_json::Value = serde_json::from_str(body).expect("JSON body");
    value[name].as_str().expect("string field").to_owned()
}

/// A keep-alive HTTP/1.1 connection.
pub struct Rest {
    addr: SocketAddr,
    stream: Option<TcpStream>,
}

impl Rest {
    pub fn new(addr: SocketAddr) -> Rest {
        Rest { addr, stream: None }
    }

    /// Sends one request and reads its response: status and body. Panics (a finding) when no
    /// answer comes in time.
    pub async fn call(
        &mut self,
        method: &str,
        path: &str,
        token: &str,
        content_type: &str,
        body: &[u8],
    ) -> (u16, String) {
        tokio::time::timeout(
            ANSWER_WITHIN,
            self.exchange(method, path, token, content_type, body),
        )
        .await
        .unwrap_or_else(|_| panic!("no answer to {method} {path} within {ANSWER_WITHIN:?}"))
    }

    async fn exchange(
        &mut self,
        method: &str,
        path: &str,
        token: &str,
        content_type: &str,
        body: &[u8],
    ) -> (u16, String) {
        let mut request = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {token}\r\n\
             Content-Type: {content_type}\r\nContent-Length: {}\r\n\r\n",
            self.addr,
            body.len()
        )
        .into_bytes();
        request.extend_from_slice(body);
        // A connection the broker closed after its last answer is opened again once.
        for _ in 0..2 {
            let stream = match &mut self.stream {
                Some(stream) => stream,
                None => self
                    .stream
                    .insert(TcpStream::connect(self.addr).await.expect("connect")),
            };
            if stream.write_all(&request).await.is_ok()
                && let Some(answer) = read_response(stream).await
            {
                if answer.2 {
                    self.stream = None;
                }
                return (answer.0, answer.1);
            }
            self.stream = None;
        }
        panic!("{method} {path}: the connection closed without an answer");
    }
}

/// Status, body and whether the server closes the connection; None when it closed first.
async fn read_response(stream: &mut TcpStream) -> Option<(u16, String, bool)> {
    let mut buf = Vec::new();
    let head_end = loop {
        if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        let mut chunk = [0u8; 4096];
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
    let status = head.split_whitespace().nth(1)?.parse().ok()?;
    let header = |name: &str| {
        head.lines()
            .find_map(|l| l.strip_prefix(name).map(|v| v.trim().to_owned()))
    };
    let length: usize = header("content-length:")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let close = header("connection:").is_some_and(|v| v == "close");
    while buf.len() < head_end + length {
        let mut chunk = [0u8; 4096];
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let body = String::from_utf8_lossy(&buf[head_end..head_end + length]).into_owned();
    Some((status, body, close))
}

/// A STOMP 1.2 session over TCP, subscribed to its `/user/queue/errors`.
pub struct Stomp {
    stream: TcpStream,
    decoder: Decoder,
    buf: BytesMut,
    next_receipt: u64,
}

/// How a SEND ended.
#[derive(Debug)]
pub enum Outcome {
    /// RECEIPT: the handler accepted it.
    Done,
    /// An application error on `/user/queue/errors`, with its JSON body.
    Refused(String),
}

impl Stomp {
    pub async fn connect(addr: SocketAddr, token: &str) -> Stomp {
        let stream = TcpStream::connect(addr).await.expect("connect");
        let mut session = Stomp {
            stream,
            decoder: Decoder::new(Limits::default()),
            buf: BytesMut::new(),
            next_receipt: 0,
        };
        session
            .write(
                Frame::new(Command::Connect)
                    .header("accept-version", "1.2")
                    .header("host", "fuzz")
                    .header("heart-beat", "0,0")
                    .header("Authorization", format!("Bearer {token}")),
            )
            .await;
        let connected = session.next_frame().await;
        assert_eq!(connected.command, Command::Connected, "{connected:?}");
        session
            .write(
                Frame::new(Command::Subscribe)
                    .header("id", "errors")
                    .header("destination", "/user/queue/errors"),
            )
            .await;
        session
    }

    async fn write(&mut self, frame: Frame) {
        let mut out = BytesMut::new();
        encode(&frame, Version::V1_2, &mut out);
        self.stream.write_all(&out).await.expect("write frame");
    }

    async fn next_frame(&mut self) -> Frame {
        tokio::time::timeout(ANSWER_WITHIN, async {
            loop {
                match self.decoder.decode(&mut self.buf) {
                    Ok(Some(Decoded::Frame(frame))) => return frame,
                    Ok(Some(Decoded::HeartBeat)) => continue,
                    Ok(None) => {}
                    Err(error) => panic!("the broker sent a malformed frame: {error}"),
                }
                let n = self.stream.read_buf(&mut self.buf).await.expect("read");
                assert!(n > 0, "the broker closed a session over an application body");
            }
        })
        .await
        .unwrap_or_else(|_| panic!("no frame within {ANSWER_WITHIN:?}"))
    }

    /// SENDs `body` to `destination` with a receipt and waits for the RECEIPT or the error
    /// naming it. An ERROR frame (the session closing) is a finding: a body is never a protocol
    /// error.
    pub async fn send(&mut self, destination: &str, body: &[u8]) -> Outcome {
        self.next_receipt += 1;
        let receipt = self.next_receipt.to_string();
        let mut frame = Frame::new(Command::Send)
            .header("destination", destination)
            .header("content-type", "application/json")
            .header("receipt", receipt.as_str());
        frame.body = Bytes::copy_from_slice(body);
        self.write(frame).await;
        loop {
            let frame = self.next_frame().await;
            match frame.command {
                Command::Receipt if frame.get("receipt-id") == Some(receipt.as_str()) => {
                    return Outcome::Done;
                }
                Command::Message if frame.get("subscription") == Some("errors") => {
                    let text = String::from_utf8_lossy(&frame.body).into_owned();
                    let value: serde_json::Value =
                        serde_json::from_str(&text).expect("error body is JSON");
                    if value["receiptId"].as_str() == Some(receipt.as_str()) {
                        return Outcome::Refused(text);
                    }
                }
                Command::Error => panic!(
                    "ERROR for a SEND to {destination}: {:?} {}",
                    frame.get("message"),
                    String::from_utf8_lossy(&frame.body)
                ),
                _ => {}
            }
        }
    }
}

/// Checks an application error body: JSON with a known code, and never `INTERNAL` (bad input
/// must get a clear error, not a server fault).
pub fn check_error_body(context: &str, body: &str) {
    let value: serde_json::Value = serde_json::from_str(body)
        .unwrap_or_else(|e| panic!("{context}: error body is not JSON ({e}): {body}"));
    let code = value["code"]
        .as_str()
        .unwrap_or_else(|| panic!("{context}: error body without code: {body}"));
    assert!(
        value["message"].is_string(),
        "{context}: error without message: {body}"
    );
    assert_ne!(code, "INTERNAL", "{context}: internal error: {body}");
}

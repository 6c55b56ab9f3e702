//! Harness for IM tests: a whole broker (STOMP core, IM layer, REST API) on a given database,
//! and a small JSON-over-HTTP client.

use std::net::SocketAddr;

use broker::config::Config;
use broker::server::Server;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::{Client, TestBroker, WAIT, env};

impl TestBroker {
    /// The whole broker on the database at `url`.
    pub async fn start_im(url: &str, overrides: &[(&str, &str)]) -> TestBroker {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut pairs = env(&[
            ("BROKER_SERVER_HTTP_ADDR", "127.0.0.1:0"),
            ("BROKER_SERVER_STOMP_TCP_ADDR", "127.0.0.1:0"),
            ("BROKER_CLUSTER_NODE_ID", "test-node"),
            ("BROKER_AUTH_JWT_SECRET", "test-secret"),
        ]);
        pairs.push(("BROKER_STORAGE_URL".into(), url.to_owned()));
        pairs.push((
            "BROKER_SERVER_WEB_DIR".into(),
            dir.path().join("web").display().to_string(),
        ));
        // The shipped send and stranger limits would refuse most scripted conversations; tests
        // of those limits set them back through `overrides`, which come later and win.
        pairs.extend(env(&[
            ("BROKER_LIMITS_SEND_RATE", "100000/1s"),
            ("BROKER_LIMITS_STRANGER_BEFORE_REPLY", "100000"),
            ("BROKER_LIMITS_STRANGER_RATE", "100000/1s"),
        ]));
        pairs.extend(env(&RELAXED[3..]));
        pairs.extend(env(overrides));
        let config = Config::from_toml("test", "", pairs).expect("test config");
        let server = Server::start(config).await.expect("broker starts");
        TestBroker { server, _dir: dir }
    }

    /// A WebSocket session of `user` subscribed to its user queues (messages, events,
    /// notifications, errors) with receipts.
    pub async fn im_user(&self, user: &str) -> Client {
        let mut client = self.ws(user).await;
        for queue in ["messages", "events", "notifications", "errors"] {
            client
                .subscribe(&format!("/user/queue/{queue}"), queue, "auto")
                .await;
        }
        client
    }

    /// A REST call with `user`'s token.
    pub async fn api(
        &self,
        method: &str,
        path: &str,
        user: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let token = self.token(user);
        api_in_process(&self.server, method, path, Some(&token), body).await
    }

    /// A REST call with a system token.
    pub async fn api_system(
        &self,
        method: &str,
        path: &str,
        user: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let token = self.system_token(user);
        api_in_process(&self.server, method, path, Some(&token), body).await
    }
}

/// A REST call with a JSON body, in-process through the broker's routes (no socket: what is at
/// stake is the API's behaviour, not the connection's); returns the status and the JSON body
/// (`Null` when empty or not JSON). Tests of connection behaviour use [`http_raw`].
pub async fn api_in_process(
    server: &Server,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> (u16, Value) {
    use tower::ServiceExt;

    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let mut request = axum::http::Request::builder()
        .method(method)
        .uri(path)
        .header("host", server.http_addr().to_string())
        .header("content-type", "application/json")
        .header("content-length", body.len());
    if let Some(token) = token {
        request = request.header("authorization", format!("Bearer {token}"));
    }
    let request = request
        .body(axum::body::Body::from(body))
        .expect("a valid request");
    let call = server.http_routes().oneshot(request);
    let response = tokio::time::timeout(WAIT * 6, call)
        .await
        .expect("the API answers in time")
        .expect("routes are infallible");
    let status = response.status().as_u16();
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .expect("the answer's body");
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

/// One HTTP/1.1 request with a JSON body; returns the status and the JSON body (`Null` when
/// empty or not JSON).
pub async fn http_json(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> (u16, Value) {
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let bearer = token.map(|t| format!("Bearer {t}"));
    let mut headers = vec![("Content-Type", "application/json")];
    if let Some(bearer) = &bearer {
        headers.insert(0, ("Authorization", bearer.as_str()));
    }
    http_raw(addr, method, path, &headers, &body).await
}

fn dechunk(mut raw: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = raw.split_once("\r\n") {
        let Ok(size) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if size == 0 || rest.len() < size {
            break;
        }
        out.push_str(&rest[..size]);
        raw = rest[size..].trim_start_matches("\r\n");
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Helpers of the IM behaviour tests (tests/im_*.rs). Free functions rather than methods, so that
// they cannot collide with methods the core harness adds to `Client` or `TestBroker`.
// ---------------------------------------------------------------------------------------------

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde_json::json;
use stomp_codec::{Command, Frame};

/// Limits the IM behaviour tests do not exercise, raised so that a test may send freely. When the
/// broker does not know a key yet, the broker starts without these.
const RELAXED: [(&str, &str); 13] = [
    ("BROKER_LIMITS_SEND_RATE", "1000000/1s"),
    ("BROKER_LIMITS_STRANGER_RATE", "1000000/1s"),
    ("BROKER_LIMITS_STRANGER_BEFORE_REPLY", "1000000"),
    ("BROKER_LIMITS_TYPING_RATE", "1000000/1s"),
    ("BROKER_LIMITS_GROUP_CREATE_RATE", "1000000/1s"),
    ("BROKER_LIMITS_INVITE_RATE", "1000000/1s"),
    ("BROKER_LIMITS_REPORT_RATE", "1000000/1s"),
    ("BROKER_LIMITS_CONVERSATION_CREATE_RATE", "1000000/1s"),
    ("BROKER_LIMITS_MEMBER_UPDATE_RATE", "1000000/1s"),
    ("BROKER_LIMITS_EDIT_RATE", "1000000/1s"),
    ("BROKER_LIMITS_REACTION_RATE", "1000000/1s"),
    ("BROKER_LIMITS_PIN_RATE", "1000000/1s"),
    ("BROKER_LIMITS_REPLAY_RATE", "1000000/1s"),
];

/// The whole broker on the database at `url` with `overrides`, send-rate limits raised.
pub async fn broker(url: &str, overrides: &[(&str, &str)]) -> TestBroker {
    let dir = tempfile::tempdir().expect("temp dir");
    let base = env(&[
        ("BROKER_SERVER_HTTP_ADDR", "127.0.0.1:0"),
        ("BROKER_SERVER_STOMP_TCP_ADDR", "127.0.0.1:0"),
        ("BROKER_CLUSTER_NODE_ID", "test-node"),
        ("BROKER_AUTH_JWT_SECRET", "test-secret"),
        ("BROKER_STORAGE_URL", url),
    ]);
    let files = env(&[(
        "BROKER_FILES_DIR",
        &dir.path().join("files").display().to_string(),
    )]);
    // The most complete configuration this broker accepts: keys it does not know are refused.
    let mut config = None;
    for (with_relaxed, with_files) in [(true, true), (true, false), (false, true), (false, false)] {
        let mut pairs = base.clone();
        if with_relaxed {
            pairs.extend(env(&RELAXED));
        }
        if with_files {
            pairs.extend(files.clone());
        }
        pairs.extend(env(overrides));
        if let Ok(parsed) = Config::from_toml("test", "", pairs) {
            config = Some(parsed);
            break;
        }
    }
    let config = config.unwrap_or_else(|| {
        let mut pairs = base.clone();
        pairs.extend(env(overrides));
        Config::from_toml("test", "", pairs).expect("test config")
    });
    let server = Server::start(config).await.expect("broker starts");
    TestBroker { server, _dir: dir }
}

/// Shuts a broker down and waits until it is gone (its database stays).
pub async fn stop(broker: TestBroker) {
    let TestBroker { server, _dir } = broker;
    server.shutdown().await;
}

/// The JSON body of a frame.
pub fn body(frame: &Frame) -> Value {
    serde_json::from_slice(&frame.body).unwrap_or_else(|e| {
        panic!(
            "JSON body expected ({e}): {frame:?} {}",
            String::from_utf8_lossy(&frame.body)
        )
    })
}

/// SEND of a JSON body, with a `receipt` header when one is given.
pub async fn send_json(
    client: &mut Client,
    destination: &str,
    value: &Value,
    receipt: Option<&str>,
) {
    send_text(client, destination, &value.to_string(), receipt).await;
}

/// SEND of a raw text body, with a `receipt` header when one is given.
pub async fn send_text(client: &mut Client, destination: &str, text: &str, receipt: Option<&str>) {
    let mut frame = Frame::new(Command::Send)
        .header("destination", destination)
        .header("content-type", "application/json");
    if let Some(receipt) = receipt {
        frame = frame.header("receipt", receipt);
    }
    client.send(&frame.body(text.to_owned())).await;
}

/// `/app/private.send` of a text message with a receipt.
pub async fn private_send(
    client: &mut Client,
    to: &str,
    client_msg_id: &str,
    content: &str,
    receipt: &str,
) {
    send_json(
        client,
        "/app/private.send",
        &json!({"to": to, "clientMsgId": client_msg_id, "format": "text", "content": content}),
        Some(receipt),
    )
    .await;
}

/// `/app/group.send` of a text message with a receipt.
pub async fn group_send(
    client: &mut Client,
    group: &str,
    client_msg_id: &str,
    content: &str,
    receipt: &str,
) {
    send_json(
        client,
        "/app/group.send",
        &json!({"conversationId": group, "clientMsgId": client_msg_id, "format": "text", "content": content}),
        Some(receipt),
    )
    .await;
}

/// Expects the next frame to be the RECEIPT of `receipt`.
pub async fn receipt(client: &mut Client, receipt: &str) {
    let frame = client.frame().await;
    assert_eq!(
        (frame.command, frame.get("receipt-id")),
        (Command::Receipt, Some(receipt)),
        "expected RECEIPT {receipt}, got {frame:?} {}",
        String::from_utf8_lossy(&frame.body)
    );
}

/// Expects the next frame to be a MESSAGE with `event:<name>` on `destination`; returns its body.
pub async fn event_on(client: &mut Client, destination: &str, name: &str) -> Value {
    let frame = client.frame().await;
    assert_eq!(
        (frame.command, frame.get("event"), frame.get("destination")),
        (Command::Message, Some(name), Some(destination)),
        "expected event {name} on {destination}, got {frame:?} {}",
        String::from_utf8_lossy(&frame.body)
    );
    assert_eq!(frame.get("content-type"), Some("application/json"));
    assert!(frame.get("message-id").is_some() && frame.get("subscription").is_some());
    body(&frame)
}

/// Expects the next frame to be a MESSAGE with `event:<name>`; returns its body.
pub async fn event(client: &mut Client, name: &str) -> Value {
    let frame = client.frame().await;
    assert_eq!(
        (frame.command, frame.get("event")),
        (Command::Message, Some(name)),
        "expected event {name}, got {frame:?} {}",
        String::from_utf8_lossy(&frame.body)
    );
    body(&frame)
}

/// Expects an `event:error` on `/user/queue/errors` next; returns its body.
pub async fn error(client: &mut Client) -> Value {
    event_on(client, "/user/queue/errors", "error").await
}

/// Reads MESSAGEs until one with `event:<name>` comes, within the wait; returns its body and
/// the frames skipped on the way.
pub async fn wait_event(client: &mut Client, name: &str) -> (Value, Vec<Frame>) {
    let mut skipped = Vec::new();
    loop {
        let frame = client.frame().await;
        if frame.command == Command::Message && frame.get("event") == Some(name) {
            return (body(&frame), skipped);
        }
        skipped.push(frame);
    }
}

static SYNC: AtomicU64 = AtomicU64::new(1);

/// A round trip on the session: every frame queued to it before this call comes back, in order,
/// before the returned point. Returns those frames.
pub async fn drain(client: &mut Client) -> Vec<Frame> {
    let receipt = format!("sync-{}", SYNC.fetch_add(1, Ordering::Relaxed));
    // UNSUBSCRIBE of an unknown id has no effect but its receipt.
    client
        .send(
            &Frame::new(Command::Unsubscribe)
                .header("id", "no-such-subscription")
                .header("receipt", receipt.as_str()),
        )
        .await;
    let mut before = Vec::new();
    loop {
        let frame = client.frame().await;
        if frame.command == Command::Receipt && frame.get("receipt-id") == Some(receipt.as_str()) {
            return before;
        }
        before.push(frame);
    }
}

/// Asserts that nothing was queued to the session (see [`drain`]).
pub async fn quiet(client: &mut Client) {
    let frames = drain(client).await;
    assert!(
        frames.is_empty(),
        "expected no frame, got {:?}",
        frames
            .iter()
            .map(|f| (
                f.command,
                f.get("event").map(str::to_owned),
                String::from_utf8_lossy(&f.body).into_owned()
            ))
            .collect::<Vec<_>>()
    );
}

/// A history page of `conversation` as `user` sees it (`query` like `?limit=5`).
pub async fn history(
    broker: &TestBroker,
    user: &str,
    conversation: &str,
    query: &str,
) -> Vec<Value> {
    let (status, page) = broker
        .api(
            "GET",
            &format!("/api/v1/conversations/{conversation}/messages{query}"),
            user,
            None,
        )
        .await;
    assert_eq!(status, 200, "history of {conversation} for {user}: {page}");
    page["items"].as_array().cloned().expect("items")
}

/// The contents of a history page in seq order, its seqs checked to be gapless from 1.
pub fn contents_in_seq_order(mut items: Vec<Value>) -> Vec<String> {
    items.sort_by_key(|m| m["seq"].as_i64());
    let seqs = seqs(&items);
    assert_eq!(seqs, (1..=seqs.len() as i64).collect::<Vec<_>>(), "gapless");
    items
        .iter()
        .map(|m| m["content"].as_str().unwrap_or_default().to_owned())
        .collect()
}

/// The seqs of a history page.
pub fn seqs(items: &[Value]) -> Vec<i64> {
    items
        .iter()
        .map(|m| m["seq"].as_i64().expect("seq"))
        .collect()
}

/// `user`'s unread count of `conversation`, as the conversation list shows it.
pub async fn unread_of(broker: &TestBroker, user: &str, conversation: &str) -> i64 {
    listed(broker, user, conversation).await.expect("listed")["unreadCount"]
        .as_i64()
        .expect("unreadCount")
}

/// The wall clock in milliseconds since the Unix epoch, as the broker stamps messages and
/// presence.
pub fn now_ms() -> i64 {
    i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock after 1970")
            .as_millis(),
    )
    .expect("milliseconds fit in i64")
}

/// The conversation list entry of `conversation` for `user`, if listed.
pub async fn listed(broker: &TestBroker, user: &str, conversation: &str) -> Option<Value> {
    let (status, list) = broker
        .api("GET", "/api/v1/conversations?limit=100", user, None)
        .await;
    assert_eq!(status, 200, "{list}");
    list["items"]
        .as_array()
        .expect("items")
        .iter()
        .find(|c| c["id"] == conversation)
        .cloned()
}

/// `GET /api/v1/unread` for `user`.
pub async fn unread(broker: &TestBroker, user: &str) -> Value {
    let (status, unread) = broker.api("GET", "/api/v1/unread", user, None).await;
    assert_eq!(status, 200, "{unread}");
    unread
}

/// Creates a group owned by `owner` with `members` over REST; returns its id.
pub async fn create_group(
    broker: &TestBroker,
    owner: &str,
    name: &str,
    members: &[&str],
) -> String {
    let (status, group) = broker
        .api(
            "POST",
            "/api/v1/groups",
            owner,
            Some(json!({"name": name, "memberIds": members})),
        )
        .await;
    assert_eq!(status, 201, "{group}");
    group["id"].as_str().expect("group id").to_owned()
}

/// Polls `check` until it returns `Some`, for at most the harness wait.
pub async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The message with this id in `user`'s latest history of `conversation`.
pub async fn stored(
    broker: &TestBroker,
    user: &str,
    conversation: &str,
    id: &str,
) -> Option<Value> {
    history(broker, user, conversation, "?limit=100")
        .await
        .into_iter()
        .find(|m| m["id"] == id)
}

/// Asserts that an error body is exactly `{code, message, ...}` with this code and no unknown
/// fields.
pub fn assert_error(body: &Value, code: &str) {
    assert_eq!(body["code"], code, "{body}");
    assert!(
        body["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{body}"
    );
    let object = body.as_object().expect("error object");
    for key in object.keys() {
        assert!(
            ["code", "message", "clientMsgId", "receiptId"].contains(&key.as_str()),
            "unexpected field {key} in {body}"
        );
    }
}

/// One HTTP/1.1 request with exactly these extra headers and this raw body; returns the status
/// and the JSON body (`Null` when empty or not JSON).
pub async fn http_raw(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, Value) {
    let extra: String = headers
        .iter()
        .map(|(name, value)| format!("{name}: {value}\r\n"))
        .collect();
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\n{extra}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let mut stream = TcpStream::connect(addr).await.expect("connect");
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
    let (head, raw_body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(raw_body)
    } else {
        raw_body.to_owned()
    };
    (status, serde_json::from_str(&body).unwrap_or(Value::Null))
}

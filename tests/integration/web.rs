//! The demo client's side of the broker: the dev token endpoint (contract section 2) and the
//! built client served at `/` from `server.web_dir`.

use crate::common;

use crate::common::TestBroker;
use crate::common::im::{http_json, http_raw};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn im_broker(overrides: &[(&str, &str)]) -> (TestBroker, common::db::TestDatabase) {
    let db = common::db::sqlite();
    let broker = TestBroker::start_im(&db.url, overrides).await;
    (broker, db)
}

async fn dev_token(broker: &TestBroker, body: Value) -> (u16, Value) {
    http_json(
        broker.http_addr(),
        "POST",
        "/api/v1/dev/token",
        None,
        Some(body),
    )
    .await
}

/// A GET returning status, the raw head (lower-cased) and the body.
async fn get_raw(broker: &TestBroker, path: &str) -> (u16, String, String) {
    let addr = broker.http_addr();
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut response = Vec::new();
    tokio::time::timeout(common::WAIT, stream.read_to_end(&mut response))
        .await
        .expect("response in time")
        .expect("read");
    let text = String::from_utf8_lossy(&response).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, head.to_ascii_lowercase(), body.to_owned())
}

#[tokio::test]
async fn dev_token_is_minted_when_dev_login_is_on_and_connects() {
    let (broker, _db) = im_broker(&[("BROKER_AUTH_DEV_LOGIN", "true")]).await;
    let (status, body) = dev_token(&broker, json!({"sub": "alice"})).await;
    assert_eq!(status, 200, "{body}");
    let token = body["token"].as_str().expect("token string");
    let identity = broker.server.auth().verify(token).expect("verifies");
    assert_eq!(identity.user_id, "alice");
    assert_eq!(identity.roles, vec![broker::auth::Role::User]);

    let mut client = broker.ws_raw().await;
    let connected = client.connect(token).await;
    assert_eq!(connected.get("user-name"), Some("alice"));

    // The token works on the REST API too.
    let (status, list) = http_json(
        broker.http_addr(),
        "GET",
        "/api/v1/conversations",
        Some(token),
        None,
    )
    .await;
    assert_eq!(status, 200, "{list}");
}

#[tokio::test]
async fn dev_token_carries_the_requested_roles() {
    let (broker, _db) = im_broker(&[("BROKER_AUTH_DEV_LOGIN", "true")]).await;
    let (status, body) =
        dev_token(&broker, json!({"sub": "ops", "roles": ["system", "admin"]})).await;
    assert_eq!(status, 200, "{body}");
    let identity = broker
        .server
        .auth()
        .verify(body["token"].as_str().unwrap())
        .unwrap();
    assert!(identity.has_role(broker::auth::Role::System));
    assert!(identity.has_role(broker::auth::Role::Admin));
    assert!(!identity.has_role(broker::auth::Role::User));
}

#[tokio::test]
async fn dev_token_is_404_when_dev_login_is_off() {
    let (broker, _db) = im_broker(&[]).await;
    let (status, body) = dev_token(&broker, json!({"sub": "alice"})).await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(body["code"], "NOT_FOUND");
    assert!(body.get("token").is_none());
}

#[tokio::test]
async fn dev_token_refuses_bad_input_with_invalid_argument() {
    let (broker, _db) = im_broker(&[("BROKER_AUTH_DEV_LOGIN", "true")]).await;
    for body in [
        json!({"sub": "bad_user"}),
        json!({"sub": ""}),
        json!({"sub": "a".repeat(65)}),
        json!({"sub": "has space"}),
        json!({"sub": "alice", "roles": ["root"]}),
        json!({"sub": 42}),
        json!({}),
    ] {
        let (status, answer) = dev_token(&broker, body.clone()).await;
        assert_eq!(status, 400, "{body} -> {answer}");
        assert_eq!(answer["code"], "INVALID_ARGUMENT", "{body} -> {answer}");
        assert!(answer["message"].as_str().is_some_and(|m| !m.is_empty()));
    }
    let (status, answer) = http_raw(
        broker.http_addr(),
        "POST",
        "/api/v1/dev/token",
        &[("Content-Type", "application/json")],
        "{not json",
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(answer["code"], "INVALID_ARGUMENT");
}

#[tokio::test]
async fn root_names_the_build_command_when_the_client_is_not_built() {
    let empty = tempfile::tempdir().unwrap();
    let dir = empty.path().display().to_string();
    let broker = TestBroker::start_env(&[("BROKER_SERVER_WEB_DIR", &dir)]).await;
    let (status, head, body) = get_raw(&broker, "/").await;
    assert_eq!(status, 200);
    assert!(head.contains("content-type: text/html"), "{head}");
    assert!(
        body.contains("npm --prefix web ci &amp;&amp; npm --prefix web run build"),
        "{body}"
    );
    let (status, _, _) = get_raw(&broker, "/assets/app.js").await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn root_serves_the_built_client_and_its_assets() {
    let built = tempfile::tempdir().unwrap();
    let index = "<!doctype html><title>chat</title><script src=\"/assets/app-AB12.js\"></script>";
    std::fs::write(built.path().join("index.html"), index).unwrap();
    std::fs::create_dir(built.path().join("assets")).unwrap();
    std::fs::write(built.path().join("assets/app-AB12.js"), "console.log(1);").unwrap();
    std::fs::write(built.path().join("assets/app-AB12.css"), "body{}").unwrap();
    std::fs::write(built.path().join("secret.txt"), "do not serve").unwrap();
    let dir = built.path().display().to_string();
    let broker = TestBroker::start_env(&[("BROKER_SERVER_WEB_DIR", &dir)]).await;

    let (status, head, body) = get_raw(&broker, "/").await;
    assert_eq!(status, 200);
    assert_eq!(body, index);
    assert!(head.contains("content-type: text/html"), "{head}");
    assert!(head.contains("cache-control: no-cache"), "{head}");

    let (status, head, body) = get_raw(&broker, "/assets/app-AB12.js").await;
    assert_eq!(status, 200);
    assert_eq!(body, "console.log(1);");
    assert!(head.contains("content-type: text/javascript"), "{head}");
    assert!(head.contains("immutable"), "{head}");
    let (status, head, _) = get_raw(&broker, "/assets/app-AB12.css").await;
    assert_eq!(status, 200);
    assert!(head.contains("content-type: text/css"), "{head}");

    for path in [
        "/assets/../secret.txt",
        "/assets/%2e%2e/secret.txt",
        "/assets/..%2fsecret.txt",
        "/assets/missing.js",
        "/secret.txt",
    ] {
        let (status, _, body) = get_raw(&broker, path).await;
        assert_eq!(status, 404, "{path}: {body}");
        assert!(!body.contains("do not serve"), "{path}");
    }
}

/// A raw `POST /api/v1/dev/token` with the given `Host` and `Content-Type` (each left out when
/// `None`); returns the status and the JSON body.
async fn dev_request(
    broker: &TestBroker,
    host: Option<&str>,
    content_type: Option<&str>,
    body: &str,
) -> (u16, Value) {
    let mut head = "POST /api/v1/dev/token HTTP/1.1\r\n".to_owned();
    if let Some(host) = host {
        head.push_str(&format!("Host: {host}\r\n"));
    }
    if let Some(content_type) = content_type {
        head.push_str(&format!("Content-Type: {content_type}\r\n"));
    }
    head.push_str(&format!(
        "Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    ));
    let mut stream = tokio::net::TcpStream::connect(broker.http_addr())
        .await
        .expect("connect");
    stream.write_all(head.as_bytes()).await.expect("write");
    let mut response = Vec::new();
    tokio::time::timeout(common::WAIT, stream.read_to_end(&mut response))
        .await
        .expect("response in time")
        .expect("read");
    let text = String::from_utf8_lossy(&response).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    (status, serde_json::from_str(body).unwrap_or(Value::Null))
}

const ALICE: &str = r#"{"sub":"alice"}"#;

#[tokio::test]
async fn dev_token_is_forbidden_unless_the_host_is_a_loopback_name() {
    let (broker, _db) = im_broker(&[("BROKER_AUTH_DEV_LOGIN", "true")]).await;
    let json = Some("application/json");
    let port = broker.http_addr().port();
    for host in [
        "evil.example".to_owned(),
        format!("evil.example:{port}"),
        format!("localhost.evil.example:{port}"),
        format!("127.0.0.1.nip.io:{port}"),
        format!("10.1.2.3:{port}"),
    ] {
        let (status, body) = dev_request(&broker, Some(&host), json, ALICE).await;
        assert_eq!(
            (status, body["code"].as_str()),
            (403, Some("FORBIDDEN")),
            "{host}: {body}"
        );
        assert!(body.get("token").is_none());
    }
    let (status, _) = dev_request(&broker, None, json, ALICE).await;
    assert_eq!(status, 403, "no Host at all");
    for host in [
        format!("localhost:{port}"),
        format!("LOCALHOST:{port}"),
        "localhost".to_owned(),
        format!("127.0.0.1:{port}"),
        format!("127.3.2.1:{port}"),
        format!("[::1]:{port}"),
    ] {
        let (status, body) = dev_request(&broker, Some(&host), json, ALICE).await;
        assert_eq!(status, 200, "{host}: {body}");
        assert!(body["token"].is_string(), "{host}");
    }
}

#[tokio::test]
async fn dev_token_needs_a_json_content_type() {
    let (broker, _db) = im_broker(&[("BROKER_AUTH_DEV_LOGIN", "true")]).await;
    let host = Some("localhost");
    for content_type in [
        None,
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
        Some("multipart/form-data; boundary=x"),
        Some("application/jsonp"),
    ] {
        let (status, body) = dev_request(&broker, host, content_type, ALICE).await;
        assert_eq!(
            (status, body["code"].as_str()),
            (400, Some("INVALID_ARGUMENT")),
            "{content_type:?}: {body}"
        );
        assert!(body.get("token").is_none());
    }
    for content_type in ["application/json; charset=utf-8", "Application/JSON"] {
        let (status, body) = dev_request(&broker, host, Some(content_type), ALICE).await;
        assert_eq!(status, 200, "{content_type}: {body}");
    }
}

#[tokio::test]
async fn dev_token_refuses_a_large_body_as_payload_too_large() {
    let (broker, _db) = im_broker(&[("BROKER_AUTH_DEV_LOGIN", "true")]).await;
    let big = format!(r#"{{"sub":"alice","pad":"{}"}}"#, "x".repeat(10_000));
    let (status, body) =
        dev_request(&broker, Some("localhost"), Some("application/json"), &big).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (413, Some("PAYLOAD_TOO_LARGE")),
        "{body}"
    );
}

#[tokio::test]
async fn dev_token_off_answers_404_without_reading_the_body() {
    let (broker, _db) = im_broker(&[]).await;
    // The head announces a body (under the JSON body limit) that never comes: an answer proves
    // that nothing waited for it.
    let head = "POST /api/v1/dev/token HTTP/1.1\r\nHost: localhost\r\n\
                Content-Type: application/json\r\nContent-Length: 60000\r\n\r\n{";
    let mut stream = tokio::net::TcpStream::connect(broker.http_addr())
        .await
        .expect("connect");
    stream.write_all(head.as_bytes()).await.expect("write");
    let mut response = vec![0u8; 4096];
    let mut read = 0;
    while !String::from_utf8_lossy(&response[..read]).contains("NOT_FOUND") {
        let n = tokio::time::timeout(common::WAIT, stream.read(&mut response[read..]))
            .await
            .expect("an answer without the body")
            .expect("read");
        assert!(n > 0, "closed without an answer");
        read += n;
    }
    let text = String::from_utf8_lossy(&response[..read]);
    assert!(text.starts_with("HTTP/1.1 404"), "{text}");
}

#[tokio::test]
async fn a_dev_token_is_refused_by_a_broker_without_dev_login() {
    let (dev, _dev_db) = im_broker(&[("BROKER_AUTH_DEV_LOGIN", "true")]).await;
    let (status, body) = dev_token(&dev, json!({"sub": "alice"})).await;
    assert_eq!(status, 200, "{body}");
    let token = body["token"].as_str().expect("token").to_owned();

    // Same secret, no dev login.
    let (plain, _plain_db) = im_broker(&[]).await;
    let mut client = plain.ws_raw().await;
    client
        .send(&common::connect_frame(
            stomp_codec::Command::Connect,
            &[("accept-version", "1.2"), ("passcode", &token)],
        ))
        .await;
    let error = client.expect_error("unauthorized").await;
    assert!(
        String::from_utf8_lossy(&error.body).contains("dev"),
        "{error:?}"
    );
    let (status, body) = http_json(
        plain.http_addr(),
        "GET",
        "/api/v1/unread",
        Some(&token),
        None,
    )
    .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (401, Some("UNAUTHORIZED")),
        "{body}"
    );
    // Its own tokens still work there.
    let mut alice = plain.ws("alice").await;
    alice.ping("ok").await;
}

/// The Content-Security-Policy header of an answer head (lower-cased).
fn policy_of(head: &str) -> &str {
    head.lines()
        .find_map(|line| line.strip_prefix("content-security-policy: "))
        .unwrap_or_else(|| panic!("no Content-Security-Policy in {head}"))
}

fn assert_client_policy(policy: &str, host: &str) {
    for directive in [
        "default-src 'self'".to_owned(),
        format!("connect-src 'self' ws://{host} wss://{host}"),
        "img-src 'self' blob: data:".to_owned(),
        "object-src 'none'".to_owned(),
        "base-uri 'none'".to_owned(),
        "frame-ancestors 'none'".to_owned(),
    ] {
        assert!(
            policy.split(';').any(|d| d.trim() == directive),
            "{directive} missing from {policy}"
        );
    }
}

#[tokio::test]
async fn the_built_client_is_served_with_a_content_security_policy() {
    let built = tempfile::tempdir().unwrap();
    std::fs::write(
        built.path().join("index.html"),
        "<!doctype html><title>chat</title>",
    )
    .unwrap();
    let dir = built.path().display().to_string();
    let broker = TestBroker::start_env(&[("BROKER_SERVER_WEB_DIR", &dir)]).await;
    let (status, head, _) = get_raw(&broker, "/").await;
    assert_eq!(status, 200);
    assert_client_policy(policy_of(&head), &broker.http_addr().to_string());
}

#[tokio::test]
async fn the_build_hint_page_is_served_with_a_content_security_policy() {
    let empty = tempfile::tempdir().unwrap();
    let dir = empty.path().display().to_string();
    let broker = TestBroker::start_env(&[("BROKER_SERVER_WEB_DIR", &dir)]).await;
    let (status, head, _) = get_raw(&broker, "/").await;
    assert_eq!(status, 200);
    assert_client_policy(policy_of(&head), &broker.http_addr().to_string());
}

#[tokio::test]
async fn a_host_header_cannot_write_into_the_content_security_policy() {
    let broker = TestBroker::start().await;
    let mut stream = tokio::net::TcpStream::connect(broker.http_addr())
        .await
        .unwrap();
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: x; script-src *\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut response = Vec::new();
    tokio::time::timeout(common::WAIT, stream.read_to_end(&mut response))
        .await
        .unwrap()
        .unwrap();
    let head = String::from_utf8_lossy(&response).to_ascii_lowercase();
    let policy = policy_of(&head);
    assert!(!policy.contains("script-src"), "{policy}");
    assert!(policy.contains("connect-src 'self';"), "{policy}");
}

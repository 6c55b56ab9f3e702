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
        // The shipped send and stranger limits would refuse most scripted conversations; tests
        // of those limits set them back through `overrides`, which come later and win.
        pairs.extend(env(&[
            ("BROKER_LIMITS_SEND_RATE", "100000/1s"),
            ("BROKER_LIMITS_STRANGER_BEFORE_REPLY", "100000"),
            ("BROKER_LIMITS_STRANGER_RATE", "100000/1s"),
        ]));
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
        http_json(self.http_addr(), method, path, Some(&token), body).await
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
        http_json(self.http_addr(), method, path, Some(&token), body).await
    }
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
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
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

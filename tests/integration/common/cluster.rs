//! Cluster harness: broker nodes as separate processes sharing PostgreSQL and RabbitMQ (and
//! Redis), each on its own port. The service URLs come from `BROKER_TEST_POSTGRES_URL`,
//! `BROKER_TEST_AMQP_URL` and `BROKER_TEST_REDIS_URL`, defaulting to the local services; a
//! missing service makes the tests fail, never pass.

use std::net::SocketAddr;
use std::process::Stdio;
use std::time::Duration;

use broker::auth::{Authenticator, Role};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// The secret every node of a test cluster verifies with.
pub const SECRET: &[u8] = b"cluster-test-secret";

/// A service URL from the environment, or the machine's local default.
pub fn service_url(variable: &str, default: &str) -> String {
    std::env::var(variable)
        .ok()
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| default.to_owned())
}

/// The AMQP URL of the test RabbitMQ.
pub fn amqp_url() -> String {
    service_url(
        "BROKER_TEST_AMQP_URL",
        "amqp://guest:guest@127.0.0.1:5672/%2f",
    )
}

/// The URL of the test Redis.
pub fn redis_url() -> String {
    service_url("BROKER_TEST_REDIS_URL", "redis://127.0.0.1:6379")
}

/// A fresh PostgreSQL database for one cluster.
pub async fn database() -> super::db::TestDatabase {
    let base = service_url(
        "BROKER_TEST_POSTGRES_URL",
        "postgres://postgres@127.0.0.1:5432/test",
    );
    super::db::postgres_at(&base).await
}

/// Mints a token valid on every node.
pub fn token(sub: &str, roles: &[Role]) -> String {
    Authenticator::hs256(SECRET)
        .mint(sub, roles, Duration::from_secs(3600))
        .expect("mint")
}

/// One broker node running as a child process.
pub struct Node {
    /// Its node id.
    pub id: String,
    /// Its HTTP address.
    pub addr: SocketAddr,
    child: Child,
}

impl Node {
    /// Starts a node on `database_url` in the cluster named by `cluster` (a per-test prefix of
    /// node ids, so that runs never share RabbitMQ queues).
    pub async fn start(
        cluster: &str,
        name: &str,
        database_url: &str,
        extra: &[(&str, &str)],
    ) -> Node {
        let services = [
            ("BROKER_RELAY_AMQP_URL", amqp_url()),
            ("BROKER_PRESENCE_REDIS_URL", redis_url()),
        ];
        Node::spawn(&format!("{cluster}-{name}"), database_url, &services, extra).await
    }

    /// Starts a single node (no RabbitMQ, no Redis) on `database_url`, as a process of its
    /// own so that a test can kill it.
    pub async fn start_alone(name: &str, database_url: &str, extra: &[(&str, &str)]) -> Node {
        Node::spawn(name, database_url, &[], extra).await
    }

    async fn spawn(
        id: &str,
        database_url: &str,
        services: &[(&str, String)],
        extra: &[(&str, &str)],
    ) -> Node {
        let id = id.to_owned();
        let mut command = Command::new(env!("CARGO_BIN_EXE_broker"));
        for (key, value) in services {
            command.env(key, value);
        }
        command
            .env("BROKER_SERVER_HTTP_ADDR", "127.0.0.1:0")
            .env("BROKER_CLUSTER_NODE_ID", &id)
            .env("BROKER_STORAGE_URL", database_url)
            .env(
                "BROKER_AUTH_JWT_SECRET",
                String::from_utf8_lossy(SECRET).into_owned(),
            )
            // The shipped send and stranger limits would refuse scripted conversations.
            .env("BROKER_LIMITS_SEND_RATE", "100000/1s")
            .env("BROKER_LIMITS_STRANGER_BEFORE_REPLY", "100000")
            .env("BROKER_LIMITS_STRANGER_RATE", "100000/1s")
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true);
        for (key, value) in extra {
            command.env(key, value);
        }
        // A node refuses to start while RabbitMQ is away, which one test brings about on
        // purpose (`cluster_faults`) while others start theirs: such a start is tried again.
        for _ in 0..10 {
            let mut child = command.spawn().expect("start broker node");
            let stdout = child.stdout.take().expect("stdout");
            let mut lines = BufReader::new(stdout).lines();
            let addr = tokio::time::timeout(Duration::from_secs(30), async {
                while let Ok(Some(line)) = lines.next_line().await {
                    if line.contains("listening for HTTP")
                        && let Some(addr) = line
                            .split_whitespace()
                            .find_map(|word| word.strip_prefix("addr="))
                    {
                        return addr.parse::<SocketAddr>().ok();
                    }
                }
                None
            })
            .await;
            match addr {
                Ok(Some(addr)) => {
                    // Keep draining the log so the node never blocks on a full pipe.
                    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
                    return Node { id, addr, child };
                }
                // The node exited before listening: start it again in a moment.
                Ok(None) => {
                    let _ = child.wait().await;
                    tokio::time::sleep(Duration::from_secs(2)).await;
                }
                Err(_) => break,
            }
        }
        panic!("node {id} did not report its address");
    }

    /// Kills the node at once (SIGKILL): no graceful shutdown.
    pub async fn kill(&mut self) {
        let _ = self.child.kill().await;
    }
}

/// Publishes `body` as JSON to the durable queue `queue` (declared here) with AMQP message id
/// `id`, and waits for RabbitMQ's confirm: what a backend does to send a notification through
/// `im.notifications`.
pub async fn publish_notification(
    channel: &lapin::Channel,
    queue: &str,
    id: &str,
    body: &serde_json::Value,
) {
    use lapin::BasicProperties;
    use lapin::options::{BasicPublishOptions, QueueDeclareOptions};
    use lapin::types::FieldTable;
    channel
        .queue_declare(
            queue.into(),
            QueueDeclareOptions {
                durable: true,
                ..QueueDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await
        .expect("declare the queue");
    channel
        .basic_publish(
            "".into(),
            queue.into(),
            BasicPublishOptions::default(),
            body.to_string().as_bytes(),
            BasicProperties::default()
                .with_content_type("application/json".into())
                .with_message_id(id.into()),
        )
        .await
        .expect("publish")
        .await
        .expect("confirm");
}

/// A fresh cluster name.
pub fn cluster_name() -> String {
    format!("t{:08x}", rand::random::<u32>())
}

impl super::Client {
    /// Sends DISCONNECT with a receipt and waits for the close.
    pub async fn disconnect_quietly(&mut self) {
        self.send(
            &stomp_codec::Frame::new(stomp_codec::Command::Disconnect).header("receipt", "bye"),
        )
        .await;
        while let super::Received::Frame(_) = self.receive().await {}
    }
}

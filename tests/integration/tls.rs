//! TLS on the broker's own listeners: `https://`, `wss://` and STOMP over TLS with certificates
//! made here (rcgen), and a certificate replaced on SIGHUP without dropping connections.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command as Process, Stdio};
use std::sync::Arc;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::common::{db, im};
use futures_util::{SinkExt, StreamExt};
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, Issuer, KeyPair};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use tokio_rustls::rustls::crypto::aws_lc_rs;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
use tokio_rustls::rustls::{ClientConfig, RootCertStore};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

type Ca = CertifiedIssuer<'static, KeyPair>;

fn authority() -> Ca {
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(DnType::CommonName, "broker test CA");
    CertifiedIssuer::self_signed(params, KeyPair::generate().expect("key")).expect("CA")
}

/// A certificate for `localhost` and 127.0.0.1 signed by `ca`, written as PEM files in `dir`
/// under `name`; returns its DER.
fn issue(ca: &Issuer<'_, KeyPair>, dir: &Path, name: &str) -> CertificateDer<'static> {
    let key = KeyPair::generate().expect("key");
    let mut params = CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
        .expect("params");
    params.distinguished_name.push(DnType::CommonName, name);
    let cert = params.signed_by(&key, ca).expect("certificate");
    std::fs::write(dir.join("cert.pem"), cert.pem()).expect("write cert");
    std::fs::write(dir.join("key.pem"), key.serialize_pem()).expect("write key");
    cert.der().clone()
}

fn connector(ca: &Ca, alpn: &[&[u8]]) -> TlsConnector {
    let mut roots = RootCertStore::empty();
    roots.add(ca.der().clone()).expect("root");
    let mut config = ClientConfig::builder_with_provider(Arc::new(aws_lc_rs::default_provider()))
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    TlsConnector::from(Arc::new(config))
}

async fn tls_connect(
    connector: &TlsConnector,
    addr: std::net::SocketAddr,
) -> std::io::Result<TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(addr).await?;
    let name = ServerName::try_from("localhost").expect("name");
    connector.connect(name, tcp).await
}

/// Writes a STOMP CONNECT with `token` and returns the first frame's command line.
async fn stomp_connect<S>(stream: &mut S, token: &str) -> String
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let connect = format!(
        "CONNECT\naccept-version:1.2\nhost:localhost\nAuthorization:Bearer {token}\nreceipt:c\n\n\0"
    );
    stream.write_all(connect.as_bytes()).await.expect("write");
    let mut received = Vec::new();
    let mut buf = [0u8; 1024];
    while !received.contains(&0) {
        let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf))
            .await
            .expect("an answer")
            .expect("read");
        assert!(n > 0, "closed: {}", String::from_utf8_lossy(&received));
        received.extend_from_slice(&buf[..n]);
    }
    String::from_utf8_lossy(&received)
        .lines()
        .next()
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test]
async fn https_wss_and_stomp_over_tls_are_served_with_the_configured_certificate() {
    let dir = tempfile::tempdir().expect("dir");
    let ca = authority();
    issue(&ca, dir.path(), "broker");
    let database = db::sqlite();
    let cert = dir.path().join("cert.pem").display().to_string();
    let key = dir.path().join("key.pem").display().to_string();
    let broker = im::broker(
        &database.url,
        &[
            ("BROKER_SERVER_TLS_CERT_FILE", &cert),
            ("BROKER_SERVER_TLS_KEY_FILE", &key),
        ],
    )
    .await;
    let token = broker.token("alice");

    // HTTPS, with ALPN http/1.1.
    let mut https = tls_connect(&connector(&ca, &[b"http/1.1"]), broker.http_addr())
        .await
        .expect("TLS to the HTTP listener");
    assert_eq!(https.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
    https
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .expect("request");
    let mut answer = String::new();
    https.read_to_string(&mut answer).await.ok();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");

    // wss://
    let tls = tls_connect(&connector(&ca, &[b"http/1.1"]), broker.http_addr())
        .await
        .expect("TLS");
    let mut request = "wss://localhost/ws/im"
        .into_client_request()
        .expect("request");
    request
        .headers_mut()
        .insert("Sec-WebSocket-Protocol", "v12.stomp".parse().unwrap());
    let (mut socket, _) = tokio_tungstenite::client_async(request, tls)
        .await
        .expect("WebSocket over TLS");
    let connect =
        format!("CONNECT\naccept-version:1.2\nhost:localhost\nAuthorization:Bearer {token}\n\n\0");
    socket
        .send(Message::Text(connect.into()))
        .await
        .expect("send");
    let frame = tokio::time::timeout(Duration::from_secs(5), socket.next())
        .await
        .expect("an answer")
        .expect("a frame")
        .expect("no error");
    assert!(
        frame.to_text().unwrap_or_default().starts_with("CONNECTED"),
        "{frame:?}"
    );

    // STOMP over TLS.
    let stomp = broker.stomp_addr();
    let mut tls = tls_connect(&connector(&ca, &[]), stomp)
        .await
        .expect("TLS to the STOMP listener");
    assert_eq!(stomp_connect(&mut tls, &token).await, "CONNECTED");

    // Plain STOMP on the TLS port gets no STOMP answer.
    let mut plain = TcpStream::connect(stomp).await.expect("tcp");
    plain
        .write_all(b"CONNECT\naccept-version:1.2\n\n\0")
        .await
        .expect("write");
    let mut buf = [0u8; 64];
    let read = tokio::time::timeout(Duration::from_secs(5), plain.read(&mut buf)).await;
    let answered = match read {
        Ok(Ok(n)) => &buf[..n],
        _ => &[][..],
    };
    assert!(!answered.starts_with(b"CONNECTED") && !answered.starts_with(b"ERROR"));
}

/// The broker binary with `env`, its stdout and stderr as lines.
struct Running {
    child: std::process::Child,
    lines: mpsc::Receiver<String>,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Running {
    fn start(dir: &Path, env: &[(&str, String)]) -> Running {
        let mut command = Process::new(env!("CARGO_BIN_EXE_broker"));
        command.current_dir(dir);
        for (name, _) in std::env::vars() {
            if name.starts_with("BROKER_") || name == "RUST_LOG" {
                command.env_remove(name);
            }
        }
        command
            .envs(env.iter().map(|(k, v)| (k, v)))
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = command.spawn().expect("spawn broker");
        let (tx, lines) = mpsc::channel();
        for stream in [
            Box::new(child.stdout.take().expect("stdout")) as Box<dyn std::io::Read + Send>,
            Box::new(child.stderr.take().expect("stderr")),
        ] {
            let tx = tx.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    if tx.send(line).is_err() {
                        return;
                    }
                }
            });
        }
        Running { child, lines }
    }

    /// Waits for a log line containing `text`; returns it.
    fn wait_for(&self, text: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = self
                .lines
                .recv_timeout(left)
                .unwrap_or_else(|_| panic!("no line with {text:?}"));
            if line.contains(text) {
                return line;
            }
        }
    }
}

fn logged_addr(line: &str) -> std::net::SocketAddr {
    let start = line.find("addr=").expect("addr=") + "addr=".len();
    line[start..]
        .split_whitespace()
        .next()
        .expect("address")
        .parse()
        .expect("socket address")
}

#[cfg(unix)]
#[tokio::test]
async fn a_new_certificate_is_taken_on_sighup_and_open_connections_stay() {
    let dir = tempfile::tempdir().expect("dir");
    let ca = authority();
    let first = issue(&ca, dir.path(), "first");
    let running = Running::start(
        dir.path(),
        &[
            ("BROKER_AUTH_JWT_SECRET", "tls-test-secret".to_owned()),
            ("BROKER_SERVER_HTTP_ADDR", "127.0.0.1:0".to_owned()),
            ("BROKER_SERVER_STOMP_TCP_ADDR", "127.0.0.1:0".to_owned()),
            ("BROKER_SERVER_TLS_CERT_FILE", "cert.pem".to_owned()),
            ("BROKER_SERVER_TLS_KEY_FILE", "key.pem".to_owned()),
            ("BROKER_CLUSTER_NODE_ID", "tls".to_owned()),
        ],
    );
    let stomp = logged_addr(&running.wait_for("listening for STOMP over TLS"));
    let token = broker::auth::Authenticator::hs256(b"tls-test-secret")
        .mint(
            "alice",
            &[broker::auth::Role::User],
            Duration::from_secs(600),
        )
        .expect("token");
    let connector = connector(&ca, &[]);
    let mut open = tls_connect(&connector, stomp).await.expect("TLS");
    assert_eq!(open.get_ref().1.peer_certificates().unwrap()[0], first);
    assert_eq!(stomp_connect(&mut open, &token).await, "CONNECTED");

    let second = issue(&ca, dir.path(), "second");
    let pid = running.child.id().to_string();
    let status = Process::new("kill")
        .args(["-HUP", &pid])
        .status()
        .expect("kill");
    assert!(status.success());
    running.wait_for("TLS certificate reloaded");

    // A client of its own: the first one would resume its TLS session, and with it the old
    // certificate.
    let fresh = tls_connect(&self::connector(&ca, &[]), stomp)
        .await
        .expect("TLS");
    assert_eq!(fresh.get_ref().1.peer_certificates().unwrap()[0], second);
    // The session opened before still answers.
    open.write_all(b"UNSUBSCRIBE\nid:none\nreceipt:still\n\n\0")
        .await
        .expect("write");
    let mut buf = [0u8; 256];
    let n = tokio::time::timeout(Duration::from_secs(5), open.read(&mut buf))
        .await
        .expect("an answer")
        .expect("read");
    assert!(
        String::from_utf8_lossy(&buf[..n]).contains("receipt-id:still"),
        "{}",
        String::from_utf8_lossy(&buf[..n])
    );
}

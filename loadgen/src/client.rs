//! A minimal STOMP 1.2 client over WebSocket: connect, send frames, read frames. Only what the
//! scenarios need; it speaks to any broker that follows the STOMP-over-WebSocket convention
//! (ours at `/ws/im`, RabbitMQ Web-STOMP at `/ws`).

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, anyhow, bail};
use bytes::{Bytes, BytesMut};
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use stomp_codec::{Command, Decoded, Decoder, Frame, Limits, Version, encode};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::Mutex;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};

type Ws = WebSocketStream<TcpStream>;
type Sink = SplitSink<Ws, Message>;

/// How a connection proves who it is.
#[derive(Clone, Debug)]
pub enum Auth {
    /// `login` / `passcode` headers as given (RabbitMQ: guest / guest).
    Login {
        /// The `login` header.
        login: String,
        /// The `passcode` header.
        passcode: String,
    },
    /// One JWT for every connection, sent as `passcode`.
    Token(String),
    /// A fresh HS256 JWT per connection, each for its own user `<prefix><n>`, so that the
    /// broker sees many users as in production rather than one user with thousands of sessions.
    Mint {
        /// The broker's `auth.jwt_secret`.
        secret: String,
        /// The `roles` claim.
        role: String,
        /// User ids are this prefix followed by the connection number.
        prefix: String,
    },
}

/// Where and how to connect; shared by every connection of a run.
#[derive(Debug)]
pub struct Target {
    url: String,
    addr: SocketAddr,
    auth: Auth,
    vhost: String,
    sources: Vec<IpAddr>,
    next_source: AtomicUsize,
    connect_timeout: Duration,
    heartbeat: Option<Duration>,
}

impl Target {
    /// Resolves `url` once, so that thousands of connections do not each look it up.
    /// With a `heartbeat`, every connection offers to send heart-beats at that interval and
    /// does, whatever its owner is doing.
    ///
    /// # Errors
    ///
    /// When the URL is not `ws://host:port/path` or the host does not resolve.
    pub async fn new(
        url: &str,
        auth: Auth,
        vhost: String,
        sources: Vec<IpAddr>,
        connect_timeout: Duration,
        heartbeat: Option<Duration>,
    ) -> anyhow::Result<Target> {
        let request = url
            .into_client_request()
            .with_context(|| format!("invalid url {url}"))?;
        let uri = request.uri();
        if uri.scheme_str() != Some("ws") {
            bail!("only ws:// URLs are supported, got {url}");
        }
        let host = uri.host().ok_or_else(|| anyhow!("no host in {url}"))?;
        let port = uri.port_u16().unwrap_or(80);
        let addr = tokio::net::lookup_host((host, port))
            .await
            .with_context(|| format!("cannot resolve {host}"))?
            .next()
            .ok_or_else(|| anyhow!("{host} resolves to nothing"))?;
        Ok(Target {
            url: url.to_owned(),
            addr,
            auth,
            vhost,
            sources,
            next_source: AtomicUsize::new(0),
            connect_timeout,
            heartbeat,
        })
    }

    /// Opens a WebSocket and a STOMP session on it; `number` names the user when tokens are
    /// minted per connection.
    ///
    /// # Errors
    ///
    /// When the TCP connect, the WebSocket handshake or CONNECT fails or times out.
    pub async fn connect(&self, number: usize) -> anyhow::Result<Connection> {
        tokio::time::timeout(self.connect_timeout, self.connect_inner(number))
            .await
            .map_err(|_| anyhow!("connect timed out after {:?}", self.connect_timeout))?
    }

    async fn connect_inner(&self, number: usize) -> anyhow::Result<Connection> {
        let socket = match self.addr {
            SocketAddr::V4(_) => TcpSocket::new_v4()?,
            SocketAddr::V6(_) => TcpSocket::new_v6()?,
        };
        if !self.sources.is_empty() {
            // One loopback source address has ~28k ephemeral ports; spreading connections over
            // several addresses lifts that ceiling.
            let index = self.next_source.fetch_add(1, Ordering::Relaxed) % self.sources.len();
            socket.bind(SocketAddr::new(self.sources[index], 0))?;
        }
        let stream = socket.connect(self.addr).await.context("tcp connect")?;
        stream.set_nodelay(true)?;
        let mut request = self.url.as_str().into_client_request()?;
        request.headers_mut().insert(
            "Sec-WebSocket-Protocol",
            HeaderValue::from_static("v12.stomp, v11.stomp, v10.stomp"),
        );
        // Small buffers: the idle scenario holds thousands of these in this process too. And
        // tungstenite zeroes up to this much of its buffer before every read: at one small
        // message per read, 16 KiB of it was the largest user-space cost of a subscriber.
        let config = WebSocketConfig::default().read_buffer_size(4 * 1024);
        let (ws, _response) =
            tokio_tungstenite::client_async_with_config(request, stream, Some(config))
                .await
                .context("websocket handshake")?;
        let (sink, stream) = ws.split();
        let mut connection = Connection {
            writer: Writer {
                sink: Arc::new(Mutex::new(sink)),
                scratch: BytesMut::new(),
            },
            reader: Reader::new(stream),
        };
        let (login, passcode) = self.credentials(number)?;
        let heartbeat_ms = self.heartbeat.map_or(0, |d| d.as_millis());
        let connect = Frame::new(Command::Connect)
            .header("accept-version", "1.2")
            .header("host", self.vhost.as_str())
            .header("login", login)
            .header("passcode", passcode)
            // We send beats; we ask for none, so an idle session costs the broker nothing.
            .header("heart-beat", format!("{heartbeat_ms},0"));
        connection.writer.send(&connect).await?;
        match connection.reader.next().await? {
            Some(frame) if frame.command == Command::Connected => {
                if let Some(every) = self.heartbeat {
                    // Brokers close sessions that are silent for too long (ours after twice
                    // the interval, RabbitMQ Web-STOMP after 60 s): beat at half the interval.
                    spawn_heartbeat(Arc::downgrade(&connection.writer.sink), every / 2);
                }
                Ok(connection)
            }
            Some(frame) => bail!("CONNECT refused: {}", describe(&frame)),
            None => bail!("connection closed before CONNECTED"),
        }
    }

    /// The broker's socket address (its HTTP API listens there too).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The `(login, passcode)` connection `number` presents; with minted tokens, its user id
    /// and JWT.
    ///
    /// # Errors
    ///
    /// When a token cannot be minted.
    pub fn credentials(&self, number: usize) -> anyhow::Result<(String, String)> {
        Ok(match &self.auth {
            Auth::Login { login, passcode } => (login.clone(), passcode.clone()),
            Auth::Token(token) => ("loadgen".to_owned(), token.clone()),
            Auth::Mint {
                secret,
                role,
                prefix,
            } => {
                let sub = format!("{prefix}{number}");
                let token = mint(secret, &sub, role)?;
                (sub, token)
            }
        })
    }
}

impl Target {
    /// A token for `sub` with `role`, for REST calls made in a role of their own (a system
    /// identity sending notifications): minted with the secret, or the one `--token` given.
    ///
    /// # Errors
    ///
    /// With `--login` credentials, which the REST API does not take, or when minting fails.
    pub fn token_as(&self, sub: &str, role: &str) -> anyhow::Result<String> {
        match &self.auth {
            Auth::Mint { secret, .. } => mint(secret, sub, role),
            Auth::Token(token) => Ok(token.clone()),
            Auth::Login { .. } => bail!("REST calls need --jwt-secret or --token"),
        }
    }
}

#[derive(serde::Serialize)]
struct Claims<'a> {
    sub: &'a str,
    exp: u64,
    roles: [&'a str; 1],
}

/// An HS256 token valid for a day, as `broker token` would mint it.
fn mint(secret: &str, sub: &str, role: &str) -> anyhow::Result<String> {
    let exp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
        + 86_400;
    let claims = Claims {
        sub,
        exp,
        roles: [role],
    };
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .context("minting a token")
}

/// Sends a heart-beat EOL every `every` until the connection is dropped or fails.
fn spawn_heartbeat(sink: Weak<Mutex<Sink>>, every: Duration) {
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        loop {
            ticks.tick().await;
            let Some(sink) = sink.upgrade() else {
                return;
            };
            let mut sink = sink.lock().await;
            if sink.send(Message::text("\n")).await.is_err() {
                return;
            }
        }
    });
}

/// A one-line description of an ERROR (or unexpected) frame.
pub fn describe(frame: &Frame) -> String {
    let message = frame.get("message").unwrap_or("");
    let body = String::from_utf8_lossy(&frame.body);
    format!("{} {message}: {}", frame.command, body.trim())
}

/// An open STOMP session.
pub struct Connection {
    /// The sending half.
    pub writer: Writer,
    /// The receiving half.
    pub reader: Reader,
}

impl Connection {
    /// Sends SUBSCRIBE with a receipt and waits for the RECEIPT, so that the caller knows the
    /// subscription is in place before anything is published.
    ///
    /// # Errors
    ///
    /// When the broker answers anything but the RECEIPT, or closes.
    pub async fn subscribe(&mut self, destination: &str, id: &str) -> anyhow::Result<()> {
        let subscribe = Frame::new(Command::Subscribe)
            .header("id", id)
            .header("destination", destination)
            .header("ack", "auto")
            .header("receipt", "sub");
        self.writer.send(&subscribe).await?;
        loop {
            match self.reader.next().await? {
                Some(frame) if frame.command == Command::Receipt => return Ok(()),
                // A queue may already hold messages; they arrive before or after the receipt.
                Some(frame) if frame.command == Command::Message => {}
                Some(frame) => bail!("SUBSCRIBE refused: {}", describe(&frame)),
                None => bail!("connection closed after SUBSCRIBE"),
            }
        }
    }

    /// Proves the session is still served: UNSUBSCRIBE `id` with a receipt, and the RECEIPT
    /// back. (Not DISCONNECT: RabbitMQ Web-STOMP closes the socket without sending its receipt.)
    ///
    /// # Errors
    ///
    /// When the RECEIPT does not come.
    pub async fn probe(&mut self, id: &str) -> anyhow::Result<()> {
        let frame = Frame::new(Command::Unsubscribe)
            .header("id", id)
            .header("receipt", "probe");
        self.writer.send(&frame).await?;
        loop {
            match self.reader.next().await? {
                Some(frame) if frame.command == Command::Receipt => return Ok(()),
                Some(frame) if frame.command == Command::Message => {}
                Some(frame) => bail!("UNSUBSCRIBE answered by {}", describe(&frame)),
                None => bail!("connection closed before the UNSUBSCRIBE receipt"),
            }
        }
    }
}

/// The sending half of a session. The socket is shared with the heart-beat task, which holds
/// it only weakly so that dropping the connection closes it.
pub struct Writer {
    sink: Arc<Mutex<Sink>>,
    scratch: BytesMut,
}

impl Writer {
    /// Queues a frame without flushing, so that a batch costs one write.
    ///
    /// # Errors
    ///
    /// When the socket fails.
    pub async fn feed(&mut self, frame: &Frame) -> anyhow::Result<()> {
        encode(frame, Version::V1_2, &mut self.scratch);
        let bytes = self.scratch.split().freeze();
        self.feed_bytes(bytes).await
    }

    /// Queues an already encoded frame without flushing.
    ///
    /// # Errors
    ///
    /// When the socket fails.
    pub async fn feed_bytes(&mut self, bytes: Bytes) -> anyhow::Result<()> {
        // Text messages, as browsers send: both brokers accept them, and our frames are UTF-8.
        let message = match Utf8Bytes::try_from(bytes.clone()) {
            Ok(text) => Message::Text(text),
            Err(_) => Message::Binary(bytes),
        };
        self.sink
            .lock()
            .await
            .feed(message)
            .await
            .context("websocket write")
    }

    /// Writes everything fed so far.
    ///
    /// # Errors
    ///
    /// When the socket fails.
    pub async fn flush(&mut self) -> anyhow::Result<()> {
        self.sink
            .lock()
            .await
            .flush()
            .await
            .context("websocket flush")
    }

    /// Sends one frame now.
    ///
    /// # Errors
    ///
    /// When the socket fails.
    pub async fn send(&mut self, frame: &Frame) -> anyhow::Result<()> {
        self.feed(frame).await?;
        self.flush().await
    }
}

/// The receiving half of a session.
pub struct Reader {
    stream: SplitStream<Ws>,
    decoder: Decoder,
    buf: BytesMut,
}

impl Reader {
    fn new(stream: SplitStream<Ws>) -> Reader {
        let mut decoder = Decoder::new(Limits {
            max_frame_bytes: 16 << 20,
            max_headers: 256,
            max_header_line_bytes: 64 * 1024,
            max_body_bytes: 16 << 20,
        });
        decoder.set_version(Version::V1_2);
        Reader {
            stream,
            decoder,
            buf: BytesMut::new(),
        }
    }

    /// The next frame; heart-beats are skipped. `None` when the peer closed.
    ///
    /// # Errors
    ///
    /// When the socket fails or the peer sends something that is not STOMP.
    pub async fn next(&mut self) -> anyhow::Result<Option<Frame>> {
        loop {
            while let Some(item) = self.decoder.decode(&mut self.buf)? {
                if let Decoded::Frame(frame) = item {
                    return Ok(Some(frame));
                }
            }
            match self.stream.next().await {
                None | Some(Ok(Message::Close(_))) => return Ok(None),
                Some(Ok(Message::Text(text))) => self.buf.extend_from_slice(text.as_bytes()),
                Some(Ok(Message::Binary(bytes))) => self.buf.extend_from_slice(&bytes),
                Some(Ok(_)) => {}
                Some(Err(error)) => return Err(error).context("websocket read"),
            }
        }
    }
}

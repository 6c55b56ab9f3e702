//! loadgen's command line: the options every scenario shares ([`Common`]), the flow options of
//! the message scenarios, and one subcommand per scenario. Parsing only; `main.rs` runs them.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand};

use crate::load::Load;
use crate::{im, report};

#[derive(Parser)]
#[command(
    name = "loadgen",
    version,
    about = "Load generator for STOMP-over-WebSocket brokers"
)]
pub struct Cli {
    #[command(flatten)]
    pub common: Common,
    #[command(subcommand)]
    pub scenario: Scenario,
}

#[derive(Args)]
pub struct Common {
    /// The broker's WebSocket endpoint.
    #[arg(
        long,
        global = true,
        env = "LOADGEN_URL",
        default_value = "ws://127.0.0.1:8080/ws/im"
    )]
    pub url: String,
    /// Where publishers (and the senders of `im` and `group`) connect, when not to `--url`
    /// (everyone else uses `--url`): another node of a cluster, so that every message crosses
    /// the relay.
    #[arg(long, global = true, env = "LOADGEN_PUBLISH_URL")]
    pub publish_url: Option<String>,
    /// CONNECT `login` (RabbitMQ: guest).
    #[arg(long, global = true)]
    pub login: Option<String>,
    /// CONNECT `passcode` (RabbitMQ: guest).
    #[arg(long, global = true)]
    pub passcode: Option<String>,
    /// A JWT for every connection, sent as `passcode`.
    #[arg(long, global = true, env = "LOADGEN_TOKEN")]
    pub token: Option<String>,
    /// Mint an HS256 JWT per connection with this secret, each for its own user.
    #[arg(long, global = true, env = "LOADGEN_JWT_SECRET")]
    pub jwt_secret: Option<String>,
    /// The role of minted tokens.
    #[arg(long, global = true, default_value = "system")]
    pub jwt_role: String,
    /// Minted user ids are this prefix followed by the connection number.
    #[arg(long, global = true, default_value = "lg-")]
    pub user_prefix: String,
    /// The CONNECT `host` header; RabbitMQ reads it as the virtual host.
    #[arg(long, global = true, default_value = "/")]
    pub vhost: String,
    /// Local addresses to connect from, comma separated (e.g. 127.0.0.1,127.0.0.2), for more
    /// connections than one address has ephemeral ports.
    #[arg(long, global = true, value_delimiter = ',')]
    pub source_ips: Vec<IpAddr>,
    /// Connections opened at once.
    #[arg(long, global = true, default_value_t = 200)]
    pub connect_concurrency: usize,
    /// Time allowed for one connection's TCP connect, handshake and CONNECT.
    #[arg(long, global = true, default_value_t = 30.0)]
    pub connect_timeout: f64,
    /// Heart-beat interval offered in CONNECT, in ms; connections beat at half of it. 0 turns
    /// heart-beats off (RabbitMQ Web-STOMP then closes sessions silent for 60 s).
    #[arg(long, global = true, default_value_t = 10_000)]
    pub heartbeat_ms: u64,
    /// Worker threads of this process (it shares the machine with the broker).
    #[arg(long, global = true, default_value_t = 2)]
    pub threads: usize,
    /// The broker's process id: its CPU time is reported, and in `idle` its VmRSS before and
    /// after connecting (for RabbitMQ, the beam.smp process).
    #[arg(long, global = true)]
    pub broker_pid: Option<u32>,
    /// The broker's Prometheus metrics, read before and after the IM scenarios for the messages
    /// per group commit; default `/metrics` at --url's host and port.
    #[arg(long, global = true)]
    pub metrics_url: Option<String>,
    /// A name for the broker under test, copied into the output.
    #[arg(long, global = true, default_value = "")]
    pub label: String,
    /// Also write the result as JSON to this file (`-` for standard output).
    #[arg(long, global = true)]
    pub json: Option<PathBuf>,
}

#[derive(Args, Clone)]
pub struct Flow {
    /// Messages per second per publisher; 0 publishes as fast as `--window` allows.
    #[arg(long, default_value_t = 0.0)]
    pub rate: f64,
    /// Seconds of publishing.
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,
    /// Body size in bytes.
    #[arg(long, default_value_t = 100)]
    pub payload: usize,
    /// At rate 0, messages per publisher in flight (sent but not yet received by every
    /// subscriber).
    #[arg(long, default_value_t = 200)]
    pub window: u64,
    /// Ask for a RECEIPT every this many messages.
    #[arg(long, default_value_t = 50)]
    pub receipt_every: u64,
    /// After publishing, seconds to wait without progress for the last copies.
    #[arg(long, default_value_t = 5.0)]
    pub drain: f64,
}

impl Flow {
    pub fn load(&self) -> anyhow::Result<Load> {
        if !(self.rate >= 0.0 && self.rate.is_finite()) {
            bail!("--rate must be 0 or a positive number");
        }
        Ok(Load {
            rate: self.rate,
            duration: seconds(self.duration, "--duration")?,
            payload: self.payload,
            window: self.window.max(1),
            receipt_every: self.receipt_every.max(1),
            drain: seconds(self.drain, "--drain")?,
        })
    }
}

#[derive(Args, Clone)]
pub struct ImFlow {
    /// Messages per second over all senders (open loop); 0 sends as fast as `--window` allows.
    #[arg(long, default_value_t = 0.0)]
    pub rate: f64,
    /// Seconds of sending.
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,
    /// Characters of message content.
    #[arg(long, default_value_t = 100)]
    pub payload: usize,
    /// Closed loop: sends per sender in flight (see --close-on), at most.
    #[arg(long, default_value_t = 64)]
    pub window: u64,
    /// What takes a send out of the window: its RECEIPT (stored), or its delivery to the
    /// recipient's session (every member's, in a group).
    #[arg(long, value_enum, default_value_t = im::CloseOn::Receipt)]
    pub close_on: im::CloseOn,
    /// After sending, seconds to wait without progress for the last receipts and copies.
    #[arg(long, default_value_t = 5.0)]
    pub drain: f64,
    /// Afterwards, check in this PostgreSQL database that every RECEIPTed message is stored
    /// exactly once.
    #[arg(long)]
    pub verify_postgres: Option<String>,
}

impl ImFlow {
    pub fn load(&self) -> anyhow::Result<im::ImLoad> {
        if !(self.rate >= 0.0 && self.rate.is_finite()) {
            bail!("--rate must be 0 or a positive number");
        }
        Ok(im::ImLoad {
            rate: self.rate,
            duration: seconds(self.duration, "--duration")?,
            payload: self.payload,
            window: self.window.max(1),
            close_on: self.close_on,
            drain: seconds(self.drain, "--drain")?,
            verify_postgres: self.verify_postgres.clone(),
        })
    }
}

#[derive(Subcommand)]
pub enum Scenario {
    /// One publisher, N subscribers on one topic.
    Fanout {
        /// Subscribers.
        #[arg(long, default_value_t = 100)]
        subscribers: usize,
        /// Topic name (without /topic/); a fresh one per run by default.
        #[arg(long)]
        topic: Option<String>,
        #[command(flatten)]
        flow: Flow,
    },
    /// N publishers, each to its own destination with one subscriber.
    Pairs {
        /// Publisher-subscriber pairs.
        #[arg(long, default_value_t = 100)]
        pairs: usize,
        /// `topic` or `queue`.
        #[arg(long, default_value = "topic", value_parser = ["topic", "queue"])]
        kind: String,
        #[command(flatten)]
        flow: Flow,
    },
    /// N connected sessions, one SUBSCRIBE each, held idle.
    Idle {
        /// Sessions to open.
        #[arg(long, default_value_t = 1000)]
        connections: usize,
        /// Seconds to hold them once all are open.
        #[arg(long, default_value_t = 10.0)]
        hold: f64,
        /// Seconds to wait after the last SUBSCRIBE before reading the broker's memory.
        #[arg(long, default_value_t = 3.0)]
        settle: f64,
    },
    /// N senders sending private messages through `/app/private.send`, each to its own
    /// recipients (our broker only; needs --jwt-secret).
    Im {
        /// Senders (user pairs with one conversation: user 2i sends to user 2i+1).
        #[arg(long, default_value_t = 100)]
        pairs: usize,
        /// Recipients per sender, each its own conversation, sent to round-robin; every
        /// recipient is online.
        #[arg(long, default_value_t = 1)]
        conversations: usize,
        #[command(flatten)]
        flow: ImFlow,
    },
    /// One group created over REST, all members online, its owner sending (our broker only;
    /// needs --jwt-secret).
    Group {
        /// Members, the owner included.
        #[arg(long, default_value_t = 500)]
        members: usize,
        #[command(flatten)]
        flow: ImFlow,
    },
    /// Backend notifications: `POST /api/v1/notifications` (role `system`) to N recipients per
    /// call, K calls one after the other; M recipients online on `/user/queue/notifications`
    /// (our broker only; needs --jwt-secret).
    Notify {
        /// Recipients per call.
        #[arg(long, default_value_t = 5000)]
        users: usize,
        /// Calls made one after the other, each with a fresh clientMsgId.
        #[arg(long, default_value_t = 1)]
        calls: usize,
        /// Recipients connected and subscribed, spread evenly over the list; they count and
        /// time the pushes they get.
        #[arg(long, default_value_t = 0)]
        online: usize,
        /// Characters of content.
        #[arg(long, default_value_t = 100)]
        payload: usize,
        /// Seconds one call may take.
        #[arg(long, default_value_t = 600.0)]
        timeout: f64,
        /// After the calls, seconds to wait without progress for the last pushes.
        #[arg(long, default_value_t = 5.0)]
        drain: f64,
        /// The user id of the calls' minted token (role system).
        #[arg(long, default_value = "loadgen-system")]
        system_user: String,
        /// Afterwards, check in this PostgreSQL database that every recipient has each
        /// notification stored exactly once in its `system_<user>` conversation.
        #[arg(long)]
        verify_postgres: Option<String>,
    },
    /// No broker: writer threads send a timestamped message to each of N loopback TCP
    /// sockets per publication, reader threads poll the other ends; the kernel's own latency
    /// and CPU per delivery for a fan-out.
    Floor {
        /// Connected socket pairs.
        #[arg(long, default_value_t = 1000)]
        sockets: usize,
        /// Threads writing, each to its share of the sockets (blocking writes).
        #[arg(long, default_value_t = 2)]
        writers: usize,
        /// Threads reading, each polling its share of the sockets.
        #[arg(long, default_value_t = 2)]
        readers: usize,
        /// Publications per second.
        #[arg(long, default_value_t = 10.0)]
        rate: f64,
        /// Seconds of publishing.
        #[arg(long, default_value_t = 10.0)]
        duration: f64,
        /// Bytes per message (250: about a STOMP MESSAGE frame of the fanout scenario).
        #[arg(long, default_value_t = 250)]
        payload: usize,
    },
    /// Prints the markdown table of the JSON results that loadgen/run.sh wrote.
    Report {
        /// `NAME=DIR`: a column headed NAME from the results in DIR; repeat per broker.
        #[arg(long = "column", required = true, value_parser = report::parse_column)]
        columns: Vec<report::Column>,
    },
}

pub fn seconds(value: f64, name: &str) -> anyhow::Result<Duration> {
    Duration::try_from_secs_f64(value).with_context(|| format!("{name} must be a duration"))
}

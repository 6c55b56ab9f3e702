//! Counters and gauges exported at `/metrics` in the Prometheus text format.
//!
//! Handles are registered once, so that counting on the per-frame and per-delivery paths is an
//! atomic add rather than a registry lookup. Labels are bounded sets (commands, reasons), never
//! user input.

use std::sync::OnceLock;
use std::time::Instant;

use metrics::{
    Counter, Gauge, Histogram, counter, describe_counter, describe_gauge, describe_histogram,
    gauge, histogram,
};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use stomp_codec::Command;

use crate::app_error::ErrorCode;

/// Buckets of the latency histograms (`*_seconds`): 0.5 ms to 10 s.
const SECONDS_BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Buckets of the writer's batch sizes.
const BATCH_BUCKETS: [f64; 11] = [
    1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0, 2000.0,
];

/// The process-wide recorder. Several brokers in one process (tests) share it.
fn handle() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        // Histograms with buckets, not summaries: buckets add up across nodes, so alerts can
        // take a cluster-wide p99.
        let recorder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &SECONDS_BUCKETS)
            .and_then(|builder| {
                builder.set_buckets_for_metric(
                    Matcher::Full("broker_store_batch_messages".into()),
                    &BATCH_BUCKETS,
                )
            })
            .unwrap_or_default()
            .build_recorder();
        let handle = recorder.handle();
        // Fails only if another recorder was installed first; then ours just renders nothing.
        let _ = metrics::set_global_recorder(recorder);
        handle
    })
}

/// Renders every metric in the Prometheus text format, this process's `process_*` included.
pub fn render() -> String {
    let mut text = handle().render();
    text.push_str(&crate::os::process_metrics());
    text
}

/// Where a send came from: the `source` label of `broker_sends_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SendSource {
    /// A STOMP SEND (`/app/*`, a group topic, a notification to `/user/<id>/queue/notifications`).
    Stomp,
    /// `POST /api/v1/messages` or `POST /api/v1/notifications`.
    Rest,
    /// The RabbitMQ queue of notifications.
    Queue,
}

impl SendSource {
    const ALL: [SendSource; 3] = [SendSource::Stomp, SendSource::Rest, SendSource::Queue];

    fn as_str(self) -> &'static str {
        match self {
            SendSource::Stomp => "stomp",
            SendSource::Rest => "rest",
            SendSource::Queue => "queue",
        }
    }
}

/// Runs the exporter's periodic housekeeping (histogram buckets); call every few seconds.
pub fn upkeep() {
    handle().run_upkeep();
}

/// Why an ERROR frame was sent; the label values of `broker_stomp_errors_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorReason {
    /// The bytes were not valid STOMP.
    Malformed,
    /// A required header was missing or a header was invalid.
    BadHeader,
    /// A frame or part of one over a limit.
    TooLarge,
    /// A frame not allowed in the session's state.
    Unexpected,
    /// The token was missing, invalid or expired.
    Unauthorized,
    /// A destination the user may not use.
    Forbidden,
    /// The session's outbound queue overflowed.
    SlowConsumer,
    /// The peer went silent past the heart-beat deadline.
    HeartbeatTimeout,
    /// The broker is shutting down.
    Shutdown,
    /// A frame was not complete within `limits.frame_timeout_ms` of its first byte.
    FrameTimeout,
    /// The user already had `limits.max_sessions_per_user` sessions open.
    TooManySessions,
}

impl ErrorReason {
    const ALL: [ErrorReason; 11] = [
        ErrorReason::Malformed,
        ErrorReason::BadHeader,
        ErrorReason::TooLarge,
        ErrorReason::Unexpected,
        ErrorReason::Unauthorized,
        ErrorReason::Forbidden,
        ErrorReason::SlowConsumer,
        ErrorReason::HeartbeatTimeout,
        ErrorReason::Shutdown,
        ErrorReason::FrameTimeout,
        ErrorReason::TooManySessions,
    ];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorReason::Malformed => "malformed",
            ErrorReason::BadHeader => "bad_header",
            ErrorReason::TooLarge => "too_large",
            ErrorReason::Unexpected => "unexpected",
            ErrorReason::Unauthorized => "unauthorized",
            ErrorReason::Forbidden => "forbidden",
            ErrorReason::SlowConsumer => "slow_consumer",
            ErrorReason::HeartbeatTimeout => "heartbeat_timeout",
            ErrorReason::Shutdown => "shutdown",
            ErrorReason::FrameTimeout => "frame_timeout",
            ErrorReason::TooManySessions => "too_many_sessions",
        }
    }
}

/// Pre-registered metric handles.
pub struct Metrics {
    /// Open connections (after CONNECTED).
    pub connections: Gauge,
    /// Connections accepted since start (before the handshake).
    pub connections_total: Counter,
    /// Frames received, by command.
    frames_in: Vec<Counter>,
    /// Frames sent, by command.
    frames_out: Vec<Counter>,
    /// Heart-beats sent.
    pub heartbeats_out: Counter,
    /// MESSAGE frames queued to sessions.
    pub deliveries: Counter,
    /// Sessions cut because their outbound queue overflowed.
    pub slow_consumer_cuts: Counter,
    /// Of those, sessions cut because they held too many unacknowledged deliveries.
    pub unacked_cuts: Counter,
    /// CONNECTs or REST calls refused for a bad token.
    pub auth_failures: Counter,
    /// Connections refused at accept because of `server.max_connections`.
    pub connections_refused: Counter,
    /// Connections refused at accept because of `server.max_connections_per_ip`.
    pub connections_refused_per_ip: Counter,
    /// Messages deleted by the retention purge.
    pub messages_purged: Counter,
    /// Sends committed per batch by the group-commit writer.
    pub store_batch_messages: Histogram,
    /// Seconds from a batch's first statement to its commit (retries of a failed batch
    /// included): what every send of the batch waited for the database.
    pub store_batch_seconds: Histogram,
    /// Batches that failed as a whole and were retried one send at a time.
    pub store_batch_failures: Counter,
    /// Offline pushes the gateway took.
    pub push_sent: Counter,
    /// Offline pushes the gateway did not take after every try.
    pub push_failed: Counter,
    /// Offline pushes dropped: the queue was full, or the user's push rate was used up.
    pub push_dropped: Counter,
    /// Seconds from a message's commit to its frames queued to every local session.
    pub push_latency_seconds: Histogram,
    /// Users with a session on this node.
    pub users_online: Gauge,
    /// Sends waiting for the group-commit writer.
    pub store_writer_queued: Gauge,
    /// Database connections in use.
    pub db_connections_in_use: Gauge,
    /// Database connections idle.
    pub db_connections_idle: Gauge,
    /// Requests for a database connection that had to wait.
    pub db_waits: Counter,
    /// Requests for a database connection that timed out.
    pub db_timeouts: Counter,
    /// 1 while the RabbitMQ relay is connected (cluster mode), else 0.
    pub relay_connected: Gauge,
    /// Seconds from a batch of relay publications to RabbitMQ's confirms of all of them.
    pub relay_publish_seconds: Histogram,
    /// Seconds per Redis call (presence, rate limits).
    pub redis_seconds: Histogram,
    /// Notifications waiting in RabbitMQ's notifications queue (sampled every 5 s).
    pub notifications_queued: Gauge,
    /// Open sessions over WebSocket.
    pub sessions_websocket: Gauge,
    /// Open sessions over STOMP/TCP (plain or TLS).
    pub sessions_tcp: Gauge,
    /// By source, then result: `ok`, then each [`ErrorCode`].
    sends: Vec<Counter>,
    errors: Vec<Counter>,
}

impl Metrics {
    /// The process-wide handles.
    pub fn get() -> &'static Metrics {
        static METRICS: OnceLock<Metrics> = OnceLock::new();
        METRICS.get_or_init(|| {
            handle();
            describe();
            // Counted where it happens, by name; registered here to be there from the start.
            let _ = counter!("broker_rate_limit_fallbacks_total");
            Metrics {
                connections: gauge!("broker_connections"),
                connections_total: counter!("broker_connections_total"),
                frames_in: Command::ALL
                    .iter()
                    .map(|c| counter!("broker_frames_in_total", "command" => c.as_str()))
                    .collect(),
                frames_out: Command::ALL
                    .iter()
                    .map(|c| counter!("broker_frames_out_total", "command" => c.as_str()))
                    .collect(),
                heartbeats_out: counter!("broker_heartbeats_out_total"),
                deliveries: counter!("broker_deliveries_total"),
                slow_consumer_cuts: counter!("broker_slow_consumer_cuts_total"),
                unacked_cuts: counter!("broker_unacked_cuts_total"),
                auth_failures: counter!("broker_auth_failures_total"),
                connections_refused: counter!("broker_connections_refused_total"),
                connections_refused_per_ip: counter!("broker_connections_refused_per_ip_total"),
                messages_purged: counter!("broker_messages_purged_total"),
                store_batch_messages: histogram!("broker_store_batch_messages"),
                store_batch_seconds: histogram!("broker_store_batch_seconds"),
                store_batch_failures: counter!("broker_store_batch_failures_total"),
                push_sent: counter!("broker_push_sent_total"),
                push_failed: counter!("broker_push_failed_total"),
                push_dropped: counter!("broker_push_dropped_total"),
                push_latency_seconds: histogram!("broker_push_latency_seconds"),
                users_online: gauge!("broker_users_online"),
                store_writer_queued: gauge!("broker_store_writer_queued"),
                db_connections_in_use: gauge!("broker_db_connections", "state" => "in_use"),
                db_connections_idle: gauge!("broker_db_connections", "state" => "idle"),
                db_waits: counter!("broker_db_connection_waits_total"),
                db_timeouts: counter!("broker_db_connection_timeouts_total"),
                relay_connected: gauge!("broker_relay_connected"),
                relay_publish_seconds: histogram!("broker_relay_publish_seconds"),
                redis_seconds: histogram!("broker_redis_seconds"),
                notifications_queued: gauge!("broker_notifications_queue_messages"),
                sessions_websocket: gauge!("broker_sessions", "transport" => "websocket"),
                sessions_tcp: gauge!("broker_sessions", "transport" => "tcp"),
                sends: SendSource::ALL
                    .iter()
                    .flat_map(|source| {
                        std::iter::once("ok")
                            .chain(ErrorCode::ALL.iter().map(|code| code.as_str()))
                            .map(move |result| {
                                counter!(
                                    "broker_sends_total",
                                    "source" => source.as_str(),
                                    "result" => result
                                )
                            })
                    })
                    .collect(),
                errors: ErrorReason::ALL
                    .iter()
                    .map(|r| counter!("broker_stomp_errors_total", "reason" => r.as_str()))
                    .collect(),
            }
        })
    }

    /// Counts a frame received.
    pub fn frame_in(&self, command: Command) {
        self.frames_in[command_index(command)].increment(1);
    }

    /// Counts frames sent.
    pub fn frames_out(&self, command: Command, count: u64) {
        self.frames_out[command_index(command)].increment(count);
    }

    /// Counts a send (a message or notification request) and how it ended.
    pub fn send(&self, source: SendSource, result: Result<(), ErrorCode>) {
        let code = match result {
            Ok(()) => 0,
            Err(code) => 1 + ErrorCode::ALL.iter().position(|c| *c == code).unwrap_or(0),
        };
        let index = source as usize * (1 + ErrorCode::ALL.len()) + code;
        if let Some(counter) = self.sends.get(index) {
            counter.increment(1);
        }
    }

    /// Counts an ERROR frame sent.
    pub fn error(&self, reason: ErrorReason) {
        self.errors[reason as usize].increment(1);
    }
}

fn command_index(command: Command) -> usize {
    Command::ALL
        .iter()
        .position(|c| *c == command)
        .unwrap_or_default()
}

/// The `# HELP` text of every series.
/// Runs `call`, recording how long it took in `histogram`.
pub async fn timed<F: Future>(histogram: &Histogram, call: F) -> F::Output {
    let started = Instant::now();
    let output = call.await;
    histogram.record(started.elapsed());
    output
}

fn describe() {
    describe_gauge!(
        "broker_connections",
        "STOMP sessions open (after CONNECTED)."
    );
    describe_counter!(
        "broker_connections_total",
        "Connections accepted, before the handshake."
    );
    describe_counter!(
        "broker_frames_in_total",
        "STOMP frames received, by command."
    );
    describe_counter!("broker_frames_out_total", "STOMP frames sent, by command.");
    describe_counter!("broker_heartbeats_out_total", "Heart-beats sent.");
    describe_counter!(
        "broker_deliveries_total",
        "MESSAGE frames queued to sessions."
    );
    describe_counter!(
        "broker_slow_consumer_cuts_total",
        "Sessions cut as slow consumers (outbound queue or unacknowledged deliveries)."
    );
    describe_counter!(
        "broker_unacked_cuts_total",
        "Sessions cut for holding too many unacknowledged deliveries."
    );
    describe_counter!(
        "broker_auth_failures_total",
        "CONNECTs or REST calls with a bad token."
    );
    describe_counter!(
        "broker_connections_refused_total",
        "Connections refused at accept: server.max_connections."
    );
    describe_counter!(
        "broker_connections_refused_per_ip_total",
        "Connections refused at accept: server.max_connections_per_ip."
    );
    describe_counter!(
        "broker_messages_purged_total",
        "Messages deleted by the retention purge."
    );
    describe_histogram!(
        "broker_store_batch_messages",
        "Sends committed per group-commit batch."
    );
    describe_histogram!(
        "broker_store_batch_seconds",
        metrics::Unit::Seconds,
        "Time from a batch's first statement to its commit."
    );
    describe_counter!(
        "broker_store_batch_failures_total",
        "Batches that failed as a whole and were retried one send at a time."
    );
    describe_counter!("broker_push_sent_total", "Offline pushes the gateway took.");
    describe_counter!(
        "broker_push_failed_total",
        "Offline pushes that failed every try."
    );
    describe_counter!(
        "broker_push_dropped_total",
        "Offline pushes dropped: queue full or the user's push rate used up."
    );
    describe_histogram!(
        "broker_push_latency_seconds",
        metrics::Unit::Seconds,
        "Time from a message's commit to its frames queued to every local session."
    );
    describe_gauge!(
        "broker_users_online",
        "Users with at least one session on this node."
    );
    describe_gauge!(
        "broker_store_writer_queued",
        "Sends waiting for the group-commit writer."
    );
    describe_gauge!(
        "broker_db_connections",
        "Database connections, by state (in_use, idle)."
    );
    describe_counter!(
        "broker_db_connection_waits_total",
        "Requests for a database connection that had to wait for one."
    );
    describe_counter!(
        "broker_db_connection_timeouts_total",
        "Requests for a database connection that timed out waiting."
    );
    describe_gauge!(
        "broker_relay_connected",
        "1 while the RabbitMQ relay is connected (cluster mode), else 0."
    );
    describe_histogram!(
        "broker_relay_publish_seconds",
        metrics::Unit::Seconds,
        "Time from publishing a batch to the other nodes to RabbitMQ's confirms."
    );
    describe_histogram!(
        "broker_redis_seconds",
        metrics::Unit::Seconds,
        "Time per Redis call (presence, rate limits)."
    );
    describe_gauge!(
        "broker_notifications_queue_messages",
        "Notifications waiting in RabbitMQ's notifications queue (consumer lag)."
    );
    describe_gauge!(
        "broker_sessions",
        "Open STOMP sessions by transport (websocket, tcp)."
    );
    describe_counter!(
        "broker_sends_total",
        "Message and notification sends, by source (stomp, rest, queue) and result (ok or the error code)."
    );
    describe_counter!("broker_stomp_errors_total", "ERROR frames sent, by reason.");
    describe_gauge!("broker_http_connections", "HTTP connections open.");
    describe_counter!(
        "broker_http_connections_refused_total",
        "HTTP connections refused: server.max_http_connections."
    );
    describe_counter!(
        "broker_rate_limit_fallbacks_total",
        "Rate-limit checks answered in process because Redis did not answer."
    );
}

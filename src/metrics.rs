//! Counters and gauges exported at `/metrics` in the Prometheus text format.
//!
//! Handles are registered once, so that counting on the per-frame and per-delivery paths is an
//! atomic add rather than a registry lookup. Labels are bounded sets (commands, reasons), never
//! user input.

use std::sync::OnceLock;

use metrics::{Counter, Gauge, Histogram, counter, gauge, histogram};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use stomp_codec::Command;

/// The process-wide recorder. Several brokers in one process (tests) share it.
fn handle() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let recorder = PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        // Fails only if another recorder was installed first; then ours just renders nothing.
        let _ = metrics::set_global_recorder(recorder);
        handle
    })
}

/// Renders every metric in the Prometheus text format.
pub fn render() -> String {
    handle().render()
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
    errors: Vec<Counter>,
}

impl Metrics {
    /// The process-wide handles.
    pub fn get() -> &'static Metrics {
        static METRICS: OnceLock<Metrics> = OnceLock::new();
        METRICS.get_or_init(|| {
            handle();
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

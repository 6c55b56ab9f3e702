//! What an `im` or `group` run reports: the figures, the database check, the one-line summary
//! and whether the run passed. Serialised as is for `--json`.

use crate::stats::Percentiles;

/// What the stored rows say about the RECEIPTed messages.
#[derive(Debug, Default, serde::Serialize)]
pub struct Verification {
    /// Rows of this run in `messages`.
    pub stored: u64,
    /// RECEIPTed messages without a row.
    pub missing: u64,
    /// clientMsgIds stored more than once.
    pub duplicated: u64,
    /// Rows whose RECEIPT never arrived (sent before the end of the drain but not confirmed).
    pub unconfirmed: u64,
}

impl Verification {
    fn ok(&self) -> bool {
        self.missing == 0 && self.duplicated == 0
    }
}

/// What an `im` or `group` run measured.
#[derive(Debug, serde::Serialize)]
pub struct ImReport {
    /// `im` or `group`.
    pub scenario: &'static str,
    /// The broker's URL.
    pub url: String,
    /// Free text naming the broker under test (and its database).
    pub label: String,
    /// Senders.
    pub senders: usize,
    /// Sessions that should receive each message (1 for a pair, the members for a group).
    pub recipients_per_message: usize,
    /// Recipients per sender, each its own conversation, sent to round-robin (1 for a group).
    pub conversations: usize,
    /// Offered rate over all senders, messages per second; 0 for closed loop.
    pub rate: f64,
    /// Sends in flight per sender allowed.
    pub window: u64,
    /// What takes a send out of the window: its RECEIPT or its delivery.
    pub close_on: super::CloseOn,
    /// Characters of content.
    pub payload: usize,
    /// Seconds of sending asked for (`--duration`).
    pub duration_seconds: f64,
    /// Seconds to connect and subscribe everyone (and create the group).
    pub setup_seconds: f64,
    /// Seconds spent sending.
    pub send_seconds: f64,
    /// SENDs written.
    pub sent: u64,
    /// RECEIPTs received: messages the broker confirmed stored.
    pub receipts: u64,
    /// Sends refused with an error on `/user/queue/errors` or an ERROR frame.
    pub refused: u64,
    /// Copies that reached their recipients (first copy of each message per recipient).
    pub delivered: u64,
    /// Copies of RECEIPTed messages that never reached a recipient.
    pub lost: u64,
    /// Copies received more than once.
    pub duplicates: u64,
    /// RECEIPTs per second over the send period.
    pub receipts_per_sec: f64,
    /// Copies delivered per second, from the first send to the last copy.
    pub deliveries_per_sec: f64,
    /// Send to arrival at a recipient, every copy.
    pub latency: Percentiles,
    /// Group: send to arrival at the last of the members, per message that reached all.
    pub all_members_latency: Option<Percentiles>,
    /// The database check, when asked for.
    pub verification: Option<Verification>,
    /// The broker's CPU time per copy delivered, in microseconds (with `--broker-pid`).
    pub broker_cpu_us_per_delivery: Option<f64>,
    /// The CPU time of the broker, loadgen and PostgreSQL per copy delivered, in microseconds.
    pub cpu_us_per_delivery: Option<crate::cpu::CpuPer>,
    /// The broker's group commits from the first send to the end of the drain (from its
    /// `/metrics`; every commit of the broker, not only this run's, counts).
    pub group_commits: Option<crate::commits::GroupCommits>,
    /// Cores busy from the first send to the end of the drain.
    pub cpu: Option<crate::cpu::Usage>,
    /// Connections that failed to open or subscribe.
    pub connect_failures: u64,
    /// ERROR frames, refusals and socket failures during the run.
    pub errors: u64,
    /// The first few of them.
    pub error_samples: Vec<String>,
}

impl ImReport {
    /// One line for humans.
    pub fn summary(&self) -> String {
        let close = match self.close_on {
            super::CloseOn::Receipt => "",
            super::CloseOn::Delivery => ",close-on=delivery",
        };
        let rate = if self.rate > 0.0 {
            format!("{}/s", self.rate)
        } else {
            format!("max(window={}{close})", self.window)
        };
        let conversations = if self.conversations > 1 {
            format!(" conversations/sender={}", self.conversations)
        } else {
            String::new()
        };
        let all = self.all_members_latency.map_or_else(String::new, |p| {
            format!(" all-members p50={:.3}ms p99={:.3}ms", p.p50_ms, p.p99_ms)
        });
        let verified = self.verification.as_ref().map_or_else(String::new, |v| {
            format!(
                " db(stored={} missing={} duplicated={} unconfirmed={})",
                v.stored, v.missing, v.duplicated, v.unconfirmed
            )
        });
        format!(
            "{} [{}] senders={}{} recipients/msg={} rate={} payload={}B setup={:.1}s sent={} \
             receipts={} refused={} delivered={} lost={} dup={} receipts/s={:.0} \
             deliveries/s={:.0} p50={:.3}ms p99={:.3}ms p99.9={:.3}ms max={:.3}ms{}{} \
             connect_failures={} errors={}{}{}{}",
            self.scenario,
            self.label,
            self.senders,
            conversations,
            self.recipients_per_message,
            rate,
            self.payload,
            self.setup_seconds,
            self.sent,
            self.receipts,
            self.refused,
            self.delivered,
            self.lost,
            self.duplicates,
            self.receipts_per_sec,
            self.deliveries_per_sec,
            self.latency.p50_ms,
            self.latency.p99_ms,
            self.latency.p999_ms,
            self.latency.max_ms,
            all,
            verified,
            self.connect_failures,
            self.errors,
            crate::commits::suffix(self.group_commits.as_ref()),
            crate::cpu::CpuPer::suffix(self.cpu_us_per_delivery.as_ref(), "delivery"),
            crate::cpu::suffix(self.cpu.as_ref()),
        )
    }

    /// Whether nothing was lost, refused or failed.
    pub fn ok(&self) -> bool {
        self.lost == 0
            && self.errors == 0
            && self.refused == 0
            && self.verification.as_ref().is_none_or(Verification::ok)
    }
}

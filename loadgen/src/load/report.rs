//! What a fan-out or pairs run reports: the figures and the one-line summary. Serialised as is
//! for `--json`.

use crate::stats::Percentiles;

/// What a fan-out or pairs run measured.
#[derive(Debug, serde::Serialize)]
pub struct FlowReport {
    /// `fanout` or `pairs`.
    pub scenario: &'static str,
    /// The broker's URL.
    pub url: String,
    /// Free text naming the broker under test.
    pub label: String,
    /// Publishers.
    pub publishers: usize,
    /// Subscribers, over all publishers.
    pub subscribers: usize,
    /// Destination kind.
    pub destination: String,
    /// Target rate per publisher, messages per second; 0 for "as fast as possible".
    pub rate: f64,
    /// Body size.
    pub payload: usize,
    /// Seconds of publishing asked for (`--duration`).
    pub duration_seconds: f64,
    /// At rate 0, messages a publisher may have in flight.
    pub window: u64,
    /// A RECEIPT is asked for every this many messages.
    pub receipt_every: u64,
    /// Seconds taken to connect and subscribe every subscriber.
    pub setup_seconds: f64,
    /// Seconds spent publishing.
    pub publish_seconds: f64,
    /// Messages published, over all publishers.
    pub sent: u64,
    /// Copies that should have arrived.
    pub expected: u64,
    /// Copies that arrived.
    pub received: u64,
    /// `expected - received`, never negative.
    pub lost: u64,
    /// Copies that arrived with a sequence number lower than one seen before.
    pub out_of_order: u64,
    /// Published messages per second.
    pub publish_rate: f64,
    /// Copies received per second, from the first send to the last receipt of a copy.
    pub deliveries_per_sec: f64,
    /// End-to-end latency.
    pub latency: Percentiles,
    /// The broker's CPU time per copy received, in microseconds (with `--broker-pid`).
    pub broker_cpu_us_per_delivery: Option<f64>,
    /// Cores busy from the first publish to the end of the drain.
    pub cpu: Option<crate::cpu::Usage>,
    /// Connections that failed to open or subscribe.
    pub connect_failures: u64,
    /// ERROR frames and socket failures during the run.
    pub errors: u64,
    /// The first few of them.
    pub error_samples: Vec<String>,
}

impl FlowReport {
    /// One line for humans.
    pub fn summary(&self) -> String {
        let rate = if self.rate > 0.0 {
            format!("{}/s", self.rate)
        } else {
            "max".to_owned()
        };
        format!(
            "{} [{}] publishers={} subscribers={} dest={} rate={} payload={}B setup={:.1}s sent={} \
             received={}/{} lost={} ooo={} publish/s={:.0} deliveries/s={:.0} \
             p50={:.3}ms p99={:.3}ms p99.9={:.3}ms max={:.3}ms connect_failures={} errors={}{}",
            self.scenario,
            self.label,
            self.publishers,
            self.subscribers,
            self.destination,
            rate,
            self.payload,
            self.setup_seconds,
            self.sent,
            self.received,
            self.expected,
            self.lost,
            self.out_of_order,
            self.publish_rate,
            self.deliveries_per_sec,
            self.latency.p50_ms,
            self.latency.p99_ms,
            self.latency.p999_ms,
            self.latency.max_ms,
            self.connect_failures,
            self.errors,
            crate::cpu::suffix(self.cpu.as_ref()),
        )
    }
}

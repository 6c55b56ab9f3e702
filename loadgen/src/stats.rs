//! The shared clock, latency histograms and the counters that tie publishers to subscribers.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::Instant;

use hdrhistogram::Histogram;
use tokio::sync::Notify;

static START: OnceLock<Instant> = OnceLock::new();

/// Nanoseconds on a monotonic clock shared by every task of this process. Publishers write it
/// into message bodies and subscribers subtract it on arrival, so no clock sync is involved.
pub fn now_ns() -> u64 {
    u64::try_from(START.get_or_init(Instant::now).elapsed().as_nanos()).unwrap_or(u64::MAX)
}

/// Latencies in microseconds, 3 significant digits, up to one minute.
///
/// Sharded so that a thousand subscriber tasks recording at once rarely meet on a lock, while
/// the memory stays that of a few histograms rather than one per subscriber.
pub struct Latencies {
    shards: Vec<Mutex<Histogram<u64>>>,
}

const SHARDS: usize = 16;
const MAX_MICROS: u64 = 60_000_000;

impl Latencies {
    /// Empty histograms.
    pub fn new() -> Latencies {
        Latencies {
            shards: (0..SHARDS).map(|_| Mutex::new(new_histogram())).collect(),
        }
    }

    /// Records one latency, in nanoseconds, into the shard of `who`.
    pub fn record(&self, who: usize, nanos: u64) {
        self.record_all(who, &[nanos]);
    }

    /// Records latencies, in nanoseconds, into the shard of `who` under one lock.
    pub fn record_all(&self, who: usize, nanos: &[u64]) {
        if nanos.is_empty() {
            return;
        }
        let mut shard = self.shards[who % SHARDS]
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for &n in nanos {
            shard.saturating_record((n / 1000).clamp(1, MAX_MICROS));
        }
    }

    /// All shards merged.
    pub fn merged(&self) -> Histogram<u64> {
        let mut all = new_histogram();
        for shard in &self.shards {
            let shard = shard
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            // Same bounds on both sides, so adding cannot fail.
            let _ = all.add(&*shard);
        }
        all
    }
}

fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_MICROS, 3).expect("valid histogram bounds")
}

/// Latency percentiles in milliseconds.
#[derive(Clone, Copy, Debug, Default, serde::Serialize)]
pub struct Percentiles {
    /// Samples recorded.
    pub samples: u64,
    /// Median.
    pub p50_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// 99.9th percentile.
    pub p999_ms: f64,
    /// Largest.
    pub max_ms: f64,
}

impl Percentiles {
    /// Reads the percentiles off a histogram of microseconds.
    pub fn of(histogram: &Histogram<u64>) -> Percentiles {
        let ms = |micros: u64| micros as f64 / 1000.0;
        if histogram.is_empty() {
            return Percentiles::default();
        }
        Percentiles {
            samples: histogram.len(),
            p50_ms: ms(histogram.value_at_quantile(0.50)),
            p99_ms: ms(histogram.value_at_quantile(0.99)),
            p999_ms: ms(histogram.value_at_quantile(0.999)),
            max_ms: ms(histogram.max()),
        }
    }
}

/// One publisher and the subscribers that should each receive everything it sends.
///
/// The publisher bounds what is in flight by what subscribers have received, not only by what
/// the broker has acknowledged: a broker acknowledges a SEND long before a thousand copies of
/// it have left its outbound queues, and an unbounded backlog there measures queue growth (or
/// slow-consumer cuts) rather than throughput.
pub struct Flow {
    /// How many subscribers should receive each message.
    pub fanout: u64,
    /// Messages published.
    pub sent: AtomicU64,
    /// Copies received, over all subscribers.
    pub received: AtomicU64,
    /// RECEIPTs received by the publisher.
    pub receipts: AtomicU64,
    waiting: AtomicBool,
    progress: Notify,
}

impl Flow {
    /// A flow towards `fanout` subscribers.
    pub fn new(fanout: u64) -> Flow {
        Flow {
            fanout,
            sent: AtomicU64::new(0),
            received: AtomicU64::new(0),
            receipts: AtomicU64::new(0),
            waiting: AtomicBool::new(false),
            progress: Notify::new(),
        }
    }

    /// A subscriber received `n` copies.
    pub fn on_received(&self, n: u64) {
        self.received.fetch_add(n, Ordering::Relaxed);
        self.wake();
    }

    /// The publisher received a RECEIPT.
    pub fn on_receipt(&self) {
        self.receipts.fetch_add(1, Ordering::Relaxed);
        self.wake();
    }

    fn wake(&self) {
        // Only pay for a wake-up when the publisher is actually parked.
        if self.waiting.swap(false, Ordering::AcqRel) {
            self.progress.notify_one();
        }
    }

    /// Messages sent whose copies have not all arrived yet (averaged over subscribers).
    pub fn in_flight(&self) -> u64 {
        let fully = self.received.load(Ordering::Relaxed) / self.fanout.max(1);
        self.sent.load(Ordering::Relaxed).saturating_sub(fully)
    }

    /// Waits until `ready` holds, re-checking it after every bit of progress.
    pub async fn wait_until(&self, ready: impl Fn(&Flow) -> bool) {
        loop {
            if ready(self) {
                return;
            }
            let notified = self.progress.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            self.waiting.store(true, Ordering::Release);
            // Progress may have happened between the check and registering as waiting.
            if ready(self) {
                self.waiting.store(false, Ordering::Release);
                return;
            }
            notified.await;
        }
    }

    /// Wakes the publisher regardless, e.g. when the run is being stopped.
    pub fn kick(&self) {
        self.waiting.store(false, Ordering::Release);
        self.progress.notify_one();
    }
}

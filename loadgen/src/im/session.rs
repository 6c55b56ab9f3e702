//! One session's reader during an IM run, and the counters every reader shares: RECEIPTs tick
//! the sender's window, `message.new` pushes from the watched sender are timed and counted,
//! refusals are counted as errors.

use std::borrow::Cow;
use std::collections::HashMap;
use std::ops::ControlFlow;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use stomp_codec::{Command, Frame};
use tokio::sync::watch;

use crate::Errors;
use crate::client::{Reader, describe};
use crate::stats::{Flow, Latencies, now_ns};

/// A growable bit set of message numbers.
#[derive(Default)]
pub(super) struct Bits(Vec<u64>);

impl Bits {
    /// Sets `n`; returns whether it was set before.
    pub(super) fn set(&mut self, n: u64) -> bool {
        let (word, bit) = ((n / 64) as usize, n % 64);
        if word >= self.0.len() {
            self.0.resize(word + 1, 0);
        }
        let before = self.0[word] & (1 << bit) != 0;
        self.0[word] |= 1 << bit;
        before
    }

    pub(super) fn get(&self, n: u64) -> bool {
        self.0
            .get((n / 64) as usize)
            .is_some_and(|w| w & (1 << (n % 64)) != 0)
    }

    pub(super) fn iter(&self) -> impl Iterator<Item = u64> + '_ {
        self.0.iter().enumerate().flat_map(|(i, &w)| {
            (0..64u64)
                .filter(move |b| w & (1 << b) != 0)
                .map(move |b| i as u64 * 64 + b)
        })
    }
}

/// What one session saw.
#[derive(Default)]
pub(super) struct Seen {
    /// Message numbers whose RECEIPT came (senders).
    pub(super) receipted: Bits,
    /// Message numbers delivered from the watched sender.
    pub(super) delivered: Bits,
    pub(super) delivered_count: u64,
    pub(super) duplicates: u64,
    pub(super) refused: u64,
}

/// Per-message arrival at the group's members: copies so far and the latest arrival.
pub(super) type Arrivals = Mutex<HashMap<u64, (u32, u64)>>;

/// Timing and counters shared by all tasks of a run.
pub(super) struct Shared {
    pub(super) latencies: Latencies,
    pub(super) errors: Errors,
    pub(super) first_send: AtomicU64,
    pub(super) last_delivery: AtomicU64,
    /// Copies delivered so far, over all sessions (for the drain).
    pub(super) delivered: AtomicU64,
    /// Group only.
    pub(super) arrivals: Option<Arrivals>,
}

/// The `<n> <ns> ` prefix of a content.
pub(super) fn parse_content(content: &str) -> Option<(u64, u64)> {
    let mut fields = content.split(' ');
    let n = fields.next()?.parse().ok()?;
    let ts = fields.next()?.parse().ok()?;
    Some((n, ts))
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct Pushed<'a> {
    #[serde(borrow)]
    pub(super) sender_id: Cow<'a, str>,
    #[serde(borrow)]
    pub(super) content: Cow<'a, str>,
}

/// How a session's reader treats what arrives.
#[derive(Clone)]
pub(super) struct Watch {
    /// Count and time `message.new` from this sender (the peer, or the group's owner).
    pub(super) from: String,
    /// This session's sender flow, for RECEIPTs (senders only).
    pub(super) flow: Option<Arc<Flow>>,
    /// The watched sender's flow, ticked on each first delivery (for `--close-on delivery`).
    pub(super) delivered_to: Option<Arc<Flow>>,
}

impl Watch {
    /// Watches `from`'s messages (nobody's when empty); the flows are attached once the
    /// sessions are open.
    pub(super) fn of(from: String) -> Watch {
        Watch {
            from,
            flow: None,
            delivered_to: None,
        }
    }
}

/// Fresh counters for a run; `group` keeps per-message arrivals for the all-members latency.
pub(super) fn new_shared(group: bool) -> Arc<Shared> {
    Arc::new(Shared {
        latencies: Latencies::new(),
        errors: Errors::default(),
        first_send: AtomicU64::new(0),
        last_delivery: AtomicU64::new(0),
        delivered: AtomicU64::new(0),
        arrivals: group.then(|| Mutex::new(HashMap::new())),
    })
}

/// Reads one session until `stop` fires or it ends: RECEIPTs, pushed messages, refusals.
pub(super) async fn read_session(
    mut reader: Reader,
    who: usize,
    watch: Watch,
    shared: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
) -> Seen {
    let mut seen = Seen::default();
    loop {
        let frame = tokio::select! {
            biased;
            _ = stop.changed() => break,
            frame = reader.next() => frame,
        };
        let frame = match frame {
            Ok(Some(frame)) => frame,
            Ok(None) => {
                shared
                    .errors
                    .add(format!("session {who}: closed by the broker"));
                break;
            }
            Err(error) => {
                shared.errors.add(format!("session {who}: {error:#}"));
                break;
            }
        };
        if seen.on_frame(&frame, who, &watch, &shared).is_break() {
            break;
        }
    }
    seen
}

impl Seen {
    /// Counts one frame; breaks on an ERROR frame, after which the broker closes the session.
    fn on_frame(
        &mut self,
        frame: &Frame,
        who: usize,
        watch: &Watch,
        shared: &Shared,
    ) -> ControlFlow<()> {
        match frame.command {
            Command::Receipt => {
                let n = frame
                    .get("receipt-id")
                    .and_then(|id| id.parse::<u64>().ok());
                match (n, &watch.flow) {
                    (Some(n), Some(flow)) => {
                        if !self.receipted.set(n) {
                            flow.on_receipt();
                        }
                    }
                    _ => shared
                        .errors
                        .add(format!("session {who}: unexpected {}", describe(frame))),
                }
            }
            Command::Message if frame.get("subscription") == Some("e") => {
                self.refused += 1;
                shared
                    .errors
                    .add(format!("session {who} refused: {}", describe(frame)));
                if let Some(flow) = &watch.flow {
                    flow.kick();
                }
            }
            Command::Message if frame.get("event") == Some("message.new") => {
                self.on_message_new(frame, who, watch, shared);
            }
            // Other events (group changes, conversation updates) are not part of the measure.
            Command::Message => {}
            _ => {
                shared
                    .errors
                    .add(format!("session {who} got {}", describe(frame)));
                if frame.command == Command::Error {
                    return ControlFlow::Break(());
                }
            }
        }
        ControlFlow::Continue(())
    }

    /// Times and counts a pushed message from the watched sender; a repeat is a duplicate.
    fn on_message_new(&mut self, frame: &Frame, who: usize, watch: &Watch, shared: &Shared) {
        let now = now_ns();
        let Ok(pushed) = serde_json::from_slice::<Pushed<'_>>(&frame.body) else {
            shared
                .errors
                .add(format!("session {who}: unparsable message.new"));
            return;
        };
        if pushed.sender_id != watch.from {
            // A sender's own copy on its other subscription: not a delivery.
            return;
        }
        let Some((n, sent_at)) = parse_content(&pushed.content) else {
            shared
                .errors
                .add(format!("session {who}: content without a timestamp"));
            return;
        };
        if self.delivered.set(n) {
            self.duplicates += 1;
            return;
        }
        let latency = now.saturating_sub(sent_at);
        shared.latencies.record(who, latency);
        if let Some(arrivals) = &shared.arrivals {
            let mut arrivals = arrivals
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let entry = arrivals.entry(n).or_insert((0, 0));
            entry.0 += 1;
            entry.1 = entry.1.max(latency);
        }
        self.delivered_count += 1;
        if let Some(flow) = &watch.delivered_to {
            flow.on_received(1);
        }
        shared.delivered.fetch_add(1, Ordering::Relaxed);
        shared.last_delivery.fetch_max(now, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_content_is_refused() {
        assert_eq!(parse_content("hello world"), None);
        assert_eq!(parse_content(""), None);
        assert_eq!(parse_content("12"), None);
    }

    #[test]
    fn bits_remember_what_was_set() {
        let mut bits = Bits::default();
        assert!(!bits.set(3));
        assert!(bits.set(3));
        assert!(!bits.set(200));
        assert!(bits.get(200) && !bits.get(199));
        assert_eq!(bits.iter().collect::<Vec<_>>(), vec![3, 200]);
    }
}

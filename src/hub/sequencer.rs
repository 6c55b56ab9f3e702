//! Per-topic reordering of sequenced publications (group messages carry their conversation
//! seq). Messages of one group can be stored by two nodes at once; each node serves its own
//! sessions directly and the other node's copy arrives through RabbitMQ a moment later, so
//! without this a member could see seq 15 before 14. A publication ahead of the next expected
//! seq waits (briefly, and boundedly) for the gap to fill; a gap that does not fill in time is
//! skipped, since clients can fetch any missing seq from history. A node orders a topic while
//! it has subscribers there, from the first publication it sees after the first of them
//! subscribed: should an earlier seq from another node arrive after that first one, it is
//! delivered as it comes.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use dashmap::DashMap;

use crate::session::handle::lock;

/// How long a publication waits for an earlier seq. Only a real gap waits: in a healthy cluster
/// the earlier copy crosses RabbitMQ within milliseconds, but on a loaded node its hop can take
/// a few hundred, and a member seeing seq 12 before 11 is worse than seeing both a little late.
pub const HOLD: Duration = Duration::from_secs(1);

/// Publications held per topic before the gap is given up.
const MAX_HELD: usize = 256;

struct Stream<T> {
    next: i64,
    held: BTreeMap<i64, (Instant, T)>,
}

/// Reorders items by seq per key.
pub struct Sequencer<T> {
    streams: DashMap<String, Mutex<Stream<T>>>,
}

impl<T> Default for Sequencer<T> {
    fn default() -> Self {
        Sequencer {
            streams: DashMap::new(),
        }
    }
}

impl<T> Sequencer<T> {
    /// Offers an item; returns the items now ready, in seq order.
    pub fn offer(&self, key: &str, seq: i64, item: T) -> Vec<T> {
        let entry = self.streams.entry(key.to_owned()).or_insert_with(|| {
            Mutex::new(Stream {
                next: seq,
                held: BTreeMap::new(),
            })
        });
        let mut guard = lock(&entry);
        let Stream { next, held } = &mut *guard;
        if seq < *next {
            // Late (after a skipped gap) or a repeat: deliver as it comes.
            return vec![item];
        }
        held.insert(seq, (Instant::now(), item));
        let mut ready = Vec::new();
        while let Some(first) = held.first_key_value().map(|(seq, _)| *seq) {
            if first != *next && held.len() <= MAX_HELD {
                break;
            }
            if let Some((_, item)) = held.remove(&first) {
                *next = first + 1;
                ready.push(item);
            }
        }
        ready
    }

    /// Releases, per key, what has waited longer than [`HOLD`] (skipping the gaps before it).
    pub fn expire(&self) -> Vec<(String, Vec<T>)> {
        let now = Instant::now();
        let mut released = Vec::new();
        for entry in &self.streams {
            let mut guard = lock(entry.value());
            let Stream { next, held } = &mut *guard;
            let overdue = held
                .values()
                .next()
                .is_some_and(|(since, _)| now.duration_since(*since) >= HOLD);
            if !overdue {
                continue;
            }
            let mut ready = Vec::new();
            while let Some((first, since)) = held
                .first_key_value()
                .map(|(seq, (since, _))| (*seq, *since))
            {
                if first != *next && now.duration_since(since) < HOLD {
                    break;
                }
                if let Some((_, item)) = held.remove(&first) {
                    *next = first + 1;
                    ready.push(item);
                }
            }
            released.push((entry.key().clone(), ready));
        }
        released
    }

    /// Whether a stream is kept for `key`.
    pub fn tracks(&self, key: &str) -> bool {
        self.streams.contains_key(key)
    }

    /// Forgets a key (its topic has no subscribers left).
    pub fn forget(&self, key: &str) {
        self.streams.remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_order_items_pass_at_once() {
        let sequencer = Sequencer::default();
        assert_eq!(sequencer.offer("g", 5, 5), vec![5]);
        assert_eq!(sequencer.offer("g", 6, 6), vec![6]);
    }

    #[test]
    fn an_early_item_waits_for_the_gap() {
        let sequencer = Sequencer::default();
        assert_eq!(sequencer.offer("g", 1, 1), vec![1]);
        assert!(sequencer.offer("g", 3, 3).is_empty());
        assert_eq!(sequencer.offer("g", 2, 2), vec![2, 3]);
    }

    #[test]
    fn a_gap_that_does_not_fill_is_skipped_after_the_hold() {
        let sequencer = Sequencer::default();
        sequencer.offer("g", 1, 1);
        assert!(sequencer.offer("g", 3, 3).is_empty());
        std::thread::sleep(HOLD + Duration::from_millis(10));
        let released = sequencer.expire();
        assert_eq!(released, vec![("g".to_owned(), vec![3])]);
        assert_eq!(sequencer.offer("g", 2, 2), vec![2]);
        assert_eq!(sequencer.offer("g", 4, 4), vec![4]);
    }
}

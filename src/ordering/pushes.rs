//! Push order of locally committed messages, per conversation. The store's writer commits
//! concurrent senders' messages together and answers them together; each sender then pushes
//! its own message, and without care the pushes of one conversation race and subscribers get
//! seq 6 before seq 5. So the writer registers every committed seq ([`PushOrder::committed`])
//! before it answers, and each push passes through [`PushOrder::release`], which runs a
//! conversation's pushes in seq order, holding a push back while a smaller seq committed before
//! it has not been pushed yet. A seq whose push never comes (its sender vanished between the
//! commit and the push) holds the others back for [`GIVE_UP`] at most.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::util::lock;

/// How long a committed seq whose push has not come may hold back the later ones.
const GIVE_UP: Duration = Duration::from_secs(2);

/// Lanes beyond which registration sweeps out the stale ones.
const SWEEP_ABOVE: usize = 1024;

/// A push: the fan-out of one stored message, run once its turn comes.
pub type Push = Box<dyn FnOnce() + Send>;

/// Per-conversation ordering of the pushes of locally committed messages. One is shared by the
/// store's writer (which registers commits) and the layer that pushes (which releases pushes).
pub struct PushOrder {
    lanes: Mutex<HashMap<String, Lane>>,
    give_up: Duration,
}

impl Default for PushOrder {
    fn default() -> PushOrder {
        PushOrder::new(GIVE_UP)
    }
}

#[derive(Default)]
struct Lane {
    /// Committed seqs whose push has not come yet, with when they were committed.
    awaited: BTreeMap<i64, Instant>,
    /// Pushes that came while a smaller seq was awaited.
    ready: BTreeMap<i64, Push>,
    /// A task is running this lane's pushes; others only queue theirs.
    running: bool,
    /// A timer will look at this lane again.
    timer: bool,
}

impl Lane {
    /// Forgets awaited seqs older than [`GIVE_UP`], then takes the pushes no awaited seq holds
    /// back, in seq order.
    fn take_runnable(&mut self, now: Instant, give_up: Duration) -> Vec<Push> {
        self.awaited
            .retain(|_, committed| now.duration_since(*committed) < give_up);
        let bound = self.awaited.keys().next().copied();
        let mut runnable = Vec::new();
        while let Some(entry) = self.ready.first_entry() {
            if bound.is_some_and(|smallest| smallest < *entry.key()) {
                break;
            }
            runnable.push(entry.remove());
        }
        runnable
    }

    fn is_idle(&self) -> bool {
        self.awaited.is_empty() && self.ready.is_empty() && !self.running && !self.timer
    }
}

impl PushOrder {
    fn new(give_up: Duration) -> PushOrder {
        PushOrder {
            lanes: Mutex::new(HashMap::new()),
            give_up,
        }
    }

    /// Registers committed `(conversation, seq)` pairs; the writer calls it before it answers
    /// the senders, so that no push of these seqs can be released before they are known.
    pub fn committed<'a>(&self, seqs: impl Iterator<Item = (&'a str, i64)>) {
        let now = Instant::now();
        let mut lanes = lock(&self.lanes);
        for (conversation, seq) in seqs {
            lanes
                .entry(conversation.to_owned())
                .or_default()
                .awaited
                .insert(seq, now);
        }
        if lanes.len() > SWEEP_ABOVE {
            lanes.retain(|_, lane| {
                lane.awaited
                    .retain(|_, committed| now.duration_since(*committed) < self.give_up);
                !lane.is_idle()
            });
        }
    }

    /// Runs `push` for `seq` of `conversation` once every smaller awaited seq was pushed (or
    /// given up on), in this task or in the one pushing the seq it waited for. A seq never
    /// registered is pushed at once.
    pub fn release(self: &Arc<Self>, conversation: &str, seq: i64, push: Push) {
        {
            let mut lanes = lock(&self.lanes);
            let Some(lane) = lanes.get_mut(conversation) else {
                drop(lanes);
                push();
                return;
            };
            lane.awaited.remove(&seq);
            let was_running = lane.running;
            lane.running = true;
            let first_in_line = !was_running
                && lane.ready.is_empty()
                && lane
                    .awaited
                    .keys()
                    .next()
                    .is_none_or(|smallest| *smallest > seq);
            if first_in_line {
                // The common case, a push in its turn: run at once rather than queued and
                // taken back out. What came meanwhile is run below.
                drop(lanes);
                push();
            } else {
                lane.ready.insert(seq, push);
                if was_running {
                    return;
                }
            }
        }
        self.run(conversation);
    }

    /// Runs the lane's runnable pushes until none is left; the caller has set `running`.
    fn run(self: &Arc<Self>, conversation: &str) {
        loop {
            let runnable = {
                let mut lanes = lock(&self.lanes);
                let Some(lane) = lanes.get_mut(conversation) else {
                    return;
                };
                let runnable = lane.take_runnable(Instant::now(), self.give_up);
                if runnable.is_empty() {
                    lane.running = false;
                    let oldest = lane.awaited.values().min().copied();
                    if let Some(oldest) = oldest.filter(|_| !lane.ready.is_empty() && !lane.timer) {
                        lane.timer = self.recheck_at(conversation, oldest + self.give_up);
                    }
                    if lane.is_idle() {
                        lanes.remove(conversation);
                    }
                    return;
                }
                runnable
            };
            for push in runnable {
                push();
            }
        }
    }

    /// Looks at a lane again at `when`, so that a push held back by a seq whose push never
    /// comes still goes out. Returns whether a timer was set.
    fn recheck_at(self: &Arc<Self>, conversation: &str, when: Instant) -> bool {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return false;
        };
        let order = Arc::clone(self);
        let conversation = conversation.to_owned();
        runtime.spawn(async move {
            tokio::time::sleep_until(when.into()).await;
            {
                let mut lanes = lock(&order.lanes);
                let Some(lane) = lanes.get_mut(&conversation) else {
                    return;
                };
                lane.timer = false;
                if lane.running {
                    return;
                }
                lane.running = true;
            }
            order.run(&conversation);
        });
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn recorder() -> (Arc<Mutex<Vec<i64>>>, impl Fn(i64) -> Push) {
        let log = Arc::new(Mutex::new(Vec::new()));
        let make = {
            let log = log.clone();
            move |seq: i64| -> Push {
                let log = log.clone();
                Box::new(move || log.lock().unwrap().push(seq))
            }
        };
        (log, make)
    }

    #[test]
    fn pushes_run_in_seq_order_whatever_order_they_come_in() {
        let order = Arc::new(PushOrder::default());
        let (log, push) = recorder();
        order.committed([("c", 1), ("c", 2), ("c", 3), ("d", 1)].into_iter());
        order.release("c", 3, push(3));
        order.release("c", 2, push(2));
        assert!(log.lock().unwrap().is_empty());
        order.release("d", 1, push(100));
        order.release("c", 1, push(1));
        assert_eq!(*log.lock().unwrap(), vec![100, 1, 2, 3]);
        assert!(lock(&order.lanes).is_empty());
    }

    #[test]
    fn an_unregistered_push_runs_at_once() {
        let order = Arc::new(PushOrder::default());
        let (log, push) = recorder();
        order.release("c", 7, push(7));
        assert_eq!(*log.lock().unwrap(), vec![7]);
    }

    #[tokio::test]
    async fn a_push_that_never_comes_holds_the_others_back_for_a_while_only() {
        let give_up = Duration::from_millis(50);
        let order = Arc::new(PushOrder::new(give_up));
        let (log, push) = recorder();
        order.committed([("c", 1), ("c", 2)].into_iter());
        order.release("c", 2, push(2));
        assert!(log.lock().unwrap().is_empty());
        tokio::time::sleep(give_up * 3).await;
        assert_eq!(*log.lock().unwrap(), vec![2]);
        assert!(lock(&order.lanes).is_empty());
    }
}

//! Rate limits behind one small trait, so that the in-process limiter used by a single node can
//! be replaced by a cluster-wide one (Redis) without touching the send path; and the actions
//! besides sends that are counted per user, each under a key namespace of its own.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use dashmap::DashMap;
use futures_util::future::BoxFuture;

pub use crate::config::Rate;

/// What a limiter decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Within the limit; the event is counted.
    Allow,
    /// Over the limit; nothing is counted. The next event may pass after `retry_after`.
    Deny {
        /// How long until the oldest counted event leaves the window.
        retry_after: Duration,
    },
}

/// Counts events per key against a rate.
pub trait RateLimiter: Send + Sync {
    /// Counts one event for `key` if `limit` allows it.
    fn check<'a>(&'a self, key: &'a str, limit: Rate) -> BoxFuture<'a, Decision>;

    /// Counts `weight` units (bytes, say) for `key` if the units counted for it within the last
    /// `window`, these included, stay within `capacity`. A weight of 0 counts nothing and is
    /// denied only when nothing is left.
    fn check_weighted<'a>(
        &'a self,
        key: &'a str,
        weight: u64,
        capacity: u64,
        window: Duration,
    ) -> BoxFuture<'a, Decision>;
}

/// An action of a user counted against a rate of its own, beside sends (which have theirs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// `SEND /app/typing`.
    Typing,
    /// `POST /api/v1/groups`.
    GroupCreate,
    /// `POST /api/v1/groups/{id}/members`.
    Invite,
    /// `POST /api/v1/reports`.
    Report,
    /// `POST /api/v1/conversations/private` creating the conversation.
    ConversationCreate,
    /// `POST /api/v1/contact-requests`.
    ContactRequest,
    /// A nickname set, or a member muted or unmuted, in a group.
    MemberUpdate,
    /// A message edited.
    Edit,
    /// A reaction added or taken back.
    React,
    /// A message pinned or unpinned.
    Pin,
    /// A SUBSCRIBE with `since-seq` (a replay).
    Replay,
}

impl Action {
    /// The limiter key of `user`'s count of this action: a namespace per action, so that one
    /// action never uses up another's budget.
    pub fn key(self, user: &str) -> String {
        let namespace = match self {
            Action::Typing => "typing",
            Action::GroupCreate => "group-create",
            Action::Invite => "invite",
            Action::Report => "report",
            Action::ConversationCreate => "conversation-create",
            Action::ContactRequest => "contact-request",
            Action::MemberUpdate => "member-update",
            Action::Edit => "edit",
            Action::React => "react",
            Action::Pin => "pin",
            Action::Replay => "replay",
        };
        format!("{namespace}:{user}")
    }
}

/// The rate of each [`Action`].
#[derive(Clone, Copy, Debug)]
pub struct ActionRates {
    /// `limits.typing_rate`.
    pub typing: Rate,
    /// `limits.group_create_rate`.
    pub group_create: Rate,
    /// `limits.invite_rate`.
    pub invite: Rate,
    /// `limits.report_rate`.
    pub report: Rate,
    /// `limits.conversation_create_rate`.
    pub conversation_create: Rate,
    /// `limits.contact_request_rate`.
    pub contact_request: Rate,
    /// `limits.member_update_rate`.
    pub member_update: Rate,
    /// `limits.edit_rate`.
    pub edit: Rate,
    /// `limits.reaction_rate`.
    pub react: Rate,
    /// `limits.pin_rate`.
    pub pin: Rate,
    /// `limits.replay_rate`.
    pub replay: Rate,
}

impl ActionRates {
    /// Reads the rates from the configuration.
    pub fn from_config(limits: &crate::config::LimitsConfig) -> ActionRates {
        ActionRates {
            typing: limits.typing_rate,
            group_create: limits.group_create_rate,
            invite: limits.invite_rate,
            report: limits.report_rate,
            conversation_create: limits.conversation_create_rate,
            contact_request: limits.contact_request_rate,
            member_update: limits.member_update_rate,
            edit: limits.edit_rate,
            react: limits.reaction_rate,
            pin: limits.pin_rate,
            replay: limits.replay_rate,
        }
    }

    /// The rate of `action`.
    pub fn of(&self, action: Action) -> Rate {
        match action {
            Action::Typing => self.typing,
            Action::GroupCreate => self.group_create,
            Action::Invite => self.invite,
            Action::Report => self.report,
            Action::ConversationCreate => self.conversation_create,
            Action::ContactRequest => self.contact_request,
            Action::MemberUpdate => self.member_update,
            Action::Edit => self.edit,
            Action::React => self.react,
            Action::Pin => self.pin,
            Action::Replay => self.replay,
        }
    }
}

/// An exact sliding-window limiter kept in this process: for each key, the times of the events
/// still inside the window.
#[derive(Default)]
pub struct InProcessLimiter {
    windows: DashMap<String, VecDeque<Instant>>,
    weighted: DashMap<String, Weighted>,
    checks: AtomicU64,
}

/// The weighted events of one key still inside its window, and their sum.
#[derive(Default)]
struct Weighted {
    events: VecDeque<(Instant, u64)>,
    total: u64,
}

/// Keys are swept of stale entries once every this many checks, so idle users cost nothing.
const SWEEP_EVERY: u64 = 4096;

impl InProcessLimiter {
    /// An empty limiter.
    pub fn new() -> InProcessLimiter {
        InProcessLimiter::default()
    }

    fn sweep(&self, now: Instant) {
        if self.checks.fetch_add(1, Ordering::Relaxed) % SWEEP_EVERY == SWEEP_EVERY - 1 {
            // Windows differ per key, so a key is dropped only when its newest event is older
            // than the longest window a caller might use (a day is beyond any configured rate).
            let fresh = |last: &Instant| now.duration_since(*last) < Duration::from_secs(86_400);
            self.windows
                .retain(|_, events| events.back().is_some_and(fresh));
            self.weighted
                .retain(|_, window| window.events.back().is_some_and(|(last, _)| fresh(last)));
        }
    }

    fn decide_weighted(
        &self,
        key: &str,
        weight: u64,
        capacity: u64,
        window: Duration,
        now: Instant,
    ) -> Decision {
        self.sweep(now);
        let mut entry = self.weighted.entry(key.to_owned()).or_default();
        let counted = &mut *entry;
        while let Some((first, units)) = counted.events.front().copied()
            && now.duration_since(first) >= window
        {
            counted.events.pop_front();
            counted.total = counted.total.saturating_sub(units);
        }
        let need = weight.max(1);
        if counted.total.saturating_add(need) > capacity {
            return Decision::Deny {
                retry_after: weighted_retry(
                    &counted.events,
                    counted.total,
                    need,
                    capacity,
                    window,
                    now,
                ),
            };
        }
        if weight > 0 {
            counted.events.push_back((now, weight));
            counted.total = counted.total.saturating_add(weight);
        }
        Decision::Allow
    }

    fn decide(&self, key: &str, limit: Rate, now: Instant) -> Decision {
        self.sweep(now);
        let mut events = self.windows.entry(key.to_owned()).or_default();
        while events
            .front()
            .is_some_and(|first| now.duration_since(*first) >= limit.per)
        {
            events.pop_front();
        }
        let count = usize::try_from(limit.count).unwrap_or(usize::MAX);
        if events.len() >= count {
            let oldest = events.front().copied().unwrap_or(now);
            return Decision::Deny {
                retry_after: limit.per.saturating_sub(now.duration_since(oldest)),
            };
        }
        events.push_back(now);
        Decision::Allow
    }
}

/// How long until enough of `events` leaves the window for `need` more units to fit; the whole
/// window when they never can.
fn weighted_retry(
    events: &VecDeque<(Instant, u64)>,
    total: u64,
    need: u64,
    capacity: u64,
    window: Duration,
    now: Instant,
) -> Duration {
    let mut left = total;
    for (at, units) in events {
        left = left.saturating_sub(*units);
        if left.saturating_add(need) <= capacity {
            return window.saturating_sub(now.duration_since(*at));
        }
    }
    window
}

impl RateLimiter for InProcessLimiter {
    fn check<'a>(&'a self, key: &'a str, limit: Rate) -> BoxFuture<'a, Decision> {
        let decision = self.decide(key, limit, Instant::now());
        Box::pin(async move { decision })
    }

    fn check_weighted<'a>(
        &'a self,
        key: &'a str,
        weight: u64,
        capacity: u64,
        window: Duration,
    ) -> BoxFuture<'a, Decision> {
        let decision = self.decide_weighted(key, weight, capacity, window, Instant::now());
        Box::pin(async move { decision })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allows_count_per_window_then_denies_until_the_oldest_leaves() {
        let limiter = InProcessLimiter::new();
        let rate = Rate {
            count: 3,
            per: Duration::from_secs(10),
        };
        let start = Instant::now();
        for _ in 0..3 {
            assert_eq!(limiter.decide("u", rate, start), Decision::Allow);
        }
        assert!(matches!(
            limiter.decide("u", rate, start + Duration::from_secs(1)),
            Decision::Deny { retry_after } if retry_after == Duration::from_secs(9)
        ));
        assert_eq!(limiter.decide("other", rate, start), Decision::Allow);
        assert_eq!(
            limiter.decide("u", rate, start + Duration::from_secs(10)),
            Decision::Allow
        );
    }

    #[test]
    fn weighted_units_fit_the_capacity_then_wait_for_the_oldest_to_leave() {
        let limiter = InProcessLimiter::new();
        let day = Duration::from_secs(86_400);
        let start = Instant::now();
        assert_eq!(
            limiter.decide_weighted("u", 600, 1000, day, start),
            Decision::Allow
        );
        let later = start + Duration::from_secs(3600);
        assert_eq!(
            limiter.decide_weighted("u", 400, 1000, day, later),
            Decision::Allow
        );
        // Full: even asking whether anything is left is denied, until the first 600 leave.
        assert_eq!(
            limiter.decide_weighted("u", 0, 1000, day, later),
            Decision::Deny {
                retry_after: Duration::from_secs(86_400 - 3600)
            }
        );
        assert_eq!(
            limiter.decide_weighted("u", 500, 1000, day, start + day),
            Decision::Allow
        );
        // More than the capacity never fits.
        assert_eq!(
            limiter.decide_weighted("v", 1001, 1000, day, start),
            Decision::Deny { retry_after: day }
        );
        assert_eq!(
            limiter.decide_weighted("v", 0, 1000, day, start),
            Decision::Allow
        );
    }

    #[test]
    fn rates_parse() {
        let rate: Rate = "30/10s".parse().unwrap();
        assert_eq!(rate.count, 30);
        assert_eq!(rate.per, Duration::from_secs(10));
        let rate: Rate = "3/1m".parse().unwrap();
        assert_eq!(rate.per, Duration::from_secs(60));
        assert_eq!("5/m".parse::<Rate>().unwrap().per, Duration::from_secs(60));
        assert!("0/1s".parse::<Rate>().is_err());
        assert!("3 per minute".parse::<Rate>().is_err());
        assert!("3/1y".parse::<Rate>().is_err());
    }
}

//! The message-flow scenarios: fan-out (one publisher, N subscribers on one topic) and pairs
//! (N publishers, each to its own destination with its own subscriber). Both are built from the
//! same two tasks, [`publish`] and [`consume`], tied together by a [`Flow`].
//!
//! `run` drives a run phase by phase; `publish` and `consume` are the two tasks, `body` the
//! timestamped body they exchange, `report` the result.

mod body;
mod consume;
mod publish;
mod report;
mod run;

use std::sync::Arc;
use std::time::Duration;

use crate::client::Target;
use crate::{RunOptions, run_id};

pub use report::FlowReport;
use run::run_groups;

/// How publishers behave.
#[derive(Clone, Debug)]
pub struct Load {
    /// Messages per second per publisher; 0 publishes as fast as the window allows.
    pub rate: f64,
    /// How long to publish.
    pub duration: Duration,
    /// Body size in bytes (at least the timestamp header the body starts with).
    pub payload: usize,
    /// At rate 0: messages a publisher may have in flight (sent, not yet received by every
    /// subscriber).
    pub window: u64,
    /// Ask for a RECEIPT every this many messages.
    pub receipt_every: u64,
    /// After publishing, how long to wait without progress for the last messages.
    pub drain: Duration,
}

/// One publisher's destination and the subscribers it feeds.
pub(super) struct Group {
    pub(super) destination: String,
    pub(super) subscribers: usize,
}

/// One publisher, `subscribers` subscribers on one topic.
///
/// # Errors
///
/// When the publisher cannot connect.
pub async fn fanout(
    target: Arc<Target>,
    options: &RunOptions,
    subscribers: usize,
    topic: Option<String>,
    load: Load,
) -> anyhow::Result<FlowReport> {
    let name = topic.unwrap_or_else(|| format!("lg-fanout-{}", run_id()));
    let groups = vec![Group {
        destination: format!("/topic/{name}"),
        subscribers,
    }];
    run_groups("fanout", target, options, groups, "topic", load).await
}

/// `pairs` publishers, each with its own destination (`/topic/...` or `/queue/...`) and one
/// subscriber.
///
/// # Errors
///
/// When no publisher can connect.
pub async fn pairs(
    target: Arc<Target>,
    options: &RunOptions,
    pairs: usize,
    kind: &str,
    load: Load,
) -> anyhow::Result<FlowReport> {
    let run = run_id();
    let groups = (0..pairs)
        .map(|i| Group {
            destination: format!("/{kind}/lg-pair-{run}-{i}"),
            subscribers: 1,
        })
        .collect();
    run_groups("pairs", target, options, groups, kind, load).await
}

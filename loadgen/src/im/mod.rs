//! The IM scenarios, for our broker only: they go through its IM layer, so every message is
//! stored in the database before it is acknowledged and pushed.
//!
//! - `im`: N user pairs; user `a_i` sends private messages to `b_i` over `/app/private.send`,
//!   each SEND with a `receipt`; both users subscribe to `/user/queue/messages`. Open loop at a
//!   total rate, or closed loop with a window of outstanding receipts per sender.
//! - `group`: one group of M members (created over REST), all online on `/topic/group.<id>`;
//!   the owner sends at a modest rate; every member's copy is timed, and so is each message's
//!   arrival at the last member.
//! - `notify`: system notifications over REST to many recipients per call (`notify.rs`).
//!
//! A message's content starts with `<n> <send time ns> `: `n` numbers it within its sender,
//! and the time is the shared monotonic clock of [`crate::stats::now_ns`] (in open loop, the time the send
//! was scheduled for, so that a late generator or a backed-up broker shows as latency rather
//! than silently lowering the offered rate). `receipt:<n>` ties each RECEIPT to its SEND, so
//! `lost` counts exactly the RECEIPTed messages a recipient never got.
//!
//! This file builds each scenario's [`run::Plan`] (who sends, who watches whom, what each
//! session subscribes to); `run` executes a plan phase by phase, `session` reads what a
//! session receives, `send` writes the SENDs, `report` is the result, `verify` checks the
//! stored rows and `rest` creates the group.

mod notify;
mod report;
mod rest;
mod run;
mod send;
mod session;
mod verify;

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail};

use crate::client::Target;
use crate::{RunOptions, run_id};

pub use notify::{NotifyLoad, notify};
pub use report::ImReport;
use rest::http_json;
use run::{Plan, Watched, run_plan};
use send::SendSpec;
use session::{Watch, new_shared};

/// How senders behave.
#[derive(Clone, Debug)]
pub struct ImLoad {
    /// Messages per second over all senders; 0 sends as fast as `window` allows (closed loop).
    pub rate: f64,
    /// How long to send.
    pub duration: Duration,
    /// Characters of content (at least the `<n> <ns> ` prefix).
    pub payload: usize,
    /// Sends per sender in flight, at most: awaiting their RECEIPT, or their delivery (see
    /// `close_on`).
    pub window: u64,
    /// What ends a send's time in the window.
    pub close_on: CloseOn,
    /// After sending, how long to wait without progress for the last receipts and copies.
    pub drain: Duration,
    /// Check the stored messages in this PostgreSQL database afterwards.
    pub verify_postgres: Option<String>,
}

/// What takes a send out of a sender's window (closed loop).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CloseOn {
    /// Its RECEIPT: the broker stored it.
    Receipt,
    /// Its arrival at the recipient's session (every member's, for a group), as an
    /// application that waits for the recipient's copy or the echo.
    Delivery,
}

/// The user id of session `number` (tokens minted per session).
fn user_of(target: &Target, number: usize) -> anyhow::Result<String> {
    Ok(target.credentials(number)?.0)
}

/// `pairs` senders, each sending round-robin to its own `conversations` recipients: sender
/// `i` is session `i × (conversations + 1)`, its recipients the sessions right after it (with
/// one conversation, session `2i` sends to `2i + 1`). Message `n` of a sender goes to its
/// recipient `n mod conversations`.
///
/// # Errors
///
/// When tokens cannot be minted or no sender can connect.
pub async fn pairs(
    target: Arc<Target>,
    options: &RunOptions,
    pairs: usize,
    conversations: usize,
    load: ImLoad,
) -> anyhow::Result<ImReport> {
    if conversations == 0 {
        bail!("--conversations must be at least 1");
    }
    let setup_start = Instant::now();
    let client_prefix = format!("{}-", run_id());
    let per_sender = conversations + 1;
    let sessions = pairs * per_sender;
    let mut senders = Vec::with_capacity(pairs);
    let mut watches = Vec::with_capacity(sessions);
    let mut watched_sender = Vec::with_capacity(sessions);
    let mut greetings = Vec::with_capacity(sessions);
    for i in 0..pairs {
        let base = i * per_sender;
        let a = user_of(&target, base)?;
        let recipients: Vec<String> = (1..per_sender)
            .map(|j| user_of(&target, base + j))
            .collect::<anyhow::Result<_>>()?;
        senders.push((
            base,
            SendSpec {
                user: a.clone(),
                destination: "/app/private.send".to_owned(),
                heads: recipients
                    .iter()
                    .map(|b| format!("{{\"to\":\"{b}\","))
                    .collect(),
                client_prefix: client_prefix.clone(),
            },
        ));
        // The sender's own copies and the greetings are not deliveries.
        watches.push(Watch::of(String::new()));
        watched_sender.push(None);
        greetings.push(None);
        for j in 0..conversations {
            watches.push(Watch::of(a.clone()));
            watched_sender.push(Some(Watched {
                sender: base,
                stride: conversations as u64,
                offset: j as u64,
            }));
            greetings.push(Some(format!(
                "{{\"to\":\"{a}\",\"clientMsgId\":\"{client_prefix}greeting\",\"content\":\"hi\"}}"
            )));
        }
    }
    let subscriptions = (0..sessions)
        .map(|_| {
            vec![
                ("/user/queue/messages".to_owned(), "m"),
                ("/user/queue/errors".to_owned(), "e"),
            ]
        })
        .collect();
    let plan = Plan {
        senders,
        watches,
        subscriptions,
        watched_sender,
        greetings,
        client_prefix,
        scenario: "im",
        recipients_per_message: 1,
        conversations,
        is_sender: Arc::new(move |number| number % per_sender == 0),
    };
    run_plan(target, options, plan, load, new_shared(false), setup_start).await
}

/// A group of `members` sessions (session 0 its owner) created over REST; the owner sends to
/// it and every member, the owner included, should get every message.
///
/// # Errors
///
/// When the group cannot be created or the owner cannot connect.
pub async fn group(
    target: Arc<Target>,
    options: &RunOptions,
    members: usize,
    load: ImLoad,
) -> anyhow::Result<ImReport> {
    if members == 0 {
        bail!("--members must be at least 1");
    }
    let setup_start = Instant::now();
    let (owner, token) = target.credentials(0)?;
    let member_ids: Vec<String> = (1..members)
        .map(|n| user_of(&target, n))
        .collect::<anyhow::Result<_>>()?;
    let (status, created) = http_json(
        &target,
        "POST",
        "/api/v1/groups",
        &token,
        &serde_json::json!({"name": format!("loadgen {}", run_id()), "memberIds": member_ids}),
        Duration::from_secs(30),
    )
    .await?;
    let id = created
        .get("id")
        .and_then(serde_json::Value::as_str)
        .filter(|_| status == 201)
        .ok_or_else(|| anyhow!("POST /api/v1/groups answered {status}: {created}"))?
        .to_owned();
    let client_prefix = format!("{}-", run_id());
    let topic = format!("/topic/group.{id}");
    let senders = vec![(
        0,
        SendSpec {
            user: owner.clone(),
            destination: "/app/group.send".to_owned(),
            heads: vec![format!("{{\"conversationId\":\"{id}\",")],
            client_prefix: client_prefix.clone(),
        },
    )];
    let mut subscriptions = vec![vec![
        (topic.clone(), "g"),
        ("/user/queue/errors".to_owned(), "e"),
    ]];
    subscriptions.extend((1..members).map(|_| vec![(topic.clone(), "g")]));
    let plan = Plan {
        senders,
        watches: (0..members).map(|_| Watch::of(owner.clone())).collect(),
        subscriptions,
        watched_sender: (0..members)
            .map(|_| {
                Some(Watched {
                    sender: 0,
                    stride: 1,
                    offset: 0,
                })
            })
            .collect(),
        greetings: vec![None; members],
        client_prefix,
        scenario: "group",
        recipients_per_message: members,
        conversations: 1,
        is_sender: Arc::new(|number| number == 0),
    };
    run_plan(target, options, plan, load, new_shared(true), setup_start).await
}

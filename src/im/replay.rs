//! Resume inside STOMP for the destinations whose messages one conversation orders: a group's
//! topic and a user's notifications (their `system_<userId>` conversation). A SUBSCRIBE with
//! `since-seq:<n>` gets, on that subscription, the messages stored after seq `n` as the caller
//! may see them now (recalled ones as recalled, edited ones edited, deleted ones left out),
//! each with `replay:true`, then the live ones without a gap or a repeat (see
//! [`crate::hub::replay`]).
//!
//! Bounded by `limits.max_replay` messages and `limits.max_replay_bytes` of their bodies: the
//! newest within both are replayed, preceded by `event:replay.truncated` naming the seqs to
//! page through REST instead.

use std::sync::Arc;

use serde_json::json;

use super::Im;
use super::json::MessageJson;
use crate::auth::Identity;
use crate::domain::{ConversationId, GROUP_TOPIC_PREFIX};
use crate::hub::Publication;
use crate::router::{HandlerFuture, Replay, ReplaySource};
use crate::store::HistoryQuery;

/// History pages are read this many messages at a time.
const PAGE: i64 = 100;

/// Which conversation a replayed destination names, and the event its messages carry.
#[derive(Clone, Copy)]
pub enum Replayed {
    /// `/topic/group.<id>`: `message.new`.
    GroupTopic,
    /// `/user/queue/notifications`: `notification.new` of `system_<userId>`.
    Notifications,
}

/// The IM layer's [`ReplaySource`] for one kind of destination.
pub struct ImReplay {
    /// The service.
    pub im: Im,
    /// Which destination.
    pub kind: Replayed,
}

impl ImReplay {
    /// A source for `kind`.
    pub fn new(im: &Im, kind: Replayed) -> Arc<ImReplay> {
        Arc::new(ImReplay {
            im: im.clone(),
            kind,
        })
    }
}

impl ReplaySource for ImReplay {
    fn replay<'a>(
        &'a self,
        identity: &'a Identity,
        name: &'a str,
        since: i64,
    ) -> HandlerFuture<'a, Replay> {
        Box::pin(async move {
            let (conversation, event) = match self.kind {
                Replayed::GroupTopic => (
                    name.strip_prefix(GROUP_TOPIC_PREFIX)
                        .unwrap_or_default()
                        .to_owned(),
                    "message.new",
                ),
                Replayed::Notifications => (
                    ConversationId::system(&identity.user_id).into(),
                    "notification.new",
                ),
            };
            if !self
                .im
                .within_rate(super::limits::Action::Replay, &identity.user_id)
                .await
            {
                return Replay {
                    publications: vec![truncated(Some(&conversation), Some(since), None)],
                    up_to: Some(since),
                };
            }
            match self.im.missed(identity, &conversation, since, event).await {
                Ok(replay) => replay,
                // No notification yet: the conversation is created by the first one.
                Err(error) if error.code == crate::app_error::ErrorCode::NotFound => Replay {
                    publications: Vec::new(),
                    up_to: Some(since),
                },
                Err(error) => {
                    tracing::warn!(%error, conversation, "replay failed");
                    Replay {
                        publications: vec![truncated(Some(&conversation), Some(since), None)],
                        up_to: Some(since),
                    }
                }
            }
        })
    }
}

/// `event:replay.truncated`: the client pages `GET .../messages?afterSeq=<afterSeq>` up to
/// `beforeSeq` (to the end when null). On `/user/queue/messages` all three may be null: nothing
/// could be replayed, and the client re-syncs its private conversations over REST.
pub(super) fn truncated(
    conversation: Option<&str>,
    after: Option<i64>,
    before: Option<i64>,
) -> Publication {
    let body = json!({"conversationId": conversation, "afterSeq": after, "beforeSeq": before});
    let mut publication = Publication::json_event("replay.truncated", body.to_string());
    publication.headers.push("replay", "true");
    publication
}

impl Im {
    /// The messages of `conversation` after `since` that `caller` may see, as replayed
    /// publications of `event`: the newest within `limits.max_replay` and
    /// `limits.max_replay_bytes`, after a `replay.truncated` when older ones are left out.
    async fn missed(
        &self,
        caller: &Identity,
        conversation: &str,
        since: i64,
        event: &'static str,
    ) -> Result<Replay, crate::app_error::AppError> {
        let bounds = self.settings().replay;
        let mut newest_first: Vec<(i64, Vec<u8>)> = Vec::new();
        let mut bytes = 0;
        let mut before: Option<i64> = None;
        let mut complete = false;
        'pages: loop {
            let page = self
                .history(
                    caller,
                    conversation,
                    HistoryQuery {
                        before_seq: before,
                        after_seq: None,
                        limit: PAGE,
                    },
                )
                .await?;
            let full = i64::try_from(page.len()).unwrap_or(0) == PAGE;
            for message in page.iter().rev() {
                if message.seq <= since {
                    complete = true;
                    break 'pages;
                }
                let body = super::to_json(&MessageJson {
                    reactions: Vec::new(),
                    ..message.clone()
                });
                if newest_first.len() >= bounds.max_messages
                    || bytes + body.len() > bounds.max_bytes
                {
                    break 'pages;
                }
                bytes += body.len();
                newest_first.push((message.seq, body));
            }
            match page.first() {
                Some(oldest) if full => before = Some(oldest.seq),
                _ => {
                    complete = true;
                    break;
                }
            }
        }
        // The client has everything up to `since`: a live message at or below it (one
        // committed after the subscription but ordered before) is not delivered either.
        let up_to = Some(
            newest_first
                .first()
                .map_or(since, |(seq, _)| (*seq).max(since)),
        );
        let mut publications = Vec::with_capacity(newest_first.len() + 1);
        if !complete {
            let first = newest_first.last().map(|(seq, _)| *seq);
            publications.push(truncated(Some(conversation), Some(since), first));
        }
        for (seq, body) in newest_first.into_iter().rev() {
            let mut publication = Publication::json_event(event, body);
            publication.headers.push("replay", "true");
            publication.sequence = Some(seq);
            publications.push(publication);
        }
        Ok(Replay {
            publications,
            up_to,
        })
    }
}

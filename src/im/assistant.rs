//! Assistant (customer-service) conversations: `assistant_<userId>` between a user and every
//! identity with role `staff`.
//!
//! The user is the conversation's only member (it is in their conversation list and unread
//! counts); staff are not members but may read and write every assistant conversation. New
//! messages and recalls go to the user's `/user/queue/messages` and to the staff-only topic
//! `/topic/assistant`, which reaches staff on every node through the relay.

use serde::Serialize;

use super::Im;
use super::json::MessageJson;
use crate::app_error::{AppError, ErrorCode};
use crate::auth::{Identity, Role};
use crate::delivery::Route;
use crate::domain::{ConversationId, ConversationKind};
use crate::hub::Publication;
use crate::router::{HandlerFuture, SubscribeGuard};
use crate::store::{AssistantSummary, Target};
use schema::{ConversationRow, MemberRow};

/// The staff topic: `/topic/assistant`.
pub const ASSISTANT_TOPIC: &str = "assistant";

/// The user of an assistant conversation id; `None` for any other text.
fn owner_of(conversation: &str) -> Option<String> {
    let id = ConversationId::parse(conversation).ok()?;
    match id.kind() {
        ConversationKind::Assistant => id.owner().map(str::to_owned),
        _ => None,
    }
}

/// Whether a stored conversation is an assistant conversation.
fn is_assistant(row: &ConversationRow) -> bool {
    row.kind.parse() == Ok(ConversationKind::Assistant)
}

impl Im {
    /// Where a send to assistant conversation `id` goes: the caller's own (created by its first
    /// message), or, for staff, any existing one.
    ///
    /// # Errors
    ///
    /// `NOT_FOUND` for staff naming one that does not exist, and for anyone else naming
    /// another user's (whether it exists or not).
    pub(super) async fn assistant_target(
        &self,
        sender: &Identity,
        id: &ConversationId,
    ) -> Result<Target, AppError> {
        let Some(user) = id
            .owner()
            .filter(|_| id.kind() == ConversationKind::Assistant)
        else {
            return Err(super::no_conversation(id.as_str()));
        };
        if user == sender.user_id {
            return Ok(Target::Assistant {
                user: user.to_owned(),
            });
        }
        if !sender.has_role(Role::Staff) {
            return Err(super::no_conversation(id.as_str()));
        }
        let row = self.conversation(id).await?;
        if !is_assistant(&row) {
            return Err(super::no_conversation(id.as_str()));
        }
        Ok(Target::Conversation(id.to_string()))
    }

    /// The caller's access to a conversation: their membership, or none for staff reading an
    /// assistant conversation.
    ///
    /// # Errors
    ///
    /// `NOT_FOUND`, `NOT_MEMBER` (groups).
    pub(super) async fn access(
        &self,
        conversation: &ConversationId,
        caller: &Identity,
    ) -> Result<(ConversationRow, Option<MemberRow>), AppError> {
        match self.membership(conversation, &caller.user_id).await {
            Ok((row, member)) => Ok((row, Some(member))),
            Err(error)
                if error.code == ErrorCode::NotFound
                    && caller.has_role(Role::Staff)
                    && conversation.kind() == ConversationKind::Assistant =>
            {
                let row = self.conversation(conversation).await?;
                if is_assistant(&row) {
                    Ok((row, None))
                } else {
                    Err(error)
                }
            }
            Err(error) => Err(error),
        }
    }

    /// Pushes a new message of an assistant conversation: to its user with their inbox
    /// `position`, and to staff.
    pub(super) fn push_assistant_new(
        &self,
        conversation: &str,
        body: &[u8],
        position: Option<i64>,
    ) {
        self.publish_assistant(
            conversation,
            super::messages::inbox_publication(body.to_vec(), position),
            Publication::json_event("message.new", body.to_vec()),
        );
    }

    /// Pushes an event of an assistant conversation to its user and to staff.
    pub(super) fn push_assistant(&self, conversation: &str, event: &'static str, body: &[u8]) {
        self.publish_assistant(
            conversation,
            Publication::json_event(event, body.to_vec()),
            Publication::json_event(event, body.to_vec()),
        );
    }

    fn publish_assistant(&self, conversation: &str, to_user: Publication, to_staff: Publication) {
        if let Some(user) = owner_of(conversation) {
            self.hub().publish(
                &Route::User {
                    user,
                    queue: "messages".to_owned(),
                },
                to_user,
            );
        }
        self.hub()
            .publish(&Route::Topic(ASSISTANT_TOPIC.to_owned()), to_staff);
    }
}

/// An assistant conversation in the staff list.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AssistantJson {
    /// The conversation id, `assistant_<userId>`.
    pub id: String,
    /// Always `assistant`.
    #[serde(rename = "type")]
    pub kind: ConversationKind,
    /// The user it is with.
    pub user_id: String,
    /// The newest message.
    pub last_message: Option<MessageJson>,
    /// The newest seq.
    pub last_seq: i64,
    /// When it last had a message.
    pub last_activity_at: i64,
    /// How far the user has read.
    pub user_read_seq: i64,
}

/// One page of the staff list of assistant conversations.
pub struct AssistantPage {
    /// The conversations, most recently active first.
    pub items: Vec<AssistantJson>,
    /// Where the next page starts, when there is one.
    pub next_cursor: Option<String>,
}

impl From<&AssistantSummary> for AssistantJson {
    fn from(summary: &AssistantSummary) -> AssistantJson {
        let row = &summary.conversation;
        AssistantJson {
            id: row.id.clone(),
            kind: ConversationKind::Assistant,
            user_id: owner_of(&row.id).unwrap_or_default(),
            last_message: summary.last_message.as_ref().map(MessageJson::from),
            last_seq: row.last_seq,
            last_activity_at: row.last_activity_at,
            user_read_seq: summary.user_read_seq,
        }
    }
}

impl Im {
    /// Every assistant conversation, most recently active first, for role `staff`.
    /// `limit` is the page size as the request gave it: 1 to 100, 20 when absent.
    ///
    /// # Errors
    ///
    /// `FORBIDDEN` without role `staff`; `INVALID_ARGUMENT` for a bad limit; `UNAVAILABLE`.
    pub async fn assistant_conversations(
        &self,
        caller: &Identity,
        limit: Option<&str>,
        cursor: Option<&str>,
    ) -> Result<AssistantPage, AppError> {
        if !caller.has_role(Role::Staff) {
            return Err(AppError::forbidden("the assistant list needs role staff"));
        }
        let limit = super::page_limit(limit)?;
        let page = self.store().assistant_conversations(limit, cursor).await?;
        Ok(AssistantPage {
            items: page.items.iter().map(AssistantJson::from).collect(),
            next_cursor: page.next_cursor,
        })
    }
}

/// Only role `staff` may subscribe to `/topic/assistant`; other names under it do not exist.
pub(super) struct AssistantGuard;

impl SubscribeGuard for AssistantGuard {
    fn authorize<'a>(
        &'a self,
        identity: &'a Identity,
        name: &'a str,
    ) -> HandlerFuture<'a, Result<(), AppError>> {
        Box::pin(async move {
            if name != ASSISTANT_TOPIC {
                return Err(AppError::forbidden(format!("no topic /topic/{name}")));
            }
            if !identity.has_role(Role::Staff) {
                return Err(AppError::forbidden("/topic/assistant needs role staff"));
            }
            Ok(())
        })
    }
}

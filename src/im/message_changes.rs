//! Changes to a stored message other than recall: edits of its text by its sender, reactions
//! by the members, pins in its conversation. Each is pushed where the message itself was
//! pushed (see [`Im::push_where_sent`]).
//!
//! Reactions are coalesced: a popular message in a large group would otherwise cost one push
//! per member per reaction. Changes to one message within [`REACTION_SPACING`] become one
//! `message.reactions` event with the counts as they then stand and the changes that led there.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use schema::{ConversationRow, MessageRow};
use serde::Serialize;
use serde_json::json;

use super::Im;
use super::json::{MessageJson, ReactionJson};
use super::limits::Action;
use crate::app_error::{AppError, ErrorCode};
use crate::auth::Identity;
use crate::delivery::Route;
use crate::domain::{
    ConversationId, ConversationKind, ConversationStatus, MemberRole, MessageStatus,
};
use crate::store::reactions::{PinRow, Reaction};
use crate::util::{lock, now_ms};

/// How long reactions to one message gather before they are pushed as one event.
pub const REACTION_SPACING: Duration = Duration::from_millis(300);

/// Changes one coalesced event names; the counts are always complete.
const MAX_CHANGES: usize = 50;

/// Messages with reactions waiting to be pushed; past it they are pushed without waiting.
const MAX_WAITING: usize = 10_000;

/// Characters of an emoji (a sequence such as a flag or a family is several).
const EMOJI_MAX_CHARS: usize = 16;

/// One reaction change, as `message.reactions` names it.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct ReactionChange {
    user_id: String,
    emoji: String,
    on: bool,
}

/// Reactions waiting to be pushed, per message.
#[derive(Default)]
pub(super) struct PendingReactions {
    waiting: Mutex<HashMap<i64, (MessageRow, Vec<ReactionChange>)>>,
}

/// A pinned message, as `conversation.updated` and `GET .../pins` carry it.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PinJson {
    /// The message, as the caller may see it.
    pub message: MessageJson,
    /// Who pinned it.
    pub pinned_by: String,
    /// When.
    pub pinned_at: i64,
}

impl Im {
    /// Replaces the text of a message: by its sender, a text message not recalled, within
    /// `im.edit_window_s`, under the rules of a send (length, sensitive words, bans, a group's
    /// mutes, a private peer's block) and `limits.edit_rate`. Pushes `message.edited` where the
    /// message was pushed; returns the edited message.
    ///
    /// # Errors
    ///
    /// `NOT_FOUND`, `FORBIDDEN`, `INVALID_ARGUMENT`, `CONTENT_TOO_LONG`, `EDIT_WINDOW_EXPIRED`,
    /// `CONFLICT` (recalled), `SENSITIVE_CONTENT`, `BANNED`, `BLOCKED`, `RATE_LIMITED`,
    /// `UNAVAILABLE`.
    pub async fn edit(
        &self,
        caller: &Identity,
        id: i64,
        content: String,
    ) -> Result<MessageJson, AppError> {
        let me = caller.user_id.as_str();
        let visible = self
            .visible(caller, id)
            .await?
            .ok_or_else(super::no_message)?;
        let message = &visible.message;
        if message.sender_id != me {
            return Err(AppError::forbidden("only the sender may edit this message"));
        }
        if message.status.parse() == Ok(MessageStatus::Recalled) {
            return Err(AppError::new(
                ErrorCode::Conflict,
                "a recalled message cannot be edited",
            ));
        }
        if message.format != "text" {
            return Err(AppError::invalid("only text messages can be edited"));
        }
        let window = i64::try_from(self.settings().edit_window.as_millis()).unwrap_or(i64::MAX);
        if now_ms() - message.created_at > window {
            return Err(AppError::new(
                ErrorCode::EditWindowExpired,
                "the edit window has passed",
            ));
        }
        let limit = self.settings().text_max_chars;
        if content.chars().count() > limit {
            return Err(AppError::new(
                ErrorCode::ContentTooLong,
                format!("content is longer than {limit} characters"),
            ));
        }
        if content.trim().is_empty() {
            return Err(AppError::invalid("text content is empty"));
        }
        self.check_ban(me)?;
        let conversation = &visible.id;
        match conversation.kind() {
            ConversationKind::Group => {
                let member = visible.member.as_ref().ok_or_else(super::no_message)?;
                still_active(&visible.conversation, conversation)?;
                Self::check_group_send(&visible.conversation, member)?;
            }
            ConversationKind::Private => {
                if let Some(peer) = conversation.peer(me)
                    && self.store().blocked_between(peer, me).await?
                {
                    return Err(AppError::new(
                        ErrorCode::Blocked,
                        format!("{peer} does not accept your messages"),
                    ));
                }
            }
            _ => {}
        }
        self.limit(Action::Edit, me).await?;
        let mut content = content;
        self.moderate(me, conversation.as_str(), &mut content)
            .await?;
        let edited = self.store().edit(id, &content, now_ms()).await?;
        self.record(
            "message.edited",
            json!({
                "conversationId": edited.conversation_id,
                "messageId": edited.id.to_string(),
                "senderId": edited.sender_id,
            }),
        )
        .await;
        let body = super::to_json(&json!({
            "conversationId": edited.conversation_id,
            "messageId": edited.id.to_string(),
            "seq": edited.seq,
            "content": edited.content,
            "editedAt": edited.edited_at,
        }));
        self.push_where_sent(conversation, "message.edited", &body)
            .await?;
        let mut view = MessageJson::from(&edited);
        view.status = visible.message.status;
        Ok(view)
    }

    /// Adds (`on`) or takes back a reaction of the caller to a message they can see: at most
    /// `im.max_reaction_kinds` distinct emoji per message, one of each per user, under
    /// `limits.reaction_rate`. A change is pushed as `message.reactions`, coalesced per message.
    ///
    /// # Errors
    ///
    /// `NOT_FOUND`, `INVALID_ARGUMENT` (emoji), `CONFLICT` (recalled, or too many kinds),
    /// `RATE_LIMITED`, `UNAVAILABLE`.
    pub async fn react(
        &self,
        caller: &Identity,
        id: i64,
        emoji: &str,
        on: bool,
    ) -> Result<(), AppError> {
        let me = caller.user_id.as_str();
        check_emoji(emoji)?;
        let visible = self
            .visible(caller, id)
            .await?
            .ok_or_else(super::no_message)?;
        let message = visible.message;
        if message.status.parse() == Ok(MessageStatus::Recalled) {
            return Err(AppError::new(
                ErrorCode::Conflict,
                "a recalled message takes no reactions",
            ));
        }
        if visible.id.kind() == ConversationKind::Group {
            still_active(&visible.conversation, &visible.id)?;
        }
        self.limit(Action::React, me).await?;
        let reaction = Reaction {
            message_id: id,
            conversation_id: &message.conversation_id,
            user: me,
            emoji,
            on,
        };
        let changed = self
            .store()
            .react(reaction, self.settings().max_reaction_kinds, now_ms())
            .await?;
        if changed {
            self.reaction_changed(
                message,
                ReactionChange {
                    user_id: me.to_owned(),
                    emoji: emoji.to_owned(),
                    on,
                },
            );
        }
        Ok(())
    }

    /// Queues a change for the message's next `message.reactions` event, starting its wait if
    /// none is under way.
    fn reaction_changed(&self, message: MessageRow, change: ReactionChange) {
        let id = message.id;
        let wait = {
            let mut waiting = lock(&self.inner.reactions.waiting);
            if let Some((_, changes)) = waiting.get_mut(&id) {
                if changes.len() < MAX_CHANGES {
                    changes.push(change);
                }
                return;
            }
            let crowded = waiting.len() >= MAX_WAITING;
            waiting.insert(id, (message, vec![change]));
            !crowded
        };
        let im = self.clone();
        tokio::spawn(async move {
            if wait {
                tokio::time::sleep(REACTION_SPACING).await;
            }
            let Some((message, changes)) = lock(&im.inner.reactions.waiting).remove(&id) else {
                return;
            };
            if let Err(error) = im.push_reactions(&message, &changes).await {
                tracing::warn!(%error, message = id, "reactions not pushed");
            }
        });
    }

    async fn push_reactions(
        &self,
        message: &MessageRow,
        changes: &[ReactionChange],
    ) -> Result<(), AppError> {
        let counts = self
            .store()
            .reactions(&[message.id], "")
            .await?
            .remove(&message.id)
            .unwrap_or_default();
        let reactions: Vec<ReactionJson> = counts
            .into_iter()
            .map(|c| ReactionJson {
                emoji: c.emoji,
                count: c.count,
                me: None,
            })
            .collect();
        let body = super::to_json(&json!({
            "conversationId": message.conversation_id,
            "messageId": message.id.to_string(),
            "seq": message.seq,
            "reactions": reactions,
            "changes": changes,
        }));
        let conversation = super::conversation_id(&message.conversation_id)?;
        self.push_where_sent(&conversation, "message.reactions", &body)
            .await
    }

    /// Fills in the reactions of `items` (rows of the same messages) as `viewer` sees them:
    /// one lookup for all of them.
    ///
    /// # Errors
    ///
    /// `UNAVAILABLE`.
    pub(super) async fn with_reactions(
        &self,
        items: &mut [MessageJson],
        viewer: &str,
    ) -> Result<(), AppError> {
        let ids: Vec<i64> = items.iter().filter_map(|m| m.id.parse().ok()).collect();
        let mut all = self.store().reactions(&ids, viewer).await?;
        for item in items {
            if let Some(counts) = item.id.parse().ok().and_then(|id: i64| all.remove(&id)) {
                item.reactions = counts
                    .into_iter()
                    .map(|c| ReactionJson {
                        emoji: c.emoji,
                        count: c.count,
                        me: Some(c.mine),
                    })
                    .collect();
            }
        }
        Ok(())
    }

    /// Pins (`on`) or unpins a message the caller can see in its conversation: either user of
    /// a private chat, a group's owner and admins; at most `im.max_pins` per conversation,
    /// under `limits.pin_rate`. A change pushes `conversation.updated`
    /// `{conversationId, pins}`; returns the pins.
    ///
    /// # Errors
    ///
    /// `NOT_FOUND`, `FORBIDDEN`, `CONFLICT` (recalled, or too many pins), `RATE_LIMITED`,
    /// `UNAVAILABLE`.
    pub async fn pin(
        &self,
        caller: &Identity,
        id: i64,
        on: bool,
    ) -> Result<Vec<PinJson>, AppError> {
        let me = caller.user_id.as_str();
        let visible = self
            .visible(caller, id)
            .await?
            .ok_or_else(super::no_message)?;
        let (message, conversation) = (visible.message, visible.id);
        match conversation.kind() {
            ConversationKind::Private => {}
            ConversationKind::Group => {
                still_active(&visible.conversation, &conversation)?;
                let manages = visible
                    .member
                    .as_ref()
                    .is_some_and(|m| m.role.parse().is_ok_and(MemberRole::manages));
                if !manages {
                    return Err(AppError::forbidden(
                        "only the owner and admins pin messages in a group",
                    ));
                }
            }
            _ => {
                return Err(AppError::forbidden(
                    "messages are pinned in chats and groups",
                ));
            }
        }
        if on && message.status.parse() == Ok(MessageStatus::Recalled) {
            return Err(AppError::new(
                ErrorCode::Conflict,
                "a recalled message cannot be pinned",
            ));
        }
        self.limit(Action::Pin, me).await?;
        let changed = if on {
            let row = PinRow {
                conversation_id: message.conversation_id.clone(),
                message_id: id,
                pinned_by: me.to_owned(),
                pinned_at: now_ms(),
            };
            self.store().pin(&row, self.settings().max_pins).await?
        } else {
            self.store().unpin(conversation.as_str(), id).await?
        };
        let pins = self.pin_views(conversation.as_str()).await?;
        if changed {
            let body = super::to_json(&json!({
                "conversationId": conversation.as_str(),
                "pins": pins,
            }));
            match conversation.topic() {
                Some(topic) if conversation.kind() == ConversationKind::Group => {
                    self.hub().publish(
                        &Route::Topic(topic),
                        crate::hub::Publication::json_event("conversation.updated", body),
                    );
                }
                _ => {
                    for user in self.audience(conversation.as_str()).await? {
                        self.hub().publish(
                            &super::messages::user_route(&user, "events"),
                            crate::hub::Publication::json_event(
                                "conversation.updated",
                                body.clone(),
                            ),
                        );
                    }
                }
            }
        }
        Ok(pins)
    }

    /// The messages pinned in a conversation the caller is in, the most recently pinned first.
    ///
    /// # Errors
    ///
    /// `NOT_FOUND`, `NOT_MEMBER`, `UNAVAILABLE`.
    pub async fn pins(&self, caller: &Identity, id: &str) -> Result<Vec<PinJson>, AppError> {
        self.access(&super::conversation_id(id)?, caller).await?;
        self.pin_views(id).await
    }

    async fn pin_views(&self, conversation: &str) -> Result<Vec<PinJson>, AppError> {
        let pins = self.store().pins(conversation).await?;
        let mut views = Vec::with_capacity(pins.len());
        for pin in pins {
            let Some(mut message) = self.store().message(pin.message_id).await? else {
                continue;
            };
            self.store()
                .with_statuses(std::slice::from_mut(&mut message))
                .await?;
            views.push(PinJson {
                message: MessageJson::from(&message),
                pinned_by: pin.pinned_by,
                pinned_at: pin.pinned_at,
            });
        }
        Ok(views)
    }

    /// Pushes an event about a stored message where the message itself was pushed: a group's
    /// topic, the owner of an assistant conversation (and staff), or `/user/queue/messages` of
    /// each user of any other conversation.
    ///
    /// # Errors
    ///
    /// `UNAVAILABLE` when the members cannot be read.
    pub(super) async fn push_where_sent(
        &self,
        conversation: &ConversationId,
        event: &'static str,
        body: &[u8],
    ) -> Result<(), AppError> {
        match (conversation.kind(), conversation.topic()) {
            (ConversationKind::Group, Some(topic)) => {
                self.publish_json(&Route::Topic(topic), event, body);
            }
            (ConversationKind::Assistant, _) => {
                self.push_assistant(conversation.as_str(), event, body);
            }
            _ => {
                for user in self.audience(conversation.as_str()).await? {
                    self.publish_json(&super::messages::user_route(&user, "messages"), event, body);
                }
            }
        }
        Ok(())
    }
}

/// A dissolved group's history stays readable as it was: nothing in it changes any more.
fn still_active(row: &ConversationRow, id: &ConversationId) -> Result<(), AppError> {
    if row.status.parse() == Ok(ConversationStatus::Active) {
        Ok(())
    } else {
        Err(AppError::new(
            ErrorCode::Conflict,
            format!("{id} is dissolved"),
        ))
    }
}

/// An emoji: 1 to [`EMOJI_MAX_CHARS`] characters, none of them whitespace or control.
fn check_emoji(emoji: &str) -> Result<(), AppError> {
    let count = emoji.chars().count();
    if count == 0
        || count > EMOJI_MAX_CHARS
        || emoji.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        return Err(AppError::invalid(format!(
            "emoji must be 1 to {EMOJI_MAX_CHARS} characters without spaces"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emoji_are_short_and_printable() {
        assert!(check_emoji("👍").is_ok());
        assert!(check_emoji("👨‍👩‍👧").is_ok());
        assert!(check_emoji("+1").is_ok());
        assert!(check_emoji("").is_err());
        assert!(check_emoji("a b").is_err());
        assert!(check_emoji("\u{7}").is_err());
        assert!(check_emoji(&"x".repeat(17)).is_err());
    }
}

//! A user's conversations: the list, the private conversation with a peer, per-user settings,
//! history and unread counts. Groups' own operations are in [`super::groups`], messages in
//! [`super::messages`]. Nothing here knows HTTP: the REST adapter (`crate::api`) parses the
//! request and shapes the answer.

use std::collections::HashMap;

use serde::Deserialize;

use super::Im;
use super::json::{ConversationJson, MessageJson};
use super::read_counts::read_count;
use crate::app_error::AppError;
use crate::auth::{Identity, is_valid_user_id};
use crate::domain::{ConversationKind, kind_of};
use crate::store::{HistoryQuery, SettingsChange};

/// One page of a user's conversations.
pub struct ConversationPage {
    /// The entries, as the user sees them.
    pub items: Vec<ConversationJson>,
    /// Where the next page starts, when there is one.
    pub next_cursor: Option<String>,
}

/// A user's unread counts.
pub struct Unread {
    /// Over every conversation counted (see [`Im::unread`]).
    pub total: i64,
    /// Each conversation with unread messages.
    pub conversations: Vec<UnreadCount>,
}

/// One conversation's unread messages.
pub struct UnreadCount {
    /// The conversation.
    pub id: String,
    /// Its unread messages.
    pub count: i64,
    /// Whether the user muted it.
    pub muted: bool,
    /// Whether one of its unread messages mentions the user (or everybody).
    pub mentioned: bool,
}

/// `PATCH /api/v1/conversations/{id}/settings`: per-user settings, and the conversation-wide
/// retention.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SettingsRequest {
    /// Pin it for the caller.
    pub pinned: Option<bool>,
    /// Mute it for the caller.
    pub muted: Option<bool>,
    /// Archive it for the caller.
    pub archived: Option<bool>,
    /// Hide it from the caller's list until its next message (`false` shows it again).
    pub hidden: Option<bool>,
    /// Days after which messages are purged; `null` keeps them forever.
    #[serde(default, deserialize_with = "super::retention::present")]
    pub message_retention_days: Option<Option<i64>>,
}

impl Im {
    /// A page of `user`'s conversations, pinned first, then by last activity.
    ///
    /// # Errors
    ///
    /// `UNAVAILABLE` when the database does not answer.
    pub async fn conversations(
        &self,
        user: &str,
        limit: i64,
        cursor: Option<&str>,
    ) -> Result<ConversationPage, AppError> {
        let page = self.store().conversations_of(user, limit, cursor).await?;
        let mut items: Vec<ConversationJson> = page
            .items
            .iter()
            .map(|s| ConversationJson::from_summary(s, user))
            .collect();
        self.mark_mentions(user, &mut items).await?;
        Ok(ConversationPage {
            items,
            next_cursor: page.next_cursor,
        })
    }

    /// The private conversation of the caller and `peer`, created when it does not exist yet
    /// (see [`Im::open_private`]), as the caller sees it.
    ///
    /// # Errors
    ///
    /// `INVALID_ARGUMENT` when `peer` is not another user's id; `RATE_LIMITED`, `BLOCKED`,
    /// `UNAVAILABLE`.
    pub async fn private_conversation(
        &self,
        caller: &Identity,
        peer: &str,
    ) -> Result<ConversationJson, AppError> {
        if !is_valid_user_id(peer) || peer == caller.user_id {
            return Err(AppError::invalid("peerId must be another user's id"));
        }
        let id = self.open_private(&caller.user_id, peer).await?;
        self.conversation_view(&caller.user_id, &id).await
    }

    /// Changes the caller's settings of a conversation, and its retention when given; pushes
    /// `conversation.updated` (to every member for a retention change, else to the caller).
    /// Returns the conversation as the caller now sees it.
    ///
    /// # Errors
    ///
    /// `NOT_FOUND`, `NOT_MEMBER`, and those of [`Im::set_retention`].
    pub async fn update_settings(
        &self,
        caller: &Identity,
        id: &str,
        change: SettingsRequest,
    ) -> Result<ConversationJson, AppError> {
        self.membership(&super::conversation_id(id)?, &caller.user_id)
            .await?;
        // Conversation-wide, unlike the rest: checked and stored first, so a refusal changes
        // nothing, and every member hears of it.
        let everyone = match change.message_retention_days {
            Some(days) => Some(self.set_retention(caller, id, days).await?),
            None => None,
        };
        self.store()
            .update_settings(
                id,
                &caller.user_id,
                &SettingsChange {
                    pinned: change.pinned,
                    muted: change.muted,
                    archived: change.archived,
                    ..SettingsChange::default()
                },
            )
            .await?;
        if let Some(hidden) = change.hidden {
            self.store().set_hidden(id, &caller.user_id, hidden).await?;
        }
        let view = self.conversation_view(&caller.user_id, id).await?;
        match everyone {
            Some(members) => self.conversation_updated(id, &members).await,
            None => self.push_user(&caller.user_id, "events", "conversation.updated", &view),
        }
        Ok(view)
    }

    /// Messages of a conversation as the caller may read them: from when they joined (or last
    /// cleared it), without those they deleted. Staff read assistant conversations without
    /// being members: from the first message.
    ///
    /// # Errors
    ///
    /// `NOT_FOUND`, `NOT_MEMBER`, `UNAVAILABLE`.
    pub async fn history(
        &self,
        caller: &Identity,
        id: &str,
        query: HistoryQuery,
    ) -> Result<Vec<MessageJson>, AppError> {
        let (_, member) = self.access(&super::conversation_id(id)?, caller).await?;
        let floor = member.map_or(0, |m| m.joined_seq.max(m.cleared_seq));
        let rows = self
            .store()
            .history(id, &caller.user_id, floor, query)
            .await?;
        let mut items: Vec<MessageJson> = rows.iter().map(MessageJson::from).collect();
        if kind_of(id) == Some(ConversationKind::Group) && !rows.is_empty() {
            // Read counts follow from the members' read positions: one lookup per page.
            let members = self.store().members(id).await?;
            for (item, row) in items.iter_mut().zip(&rows) {
                item.read_count = read_count(row, &members);
            }
        }
        self.with_reactions(&mut items, &caller.user_id).await?;
        Ok(items)
    }

    /// Clears the caller's history of a conversation: every message it has now disappears for
    /// the caller alone (history, search, the list's last message, unread count), later ones
    /// show as usual. Pushes `conversation.updated` to the caller's sessions; returns the
    /// conversation as the caller now sees it.
    ///
    /// # Errors
    ///
    /// `NOT_FOUND`, `NOT_MEMBER`, `UNAVAILABLE`.
    pub async fn clear_history(
        &self,
        caller: &Identity,
        id: &str,
    ) -> Result<ConversationJson, AppError> {
        self.membership(&super::conversation_id(id)?, &caller.user_id)
            .await?;
        self.store().clear_history(id, &caller.user_id).await?;
        let view = self.conversation_view(&caller.user_id, id).await?;
        self.push_user(&caller.user_id, "events", "conversation.updated", &view);
        Ok(view)
    }

    /// `user`'s unread counts, over all the conversations of their list: the total leaves out
    /// muted conversations unless `include_muted`; every conversation with unread messages is
    /// listed either way.
    ///
    /// # Errors
    ///
    /// `UNAVAILABLE` when the database does not answer.
    pub async fn unread(&self, user: &str, include_muted: bool) -> Result<Unread, AppError> {
        let mut unread = Unread {
            total: 0,
            conversations: Vec::new(),
        };
        let mut cursor: Option<String> = None;
        let mut unread_last_seq: HashMap<String, i64> = HashMap::new();
        loop {
            let page = self
                .store()
                .conversations_of(user, 100, cursor.as_deref())
                .await?;
            for summary in &page.items {
                let count = summary.unread();
                if count > 0 {
                    unread_last_seq.insert(
                        summary.conversation.id.clone(),
                        summary.conversation.last_seq,
                    );
                    if include_muted || !summary.member.muted {
                        unread.total += count;
                    }
                    unread.conversations.push(UnreadCount {
                        id: summary.conversation.id.clone(),
                        count,
                        muted: summary.member.muted,
                        mentioned: false,
                    });
                }
            }
            match page.next_cursor {
                Some(next) => cursor = Some(next),
                None => break,
            }
        }
        let seen: HashMap<String, i64> = unread
            .conversations
            .iter()
            .filter(|c| kind_of(&c.id) == Some(ConversationKind::Group))
            .filter_map(|c| {
                let last = unread_last_seq.get(&c.id)?;
                Some((c.id.clone(), last - c.count))
            })
            .collect();
        let mentioned = self.store().mentioned_after(user, &seen).await?;
        for entry in &mut unread.conversations {
            entry.mentioned = mentioned.contains(&entry.id);
        }
        Ok(unread)
    }

    /// Sets `mentioned` on the group entries with unread messages that mention `user`: one
    /// lookup for the whole page.
    ///
    /// # Errors
    ///
    /// `UNAVAILABLE`.
    pub(super) async fn mark_mentions(
        &self,
        user: &str,
        items: &mut [ConversationJson],
    ) -> Result<(), AppError> {
        let seen: HashMap<String, i64> = items
            .iter()
            .filter(|c| c.unread_count > 0 && kind_of(&c.id) == Some(ConversationKind::Group))
            .map(|c| (c.id.clone(), c.last_seq - c.unread_count))
            .collect();
        if seen.is_empty() {
            return Ok(());
        }
        let mentioned = self.store().mentioned_after(user, &seen).await?;
        for item in items {
            item.mentioned = mentioned.contains(&item.id);
        }
        Ok(())
    }
}

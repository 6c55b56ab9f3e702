//! One message as a member sees it (`GET /api/v1/messages/{id}`, with what it replies to), and
//! who of its audience has read it.

use schema::{ConversationRow, MemberRow, MessageRow};

use super::Im;
use super::json::{MessageDetail, MessageJson, Readers};
use super::read_counts::{is_audience, read_count};
use crate::app_error::{AppError, ErrorCode};
use crate::auth::Identity;
use crate::domain::{ConversationId, ConversationKind, MemberRole, kind_of};

/// A message the caller may see, with its conversation and the caller's membership.
pub(super) struct Visible {
    /// The message, its status as the caller sees it.
    pub message: MessageRow,
    /// Its conversation's id.
    pub id: ConversationId,
    /// Its conversation.
    pub conversation: ConversationRow,
    /// The caller's membership; none for staff in an assistant conversation.
    pub member: Option<MemberRow>,
}

impl Im {
    /// One message as the caller may see it, with the message it replies to: for the members
    /// of its conversation (staff for assistant conversations), unless it is before the
    /// caller joined, where they cleared the history, or deleted by them.
    ///
    /// # Errors
    ///
    /// `NOT_FOUND` for a message the caller may not see (whether or not it exists),
    /// `UNAVAILABLE`.
    pub async fn message_view(
        &self,
        caller: &Identity,
        id: i64,
    ) -> Result<MessageDetail, AppError> {
        let message = self
            .visible_message(caller, id)
            .await?
            .ok_or_else(super::no_message)?;
        let reply_to_message = match message.reply_to {
            Some(target) => self.visible_message(caller, target).await?,
            None => None,
        };
        let mut detail = MessageDetail {
            message: MessageJson::from(&message),
            reply_to_message: reply_to_message.as_ref().map(MessageJson::from),
        };
        if kind_of(&message.conversation_id) == Some(ConversationKind::Group) {
            let members = self.store().members(&message.conversation_id).await?;
            detail.message.read_count = read_count(&message, &members);
            if let (Some(json), Some(row)) = (&mut detail.reply_to_message, &reply_to_message) {
                json.read_count = read_count(row, &members);
            }
        }
        self.with_reactions(std::slice::from_mut(&mut detail.message), &caller.user_id)
            .await?;
        Ok(detail)
    }

    /// Who of a message's audience (the members, other than its sender, who were members when
    /// it was sent) has read it and who has not: for its sender and, in groups, the owner and
    /// admins.
    ///
    /// # Errors
    ///
    /// `NOT_FOUND` for a message the caller may not see, `FORBIDDEN` for anyone else who may,
    /// `UNAVAILABLE`.
    pub async fn readers(&self, caller: &Identity, id: i64) -> Result<Readers, AppError> {
        let message = self
            .visible_message(caller, id)
            .await?
            .ok_or_else(super::no_message)?;
        let members = self.store().members(&message.conversation_id).await?;
        let manages = members
            .iter()
            .find(|m| m.user_id == caller.user_id)
            .is_some_and(|m| m.role.parse().is_ok_and(MemberRole::manages))
            && kind_of(&message.conversation_id) == Some(ConversationKind::Group);
        if message.sender_id != caller.user_id && !manages {
            return Err(AppError::forbidden(
                "only the sender, the owner and admins see who read a message",
            ));
        }
        let mut readers = Readers {
            message_id: message.id.to_string(),
            conversation_id: message.conversation_id.clone(),
            seq: message.seq,
            read_count: 0,
            readers: Vec::new(),
            unread: Vec::new(),
        };
        for member in members.iter().filter(|m| is_audience(&message, m)) {
            if member.read_seq >= message.seq {
                readers.readers.push(member.user_id.clone());
            } else {
                readers.unread.push(member.user_id.clone());
            }
        }
        readers.readers.sort();
        readers.unread.sort();
        readers.read_count = i64::try_from(readers.readers.len()).unwrap_or(i64::MAX);
        Ok(readers)
    }

    /// The message `id` with its status, when `caller` may see it.
    pub(super) async fn visible_message(
        &self,
        caller: &Identity,
        id: i64,
    ) -> Result<Option<MessageRow>, AppError> {
        Ok(self
            .visible(caller, id)
            .await?
            .map(|visible| visible.message))
    }

    /// [`Im::visible_message`] with what was read on the way: its conversation, and the
    /// caller's membership (none for staff reading an assistant conversation).
    pub(super) async fn visible(
        &self,
        caller: &Identity,
        id: i64,
    ) -> Result<Option<Visible>, AppError> {
        let Some(mut message) = self.store().message(id).await? else {
            return Ok(None);
        };
        let Ok(conversation) = super::conversation_id(&message.conversation_id) else {
            return Ok(None);
        };
        let (row, member) = match self.access(&conversation, caller).await {
            Ok(found) => found,
            Err(error) if matches!(error.code, ErrorCode::NotFound | ErrorCode::NotMember) => {
                return Ok(None);
            }
            Err(error) => return Err(error),
        };
        let floor = member
            .as_ref()
            .map_or(0, |m| m.joined_seq.max(m.cleared_seq));
        if message.seq <= floor || self.store().is_deleted_for(&caller.user_id, id).await? {
            return Ok(None);
        }
        self.store()
            .with_statuses(std::slice::from_mut(&mut message))
            .await?;
        Ok(Some(Visible {
            message,
            id: conversation,
            conversation: row,
            member,
        }))
    }
}

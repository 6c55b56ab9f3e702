//! Forwarding (`POST /api/v1/messages/forward`): copies of one or many messages into one or many of the
//! caller's conversations, each marked `forwardedFrom {messageId, conversationId, senderId}`.
//! Forwarded copies are sends like any other: the same validation and limits apply.

use serde::Deserialize;
use serde_json::{Value, json};

use super::Im;
use super::json::{SendRequest, message_id};
use super::send::Sent;
use crate::app_error::{AppError, ErrorCode};
use crate::auth::Identity;
use crate::domain::MessageStatus;
use schema::MessageRow;

/// Messages, and conversations, one request may name.
const MAX_ITEMS: usize = 20;

/// The request body.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ForwardRequest {
    /// The originals, oldest first in the result when given in that order.
    pub message_ids: Vec<Value>,
    /// Where the copies go.
    pub to_conversation_ids: Vec<String>,
}

impl Im {
    /// A message the caller may forward: in one of their conversations, after they joined,
    /// not deleted by them and not recalled.
    async fn forwardable(&self, caller: &Identity, id: i64) -> Result<MessageRow, AppError> {
        let not_found = || AppError::new(ErrorCode::NotFound, format!("no message {id}"));
        let message = self.store().message(id).await?.ok_or_else(not_found)?;
        let conversation =
            super::conversation_id(&message.conversation_id).map_err(|_| not_found())?;
        let (_, member) = self
            .membership(&conversation, &caller.user_id)
            .await
            .map_err(|_| not_found())?;
        let deleted = self.store().is_deleted_for(&caller.user_id, id).await?;
        if deleted || message.seq <= member.joined_seq.max(member.cleared_seq) {
            return Err(not_found());
        }
        if message.status.parse() == Ok(MessageStatus::Recalled) {
            return Err(AppError::new(
                ErrorCode::Conflict,
                format!("message {id} was recalled"),
            ));
        }
        Ok(message)
    }

    /// Forwards every message to every conversation; returns the new messages (already
    /// pushed). Everything is checked before the first copy is stored.
    ///
    /// # Errors
    ///
    /// `INVALID_ARGUMENT`, `NOT_FOUND`, `NOT_MEMBER`, `CONFLICT` (recalled), and any error of
    /// a send (limits, moderation).
    pub async fn forward(
        &self,
        caller: &Identity,
        request: ForwardRequest,
    ) -> Result<Vec<MessageRow>, AppError> {
        let counts = (request.message_ids.len(), request.to_conversation_ids.len());
        if !(1..=MAX_ITEMS).contains(&counts.0) || !(1..=MAX_ITEMS).contains(&counts.1) {
            return Err(AppError::invalid(format!(
                "messageIds and toConversationIds must each name 1 to {MAX_ITEMS} items"
            )));
        }
        let mut originals = Vec::with_capacity(counts.0);
        for value in &request.message_ids {
            let id = message_id(value)
                .ok_or_else(|| AppError::invalid("messageIds must be message ids"))?;
            originals.push(self.forwardable(caller, id).await?);
        }
        let mut targets = Vec::with_capacity(counts.1);
        for conversation in &request.to_conversation_ids {
            let probe = SendRequest {
                to: None,
                conversation_id: Some(conversation.clone()),
                client_msg_id: String::new(),
                format: None,
                content: None,
                attachment: None,
                reply_to: None,
                mentions: None,
                mention_all: false,
            };
            targets.push(self.target(caller, &probe).await?);
        }
        // One key per request, so a retried request with the same copies is recognisable in
        // the logs; each copy gets its own idempotency key from it.
        let batch = format!("{:012x}", rand::random::<u64>() & 0xffff_ffff_ffff);
        let mut forwarded = Vec::with_capacity(counts.0 * counts.1);
        for target in &targets {
            for (index, original) in originals.iter().enumerate() {
                let request = SendRequest {
                    to: None,
                    conversation_id: Some(target.conversation_id()),
                    client_msg_id: format!("fwd-{batch}-{}-{index}", forwarded.len()),
                    format: Some(original.format.clone()),
                    content: Some(original.content.clone()),
                    attachment: original
                        .attachment
                        .as_deref()
                        .and_then(|a| serde_json::from_str(a).ok()),
                    reply_to: None,
                    mentions: None,
                    mention_all: false,
                };
                let mut message = self
                    .validate(
                        caller,
                        target.clone(),
                        request.client_msg_id.clone(),
                        &request,
                    )
                    .await?;
                message.forwarded_from = Some(
                    json!({
                        "messageId": original.id.to_string(),
                        "conversationId": original.conversation_id,
                        "senderId": original.sender_id,
                    })
                    .to_string(),
                );
                self.check_send(caller, &mut message).await?;
                let outcome = self.store().send(message).await?;
                let sent = Sent::from(outcome);
                forwarded.push(sent.message.clone());
                self.push_sent(sent);
            }
        }
        Ok(forwarded)
    }
}

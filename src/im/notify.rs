//! System notifications (contract section 5.6): one stored message in `system_<userId>` per
//! recipient, pushed as `notification.new`, whichever way it came (STOMP, REST, the RabbitMQ
//! queue `im.notifications`). Every field is bounded, like those of users' cards.

use serde_json::json;

use super::Im;
use super::json::NotificationRequest;
use super::messages::Sent;
use crate::app_error::AppError;
use crate::auth::{Identity, Role, is_valid_user_id};
use crate::store::{NewMessage, Target};
use schema::MessageRow;

/// Characters of a notification's title (a card's title).
const TITLE_MAX_CHARS: usize = 200;
/// Characters of its content (a card's summary).
const CONTENT_MAX_CHARS: usize = 1000;
/// Characters of its `bizType` (a card's).
const BIZ_TYPE_MAX_CHARS: usize = 64;
/// Characters of its `bizId`.
const BIZ_ID_MAX_CHARS: usize = 128;
/// Characters of its `clientMsgId` (a message's).
const CLIENT_MSG_ID_MAX_CHARS: usize = 64;
/// Recipients of one request (`POST /api/v1/notifications`, or one message of the queue).
pub const MAX_RECIPIENTS: usize = 1000;

fn invalid(message: impl Into<String>) -> AppError {
    AppError::invalid(message)
}

/// The recipients of a request: 1 to [`MAX_RECIPIENTS`].
///
/// # Errors
///
/// `INVALID_ARGUMENT` otherwise.
pub fn check_recipients(request: &NotificationRequest) -> Result<(), AppError> {
    if request.user_ids.is_empty() || request.user_ids.len() > MAX_RECIPIENTS {
        return Err(invalid(format!(
            "userIds must name 1 to {MAX_RECIPIENTS} users"
        )));
    }
    Ok(())
}

/// Only role `system` sends notifications.
///
/// # Errors
///
/// `FORBIDDEN` otherwise.
pub fn may_notify(sender: &Identity) -> Result<(), AppError> {
    if sender.has_role(Role::System) {
        Ok(())
    } else {
        Err(AppError::forbidden("notifications need role system"))
    }
}

/// Every field within its bound, and a title.
fn check(request: &NotificationRequest, data_max_bytes: usize) -> Result<(), AppError> {
    let chars = |text: &str| text.chars().count();
    if request.title.trim().is_empty() || chars(&request.title) > TITLE_MAX_CHARS {
        return Err(invalid(format!(
            "title must be 1 to {TITLE_MAX_CHARS} characters"
        )));
    }
    if chars(&request.content) > CONTENT_MAX_CHARS {
        return Err(invalid(format!(
            "content must be at most {CONTENT_MAX_CHARS} characters"
        )));
    }
    let bounded =
        |value: &Option<String>, max: usize| value.as_deref().is_none_or(|v| chars(v) <= max);
    if !bounded(&request.biz_type, BIZ_TYPE_MAX_CHARS)
        || !bounded(&request.biz_id, BIZ_ID_MAX_CHARS)
        || !bounded(&request.client_msg_id, CLIENT_MSG_ID_MAX_CHARS)
    {
        return Err(invalid(format!(
            "bizType, bizId and clientMsgId must be at most {BIZ_TYPE_MAX_CHARS}, \
             {BIZ_ID_MAX_CHARS} and {CLIENT_MSG_ID_MAX_CHARS} characters"
        )));
    }
    super::attachment::check_data(request.data.as_ref(), data_max_bytes)
}

impl Im {
    /// Stores a system notification in `system_<user>` and pushes it as `notification.new`.
    ///
    /// # Errors
    ///
    /// `FORBIDDEN` without role `system`; `INVALID_ARGUMENT` (also for a field over its
    /// bound); `UNAVAILABLE`.
    pub async fn notify(
        &self,
        sender: &Identity,
        user: &str,
        request: &NotificationRequest,
    ) -> Result<MessageRow, AppError> {
        may_notify(sender)?;
        if !is_valid_user_id(user) {
            return Err(invalid(format!("invalid user id {user:?}")));
        }
        check(request, self.settings().bounds.card_data_max_bytes)?;
        let (format, attachment, content) = match &request.biz_type {
            Some(biz_type) => (
                "card",
                Some(
                    json!({
                        "bizType": biz_type,
                        "bizId": request.biz_id.clone().unwrap_or_default(),
                        "title": request.title,
                        "summary": request.content,
                        "data": request.data,
                    })
                    .to_string(),
                ),
                request.content.clone(),
            ),
            None => (
                "text",
                request
                    .data
                    .as_ref()
                    .map(|data| json!({"title": request.title, "data": data}).to_string()),
                if request.content.is_empty() {
                    request.title.clone()
                } else {
                    format!("{}\n{}", request.title, request.content)
                },
            ),
        };
        // One notification to many users: each copy needs its own idempotency key.
        let client_msg_id = match &request.client_msg_id {
            Some(id) => format!("{id}:{user}"),
            None => format!("n-{:016x}", rand::random::<u64>()),
        };
        let outcome = self
            .store()
            .send(NewMessage {
                target: Target::System {
                    user: user.to_owned(),
                },
                sender: sender.user_id.clone(),
                client_msg_id,
                format: format.to_owned(),
                content,
                attachment,
                reply_to: None,
                forwarded_from: None,
                unless_blocked_by: None,
                shared_file: None,
            })
            .await?;
        let sent = Sent::from(outcome);
        if !sent.duplicate {
            self.push_sent(&sent);
        }
        Ok(sent.message)
    }
}

impl Im {
    /// Sends one notification to each of `request.user_ids` (see [`Im::notify`]); returns the
    /// stored messages in that order.
    ///
    /// # Errors
    ///
    /// `FORBIDDEN` without role `system`; `INVALID_ARGUMENT` for 0 or more than
    /// [`MAX_RECIPIENTS`] recipients, and those of [`Im::notify`] (the first refusal stops the
    /// rest).
    pub async fn notify_many(
        &self,
        sender: &Identity,
        request: &NotificationRequest,
    ) -> Result<Vec<MessageRow>, AppError> {
        may_notify(sender)?;
        check_recipients(request)?;
        let mut messages = Vec::with_capacity(request.user_ids.len());
        for user in &request.user_ids {
            messages.push(self.notify(sender, user, request).await?);
        }
        Ok(messages)
    }
}

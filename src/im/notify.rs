//! System notifications (contract section 5.6): one stored message in `system_<userId>` per
//! recipient, pushed as `notification.new`, whichever way it came (STOMP, REST, the RabbitMQ
//! queue `im.notifications`). Every field is bounded, like those of users' cards.

use std::ops::ControlFlow;

use serde_json::json;

use super::Im;
use super::json::NotificationRequest;
use super::send::Sent;
use crate::app_error::AppError;
use crate::auth::{Identity, Role, is_valid_user_id};
use crate::ordering::Turn;
use crate::store::{NewMessage, StoreError, Target};
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
fn invalid(message: impl Into<String>) -> AppError {
    AppError::invalid(message)
}

/// The recipients of a request: 1 to `max` (`limits.notification_max_users`).
///
/// # Errors
///
/// `INVALID_ARGUMENT` otherwise.
pub fn check_recipients(request: &NotificationRequest, max: usize) -> Result<(), AppError> {
    if request.user_ids.is_empty() || request.user_ids.len() > max {
        return Err(invalid(format!(
            "userIds must name 1 to {max} users (limits.notification_max_users); \
             send more in several requests"
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

/// The stored form of a notification to `user`: one message of `system_<user>`.
fn notification_message(
    sender: &Identity,
    user: &str,
    request: &NotificationRequest,
) -> Result<NewMessage, AppError> {
    if !is_valid_user_id(user) {
        return Err(invalid(format!("invalid user id {user:?}")));
    }
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
    Ok(NewMessage {
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
        mentions: None,
    })
}

/// Notifications built and queued for the writer at a time by one bulk request: the memory one
/// request holds before its answers is bounded by this, not by its number of recipients.
const BULK_CHUNK: usize = 1024;

impl Im {
    /// Stores a system notification in `system_<user>` (once `turn` comes: a backend's
    /// pipelined SENDs are stored in frame order) and pushes it as `notification.new`.
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
        turn: Turn,
    ) -> Result<MessageRow, AppError> {
        may_notify(sender)?;
        check(request, self.settings().bounds.card_data_max_bytes)?;
        let message = notification_message(sender, user, request)?;
        let outcome = self
            .store()
            .send_bulk(vec![message], turn)
            .await
            .pop()
            .unwrap_or_else(|| Err(StoreError::Unavailable("no answer".into())))?;
        let sent = Sent::from(outcome);
        let message = sent.message.clone();
        if !sent.duplicate {
            self.push_sent(sent);
        }
        Ok(message)
    }

    /// Sends one notification to each of `request.user_ids` (see [`Im::notify`]): they go to
    /// the writer's notification queue [`BULK_CHUNK`] at a time, which commits them in batches
    /// beside people's messages (`storage.max_bulk_batch`); each chunk is pushed once it is
    /// committed. Returns the stored messages in the order of `userIds`, after the last commit.
    ///
    /// # Errors
    ///
    /// `FORBIDDEN` without role `system`; `INVALID_ARGUMENT` for 0 or more than
    /// `limits.notification_max_users` recipients, an invalid user id or a field over its
    /// bound (nothing is stored then); `UNAVAILABLE` when one could not be stored (the chunks
    /// before it were, and the rest of its own: a retry with the same `clientMsgId` stores only
    /// what is missing).
    pub async fn notify_many(
        &self,
        sender: &Identity,
        request: &NotificationRequest,
    ) -> Result<Vec<MessageRow>, AppError> {
        self.check_notification(sender, request)?;
        let mut stored = Vec::with_capacity(request.user_ids.len());
        let mut failure = None;
        self.store_notifications(sender, &[request], |_, outcome| match outcome {
            Ok(message) => {
                stored.push(message);
                ControlFlow::Continue(())
            }
            Err(error) => {
                failure = Some(error);
                ControlFlow::Break(())
            }
        })
        .await;
        match failure {
            Some(error) => Err(error),
            None => Ok(stored),
        }
    }

    /// Everything about a request to many users that can be refused before storing any:
    /// the sender's role, the number of recipients, their ids, the fields.
    ///
    /// # Errors
    ///
    /// `FORBIDDEN`, `INVALID_ARGUMENT`.
    pub(super) fn check_notification(
        &self,
        sender: &Identity,
        request: &NotificationRequest,
    ) -> Result<(), AppError> {
        may_notify(sender)?;
        check_recipients(request, self.settings().notification_max_users)?;
        check(request, self.settings().bounds.card_data_max_bytes)?;
        match request.user_ids.iter().find(|u| !is_valid_user_id(u)) {
            Some(user) => Err(invalid(format!("invalid user id {user:?}"))),
            None => Ok(()),
        }
    }

    /// Stores a notification for every recipient of each of `requests` (each passed by
    /// [`Im::check_notification`]) through the writer's notification queue, [`BULK_CHUNK`] at a
    /// time so that what is held does not grow with the recipients, and pushes each new one once
    /// its chunk is committed. `each` is told every outcome, in order, with the index of its
    /// request; it stops the rest at the end of the chunk by answering `Break`.
    pub(super) async fn store_notifications(
        &self,
        sender: &Identity,
        requests: &[&NotificationRequest],
        mut each: impl FnMut(usize, Result<MessageRow, AppError>) -> ControlFlow<()>,
    ) {
        // The next recipient: (request, user) by index, so that no borrowing iterator is held
        // across the awaits.
        let (mut request, mut user) = (0, 0);
        loop {
            let mut owners = Vec::with_capacity(BULK_CHUNK);
            let mut messages = Vec::with_capacity(BULK_CHUNK);
            while messages.len() < BULK_CHUNK && request < requests.len() {
                let Some(id) = requests[request].user_ids.get(user) else {
                    (request, user) = (request + 1, 0);
                    continue;
                };
                user += 1;
                // Checked already; a recipient refused here would be skipped, not stored.
                if let Ok(message) = notification_message(sender, id, requests[request]) {
                    owners.push(request);
                    messages.push(message);
                }
            }
            if messages.is_empty() {
                return;
            }
            let outcomes = self.store().send_bulk(messages, Turn::free()).await;
            let mut stop = false;
            for (index, outcome) in owners.into_iter().zip(outcomes) {
                let outcome = outcome.map_err(AppError::from).map(|outcome| {
                    let sent = Sent::from(outcome);
                    let message = sent.message.clone();
                    if !sent.duplicate {
                        self.push_sent(sent);
                    }
                    message
                });
                stop |= each(index, outcome).is_break();
            }
            if stop {
                return;
            }
        }
    }
}

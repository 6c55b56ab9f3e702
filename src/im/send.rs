//! Sending a message: the checks of a send (target, validation, limits) and its storing.

use serde_json::Value;

use super::Im;
use super::json::{SendRequest, message_id};
use crate::app_error::{AppError, ErrorCode};
use crate::auth::{Identity, is_valid_user_id};
use crate::domain::{ConversationKind, ConversationStatus};
use crate::ordering::Turn;
use crate::store::{NewMessage, SendOutcome, Target};
use schema::MessageRow;

/// Formats that carry an attachment with a file.
const MEDIA_FORMATS: [&str; 4] = ["image", "file", "voice", "video"];

/// A send's result.
#[derive(Clone, Debug)]
pub struct Sent {
    /// The stored message (now or earlier).
    pub message: MessageRow,
    /// A retry of a clientMsgId already stored: nothing new was stored.
    pub duplicate: bool,
    /// Sending moved the sender's read position past messages of others.
    pub marked_read: bool,
    /// When the writer answered: the commit, to within a wake-up.
    pub committed_at: std::time::Instant,
}

impl From<SendOutcome> for Sent {
    fn from(outcome: SendOutcome) -> Sent {
        match outcome {
            SendOutcome::Stored {
                message,
                marked_read,
                ..
            } => Sent {
                message,
                duplicate: false,
                marked_read,
                committed_at: std::time::Instant::now(),
            },
            SendOutcome::Duplicate(message) => Sent {
                message,
                duplicate: true,
                marked_read: false,
                committed_at: std::time::Instant::now(),
            },
        }
    }
}

fn invalid(message: impl Into<String>) -> AppError {
    AppError::invalid(message)
}

impl Im {
    /// Validates and stores a message. The caller pushes it with [`Im::push_sent`] (after the
    /// RECEIPT, over STOMP).
    ///
    /// # Errors
    ///
    /// The contract's errors: `INVALID_ARGUMENT`, `CONTENT_TOO_LONG`, `NOT_FOUND`,
    /// `NOT_MEMBER`, `FORBIDDEN`, `UNAVAILABLE`.
    pub async fn send(&self, sender: &Identity, request: SendRequest) -> Result<Sent, AppError> {
        let message = self.prepare_send(sender, &request).await?;
        self.store_prepared(message, Turn::free()).await
    }

    /// The first half of a send: validates `request` and applies the sender's limits, side by
    /// side with the session's other sends. Errors name the request's clientMsgId.
    ///
    /// The message is boxed, and the request borrowed, because a send's state is allocated for
    /// every SEND and is as large as what it holds across its awaits: kept under 1 KiB, it is
    /// served from the allocator's per-thread cache instead of making glibc tidy its free lists.
    ///
    /// # Errors
    ///
    /// As [`Im::send`], except `UNAVAILABLE` for the write.
    pub async fn prepare_send(
        &self,
        sender: &Identity,
        request: &SendRequest,
    ) -> Result<Box<NewMessage>, AppError> {
        let client_msg_id = request.client_msg_id.trim();
        let with_id = |mut error: AppError| {
            error.client_msg_id = Some(client_msg_id.to_owned());
            error
        };
        if client_msg_id.is_empty() || client_msg_id.chars().count() > 64 {
            return Err(with_id(invalid("clientMsgId must be 1 to 64 characters")));
        }
        let target = self.target(sender, request).await.map_err(with_id)?;
        let mut message = Box::new(
            self.validate(sender, target, client_msg_id.to_owned(), request)
                .await
                .map_err(with_id)?,
        );
        self.check_send(sender, &mut message)
            .await
            .map_err(with_id)?;
        Ok(message)
    }

    /// The second half of a send: stores a message from [`Im::prepare_send`] once `turn`
    /// comes. Errors name its clientMsgId.
    ///
    /// # Errors
    ///
    /// As [`Im::send`].
    pub async fn store_prepared(
        &self,
        message: Box<NewMessage>,
        turn: Turn,
    ) -> Result<Sent, AppError> {
        let client_msg_id = message.client_msg_id.clone();
        match self.store().send_in_turn(message, turn).await {
            Ok(outcome) => Ok(Sent::from(outcome)),
            Err(error) => {
                let mut error = AppError::from(error);
                error.client_msg_id = Some(client_msg_id);
                Err(error)
            }
        }
    }

    // The awaits on paths that a plain private text send does not take are boxed: an async
    // fn's state is as large as its largest await, a send's state is allocated per SEND, and
    // database futures are kilobytes.
    pub(super) async fn target(
        &self,
        sender: &Identity,
        request: &SendRequest,
    ) -> Result<Target, AppError> {
        let me = &sender.user_id;
        match (&request.to, &request.conversation_id) {
            (Some(to), None) => {
                if !is_valid_user_id(to) {
                    return Err(invalid(format!("invalid user id {to:?}")));
                }
                if to == me {
                    return Err(invalid("cannot send a private message to yourself"));
                }
                Ok(Target::Private {
                    a: me.clone(),
                    b: to.clone(),
                })
            }
            (None, Some(text)) => {
                let id = super::conversation_id(text)?;
                if id.kind() == ConversationKind::Assistant {
                    return Box::pin(self.assistant_target(sender, &id)).await;
                }
                let (row, member) = Box::pin(self.membership(&id, me)).await?;
                if row.status.parse() != Ok(ConversationStatus::Active) {
                    return Err(AppError::new(
                        ErrorCode::Conflict,
                        format!("{id} is {}", row.status),
                    ));
                }
                if id.kind() == ConversationKind::Group {
                    Im::check_group_send(&row, &member)?;
                }
                if id.kind() == ConversationKind::System {
                    return Err(AppError::forbidden("system conversations are read-only"));
                }
                Ok(Target::Conversation(id.into()))
            }
            (Some(_), Some(_)) => Err(invalid("give either to or conversationId, not both")),
            (None, None) => Err(invalid("missing to or conversationId")),
        }
    }

    pub(super) async fn validate(
        &self,
        sender: &Identity,
        target: Target,
        client_msg_id: String,
        request: &SendRequest,
    ) -> Result<NewMessage, AppError> {
        let format = request.format.clone().unwrap_or_else(|| "text".to_owned());
        let content = request.content.clone().unwrap_or_default();
        let limit = self.settings().text_max_chars;
        if content.chars().count() > limit {
            return Err(AppError::new(
                ErrorCode::ContentTooLong,
                format!("content is longer than {limit} characters"),
            ));
        }
        let mut shared_file = None;
        let attachment = match (format.as_str(), &request.attachment) {
            ("text", None | Some(Value::Null)) => {
                if content.trim().is_empty() {
                    return Err(invalid("text content is empty"));
                }
                None
            }
            ("text", Some(_)) => return Err(invalid("text messages take no attachment")),
            (media, Some(Value::Object(object))) if MEDIA_FORMATS.contains(&media) => {
                let checked =
                    Box::pin(self.media_attachment(&sender.user_id, media, object)).await?;
                shared_file = checked.file;
                Some(checked.stored)
            }
            ("card", Some(Value::Object(object))) => {
                super::attachment::check_card(object, self.settings().bounds.card_data_max_bytes)?;
                Some(Value::Object(object.clone()).to_string())
            }
            (other, _) if MEDIA_FORMATS.contains(&other) || other == "card" => {
                return Err(invalid(format!(
                    "{other} messages need an attachment object"
                )));
            }
            (other, _) => return Err(invalid(format!("unknown format {other:?}"))),
        };
        let reply_to = match &request.reply_to {
            None | Some(Value::Null) => None,
            Some(value) => {
                let id = message_id(value).ok_or_else(|| invalid("replyTo is not a message id"))?;
                let original = Box::pin(self.store().message(id)).await?;
                if original.is_none_or(|m| m.conversation_id != target.conversation_id()) {
                    return Err(invalid(
                        "replyTo must name a message of the same conversation",
                    ));
                }
                Some(id)
            }
        };
        let mentions = if request.mentions.is_some() || request.mention_all {
            // Boxed: few sends mention, and inline it would grow every send's state.
            Box::pin(self.checked_mentions(&sender.user_id, &target, request)).await?
        } else {
            None
        };
        Ok(NewMessage {
            target,
            sender: sender.user_id.clone(),
            client_msg_id,
            format,
            content,
            attachment,
            reply_to,
            forwarded_from: None,
            unless_blocked_by: None,
            shared_file,
            mentions,
        })
    }
}

//! Pushing sent messages, reading, recalling, deleting and typing (sending itself is in
//! [`super::send`]).

use std::sync::Arc;

use bytes::Bytes;
use bytestring::ByteString;
use serde_json::json;

use super::Im;
use super::json::peer_of;
use super::limits::Action;
use super::send::Sent;
use crate::app_error::{AppError, ErrorCode};
use crate::auth::Identity;
use crate::delivery::{AckHook, Route};
use crate::domain::{ConversationId, ConversationKind, MemberRole, kind_of};
use crate::hub::Publication;
use crate::util::now_ms;
use schema::MessageRow;

/// Where a send came from, for the pushes that follow it.
#[derive(Clone, Copy, Debug)]
pub enum Origin {
    /// A STOMP session.
    Session(u64),
    /// The REST API.
    Rest,
}

impl Im {
    /// Pushes a sent message: `message.new` to the conversation's audience (only to the
    /// sender's own sessions for a duplicate), then delivery tracking for private chats. A new
    /// message is pushed after every smaller seq of its conversation (see
    /// [`crate::ordering::PushOrder`]).
    pub fn push_sent(&self, sent: Sent) {
        let message = &sent.message;
        if sent.duplicate {
            let body = super::json::message_body(message);
            self.hub().publish(
                &user_route(&message.sender_id, "messages"),
                inbox_publication(body, message.sender_position),
            );
            return;
        }
        let im = self.clone();
        let marked_read = sent.marked_read;
        let committed_at = sent.committed_at;
        // Moved, not cloned: the row's strings are most of what a push allocates. Shared by
        // the pushes, the delivery hook and the read events rather than copied for each.
        let new = Arc::new(sent.message);
        let push = Arc::clone(&new);
        self.inner.push_order.release(
            &new.conversation_id,
            new.seq,
            Box::new(move || {
                im.push_new(&push);
                crate::metrics::Metrics::get()
                    .push_latency_seconds
                    .record(committed_at.elapsed());
                if marked_read {
                    im.read_by_sending(push);
                }
            }),
        );
    }

    /// Sending moved the sender's read position to their message: the same events as an
    /// explicit read follow (to all the sender's sessions, since the sending one learns only
    /// that its message was stored), and in private chats the messages of the other user become
    /// `read`.
    fn read_by_sending(&self, message: Arc<MessageRow>) {
        let im = self.clone();
        tokio::spawn(async move {
            let conversation = &message.conversation_id;
            let reader = &message.sender_id;
            let seq = message.seq;
            if kind_of(conversation) == Some(ConversationKind::Group) {
                // Where the sender's position was is not known here: the newest messages
                // before theirs are reported, which covers what their send read.
                im.inner.read_counts.read(conversation, 0, seq - 1);
            }
            im.record(
                "message.read",
                json!({"conversationId": conversation, "userIds": [reader], "seq": seq}),
            )
            .await;
            im.push_user(
                reader,
                "events",
                "conversation.updated",
                &json!({"conversationId": conversation, "readSeq": seq, "unreadCount": 0}),
            );
            if let Some(peer) = peer_of(conversation, reader) {
                im.push_user(
                    &peer,
                    "events",
                    "message.read",
                    &json!({"conversationId": conversation, "readerId": reader, "upToSeq": seq}),
                );
            }
        });
    }

    fn push_new(&self, message: &Arc<MessageRow>) {
        let body = Bytes::from(super::json::message_body(message));
        let conversation = &message.conversation_id;
        let id = ConversationId::parse(conversation).ok();
        match id.as_ref().map(ConversationId::kind) {
            Some(ConversationKind::Group) => {
                let Some(topic) = id.as_ref().and_then(ConversationId::topic) else {
                    return;
                };
                let mut publication = Publication::json_event("message.new", body);
                publication.sequence = Some(message.seq);
                self.hub().publish(&Route::Topic(topic), publication);
                self.push_offline(message);
            }
            Some(ConversationKind::Private) => {
                let Some(peer) = peer_of(conversation, &message.sender_id) else {
                    return;
                };
                let hook: Arc<dyn AckHook> = Arc::new(DeliveredOnAck {
                    im: self.clone(),
                    message: Arc::clone(message),
                });
                let mut publication = inbox_publication(body.clone(), message.recipient_position);
                publication.ack_hook = Some(hook);
                let fanout = self
                    .hub()
                    .publish(&user_route(&peer, "messages"), publication);
                self.hub().publish(
                    &user_route(&message.sender_id, "messages"),
                    inbox_publication(body, message.sender_position),
                );
                if fanout.auto > 0 {
                    self.delivered(message);
                }
                if fanout.total() == 0 {
                    if self.store().records_events() {
                        self.offline_event(MessageRow::clone(message), peer);
                    }
                    self.push_offline(message);
                }
            }
            Some(ConversationKind::System) => {
                if let Some(user) = id.as_ref().and_then(ConversationId::owner) {
                    // Sequenced, so that a resuming subscription tells it from its replay.
                    let mut publication = Publication::json_event("notification.new", body);
                    publication.sequence = Some(message.seq);
                    self.hub()
                        .publish(&user_route(user, "notifications"), publication);
                    self.push_offline(message);
                }
            }
            Some(ConversationKind::Assistant) => {
                // The position of the conversation's user, who sent it or receives it.
                let position = id
                    .as_ref()
                    .and_then(ConversationId::owner)
                    .and_then(|user| crate::store::inbox::position_for(message, user));
                self.push_assistant_new(conversation, &body, position);
            }
            None => {
                let hub = self.hub().clone();
                let im = self.clone();
                let conversation = conversation.clone();
                tokio::spawn(async move {
                    if let Ok(members) = im.store().members(&conversation).await {
                        for member in members {
                            hub.publish(
                                &user_route(&member.user_id, "messages"),
                                Publication::json_event("message.new", body.clone()),
                            );
                        }
                    }
                });
            }
        }
    }

    pub(super) fn publish_json(&self, route: &Route, event: &'static str, body: &[u8]) {
        self.hub()
            .publish(route, Publication::json_event(event, body.to_vec()));
    }

    /// Records `message.offline` when the recipient has no session on any node, for a
    /// push-notification service.
    fn offline_event(&self, message: MessageRow, recipient: String) {
        let im = self.clone();
        tokio::spawn(async move {
            let presence = im.presence().lookup(&[recipient.as_str()]).await;
            if presence.first().is_some_and(|p| !p.online) {
                im.record(
                    "message.offline",
                    json!({
                        "conversationId": message.conversation_id,
                        "messageId": message.id.to_string(),
                        "clientMsgId": message.client_msg_id,
                        "senderId": message.sender_id,
                        "userIds": [recipient],
                    }),
                )
                .await;
            }
        });
    }

    /// Records a private message as delivered and tells the sender.
    fn delivered(&self, message: &MessageRow) {
        if let Some(recipient) = peer_of(&message.conversation_id, &message.sender_id) {
            self.inner
                .delivery
                .delivered(&message.conversation_id, &recipient, message.seq);
        }
        self.push_user(
            &message.sender_id,
            "events",
            "message.delivered",
            &DeliveredEvent {
                conversation_id: &message.conversation_id,
                message_id: message.id,
                seq: message.seq,
            },
        );
    }

    /// Moves the reader's read position forward and tells their other sessions and, in
    /// private chats, the other user.
    ///
    /// # Errors
    ///
    /// `NOT_FOUND`, `NOT_MEMBER`, `INVALID_ARGUMENT`, `UNAVAILABLE`.
    pub async fn read(
        &self,
        reader: &Identity,
        conversation: &str,
        up_to_seq: i64,
        origin: Origin,
    ) -> Result<i64, AppError> {
        if up_to_seq < 0 {
            return Err(AppError::invalid("upToSeq must not be negative"));
        }
        let (row, member) = self
            .membership(&super::conversation_id(conversation)?, &reader.user_id)
            .await?;
        let moved = self
            .store()
            .mark_read(conversation, &reader.user_id, up_to_seq)
            .await?;
        let Some(read_seq) = moved else {
            return Ok(member.read_seq.max(member.joined_seq));
        };
        let exclude = match origin {
            Origin::Session(id) => Some(id),
            Origin::Rest => None,
        };
        self.record(
            "message.read",
            json!({"conversationId": conversation, "userIds": [reader.user_id], "seq": read_seq}),
        )
        .await;
        if row.kind.parse() == Ok(ConversationKind::Group) {
            let before = member.read_seq.max(member.joined_seq);
            self.inner.read_counts.read(conversation, before, read_seq);
        }
        let unread = (row.last_seq - read_seq).max(0);
        self.push_user_except(
            &reader.user_id,
            "events",
            "conversation.updated",
            &json!({"conversationId": conversation, "readSeq": read_seq, "unreadCount": unread}),
            exclude,
        );
        if let Some(peer) = peer_of(conversation, &reader.user_id) {
            self.push_user(
                &peer,
                "events",
                "message.read",
                &json!({"conversationId": conversation, "readerId": reader.user_id, "upToSeq": read_seq}),
            );
        }
        Ok(read_seq)
    }

    /// Recalls a message: its sender within the recall window, or a group's owner or admin at
    /// any time.
    ///
    /// # Errors
    ///
    /// `NOT_FOUND` (also for a message in a conversation the caller is not in), `FORBIDDEN`,
    /// `RECALL_WINDOW_EXPIRED`, `CONFLICT`.
    pub async fn recall(&self, caller: &Identity, id: i64) -> Result<MessageRow, AppError> {
        let message = self
            .store()
            .message(id)
            .await?
            .ok_or_else(super::no_message)?;
        let conversation =
            super::conversation_id(&message.conversation_id).map_err(hide_conversation)?;
        let (row, member) = self
            .access(&conversation, caller)
            .await
            .map_err(hide_conversation)?;
        let moderator = row.kind.parse() == Ok(ConversationKind::Group)
            && member.is_some_and(|m| m.role.parse().is_ok_and(MemberRole::manages));
        if !moderator {
            if message.sender_id != caller.user_id {
                return Err(AppError::forbidden(
                    "only the sender may recall this message",
                ));
            }
            let window =
                i64::try_from(self.settings().recall_window.as_millis()).unwrap_or(i64::MAX);
            if now_ms() - message.created_at > window {
                return Err(AppError::new(
                    ErrorCode::RecallWindowExpired,
                    "the recall window has passed",
                ));
            }
        }
        let recalled = self.store().recall(id).await?;
        self.record(
            "message.recalled",
            json!({
                "conversationId": recalled.conversation_id,
                "messageId": recalled.id.to_string(),
                "senderId": recalled.sender_id,
                "userIds": [caller.user_id],
            }),
        )
        .await;
        let body = super::to_json(&json!({
            "conversationId": recalled.conversation_id,
            "messageId": recalled.id.to_string(),
            "seq": recalled.seq,
        }));
        self.push_where_sent(&conversation, "message.recalled", &body)
            .await?;
        Ok(recalled)
    }

    /// The conversation's members: for a non-group conversation, the users its messages are
    /// pushed to.
    pub(super) async fn audience(&self, conversation: &str) -> Result<Vec<String>, AppError> {
        Ok(self
            .store()
            .members(conversation)
            .await?
            .into_iter()
            .map(|m| m.user_id)
            .collect())
    }

    /// Hides a message from the caller's history.
    ///
    /// # Errors
    ///
    /// `NOT_FOUND` (also for a message in a conversation the caller is not in),
    /// `UNAVAILABLE`.
    pub async fn delete(&self, caller: &Identity, id: i64) -> Result<(), AppError> {
        let message = self
            .store()
            .message(id)
            .await?
            .ok_or_else(super::no_message)?;
        let conversation =
            super::conversation_id(&message.conversation_id).map_err(hide_conversation)?;
        self.membership(&conversation, &caller.user_id)
            .await
            .map_err(hide_conversation)?;
        self.store().delete_for(&caller.user_id, &message).await?;
        // The caller's other devices drop it too, and their list shows the message before it
        // when it was the last.
        let id = &message.conversation_id;
        if let Ok(view) = self.conversation_view(&caller.user_id, id).await {
            self.push_user(&caller.user_id, "events", "conversation.updated", &view);
        }
        Ok(())
    }

    /// Tells the other members that the caller is typing (not the session it came from).
    /// Nothing is stored. Signals beyond `limits.typing_rate` are dropped without an error (a
    /// client sends them while the user types and has nothing to do about a refusal), as are
    /// those of a private chat where either user blocked the other.
    ///
    /// # Errors
    ///
    /// `NOT_FOUND`, `NOT_MEMBER`.
    pub async fn typing(
        &self,
        caller: &Identity,
        conversation: &str,
        origin: Origin,
    ) -> Result<(), AppError> {
        if !self.within_rate(Action::Typing, &caller.user_id).await {
            return Ok(());
        }
        let id = super::conversation_id(conversation)?;
        self.membership(&id, &caller.user_id).await?;
        let body = json!({"conversationId": conversation, "userId": caller.user_id});
        match id.kind() {
            ConversationKind::Group => {
                // The topic reaches the typing session too; it is not told about itself.
                let mut publication = Publication::json_event("typing", super::to_json(&body));
                if let Origin::Session(session) = origin {
                    publication.exclude_session = Some(session);
                }
                if let Some(topic) = id.topic() {
                    self.hub().publish(&Route::Topic(topic), publication);
                }
            }
            ConversationKind::Private => {
                let Some(peer) = id.peer(&caller.user_id).map(str::to_owned) else {
                    return Ok(());
                };
                let blocked = self.store().blocked_between(&caller.user_id, &peer).await?;
                if !blocked {
                    self.push_user(&peer, "events", "typing", &body);
                }
            }
            _ => {
                for user in self.audience(conversation).await? {
                    if user != caller.user_id {
                        self.push_user(&user, "events", "typing", &body);
                    }
                }
            }
        }
        Ok(())
    }
}

/// A message's conversation that the caller may not see answers as if the message did not
/// exist: naming the conversation would tell its id (who talks to whom, a group's secret id).
fn hide_conversation(error: AppError) -> AppError {
    match error.code {
        ErrorCode::NotFound | ErrorCode::NotMember => super::no_message(),
        _ => error,
    }
}

/// `message.new` for `/user/queue/messages`, with the receiving user's inbox position (header
/// `position`, and the publication's sequence: a resumed subscription tells the replayed ones
/// by it, see `crate::hub::replay`).
pub(super) fn inbox_publication(body: impl Into<Bytes>, position: Option<i64>) -> Publication {
    let mut publication = Publication::json_event("message.new", body);
    if let Some(position) = position {
        publication
            .headers
            .push(ByteString::from_static("position"), position.to_string());
        publication.sequence = Some(position);
    }
    publication
}

pub(super) fn user_route(user: &str, queue: &str) -> Route {
    Route::User {
        user: user.to_owned(),
        queue: queue.to_owned(),
    }
}

/// `message.delivered`, sent for every private message delivered: a struct rather than a
/// `json!` map, which would allocate each key and value.
#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct DeliveredEvent<'a> {
    conversation_id: &'a str,
    #[serde(serialize_with = "super::json::as_string")]
    message_id: i64,
    seq: i64,
}

/// Marks a private message delivered when a client-ack subscriber ACKs it.
struct DeliveredOnAck {
    im: Im,
    message: Arc<MessageRow>,
}

impl AckHook for DeliveredOnAck {
    fn acked(&self) {
        self.im.delivered(&self.message);
    }
}

//! The IM layer's STOMP side: `/app/*` handlers, SEND to `/topic/group.<id>`, system sends to
//! `/user/<id>/queue/notifications`, and the SUBSCRIBE guards of `/topic/group.*` and
//! `/topic/presence.*`.

use std::sync::Arc;

use serde::de::DeserializeOwned;

use super::Im;
use super::json::{
    EditRequest, NotificationRequest, PinRequest, ReactRequest, ReadRequest, RecallRequest,
    SendRequest, TypingRequest, message_id,
};
use super::messages::Origin;
use crate::app_error::{AppError, ErrorCode};
use crate::auth::Identity;
use crate::domain::{ConversationId, ConversationKind, GROUP_TOPIC_PREFIX, kind_of};
use crate::router::{
    AfterReceipt, AppHandler, AppRequest, Destination, Extensions, HandlerFuture, SubscribeGuard,
};

/// Registers the IM layer with the router.
pub fn extensions(im: &Im) -> Extensions {
    let handler = |kind: Kind| -> Arc<dyn AppHandler> {
        Arc::new(Handler {
            im: im.clone(),
            kind,
        })
    };
    Extensions::new()
        .app("private.send", handler(Kind::Send(SendKind::Private)))
        .app("group.send", handler(Kind::Send(SendKind::Group)))
        .app("assistant.send", handler(Kind::Send(SendKind::Assistant)))
        .app("message.read", handler(Kind::Other(OtherKind::Read)))
        .app("message.recall", handler(Kind::Other(OtherKind::Recall)))
        .app("message.edit", handler(Kind::Other(OtherKind::Edit)))
        .app("message.react", handler(Kind::Other(OtherKind::React)))
        .app("message.pin", handler(Kind::Other(OtherKind::Pin)))
        .app("typing", handler(Kind::Other(OtherKind::Typing)))
        .topics(
            GROUP_TOPIC_PREFIX,
            Arc::new(GroupGuard { im: im.clone() }),
            Some(handler(Kind::Send(SendKind::Topic))),
        )
        .topics(
            super::assistant::ASSISTANT_TOPIC,
            Arc::new(super::assistant::AssistantGuard),
            None,
        )
        .topics(
            super::announcements::ANNOUNCEMENTS_TOPIC,
            Arc::new(AnnouncementsGuard),
            Some(handler(Kind::Other(OtherKind::Announcement))),
        )
        .topics(
            "presence.",
            Arc::new(PresenceGuard { im: im.clone() }),
            None,
        )
        .user_queue_send(
            "notifications",
            handler(Kind::Other(OtherKind::Notification)),
        )
        .replay_topics(
            GROUP_TOPIC_PREFIX,
            super::replay::ImReplay::new(im, super::replay::Replayed::GroupTopic),
        )
        .replay_user_queue(
            "notifications",
            super::replay::ImReplay::new(im, super::replay::Replayed::Notifications),
        )
        .replay_user_queue("messages", super::inbox::InboxReplay::new(im))
        .observer(Arc::new(im.presence().clone()))
}

#[derive(Clone, Copy)]
enum Kind {
    /// A chat message.
    Send(SendKind),
    Other(OtherKind),
}

/// Where a chat send names its conversation.
#[derive(Clone, Copy)]
enum SendKind {
    /// `/app/private.send`: the body's `to`.
    Private,
    /// `/app/group.send`: the body's `conversationId`, a group.
    Group,
    /// `/app/assistant.send`: the sender's assistant conversation.
    Assistant,
    /// `/topic/group.<id>`: the destination.
    Topic,
}

#[derive(Clone, Copy)]
enum OtherKind {
    Read,
    Recall,
    Edit,
    React,
    Pin,
    Typing,
    Notification,
    Announcement,
}

struct Handler {
    im: Im,
    kind: Kind,
}

fn parse<T: DeserializeOwned>(body: &[u8]) -> Result<T, AppError> {
    serde_json::from_slice(body).map_err(|e| AppError::invalid(format!("invalid JSON body: {e}")))
}

impl AppHandler for Handler {
    fn handle<'a>(
        &'a self,
        request: AppRequest<'a>,
    ) -> HandlerFuture<'a, Result<Option<AfterReceipt>, AppError>> {
        let body = request.body;
        let sends = matches!(self.kind, Kind::Send(_));
        let counted = sends || matches!(self.kind, Kind::Other(OtherKind::Notification));
        Box::pin(async move {
            let result = self.dispatch(request).await;
            if counted {
                crate::metrics::Metrics::get().send(
                    crate::metrics::SendSource::Stomp,
                    result.as_ref().map(drop).map_err(|e| e.code),
                );
            }
            // A refused send names its clientMsgId whenever the body has one, also when the
            // refusal came before the body was fully understood.
            result.map_err(|mut error| {
                if sends && error.client_msg_id.is_none() {
                    error.client_msg_id = client_msg_id_of(body);
                }
                error
            })
        })
    }

    /// Sends and notifications are pipelined: each takes its turn only to queue its message for
    /// the writer. Reads, recalls and typing run once the session's earlier frames are done
    /// (a read or a recall may name a message just sent).
    fn pipelines(&self) -> bool {
        matches!(
            self.kind,
            Kind::Send(_) | Kind::Other(OtherKind::Notification)
        )
    }
}

/// The `clientMsgId` of a send's body, if it is JSON with one.
fn client_msg_id_of(body: &[u8]) -> Option<String> {
    let value: serde_json::Value = serde_json::from_slice(body).ok()?;
    value
        .get("clientMsgId")?
        .as_str()
        .map(|id| id.trim().to_owned())
        .filter(|id| !id.is_empty())
}

impl Handler {
    /// A chat send is checked, then stored in its turn, with nothing but a boxed message held
    /// from one half to the other; every other arm is boxed. This state is allocated for every
    /// SEND and is as large as its largest await: kept under 1 KiB, it comes from the
    /// allocator's per-thread cache.
    async fn dispatch(&self, request: AppRequest<'_>) -> Result<Option<AfterReceipt>, AppError> {
        let kind = match self.kind {
            Kind::Send(kind) => kind,
            Kind::Other(kind) => return self.dispatch_other(kind, request).await,
        };
        let identity = &request.session.identity;
        let message = {
            // Boxed: held across the checks' awaits, inline it would take 216 bytes of this
            // state.
            let send = Box::new(send_request(kind, &request)?);
            self.im.prepare_send(identity, &send).await?
        };
        let sent = self.im.store_prepared(message, request.turn).await?;
        let im = self.im.clone();
        Ok(Some(Box::new(move || im.push_sent(sent))))
    }

    /// Every arm is boxed, so that this state stays small too.
    async fn dispatch_other(
        &self,
        kind: OtherKind,
        request: AppRequest<'_>,
    ) -> Result<Option<AfterReceipt>, AppError> {
        let turn = request.turn;
        let identity = &request.session.identity;
        let im = &self.im;
        match kind {
            OtherKind::Read => {
                let read: ReadRequest = parse(request.body)?;
                let conversation = read
                    .conversation_id
                    .ok_or_else(|| AppError::invalid("missing conversationId"))?;
                Box::pin(im.read(
                    identity,
                    &conversation,
                    read.up_to_seq,
                    Origin::Session(request.session.id),
                ))
                .await?;
                Ok(None)
            }
            OtherKind::Recall => {
                let recall: RecallRequest = parse(request.body)?;
                let id = named_message(Some(&recall.message_id))?;
                Box::pin(im.recall(identity, id)).await?;
                Ok(None)
            }
            OtherKind::Edit => {
                let edit: EditRequest = parse(request.body)?;
                let id = named_message(edit.message_id.as_ref())?;
                Box::pin(im.edit(identity, id, edit.content)).await?;
                Ok(None)
            }
            OtherKind::React => {
                let react: ReactRequest = parse(request.body)?;
                let id = named_message(react.message_id.as_ref())?;
                Box::pin(im.react(identity, id, &react.emoji, react.on)).await?;
                Ok(None)
            }
            OtherKind::Pin => {
                let pin: PinRequest = parse(request.body)?;
                let id = named_message(Some(&pin.message_id))?;
                Box::pin(im.pin(identity, id, pin.on)).await?;
                Ok(None)
            }
            OtherKind::Typing => {
                let typing: TypingRequest = parse(request.body)?;
                Box::pin(im.typing(
                    identity,
                    &typing.conversation_id,
                    Origin::Session(request.session.id),
                ))
                .await?;
                Ok(None)
            }
            OtherKind::Notification => {
                let user = match request.destination {
                    Destination::UserQueue { user, .. } => user,
                    _ => "",
                };
                let notification: NotificationRequest = parse(request.body)?;
                Box::pin(im.notify(identity, user, &notification, turn)).await?;
                Ok(None)
            }
            OtherKind::Announcement => {
                if let Destination::Topic(name) = request.destination
                    && name != super::announcements::ANNOUNCEMENTS_TOPIC
                {
                    return Err(AppError::forbidden(format!("no topic {name}")));
                }
                let headers = crate::router::message_headers(request.headers);
                Box::pin(im.announce(identity, &headers, request.body)).await?;
                Ok(None)
            }
        }
    }
}

/// The request of a chat send, its target taken from the destination and the kind of send.
fn send_request(kind: SendKind, request: &AppRequest<'_>) -> Result<SendRequest, AppError> {
    let identity = &request.session.identity;
    match kind {
        SendKind::Private => parse(request.body).and_then(|mut send: SendRequest| {
            if send.to.is_none() {
                return Err(AppError::invalid("missing to"));
            }
            send.conversation_id = None;
            Ok(send)
        }),
        SendKind::Group => parse(request.body).and_then(group_send),
        SendKind::Assistant => parse(request.body).and_then(|mut send: SendRequest| {
            let conversation = send
                .conversation_id
                .get_or_insert_with(|| ConversationId::assistant(&identity.user_id).into());
            // A malformed assistant id is answered by `Im::prepare_send`, as for any other.
            if kind_of(conversation) != Some(ConversationKind::Assistant) {
                return Err(AppError::invalid(format!(
                    "{conversation} is not an assistant conversation"
                )));
            }
            send.to = None;
            Ok(send)
        }),
        SendKind::Topic => parse(request.body).and_then(|mut send: SendRequest| {
            let conversation = match request.destination {
                Destination::Topic(topic) => topic.strip_prefix(GROUP_TOPIC_PREFIX),
                _ => None,
            }
            .unwrap_or_default();
            if send
                .conversation_id
                .as_ref()
                .is_some_and(|c| *c != conversation)
            {
                return Err(AppError::invalid(
                    "conversationId does not match the destination",
                ));
            }
            send.conversation_id = Some(conversation.to_owned());
            group_send(send)
        }),
    }
}

/// The message a request's `messageId` names.
fn named_message(id: Option<&serde_json::Value>) -> Result<i64, AppError> {
    id.and_then(message_id)
        .ok_or_else(|| AppError::invalid("messageId is not a message id"))
}

/// A group send's request: it names a group.
fn group_send(mut send: SendRequest) -> Result<SendRequest, AppError> {
    let conversation = send
        .conversation_id
        .as_deref()
        .ok_or_else(|| AppError::invalid("missing conversationId"))?;
    if kind_of(conversation) != Some(ConversationKind::Group) {
        return Err(AppError::invalid(format!("{conversation} is not a group")));
    }
    send.to = None;
    Ok(send)
}

/// Members only may subscribe to `/topic/group.<id>`.
struct GroupGuard {
    im: Im,
}

impl SubscribeGuard for GroupGuard {
    fn authorize<'a>(
        &'a self,
        identity: &'a Identity,
        name: &'a str,
    ) -> HandlerFuture<'a, Result<(), AppError>> {
        Box::pin(async move {
            let conversation = name.strip_prefix(GROUP_TOPIC_PREFIX).unwrap_or_default();
            let membership = match super::conversation_id(conversation) {
                Ok(id) => self.im.membership(&id, &identity.user_id).await.map(drop),
                Err(error) => Err(error),
            };
            match membership {
                Ok(()) => Ok(()),
                Err(error) if matches!(error.code, ErrorCode::NotMember | ErrorCode::NotFound) => {
                    Err(AppError::forbidden(format!(
                        "not a member of {conversation}"
                    )))
                }
                Err(error) => Err(error),
            }
        })
    }

    fn subscribed<'a>(&'a self, _identity: &'a Identity, name: &'a str) -> HandlerFuture<'a, ()> {
        Box::pin(async move {
            // Only the group's first subscriber here needs the read.
            if self.im.hub().orders_topic(name) {
                return;
            }
            // Read now that this node's binding exists: every seq after this one reaches it.
            let conversation = name.strip_prefix(GROUP_TOPIC_PREFIX).unwrap_or_default();
            if let Ok(id) = super::conversation_id(conversation)
                && let Ok(row) = self.im.conversation(&id).await
            {
                self.im.hub().order_topic_from(name, row.last_seq + 1);
            }
        })
    }
}

/// Users who share a conversation with `<userId>` and whom `<userId>` has not blocked may
/// subscribe to `/topic/presence.<userId>`.
/// Any user may subscribe to `/topic/announcements` (and only that name of its prefix).
struct AnnouncementsGuard;

impl SubscribeGuard for AnnouncementsGuard {
    fn authorize<'a>(
        &'a self,
        _identity: &'a Identity,
        name: &'a str,
    ) -> HandlerFuture<'a, Result<(), AppError>> {
        Box::pin(async move {
            if name == super::announcements::ANNOUNCEMENTS_TOPIC {
                Ok(())
            } else {
                Err(AppError::forbidden(format!("no topic {name}")))
            }
        })
    }
}

struct PresenceGuard {
    im: Im,
}

impl SubscribeGuard for PresenceGuard {
    fn authorize<'a>(
        &'a self,
        identity: &'a Identity,
        name: &'a str,
    ) -> HandlerFuture<'a, Result<(), AppError>> {
        Box::pin(async move {
            let user = name.strip_prefix("presence.").unwrap_or_default();
            let visible = self
                .im
                .store()
                .presence_visible_to(&identity.user_id, &[user])
                .await?;
            if visible.contains(user) {
                Ok(())
            } else {
                // One answer whether no conversation is shared or the user blocked the caller.
                Err(AppError::forbidden(format!(
                    "not allowed to watch the presence of {user}"
                )))
            }
        })
    }
}

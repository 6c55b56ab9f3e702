//! Operator controls over sessions, on every node at once: closing a user's sessions (or one of
//! them) with an ERROR that says why, and listing them.
//!
//! A control travels as a publication to the user's route on [`CONTROL_QUEUE`], so that the
//! relay takes it to exactly the nodes where the user has sessions; a queue name with a control
//! character is one no client can subscribe or send to. Listing asks every such node to publish
//! its part to a reply topic that only the asking node is bound to, and gathers the answers for
//! a short while.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use stomp_codec::{Command, Frame, encode};
use tokio::sync::mpsc;

use super::Hub;
use super::publication::Publication;
use crate::delivery::{Interest, Route, SessionHandle};

/// The user queue controls are published to.
pub const CONTROL_QUEUE: &str = "\u{1}control";

/// How long a listing waits for other nodes' answers.
pub const GATHER_WAIT: Duration = Duration::from_millis(500);

/// One session, as operators see it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct SessionView {
    /// Its name: the `session` header of its CONNECTED, unique in the cluster.
    pub session: String,
    /// The node it is on.
    pub node: String,
    /// `websocket` or `tcp`.
    pub transport: String,
    /// The peer's address.
    pub remote_address: Option<String>,
    /// When it connected (epoch ms).
    pub connected_at: i64,
    /// Subscriptions it holds.
    pub subscriptions: usize,
}

#[derive(Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "camelCase")]
enum Control {
    Close {
        session: Option<String>,
        reason: String,
    },
    List {
        reply: String,
    },
}

impl Hub {
    /// Closes every session of `user` in the cluster, or only the one named `session`, with an
    /// ERROR whose body is `reason`.
    pub fn close_sessions(&self, user: &str, session: Option<&str>, reason: &str) {
        let control = Control::Close {
            session: session.map(str::to_owned),
            reason: reason.to_owned(),
        };
        self.publish_control(user, &control);
    }

    /// The sessions of `user` in the cluster: this node's at once, the other nodes' as they
    /// answer within [`GATHER_WAIT`].
    pub async fn list_sessions(&self, user: &str) -> Vec<SessionView> {
        let reply = format!("\u{1}reply.{}", self.next_message_id());
        let (tx, mut rx) = mpsc::unbounded_channel();
        self.inner.collectors.insert(reply.clone(), tx);
        self.inner.collecting.fetch_add(1, Ordering::Relaxed);
        let bound = self
            .add_interest(Interest::Topic(reply.clone()))
            .await
            .is_ok();
        self.publish_control(
            user,
            &Control::List {
                reply: reply.clone(),
            },
        );
        let mut views: Vec<SessionView> = Vec::new();
        let deadline = tokio::time::Instant::now() + GATHER_WAIT;
        loop {
            while let Ok(body) = rx.try_recv() {
                views.extend(serde_json::from_slice::<Vec<SessionView>>(&body).unwrap_or_default());
            }
            // One node: its answer came with the request.
            if self.inner.relay.is_local() {
                break;
            }
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(body)) => views
                    .extend(serde_json::from_slice::<Vec<SessionView>>(&body).unwrap_or_default()),
                Ok(None) | Err(_) => break,
            }
        }
        self.inner.collectors.remove(&reply);
        self.inner.collecting.fetch_sub(1, Ordering::Relaxed);
        if bound {
            self.remove_interest(Interest::Topic(reply)).await;
        }
        views.sort_by(|a, b| (a.connected_at, &a.session).cmp(&(b.connected_at, &b.session)));
        views.dedup_by(|a, b| a.session == b.session);
        views
    }

    fn publish_control(&self, user: &str, control: &Control) {
        let body = serde_json::to_vec(control).unwrap_or_default();
        self.publish(
            &Route::User {
                user: user.to_owned(),
                queue: CONTROL_QUEUE.to_owned(),
            },
            Publication {
                body: body.into(),
                ..Publication::default()
            },
        );
    }

    /// A reply to a listing this node asked for; returns whether `topic` was one.
    pub(super) fn collect(&self, topic: &str, body: &Bytes) -> bool {
        if self.inner.collecting.load(Ordering::Relaxed) == 0 {
            return false;
        }
        match self.inner.collectors.get(topic) {
            Some(collector) => {
                let _ = collector.send(body.clone());
                true
            }
            None => false,
        }
    }

    /// Acts on a control for `user` that reached this node.
    pub(super) fn on_control(&self, user: &str, body: &Bytes) {
        let Ok(control) = serde_json::from_slice::<Control>(body) else {
            return;
        };
        let sessions = self.sessions_of(user);
        match control {
            Control::Close { session, reason } => {
                for handle in sessions
                    .iter()
                    .filter(|h| session.as_deref().is_none_or(|name| h.name == name))
                {
                    close_with_error(handle, &reason);
                }
            }
            Control::List { reply } => {
                if sessions.is_empty() {
                    return;
                }
                // Those closing are gone as far as an operator is concerned.
                let views: Vec<SessionView> = sessions
                    .iter()
                    .filter(|handle| !handle.is_closing())
                    .map(|handle| self.view(handle))
                    .collect();
                self.publish(
                    &Route::Topic(reply),
                    Publication {
                        body: serde_json::to_vec(&views).unwrap_or_default().into(),
                        ..Publication::default()
                    },
                );
            }
        }
    }

    fn view(&self, handle: &Arc<SessionHandle>) -> SessionView {
        SessionView {
            session: handle.name.to_string(),
            node: self.node_id().to_owned(),
            transport: handle.origin.transport.as_str().to_owned(),
            remote_address: handle.origin.remote.map(|peer| peer.to_string()),
            connected_at: handle.connected_at,
            subscriptions: self
                .inner
                .subscriptions
                .get(&handle.id)
                .map_or(0, |subs| subs.len()),
        }
    }
}

/// Sends an ERROR saying why, then closes the connection once it is written.
fn close_with_error(handle: &SessionHandle, reason: &str) {
    let frame = Frame::new(Command::Error)
        .header("message", "closed by an administrator")
        .header("content-type", "text/plain")
        .body(reason.to_owned());
    let mut bytes = bytes::BytesMut::new();
    encode(&frame, handle.version, &mut bytes);
    handle.end_with_error(bytes.freeze());
}

//! The hub's ordering of sequenced topic publications, without sockets.

use std::time::{Duration, SystemTime};

use stomp_codec::Version;
use tokio_util::sync::CancellationToken;

use super::*;
use crate::auth::{Identity, Role};
use crate::delivery::{AckMode, Route, SessionLimits, UnackedLimits};

fn hub() -> Hub {
    Hub::new(
        HubSettings {
            node_id: "n".into(),
            max_sessions_per_user: 4,
        },
        Arc::new(LocalRelay),
        Arc::new(LocalQueues::new(16)),
    )
}

fn session(id: u64) -> Arc<SessionHandle> {
    let identity = Identity {
        user_id: format!("u{id}"),
        roles: vec![Role::User],
        name: None,
        expires_at: SystemTime::now() + Duration::from_secs(60),
    };
    SessionHandle::new(
        id,
        format!("s{id}").into(),
        identity,
        Version::V1_2,
        crate::delivery::SessionOrigin::MEMORY,
        SessionLimits {
            max_outbound_bytes: 1 << 20,
            unacked: UnackedLimits {
                per_session: 100,
                per_subscription: 100,
            },
        },
        CancellationToken::new(),
    )
}

/// A session subscribed to `/topic/<topic>` as `sub`.
async fn subscriber(hub: &Hub, topic: &str) -> Arc<SessionHandle> {
    let member = session(1);
    subscribe(hub, &member, SubscriptionKey::Topic(topic.into()), None).await;
    member
}

/// Subscribes `member` to `key` as `sub`, `ack:auto`, behind `gate` if any.
async fn subscribe(
    hub: &Hub,
    member: &Arc<SessionHandle>,
    key: SubscriptionKey,
    gate: Option<Arc<replay::ReplayGate>>,
) {
    hub.subscribe(
        member,
        "sub".into(),
        key,
        crate::hub::SubscribeOptions {
            ack: AckMode::Auto,
            prefetch: 1,
            gate,
        },
        8,
    )
    .await
    .unwrap();
}

fn sequenced(seq: i64) -> Publication {
    let mut publication = Publication::json_event("message.new", "{}");
    publication.sequence = Some(seq);
    publication
}

#[tokio::test]
async fn a_topic_without_subscribers_keeps_no_order_that_would_hold_later_seqs() {
    let hub = hub();
    let route = Route::Topic("group.g".into());
    // Seen while nobody here subscribes (seqs 2-4 then go only to other nodes).
    assert_eq!(hub.deliver_local(&route, sequenced(1)).total(), 0);
    assert!(!hub.orders_topic("group.g"));

    let member = subscriber(&hub, "group.g").await;
    // The first seq seen with a subscriber passes at once, and the order starts there.
    assert_eq!(hub.deliver_local(&route, sequenced(5)).auto, 1);
    assert_eq!(hub.deliver_local(&route, sequenced(7)).total(), 0);
    assert_eq!(hub.deliver_local(&route, sequenced(6)).auto, 2);

    hub.unsubscribe(&member, "sub").await;
    assert!(!hub.orders_topic("group.g"));
}

#[tokio::test]
async fn a_topic_ordered_from_a_stored_seq_waits_for_that_seq() {
    let hub = hub();
    let route = Route::Topic("group.g".into());
    // Without local subscribers there is nothing to order.
    hub.order_topic_from("group.g", 11);
    assert!(!hub.orders_topic("group.g"));

    let _member = subscriber(&hub, "group.g").await;
    hub.order_topic_from("group.g", 11);
    // 12, stored on another node right after 11, arrives first: it waits for 11.
    assert_eq!(hub.deliver_local(&route, sequenced(12)).total(), 0);
    assert_eq!(hub.deliver_local(&route, sequenced(11)).auto, 2);
    // Once ordered, a later start is ignored.
    hub.order_topic_from("group.g", 3);
    assert_eq!(hub.deliver_local(&route, sequenced(13)).auto, 1);
}

#[tokio::test]
async fn a_message_the_replay_delivered_is_dropped_when_it_is_published_after_the_gate_opens() {
    let hub = hub();
    let route = Route::Topic("group.g".into());
    let member = session(1);
    let gate = replay::ReplayGate::new();
    subscribe(
        &hub,
        &member,
        SubscriptionKey::Topic("group.g".into()),
        Some(gate.clone()),
    )
    .await;
    // The replay read seqs up to 5; the push of 5 comes only after its commit, once open.
    hub.open_gate(&member, "sub", &gate, Vec::new(), Some(5));
    assert_eq!(hub.deliver_local(&route, sequenced(5)).total(), 0);
    assert_eq!(hub.deliver_local(&route, sequenced(6)).auto, 1);
}

#[tokio::test]
async fn a_users_queue_is_ordered_by_position_and_forgotten_with_its_last_subscriber() {
    let hub = hub();
    let member = session(1);
    let key = SubscriptionKey::User {
        user: "u1".into(),
        queue: "messages".into(),
    };
    subscribe(&hub, &member, key.clone(), None).await;
    let route = Route::User {
        user: "u1".into(),
        queue: "messages".into(),
    };
    hub.order_from(&route, 4);
    // Two conversations' pushes race: position 5 waits for 4.
    assert_eq!(hub.deliver_local(&route, sequenced(5)).total(), 0);
    assert_eq!(hub.deliver_local(&route, sequenced(4)).auto, 2);
    // A duplicate send pushed again with its old position passes at once.
    assert_eq!(hub.deliver_local(&route, sequenced(2)).auto, 1);
    // Unsequenced events (recalls, edits) are not held.
    let event = Publication::json_event("message.recalled", "{}");
    assert_eq!(hub.deliver_local(&route, event).auto, 1);

    hub.unsubscribe(&member, "sub").await;
    assert!(!hub.inner.sequencer.tracks(&key));
}

//! Delivery status of private messages (contract 5.2) on every configured backend: written to an
//! `ack:auto` session of the recipient, ACKed on a `client` subscription, or not at all.

use crate::common::im::{self, drain, event_on, private_send, quiet, receipt};
use crate::common::{Client, TestBroker, db};
use serde_json::{Value, json};
use stomp_codec::{Command, Frame};

/// The status of a message in `user`'s history, once it is `want` (polled: the status is written
/// a few milliseconds after the event).
async fn status_becomes(broker: &TestBroker, user: &str, id: &str, want: &str) {
    im::eventually(&format!("status {want}"), || async {
        let message = im::stored(broker, user, "private_alice_bob", id).await?;
        (message["status"] == want).then_some(())
    })
    .await;
}

async fn status(broker: &TestBroker, user: &str, id: &str) -> Value {
    im::stored(broker, user, "private_alice_bob", id)
        .await
        .expect("stored")["status"]
        .clone()
}

/// Alice sends one message to Bob; returns it as pushed to her.
async fn send_one(alice: &mut Client) -> Value {
    private_send(alice, "bob", "c-1", "hi", "r1").await;
    receipt(alice, "r1").await;
    event_on(alice, "/user/queue/messages", "message.new").await
}

#[tokio::test]
async fn a_message_written_to_an_online_recipient_becomes_delivered_and_the_sender_is_told() {
    for database in db::all().await {
        let broker = im::broker(&database.url, &[]).await;
        let mut alice = broker.im_user("alice").await;
        let mut alice_phone = broker.im_user("alice").await;
        let mut bob = broker.im_user("bob").await;
        let message = send_one(&mut alice).await;
        event_on(&mut bob, "/user/queue/messages", "message.new").await;
        let expected = json!({
            "conversationId": "private_alice_bob",
            "messageId": message["id"],
            "seq": 1,
        });
        let delivered = event_on(&mut alice, "/user/queue/events", "message.delivered").await;
        assert_eq!(delivered, expected, "{}", database.label);
        event_on(&mut alice_phone, "/user/queue/messages", "message.new").await;
        let delivered = event_on(&mut alice_phone, "/user/queue/events", "message.delivered").await;
        assert_eq!(delivered, expected);
        // Bob is not told about his own delivery.
        quiet(&mut bob).await;
        status_becomes(
            &broker,
            "alice",
            message["id"].as_str().unwrap(),
            "delivered",
        )
        .await;
    }
}

#[tokio::test]
async fn a_client_ack_recipient_makes_it_delivered_only_when_it_acks() {
    for database in db::all().await {
        let broker = im::broker(&database.url, &[]).await;
        let mut alice = broker.im_user("alice").await;
        let mut bob = broker.ws("bob").await;
        bob.subscribe("/user/queue/messages", "m", "client").await;
        let message = send_one(&mut alice).await;
        let id = message["id"].as_str().unwrap().to_owned();
        let frame = bob.expect(Command::Message).await;
        assert_eq!(frame.get("event"), Some("message.new"));
        let ack = frame.get("ack").expect("ack header").to_owned();
        // Not delivered before the ACK.
        drain(&mut bob).await;
        quiet(&mut alice).await;
        assert_eq!(
            status(&broker, "alice", &id).await,
            "sent",
            "{}",
            database.label
        );

        bob.send(
            &Frame::new(Command::Ack)
                .header("id", ack.as_str())
                .header("receipt", "acked"),
        )
        .await;
        receipt(&mut bob, "acked").await;
        let delivered = event_on(&mut alice, "/user/queue/events", "message.delivered").await;
        assert_eq!(delivered["messageId"], message["id"], "{}", database.label);
        assert_eq!(delivered["seq"], 1);
        status_becomes(&broker, "alice", &id, "delivered").await;
    }
}

#[tokio::test]
async fn a_message_to_an_offline_recipient_stays_sent() {
    for database in db::all().await {
        let broker = im::broker(&database.url, &[]).await;
        let mut alice = broker.im_user("alice").await;
        let message = send_one(&mut alice).await;
        let id = message["id"].as_str().unwrap().to_owned();
        quiet(&mut alice).await;
        // Bob comes online later: nothing is pushed to him, so nothing changes.
        let mut bob = broker.im_user("bob").await;
        quiet(&mut bob).await;
        quiet(&mut alice).await;
        assert_eq!(
            status(&broker, "bob", &id).await,
            "sent",
            "{}",
            database.label
        );
        let (_, list) = broker
            .api("GET", "/api/v1/conversations", "bob", None)
            .await;
        assert_eq!(list["items"][0]["lastMessage"]["status"], "sent");
        assert_eq!(list["items"][0]["unreadCount"], 1);
    }
}

#[tokio::test]
async fn a_recipient_subscribed_to_other_queues_only_does_not_make_it_delivered() {
    for database in db::all().await {
        let broker = im::broker(&database.url, &[]).await;
        let mut alice = broker.im_user("alice").await;
        let mut bob = broker.ws("bob").await;
        bob.subscribe("/user/queue/events", "e", "auto").await;
        let message = send_one(&mut alice).await;
        quiet(&mut bob).await;
        quiet(&mut alice).await;
        assert_eq!(
            status(&broker, "alice", message["id"].as_str().unwrap()).await,
            "sent",
            "{}",
            database.label
        );
    }
}

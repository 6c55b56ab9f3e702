//! Resume inside STOMP (contract 5.13): a SUBSCRIBE with `since-seq` to a group's topic or to
//! `/user/queue/notifications` gets what was stored after that seq, marked `replay:true`, then
//! the live messages, with no gap and no repeat at the switch. On every configured backend.

use std::time::Duration;

use crate::common::im::{self, body};
use crate::common::{Client, TestBroker, db};
use serde_json::{Value, json};
use stomp_codec::{Command, Frame};

async fn post(broker: &TestBroker, user: &str, group: &str, id: &str) -> Value {
    let (status, sent) = broker
        .api(
            "POST",
            "/api/v1/messages",
            user,
            Some(json!({"conversationId": group, "clientMsgId": id, "content": id})),
        )
        .await;
    assert_eq!(status, 201, "{sent}");
    sent
}

/// The MESSAGEs of `event` a client gets until `done` says it has enough (or nothing comes
/// for a while): each as (its body, whether it was marked replayed).
async fn collect(
    client: &mut Client,
    event: &str,
    mut done: impl FnMut(&[(Value, bool)]) -> bool,
) -> Vec<(Value, bool)> {
    let mut seen = Vec::new();
    while !done(&seen) {
        let Some(crate::common::Received::Frame(frame)) =
            client.receive_within(Duration::from_secs(5)).await
        else {
            break;
        };
        if frame.command == Command::Message && frame.get("event") == Some(event) {
            seen.push((body(&frame), frame.get("replay") == Some("true")));
        }
    }
    seen
}

fn seqs(seen: &[(Value, bool)]) -> Vec<i64> {
    seen.iter()
        .map(|(m, _)| m["seq"].as_i64().unwrap())
        .collect()
}

#[tokio::test]
async fn a_group_subscriber_resumes_with_exactly_what_it_missed() {
    for database in db::all().await {
        let broker = im::broker(&database.url, &[]).await;
        let label = &database.label;
        let group = im::create_group(&broker, "alice", "resume", &["bob"]).await;
        for n in 1..=3 {
            post(&broker, "alice", &group, &format!("m{n}")).await;
        }
        // Bob was away from seq 3 on: 40 more, one recalled, one he deleted for himself.
        let mut ids = Vec::new();
        for n in 4..=43 {
            ids.push(post(&broker, "alice", &group, &format!("m{n}")).await["id"].clone());
        }
        let recalled = ids[10 - 4].as_str().unwrap();
        let deleted = ids[12 - 4].as_str().unwrap();
        let (status, _) = broker
            .api(
                "POST",
                &format!("/api/v1/messages/{recalled}/recall"),
                "alice",
                None,
            )
            .await;
        assert_eq!(status, 200, "{label}");
        let (status, _) = broker
            .api(
                "DELETE",
                &format!("/api/v1/messages/{deleted}"),
                "bob",
                None,
            )
            .await;
        assert_eq!(status, 204, "{label}");

        let mut bob = broker.ws("bob").await;
        bob.subscribe_with(
            &format!("/topic/group.{group}"),
            "g",
            &[("ack", "auto"), ("since-seq", "3")],
        )
        .await;
        post(&broker, "alice", &group, "live").await;
        let seen = collect(&mut bob, "message.new", |s| s.len() >= 40).await;
        let expected: Vec<i64> = (4..=44).filter(|s| *s != 12).collect();
        assert_eq!(seqs(&seen), expected, "{label}: in order, without repeats");
        assert!(seen[..39].iter().all(|(_, replayed)| *replayed), "{label}");
        assert!(!seen[39].1, "{label}: the live one is not marked");
        let tenth = &seen[10 - 4].0;
        assert_eq!(
            (&tenth["status"], &tenth["content"]),
            (&json!("recalled"), &json!("")),
            "{label}"
        );
        im::quiet(&mut bob).await;
    }
}

#[tokio::test]
async fn a_resume_racing_live_sends_neither_loses_nor_repeats() {
    for database in db::all().await {
        let broker = im::broker(&database.url, &[]).await;
        let label = &database.label;
        let group = im::create_group(&broker, "alice", "race", &["bob"]).await;
        let mut alice = broker.im_user("alice").await;
        for n in 1..=20 {
            im::group_send(&mut alice, &group, &format!("a{n}"), "x", &format!("r{n}")).await;
            im::receipt(&mut alice, &format!("r{n}")).await;
        }
        // Alice keeps sending (pipelined, 200 more) while bob resumes from seq 10.
        let sender = {
            let group = group.clone();
            tokio::spawn(async move {
                for n in 21..=220 {
                    im::send_json(
                        &mut alice,
                        "/app/group.send",
                        &json!({"conversationId": group, "clientMsgId": format!("a{n}"), "content": "x"}),
                        None,
                    )
                    .await;
                }
                alice
            })
        };
        let mut bob = broker.ws("bob").await;
        bob.subscribe_with(
            &format!("/topic/group.{group}"),
            "g",
            &[("ack", "auto"), ("since-seq", "10")],
        )
        .await;
        let seen = collect(&mut bob, "message.new", |s| {
            s.last().is_some_and(|(m, _)| m["seq"] == 220)
        })
        .await;
        sender.await.unwrap();
        assert_eq!(
            seqs(&seen),
            (11..=220).collect::<Vec<_>>(),
            "{label}: every seq after 10 once, in order"
        );
        assert!(seen[0].1, "{label}: the first ones are replayed");
    }
}

#[tokio::test]
async fn a_resume_beyond_the_bound_gets_the_newest_and_the_event() {
    let database = db::sqlite();
    let broker = im::broker(&database.url, &[("BROKER_LIMITS_MAX_REPLAY", "10")]).await;
    let group = im::create_group(&broker, "alice", "bound", &["bob"]).await;
    for n in 1..=30 {
        post(&broker, "alice", &group, &format!("m{n}")).await;
    }
    let mut bob = broker.ws("bob").await;
    bob.subscribe_with(
        &format!("/topic/group.{group}"),
        "g",
        &[("ack", "auto"), ("since-seq", "5")],
    )
    .await;
    let frame = bob.expect(Command::Message).await;
    assert_eq!(frame.get("event"), Some("replay.truncated"));
    assert_eq!(
        body(&frame),
        json!({"conversationId": group, "afterSeq": 5, "beforeSeq": 21})
    );
    let seen = collect(&mut bob, "message.new", |s| s.len() >= 10).await;
    assert_eq!(seqs(&seen), (21..=30).collect::<Vec<_>>());
}

#[tokio::test]
async fn notifications_resume_from_their_seq() {
    for database in db::all().await {
        let broker = im::broker(&database.url, &[]).await;
        let label = &database.label;
        for n in 1..=5 {
            let (status, _) = broker
                .api_system(
                    "POST",
                    "/api/v1/notifications",
                    "ops",
                    Some(json!({"userIds": ["carol"], "title": format!("n{n}"), "content": "c"})),
                )
                .await;
            assert_eq!(status, 201, "{label}");
        }
        let mut carol = broker.ws("carol").await;
        carol
            .subscribe_with(
                "/user/queue/notifications",
                "n",
                &[("ack", "auto"), ("since-seq", "2")],
            )
            .await;
        let seen = collect(&mut carol, "notification.new", |s| s.len() >= 3).await;
        // Someone who never had a notification resumes with nothing, and no event.
        let mut dave = broker.ws("dave").await;
        dave.subscribe_with(
            "/user/queue/notifications",
            "n",
            &[("ack", "auto"), ("since-seq", "0")],
        )
        .await;
        im::quiet(&mut dave).await;
        assert_eq!(seqs(&seen), vec![3, 4, 5], "{label}");
        assert!(seen.iter().all(|(_, replayed)| *replayed), "{label}");
        im::quiet(&mut carol).await;
    }
}

#[tokio::test]
async fn since_seq_is_refused_where_it_means_nothing() {
    let database = db::sqlite();
    let broker = im::broker(&database.url, &[]).await;
    for (destination, since) in [
        ("/user/queue/errors", "1"),
        ("/user/queue/notifications", "-1"),
        ("/user/queue/notifications", "x"),
    ] {
        let mut client = broker.ws("bob").await;
        client
            .send(
                &Frame::new(Command::Subscribe)
                    .header("destination", destination)
                    .header("id", "s")
                    .header("since-seq", since),
            )
            .await;
        let error = client.expect(Command::Error).await;
        assert_eq!(
            error.get("message"),
            Some("invalid since-seq header"),
            "{destination} {since}"
        );
    }
}

#[tokio::test]
async fn replays_are_rate_limited_per_user() {
    let database = db::sqlite();
    let broker = im::broker(&database.url, &[("BROKER_LIMITS_REPLAY_RATE", "1/1h")]).await;
    let group = im::create_group(&broker, "alice", "rate", &["bob"]).await;
    post(&broker, "alice", &group, "m1").await;
    let mut bob = broker.ws("bob").await;
    let topic = format!("/topic/group.{group}");
    bob.subscribe_with(&topic, "a", &[("ack", "auto"), ("since-seq", "0")])
        .await;
    let replayed = collect(&mut bob, "message.new", |s| !s.is_empty()).await;
    assert_eq!(seqs(&replayed), vec![1]);
    // The second replay within the hour gets the event alone: page over REST.
    bob.subscribe_with(&topic, "b", &[("ack", "auto"), ("since-seq", "0")])
        .await;
    let frame = bob.expect(Command::Message).await;
    assert_eq!(frame.get("event"), Some("replay.truncated"));
    assert_eq!(
        body(&frame),
        json!({"conversationId": group, "afterSeq": 0, "beforeSeq": null})
    );
    im::quiet(&mut bob).await;
}

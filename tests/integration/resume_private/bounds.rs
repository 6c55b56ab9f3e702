//! The bounds of a private resume: `limits.max_replay` and `limits.max_replay_bytes`
//! (`replay.truncated` per conversation left out), `limits.replay_rate` and
//! `im.private_resume` (one `replay.truncated` of nulls), and the headers refused.

#[allow(clippy::wildcard_imports)]
use super::*;

/// Beyond `limits.max_replay`: one `replay.truncated` per conversation with messages left out
/// (beforeSeq null for one nothing of which is replayed), then the 10 newest by position.
#[tokio::test]
async fn a_private_resume_beyond_the_bound_gets_the_newest_after_one_event_per_conversation() {
    for database in db::all().await {
        let label = database.label;
        let broker = im::broker(&database.url, &[("BROKER_LIMITS_MAX_REPLAY", "10")]).await;
        // Bob's positions: carol 1-4 (seq 1-4), dave 5-7 (seq 1-3), alice 8-12 (seq 1-5),
        // carol 13-15 (seq 5-7), alice 16-21 (seq 6-11).
        let mut stored = Vec::new();
        for (from, count) in [
            ("carol", 4),
            ("dave", 3),
            ("alice", 5),
            ("carol", 3),
            ("alice", 6),
        ] {
            for _ in 0..count {
                let n = stored.len() + 1;
                stored.push(
                    post_private(&broker, from, "bob", &format!("p{n}"), &format!("p{n}")).await,
                );
            }
        }
        let conversation = |from: &str| {
            stored
                .iter()
                .find(|m| m["senderId"] == from)
                .map(|m| m["conversationId"].clone())
                .unwrap()
        };
        // Bob has seen carol's seq 1 and 2 (positions 1 and 2).
        let mut bob = broker.ws("bob").await;
        let got = resume(&mut bob, "m", 2).await;
        assert_eq!(got.len(), 13, "{label}: 3 events and 10 messages: {got:?}");
        let mut events: Vec<Value> = got[..3]
            .iter()
            .map(|g| {
                assert_eq!(
                    (g.event.as_str(), g.replay),
                    ("replay.truncated", true),
                    "{label}: {g:?}"
                );
                g.body.clone()
            })
            .collect();
        events.sort_by_key(|e| e["conversationId"].as_str().unwrap_or_default().to_owned());
        let mut expected = vec![
            json!({"conversationId": conversation("carol"), "afterSeq": 2, "beforeSeq": 5}),
            json!({"conversationId": conversation("dave"), "afterSeq": 0, "beforeSeq": null}),
            json!({"conversationId": conversation("alice"), "afterSeq": 0, "beforeSeq": 5}),
        ];
        expected.sort_by_key(|e| e["conversationId"].as_str().unwrap().to_owned());
        assert_eq!(
            events, expected,
            "{label}: one event per conversation left out"
        );
        let messages = &got[3..];
        assert!(
            messages
                .iter()
                .all(|g| g.event == "message.new" && g.replay),
            "{label}: {messages:?}"
        );
        assert_eq!(
            positions(messages),
            (12..=21).collect::<Vec<_>>(),
            "{label}"
        );
        assert_eq!(
            ids(messages),
            stored[11..].iter().map(id_of).collect::<Vec<_>>(),
            "{label}: the 10 newest"
        );
        let live = post_private(&broker, "dave", "bob", "live", "live").await;
        let copy = next_new(&mut bob).await;
        assert_eq!(
            (id_of(&copy.body), copy.position, copy.replay),
            (id_of(&live), Some(22), false),
            "{label}"
        );
        im::quiet(&mut bob).await;
    }
}

/// Beyond `limits.max_replay_bytes`: the newest that fit, after the event.
#[tokio::test]
async fn a_private_resume_beyond_the_byte_bound_gets_the_newest_that_fit() {
    for database in db::all().await {
        let label = database.label;
        // Each message is about 4,300 bytes of JSON: two fit in 10,000, three do not.
        let broker = im::broker(
            &database.url,
            &[
                ("BROKER_LIMITS_MAX_REPLAY_BYTES", "10000"),
                ("BROKER_LIMITS_TEXT_MAX_CHARS", "5000"),
            ],
        )
        .await;
        let mut stored = Vec::new();
        for n in 1..=5 {
            let content = format!("{n}").repeat(4000);
            stored.push(post_private(&broker, "alice", "bob", &format!("p{n}"), &content).await);
        }
        let mut bob = broker.ws("bob").await;
        let got = resume(&mut bob, "m", 0).await;
        assert_eq!(got.len(), 3, "{label}: {got:?}");
        assert_eq!(
            (got[0].event.as_str(), got[0].replay, &got[0].body),
            (
                "replay.truncated",
                true,
                &json!({"conversationId": stored[0]["conversationId"], "afterSeq": 0, "beforeSeq": 4})
            ),
            "{label}"
        );
        assert_eq!(positions(&got[1..]), vec![4, 5], "{label}");
        assert_eq!(
            ids(&got[1..]),
            stored[3..].iter().map(id_of).collect::<Vec<_>>(),
            "{label}"
        );
        assert!(
            got[1..]
                .iter()
                .all(|g| g.replay && g.event == "message.new")
        );
        im::quiet(&mut bob).await;
    }
}

/// A second resume within `limits.replay_rate` gets a single `replay.truncated` of nulls, then
/// live.
#[tokio::test]
async fn a_private_resume_beyond_the_rate_gets_the_null_event_then_live() {
    for database in db::all().await {
        let label = database.label;
        let broker = im::broker(&database.url, &[("BROKER_LIMITS_REPLAY_RATE", "1/1h")]).await;
        let mut stored = Vec::new();
        for n in 1..=3 {
            stored.push(post_private(&broker, "alice", "bob", &format!("p{n}"), "x").await);
        }
        let mut first = broker.ws("bob").await;
        let got = resume(&mut first, "m", 0).await;
        assert_eq!(positions(&got), vec![1, 2, 3], "{label}: {got:?}");
        assert!(
            got.iter().all(|g| g.replay && g.event == "message.new"),
            "{label}"
        );
        assert_eq!(ids(&got), stored.iter().map(id_of).collect::<Vec<_>>());

        let mut second = broker.ws("bob").await;
        let got = resume(&mut second, "m", 1).await;
        assert_eq!(got.len(), 1, "{label}: the event alone: {got:?}");
        assert_eq!(
            (got[0].event.as_str(), got[0].replay, &got[0].body),
            (
                "replay.truncated",
                true,
                &json!({"conversationId": null, "afterSeq": null, "beforeSeq": null})
            ),
            "{label}"
        );
        let live = post_private(&broker, "alice", "bob", "live", "live").await;
        for client in [&mut first, &mut second] {
            let copy = next_new(client).await;
            assert_eq!(
                (id_of(&copy.body), copy.position, copy.replay),
                (id_of(&live), Some(4), false),
                "{label}"
            );
            im::quiet(client).await;
        }
    }
}

/// With `im.private_resume = false`, pushes carry no position and a resume gets the event of
/// nulls, then live.
#[tokio::test]
async fn without_private_resume_pushes_carry_no_position_and_a_resume_gets_the_null_event() {
    for database in db::all().await {
        let label = database.label;
        let broker = im::broker(&database.url, &[("BROKER_IM_PRIVATE_RESUME", "false")]).await;
        let mut alice = broker.ws("alice").await;
        alice.subscribe(MESSAGES, "m", "auto").await;
        let mut bob = broker.ws("bob").await;
        bob.subscribe(MESSAGES, "m", "auto").await;
        let echo = send_over_stomp(&mut alice, "bob", "p1", "x").await;
        let copy = next_new(&mut bob).await;
        assert_eq!((echo.position, copy.position), (None, None), "{label}");
        let echo = send_over_stomp(&mut bob, "alice", "q1", "x").await;
        let copy = next_new(&mut alice).await;
        assert_eq!((echo.position, copy.position), (None, None), "{label}");
        post_private(&broker, "carol", "bob", "p2", "x").await;
        assert_eq!(next_new(&mut bob).await.position, None, "{label}");

        let mut again = broker.ws("bob").await;
        let got = resume(&mut again, "m", 0).await;
        assert_eq!(got.len(), 1, "{label}: the event alone: {got:?}");
        assert_eq!(
            (got[0].event.as_str(), got[0].replay, &got[0].body),
            (
                "replay.truncated",
                true,
                &json!({"conversationId": null, "afterSeq": null, "beforeSeq": null})
            ),
            "{label}"
        );
        let live = post_private(&broker, "alice", "bob", "live", "live").await;
        let copy = next_new(&mut again).await;
        assert_eq!(
            (id_of(&copy.body), copy.position, copy.replay),
            (id_of(&live), None, false),
            "{label}"
        );
        im::quiet(&mut again).await;
    }
}

/// A `since-position` above the newest counts as the newest; nothing missed, nothing replayed
/// and no event.
#[tokio::test]
async fn a_private_resume_with_nothing_missed_replays_nothing() {
    for database in db::all().await {
        let label = database.label;
        let broker = im::broker(&database.url, &[]).await;
        for n in 1..=3 {
            post_private(&broker, "alice", "bob", &format!("p{n}"), "x").await;
        }
        let mut bob = broker.ws("bob").await;
        let got = resume(&mut bob, "m", 3).await;
        assert!(got.is_empty(), "{label}: {got:?}");
        let mut later = broker.ws("bob").await;
        let got = resume(&mut later, "m", 1_000_000).await;
        assert!(got.is_empty(), "{label}: {got:?}");
        let mut dave = broker.ws("dave").await;
        let got = resume(&mut dave, "m", 0).await;
        assert!(got.is_empty(), "{label}: a user without messages: {got:?}");
        // The one beyond the newest goes on from the newest.
        let live = post_private(&broker, "alice", "bob", "live", "live").await;
        for client in [&mut bob, &mut later] {
            let copy = next_new(client).await;
            assert_eq!(
                (id_of(&copy.body), copy.position, copy.replay),
                (id_of(&live), Some(4), false),
                "{label}"
            );
            im::quiet(client).await;
        }
        im::quiet(&mut dave).await;
    }
}

/// `since-position` elsewhere or not an integer >= 0, and `since-seq` on
/// `/user/queue/messages`, are ERRORs.
#[tokio::test]
async fn since_position_is_refused_where_it_means_nothing_or_is_not_a_position() {
    let database = db::sqlite();
    let broker = im::broker(&database.url, &[]).await;
    let group = im::create_group(&broker, "alice", "g", &["bob"]).await;
    let topic = format!("/topic/group.{group}");
    let cases = [
        (
            "/user/queue/notifications",
            "since-position",
            "0",
            "invalid since-position header",
        ),
        (
            topic.as_str(),
            "since-position",
            "0",
            "invalid since-position header",
        ),
        (
            MESSAGES,
            "since-position",
            "-1",
            "invalid since-position header",
        ),
        (
            MESSAGES,
            "since-position",
            "x",
            "invalid since-position header",
        ),
        (
            MESSAGES,
            "since-position",
            "1.5",
            "invalid since-position header",
        ),
        (MESSAGES, "since-seq", "0", "invalid since-seq header"),
    ];
    for (destination, header, value, message) in cases {
        let mut client = broker.ws("bob").await;
        client
            .send(
                &Frame::new(Command::Subscribe)
                    .header("destination", destination)
                    .header("id", "s")
                    .header(header, value)
                    .header("receipt", "r"),
            )
            .await;
        let error = client.expect(Command::Error).await;
        assert_eq!(
            error.get("message"),
            Some(message),
            "{destination} {header}:{value}: {error:?}"
        );
        client.expect_closed().await;
    }
}

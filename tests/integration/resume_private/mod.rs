//! Resume of `/user/queue/messages` (private and assistant conversations): every `message.new`
//! pushed there carries `position:<n>`, the message's place in the receiving user's inbox
//! (gapless from 1 per user, over everything they sent and received, in commit order), and a
//! SUBSCRIBE with `since-position:<n>` gets every message after it as history shows it now,
//! `replay:true`, oldest first, before its RECEIPT, then the live ones with no gap and no repeat.
//! Bounded by `limits.max_replay` / `limits.max_replay_bytes` (`replay.truncated` per
//! conversation left out) and `limits.replay_rate` / `im.private_resume` (one
//! `replay.truncated` of nulls). On every configured backend.

use std::collections::HashMap;
use std::time::Duration;

use crate::common::im::{self, api_in_process, body, receipt};
use crate::common::{Client, Received, TestBroker, db};
use broker::auth::Role;
use serde_json::{Value, json};
use stomp_codec::{Command, Frame};

const MESSAGES: &str = "/user/queue/messages";

/// One MESSAGE as the client got it: its event, whether it was marked `replay:true`, its
/// `position` header (if any) and its body.
#[derive(Debug, Clone)]
struct Got {
    event: String,
    replay: bool,
    position: Option<i64>,
    body: Value,
}

fn got(frame: &Frame) -> Got {
    assert_eq!(
        frame.command,
        Command::Message,
        "a MESSAGE expected, got {frame:?} {}",
        String::from_utf8_lossy(&frame.body)
    );
    assert_eq!(frame.get("destination"), Some(MESSAGES), "{frame:?}");
    let replay = match frame.get("replay") {
        None => false,
        Some("true") => true,
        Some(other) => panic!("replay header {other:?} is neither absent nor true: {frame:?}"),
    };
    let position = frame.get("position").map(|p| {
        p.parse::<i64>()
            .unwrap_or_else(|_| panic!("position header {p:?} is not an integer: {frame:?}"))
    });
    Got {
        event: frame.get("event").unwrap_or_default().to_owned(),
        replay,
        position,
        body: body(frame),
    }
}

/// SUBSCRIBE to `/user/queue/messages` with these extra headers and a receipt; returns every
/// frame that came before the RECEIPT (the contract puts the whole replay there), each of which
/// must be a MESSAGE on that destination.
async fn subscribe_messages(client: &mut Client, id: &str, extra: &[(&str, &str)]) -> Vec<Got> {
    let receipt_id = format!("sub-{id}");
    let frame = extra.iter().fold(
        Frame::new(Command::Subscribe)
            .header("destination", MESSAGES)
            .header("id", id)
            .header("ack", "auto")
            .header("receipt", receipt_id.as_str()),
        |frame, (name, value)| frame.header(*name, *value),
    );
    client.send(&frame).await;
    let mut before = Vec::new();
    loop {
        let frame = client.frame().await;
        if frame.command == Command::Receipt && frame.get("receipt-id") == Some(&receipt_id) {
            return before;
        }
        before.push(got(&frame));
    }
}

/// A resume from `since` on a fresh subscription `id`: what came before its RECEIPT.
async fn resume(client: &mut Client, id: &str, since: i64) -> Vec<Got> {
    let since = since.to_string();
    subscribe_messages(client, id, &[("since-position", since.as_str())]).await
}

/// The next `message.new` on the session within the wait (other events are skipped).
async fn next_new(client: &mut Client) -> Got {
    loop {
        let frame = client.frame().await;
        if frame.command == Command::Message && frame.get("event") == Some("message.new") {
            return got(&frame);
        }
        assert_eq!(
            frame.command,
            Command::Message,
            "unexpected frame {frame:?} {}",
            String::from_utf8_lossy(&frame.body)
        );
    }
}

/// The `message.new` frames a client gets until `done` says it has enough (or nothing comes
/// for 5 s); other events are skipped.
async fn collect_new(client: &mut Client, mut done: impl FnMut(&[Got]) -> bool) -> Vec<Got> {
    let mut seen = Vec::new();
    while !done(&seen) {
        let Some(Received::Frame(frame)) = client.receive_within(Duration::from_secs(5)).await
        else {
            break;
        };
        if frame.command == Command::Message && frame.get("event") == Some("message.new") {
            seen.push(got(&frame));
        }
    }
    seen
}

/// A private send over STOMP with a receipt: waits for the RECEIPT and the sender's own
/// `message.new` echo (in either order; other events are skipped) and returns the echo.
async fn send_over_stomp(client: &mut Client, to: &str, client_msg_id: &str, content: &str) -> Got {
    let receipt_id = format!("r-{client_msg_id}");
    im::private_send(client, to, client_msg_id, content, &receipt_id).await;
    let (mut receipted, mut echo) = (false, None);
    while !receipted || echo.is_none() {
        let frame = client.frame().await;
        match frame.command {
            Command::Receipt => {
                assert_eq!(frame.get("receipt-id"), Some(receipt_id.as_str()));
                receipted = true;
            }
            Command::Message if frame.get("event") == Some("message.new") => {
                assert!(echo.is_none(), "a second echo: {frame:?}");
                echo = Some(got(&frame));
            }
            Command::Message => {}
            _ => panic!("unexpected frame {frame:?}"),
        }
    }
    let echo = echo.unwrap();
    assert_eq!(echo.body["clientMsgId"], client_msg_id, "{:?}", echo);
    echo
}

/// A private message from `from` to `to` over REST; returns the stored message.
async fn post_private(broker: &TestBroker, from: &str, to: &str, id: &str, content: &str) -> Value {
    let (status, sent) = broker
        .api(
            "POST",
            "/api/v1/messages",
            from,
            Some(json!({"to": to, "clientMsgId": id, "content": content})),
        )
        .await;
    assert_eq!(status, 201, "{from} -> {to} {id}: {sent}");
    sent
}

/// A message to `conversation` (an assistant conversation here) over REST with `token`.
async fn post_to(broker: &TestBroker, token: &str, conversation: &str, id: &str) -> Value {
    let (status, sent) = api_in_process(
        &broker.server,
        "POST",
        "/api/v1/messages",
        Some(token),
        Some(json!({"conversationId": conversation, "clientMsgId": id, "content": id})),
    )
    .await;
    assert_eq!(status, 201, "{conversation} {id}: {sent}");
    sent
}

fn id_of(message: &Value) -> String {
    message["id"].as_str().expect("message id").to_owned()
}

fn positions(seen: &[Got]) -> Vec<i64> {
    seen.iter()
        .map(|g| {
            g.position
                .unwrap_or_else(|| panic!("no position header: {g:?}"))
        })
        .collect()
}

fn ids(seen: &[Got]) -> Vec<String> {
    seen.iter().map(|g| id_of(&g.body)).collect()
}

/// Asserts the fields of a replayed message that history shows equal history's.
fn assert_as_history(replayed: &Value, stored: &Value, label: &str) {
    for field in [
        "id",
        "conversationId",
        "conversationType",
        "seq",
        "senderId",
        "clientMsgId",
        "format",
        "content",
        "status",
        "editedAt",
        "attachment",
    ] {
        assert_eq!(
            replayed.get(field),
            stored.get(field),
            "{label}: field {field} of replayed {replayed} vs history {stored}"
        );
    }
}

// ---------------------------------------------------------------------------------------------

/// Positions are the receiving user's: the sender's echo carries the sender's, the recipient's
/// copy the recipient's, a retried send is pushed again to the sender with its original one.
#[tokio::test]
async fn positions_belong_to_the_receiving_user_and_a_retry_keeps_its_own() {
    for database in db::all().await {
        let label = database.label;
        let broker = im::broker(&database.url, &[]).await;
        let mut alice = broker.ws("alice").await;
        alice.subscribe(MESSAGES, "m", "auto").await;
        let mut bob = broker.ws("bob").await;
        bob.subscribe(MESSAGES, "m", "auto").await;

        // alice: 1, 2 to carol; 3, 4 to bob (bob: 1, 2); bob answers (bob 3, alice 5).
        for (n, want) in [(1, 1), (2, 2)] {
            let echo = send_over_stomp(&mut alice, "carol", &format!("c{n}"), "hi carol").await;
            assert_eq!(echo.position, Some(want), "{label}: {echo:?}");
            assert!(!echo.replay, "{label}");
        }
        let mut first = None;
        for (n, alice_position, bob_position) in [(1, 3, 1), (2, 4, 2)] {
            let echo = send_over_stomp(&mut alice, "bob", &format!("b{n}"), "hi bob").await;
            let copy = next_new(&mut bob).await;
            assert_eq!(
                (echo.position, copy.position),
                (Some(alice_position), Some(bob_position)),
                "{label}: alice's echo carries alice's position, bob's copy bob's"
            );
            assert_eq!(id_of(&echo.body), id_of(&copy.body), "{label}");
            assert!(!copy.replay, "{label}");
            first.get_or_insert(echo);
        }
        let echo = send_over_stomp(&mut bob, "alice", "a1", "hi alice").await;
        let copy = next_new(&mut alice).await;
        assert_eq!(
            (echo.position, copy.position),
            (Some(3), Some(5)),
            "{label}"
        );

        // A retry of b1 stores nothing: alice gets it again with position 3, bob nothing.
        let first = first.unwrap();
        let again = send_over_stomp(&mut alice, "bob", "b1", "hi bob").await;
        assert_eq!(again.position, Some(3), "{label}: the original position");
        assert_eq!(id_of(&again.body), id_of(&first.body), "{label}");
        im::quiet(&mut bob).await;
        im::quiet(&mut alice).await;
        // The next message takes the next positions: nothing was taken by the retry.
        let echo = send_over_stomp(&mut alice, "bob", "b3", "hi bob").await;
        let copy = next_new(&mut bob).await;
        assert_eq!(
            (echo.position, copy.position),
            (Some(6), Some(4)),
            "{label}"
        );
    }
}

/// Bob is away while 1,000 messages in 50 conversations (and a few of his own, and his
/// assistant conversation) are stored; some recalled, one edited, one he deleted. His resume
/// gets exactly those he missed, in position order, as history shows them, then live.
#[tokio::test]
async fn a_user_resumes_a_thousand_private_messages_across_fifty_conversations() {
    for database in db::all().await {
        let label = database.label;
        let broker = im::broker(
            &database.url,
            &[
                ("BROKER_LIMITS_MAX_REPLAY", "5000"),
                ("BROKER_LIMITS_MAX_REPLAY_BYTES", "16777216"),
                ("BROKER_IM_RECALL_WINDOW_S", "3600"),
            ],
        )
        .await;

        // Before: bob online; alice's echo and bob's copy carry their own positions.
        let mut alice = broker.ws("alice").await;
        alice.subscribe(MESSAGES, "m", "auto").await;
        let mut bob = broker.ws("bob").await;
        bob.subscribe(MESSAGES, "m", "auto").await;
        for n in 1..=2 {
            send_over_stomp(&mut alice, "carol", &format!("c{n}"), "x").await;
        }
        let mut highest = 0;
        for n in 1..=3 {
            let echo = send_over_stomp(&mut alice, "bob", &format!("b{n}"), "x").await;
            let copy = next_new(&mut bob).await;
            assert_eq!(
                (echo.position, copy.position),
                (Some(2 + n), Some(n)),
                "{label}: alice's echo carries alice's position"
            );
            highest = highest.max(copy.position.unwrap());
        }
        let echo = send_over_stomp(&mut bob, "alice", "a1", "x").await;
        assert_eq!(echo.position, Some(4), "{label}");
        highest = highest.max(echo.position.unwrap());
        assert_eq!(next_new(&mut alice).await.position, Some(6), "{label}");
        im::quiet(&mut bob).await;
        bob.disconnect().await;

        // While he is away, in this commit order (each call waits for its commit).
        let staff = broker.token_with("agent", &[Role::Staff], Duration::from_secs(3600));
        let bob_token = broker.token("bob");
        let bob_sends = [(3, 7), (7, 20), (11, 33), (16, 2), (19, 49)];
        let mut stored: Vec<Value> = Vec::new();
        let mut at: HashMap<(usize, usize), usize> = HashMap::new();
        let mut bob_at: HashMap<(usize, usize), usize> = HashMap::new();
        for round in 0..20 {
            for user in 0..50 {
                let sent = post_private(
                    &broker,
                    &format!("u{user}"),
                    "bob",
                    &format!("m{round}"),
                    &format!("u{user} round {round}"),
                )
                .await;
                at.insert((round, user), stored.len());
                stored.push(sent);
                if bob_sends.contains(&(round, user)) {
                    let peer = format!("u{}", (user + 1) % 50);
                    let sent = post_private(
                        &broker,
                        "bob",
                        &peer,
                        &format!("bob-{round}-{user}"),
                        &format!("bob to {peer}"),
                    )
                    .await;
                    bob_at.insert((round, user), stored.len());
                    stored.push(sent);
                }
            }
            if round == 5 {
                stored.push(post_to(&broker, &bob_token, "assistant_bob", "help").await);
            }
            if round == 8 {
                stored.push(post_to(&broker, &staff, "assistant_bob", "answer").await);
            }
        }
        assert_eq!(stored.len(), 1007, "{label}");
        // Recalled by their senders, one edited, one deleted by bob for himself.
        let recalled: Vec<(usize, &str)> = vec![
            (at[&(0, 0)], "u0"),
            (at[&(2, 3)], "u3"),
            (at[&(9, 17)], "u17"),
            (at[&(19, 49)], "u49"),
            (bob_at[&(7, 20)], "bob"),
        ];
        for (index, sender) in &recalled {
            let id = id_of(&stored[*index]);
            let (status, body) = broker
                .api(
                    "POST",
                    &format!("/api/v1/messages/{id}/recall"),
                    sender,
                    None,
                )
                .await;
            assert_eq!(status, 200, "{label}: recall {id}: {body}");
        }
        let edited = at[&(4, 8)];
        let (status, body) = broker
            .api(
                "PATCH",
                &format!("/api/v1/messages/{}", id_of(&stored[edited])),
                "u8",
                Some(json!({"content": "edited by u8"})),
            )
            .await;
        assert_eq!(status, 200, "{label}: {body}");
        let deleted = at[&(10, 25)];
        let (status, body) = broker
            .api(
                "DELETE",
                &format!("/api/v1/messages/{}", id_of(&stored[deleted])),
                "bob",
                None,
            )
            .await;
        assert_eq!(status, 204, "{label}: {body}");

        // What history shows bob now, by id.
        let mut history: HashMap<String, Value> = HashMap::new();
        let mut conversations: Vec<String> = stored
            .iter()
            .map(|m| m["conversationId"].as_str().unwrap().to_owned())
            .collect();
        conversations.sort();
        conversations.dedup();
        assert_eq!(
            conversations.len(),
            51,
            "{label}: 50 private and the assistant"
        );
        for conversation in &conversations {
            for item in im::history(&broker, "bob", conversation, "?limit=100").await {
                history.insert(id_of(&item), item);
            }
        }

        // Bob comes back having seen position `highest`.
        let mut bob = broker.ws("bob").await;
        let replayed = resume(&mut bob, "m", highest).await;
        let expected: Vec<(i64, String)> = stored
            .iter()
            .enumerate()
            .filter(|(index, _)| *index != deleted)
            .map(|(index, m)| (highest + 1 + index as i64, id_of(m)))
            .collect();
        assert_eq!(replayed.len(), expected.len(), "{label}: how many replayed");
        assert!(
            replayed
                .iter()
                .all(|g| g.event == "message.new" && g.replay),
            "{label}: every replayed frame is a message.new with replay:true"
        );
        assert_eq!(
            positions(&replayed),
            expected.iter().map(|(p, _)| *p).collect::<Vec<_>>(),
            "{label}: positions after {highest}, the deleted one left out"
        );
        assert_eq!(
            ids(&replayed),
            expected
                .iter()
                .map(|(_, id)| id.clone())
                .collect::<Vec<_>>(),
            "{label}: the messages stored, in commit order"
        );
        let mut last_seq: HashMap<String, i64> = HashMap::new();
        for g in &replayed {
            let conversation = g.body["conversationId"].as_str().unwrap().to_owned();
            let seq = g.body["seq"].as_i64().unwrap();
            let previous = last_seq.insert(conversation.clone(), seq).unwrap_or(0);
            assert!(
                seq > previous,
                "{label}: {conversation} seq {seq} after {previous}"
            );
            let shown = history
                .get(&id_of(&g.body))
                .unwrap_or_else(|| panic!("{label}: replayed {} not in history", g.body));
            assert_as_history(&g.body, shown, label);
        }
        let by_id: HashMap<String, &Got> = replayed.iter().map(|g| (id_of(&g.body), g)).collect();
        for (index, sender) in &recalled {
            let g = by_id[&id_of(&stored[*index])];
            assert_eq!(g.position, Some(highest + 1 + *index as i64), "{label}");
            assert_eq!(
                (&g.body["status"], &g.body["content"], &g.body["senderId"]),
                (&json!("recalled"), &json!(""), &json!(sender)),
                "{label}: recalled {}",
                g.body
            );
        }
        let g = by_id[&id_of(&stored[edited])];
        assert_eq!(g.position, Some(highest + 1 + edited as i64), "{label}");
        assert_eq!(g.body["content"], "edited by u8", "{label}");
        assert!(g.body["editedAt"].is_i64(), "{label}: {}", g.body);
        assert_eq!(g.body["status"], "sent", "{label}");
        assert!(
            !by_id.contains_key(&id_of(&stored[deleted])),
            "{label}: the one bob deleted is left out"
        );
        let assistant: Vec<&Got> = replayed
            .iter()
            .filter(|g| g.body["conversationId"] == "assistant_bob")
            .collect();
        assert_eq!(
            assistant.len(),
            2,
            "{label}: bob's and staff's assistant messages"
        );

        // Then live, not marked, at the next position (the deleted one kept its position).
        let live = post_private(&broker, "u0", "bob", "live", "live").await;
        let copy = next_new(&mut bob).await;
        assert_eq!(id_of(&copy.body), id_of(&live), "{label}");
        assert!(!copy.replay, "{label}: a live message is not marked");
        assert_eq!(copy.position, Some(highest + 1008), "{label}");
        im::quiet(&mut bob).await;
    }
}

/// Alice keeps sending (200 pipelined sends) while bob resumes from position 10: he gets every
/// position after 10 exactly once, in order, the replayed ones first.
#[tokio::test]
async fn a_private_resume_racing_live_sends_neither_loses_nor_repeats() {
    for database in db::all().await {
        let label = database.label;
        let broker = im::broker(&database.url, &[]).await;
        let mut alice = broker.ws("alice").await;
        for n in 1..=20 {
            im::private_send(&mut alice, "bob", &format!("a{n}"), "x", &format!("r{n}")).await;
            receipt(&mut alice, &format!("r{n}")).await;
        }
        let sender = tokio::spawn(async move {
            for n in 21..=220 {
                im::send_json(
                    &mut alice,
                    "/app/private.send",
                    &json!({"to": "bob", "clientMsgId": format!("a{n}"), "content": "x"}),
                    None,
                )
                .await;
            }
            alice
        });
        let mut bob = broker.ws("bob").await;
        let mut seen = resume(&mut bob, "m", 10).await;
        assert!(
            seen.iter().all(|g| g.event == "message.new"),
            "{label}: {seen:?}"
        );
        if seen.last().is_none_or(|g| g.position != Some(220)) {
            seen.extend(
                collect_new(&mut bob, |s| {
                    s.last().is_some_and(|g| g.position == Some(220))
                })
                .await,
            );
        }
        let mut alice = sender.await.unwrap();
        assert_eq!(
            positions(&seen),
            (11..=220).collect::<Vec<_>>(),
            "{label}: every position after 10 once, in order"
        );
        // One conversation: bob's positions are its seqs.
        assert_eq!(
            seen.iter()
                .map(|g| g.body["seq"].as_i64().unwrap())
                .collect::<Vec<_>>(),
            (11..=220).collect::<Vec<_>>(),
            "{label}"
        );
        let mut sent: Vec<String> = seen
            .iter()
            .map(|g| g.body["clientMsgId"].as_str().unwrap().to_owned())
            .collect();
        sent.sort_by_key(|c| c[1..].parse::<i64>().unwrap());
        assert_eq!(
            sent,
            (11..=220).map(|n| format!("a{n}")).collect::<Vec<_>>(),
            "{label}"
        );
        assert!(seen[0].replay, "{label}: the first ones are replayed");
        let replayed = seen.iter().take_while(|g| g.replay).count();
        assert!(
            seen[replayed..].iter().all(|g| !g.replay),
            "{label}: the replay comes first, then only live ones"
        );
        im::quiet(&mut bob).await;
        im::quiet(&mut alice).await;
    }
}

mod bounds;

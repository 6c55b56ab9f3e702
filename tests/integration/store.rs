//! The store on both backends: gapless seqs under concurrency, idempotency, history, read
//! positions, recall, deletion, groups.

use std::sync::Arc;
use std::time::Duration;

use broker::ordering::PushOrder;

use crate::common::db;
use broker::store::{
    HistoryQuery, NewMessage, SendOutcome, Store, StoreError, StoreSettings, Target,
};

async fn open(url: &str) -> Store {
    open_as(url, 1).await
}

/// A store as node `node_number`: two of them on one database are two nodes' writers.
async fn open_as(url: &str, node_number: u16) -> Store {
    let settings = StoreSettings {
        url: url.to_owned(),
        pool_size: 4,
        timeout: Duration::from_secs(10),
        max_batch: 256,
        max_bulk_batch: 64,
        node_number,
        outbox_node: None,
        inbox_positions: true,
    };
    Store::open(&settings, Arc::new(PushOrder::default()))
        .await
        .expect("store opens")
}

fn text(target: Target, sender: &str, client_msg_id: &str, content: &str) -> NewMessage {
    NewMessage {
        target,
        sender: sender.to_owned(),
        client_msg_id: client_msg_id.to_owned(),
        format: "text".to_owned(),
        content: content.to_owned(),
        attachment: None,
        reply_to: None,
        forwarded_from: None,
        unless_blocked_by: None,
        shared_file: None,
        mentions: None,
    }
}

fn private(a: &str, b: &str) -> Target {
    Target::Private {
        a: a.to_owned(),
        b: b.to_owned(),
    }
}

#[tokio::test]
async fn concurrent_sends_get_gapless_seqs_on_every_backend() {
    for database in db::all().await {
        let store = open(&database.url).await;
        let sends = (0..200).map(|i| {
            let store = store.clone();
            let (from, to) = if i % 2 == 0 {
                ("alice", "bob")
            } else {
                ("bob", "alice")
            };
            async move {
                store
                    .send(text(private(from, to), from, &format!("c{i}"), "hi"))
                    .await
                    .expect("send")
            }
        });
        let outcomes = futures_util::future::join_all(sends).await;
        let mut seqs: Vec<i64> = outcomes.iter().map(|o| o.message().seq).collect();
        seqs.sort_unstable();
        assert_eq!(seqs, (1..=200).collect::<Vec<_>>(), "{}", database.label);
        let created = outcomes
            .iter()
            .filter(|o| matches!(o, SendOutcome::Stored { created: true, .. }))
            .count();
        assert_eq!(created, 1, "{}", database.label);
    }
}

#[tokio::test]
async fn a_batch_over_many_conversations_keeps_each_gapless_and_moves_each_read_position() {
    for database in db::all().await {
        let store = open(&database.url).await;
        // 20 conversations, both sides sending, all at once: the writer commits them in few
        // batches, each reserving every conversation's range in one go.
        let sends = (0..400).map(|i| {
            let store = store.clone();
            let pair = i % 20;
            let (a, b) = (format!("u{pair}a"), format!("u{pair}b"));
            let (from, to) = if i % 3 == 0 { (b, a) } else { (a, b) };
            async move {
                store
                    .send(text(private(&from, &to), &from, &format!("c{i}"), "hi"))
                    .await
                    .expect("send")
            }
        });
        let outcomes = futures_util::future::join_all(sends).await;
        for pair in 0..20 {
            let conversation = format!("private_u{pair}a_u{pair}b");
            let mine: Vec<&SendOutcome> = outcomes
                .iter()
                .filter(|o| o.message().conversation_id == conversation)
                .collect();
            let mut seqs: Vec<i64> = mine.iter().map(|o| o.message().seq).collect();
            seqs.sort_unstable();
            assert_eq!(
                seqs,
                (1..=20).collect::<Vec<_>>(),
                "{} {conversation}",
                database.label
            );
            let created = mine
                .iter()
                .filter(|o| matches!(o, SendOutcome::Stored { created: true, .. }))
                .count();
            assert_eq!(created, 1, "{} {conversation}", database.label);
            // Each side has read up to its own newest message.
            for side in ["a", "b"] {
                let user = format!("u{pair}{side}");
                let newest_own = mine
                    .iter()
                    .filter(|o| o.message().sender_id == user)
                    .map(|o| o.message().seq)
                    .max()
                    .unwrap_or(0);
                let summary = store.summary(&conversation, &user).await.unwrap().unwrap();
                assert_eq!(
                    summary.unread(),
                    20 - newest_own,
                    "{} {user}",
                    database.label
                );
            }
        }
    }
}

#[tokio::test]
async fn a_repeated_client_msg_id_stores_nothing_new() {
    for database in db::all().await {
        let store = open(&database.url).await;
        let first = store
            .send(text(private("alice", "bob"), "alice", "same", "one"))
            .await
            .unwrap();
        let again = store
            .send(text(private("alice", "bob"), "alice", "same", "two"))
            .await
            .unwrap();
        assert!(
            matches!(again, SendOutcome::Duplicate(_)),
            "{}",
            database.label
        );
        assert_eq!(again.message().id, first.message().id);
        assert_eq!(again.message().seq, 1);
        let next = store
            .send(text(private("alice", "bob"), "alice", "other", "three"))
            .await
            .unwrap();
        assert_eq!(next.message().seq, 2, "{}", database.label);
    }
}

/// On PostgreSQL a batch is written without looking its clientMsgIds up first; a retry among
/// fresh sends undoes the batch, which is written again looking first. The fresh sends of that
/// batch keep gapless seqs and the retries answer the message stored before.
#[tokio::test]
async fn retries_among_fresh_sends_answer_the_stored_message_and_leave_no_gap() {
    for database in db::all().await {
        let store = open(&database.url).await;
        let mut first = Vec::new();
        for i in 0..50 {
            let outcome = store
                .send(text(
                    private("alice", "bob"),
                    "alice",
                    &format!("c{i}"),
                    "hi",
                ))
                .await
                .unwrap();
            first.push(outcome.message().clone());
        }
        let sends = (0..110).map(|i| {
            let store = store.clone();
            // Every eleventh is a retry of one of the first 50.
            let client_msg_id = if i % 11 == 0 {
                format!("c{}", i / 11)
            } else {
                format!("n{i}")
            };
            async move {
                let outcome = store
                    .send(text(private("alice", "bob"), "alice", &client_msg_id, "hi"))
                    .await
                    .expect("send");
                (client_msg_id, outcome)
            }
        });
        let outcomes = futures_util::future::join_all(sends).await;
        let mut seqs = Vec::new();
        for (client_msg_id, outcome) in &outcomes {
            match outcome {
                SendOutcome::Duplicate(row) => {
                    let index: usize = client_msg_id[1..].parse().unwrap();
                    assert!(client_msg_id.starts_with('c'), "{}", database.label);
                    assert_eq!(row.id, first[index].id, "{}", database.label);
                    assert_eq!(row.seq, first[index].seq, "{}", database.label);
                }
                SendOutcome::Stored { message, .. } => {
                    assert!(client_msg_id.starts_with('n'), "{}", database.label);
                    seqs.push(message.seq);
                }
            }
        }
        seqs.sort_unstable();
        assert_eq!(seqs, (51..=150).collect::<Vec<_>>(), "{}", database.label);
    }
}

/// Two nodes' writers storing the same clientMsgIds at once (a client that resent on another
/// node what it had in flight): each is stored once, both answer the same message, and the
/// conversation's seqs stay gapless.
#[tokio::test]
async fn the_same_send_racing_on_two_nodes_is_stored_once() {
    let Some(database) = db::postgres().await else {
        return;
    };
    let (a, b) = (
        open_as(&database.url, 1).await,
        open_as(&database.url, 2).await,
    );
    let sends = (0..200).map(|i| {
        let store = if i % 2 == 0 { a.clone() } else { b.clone() };
        let client_msg_id = format!("c{}", i / 2);
        async move {
            store
                .send(text(private("alice", "bob"), "alice", &client_msg_id, "hi"))
                .await
                .expect("send")
        }
    });
    let outcomes = futures_util::future::join_all(sends).await;
    let mut seqs = Vec::new();
    for pair in outcomes.chunks(2) {
        assert_eq!(pair[0].message().id, pair[1].message().id);
        let stored = pair
            .iter()
            .filter(|o| matches!(o, SendOutcome::Stored { .. }))
            .count();
        assert_eq!(stored, 1, "exactly one of the two stored it");
        seqs.push(pair[0].message().seq);
    }
    seqs.sort_unstable();
    assert_eq!(seqs, (1..=100).collect::<Vec<_>>());
}

#[tokio::test]
async fn history_pages_ascending_and_hides_deleted_messages() {
    for database in db::all().await {
        let store = open(&database.url).await;
        let mut ids = Vec::new();
        for i in 1..=30 {
            let outcome = store
                .send(text(
                    private("alice", "bob"),
                    "alice",
                    &format!("m{i}"),
                    &format!("{i}"),
                ))
                .await
                .unwrap();
            ids.push(outcome.message().clone());
        }
        let conversation = "private_alice_bob";
        let latest = store
            .history(
                conversation,
                "bob",
                0,
                HistoryQuery {
                    limit: 20,
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        assert_eq!(latest.first().unwrap().seq, 11);
        assert_eq!(latest.last().unwrap().seq, 30);
        let before = store
            .history(
                conversation,
                "bob",
                0,
                HistoryQuery {
                    before_seq: Some(11),
                    limit: 5,
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        assert_eq!(
            before.iter().map(|m| m.seq).collect::<Vec<_>>(),
            vec![6, 7, 8, 9, 10]
        );
        let after = store
            .history(
                conversation,
                "bob",
                0,
                HistoryQuery {
                    after_seq: Some(28),
                    limit: 5,
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        assert_eq!(
            after.iter().map(|m| m.seq).collect::<Vec<_>>(),
            vec![29, 30]
        );
        store.delete_for("bob", &ids[29]).await.unwrap();
        let after_delete = store
            .history(
                conversation,
                "bob",
                0,
                HistoryQuery {
                    after_seq: Some(28),
                    limit: 5,
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        assert_eq!(
            after_delete.iter().map(|m| m.seq).collect::<Vec<_>>(),
            vec![29],
            "{}",
            database.label
        );
        let alice_still_sees = store
            .history(
                conversation,
                "alice",
                0,
                HistoryQuery {
                    after_seq: Some(28),
                    limit: 5,
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        assert_eq!(alice_still_sees.len(), 2);
    }
}

#[tokio::test]
async fn unread_counts_follow_read_positions_and_own_messages_never_count() {
    for database in db::all().await {
        let store = open(&database.url).await;
        for i in 0..3 {
            store
                .send(text(
                    private("alice", "bob"),
                    "alice",
                    &format!("a{i}"),
                    "x",
                ))
                .await
                .unwrap();
        }
        let bob = store
            .summary("private_alice_bob", "bob")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(bob.unread(), 3, "{}", database.label);
        let alice = store
            .summary("private_alice_bob", "alice")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(alice.unread(), 0);
        assert_eq!(
            store
                .mark_read("private_alice_bob", "bob", 2)
                .await
                .unwrap(),
            Some(2)
        );
        assert_eq!(
            store
                .mark_read("private_alice_bob", "bob", 1)
                .await
                .unwrap(),
            None
        );
        assert_eq!(
            store
                .mark_read("private_alice_bob", "bob", 99)
                .await
                .unwrap(),
            Some(3)
        );
        let bob = store
            .summary("private_alice_bob", "bob")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(bob.unread(), 0);
        store
            .send(text(private("alice", "bob"), "bob", "b0", "reply"))
            .await
            .unwrap();
        let bob = store
            .summary("private_alice_bob", "bob")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(bob.unread(), 0);
        let alice = store
            .summary("private_alice_bob", "alice")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(alice.unread(), 1, "{}", database.label);
    }
}

#[tokio::test]
async fn recall_empties_the_message_and_keeps_its_seq() {
    for database in db::all().await {
        let store = open(&database.url).await;
        let sent = store
            .send(text(private("alice", "bob"), "alice", "r", "secret"))
            .await
            .unwrap();
        let recalled = store.recall(sent.message().id).await.unwrap();
        assert_eq!(recalled.status, "recalled");
        assert_eq!(recalled.content, "");
        assert_eq!(recalled.seq, 1);
        assert!(
            matches!(
                store.recall(sent.message().id).await,
                Err(StoreError::AlreadyRecalled)
            ),
            "{}",
            database.label
        );
    }
}

#[tokio::test]
async fn groups_refuse_to_grow_past_their_limit_and_rejoined_members_start_at_the_end() {
    for database in db::all().await {
        let store = open(&database.url).await;
        let members = vec!["bob".to_owned(), "carol".to_owned()];
        store
            .create_group("group_1", "friends", None, "alice", &members)
            .await
            .unwrap();
        assert_eq!(store.members("group_1").await.unwrap().len(), 3);
        let full = store.add_members("group_1", &["dave".to_owned()], 3).await;
        assert!(
            matches!(full, Err(StoreError::GroupFull)),
            "{}",
            database.label
        );
        store
            .send(text(
                Target::Conversation("group_1".into()),
                "alice",
                "g1",
                "hello",
            ))
            .await
            .unwrap();
        store.remove_member("group_1", "carol").await.unwrap();
        assert!(store.member("group_1", "carol").await.unwrap().is_none());
        let added = store
            .add_members("group_1", &["carol".to_owned(), "bob".to_owned()], 3)
            .await
            .unwrap();
        assert_eq!(added, vec!["carol".to_owned()]);
        let carol = store.member("group_1", "carol").await.unwrap().unwrap();
        assert_eq!(carol.joined_seq, 1, "{}", database.label);
        store
            .set_role("group_1", "bob", broker::domain::MemberRole::Owner)
            .await
            .unwrap();
        let group = store.conversation("group_1").await.unwrap().unwrap();
        assert_eq!(group.owner_id.as_deref(), Some("bob"));
        assert_eq!(
            store
                .member("group_1", "alice")
                .await
                .unwrap()
                .unwrap()
                .role,
            "admin"
        );
        store.dissolve("group_1").await.unwrap();
        let refused = store
            .send(text(
                Target::Conversation("group_1".into()),
                "bob",
                "g2",
                "late",
            ))
            .await;
        assert!(
            matches!(refused, Err(StoreError::NotFound)),
            "{}",
            database.label
        );
    }
}

#[tokio::test]
async fn conversation_list_puts_pinned_first_and_pages_by_cursor() {
    for database in db::all().await {
        let store = open(&database.url).await;
        for peer in ["b", "c", "d", "e"] {
            store
                .send(text(private("a", peer), peer, &format!("to-a-{peer}"), "x"))
                .await
                .unwrap();
            tokio::time::sleep(Duration::from_millis(3)).await;
        }
        store
            .update_settings(
                "private_a_b",
                "a",
                &broker::store::SettingsChange {
                    pinned: Some(true),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        let first = store.conversations_of("a", 2, None).await.unwrap();
        let ids: Vec<&str> = first
            .items
            .iter()
            .map(|s| s.conversation.id.as_str())
            .collect();
        assert_eq!(
            ids,
            vec!["private_a_b", "private_a_e"],
            "{}",
            database.label
        );
        let second = store
            .conversations_of("a", 2, first.next_cursor.as_deref())
            .await
            .unwrap();
        let ids: Vec<&str> = second
            .items
            .iter()
            .map(|s| s.conversation.id.as_str())
            .collect();
        assert_eq!(
            ids,
            vec!["private_a_d", "private_a_c"],
            "{}",
            database.label
        );
        let third = store
            .conversations_of("a", 2, second.next_cursor.as_deref())
            .await
            .unwrap();
        assert!(
            third.items.is_empty() && third.next_cursor.is_none() || second.next_cursor.is_none()
        );
    }
}

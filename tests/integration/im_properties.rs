//! A property of the IM layer: whatever users do in a private chat and a small group (send,
//! read over STOMP or REST, recall, delete, reconnect), unread counts are never negative and
//! always equal the model's `last seq - read position` (sending marks read), and the seqs a
//! member sees in history have no gap but the messages they deleted.

use std::collections::{BTreeMap, BTreeSet};

use crate::common::im::{self, body, send_json};
use crate::common::{Client, TestBroker, db};
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::TestRunner;
use serde_json::{Value, json};
use stomp_codec::Command;

const USERS: [&str; 3] = ["alice", "bob", "carol"];
const PRIVATE: &str = "private_alice_bob";

#[derive(Clone, Debug)]
enum Op {
    Send {
        user: usize,
        group: bool,
    },
    Read {
        user: usize,
        group: bool,
        up_to: i64,
        rest: bool,
    },
    Recall {
        user: usize,
        group: bool,
        pick: usize,
    },
    Delete {
        user: usize,
        group: bool,
        pick: usize,
    },
    Reconnect {
        user: usize,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..3usize, any::<bool>()).prop_map(|(user, group)| Op::Send { user, group }),
        3 => (0..3usize, any::<bool>(), 0..12i64, any::<bool>())
            .prop_map(|(user, group, up_to, rest)| Op::Read { user, group, up_to, rest }),
        1 => (0..3usize, any::<bool>(), 0..8usize)
            .prop_map(|(user, group, pick)| Op::Recall { user, group, pick }),
        1 => (0..3usize, any::<bool>(), 0..8usize)
            .prop_map(|(user, group, pick)| Op::Delete { user, group, pick }),
        1 => (0..3usize).prop_map(|user| Op::Reconnect { user }),
    ]
}

fn ops() -> impl Strategy<Value = Vec<Op>> {
    prop::collection::vec(op(), 1..20)
}

/// One conversation as the model sees it.
struct Conversation {
    id: String,
    members: Vec<usize>,
    last: i64,
    read: [i64; 3],
    /// Per seq - 1: the message id, its sender, whether it was recalled.
    messages: Vec<(Value, usize, bool)>,
    deleted: [BTreeSet<i64>; 3],
}

impl Conversation {
    fn new(id: String, members: Vec<usize>) -> Conversation {
        Conversation {
            id,
            members,
            last: 0,
            read: [0; 3],
            messages: Vec::new(),
            deleted: Default::default(),
        }
    }

    fn unread(&self, user: usize) -> i64 {
        self.last - self.read[user]
    }
}

struct World {
    broker: TestBroker,
    sessions: Vec<Client>,
    private: Conversation,
    group: Conversation,
    next_id: usize,
}

async fn session(broker: &TestBroker, user: usize, group: &str) -> Client {
    let mut client = broker.im_user(USERS[user]).await;
    client
        .subscribe(&format!("/topic/group.{group}"), "group", "auto")
        .await;
    client
}

/// Reads frames until the RECEIPT `id`; fails on an error event.
async fn until_receipt(client: &mut Client, id: &str) {
    loop {
        let frame = client.frame().await;
        assert_ne!(
            frame.get("event"),
            Some("error"),
            "{}",
            String::from_utf8_lossy(&frame.body)
        );
        if frame.command == Command::Receipt && frame.get("receipt-id") == Some(id) {
            return;
        }
    }
}

impl World {
    async fn start(url: &str) -> World {
        let broker = im::broker(url, &[]).await;
        let group_id = im::create_group(&broker, "alice", "model", &["bob", "carol"]).await;
        let mut sessions = Vec::new();
        for user in 0..3 {
            sessions.push(session(&broker, user, &group_id).await);
        }
        World {
            broker,
            sessions,
            private: Conversation::new(PRIVATE.to_owned(), vec![0, 1]),
            group: Conversation::new(group_id, vec![0, 1, 2]),
            next_id: 0,
        }
    }

    /// The conversation an op acts on; Carol is not in the private chat, so hers go to the group.
    fn target(&mut self, user: usize, group: bool) -> &mut Conversation {
        if group || user == 2 {
            &mut self.group
        } else {
            &mut self.private
        }
    }

    async fn apply(&mut self, op: &Op) {
        match *op {
            Op::Send { user, group } => {
                self.next_id += 1;
                let client_msg_id = format!("m{}", self.next_id);
                let is_group = group || user == 2;
                let conversation = self.target(user, group).id.clone();
                let client = &mut self.sessions[user];
                if is_group {
                    im::group_send(client, &conversation, &client_msg_id, "hi", &client_msg_id)
                        .await;
                } else {
                    im::private_send(
                        client,
                        USERS[1 - user],
                        &client_msg_id,
                        "hi",
                        &client_msg_id,
                    )
                    .await;
                }
                until_receipt(client, &client_msg_id).await;
                let message = loop {
                    let frame = client.frame().await;
                    if frame.get("event") == Some("message.new") {
                        let message = body(&frame);
                        if message["clientMsgId"] == client_msg_id.as_str() {
                            break message;
                        }
                    }
                };
                let model = self.target(user, group);
                model.last += 1;
                assert_eq!(message["seq"], model.last, "gapless seq");
                model.read[user] = model.last;
                model.messages.push((message["id"].clone(), user, false));
            }
            Op::Read {
                user,
                group,
                up_to,
                rest,
            } => {
                let model = self.target(user, group);
                if model.last == 0 {
                    return;
                }
                let id = model.id.clone();
                model.read[user] = model.read[user].max(up_to.min(model.last));
                let expected = model.read[user];
                if rest {
                    let (status, answer) = self
                        .broker
                        .api(
                            "POST",
                            &format!("/api/v1/conversations/{id}/read"),
                            USERS[user],
                            Some(json!({"upToSeq": up_to})),
                        )
                        .await;
                    assert_eq!(status, 200, "{answer}");
                    assert_eq!(answer["readSeq"], expected);
                } else {
                    let client = &mut self.sessions[user];
                    send_json(
                        client,
                        "/app/message.read",
                        &json!({"conversationId": id, "upToSeq": up_to}),
                        Some("read"),
                    )
                    .await;
                    until_receipt(client, "read").await;
                }
            }
            Op::Recall { user, group, pick } => {
                let is_group = group || user == 2;
                let model = self.target(user, group);
                if model.messages.is_empty() {
                    return;
                }
                let index = pick % model.messages.len();
                let (id, sender, recalled) = model.messages[index].clone();
                let allowed = sender == user || (is_group && user == 0);
                let (status, answer) = self
                    .broker
                    .api(
                        "POST",
                        &format!("/api/v1/messages/{}/recall", id.as_str().unwrap()),
                        USERS[user],
                        None,
                    )
                    .await;
                let want = match (allowed, recalled) {
                    (false, _) => 403,
                    (true, true) => 409,
                    (true, false) => 200,
                };
                assert_eq!(status, want, "{answer}");
                if status == 200 {
                    self.target(user, group).messages[index].2 = true;
                }
            }
            Op::Delete { user, group, pick } => {
                let model = self.target(user, group);
                if model.messages.is_empty() {
                    return;
                }
                let index = pick % model.messages.len();
                let id = model.messages[index].0.clone();
                model.deleted[user].insert(i64::try_from(index).unwrap() + 1);
                let (status, answer) = self
                    .broker
                    .api(
                        "DELETE",
                        &format!("/api/v1/messages/{}", id.as_str().unwrap()),
                        USERS[user],
                        None,
                    )
                    .await;
                assert_eq!(status, 204, "{answer}");
            }
            Op::Reconnect { user } => {
                let fresh = session(&self.broker, user, &self.group.id).await;
                self.sessions[user] = fresh;
            }
        }
    }

    /// Unread counts as the broker reports them equal the model's.
    async fn check_unread(&self) {
        for (user, name) in USERS.iter().enumerate() {
            let mut expected = BTreeMap::new();
            for conversation in [&self.private, &self.group] {
                if conversation.members.contains(&user) && conversation.unread(user) != 0 {
                    expected.insert(conversation.id.clone(), conversation.unread(user));
                }
            }
            let unread = im::unread(&self.broker, name).await;
            let reported: BTreeMap<String, i64> = unread["conversations"]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| {
                    (
                        c["id"].as_str().unwrap().to_owned(),
                        c["unreadCount"].as_i64().unwrap(),
                    )
                })
                .collect();
            assert!(reported.values().all(|n| *n > 0), "{unread}");
            assert_eq!(reported, expected, "unread of {name}");
            assert_eq!(unread["total"], expected.values().sum::<i64>());
            for conversation in [&self.private, &self.group] {
                if let Some(entry) = im::listed(&self.broker, name, &conversation.id).await {
                    let count = entry["unreadCount"].as_i64().unwrap();
                    assert_eq!(
                        count,
                        conversation.unread(user),
                        "{name} in {}",
                        conversation.id
                    );
                    assert_eq!(entry["lastSeq"], conversation.last);
                }
            }
        }
    }

    /// Every member's history is 1..=last without gaps, less what they deleted, with recalls.
    async fn check_history(&self) {
        for conversation in [&self.private, &self.group] {
            if conversation.last == 0 {
                continue;
            }
            for &user in &conversation.members {
                let items = im::history(
                    &self.broker,
                    USERS[user],
                    &conversation.id,
                    "?afterSeq=0&limit=100",
                )
                .await;
                let want: Vec<i64> = (1..=conversation.last)
                    .filter(|seq| !conversation.deleted[user].contains(seq))
                    .collect();
                assert_eq!(
                    im::seqs(&items),
                    want,
                    "{} for {}",
                    conversation.id,
                    USERS[user]
                );
                for item in items {
                    let seq = usize::try_from(item["seq"].as_i64().unwrap()).unwrap();
                    let (id, _, recalled) = &conversation.messages[seq - 1];
                    assert_eq!(&item["id"], id);
                    assert_eq!(item["status"] == "recalled", *recalled, "{item}");
                }
            }
        }
    }
}

async fn run(url: &str, ops: &[Op]) {
    let mut world = World::start(url).await;
    for op in ops {
        world.apply(op).await;
        world.check_unread().await;
    }
    world.check_history().await;
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 20, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn unread_counts_and_seqs_follow_the_model(ops in ops()) {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let database = db::sqlite();
        runtime.block_on(run(&database.url, &ops));
    }
}

#[tokio::test]
async fn the_model_holds_on_every_backend() {
    let mut runner = TestRunner::deterministic();
    let ops = prop::collection::vec(op(), 30)
        .new_tree(&mut runner)
        .expect("a sequence")
        .current();
    for database in db::all().await {
        run(&database.url, &ops).await;
    }
}

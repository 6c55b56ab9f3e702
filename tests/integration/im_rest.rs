//! The REST API (contract sections 6 and 7) on every configured backend: conversation list,
//! single conversations, settings, history paging, sends, and the exact error of every refusal.

use std::collections::BTreeSet;

use crate::common::im::{self, assert_error, event_on, http_raw};
use crate::common::{TestBroker, db};
use serde_json::{Value, json};

async fn post_message(broker: &TestBroker, user: &str, body: Value) -> (u16, Value) {
    broker
        .api("POST", "/api/v1/messages", user, Some(body))
        .await
}

async fn send_text(
    broker: &TestBroker,
    from: &str,
    to: &str,
    client_msg_id: &str,
    content: &str,
) -> Value {
    let (status, message) = post_message(
        broker,
        from,
        json!({"to": to, "clientMsgId": client_msg_id, "format": "text", "content": content}),
    )
    .await;
    assert_eq!(status, 201, "{message}");
    message
}

fn ids(list: &Value) -> Vec<String> {
    list["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|c| c["id"].as_str().unwrap().to_owned())
        .collect()
}

async fn settle() {
    // Last activity is in milliseconds: keep activities apart so the order is defined.
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
}

#[tokio::test]
async fn the_conversation_list_has_every_field_pinned_first_then_latest_activity() {
    for database in db::all().await {
        let broker = im::broker(&database.url, &[]).await;
        for peer in ["bob", "carol", "dave"] {
            send_text(&broker, "alice", peer, &format!("to-{peer}"), "hi").await;
            settle().await;
        }
        let (status, list) = broker
            .api("GET", "/api/v1/conversations", "alice", None)
            .await;
        assert_eq!(status, 200, "{list}");
        assert_eq!(
            ids(&list),
            [
                "private_alice_dave",
                "private_alice_carol",
                "private_alice_bob"
            ],
            "{}",
            database.label
        );
        assert_eq!(list["nextCursor"], Value::Null);
        let first = &list["items"][0];
        for field in [
            "id",
            "type",
            "name",
            "avatar",
            "peerId",
            "lastMessage",
            "lastSeq",
            "unreadCount",
            "pinned",
            "muted",
            "archived",
            "memberCount",
        ] {
            assert!(first.get(field).is_some(), "{field} missing in {first}");
        }
        assert_eq!(first["type"], "private");
        assert_eq!(first["peerId"], "dave");
        assert_eq!(first["lastMessage"]["clientMsgId"], "to-dave");
        assert_eq!(first["lastSeq"], 1);
        assert_eq!(first["unreadCount"], 0);
        assert_eq!(first["memberCount"], 2);
        assert_eq!(
            (&first["pinned"], &first["muted"], &first["archived"]),
            (&json!(false), &json!(false), &json!(false))
        );

        let (status, view) = broker
            .api(
                "PATCH",
                "/api/v1/conversations/private_alice_bob/settings",
                "alice",
                Some(json!({"pinned": true})),
            )
            .await;
        assert_eq!(status, 200, "{view}");
        settle().await;
        send_text(&broker, "carol", "alice", "back", "hello again").await;
        let (_, list) = broker
            .api("GET", "/api/v1/conversations", "alice", None)
            .await;
        assert_eq!(
            ids(&list),
            [
                "private_alice_bob",
                "private_alice_carol",
                "private_alice_dave"
            ],
            "{}",
            database.label
        );
        assert_eq!(list["items"][1]["unreadCount"], 1);
    }
}

#[tokio::test]
async fn the_conversation_list_pages_with_a_cursor() {
    for database in db::all().await {
        let broker = im::broker(&database.url, &[]).await;
        for peer in ["b1", "b2", "b3", "b4", "b5"] {
            send_text(&broker, "alice", peer, peer, "hi").await;
            settle().await;
        }
        broker
            .api(
                "PATCH",
                "/api/v1/conversations/private_alice_b2/settings",
                "alice",
                Some(json!({"pinned": true})),
            )
            .await;
        let mut seen = Vec::new();
        let mut cursor: Option<String> = None;
        let mut pages = 0;
        loop {
            let path = match &cursor {
                Some(c) => format!("/api/v1/conversations?limit=2&cursor={c}"),
                None => "/api/v1/conversations?limit=2".to_owned(),
            };
            let (status, page) = broker.api("GET", &path, "alice", None).await;
            assert_eq!(status, 200, "{page}");
            let items = ids(&page);
            assert!(items.len() <= 2);
            seen.extend(items);
            pages += 1;
            match page["nextCursor"].as_str() {
                Some(next) => cursor = Some(next.to_owned()),
                None => break,
            }
            assert!(pages < 10, "paging does not end");
        }
        assert_eq!(
            seen,
            [
                "private_alice_b2",
                "private_alice_b5",
                "private_alice_b4",
                "private_alice_b3",
                "private_alice_b1"
            ],
            "{}",
            database.label
        );
        assert_eq!(pages, 3);
    }
}

#[tokio::test]
async fn a_private_conversation_is_got_or_created() {
    for database in db::all().await {
        let broker = im::broker(&database.url, &[]).await;
        let path = "/api/v1/conversations/private";
        let (status, created) = broker
            .api("POST", path, "bob", Some(json!({"peerId": "alice"})))
            .await;
        assert_eq!(status, 200, "{created} {}", database.label);
        assert_eq!(created["id"], "private_alice_bob");
        assert_eq!(created["lastSeq"], 0);
        assert_eq!(created["peerId"], "alice");
        assert!(
            created.get("members").is_none(),
            "private chats list no members: {created}"
        );
        send_text(&broker, "alice", "bob", "c", "hi").await;
        let (status, again) = broker
            .api("POST", path, "alice", Some(json!({"peerId": "bob"})))
            .await;
        assert_eq!(status, 200);
        assert_eq!(again["id"], "private_alice_bob");
        assert_eq!(again["lastSeq"], 1);
        for bad in [
            json!({"peerId": "bob"}),
            json!({"peerId": "no_underscores"}),
            json!({}),
        ] {
            let (status, body) = broker.api("POST", path, "bob", Some(bad)).await;
            assert_eq!(status, 400, "{body}");
            assert_error(&body, "INVALID_ARGUMENT");
        }
    }
}

#[tokio::test]
async fn settings_change_per_user_and_push_conversation_updated() {
    for database in db::all().await {
        let broker = im::broker(&database.url, &[]).await;
        send_text(&broker, "alice", "bob", "c", "hi").await;
        let mut alice = broker.im_user("alice").await;
        let path = "/api/v1/conversations/private_alice_bob/settings";
        let (status, view) = broker
            .api(
                "PATCH",
                path,
                "alice",
                Some(json!({"muted": true, "archived": true})),
            )
            .await;
        assert_eq!(status, 200, "{view} {}", database.label);
        assert_eq!(
            (&view["pinned"], &view["muted"], &view["archived"]),
            (&json!(false), &json!(true), &json!(true))
        );
        let updated = event_on(&mut alice, "/user/queue/events", "conversation.updated").await;
        assert_eq!(updated["muted"], true);
        let (_, view) = broker
            .api("PATCH", path, "alice", Some(json!({"archived": false})))
            .await;
        assert_eq!(
            (&view["muted"], &view["archived"]),
            (&json!(true), &json!(false))
        );
        // Bob's settings are his own.
        let bob = im::listed(&broker, "bob", "private_alice_bob")
            .await
            .unwrap();
        assert_eq!(
            (&bob["muted"], &bob["archived"]),
            (&json!(false), &json!(false))
        );
        let (status, body) = broker
            .api("PATCH", path, "mallory", Some(json!({"pinned": true})))
            .await;
        assert_eq!(status, 404);
        assert_error(&body, "NOT_FOUND");
    }
}

#[tokio::test]
async fn history_pages_ascending_with_the_latest_by_default() {
    for database in db::all().await {
        let broker = im::broker(&database.url, &[]).await;
        for i in 1..=30 {
            send_text(&broker, "alice", "bob", &format!("m{i}"), &format!("{i}")).await;
        }
        let chat = "private_alice_bob";
        let range = |a: i64, b: i64| (a..=b).collect::<Vec<i64>>();
        for (query, want) in [
            ("", range(11, 30)),
            ("?limit=5", range(26, 30)),
            ("?afterSeq=10&limit=5", range(11, 15)),
            ("?afterSeq=28", range(29, 30)),
            ("?beforeSeq=10&limit=5", range(5, 9)),
            ("?beforeSeq=3", range(1, 2)),
            ("?limit=100", range(1, 30)),
            ("?afterSeq=30", Vec::new()),
        ] {
            let items = im::history(&broker, "bob", chat, query).await;
            assert_eq!(im::seqs(&items), want, "{query} {}", database.label);
        }
        for query in ["?limit=101", "?limit=0", "?limit=x", "?afterSeq=y"] {
            let (status, body) = broker
                .api(
                    "GET",
                    &format!("/api/v1/conversations/{chat}/messages{query}"),
                    "bob",
                    None,
                )
                .await;
            assert_eq!(status, 400, "{query}: {body}");
            assert_error(&body, "INVALID_ARGUMENT");
        }
    }
}

#[tokio::test]
async fn post_messages_answers_201_then_200_for_a_retry() {
    for database in db::all().await {
        let broker = im::broker(&database.url, &[]).await;
        let (status, first) = post_message(
            &broker,
            "alice",
            json!({"to": "bob", "clientMsgId": "r-1", "format": "text", "content": "one"}),
        )
        .await;
        assert_eq!(status, 201, "{first} {}", database.label);
        assert_eq!(first["seq"], 1);
        assert_eq!(first["conversationId"], "private_alice_bob");
        let (status, again) = post_message(
            &broker,
            "alice",
            json!({"conversationId": "private_alice_bob", "clientMsgId": "r-1", "format": "text", "content": "one"}),
        )
        .await;
        assert_eq!(status, 200, "{again}");
        assert_eq!(again["id"], first["id"]);
        assert_eq!(again["seq"], 1);
        let (status, by_id) = post_message(
            &broker,
            "bob",
            json!({"conversationId": "private_alice_bob", "clientMsgId": "r-1", "format": "text", "content": "two"}),
        )
        .await;
        assert_eq!(status, 201, "the key is per sender: {by_id}");
        assert_eq!(by_id["seq"], 2);
        assert_eq!(
            im::seqs(&im::history(&broker, "alice", "private_alice_bob", "").await),
            vec![1, 2]
        );
    }
}

#[tokio::test]
async fn a_missing_or_invalid_token_is_401_unauthorized() {
    for database in db::all().await {
        let broker = im::broker(&database.url, &[]).await;
        let addr = broker.http_addr();
        let expired = broker.token_with(
            "alice",
            &[broker::auth::Role::User],
            std::time::Duration::ZERO,
        );
        tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
        for auth in [
            None,
            Some("Bearer".to_owned()),
            Some("Bearer not.a.token".to_owned()),
            Some(format!("Basic {}", broker.token("alice"))),
            Some(format!("Bearer {expired}")),
        ] {
            let headers: Vec<(&str, &str)> =
                auth.iter().map(|a| ("Authorization", a.as_str())).collect();
            for (method, path) in [
                ("GET", "/api/v1/conversations"),
                ("GET", "/api/v1/unread"),
                ("POST", "/api/v1/messages"),
            ] {
                let (status, body) = http_raw(addr, method, path, &headers, "{}").await;
                assert_eq!(
                    status, 401,
                    "{method} {path} {auth:?}: {body} {}",
                    database.label
                );
                assert_error(&body, "UNAUTHORIZED");
            }
        }
    }
}

#[tokio::test]
async fn malformed_json_is_400_invalid_argument() {
    for database in db::all().await {
        let broker = im::broker(&database.url, &[]).await;
        let token = format!("Bearer {}", broker.token("alice"));
        let headers = [
            ("Authorization", token.as_str()),
            ("Content-Type", "application/json"),
        ];
        for (method, path) in [
            ("POST", "/api/v1/messages"),
            ("POST", "/api/v1/groups"),
            ("POST", "/api/v1/conversations/private"),
            ("POST", "/api/v1/conversations/private_alice_bob/read"),
            ("PATCH", "/api/v1/conversations/private_alice_bob/settings"),
        ] {
            // Settings take any object (every field is optional); the others need fields.
            let wrong_types = !path.ends_with("/settings");
            for body in ["{not json", "", "[1,2]", "{\"clientMsgId\": 5}"]
                .into_iter()
                .filter(|b| wrong_types || !b.contains("clientMsgId"))
            {
                let (status, answer) =
                    http_raw(broker.http_addr(), method, path, &headers, body).await;
                assert_eq!(
                    status, 400,
                    "{method} {path} {body:?}: {answer} {}",
                    database.label
                );
                assert_error(&answer, "INVALID_ARGUMENT");
            }
        }
    }
}

#[tokio::test]
async fn an_unknown_conversation_and_a_private_one_of_others_are_both_404() {
    for database in db::all().await {
        let broker = im::broker(&database.url, &[]).await;
        send_text(&broker, "alice", "bob", "c", "hi").await;
        for (method, path, body) in [
            ("GET", "/api/v1/conversations/private_x_y", None),
            ("GET", "/api/v1/conversations/private_x_y/messages", None),
            (
                "POST",
                "/api/v1/conversations/private_x_y/read",
                Some(json!({"upToSeq": 1})),
            ),
            (
                "PATCH",
                "/api/v1/conversations/private_x_y/settings",
                Some(json!({"pinned": true})),
            ),
            (
                "POST",
                "/api/v1/messages",
                Some(
                    json!({"conversationId": "group_nope", "clientMsgId": "x", "format": "text", "content": "hi"}),
                ),
            ),
            ("GET", "/api/v1/no/such/endpoint", None),
        ] {
            let (status, answer) = broker.api(method, path, "alice", body).await;
            assert_eq!(status, 404, "{method} {path}: {answer} {}", database.label);
            assert_error(&answer, "NOT_FOUND");
        }
        for (method, path, body) in [
            ("GET", "/api/v1/conversations/private_alice_bob", None),
            (
                "GET",
                "/api/v1/conversations/private_alice_bob/messages",
                None,
            ),
            (
                "POST",
                "/api/v1/conversations/private_alice_bob/read",
                Some(json!({"upToSeq": 1})),
            ),
            (
                "POST",
                "/api/v1/messages",
                Some(
                    json!({"conversationId": "private_alice_bob", "clientMsgId": "x", "format": "text", "content": "hi"}),
                ),
            ),
        ] {
            let (status, answer) = broker.api(method, path, "mallory", body).await;
            assert_eq!(status, 404, "{method} {path}: {answer} {}", database.label);
            assert_error(&answer, "NOT_FOUND");
        }
    }
}

#[tokio::test]
async fn content_over_the_limit_is_content_too_long_and_500_chinese_characters_pass() {
    for database in db::all().await {
        let broker = im::broker(&database.url, &[]).await;
        let exactly = "字".repeat(500);
        let (status, message) = post_message(
            &broker,
            "alice",
            json!({"to": "bob", "clientMsgId": "ok", "format": "text", "content": exactly}),
        )
        .await;
        assert_eq!(status, 201, "{message} {}", database.label);
        assert_eq!(message["content"].as_str().unwrap().chars().count(), 500);
        let (status, body) = post_message(
            &broker,
            "alice",
            json!({"to": "bob", "clientMsgId": "long", "format": "text", "content": "字".repeat(501)}),
        )
        .await;
        assert_eq!(status, 400, "{body}");
        assert_error(&body, "CONTENT_TOO_LONG");
        assert_eq!(body["clientMsgId"], "long");
        assert_eq!(
            im::history(&broker, "bob", "private_alice_bob", "")
                .await
                .len(),
            1
        );

        let small = im::broker(&database.url, &[("BROKER_LIMITS_TEXT_MAX_CHARS", "10")]).await;
        let (status, _) = post_message(
            &small,
            "alice",
            json!({"to": "carol", "clientMsgId": "ten", "content": "0123456789"}),
        )
        .await;
        assert_eq!(status, 201);
        let (status, body) = post_message(
            &small,
            "alice",
            json!({"to": "carol", "clientMsgId": "eleven", "content": "0123456789a"}),
        )
        .await;
        assert_eq!(status, 400, "{body}");
        assert_error(&body, "CONTENT_TOO_LONG");
    }
}

#[tokio::test]
async fn a_wrong_format_or_attachment_is_invalid_argument() {
    for database in db::all().await {
        let broker = im::broker(
            &database.url,
            &[(
                "BROKER_FILES_EXTERNAL_URL_PREFIXES",
                r#"["https://example.com/"]"#,
            )],
        )
        .await;
        let image = json!({"url": "https://example.com/a.png", "name": "a.png", "size": 1, "mime": "image/png"});
        for (n, (format, content, attachment)) in [
            ("gif", "x", Value::Null),
            ("text", "x", image.clone()),
            ("text", "   ", Value::Null),
            ("image", "", Value::Null),
            ("image", "", json!({"name": "no url"})),
            ("image", "", json!("https://example.com/a.png")),
            (
                "card",
                "",
                json!({"bizType": "order", "title": "no biz id"}),
            ),
        ]
        .into_iter()
        .enumerate()
        {
            let client_msg_id = format!("bad-{n}");
            let (status, body) = post_message(
                &broker,
                "alice",
                json!({"to": "bob", "clientMsgId": client_msg_id, "format": format, "content": content, "attachment": attachment}),
            )
            .await;
            assert_eq!(
                status, 400,
                "{format} {attachment}: {body} {}",
                database.label
            );
            assert_error(&body, "INVALID_ARGUMENT");
            assert_eq!(body["clientMsgId"], client_msg_id);
        }
        let (status, body) = post_message(
            &broker,
            "alice",
            json!({"to": "bob", "clientMsgId": "fine", "format": "image", "content": "", "attachment": image}),
        )
        .await;
        assert_eq!(status, 201, "{body}");
        let (status, body) = post_message(
            &broker,
            "alice",
            json!({"to": "bob", "clientMsgId": "card", "format": "card", "content": "",
                   "attachment": {"bizType": "order", "bizId": "1", "title": "Order 1"}}),
        )
        .await;
        assert_eq!(status, 201, "{body}");
        assert_eq!(
            im::seqs(&im::history(&broker, "bob", "private_alice_bob", "").await),
            vec![1, 2]
        );
    }
}

#[tokio::test]
async fn a_reply_to_a_message_of_another_conversation_is_invalid_argument() {
    for database in db::all().await {
        let broker = im::broker(&database.url, &[]).await;
        let elsewhere = send_text(&broker, "alice", "carol", "c-1", "for carol").await;
        let here = send_text(&broker, "alice", "bob", "b-1", "for bob").await;
        let (status, body) = post_message(
            &broker,
            "bob",
            json!({"to": "alice", "clientMsgId": "r-1", "format": "text", "content": "re", "replyTo": elsewhere["id"]}),
        )
        .await;
        assert_eq!(status, 400, "{body} {}", database.label);
        assert_error(&body, "INVALID_ARGUMENT");
        assert_eq!(body["clientMsgId"], "r-1");
        for bad in [json!("123"), json!("not an id"), json!(true)] {
            let (status, body) = post_message(
                &broker,
                "bob",
                json!({"to": "alice", "clientMsgId": "r-2", "format": "text", "content": "re", "replyTo": bad}),
            )
            .await;
            assert_eq!(status, 400, "{body}");
            assert_error(&body, "INVALID_ARGUMENT");
        }
        let (status, reply) = post_message(
            &broker,
            "bob",
            json!({"to": "alice", "clientMsgId": "r-3", "format": "text", "content": "re", "replyTo": here["id"]}),
        )
        .await;
        assert_eq!(status, 201, "{reply}");
        assert_eq!(reply["replyTo"], here["id"]);
    }
}

#[tokio::test]
async fn unread_lists_only_conversations_with_unread_messages() {
    for database in db::all().await {
        let broker = im::broker(&database.url, &[]).await;
        send_text(&broker, "alice", "bob", "a", "hi").await;
        send_text(&broker, "carol", "bob", "c", "hi").await;
        broker
            .api(
                "POST",
                "/api/v1/conversations/private_bob_carol/read",
                "bob",
                Some(json!({"upToSeq": 1})),
            )
            .await;
        let unread = im::unread(&broker, "bob").await;
        assert_eq!(
            unread,
            json!({"total": 1, "conversations": [{"id": "private_alice_bob", "unreadCount": 1, "muted": false, "mentioned": false}]}),
            "{}",
            database.label
        );
        let listed: BTreeSet<String> = ids(&broker
            .api("GET", "/api/v1/conversations", "bob", None)
            .await
            .1)
        .into_iter()
        .collect();
        assert_eq!(listed.len(), 2);
    }
}

#[tokio::test]
async fn unknown_paths_under_the_api_are_404_with_the_error_body() {
    let database = db::sqlite();
    let broker = im::broker(&database.url, &[]).await;
    for path in [
        "/api/v1",
        "/api/v1/",
        "/api/v1/nope",
        "/api/v1/conversations/a/b/c/d",
        "/api/v1/files/x/y/z",
    ] {
        let (status, answer) = broker.api("GET", path, "alice", None).await;
        assert_eq!(status, 404, "GET {path}: {answer}");
        assert_eq!(answer["code"], "NOT_FOUND", "GET {path}: {answer}");
        assert_error(&answer, "NOT_FOUND");
    }
    // Without a token too: an unknown path is not a question of who asks.
    let (status, answer) = http_raw(broker.http_addr(), "GET", "/api/v1/nope", &[], "").await;
    assert_eq!(status, 404, "{answer}");
    assert_eq!(answer["code"], "NOT_FOUND", "without a token: {answer}");
    assert_error(&answer, "NOT_FOUND");
}

#[tokio::test]
async fn a_method_a_path_does_not_take_is_405_with_the_error_body() {
    let database = db::sqlite();
    let broker = im::broker(&database.url, &[]).await;
    for (method, path) in [
        ("DELETE", "/api/v1/conversations"),
        ("PUT", "/api/v1/messages"),
        ("GET", "/api/v1/messages"),
        ("POST", "/api/v1/unread"),
        ("GET", "/api/v1/groups/group_x/exit"),
        ("PATCH", "/api/v1/files/abc"),
        ("GET", "/api/v1/dev/token"),
    ] {
        let (status, answer) = broker.api(method, path, "alice", None).await;
        assert_eq!(status, 405, "{method} {path}: {answer}");
        assert_error(&answer, "METHOD_NOT_ALLOWED");
    }
}

//! Every field a user or a backend system writes once and the broker pushes to many sessions is
//! bounded, on every configured backend: a group's name, avatar and announcement, a card's
//! fields and `data`, and a system notification's fields and `data`, over REST, STOMP and the
//! RabbitMQ queue `im.notifications`. Beyond a bound: `INVALID_ARGUMENT`, nothing stored and
//! nothing pushed.

use crate::common;

use crate::common::im::{self, assert_error, drain, error, event_on, quiet, receipt, send_json};
use crate::common::{Client, TestBroker, db};
use serde_json::{Value, json};

async fn member(broker: &TestBroker, user: &str, group: &str) -> Client {
    let mut client = broker.im_user(user).await;
    client
        .subscribe(&format!("/topic/group.{group}"), "group", "auto")
        .await;
    client
}

async fn patch_group(broker: &TestBroker, group: &str, body: Value) -> (u16, Value) {
    broker
        .api(
            "PATCH",
            &format!("/api/v1/groups/{group}"),
            "alice",
            Some(body),
        )
        .await
}

#[tokio::test]
async fn a_huge_announcement_is_refused_and_the_members_stay_connected() {
    for database in db::all().await {
        let label = database.label;
        let broker = im::broker(&database.url, &[]).await;
        let group = im::create_group(&broker, "alice", "team", &["bob"]).await;
        let mut bob = member(&broker, "bob", &group).await;
        // 1.9 MB: more than a member's outbound queue allows, were it pushed. The request body
        // limit refuses it before the announcement bound is reached.
        let (status, body) = patch_group(
            &broker,
            &group,
            json!({"announcement": "x".repeat(1_900_000)}),
        )
        .await;
        assert_eq!(status, 413, "{label}: {body}");
        assert_error(&body, "PAYLOAD_TOO_LARGE");
        // Within the body limit, the announcement's own bound.
        let (status, body) =
            patch_group(&broker, &group, json!({"announcement": "x".repeat(60_000)})).await;
        assert_eq!(status, 400, "{label}: {body}");
        assert_error(&body, "INVALID_ARGUMENT");
        quiet(&mut bob).await;
        let (status, body) =
            patch_group(&broker, &group, json!({"announcement": "字".repeat(2001)})).await;
        assert_eq!(status, 400, "{label}: {body}");
        let (status, view) =
            patch_group(&broker, &group, json!({"announcement": "字".repeat(2000)})).await;
        assert_eq!(status, 200, "{label}: {view}");
        let updated = event_on(&mut bob, &format!("/topic/group.{group}"), "group.updated").await;
        assert_eq!(updated["announcement"], "字".repeat(2000));
    }
}

#[tokio::test]
async fn group_names_and_avatars_over_their_bounds_are_refused() {
    for database in db::all().await {
        let label = database.label;
        let broker = im::broker(&database.url, &[]).await;
        for body in [
            json!({"name": "n".repeat(65), "memberIds": []}),
            json!({"name": "  ", "memberIds": []}),
            json!({"name": "ok", "avatar": format!("https://a/{}", "p".repeat(2040)), "memberIds": []}),
        ] {
            let (status, answer) = broker
                .api("POST", "/api/v1/groups", "alice", Some(body.clone()))
                .await;
            assert_eq!(status, 400, "{label}: {answer}");
            assert_error(&answer, "INVALID_ARGUMENT");
        }
        let (_, list) = broker
            .api("GET", "/api/v1/conversations", "alice", None)
            .await;
        assert_eq!(list["items"], json!([]), "{label}: nothing was created");
        let (status, group) = broker
            .api(
                "POST",
                "/api/v1/groups",
                "alice",
                Some(json!({"name": "名".repeat(64), "avatar": "https://a/b.png", "memberIds": ["bob"]})),
            )
            .await;
        assert_eq!(status, 201, "{label}: {group}");
        let id = group["id"].as_str().unwrap();
        let mut bob = member(&broker, "bob", id).await;
        for body in [
            json!({"name": "n".repeat(65)}),
            json!({"avatar": "a".repeat(2049)}),
        ] {
            let (status, answer) = patch_group(&broker, id, body).await;
            assert_eq!(status, 400, "{label}: {answer}");
        }
        quiet(&mut bob).await;
    }
}

#[tokio::test]
async fn the_group_bounds_are_configuration() {
    for database in db::all().await {
        let broker = im::broker(
            &database.url,
            &[
                ("BROKER_LIMITS_GROUP_NAME_MAX_CHARS", "5"),
                ("BROKER_LIMITS_GROUP_ANNOUNCEMENT_MAX_CHARS", "10"),
            ],
        )
        .await;
        let (status, _) = broker
            .api(
                "POST",
                "/api/v1/groups",
                "alice",
                Some(json!({"name": "sixsix", "memberIds": []})),
            )
            .await;
        assert_eq!(status, 400, "{}", database.label);
        let group = im::create_group(&broker, "alice", "five5", &[]).await;
        let (status, _) =
            patch_group(&broker, &group, json!({"announcement": "x".repeat(11)})).await;
        assert_eq!(status, 400);
        let (status, _) =
            patch_group(&broker, &group, json!({"announcement": "x".repeat(10)})).await;
        assert_eq!(status, 200);
    }
}

fn card(data: Value) -> Value {
    json!({"bizType": "order", "bizId": "42", "title": "Order 42", "data": data})
}

#[tokio::test]
async fn card_data_over_its_bound_is_refused_over_rest_and_stomp() {
    for database in db::all().await {
        let label = database.label;
        let broker = im::broker(&database.url, &[]).await;
        let group = im::create_group(&broker, "alice", "team", &["bob"]).await;
        let mut bob = member(&broker, "bob", &group).await;
        let mut alice = broker.im_user("alice").await;
        // 4 KiB of JSON is the default bound: `"` + 4094 characters + `"` passes, one more not.
        let send = |id: &str, size: usize| {
            json!({"conversationId": group, "clientMsgId": id, "format": "card",
                   "attachment": card(json!("d".repeat(size)))})
        };
        let (status, body) = broker
            .api("POST", "/api/v1/messages", "alice", Some(send("c1", 4095)))
            .await;
        assert_eq!(status, 400, "{label}: {body}");
        assert_error(&body, "INVALID_ARGUMENT");
        send_json(&mut alice, "/app/group.send", &send("c2", 5000), Some("r2")).await;
        let body = error(&mut alice).await;
        assert_error(&body, "INVALID_ARGUMENT");
        assert_eq!(body["clientMsgId"], "c2");
        quiet(&mut bob).await;
        let (status, body) = broker
            .api("POST", "/api/v1/messages", "alice", Some(send("c3", 4094)))
            .await;
        assert_eq!(status, 201, "{label}: {body}");
        assert_eq!(
            event_on(&mut bob, &format!("/topic/group.{group}"), "message.new").await["clientMsgId"],
            "c3"
        );
        assert_eq!(im::history(&broker, "bob", &group, "").await.len(), 1);
    }
}

fn notification(data: Value) -> Value {
    json!({"userIds": ["bob"], "title": "Order shipped", "content": "on its way",
           "bizType": "order", "bizId": "42", "data": data})
}

#[tokio::test]
async fn notification_fields_over_their_bounds_are_refused_over_rest_and_stomp() {
    for database in db::all().await {
        let label = database.label;
        let broker = im::broker(
            &database.url,
            &[("BROKER_LIMITS_NOTIFICATION_MAX_USERS", "100")],
        )
        .await;
        let mut bob = broker.im_user("bob").await;
        let big = json!({"items": "i".repeat(5000)});
        let users: Vec<String> = (0..101).map(|i| format!("u{i}")).collect();
        let mut refused = vec![
            notification(big.clone()),
            json!({"userIds": ["bob"], "title": "t".repeat(201)}),
            json!({"userIds": ["bob"], "title": "t", "content": "c".repeat(1001)}),
            json!({"userIds": ["bob"], "title": "t", "bizType": "b".repeat(65)}),
            json!({"userIds": ["bob"], "title": "t", "clientMsgId": "k".repeat(65)}),
            json!({"userIds": users, "title": "t"}),
            json!({"userIds": [], "title": "t"}),
        ];
        let mut text = notification(Value::Null);
        text.as_object_mut().unwrap().remove("bizType");
        text["data"] = big.clone();
        refused.push(text);
        for body in refused {
            let (status, answer) = broker
                .api_system(
                    "POST",
                    "/api/v1/notifications",
                    "backend",
                    Some(body.clone()),
                )
                .await;
            assert_eq!(status, 400, "{label}: {answer}");
            assert_error(&answer, "INVALID_ARGUMENT");
        }
        let mut backend = broker.ws_raw().await;
        backend.connect(&broker.system_token("backend")).await;
        backend
            .subscribe("/user/queue/errors", "errors", "auto")
            .await;
        send_json(
            &mut backend,
            "/user/bob/queue/notifications",
            &json!({"title": "Order shipped", "data": big}),
            Some("n1"),
        )
        .await;
        assert_error(&error(&mut backend).await, "INVALID_ARGUMENT");
        quiet(&mut bob).await;
        assert!(
            im::listed(&broker, "bob", "system_bob").await.is_none(),
            "{label}: nothing was stored"
        );
        let (status, answer) = broker
            .api_system(
                "POST",
                "/api/v1/notifications",
                "backend",
                Some(notification(json!({"orderId": 42}))),
            )
            .await;
        assert_eq!(status, 201, "{label}: {answer}");
        event_on(&mut bob, "/user/queue/notifications", "notification.new").await;
        drain(&mut bob).await;
    }
}

#[tokio::test]
async fn notifications_over_their_bounds_from_rabbitmq_are_dropped_and_the_next_is_taken() {
    use lapin::{Connection, ConnectionProperties};

    for database in db::all().await {
        let label = database.label;
        let run = format!("bounds-{:08x}", rand::random::<u32>());
        let queue = format!("{run}.notifications");
        let amqp = common::cluster::amqp_url();
        let broker = im::broker(
            &database.url,
            &[
                ("BROKER_RELAY_AMQP_URL", amqp.as_str()),
                ("BROKER_RELAY_NOTIFICATIONS_QUEUE", queue.as_str()),
                ("BROKER_CLUSTER_NODE_ID", run.as_str()),
                ("BROKER_LIMITS_NOTIFICATION_MAX_USERS", "100"),
            ],
        )
        .await;
        let bob_id = format!("{run}-bob");
        let mut bob = broker.im_user(&bob_id).await;
        let connection = Connection::connect(&amqp, ConnectionProperties::default())
            .await
            .expect("RabbitMQ");
        let channel = connection.create_channel().await.unwrap();
        let users: Vec<String> = (0..101).map(|i| format!("u{i}")).collect();
        for (id, body) in [
            (
                "big",
                json!({"userIds": [bob_id], "title": "x", "data": {"d": "d".repeat(5000)}}),
            ),
            ("many", json!({"userIds": users, "title": "x"})),
            (
                "ok",
                json!({"userIds": [bob_id], "title": "Order shipped", "bizType": "order"}),
            ),
        ] {
            common::cluster::publish_notification(&channel, &queue, &format!("{run}-{id}"), &body)
                .await;
        }
        let pushed = event_on(&mut bob, "/user/queue/notifications", "notification.new").await;
        assert_eq!(pushed["format"], "card", "{label}: {pushed}");
        let stored = im::history(&broker, &bob_id, &format!("system_{bob_id}"), "").await;
        assert_eq!(stored.len(), 1, "{label}: {stored:?}");
        im::stop(broker).await;
        let _ = channel
            .queue_delete(queue.as_str().into(), Default::default())
            .await;
    }
}

#[tokio::test]
async fn a_notification_at_every_bound_is_stored() {
    for database in db::all().await {
        let broker = im::broker(&database.url, &[]).await;
        let mut backend = broker.ws_raw().await;
        backend.connect(&broker.system_token("backend")).await;
        let at_bounds = json!({"title": "t".repeat(200), "content": "c".repeat(1000),
            "bizType": "b".repeat(64), "bizId": "i".repeat(128), "clientMsgId": "k".repeat(64),
            "data": "d".repeat(4094)});
        send_json(
            &mut backend,
            "/user/bob/queue/notifications",
            &at_bounds,
            Some("n"),
        )
        .await;
        receipt(&mut backend, "n").await;
        assert_eq!(
            im::history(&broker, "bob", "system_bob", "").await.len(),
            1,
            "{}",
            database.label
        );
    }
}

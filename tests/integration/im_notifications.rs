//! System notifications (contract 5.6) over STOMP/WebSocket, STOMP/TCP and REST, on every
//! configured backend.

use crate::common::im::{self, assert_error, error, event_on, quiet, receipt, send_json};
use crate::common::{Client, TestBroker, db};
use serde_json::json;

async fn system_ws(broker: &TestBroker) -> Client {
    let mut client = broker.ws_raw().await;
    client.connect(&broker.system_token("backend")).await;
    client
}

#[tokio::test]
async fn a_system_send_over_websocket_is_stored_and_pushed_as_notification_new() {
    for database in db::all().await {
        let broker = im::broker(&database.url, &[]).await;
        let mut bob = broker.im_user("bob").await;
        let mut bob_phone = broker.im_user("bob").await;
        let mut backend = system_ws(&broker).await;
        send_json(
            &mut backend,
            "/user/bob/queue/notifications",
            &json!({"title": "Order shipped", "content": "Your order 42 is on its way"}),
            Some("n1"),
        )
        .await;
        receipt(&mut backend, "n1").await;
        let notification =
            event_on(&mut bob, "/user/queue/notifications", "notification.new").await;
        assert_eq!(
            event_on(
                &mut bob_phone,
                "/user/queue/notifications",
                "notification.new"
            )
            .await,
            notification
        );
        assert_eq!(
            notification["conversationId"], "system_bob",
            "{}",
            database.label
        );
        assert_eq!(notification["conversationType"], "system");
        assert_eq!(notification["senderId"], "backend");
        assert_eq!(notification["format"], "text");
        assert_eq!(
            notification["content"],
            "Order shipped\nYour order 42 is on its way"
        );
        assert_eq!(notification["seq"], 1);
        // Stored: Bob finds it in the history, unread.
        let stored = im::history(&broker, "bob", "system_bob", "").await;
        assert_eq!(stored, vec![notification.clone()]);
        assert_eq!(im::unread(&broker, "bob").await["total"], 1);
        quiet(&mut bob).await;
    }
}

#[tokio::test]
async fn a_system_send_over_tcp_with_a_biz_type_is_a_card() {
    for database in db::all().await {
        let broker = im::broker(&database.url, &[]).await;
        let mut bob = broker.im_user("bob").await;
        let mut backend = broker.tcp(&broker.system_token("backend")).await;
        send_json(
            &mut backend,
            "/user/bob/queue/notifications",
            &json!({"title": "New invoice", "content": "Invoice 7 is due", "bizType": "invoice",
                    "bizId": "7", "data": {"amount": 12}}),
            Some("n1"),
        )
        .await;
        receipt(&mut backend, "n1").await;
        let card = event_on(&mut bob, "/user/queue/notifications", "notification.new").await;
        assert_eq!(card["format"], "card", "{}", database.label);
        assert_eq!(card["conversationId"], "system_bob");
        let attachment = &card["attachment"];
        assert_eq!(attachment["bizType"], "invoice");
        assert_eq!(attachment["bizId"], "7");
        assert_eq!(attachment["title"], "New invoice");
        assert_eq!(attachment["summary"], "Invoice 7 is due");
        assert_eq!(attachment["data"], json!({"amount": 12}));
    }
}

#[tokio::test]
async fn rest_notifications_reach_online_users_and_wait_for_offline_ones() {
    for database in db::all().await {
        let broker = im::broker(&database.url, &[]).await;
        let mut bob = broker.im_user("bob").await;
        let (status, body) = broker
            .api_system(
                "POST",
                "/api/v1/notifications",
                "backend",
                Some(json!({"userIds": ["bob", "carol"], "title": "Maintenance", "content": "Tonight",
                            "bizType": "ops", "bizId": "m-1"})),
            )
            .await;
        assert_eq!(status, 201, "{body} {}", database.label);
        let items = body["items"].as_array().expect("items");
        assert_eq!(items.len(), 2);
        assert_eq!(items[0]["conversationId"], "system_bob");
        assert_eq!(items[1]["conversationId"], "system_carol");
        let pushed = event_on(&mut bob, "/user/queue/notifications", "notification.new").await;
        assert_eq!(pushed, items[0]);
        // Carol was offline: she finds it when she comes back.
        let mut carol = broker.im_user("carol").await;
        quiet(&mut carol).await;
        let stored = im::history(&broker, "carol", "system_carol", "").await;
        assert_eq!(stored, vec![items[1].clone()]);
        assert_eq!(
            im::unread(&broker, "carol").await,
            json!({"total": 1, "conversations": [{"id": "system_carol", "unreadCount": 1, "muted": false, "mentioned": false}]})
        );
        let listed = im::listed(&broker, "carol", "system_carol")
            .await
            .expect("listed");
        assert_eq!(listed["type"], "system");
        assert_eq!(listed["lastMessage"]["format"], "card");
        // Nobody else sees it.
        let (status, body) = broker
            .api(
                "GET",
                "/api/v1/conversations/system_carol/messages",
                "bob",
                None,
            )
            .await;
        assert_eq!(status, 404, "{body}");
        assert_error(&body, "NOT_FOUND");
    }
}

#[tokio::test]
async fn users_may_not_send_notifications() {
    for database in db::all().await {
        let broker = im::broker(&database.url, &[]).await;
        let mut alice = broker.im_user("alice").await;
        let mut bob = broker.im_user("bob").await;
        send_json(
            &mut alice,
            "/user/bob/queue/notifications",
            &json!({"title": "You won", "content": "click here"}),
            Some("n1"),
        )
        .await;
        let body = error(&mut alice).await;
        assert_error(&body, "FORBIDDEN");
        assert_eq!(body["receiptId"], "n1", "{}", database.label);
        let (status, body) = broker
            .api(
                "POST",
                "/api/v1/notifications",
                "alice",
                Some(json!({"userIds": ["bob"], "title": "x"})),
            )
            .await;
        assert_eq!(status, 403, "{body}");
        assert_error(&body, "FORBIDDEN");
        // Nor write into a system conversation.
        broker
            .api_system(
                "POST",
                "/api/v1/notifications",
                "backend",
                Some(json!({"userIds": ["bob"], "title": "hi"})),
            )
            .await;
        quiet(&mut alice).await;
        let (status, body) = broker
            .api(
                "POST",
                "/api/v1/messages",
                "bob",
                Some(json!({"conversationId": "system_bob", "clientMsgId": "c", "format": "text", "content": "reply"})),
            )
            .await;
        assert_eq!(status, 403, "{body}");
        assert_error(&body, "FORBIDDEN");
        assert_eq!(body["clientMsgId"], "c");
        assert_eq!(im::history(&broker, "bob", "system_bob", "").await.len(), 1);
        event_on(&mut bob, "/user/queue/notifications", "notification.new").await;
        quiet(&mut bob).await;
    }
}

#[tokio::test]
async fn a_notification_with_a_client_msg_id_is_stored_once_per_user() {
    for database in db::all().await {
        let broker = im::broker(&database.url, &[]).await;
        let request = json!({"userIds": ["bob"], "title": "Once", "clientMsgId": "n-1"});
        let (first, one) = broker
            .api_system(
                "POST",
                "/api/v1/notifications",
                "backend",
                Some(request.clone()),
            )
            .await;
        let (second, two) = broker
            .api_system("POST", "/api/v1/notifications", "backend", Some(request))
            .await;
        assert_eq!((first, second), (201, 201), "{}", database.label);
        assert_eq!(one["items"][0]["id"], two["items"][0]["id"]);
        assert_eq!(im::history(&broker, "bob", "system_bob", "").await.len(), 1);
    }
}

//! Announcements to all users (contract 5.6): stored before they are pushed, listed later with
//! a read marker, bounded in number. On every configured backend.

use std::time::Duration;

use crate::common::im::{self, assert_error};
use crate::common::{TestBroker, db};
use broker::auth::Role;
use serde_json::{Value, json};
use stomp_codec::{Command, Frame};

async fn listed(broker: &TestBroker, user: &str) -> Value {
    let (status, page) = broker.api("GET", "/api/v1/announcements", user, None).await;
    assert_eq!(status, 200, "{page}");
    page
}

#[tokio::test]
async fn announcements_are_pushed_stored_and_read() {
    for database in db::all().await {
        let broker = im::broker(&database.url, &[]).await;
        let label = &database.label;
        let mut online = broker.ws("olga").await;
        online.subscribe("/topic/announcements", "a", "auto").await;
        let token = broker.token_with("ops", &[Role::System], Duration::from_secs(60));
        let mut backend = broker.ws_token(&token).await;
        backend
            .send(
                &Frame::new(Command::Send)
                    .header("destination", "/topic/announcements")
                    .header("content-type", "text/plain")
                    .header("receipt", "r1")
                    .body("maintenance at 22:00".to_owned()),
            )
            .await;
        assert_eq!(backend.frame().await.command, Command::Receipt, "{label}");
        let pushed = online.frame().await;
        assert_eq!(&pushed.body[..], b"maintenance at 22:00", "{label}");
        let id = pushed
            .get("announcement-id")
            .expect("announcement-id")
            .to_owned();

        // Someone who was offline finds it.
        let page = listed(&broker, "pavel").await;
        assert_eq!(
            page["items"][0]["body"], "maintenance at 22:00",
            "{label}: {page}"
        );
        assert_eq!(page["items"][0]["id"], id.as_str());
        assert_eq!(page["items"][0]["senderId"], "ops");
        assert_eq!(
            (page["unreadCount"].as_i64(), page["readUpTo"].as_str()),
            (Some(1), Some("0"))
        );
        let (status, _) = broker
            .api(
                "POST",
                "/api/v1/announcements/read",
                "pavel",
                Some(json!({"upToId": id})),
            )
            .await;
        assert_eq!(status, 204, "{label}");
        let page = listed(&broker, "pavel").await;
        assert_eq!(page["unreadCount"], 0, "{label}");
        assert_eq!(page["readUpTo"], id.as_str());

        let (status, second) = broker
            .api_system(
                "POST",
                "/api/v1/announcements",
                "ops",
                Some(json!({"content": "done"})),
            )
            .await;
        assert_eq!(status, 201, "{label}: {second}");
        let again = online.frame().await;
        assert_eq!(&again.body[..], b"done");
        let page = listed(&broker, "pavel").await;
        assert_eq!(page["unreadCount"], 1, "{label}: {page}");
        assert_eq!(page["items"][0]["body"], "done");
        // The marker never moves back.
        broker
            .api(
                "POST",
                "/api/v1/announcements/read",
                "pavel",
                Some(json!({"upToId": "1"})),
            )
            .await;
        assert_eq!(listed(&broker, "pavel").await["readUpTo"], id.as_str());
    }
}

#[tokio::test]
async fn only_backends_announce() {
    for database in db::all().await {
        let broker = im::broker(&database.url, &[]).await;
        let label = &database.label;
        // As any SEND to a destination one may not write: ERROR, and the connection closes.
        let mut user = broker.im_user("mallory").await;
        user.send(
            &Frame::new(Command::Send)
                .header("destination", "/topic/announcements")
                .header("receipt", "r")
                .body("free prizes".to_owned()),
        )
        .await;
        let error = user.frame().await;
        assert_eq!(error.command, Command::Error, "{label}");
        assert_eq!(error.get("message"), Some("forbidden"), "{label}");
        let (status, body) = broker
            .api(
                "POST",
                "/api/v1/announcements",
                "mallory",
                Some(json!({"content": "free prizes"})),
            )
            .await;
        assert_eq!(status, 403, "{label}: {body}");
        assert_error(&body, "FORBIDDEN");
        assert_eq!(
            listed(&broker, "mallory").await["items"],
            json!([]),
            "{label}"
        );
        // Other names under the prefix are no topics at all.
        let mut user = broker.im_user("mallory").await;
        user.send(
            &Frame::new(Command::Send)
                .header("destination", "/topic/announcementsx")
                .body("x".to_owned()),
        )
        .await;
        let error = im::error(&mut user).await;
        assert_eq!(error["code"], "FORBIDDEN", "{label}: {error}");
    }
}

#[tokio::test]
async fn only_the_newest_thousand_are_kept() {
    let database = db::sqlite();
    let broker = im::broker(&database.url, &[]).await;
    for n in 0..1003 {
        let (status, body) = broker
            .api_system(
                "POST",
                "/api/v1/announcements",
                "ops",
                Some(json!({"content": format!("a{n}")})),
            )
            .await;
        assert_eq!(status, 201, "{body}");
    }
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/api/v1/announcements?limit=100&cursor={c}"),
            None => "/api/v1/announcements?limit=100".to_owned(),
        };
        let (_, page) = broker.api("GET", &path, "reader", None).await;
        for item in page["items"].as_array().unwrap() {
            seen.push(item["body"].as_str().unwrap().to_owned());
        }
        match page["nextCursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
    }
    assert_eq!(seen.len(), 1000);
    assert_eq!(seen.first().map(String::as_str), Some("a1002"));
    assert_eq!(seen.last().map(String::as_str), Some("a3"));
}

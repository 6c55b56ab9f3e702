//! Attachments over real sockets, on every configured backend: who may download a file once a
//! message carries it (only while a stored message shares it), which URLs a media attachment may
//! name, and what of an upload a message keeps.

mod common;

use common::files::{download_status, upload_png};
use common::{TestBroker, db, im};
use serde_json::{Value, json};

/// `sender`'s `POST /api/v1/messages` of an image message to `to` carrying `attachment`.
async fn send_image(
    broker: &TestBroker,
    sender: &str,
    to: &str,
    client_msg_id: &str,
    attachment: &Value,
) -> (u16, Value) {
    broker
        .api(
            "POST",
            "/api/v1/messages",
            sender,
            Some(
                json!({"to": to, "clientMsgId": client_msg_id, "format": "image",
                "content": "", "attachment": attachment}),
            ),
        )
        .await
}

fn url_of(attachment: &Value) -> String {
    attachment["url"].as_str().expect("url").to_owned()
}

/// Bob's image sent to alice is refused with `code`, and alice cannot download it.
async fn refused_image_shares_nothing(broker: &TestBroker, label: &str, code: &str) {
    let attachment = upload_png(broker, "bob").await;
    let (status, body) = send_image(broker, "bob", "alice", "refused-img", &attachment).await;
    assert_eq!(body["code"], code, "{label}: {status} {body}");
    assert_eq!(
        download_status(broker, &url_of(&attachment), "alice").await,
        404,
        "{label}: a refused send shared the file"
    );
    assert_eq!(
        download_status(broker, &url_of(&attachment), "bob").await,
        200
    );
}

#[tokio::test]
async fn a_send_refused_because_the_recipient_blocked_the_sender_shares_nothing() {
    for database in db::all().await {
        let broker = im::broker(&database.url, &[]).await;
        let (status, _) = broker
            .api("POST", "/api/v1/blocks/bob", "alice", None)
            .await;
        assert_eq!(status, 204);
        refused_image_shares_nothing(&broker, database.label, "BLOCKED").await;
    }
}

#[tokio::test]
async fn a_send_refused_by_the_stranger_limit_shares_nothing() {
    for database in db::all().await {
        let broker = im::broker(
            &database.url,
            &[("BROKER_LIMITS_STRANGER_BEFORE_REPLY", "1")],
        )
        .await;
        let (status, body) = broker
            .api(
                "POST",
                "/api/v1/messages",
                "bob",
                Some(json!({"to": "alice", "clientMsgId": "hello", "content": "hello"})),
            )
            .await;
        assert_eq!(status, 201, "{body}");
        refused_image_shares_nothing(&broker, database.label, "STRANGER_LIMIT").await;
    }
}

#[tokio::test]
async fn a_send_refused_for_sensitive_words_shares_nothing() {
    for database in db::all().await {
        let dir = tempfile::tempdir().unwrap();
        let words = dir.path().join("words.txt");
        std::fs::write(&words, "badword\n").unwrap();
        let words = words.display().to_string();
        let broker = im::broker(
            &database.url,
            &[("BROKER_MODERATION_WORDS_FILE", words.as_str())],
        )
        .await;
        let attachment = upload_png(&broker, "bob").await;
        let (_, body) = broker
            .api(
                "POST",
                "/api/v1/messages",
                "bob",
                Some(
                    json!({"to": "alice", "clientMsgId": "rude", "format": "image",
                    "content": "badword", "attachment": attachment}),
                ),
            )
            .await;
        assert_eq!(
            body["code"], "SENSITIVE_CONTENT",
            "{}: {body}",
            database.label
        );
        assert_eq!(
            download_status(&broker, &url_of(&attachment), "alice").await,
            404,
            "{}",
            database.label
        );
    }
}

#[tokio::test]
async fn a_send_refused_by_the_rate_limit_shares_nothing() {
    for database in db::all().await {
        let broker = im::broker(&database.url, &[("BROKER_LIMITS_SEND_RATE", "1/1h")]).await;
        let (status, body) = broker
            .api(
                "POST",
                "/api/v1/messages",
                "bob",
                Some(json!({"to": "alice", "clientMsgId": "first", "content": "first"})),
            )
            .await;
        assert_eq!(status, 201, "{body}");
        refused_image_shares_nothing(&broker, database.label, "RATE_LIMITED").await;
    }
}

#[tokio::test]
async fn a_send_refused_over_stomp_shares_nothing() {
    for database in db::all().await {
        let broker = im::broker(&database.url, &[]).await;
        broker
            .api("POST", "/api/v1/blocks/bob", "alice", None)
            .await;
        let attachment = upload_png(&broker, "bob").await;
        let mut bob = broker.im_user("bob").await;
        im::send_json(
            &mut bob,
            "/app/private.send",
            &json!({"to": "alice", "clientMsgId": "stomp-img", "format": "image",
                "content": "", "attachment": attachment}),
            Some("r"),
        )
        .await;
        assert_eq!(im::error(&mut bob).await["code"], "BLOCKED");
        assert_eq!(
            download_status(&broker, &url_of(&attachment), "alice").await,
            404,
            "{}",
            database.label
        );
    }
}

#[tokio::test]
async fn a_recall_takes_the_file_back_from_the_recipient_and_the_uploader_keeps_it() {
    for database in db::all().await {
        let label = database.label;
        let broker = im::broker(&database.url, &[]).await;
        let attachment = upload_png(&broker, "bob").await;
        let thumbnail = attachment["thumbnailUrl"].as_str().unwrap().to_owned();
        let (status, sent) = send_image(&broker, "bob", "alice", "img", &attachment).await;
        assert_eq!(status, 201, "{label}: {sent}");
        assert_eq!(
            download_status(&broker, &url_of(&attachment), "alice").await,
            200
        );
        assert_eq!(download_status(&broker, &thumbnail, "alice").await, 200);

        let id = sent["id"].as_str().unwrap();
        let (status, recalled) = broker
            .api(
                "POST",
                &format!("/api/v1/messages/{id}/recall"),
                "bob",
                None,
            )
            .await;
        assert_eq!(status, 200, "{label}: {recalled}");
        assert_eq!(
            download_status(&broker, &url_of(&attachment), "alice").await,
            404,
            "{label}: the recipient after the recall"
        );
        assert_eq!(
            download_status(&broker, &thumbnail, "alice").await,
            404,
            "{label}"
        );
        assert_eq!(
            download_status(&broker, &url_of(&attachment), "bob").await,
            200,
            "{label}: the uploader"
        );
    }
}

#[tokio::test]
async fn a_recall_leaves_the_file_shared_by_another_message_that_stands() {
    for database in db::all().await {
        let label = database.label;
        let broker = im::broker(&database.url, &[]).await;
        let attachment = upload_png(&broker, "bob").await;
        let (_, first) = send_image(&broker, "bob", "alice", "img-1", &attachment).await;
        let (status, _) = send_image(&broker, "bob", "alice", "img-2", &attachment).await;
        assert_eq!(status, 201, "{label}");
        let id = first["id"].as_str().unwrap();
        let (status, _) = broker
            .api(
                "POST",
                &format!("/api/v1/messages/{id}/recall"),
                "bob",
                None,
            )
            .await;
        assert_eq!(status, 200, "{label}");
        assert_eq!(
            download_status(&broker, &url_of(&attachment), "alice").await,
            200,
            "{label}: the second message still shares it"
        );
    }
}

//! Attachments over real sockets, on every configured backend: who may download a file once a
//! message carries it (only while a stored message shares it), which URLs a media attachment may
//! name, and what of an upload a message keeps.

use crate::common;

use crate::common::files::{download_status, upload_png};
use crate::common::{TestBroker, db, im};
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

// ---------------------------------------------------------------------------------------------
// Which URLs a media attachment may name, and what of the upload the message keeps.
// ---------------------------------------------------------------------------------------------

/// An attachment object pointing at `url`.
/// Sends an image message pointing at each of `urls` and expects `INVALID_ARGUMENT` for every one.
async fn refuses_image_urls(broker: &TestBroker, label: &str, tag: &str, urls: &[&str]) {
    for (n, url) in urls.iter().enumerate() {
        let (status, body) = send_image(
            broker,
            "bob",
            "alice",
            &format!("{tag}-{n}"),
            &pointing_at(url),
        )
        .await;
        assert_eq!(
            (status, body["code"].as_str()),
            (400, Some("INVALID_ARGUMENT")),
            "{label} {url}: {body}"
        );
    }
}

fn pointing_at(url: &str) -> Value {
    json!({"url": url, "name": "a.png", "size": 10, "mime": "image/png"})
}

#[tokio::test]
async fn an_attachment_with_a_foreign_url_is_refused() {
    for database in db::all().await {
        let label = database.label;
        let broker = im::broker(&database.url, &[]).await;
        refuses_image_urls(
            &broker,
            label,
            "foreign",
            &[
                "https://evil.example/collect",
                "http://evil.example/a.png",
                "//evil.example/api/v1/files/abc",
                "/api/v1/files/../../evil",
                "/api/v1/files/abc?x=1",
                "/somewhere/else",
                "javascript:alert(1)",
            ],
        )
        .await;
        // Over STOMP, to a group as well.
        let group = im::create_group(&broker, "bob", "team", &["alice"]).await;
        let mut bob = broker.im_user("bob").await;
        im::send_json(
            &mut bob,
            "/app/group.send",
            &json!({"conversationId": group, "clientMsgId": "g-foreign", "format": "file",
                "content": "", "attachment": pointing_at("https://evil.example/a.zip")}),
            Some("r"),
        )
        .await;
        assert_eq!(
            im::error(&mut bob).await["code"],
            "INVALID_ARGUMENT",
            "{label}"
        );
        let items = im::history(&broker, "alice", &group, "").await;
        assert!(
            items.iter().all(|m| m["attachment"].is_null()),
            "{label}: {items:?}"
        );
    }
}

#[tokio::test]
async fn a_foreign_thumbnail_on_a_broker_file_is_refused() {
    for database in db::all().await {
        let broker = im::broker(&database.url, &[]).await;
        let mut attachment = upload_png(&broker, "bob").await;
        let other = upload_png(&broker, "bob").await;
        for (n, thumbnail) in [
            "https://evil.example/t.jpg".to_owned(),
            other["thumbnailUrl"].as_str().unwrap().to_owned(),
            format!("{}/../thumbnail", url_of(&attachment)),
        ]
        .into_iter()
        .enumerate()
        {
            attachment["thumbnailUrl"] = json!(thumbnail);
            let (status, body) =
                send_image(&broker, "bob", "alice", &format!("thumb-{n}"), &attachment).await;
            assert_eq!(
                (status, body["code"].as_str()),
                (400, Some("INVALID_ARGUMENT")),
                "{} {thumbnail}: {body}",
                database.label
            );
        }
    }
}

#[tokio::test]
async fn an_external_url_under_a_configured_prefix_is_accepted_normalised() {
    for database in db::all().await {
        let label = database.label;
        let broker = im::broker(
            &database.url,
            &[(
                "BROKER_FILES_EXTERNAL_URL_PREFIXES",
                r#"["https://cdn.example/media/"]"#,
            )],
        )
        .await;
        let mut attachment = pointing_at("https://CDN.example:443/media/cats/a.png");
        attachment["thumbnailUrl"] = json!("https://cdn.example/media/cats/a-small.png");
        let (status, sent) = send_image(&broker, "bob", "alice", "cdn", &attachment).await;
        assert_eq!(status, 201, "{label}: {sent}");
        assert_eq!(
            sent["attachment"]["url"],
            "https://cdn.example/media/cats/a.png"
        );
        assert_eq!(
            sent["attachment"]["thumbnailUrl"],
            "https://cdn.example/media/cats/a-small.png"
        );
        refuses_image_urls(
            &broker,
            label,
            "cdn",
            &[
                "https://cdn.example/media-evil/a.png",
                "https://cdn.example/media/../private/a.png",
                "https://cdn.example/media/%2e%2e/private/a.png",
                "https://cdn.example/media/..%2Fprivate",
                "https://user:secret@cdn.example/media/a.png",
                "https://cdn.example@evil.example/media/a.png",
                "http://cdn.example/media/a.png",
                "https://cdn.example:8443/media/a.png",
                "https://cdn.example.evil.example/media/a.png",
            ],
        )
        .await;
    }
}

#[tokio::test]
async fn a_broker_file_attachment_keeps_what_the_upload_recorded() {
    for database in db::all().await {
        let label = database.label;
        let broker = im::broker(&database.url, &[]).await;
        let upload = upload_png(&broker, "bob").await;
        let declared = json!({"url": upload["url"], "name": "holiday.png", "size": 1,
            "mime": "text/html", "width": 9999, "height": 1, "durationMs": 5});
        let (status, sent) = send_image(&broker, "bob", "alice", "lies", &declared).await;
        assert_eq!(status, 201, "{label}: {sent}");
        let stored = &sent["attachment"];
        for key in ["url", "size", "mime", "width", "height", "thumbnailUrl"] {
            assert_eq!(stored[key], upload[key], "{label}: {key}");
        }
        assert_eq!(
            stored["name"], "holiday.png",
            "{label}: the sender names it"
        );
        let history = im::history(&broker, "alice", "private_alice_bob", "").await;
        assert_eq!(&history[0]["attachment"], stored, "{label}");
    }
}

#[tokio::test]
async fn an_image_message_needs_an_image_upload() {
    for database in db::all().await {
        let label = database.label;
        let broker = im::broker(&database.url, &[]).await;
        let pdf =
            common::files::upload(&broker, "bob", "a.pdf", "application/pdf", b"%PDF-1.4").await;
        let (status, body) = send_image(&broker, "bob", "alice", "pdf-as-image", &pdf).await;
        assert_eq!(
            (status, body["code"].as_str()),
            (400, Some("INVALID_ARGUMENT")),
            "{label}: {body}"
        );
        let (status, body) = broker
            .api(
                "POST",
                "/api/v1/messages",
                "bob",
                Some(json!({"to": "alice", "clientMsgId": "pdf", "format": "file", "attachment": pdf})),
            )
            .await;
        assert_eq!(status, 201, "{label}: {body}");
    }
}

#[tokio::test]
async fn a_file_over_the_current_limit_cannot_be_sent() {
    for database in db::all().await {
        let label = database.label;
        let broker = im::broker(&database.url, &[]).await;
        let picture = upload_png(&broker, "bob").await;
        let file = common::files::upload(
            &broker,
            "bob",
            "a.bin",
            "application/octet-stream",
            &[7; 3000],
        )
        .await;
        im::stop(broker).await;
        // The limits went down after the uploads.
        let broker = im::broker(
            &database.url,
            &[
                ("BROKER_LIMITS_IMAGE_MAX_BYTES", "100"),
                ("BROKER_LIMITS_FILE_MAX_BYTES", "2000"),
            ],
        )
        .await;
        let (status, body) = send_image(&broker, "bob", "alice", "big-image", &picture).await;
        assert_eq!(
            (status, body["code"].as_str()),
            (400, Some("INVALID_ARGUMENT")),
            "{label}: {body}"
        );
        for format in ["file", "voice", "video"] {
            let (status, body) = broker
                .api(
                    "POST",
                    "/api/v1/messages",
                    "bob",
                    Some(
                        json!({"to": "alice", "clientMsgId": format!("big-{format}"),
                        "format": format, "attachment": file}),
                    ),
                )
                .await;
            assert_eq!(
                (status, body["code"].as_str()),
                (400, Some("INVALID_ARGUMENT")),
                "{label} {format}: {body}"
            );
        }
        // The picture is within the file limit.
        let (status, body) = broker
            .api(
                "POST",
                "/api/v1/messages",
                "bob",
                Some(
                    json!({"to": "alice", "clientMsgId": "small-file", "format": "file",
                    "attachment": picture}),
                ),
            )
            .await;
        assert_eq!(status, 201, "{label}: {body}");
    }
}

#[tokio::test]
async fn a_file_neither_uploaded_by_nor_shared_with_the_sender_is_refused() {
    for database in db::all().await {
        let label = database.label;
        let broker = im::broker(&database.url, &[]).await;
        let bobs = upload_png(&broker, "bob").await;
        let missing = json!({"url": "/api/v1/files/0123456789abcdef0123456789abcdef",
            "name": "x.png", "size": 1, "mime": "image/png"});
        for attachment in [&bobs, &missing] {
            let (status, body) = send_image(&broker, "carol", "dave", "steal", attachment).await;
            assert_eq!(
                (status, body["code"].as_str()),
                (400, Some("INVALID_ARGUMENT")),
                "{label}"
            );
            assert!(
                body["message"]
                    .as_str()
                    .unwrap()
                    .contains("no file of yours"),
                "{body}"
            );
        }
        // Once bob shares it with carol, she may pass it on.
        send_image(&broker, "bob", "carol", "share", &bobs).await;
        let (status, body) = send_image(&broker, "carol", "dave", "pass-on", &bobs).await;
        assert_eq!(status, 201, "{label}: {body}");
        assert_eq!(
            download_status(&broker, &url_of(&bobs), "dave").await,
            200,
            "{label}"
        );
    }
}

#[tokio::test]
async fn a_forwarded_file_is_shared_with_the_conversation_it_is_forwarded_to() {
    for database in db::all().await {
        let label = database.label;
        let broker = im::broker(&database.url, &[]).await;
        let attachment = upload_png(&broker, "bob").await;
        let (status, sent) = send_image(&broker, "bob", "alice", "orig", &attachment).await;
        assert_eq!(status, 201, "{label}: {sent}");
        let group = im::create_group(&broker, "alice", "friends", &["carol"]).await;
        assert_eq!(
            download_status(&broker, &url_of(&attachment), "carol").await,
            404
        );
        let (status, body) = broker
            .api(
                "POST",
                "/api/v1/messages/forward",
                "alice",
                Some(json!({"messageIds": [sent["id"]], "toConversationIds": [group]})),
            )
            .await;
        assert_eq!(status, 201, "{label}: {body}");
        assert_eq!(body["items"][0]["attachment"]["url"], attachment["url"]);
        assert_eq!(
            download_status(&broker, &url_of(&attachment), "carol").await,
            200,
            "{label}: a member of the group forwarded to"
        );
        assert_eq!(
            download_status(&broker, &url_of(&attachment), "erin").await,
            404,
            "{label}"
        );
    }
}

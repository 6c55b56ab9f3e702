//! Contacts with verification (contract 5.10): requests, accepting, declining, cancelling and
//! removing, with their events; the contacts-only private policy; contacts' presence. On every
//! configured backend.

use std::time::Duration;

use crate::common::im::{self, assert_error, event_on};
use crate::common::{TestBroker, db};
use broker::auth::Role;
use serde_json::{Value, json};

async fn ask(broker: &TestBroker, from: &str, to: &str, note: &str) -> (u16, Value) {
    broker
        .api(
            "POST",
            "/api/v1/contact-requests",
            from,
            Some(json!({"userId": to, "note": note})),
        )
        .await
}

async fn decide(broker: &TestBroker, user: &str, id: &Value, verb: &str) -> (u16, Value) {
    let id = id.as_str().expect("request id");
    match verb {
        "cancel" => {
            broker
                .api(
                    "DELETE",
                    &format!("/api/v1/contact-requests/{id}"),
                    user,
                    None,
                )
                .await
        }
        _ => {
            broker
                .api(
                    "POST",
                    &format!("/api/v1/contact-requests/{id}/{verb}"),
                    user,
                    None,
                )
                .await
        }
    }
}

async fn contact_ids(broker: &TestBroker, user: &str, query: &str) -> Vec<String> {
    let (status, page) = broker
        .api("GET", &format!("/api/v1/contacts{query}"), user, None)
        .await;
    assert_eq!(status, 200, "{page}");
    page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["userId"].as_str().unwrap().to_owned())
        .collect()
}

async fn pending(broker: &TestBroker, user: &str, direction: &str) -> Vec<Value> {
    let (status, page) = broker
        .api(
            "GET",
            &format!("/api/v1/contact-requests?direction={direction}"),
            user,
            None,
        )
        .await;
    assert_eq!(status, 200, "{page}");
    page["items"].as_array().unwrap().clone()
}

#[tokio::test]
async fn a_request_accepted_makes_contacts_and_either_may_end_it() {
    for database in db::all().await {
        let broker = im::broker(&database.url, &[]).await;
        let label = &database.label;
        let mut alice = broker.im_user("alice").await;
        let mut bob = broker.im_user("bob").await;

        let (status, request) = ask(&broker, "alice", "bob", "we met at the conference").await;
        assert_eq!(status, 200, "{label}: {request}");
        assert_eq!(request["status"], "pending");
        let asked = event_on(&mut bob, "/user/queue/events", "contact.request").await;
        assert_eq!(asked["fromUserId"], "alice", "{label}");
        assert_eq!(asked["note"], "we met at the conference");
        let mine = event_on(&mut alice, "/user/queue/events", "contact.request").await;
        assert_eq!(
            mine["toUserId"], "bob",
            "{label}: the asker's sessions hear of it too"
        );
        assert_eq!(pending(&broker, "bob", "in").await.len(), 1);
        assert_eq!(pending(&broker, "alice", "out").await.len(), 1);
        assert!(pending(&broker, "alice", "in").await.is_empty());
        // Asking again while pending answers the same request.
        let (_, again) = ask(&broker, "alice", "bob", "").await;
        assert_eq!(again["id"], request["id"], "{label}");

        // Only bob decides it.
        let (status, _) = decide(&broker, "alice", &request["id"], "accept").await;
        assert_eq!(status, 404, "{label}");
        let (status, accepted) = decide(&broker, "bob", &request["id"], "accept").await;
        assert_eq!(status, 200, "{label}: {accepted}");
        assert_eq!(accepted["status"], "accepted");
        for (client, other) in [(&mut alice, "bob"), (&mut bob, "alice")] {
            let event = event_on(client, "/user/queue/events", "contact.accepted").await;
            assert_eq!(event["userId"], other, "{label}");
        }
        assert_eq!(contact_ids(&broker, "alice", "").await, ["bob"]);
        assert_eq!(contact_ids(&broker, "bob", "").await, ["alice"]);
        assert!(pending(&broker, "bob", "in").await.is_empty());
        let (status, body) = decide(&broker, "bob", &request["id"], "accept").await;
        assert_eq!(status, 409, "{label}: {body}");
        let (status, body) = ask(&broker, "bob", "alice", "").await;
        assert_eq!(status, 409, "{label}: already contacts: {body}");
        assert_error(&body, "CONFLICT");

        let (status, _) = broker
            .api("DELETE", "/api/v1/contacts/alice", "bob", None)
            .await;
        assert_eq!(status, 204, "{label}");
        for (client, other) in [(&mut alice, "bob"), (&mut bob, "alice")] {
            let event = event_on(client, "/user/queue/events", "contact.removed").await;
            assert_eq!(event["userId"], other, "{label}");
        }
        assert!(contact_ids(&broker, "alice", "").await.is_empty());
        let (status, body) = broker
            .api("DELETE", "/api/v1/contacts/alice", "bob", None)
            .await;
        assert_eq!(status, 404, "{label}: {body}");
    }
}

#[tokio::test]
async fn requests_are_declined_cancelled_met_halfway_and_refused() {
    for database in db::all().await {
        let broker = im::broker(&database.url, &[]).await;
        let label = &database.label;
        let (_, request) = ask(&broker, "carol", "dave", "").await;
        let (status, declined) = decide(&broker, "dave", &request["id"], "decline").await;
        assert_eq!(status, 200, "{label}: {declined}");
        assert_eq!(declined["status"], "declined");
        assert!(contact_ids(&broker, "carol", "").await.is_empty());

        let (_, second) = ask(&broker, "carol", "dave", "please?").await;
        assert_ne!(second["id"], request["id"], "{label}: a new request");
        let (status, _) = decide(&broker, "dave", &second["id"], "cancel").await;
        assert_eq!(status, 404, "{label}: only the sender cancels");
        let (status, cancelled) = decide(&broker, "carol", &second["id"], "cancel").await;
        assert_eq!(status, 200, "{label}: {cancelled}");
        assert_eq!(cancelled["status"], "cancelled");
        assert!(pending(&broker, "dave", "in").await.is_empty());

        // Asking someone whose request waits for you accepts theirs.
        let (_, theirs) = ask(&broker, "erin", "frank", "").await;
        let (status, met) = ask(&broker, "frank", "erin", "").await;
        assert_eq!(status, 200, "{label}: {met}");
        assert_eq!(met["id"], theirs["id"]);
        assert_eq!(met["status"], "accepted");
        assert_eq!(contact_ids(&broker, "frank", "").await, ["erin"]);

        // A user who blocked the asker cannot be asked.
        let (status, _) = broker
            .api("POST", "/api/v1/blocks/gina", "hank", None)
            .await;
        assert_eq!(status, 204);
        let (status, body) = ask(&broker, "gina", "hank", "").await;
        assert_eq!(status, 403, "{label}: {body}");
        assert_error(&body, "BLOCKED");

        for (body, what) in [
            (json!({"userId": "carol"}), "oneself"),
            (json!({"userId": "no such user!"}), "a bad id"),
            (
                json!({"userId": "dave", "note": "x".repeat(201)}),
                "a long note",
            ),
        ] {
            let (status, answer) = broker
                .api("POST", "/api/v1/contact-requests", "carol", Some(body))
                .await;
            assert_eq!(status, 400, "{label}: {what}: {answer}");
        }
        for path in [
            "/api/v1/contact-requests/999/accept",
            "/api/v1/contact-requests/nope/decline",
        ] {
            let (status, _) = broker.api("POST", path, "dave", None).await;
            assert_eq!(status, 404, "{label}: {path}");
        }
    }
}

#[tokio::test]
async fn contact_requests_are_rate_limited() {
    let database = db::sqlite();
    let broker = im::broker(
        &database.url,
        &[("BROKER_LIMITS_CONTACT_REQUEST_RATE", "2/1h")],
    )
    .await;
    for peer in ["p1", "p2"] {
        let (status, body) = ask(&broker, "spammer", peer, "").await;
        assert_eq!(status, 200, "{body}");
    }
    let (status, body) = ask(&broker, "spammer", "p3", "").await;
    assert_eq!(status, 429, "{body}");
    assert_error(&body, "RATE_LIMITED");
}

#[tokio::test]
async fn with_the_contacts_policy_only_contacts_send_private_messages() {
    for database in db::all().await {
        let broker = im::broker(&database.url, &[("BROKER_IM_PRIVATE_POLICY", "contacts")]).await;
        let label = &database.label;
        let message = |id: &str| json!({"to": "bob", "clientMsgId": id, "content": "hi"});
        let (status, body) = broker
            .api("POST", "/api/v1/messages", "alice", Some(message("m1")))
            .await;
        assert_eq!(status, 403, "{label}: {body}");
        assert_error(&body, "NOT_CONTACT");
        // Over STOMP the same refusal reaches /user/queue/errors.
        let mut alice = broker.im_user("alice").await;
        im::private_send(&mut alice, "bob", "m2", "hi", "r2").await;
        let error = im::error(&mut alice).await;
        assert_eq!(error["code"], "NOT_CONTACT", "{label}: {error}");

        // Backends and staff are exempt.
        let (status, body) = broker
            .api_system(
                "POST",
                "/api/v1/messages",
                "backend",
                Some(json!({"to": "bob", "clientMsgId": "s1", "content": "notice"})),
            )
            .await;
        assert_eq!(status, 201, "{label}: {body}");
        let staff = broker.token_with(
            "helper",
            &[Role::User, Role::Staff],
            Duration::from_secs(60),
        );
        let (status, body) = im::api_in_process(
            &broker.server,
            "POST",
            "/api/v1/messages",
            Some(&staff),
            Some(json!({"to": "bob", "clientMsgId": "t1", "content": "how can I help?"})),
        )
        .await;
        assert_eq!(status, 201, "{label}: {body}");

        let (_, request) = ask(&broker, "alice", "bob", "").await;
        decide(&broker, "bob", &request["id"], "accept").await;
        let (status, body) = broker
            .api("POST", "/api/v1/messages", "alice", Some(message("m3")))
            .await;
        assert_eq!(status, 201, "{label}: {body}");
    }
}

async fn gina_online(broker: &TestBroker) -> Value {
    let (status, answer) = broker
        .api("GET", "/api/v1/presence?userIds=gina", "ivan", None)
        .await;
    assert_eq!(status, 200, "{answer}");
    answer[0]["online"].clone()
}

#[tokio::test]
async fn contacts_see_each_others_presence_without_a_conversation() {
    for database in db::all().await {
        let broker = im::broker(&database.url, &[]).await;
        let label = &database.label;
        let _gina = broker.im_user("gina").await;
        assert_eq!(
            gina_online(&broker).await,
            false,
            "{label}: a stranger sees nothing"
        );
        assert!(
            contact_ids(&broker, "ivan", "?online=true")
                .await
                .is_empty()
        );

        let (_, request) = ask(&broker, "ivan", "gina", "").await;
        decide(&broker, "gina", &request["id"], "accept").await;
        assert_eq!(
            gina_online(&broker).await,
            true,
            "{label}: a contact sees gina online"
        );
        assert_eq!(contact_ids(&broker, "ivan", "?online=true").await, ["gina"]);
        let (_, page) = broker.api("GET", "/api/v1/contacts", "ivan", None).await;
        assert_eq!(page["items"][0]["online"], true, "{label}: {page}");
        // Ivan may watch gina's presence topic too.
        let mut ivan = broker.ws("ivan").await;
        ivan.subscribe("/topic/presence.gina", "p", "auto").await;
        let (status, body) = broker
            .api("GET", "/api/v1/contacts?online=maybe", "ivan", None)
            .await;
        assert_eq!(status, 400, "{label}: {body}");
    }
}

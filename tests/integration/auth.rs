//! Tokens at CONNECT (header, passcode, query parameter and their precedence), refusals,
//! expiry during a session, and what each role may do.

use crate::common;

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::common::{TestBroker, app_error};
use broker::auth::{Authenticator, Role};
use stomp_codec::{Command, Frame};

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs()
}

/// A token with arbitrary claims, signed with the test broker's secret.
fn signed(claims: &serde_json::Value) -> String {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        claims,
        &jsonwebtoken::EncodingKey::from_secret(b"test-secret"),
    )
    .expect("encode")
}

async fn connect_headers(broker: &TestBroker, headers: &[(&str, &str)]) -> Frame {
    let mut client = broker.ws_raw().await;
    let mut all = vec![("accept-version", "1.2"), ("host", "localhost")];
    all.extend_from_slice(headers);
    client.connect_with(Command::Connect, &all).await
}

async fn expect_unauthorized(broker: &TestBroker, token: &str) -> Frame {
    let mut client = broker.ws_raw().await;
    client
        .send(&common::connect_frame(
            Command::Connect,
            &[("accept-version", "1.2"), ("passcode", token)],
        ))
        .await;
    let error = client.expect_error("unauthorized").await;
    assert!(!error.body.is_empty(), "the ERROR says why");
    error
}

#[tokio::test]
async fn token_in_authorization_bearer_header_is_accepted() {
    let broker = TestBroker::start().await;
    let bearer = format!("Bearer {}", broker.token("alice"));
    let connected = connect_headers(&broker, &[("Authorization", &bearer)]).await;
    assert_eq!(connected.command, Command::Connected);
    assert_eq!(connected.get("user-name"), Some("alice"));
}

#[tokio::test]
async fn token_in_lowercase_authorization_header_is_accepted() {
    let broker = TestBroker::start().await;
    let bearer = format!("Bearer {}", broker.token("alice"));
    let connected = connect_headers(&broker, &[("authorization", &bearer)]).await;
    assert_eq!(connected.get("user-name"), Some("alice"));
}

#[tokio::test]
async fn token_in_passcode_is_accepted_with_any_login() {
    let broker = TestBroker::start().await;
    let token = broker.token("bob");
    let connected = connect_headers(&broker, &[("login", "whatever"), ("passcode", &token)]).await;
    assert_eq!(connected.get("user-name"), Some("bob"));
}

#[tokio::test]
async fn token_in_access_token_query_parameter_is_accepted() {
    let broker = TestBroker::start().await;
    let token = broker.token("carol");
    let mut client = broker.ws_query(&format!("access_token={token}")).await;
    let connected = client
        .connect_with(Command::Connect, &[("accept-version", "1.2")])
        .await;
    assert_eq!(connected.command, Command::Connected);
    assert_eq!(connected.get("user-name"), Some("carol"));
}

#[tokio::test]
async fn percent_encoded_query_token_is_accepted() {
    let broker = TestBroker::start().await;
    let token = broker.token("carol").replace('.', "%2E");
    let mut client = broker
        .ws_query(&format!("other=1&access_token={token}"))
        .await;
    let connected = client
        .connect_with(Command::Connect, &[("accept-version", "1.2")])
        .await;
    assert_eq!(connected.get("user-name"), Some("carol"));
}

#[tokio::test]
async fn authorization_header_wins_over_passcode() {
    let broker = TestBroker::start().await;
    let bearer = format!("Bearer {}", broker.token("alice"));
    let passcode = broker.token("bob");
    let connected = connect_headers(
        &broker,
        &[("passcode", &passcode), ("Authorization", &bearer)],
    )
    .await;
    assert_eq!(connected.get("user-name"), Some("alice"));
}

#[tokio::test]
async fn passcode_wins_over_query_token() {
    let broker = TestBroker::start().await;
    let query = broker.token("carol");
    let passcode = broker.token("bob");
    let mut client = broker.ws_query(&format!("access_token={query}")).await;
    let connected = client
        .connect_with(
            Command::Connect,
            &[("accept-version", "1.2"), ("passcode", &passcode)],
        )
        .await;
    assert_eq!(connected.get("user-name"), Some("bob"));
}

#[tokio::test]
async fn authorization_header_wins_over_query_token() {
    let broker = TestBroker::start().await;
    let query = broker.token("carol");
    let bearer = format!("Bearer {}", broker.token("alice"));
    let mut client = broker.ws_query(&format!("access_token={query}")).await;
    let connected = client
        .connect_with(
            Command::Connect,
            &[("accept-version", "1.2"), ("Authorization", &bearer)],
        )
        .await;
    assert_eq!(connected.get("user-name"), Some("alice"));
}

#[tokio::test]
async fn first_token_found_decides_even_when_it_is_bad() {
    let broker = TestBroker::start().await;
    let good = broker.token("bob");
    let mut client = broker.ws_raw().await;
    client
        .send(&common::connect_frame(
            Command::Connect,
            &[
                ("accept-version", "1.2"),
                ("Authorization", "Bearer not-a-jwt"),
                ("passcode", &good),
            ],
        ))
        .await;
    client.expect_error("unauthorized").await;
}

#[tokio::test]
async fn missing_token_is_unauthorized_and_closed() {
    let broker = TestBroker::start().await;
    let mut client = broker.ws_raw().await;
    client
        .send(&common::connect_frame(
            Command::Connect,
            &[
                ("accept-version", "1.2"),
                ("login", "alice"),
                ("receipt", "c"),
            ],
        ))
        .await;
    let error = client.expect_error("unauthorized").await;
    assert_eq!(error.get("receipt-id"), Some("c"));
}

#[tokio::test]
async fn malformed_token_is_unauthorized_and_closed() {
    let broker = TestBroker::start().await;
    expect_unauthorized(&broker, "this.is.not-a-token").await;
}

#[tokio::test]
async fn token_signed_with_another_secret_is_unauthorized() {
    let broker = TestBroker::start().await;
    let forged = Authenticator::hs256(b"some-other-secret")
        .mint("alice", &[Role::System], Duration::from_secs(600))
        .expect("mint");
    expect_unauthorized(&broker, &forged).await;
}

#[tokio::test]
async fn expired_token_is_unauthorized() {
    let broker = TestBroker::start().await;
    let expired = signed(&serde_json::json!({"sub": "alice", "exp": now_secs() - 5}));
    let error = expect_unauthorized(&broker, &expired).await;
    let reason = String::from_utf8_lossy(&error.body).to_lowercase();
    assert!(reason.contains("expired"), "{reason}");
}

#[tokio::test]
async fn token_without_exp_is_unauthorized() {
    let broker = TestBroker::start().await;
    let endless = signed(&serde_json::json!({"sub": "alice"}));
    expect_unauthorized(&broker, &endless).await;
}

#[tokio::test]
async fn token_with_an_invalid_sub_is_refused() {
    let broker = TestBroker::start().await;
    for sub in ["a_b", "a/b", "with space", ""] {
        let token = signed(&serde_json::json!({"sub": sub, "exp": now_secs() + 600}));
        let mut client = broker.ws_raw().await;
        client
            .send(&common::connect_frame(
                Command::Connect,
                &[("accept-version", "1.2"), ("passcode", &token)],
            ))
            .await;
        let error = client.expect(Command::Error).await;
        assert_eq!(error.get("message"), Some("unauthorized"), "sub {sub:?}");
        assert_eq!(error.get("code"), Some("INVALID_ARGUMENT"), "sub {sub:?}");
        client.expect_closed().await;
    }
}

#[tokio::test]
async fn token_without_roles_connects_as_a_user() {
    let broker = TestBroker::start().await;
    let token = signed(&serde_json::json!({"sub": "dave", "exp": now_secs() + 600}));
    let mut client = broker.ws_raw().await;
    client.connect(&token).await;
    // A user may read announcements but not write them.
    client.subscribe("/topic/announcements", "a", "auto").await;
    client.publish("/topic/announcements", "hi").await;
    client.expect_error("forbidden").await;
}

#[tokio::test]
async fn session_gets_unauthorized_when_its_token_expires() {
    let broker = TestBroker::start().await;
    let token = broker.token_with("alice", &[Role::User], Duration::from_secs(2));
    let exp = broker
        .server
        .auth()
        .verify(&token)
        .expect("valid")
        .expires_at;
    let mut client = broker.ws_raw().await;
    client.connect(&token).await;
    let started = Instant::now();
    client.ping("before-expiry").await;
    let error = client.expect(Command::Error).await;
    let arrived = SystemTime::now();
    assert_eq!(error.get("message"), Some("unauthorized"));
    assert!(
        String::from_utf8_lossy(&error.body).contains("expired"),
        "{error:?}"
    );
    // At expiry: not before, and not long after.
    assert!(
        arrived + Duration::from_millis(20) >= exp,
        "ERROR before exp"
    );
    assert!(started.elapsed() < Duration::from_secs(3));
    client.expect_closed().await;
}

#[tokio::test]
async fn user_cannot_send_to_announcements() {
    let broker = TestBroker::start().await;
    let mut alice = broker.ws("alice").await;
    alice
        .send(
            &Frame::new(Command::Send)
                .header("destination", "/topic/announcements")
                .header("receipt", "r")
                .body("hello all"),
        )
        .await;
    let error = alice.expect_error("forbidden").await;
    assert_eq!(error.get("receipt-id"), Some("r"));
}

#[tokio::test]
async fn system_can_send_to_announcements_and_users_receive_it() {
    let broker = TestBroker::start().await;
    let mut alice = broker.ws("alice").await;
    alice.subscribe("/topic/announcements", "1", "auto").await;
    let mut backend = broker.ws_system("backend").await;
    backend
        .send_with_receipt("/topic/announcements", "maintenance", "r")
        .await;
    let (_, body) = alice.message().await;
    assert_eq!(body, "maintenance");
}

#[tokio::test]
async fn user_cannot_subscribe_to_a_generic_topic_by_default() {
    let broker = TestBroker::start().await;
    let mut alice = broker.ws("alice").await;
    alice
        .send(
            &Frame::new(Command::Subscribe)
                .header("destination", "/topic/internal")
                .header("id", "1")
                .header("receipt", "s"),
        )
        .await;
    let error = alice.expect_error("forbidden").await;
    assert_eq!(error.get("receipt-id"), Some("s"));
}

#[tokio::test]
async fn user_cannot_send_to_a_generic_queue_by_default() {
    let broker = TestBroker::start().await;
    let mut alice = broker.ws("alice").await;
    alice.publish("/queue/jobs", "work").await;
    alice.expect_error("forbidden").await;
}

#[tokio::test]
async fn acl_defaults_come_from_the_configuration() {
    let broker = TestBroker::start_env(&[
        ("BROKER_ACL_DEFAULT_SUBSCRIBE", r#"["user", "system"]"#),
        ("BROKER_ACL_DEFAULT_SEND", r#"["user"]"#),
    ])
    .await;
    let mut alice = broker.ws("alice").await;
    let mut bob = broker.ws("bob").await;
    bob.subscribe("/topic/chatter", "1", "auto").await;
    alice.send_with_receipt("/topic/chatter", "hey", "r").await;
    assert_eq!(bob.message().await.1, "hey");
    // A system token lacks role user here, so it may not send.
    let mut backend = broker.ws_system("backend").await;
    backend.publish("/topic/chatter", "x").await;
    backend.expect_error("forbidden").await;
}

#[tokio::test]
async fn system_send_to_a_user_queue_reaches_every_session_of_that_user() {
    let broker = TestBroker::start().await;
    let mut bob_phone = broker.ws("bob").await;
    let mut bob_laptop = broker.ws("bob").await;
    let mut bob_unsubscribed = broker.ws("bob").await;
    let mut alice = broker.ws("alice").await;
    bob_phone.subscribe("/user/queue/alerts", "p", "auto").await;
    bob_laptop
        .subscribe("/user/queue/alerts", "l", "auto")
        .await;
    alice.subscribe("/user/queue/alerts", "a", "auto").await;
    let mut backend = broker.tcp(&broker.system_token("backend")).await;
    backend
        .send_with_receipt("/user/bob/queue/alerts", "disk full", "r")
        .await;
    for (client, sub) in [(&mut bob_phone, "p"), (&mut bob_laptop, "l")] {
        let (frame, body) = client.message().await;
        assert_eq!(body, "disk full");
        assert_eq!(frame.get("destination"), Some("/user/queue/alerts"));
        assert_eq!(frame.get("subscription"), Some(sub));
    }
    alice.expect_nothing(Duration::from_millis(150)).await;
    bob_unsubscribed
        .expect_nothing(Duration::from_millis(10))
        .await;
}

#[tokio::test]
async fn user_send_to_another_users_queue_is_a_forbidden_error_and_the_session_stays_open() {
    let broker = TestBroker::start().await;
    let mut bob = broker.ws("bob").await;
    bob.subscribe("/user/queue/alerts", "b", "auto").await;
    let mut alice = broker.ws("alice").await;
    alice
        .subscribe("/user/queue/errors", "errors", "auto")
        .await;
    alice
        .send(
            &Frame::new(Command::Send)
                .header("destination", "/user/bob/queue/alerts")
                .header("receipt", "r-1")
                .body("spoofed"),
        )
        .await;
    let error = alice.expect(Command::Message).await;
    let body = app_error(&error);
    assert_eq!(body["code"], "FORBIDDEN");
    assert_eq!(body["receiptId"], "r-1");
    assert!(body["message"].as_str().is_some_and(|m| !m.is_empty()));
    assert_eq!(error.get("content-type"), Some("application/json"));
    assert_eq!(error.get("subscription"), Some("errors"));
    bob.expect_nothing(Duration::from_millis(150)).await;
    alice.ping("still-open").await;
}

#[tokio::test]
async fn app_errors_go_only_to_the_session_that_caused_them() {
    let broker = TestBroker::start().await;
    let mut alice = broker.ws("alice").await;
    let mut alice_other = broker.ws("alice").await;
    alice.subscribe("/user/queue/errors", "e", "auto").await;
    alice_other
        .subscribe("/user/queue/errors", "e", "auto")
        .await;
    alice.publish("/user/bob/queue/alerts", "x").await;
    app_error(&alice.frame().await);
    alice_other.expect_nothing(Duration::from_millis(150)).await;
}

#[tokio::test]
async fn user_send_to_own_user_queue_is_a_forbidden_error() {
    let broker = TestBroker::start().await;
    let mut alice = broker.ws("alice").await;
    alice.subscribe("/user/queue/errors", "e", "auto").await;
    alice.publish("/user/queue/messages", "to myself").await;
    let body = app_error(&alice.frame().await);
    assert_eq!(body["code"], "FORBIDDEN");
    alice.ping("open").await;
}

#[tokio::test]
async fn subscribing_to_another_users_queue_is_a_forbidden_error() {
    let broker = TestBroker::start().await;
    let mut alice = broker.ws("alice").await;
    alice.subscribe("/user/queue/errors", "e", "auto").await;
    alice
        .send(
            &Frame::new(Command::Subscribe)
                .header("destination", "/user/bob/queue/messages")
                .header("id", "spy")
                .header("receipt", "s"),
        )
        .await;
    let body = app_error(&alice.frame().await);
    assert_eq!(body["code"], "FORBIDDEN");
    assert_eq!(body["receiptId"], "s");
    alice.ping("open").await;
}

// ---------------------------------------------------------------------------------------------
// Claim rules: huge expiries, nbf, issuer, audience, leeway, and the Bearer scheme, each over
// STOMP and over REST.
// ---------------------------------------------------------------------------------------------

/// A broker with the REST API and `overrides`; these tests store nothing, so SQLite is enough.
async fn rest_broker(overrides: &[(&str, &str)]) -> (TestBroker, common::db::TestDatabase) {
    let database = common::db::sqlite();
    let broker = TestBroker::start_im(&database.url, overrides).await;
    (broker, database)
}

/// The status of a REST call made with `authorization` as the Authorization header.
async fn rest_status(broker: &TestBroker, authorization: &str) -> u16 {
    let (status, _) = common::im::http_raw(
        broker.http_addr(),
        "GET",
        "/api/v1/unread",
        &[("Authorization", authorization)],
        "",
    )
    .await;
    status
}

/// Whether CONNECT with `token` as passcode is accepted; a refusal must be a clean ERROR
/// `unauthorized` followed by the close, and an accepted session must answer a RECEIPT.
async fn stomp_accepts(broker: &TestBroker, token: &str) -> bool {
    let mut client = broker.ws_raw().await;
    let answer = client
        .connect_with(
            Command::Connect,
            &[("accept-version", "1.2"), ("passcode", token)],
        )
        .await;
    match answer.command {
        Command::Connected => {
            client.ping("alive").await;
            true
        }
        _ => {
            assert_eq!(answer.get("message"), Some("unauthorized"), "{answer:?}");
            client.expect_closed().await;
            false
        }
    }
}

/// Both transports agree: `true` when the token is accepted over STOMP and REST.
async fn accepted_over_both(broker: &TestBroker, token: &str) -> bool {
    let stomp = stomp_accepts(broker, token).await;
    let rest = rest_status(broker, &format!("Bearer {token}")).await;
    assert!(rest == 200 || rest == 401, "REST answered {rest}");
    assert_eq!(stomp, rest == 200, "STOMP and REST disagree on {token}");
    stomp
}

#[tokio::test]
async fn a_token_with_a_huge_exp_is_accepted_and_the_session_works() {
    let (broker, _db) = rest_broker(&[]).await;
    for exp in [serde_json::json!(i64::MAX), serde_json::json!(u64::MAX)] {
        let token = signed(&serde_json::json!({"sub": "alice", "exp": exp}));
        assert!(accepted_over_both(&broker, &token).await, "exp {exp}");
        // The connection's task is alive: it subscribes and answers.
        let mut client = broker.ws_token(&token).await;
        client.subscribe("/user/queue/alerts", "a", "auto").await;
        client.ping("still-alive").await;
    }
    let mut other = broker.ws("bob").await;
    other.ping("others-keep-working").await;
}

#[tokio::test]
async fn a_token_with_an_exp_beyond_any_integer_is_refused_cleanly() {
    let (broker, _db) = rest_broker(&[]).await;
    for exp in [
        serde_json::json!(1e300),
        serde_json::json!(-1),
        serde_json::json!("soon"),
    ] {
        let token = signed(&serde_json::json!({"sub": "alice", "exp": exp}));
        assert!(!accepted_over_both(&broker, &token).await, "exp {exp}");
    }
    let mut other = broker.ws("bob").await;
    other.ping("others-keep-working").await;
}

#[tokio::test]
async fn a_token_not_valid_before_a_future_time_is_refused() {
    let (broker, _db) = rest_broker(&[]).await;
    let early = signed(
        &serde_json::json!({"sub": "alice", "exp": now_secs() + 600, "nbf": now_secs() + 300}),
    );
    assert!(!accepted_over_both(&broker, &early).await);
    let due = signed(
        &serde_json::json!({"sub": "alice", "exp": now_secs() + 600, "nbf": now_secs() - 5}),
    );
    assert!(accepted_over_both(&broker, &due).await);
}

#[tokio::test]
async fn a_token_of_another_issuer_is_refused_when_an_issuer_is_configured() {
    let (broker, _db) = rest_broker(&[("BROKER_AUTH_ISSUER", "https://login.example")]).await;
    let exp = now_secs() + 600;
    let ours =
        signed(&serde_json::json!({"sub": "alice", "exp": exp, "iss": "https://login.example"}));
    assert!(accepted_over_both(&broker, &ours).await);
    let theirs =
        signed(&serde_json::json!({"sub": "alice", "exp": exp, "iss": "https://evil.example"}));
    assert!(!accepted_over_both(&broker, &theirs).await);
    let none = signed(&serde_json::json!({"sub": "alice", "exp": exp}));
    assert!(!accepted_over_both(&broker, &none).await);
    // Tokens the broker mints carry the configured issuer.
    assert!(accepted_over_both(&broker, &broker.token("alice")).await);
}

#[tokio::test]
async fn a_token_for_another_audience_is_refused_when_an_audience_is_configured() {
    let (broker, _db) = rest_broker(&[("BROKER_AUTH_AUDIENCE", "broker")]).await;
    let exp = now_secs() + 600;
    for aud in [
        serde_json::json!("broker"),
        serde_json::json!(["mail", "broker"]),
    ] {
        let token = signed(&serde_json::json!({"sub": "alice", "exp": exp, "aud": aud}));
        assert!(accepted_over_both(&broker, &token).await, "aud {aud}");
    }
    for aud in [
        serde_json::json!("mail"),
        serde_json::json!(["mail"]),
        serde_json::Value::Null,
    ] {
        let token = signed(&serde_json::json!({"sub": "alice", "exp": exp, "aud": aud}));
        assert!(!accepted_over_both(&broker, &token).await, "aud {aud}");
    }
    assert!(accepted_over_both(&broker, &broker.token("alice")).await);
}

#[tokio::test]
async fn a_token_with_an_aud_is_accepted_when_no_audience_is_configured() {
    let (broker, _db) = rest_broker(&[]).await;
    let exp = now_secs() + 600;
    for aud in [
        serde_json::json!("somebody-else"),
        serde_json::json!(["a", "b"]),
    ] {
        let token = signed(&serde_json::json!({"sub": "alice", "exp": exp, "aud": aud}));
        assert!(accepted_over_both(&broker, &token).await, "aud {aud}");
    }
}

#[tokio::test]
async fn leeway_accepts_a_token_that_expired_within_it_and_no_longer() {
    let (broker, _db) = rest_broker(&[("BROKER_AUTH_LEEWAY_S", "60")]).await;
    let now = now_secs();
    let lately = signed(&serde_json::json!({"sub": "alice", "exp": now - 5}));
    assert!(accepted_over_both(&broker, &lately).await);
    let early = signed(&serde_json::json!({"sub": "alice", "exp": now + 600, "nbf": now + 30}));
    assert!(accepted_over_both(&broker, &early).await);
    let long_ago = signed(&serde_json::json!({"sub": "alice", "exp": now - 120}));
    assert!(!accepted_over_both(&broker, &long_ago).await);
}

#[tokio::test]
async fn without_leeway_a_token_expired_a_second_ago_is_refused() {
    let (broker, _db) = rest_broker(&[]).await;
    let expired = signed(&serde_json::json!({"sub": "alice", "exp": now_secs() - 2}));
    assert!(!accepted_over_both(&broker, &expired).await);
}

#[tokio::test]
async fn the_bearer_scheme_is_accepted_in_any_case() {
    let (broker, _db) = rest_broker(&[]).await;
    let token = broker.token("alice");
    for scheme in ["Bearer", "bearer", "BEARER", "bEaReR"] {
        let value = format!("{scheme} {token}");
        let connected = connect_headers(&broker, &[("Authorization", &value)]).await;
        assert_eq!(connected.get("user-name"), Some("alice"), "{scheme}");
        assert_eq!(rest_status(&broker, &value).await, 200, "{scheme}");
    }
    assert_eq!(rest_status(&broker, &format!("Basic {token}")).await, 401);
}

//! Arbitrary bodies for every REST call that takes one, over HTTP/1.1 to a real broker in this
//! process (see `broker/mod.rs`). The first byte chooses the call; the rest is the body (for an
//! upload, the second byte chooses the declared content type). Checks that
//!
//! - nothing panics (a panic in any of the broker's tasks aborts the process);
//! - every request is answered within a bound, on a connection that stays usable;
//! - no answer is a 5xx other than 503 (bad input gets a 4xx, never a server fault), and every
//!   4xx carries the contract's JSON error body.

#![no_main]

#[path = "broker/mod.rs"]
mod broker;

use broker::{Rest, check_error_body, fixture};
use libfuzzer_sys::fuzz_target;
use std::sync::Mutex;

static CONNECTION: Mutex<Option<Rest>> = Mutex::new(None);

/// Who calls.
#[derive(Clone, Copy)]
enum Caller {
    Alice,
    System,
    Admin,
}

const UPLOAD_TYPES: [&str; 6] = [
    "image/png",
    "image/jpeg",
    "image/gif",
    "image/webp",
    "application/octet-stream",
    "text/plain",
];

fuzz_target!(|data: &[u8]| {
    let Some((&selector, body)) = data.split_first() else {
        return;
    };
    let fixture = fixture();
    let (group, message) = (&fixture.group, &fixture.message);
    let calls: [(&str, String, Caller); 16] = [
        ("POST", "/api/v1/conversations/private".into(), Caller::Alice),
        ("PATCH", "/api/v1/conversations/private_alice_bob/settings".into(), Caller::Alice),
        ("POST", "/api/v1/conversations/private_alice_bob/read".into(), Caller::Alice),
        ("PATCH", format!("/api/v1/conversations/{group}/settings"), Caller::Alice),
        ("POST", "/api/v1/messages".into(), Caller::Alice),
        ("POST", "/api/v1/messages/forward".into(), Caller::Alice),
        ("POST", format!("/api/v1/messages/{message}/recall"), Caller::Alice),
        ("POST", "/api/v1/groups".into(), Caller::Alice),
        ("PATCH", format!("/api/v1/groups/{group}"), Caller::Alice),
        ("POST", format!("/api/v1/groups/{group}/members"), Caller::Alice),
        ("PUT", format!("/api/v1/groups/{group}/members/bob/role"), Caller::Alice),
        ("POST", "/api/v1/notifications".into(), Caller::System),
        ("POST", "/api/v1/reports".into(), Caller::Alice),
        ("POST", "/api/v1/blocks/mallory".into(), Caller::Alice),
        ("DELETE", "/api/v1/admin/bans/alice".into(), Caller::Admin),
        ("POST", "/api/v1/files?name=fuzz".into(), Caller::Alice),
    ];
    let (method, path, caller) = &calls[usize::from(selector) % calls.len()];
    let (content_type, body) = if path.starts_with("/api/v1/files") {
        match body.split_first() {
            Some((&kind, rest)) => (UPLOAD_TYPES[usize::from(kind) % UPLOAD_TYPES.len()], rest),
            None => return,
        }
    } else {
        ("application/json", body)
    };
    let token = match caller {
        Caller::Alice => &fixture.alice,
        Caller::System => &fixture.system,
        Caller::Admin => &fixture.admin,
    };
    let mut connection = CONNECTION.lock().unwrap_or_else(|e| e.into_inner());
    let rest = connection.get_or_insert_with(|| Rest::new(fixture.http));
    fixture.runtime.block_on(async {
        let (status, answer) = rest.call(method, path, token, content_type, body).await;
        let context = format!("{method} {path} -> {status}");
        assert!(
            status < 500 || status == 503,
            "{context}: server fault for a request body: {answer}"
        );
        if (400..500).contains(&status) {
            check_error_body(&context, &answer);
        }
    });
});

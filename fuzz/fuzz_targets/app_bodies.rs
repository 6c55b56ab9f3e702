//! Arbitrary bodies SENT to every IM destination a client can SEND to, over STOMP/TCP to a real
//! broker in this process (see `broker/mod.rs`). The first byte chooses the destination and the
//! sender; the rest is the body. Checks that
//!
//! - nothing panics (a panic in any of the broker's tasks aborts the process);
//! - every SEND is answered, within a bound, by its RECEIPT or by an application error on the
//!   sender's `/user/queue/errors` naming its receipt, and never closes the session;
//! - an error body is JSON with a code and a message, and never `INTERNAL`.

#![no_main]

#[path = "broker/mod.rs"]
mod broker;

use broker::{Outcome, Stomp, check_error_body, fixture};
use libfuzzer_sys::fuzz_target;
use std::sync::Mutex;

/// The sessions, opened once: alice (user), ops (system).
static SESSIONS: Mutex<Option<(Stomp, Stomp)>> = Mutex::new(None);

fuzz_target!(|data: &[u8]| {
    let Some((&selector, body)) = data.split_first() else {
        return;
    };
    let fixture = fixture();
    let group_topic = format!("/topic/group.{}", fixture.group);
    let destinations = [
        "/app/private.send",
        "/app/group.send",
        "/app/assistant.send",
        "/app/message.read",
        "/app/message.recall",
        "/app/typing",
        group_topic.as_str(),
        "/user/bob/queue/notifications",
    ];
    let destination = destinations[usize::from(selector) % destinations.len()];
    let as_system = destination.starts_with("/user/");
    let mut sessions = SESSIONS.lock().unwrap_or_else(|e| e.into_inner());
    fixture.runtime.block_on(async {
        if sessions.is_none() {
            *sessions = Some((
                Stomp::connect(fixture.stomp, &fixture.alice).await,
                Stomp::connect(fixture.stomp, &fixture.system).await,
            ));
        }
        let Some((user, system)) = sessions.as_mut() else {
            return;
        };
        let session = if as_system { system } else { user };
        if let Outcome::Refused(error) = session.send(destination, body).await {
            check_error_body(destination, &error);
        }
    });
});

//! The CONNECT handshake of a connection: reading the first frame, negotiating the version and
//! the heart-beats, checking the token, and refusing a connection that never becomes a session.

use std::time::{Duration, SystemTime};

use bytes::BytesMut;
use stomp_codec::{Command, Decoded, Decoder, Frame, Version};

use super::SessionContext;
use super::fatal::{Fatal, transport_too_large};
use super::transport::{Inbound, Outbound};
use crate::auth::{AuthError, Identity};
use crate::config::HeartBeat;
use crate::metrics::{ErrorReason, Metrics};

/// Reads until the first frame; heart-beats before CONNECT are ignored.
pub(super) async fn read_connect<I: Inbound>(
    inbound: &mut I,
    decoder: &mut Decoder,
    buf: &mut BytesMut,
) -> Result<Option<Frame>, Fatal> {
    loop {
        while let Some(item) = decoder.decode(buf)? {
            match item {
                Decoded::HeartBeat => {}
                Decoded::Frame(frame) => {
                    Metrics::get().frame_in(frame.command);
                    return match frame.command {
                        Command::Connect | Command::Stomp => Ok(Some(frame)),
                        other => Err(Fatal::new(
                            ErrorReason::Unexpected,
                            "not connected",
                            format!("expected CONNECT or STOMP, got {other}"),
                        )
                        .with_receipt(&frame)),
                    };
                }
            }
        }
        match inbound.read(buf).await {
            Ok(true) => {}
            Err(error) if error.kind() == std::io::ErrorKind::FileTooLarge => {
                return Err(transport_too_large(&error));
            }
            Ok(false) | Err(_) => return Ok(None),
        }
    }
}

/// What CONNECT settled.
pub(super) struct Accepted {
    pub(super) identity: Identity,
    pub(super) version: Version,
    pub(super) outgoing_heartbeat: Option<Duration>,
    pub(super) incoming_heartbeat: Option<Duration>,
    pub(super) expires_at: SystemTime,
}

pub(super) fn accept(
    connect: &Frame,
    query_token: Option<&str>,
    context: &SessionContext,
) -> Result<Accepted, Box<(Fatal, Version)>> {
    let Some(version) = Version::negotiate(connect.get("accept-version")) else {
        let mut fatal = Fatal::new(
            ErrorReason::Unexpected,
            "unsupported version",
            "supported protocol versions are 1.0, 1.1 and 1.2",
        )
        .with_receipt(connect);
        fatal.extra = Some(("version", "1.0,1.1,1.2"));
        return Err(Box::new((fatal, Version::V1_2)));
    };
    let (client_send, client_expect) = match connect.get("heart-beat") {
        None => (0, 0),
        Some(value) => {
            let parsed: Option<HeartBeat> = value.parse().ok();
            match parsed {
                Some(hb) => (hb.send_ms, hb.expect_ms),
                None => {
                    return Err(Box::new((
                        Fatal::new(
                            ErrorReason::BadHeader,
                            "invalid heart-beat",
                            format!("heart-beat must be two numbers, got {value:?}"),
                        )
                        .with_receipt(connect),
                        version,
                    )));
                }
            }
        }
    };
    let token = connect
        .get("Authorization")
        .or_else(|| connect.get("authorization"))
        .map(|value| crate::auth::bearer_token(value).unwrap_or(value))
        .or_else(|| connect.get("passcode"))
        .or(query_token)
        .filter(|t| !t.trim().is_empty());
    let identity = token
        .ok_or(AuthError::MissingToken)
        .and_then(|t| context.auth.verify(t))
        .map_err(|error| {
            let mut fatal = Fatal::unauthorized(error.to_string()).with_receipt(connect);
            // The contract refuses a `sub` outside the user-id alphabet with INVALID_ARGUMENT.
            if matches!(error, AuthError::InvalidUserId(_)) {
                fatal.extra = Some(("code", "INVALID_ARGUMENT"));
            }
            Box::new((fatal, version))
        })?;
    let server = context.settings.heartbeat;
    let interval = |ours: u64, theirs: u64| {
        (ours > 0 && theirs > 0).then(|| Duration::from_millis(ours.max(theirs)))
    };
    Ok(Accepted {
        expires_at: identity.expires_at,
        identity,
        version,
        outgoing_heartbeat: interval(server.send_ms, client_expect),
        incoming_heartbeat: interval(server.expect_ms, client_send),
    })
}

/// Sends an ERROR on a connection that never became a session, then closes it.
pub(super) async fn refuse<O: Outbound>(outbound: &mut O, fatal: Fatal, version: Version) {
    Metrics::get().error(fatal.reason);
    Metrics::get().frames_out(Command::Error, 1);
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        outbound.write(fatal.encode(version)).await?;
        outbound.flush().await
    })
    .await;
    outbound.close(false).await;
}

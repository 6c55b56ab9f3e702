//! The writer task of a session: it owns the socket's sending half and drains the session's
//! outbound queue into it, encoding shared MESSAGE templates for this session as it goes, and
//! sends heart-beats when nothing else was written for the agreed interval.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use stomp_codec::{Command, Version};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::debug;

use super::fatal::Fatal;
use super::transport::Outbound;
use crate::delivery::mailbox::Queued;
use crate::delivery::{Delivery, Outgoing, SessionHandle, SlowReason};
use crate::metrics::{ErrorReason, Metrics};

/// Drains the outbound queue into the socket until a Close item or a cut. A session cut as a
/// slow consumer or ended by the broker's shutdown gets its ERROR from here, since its queue
/// takes nothing once the session is closed.
pub(super) async fn write_loop<O: Outbound>(
    mut outbound: O,
    handle: Arc<SessionHandle>,
    heartbeat: Option<Duration>,
    shutdown: CancellationToken,
) {
    write_until_closed(&mut outbound, &handle, heartbeat, &shutdown).await;
    handle.close_queue();
}

async fn write_until_closed<O: Outbound>(
    outbound: &mut O,
    handle: &Arc<SessionHandle>,
    heartbeat: Option<Duration>,
    shutdown: &CancellationToken,
) {
    let metrics = Metrics::get();
    let mut scratch = BytesMut::new();
    // A heart-beat is due one interval after the last write, whatever was written.
    let interval = heartbeat.unwrap_or(Duration::from_secs(3600));
    let idle = tokio::time::sleep(interval);
    tokio::pin!(idle);
    // Polled only while a write is blocked: the closing flag, checked per wake-up, is cheaper.
    let ending = handle.closed().clone().cancelled_owned();
    tokio::pin!(ending);
    loop {
        // The flag alone, not the token's mutex: a shutdown reaches it through the reader,
        // which closes the session when the token fires.
        if handle.is_closing() {
            let farewell = if let Some(reason) = handle.slow_reason() {
                let detail = match reason {
                    SlowReason::Outbound => "the connection did not read its messages fast enough",
                    SlowReason::Unacked => "the connection left too many messages unacknowledged",
                };
                Some(Fatal::new(
                    ErrorReason::SlowConsumer,
                    "slow consumer",
                    detail,
                ))
            } else if shutdown.is_cancelled() {
                Some(Fatal::new(
                    ErrorReason::Shutdown,
                    "server shutting down",
                    "the broker is shutting down; reconnect later",
                ))
            } else {
                None
            };
            // Boxed, like the close below: these run once, and inline they would make every
            // session's writer task larger for its whole life.
            if let Some(fatal) = farewell {
                metrics.error(fatal.reason);
                let _ = Box::pin(tokio::time::timeout(Duration::from_secs(1), async {
                    outbound.write(fatal.encode(handle.version)).await?;
                    outbound.flush().await
                }))
                .await;
            }
            Box::pin(outbound.close(shutdown.is_cancelled())).await;
            return;
        }
        tokio::select! {
            biased;
            () = handle.queued() => {
                // Dropped after the write: an idle session keeps no batch buffer.
                let mut batch = handle.take_queued();
                if batch.is_empty() {
                    continue;
                }
                let mut close = false;
                let written = tokio::select! {
                    biased;
                    written = write_batch(outbound, &mut batch, &mut scratch, handle.version, &mut close) => written,
                    () = &mut ending => continue,
                };
                match written {
                    Ok(bytes) => handle.written(bytes),
                    Err(error) => {
                        debug!(session = handle.id, %error, "write failed");
                        handle.close();
                        return;
                    }
                }
                idle.as_mut().reset(Instant::now() + interval);
                if close {
                    Box::pin(outbound.close(handle.is_closed())).await;
                    return;
                }
            }
            () = &mut idle, if heartbeat.is_some() => {
                let sent = tokio::select! {
                    biased;
                    sent = async {
                        outbound.write(Bytes::from_static(b"\n")).await?;
                        outbound.flush().await
                    } => sent,
                    () = &mut ending => continue,
                };
                if sent.is_err() {
                    handle.close();
                    return;
                }
                metrics.heartbeats_out.increment(1);
                idle.as_mut().reset(Instant::now() + interval);
            }
        }
    }
}

async fn write_batch<O: Outbound>(
    outbound: &mut O,
    batch: &mut VecDeque<Queued>,
    scratch: &mut BytesMut,
    version: Version,
    close: &mut bool,
) -> std::io::Result<usize> {
    let metrics = Metrics::get();
    let mut bytes = 0;
    let mut messages = 0;
    for (item, size) in batch.drain(..) {
        bytes += size;
        match item {
            Outgoing::Encoded { command, bytes } => {
                metrics.frames_out(command, 1);
                outbound.write(bytes).await?;
            }
            Outgoing::Message(delivery) => {
                let Delivery {
                    template,
                    subscription,
                    message_id,
                    ack,
                } = *delivery;
                template.encode_to(version, &subscription, &message_id, ack.as_deref(), scratch);
                messages += 1;
                outbound.write(scratch.split().freeze()).await?;
            }
            Outgoing::HeartBeat => outbound.write(Bytes::from_static(b"\n")).await?,
            Outgoing::Close => {
                *close = true;
                break;
            }
        }
    }
    batch.clear();
    metrics.frames_out(Command::Message, messages);
    outbound.flush().await?;
    Ok(bytes)
}

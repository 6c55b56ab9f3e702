//! A subscriber: counts and times every MESSAGE it receives, cheaply enough that a thousand of
//! them share two threads.

use std::sync::Arc;
use std::task::Poll;

use stomp_codec::Command;
use tokio::sync::watch;

use super::body::parse_body;
use crate::Errors;
use crate::client::{Connection, describe};
use crate::stats::{Flow, Latencies, now_ns};

/// What one subscriber received.
#[derive(Default)]
pub(super) struct Tally {
    pub(super) received: u64,
    pub(super) out_of_order: u64,
    /// When the last copy arrived ([`now_ns`]); 0 when none did.
    pub(super) last_receive: u64,
}

/// Frames a subscriber may count before it tells the flow, even while more keep arriving.
pub(super) const REPORT_EVERY: u64 = 32;

/// Counts and times what one subscriber receives until `stop` fires or the connection ends.
///
/// A thousand subscribers on a couple of threads share the flow's counter, the latency
/// histograms and the stop signal, so per frame this task only updates its own state: it tells
/// the flow what arrived when it has nothing left to read (or every [`REPORT_EVERY`] frames),
/// records latencies in batches, and looks at the stop signal only when it would wait.
pub(super) async fn consume(
    connection: Connection,
    who: usize,
    flow: Arc<Flow>,
    latencies: Arc<Latencies>,
    errors: Arc<Errors>,
    mut stop: watch::Receiver<bool>,
) -> Tally {
    // The writer is kept so the socket stays fully open while we read.
    let Connection { writer, mut reader } = connection;
    let mut tally = Tally::default();
    let mut unreported = 0u64;
    // Latencies are only read once every subscriber has stopped, so they can wait here.
    let mut samples = [0u64; 32];
    let mut sampled = 0;
    let mut next_seq = 0u64;
    let stopped = stop.changed();
    tokio::pin!(stopped);
    loop {
        let next = reader.next();
        tokio::pin!(next);
        let frame = std::future::poll_fn(|cx| {
            if let Poll::Ready(frame) = next.as_mut().poll(cx) {
                return Poll::Ready(Some(frame));
            }
            if unreported > 0 {
                flow.on_received(unreported);
                unreported = 0;
            }
            stopped.as_mut().poll(cx).map(|_| None)
        })
        .await;
        let Some(frame) = frame else { break };
        match frame {
            Ok(Some(frame)) if frame.command == Command::Message => {
                let now = now_ns();
                match parse_body(&frame.body) {
                    Some((seq, sent_at)) => {
                        samples[sampled] = now.saturating_sub(sent_at);
                        sampled += 1;
                        if sampled == samples.len() {
                            latencies.record_all(who, &samples);
                            sampled = 0;
                        }
                        if seq < next_seq {
                            tally.out_of_order += 1;
                        }
                        next_seq = next_seq.max(seq + 1);
                    }
                    None => errors.add(format!("subscriber {who}: unparsable body")),
                }
                tally.received += 1;
                tally.last_receive = now;
                unreported += 1;
                if unreported == REPORT_EVERY {
                    flow.on_received(unreported);
                    unreported = 0;
                }
            }
            Ok(Some(frame)) => {
                errors.add(format!("subscriber {who} got {}", describe(&frame)));
                if frame.command == Command::Error {
                    break;
                }
            }
            Ok(None) => {
                errors.add(format!("subscriber {who}: connection closed by the broker"));
                break;
            }
            Err(error) => {
                errors.add(format!("subscriber {who}: {error:#}"));
                break;
            }
        }
    }
    if unreported > 0 {
        flow.on_received(unreported);
    }
    latencies.record_all(who, &samples[..sampled]);
    drop(writer);
    tally
}

//! A publisher: SENDs at a fixed rate or within a window of copies in flight, with a RECEIPT
//! asked for every few messages and read by a task of its own.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use stomp_codec::{Command, Frame, Version, encode};

use super::Load;
use super::body::body;
use crate::Errors;
use crate::client::{Connection, Reader, Writer, describe};
use crate::stats::{Flow, now_ns};

/// Timing shared by all tasks of a run.
pub(super) struct Clock {
    pub(super) first_send: AtomicU64,
}

/// Publishes to `destination` per `load` until the duration is over; returns the number of
/// messages sent and the seconds spent publishing. The RECEIPTs are read by a task of their own.
pub(super) async fn publish(
    connection: Connection,
    destination: String,
    flow: Arc<Flow>,
    load: Load,
    clock: Arc<Clock>,
    errors: Arc<Errors>,
) -> (u64, f64) {
    let Connection { mut writer, reader } = connection;
    let receipts = tokio::spawn(read_receipts(reader, flow.clone(), errors.clone()));
    let started = Instant::now();
    let result = publish_loop(&mut writer, &destination, &flow, &load, &clock).await;
    let seconds = started.elapsed().as_secs_f64();
    if let Err(error) = &result {
        errors.add(format!("publisher: {error:#}"));
    }
    let sent = flow.sent.load(Ordering::Relaxed);
    // Every SEND that asked for a receipt has been processed once its RECEIPT is back; after
    // that, whatever is missing at the subscribers is in the broker's outbound queues or lost.
    let requested = sent / load.receipt_every.max(1);
    let deadline = tokio::time::sleep(load.drain.max(Duration::from_secs(1)));
    tokio::select! {
        () = flow.wait_until(|f| f.receipts.load(Ordering::Relaxed) >= requested) => {}
        () = deadline => errors.add(format!(
            "publisher: {} of {requested} receipts missing",
            requested.saturating_sub(flow.receipts.load(Ordering::Relaxed))
        )),
    }
    receipts.abort();
    drop(writer);
    (sent, seconds)
}

pub(super) async fn publish_loop(
    writer: &mut Writer,
    destination: &str,
    flow: &Flow,
    load: &Load,
    clock: &Clock,
) -> anyhow::Result<()> {
    let mut scratch = BytesMut::with_capacity(load.payload + 64);
    let mut wire = BytesMut::new();
    let every = load.receipt_every.max(1);
    let start = Instant::now();
    let _ = clock
        .first_send
        .compare_exchange(0, now_ns(), Ordering::Relaxed, Ordering::Relaxed);
    let mut seq = 0u64;
    // Bounded batches keep timestamps honest: a message is stamped right before it is written.
    const BATCH: u64 = 32;
    loop {
        let elapsed = start.elapsed();
        if elapsed >= load.duration {
            return Ok(());
        }
        let budget = if load.rate > 0.0 {
            let due = (elapsed.as_secs_f64() * load.rate) as u64 + 1;
            due.saturating_sub(seq).min(BATCH)
        } else {
            let window = load.window.max(1);
            let receipt_window = (window / every).max(2);
            let ready = |f: &Flow| {
                let sent = f.sent.load(Ordering::Relaxed);
                f.in_flight() < window
                    && (sent / every).saturating_sub(f.receipts.load(Ordering::Relaxed))
                        < receipt_window
            };
            let remaining = load.duration - elapsed;
            if tokio::time::timeout(remaining, flow.wait_until(ready))
                .await
                .is_err()
            {
                return Ok(());
            }
            (window - flow.in_flight().min(window)).clamp(1, BATCH)
        };
        for _ in 0..budget {
            let mut frame = Frame::new(Command::Send)
                .header("destination", destination)
                .header("content-type", "text/plain");
            if (seq + 1).is_multiple_of(every) {
                frame = frame.header("receipt", "r");
            }
            frame.body = body(seq, load.payload, &mut scratch);
            encode(&frame, Version::V1_2, &mut wire);
            writer.feed_bytes(wire.split().freeze()).await?;
            seq += 1;
            flow.sent.store(seq, Ordering::Relaxed);
        }
        writer.flush().await?;
        if load.rate > 0.0 {
            let next = start + Duration::from_secs_f64(seq as f64 / load.rate);
            tokio::time::sleep_until(next.into()).await;
        }
    }
}

pub(super) async fn read_receipts(mut reader: Reader, flow: Arc<Flow>, errors: Arc<Errors>) {
    loop {
        match reader.next().await {
            Ok(Some(frame)) if frame.command == Command::Receipt => flow.on_receipt(),
            Ok(Some(frame)) => {
                errors.add(format!("publisher got {}", describe(&frame)));
                if frame.command == Command::Error {
                    flow.kick();
                    return;
                }
            }
            Ok(None) => return,
            Err(error) => {
                errors.add(format!("publisher read: {error:#}"));
                return;
            }
        }
    }
}

//! What an IM sender writes: the SEND frames of `/app/private.send` or `/app/group.send`, at a
//! fixed rate or within a window of outstanding RECEIPTs (or deliveries), and the one greeting a recipient
//! sends before the run.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::bail;
use bytes::BytesMut;
use stomp_codec::{Command, Frame, Version, encode};

use super::session::Shared;
use super::{CloseOn, ImLoad};
use crate::client::{Connection, Writer, describe};
use crate::stats::{Flow, now_ns};

/// What a sender sends: the destination and the JSON body around the content.
pub(super) struct SendSpec {
    /// The sender's user id.
    pub(super) user: String,
    pub(super) destination: String,
    /// The body up to the content's opening quote, one per recipient (private) or the one of
    /// the group; message `n` uses `heads[n mod len]`, so a sender with K recipients goes
    /// round-robin over K conversations.
    pub(super) heads: Vec<String>,
    /// clientMsgIds are `<prefix><n>`.
    pub(super) client_prefix: String,
}

impl SendSpec {
    /// The JSON body of message `n`, its content stamped with `ts` and padded to `payload`.
    pub(super) fn body(&self, n: u64, ts: u64, payload: usize) -> String {
        let mut content = format!("{n} {ts} ");
        if content.len() < payload {
            content.extend(std::iter::repeat_n('x', payload - content.len()));
        }
        format!(
            "{}\"clientMsgId\":\"{}{n}\",\"format\":\"text\",\"content\":\"{content}\"}}",
            self.heads[(n % self.heads.len() as u64) as usize],
            self.client_prefix
        )
    }
}

/// Sends per `load` until the duration is over; `rate` is this sender's share, `phase` when
/// its first send is due (spreading senders over the first interval).
async fn send_loop(
    writer: &mut Writer,
    spec: &SendSpec,
    flow: &Flow,
    load: &ImLoad,
    rate: f64,
    phase: Duration,
    shared: &Shared,
) -> anyhow::Result<()> {
    let mut wire = BytesMut::new();
    let window = load.window.max(1);
    let start = Instant::now() + phase;
    tokio::time::sleep_until(start.into()).await;
    let _ = shared
        .first_send
        .compare_exchange(0, now_ns(), Ordering::Relaxed, Ordering::Relaxed);
    let start_ns = now_ns();
    let mut n = 0u64;
    // A sender writes at most this many SENDs per flush, so timestamps stay close to the write.
    const BATCH: u64 = 32;
    let close_on = load.close_on;
    let outstanding = move |f: &Flow| match close_on {
        CloseOn::Receipt => f
            .sent
            .load(Ordering::Relaxed)
            .saturating_sub(f.receipts.load(Ordering::Relaxed)),
        CloseOn::Delivery => f.in_flight(),
    };
    loop {
        let elapsed = start.elapsed();
        if elapsed >= load.duration {
            return Ok(());
        }
        let remaining = load.duration - elapsed;
        if tokio::time::timeout(remaining, flow.wait_until(|f| outstanding(f) < window))
            .await
            .is_err()
        {
            return Ok(());
        }
        let room = window - outstanding(flow).min(window);
        let budget = if rate > 0.0 {
            let due = (elapsed.as_secs_f64() * rate) as u64 + 1;
            due.saturating_sub(n).min(room).min(BATCH)
        } else {
            room.clamp(1, BATCH)
        };
        for _ in 0..budget {
            let ts = if rate > 0.0 {
                start_ns + (n as f64 / rate * 1e9) as u64
            } else {
                now_ns()
            };
            let mut frame = Frame::new(Command::Send)
                .header("destination", spec.destination.as_str())
                .header("content-type", "application/json")
                .header("receipt", n.to_string());
            frame.body = spec.body(n, ts, load.payload).into();
            encode(&frame, Version::V1_2, &mut wire);
            writer.feed_bytes(wire.split().freeze()).await?;
            n += 1;
            flow.sent.store(n, Ordering::Relaxed);
        }
        writer.flush().await?;
        if rate > 0.0 {
            let next = start + Duration::from_secs_f64(n as f64 / rate);
            tokio::time::sleep_until(next.into()).await;
        }
    }
}

/// One sender's run: sends, then waits for the outstanding RECEIPTs. Returns the seconds spent
/// sending.
pub(super) async fn sender(
    mut writer: Writer,
    spec: SendSpec,
    flow: Arc<Flow>,
    load: ImLoad,
    rate: f64,
    phase: Duration,
    shared: Arc<Shared>,
) -> (Writer, f64) {
    let started = Instant::now();
    let result = send_loop(&mut writer, &spec, &flow, &load, rate, phase, &shared).await;
    let seconds = started.elapsed().as_secs_f64();
    if let Err(error) = &result {
        shared.errors.add(format!("sender: {error:#}"));
    }
    (writer, seconds)
}
/// Sends one private message and waits for its RECEIPT. A recipient who has replied is no
/// longer a stranger to the sender, as in a real conversation; without it every send would
/// also go through the stranger checks, which a conversation passes once.
pub(super) async fn greet(connection: &mut Connection, body: &str) -> anyhow::Result<()> {
    let mut frame = Frame::new(Command::Send)
        .header("destination", "/app/private.send")
        .header("content-type", "application/json")
        .header("receipt", "greeting");
    frame.body = body.to_owned().into();
    connection.writer.send(&frame).await?;
    loop {
        match connection.reader.next().await? {
            Some(frame) if frame.command == Command::Receipt => return Ok(()),
            Some(frame)
                if frame.command == Command::Message && frame.get("subscription") != Some("e") => {}
            Some(frame) => bail!("greeting refused: {}", describe(&frame)),
            None => bail!("connection closed before the greeting's RECEIPT"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::im::session::parse_content;

    #[test]
    fn content_round_trips_and_pads() {
        let spec = SendSpec {
            user: "a".into(),
            destination: "/app/private.send".into(),
            heads: vec!["{\"to\":\"b\",".into(), "{\"to\":\"c\",".into()],
            client_prefix: "r-".into(),
        };
        let body = spec.body(42, 123_456, 40);
        let value: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(value["to"], "b");
        assert_eq!(value["clientMsgId"], "r-42");
        let content = value["content"].as_str().unwrap();
        assert_eq!(content.len(), 40);
        assert_eq!(parse_content(content), Some((42, 123_456)));
        let next: serde_json::Value = serde_json::from_str(&spec.body(43, 1, 40)).unwrap();
        assert_eq!(next["to"], "c");
    }
}

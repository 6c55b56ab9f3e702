//! Offline push: a message that reaches a user with no session anywhere in the cluster, in a
//! conversation they have not muted, is sent to a push gateway for their registered devices.
//!
//! Never on the send path: pushes wait in a bounded queue (new ones are dropped when it is
//! full) and one task sends them in batches, one request per batch, retried with backoff. Each
//! user gets at most `push.user_rate` pushes, so a busy group does not push every message.

use std::sync::Arc;
use std::time::Duration;

use schema::MessageRow;
use serde::Serialize;
use serde_json::{Value, json};
use tokio::sync::mpsc;

use super::Im;
use super::limits::Decision;
use crate::config::{PushConfig, PushProvider, Rate};
use crate::metrics::Metrics;
use crate::store::devices::DeviceRow;

/// The webhook's signature header.
pub const SIGNATURE_HEADER: &str = "x-broker-signature";

/// Characters of a message's text in its push.
const PREVIEW_CHARS: usize = 100;

/// How long the sender waits for more pushes to fill a batch.
const LINGER: Duration = Duration::from_millis(20);

/// `[push]`, as the dispatcher uses it.
#[derive(Clone, Debug)]
pub struct PushSettings {
    provider: PushProvider,
    url: String,
    secret: String,
    user_rate: Rate,
    queue_capacity: usize,
    batch_max: usize,
    attempts: u32,
    timeout: Duration,
    /// Devices per user.
    pub max_devices: usize,
}

impl PushSettings {
    /// Reads `[push]`.
    pub fn from_config(config: &PushConfig) -> PushSettings {
        PushSettings {
            provider: config.provider,
            url: config.url.clone().unwrap_or_default(),
            secret: config.secret.clone().unwrap_or_default(),
            user_rate: config.user_rate,
            queue_capacity: config.queue_capacity.max(1),
            batch_max: config.batch_max.max(1),
            attempts: config.attempts.max(1),
            timeout: Duration::from_millis(config.timeout_ms),
            max_devices: config.max_devices.max(1),
        }
    }
}

/// One push: a message for one user's devices.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Push {
    user_id: String,
    devices: Vec<Device>,
    title: String,
    body: String,
    conversation_id: String,
    message_id: String,
}

#[derive(Clone, Debug, Serialize)]
struct Device {
    platform: String,
    token: String,
}

/// The queue of pushes, and the task that sends them.
#[derive(Clone)]
pub(crate) struct Pusher {
    queue: Option<mpsc::Sender<Push>>,
    user_rate: Rate,
}

impl Pusher {
    /// Starts the sending task, unless `push.provider` is `none`.
    pub(crate) fn start(settings: &PushSettings) -> Pusher {
        if settings.provider == PushProvider::None {
            return Pusher {
                queue: None,
                user_rate: settings.user_rate,
            };
        }
        let (queue, pushes) = mpsc::channel(settings.queue_capacity);
        tokio::spawn(send_loop(pushes, settings.clone()));
        Pusher {
            queue: Some(queue),
            user_rate: settings.user_rate,
        }
    }

    fn enabled(&self) -> bool {
        self.queue.is_some()
    }

    fn offer(&self, push: Push) {
        let Some(queue) = &self.queue else { return };
        if queue.try_send(push).is_err() {
            Metrics::get().push_dropped.increment(1);
        }
    }
}

impl Im {
    /// Pushes `message` to those of its conversation's members (other than its sender, not
    /// having muted it unless it mentions them) who have devices and no session in the cluster. Runs in the background.
    pub(super) fn push_offline(&self, message: &Arc<MessageRow>) {
        if !self.inner.pusher.enabled() {
            return;
        }
        let im = self.clone();
        let message = Arc::clone(message);
        tokio::spawn(async move {
            let devices = match im
                .store()
                .push_devices(
                    &message.conversation_id,
                    &message.sender_id,
                    &super::json::mentioned_users(message.mentions.as_deref()),
                    super::json::mentions_all(message.mentions.as_deref()),
                )
                .await
            {
                Ok(devices) if !devices.is_empty() => devices,
                Ok(_) => return,
                Err(error) => {
                    tracing::warn!(%error, "offline push: devices not read");
                    return;
                }
            };
            let mut users: Vec<&str> = devices.iter().map(|d| d.user_id.as_str()).collect();
            users.sort_unstable();
            users.dedup();
            let presence = im.presence().lookup(&users).await;
            for entry in presence.iter().filter(|p| !p.online) {
                let user = entry.user_id.as_str();
                if let Decision::Deny { .. } = im
                    .inner
                    .limiter
                    .check(&format!("push:{user}"), im.inner.pusher.user_rate)
                    .await
                {
                    Metrics::get().push_dropped.increment(1);
                    continue;
                }
                im.inner.pusher.offer(push_of(&message, user, &devices));
            }
        });
    }
}

fn push_of(message: &MessageRow, user: &str, devices: &[DeviceRow]) -> Push {
    let body = match message.format.as_str() {
        "text" => message.content.chars().take(PREVIEW_CHARS).collect(),
        "card" => "[card]".to_owned(),
        other => format!("[{other}]"),
    };
    Push {
        user_id: user.to_owned(),
        devices: devices
            .iter()
            .filter(|d| d.user_id == user)
            .map(|d| Device {
                platform: d.platform.clone(),
                token: d.token.clone(),
            })
            .collect(),
        title: message.sender_id.clone(),
        body,
        conversation_id: message.conversation_id.clone(),
        message_id: message.id.to_string(),
    }
}

async fn send_loop(mut pushes: mpsc::Receiver<Push>, settings: PushSettings) {
    let client = match reqwest::Client::builder().timeout(settings.timeout).build() {
        Ok(client) => client,
        Err(error) => {
            tracing::error!(%error, "offline push: no HTTP client; pushes are dropped");
            return;
        }
    };
    while let Some(first) = pushes.recv().await {
        let mut batch = vec![first];
        let deadline = tokio::time::Instant::now() + LINGER;
        while batch.len() < settings.batch_max {
            match tokio::time::timeout_at(deadline, pushes.recv()).await {
                Ok(Some(push)) => batch.push(push),
                Ok(None) | Err(_) => break,
            }
        }
        let count = batch.len() as u64;
        if deliver(&client, &settings, &batch).await {
            Metrics::get().push_sent.increment(count);
        } else {
            Metrics::get().push_failed.increment(count);
        }
    }
}

/// Sends one batch, trying `push.attempts` times; whether the gateway took it.
async fn deliver(client: &reqwest::Client, settings: &PushSettings, batch: &[Push]) -> bool {
    let (url, body) = match settings.provider {
        PushProvider::None => return true,
        PushProvider::Gorush => (
            format!("{}/api/push", settings.url.trim_end_matches('/')),
            gorush_body(batch),
        ),
        PushProvider::Webhook => (settings.url.clone(), json!({"pushes": batch})),
    };
    let body = body.to_string();
    let signature = (settings.provider == PushProvider::Webhook).then(|| {
        format!(
            "sha256={}",
            hmac_hex(settings.secret.as_bytes(), body.as_bytes())
        )
    });
    for attempt in 0..settings.attempts {
        if attempt > 0 {
            tokio::time::sleep(Duration::from_millis(250 << (attempt - 1).min(5))).await;
        }
        let mut request = client
            .post(&url)
            .header("content-type", "application/json")
            .body(body.clone());
        if let Some(signature) = &signature {
            request = request.header(SIGNATURE_HEADER, signature);
        }
        match request.send().await {
            Ok(response) if response.status().is_success() => return true,
            Ok(response) => {
                tracing::warn!(status = %response.status(), attempt, "offline push refused");
            }
            // Without the URL, which may carry credentials.
            Err(error) => {
                tracing::warn!(error = %error.without_url(), attempt, "offline push failed")
            }
        }
    }
    false
}

/// The Gorush API's request: one notification per push and platform it has devices on; Gorush
/// takes iOS (1) and Android (2) tokens, so web tokens go only through the webhook.
fn gorush_body(batch: &[Push]) -> Value {
    let mut notifications = Vec::new();
    for push in batch {
        for (platform, code) in [("ios", 1), ("android", 2)] {
            let tokens: Vec<&str> = push
                .devices
                .iter()
                .filter(|d| d.platform == platform)
                .map(|d| d.token.as_str())
                .collect();
            if tokens.is_empty() {
                continue;
            }
            notifications.push(json!({
                "tokens": tokens,
                "platform": code,
                "title": push.title,
                "message": push.body,
                "data": {"conversationId": push.conversation_id, "messageId": push.message_id},
            }));
        }
    }
    json!({"notifications": notifications})
}

/// HMAC-SHA256 of `body` under `key`, in lowercase hex.
pub fn hmac_hex(key: &[u8], body: &[u8]) -> String {
    use hmac::{Hmac, Mac};
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(key).unwrap_or_else(|_| {
        // HMAC takes keys of any length; this arm is never taken.
        Hmac::<sha2::Sha256>::new_from_slice(b"").expect("an empty HMAC key")
    });
    mac.update(body);
    mac.finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_is_the_known_hmac() {
        // RFC 4231, test case 2.
        assert_eq!(
            hmac_hex(b"Jefe", b"what do ya want for nothing?"),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}

//! `[push]`: offline push to a gateway.

use serde::Deserialize;

use super::Rate;

/// `[push]`
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PushConfig {
    /// Where pushes go.
    pub provider: PushProvider,
    /// The gateway.
    #[serde(default)]
    pub url: Option<String>,
    /// The webhook's HMAC key.
    #[serde(default)]
    pub secret: Option<String>,
    /// Pushes per user.
    pub user_rate: Rate,
    /// Pushes waiting for the gateway.
    pub queue_capacity: usize,
    /// Pushes per request.
    pub batch_max: usize,
    /// Tries per request.
    pub attempts: u32,
    /// How long one request may take, in milliseconds.
    pub timeout_ms: u64,
    /// Devices per user.
    pub max_devices: usize,
}

/// `push.provider`.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum PushProvider {
    /// No pushes.
    None,
    /// The Gorush HTTP API.
    Gorush,
    /// A signed webhook.
    Webhook,
}

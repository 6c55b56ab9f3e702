//! The REST calls of the IM scenarios (creating the group, sending notifications), over a bare
//! HTTP/1.1 connection so that loadgen needs no HTTP client.

use std::time::Duration;

use crate::client::Target;

/// A JSON request to the broker's REST API with `token`; returns the status and the body
/// (`Null` when it is not JSON).
pub(super) async fn http_json(
    target: &Target,
    method: &str,
    path: &str,
    token: &str,
    body: &serde_json::Value,
    timeout: Duration,
) -> anyhow::Result<(u16, serde_json::Value)> {
    let authorization = format!("Bearer {token}");
    let (status, text) = crate::http::request(
        target.addr(),
        method,
        path,
        &[
            ("Authorization", &authorization),
            ("Content-Type", "application/json"),
        ],
        &body.to_string(),
        timeout,
    )
    .await?;
    let value = serde_json::from_str(&text).unwrap_or(serde_json::Value::Null);
    Ok((status, value))
}

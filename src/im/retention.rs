//! Message retention: the conversation-wide setting `messageRetentionDays` and the periodic
//! purge of messages older than it.
//!
//! The setting lives in the conversation's `settings` JSON. The purge deletes a prefix of each
//! such conversation's history (see [`crate::store::Store::purge_before`]), so seqs stay gapless
//! from the first message kept; it is idempotent, so every node of a cluster may run it.

use std::time::Duration;

use serde::{Deserialize, Deserializer};
use serde_json::{Map, Value};
use tokio_util::sync::CancellationToken;

use super::Im;
use crate::app_error::{AppError, ErrorCode};
use crate::auth::Identity;
use crate::domain::{ConversationKind, ConversationStatus, MemberRole};
use crate::metrics::Metrics;
use crate::util::now_ms;

/// The key in a conversation's settings JSON.
const KEY: &str = "messageRetentionDays";

/// The longest retention that can be set, in days (ten years).
pub const MAX_RETENTION_DAYS: i64 = 3650;

/// Messages deleted per transaction, so that a large backlog never holds locks for long.
const PURGE_CHUNK: i64 = 5000;

const DAY_MS: i64 = 86_400_000;

/// The retention in days of a conversation's settings JSON, if one is set.
pub fn retention_days(settings: &str) -> Option<i64> {
    serde_json::from_str::<Value>(settings)
        .ok()?
        .get(KEY)?
        .as_i64()
        .filter(|days| *days > 0)
}

/// Deserializes a field that may be absent (outer `None`), `null` (`Some(None)`) or a value.
/// Use with `#[serde(default, deserialize_with = "present")]`.
pub(crate) fn present<'de, D, T>(deserializer: D) -> Result<Option<Option<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(deserializer).map(Some)
}

impl Im {
    /// Sets (`Some(days)`) or clears (`None`) a conversation's `messageRetentionDays`. Either
    /// member of a private chat may set it; in a group only the owner or an admin. Returns the
    /// members to tell.
    ///
    /// # Errors
    ///
    /// `INVALID_ARGUMENT` outside 1 to [`MAX_RETENTION_DAYS`]; `NOT_FOUND`, `NOT_MEMBER`;
    /// `FORBIDDEN` for plain group members and for system and assistant conversations;
    /// `CONFLICT` for a dissolved group.
    pub async fn set_retention(
        &self,
        caller: &Identity,
        conversation: &str,
        days: Option<i64>,
    ) -> Result<Vec<String>, AppError> {
        if let Some(days) = days
            && !(1..=MAX_RETENTION_DAYS).contains(&days)
        {
            return Err(AppError::invalid(format!(
                "{KEY} must be 1 to {MAX_RETENTION_DAYS}, or null to keep messages forever"
            )));
        }
        let (row, member) = self
            .membership(&super::conversation_id(conversation)?, &caller.user_id)
            .await?;
        match row.kind.parse() {
            Ok(ConversationKind::Private) => {}
            Ok(ConversationKind::Group) => {
                if row.status.parse() != Ok(ConversationStatus::Active) {
                    return Err(AppError::new(
                        ErrorCode::Conflict,
                        format!("{conversation} is {}", row.status),
                    ));
                }
                if !member.role.parse().is_ok_and(MemberRole::manages) {
                    return Err(AppError::forbidden(
                        "only the owner or an admin may set the group's retention",
                    ));
                }
            }
            _ => {
                return Err(AppError::forbidden(format!(
                    "{KEY} cannot be set on {} conversations",
                    row.kind
                )));
            }
        }
        let mut settings = match serde_json::from_str::<Value>(&row.settings) {
            Ok(Value::Object(map)) => map,
            _ => Map::new(),
        };
        match days {
            Some(days) => settings.insert(KEY.to_owned(), Value::from(days)),
            None => settings.remove(KEY),
        };
        self.store()
            .set_conversation_settings(conversation, &Value::Object(settings).to_string())
            .await?;
        self.audience(conversation).await
    }

    /// Purges, in every conversation with a retention, the messages older than it (as of
    /// `now`, epoch ms). Returns how many messages went.
    ///
    /// # Errors
    ///
    /// `UNAVAILABLE` when the database fails; what was purged before the failure stays purged.
    pub async fn purge_expired(&self, now: i64) -> Result<usize, AppError> {
        let conversations = self.store().retention_settings().await?;
        let mut total = 0;
        for (conversation, settings) in conversations {
            let Some(days) = retention_days(&settings) else {
                continue;
            };
            let before = now.saturating_sub(days.saturating_mul(DAY_MS));
            loop {
                let purged = self
                    .store()
                    .purge_before(&conversation, before, PURGE_CHUNK)
                    .await?;
                total += purged;
                Metrics::get()
                    .messages_purged
                    .increment(u64::try_from(purged).unwrap_or(0));
                if i64::try_from(purged).unwrap_or(i64::MAX) < PURGE_CHUNK {
                    break;
                }
            }
        }
        Ok(total)
    }
}

/// Runs [`Im::purge_expired`] every `interval` until `shutdown`.
pub async fn run_purge(im: Im, interval: Duration, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        match im.purge_expired(now_ms()).await {
            Ok(0) => {}
            Ok(purged) => tracing::info!(purged, "purged messages past their retention"),
            Err(error) => tracing::warn!(%error, "retention purge failed; retrying next time"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retention_is_read_from_the_settings_json() {
        assert_eq!(retention_days(r#"{"messageRetentionDays": 30}"#), Some(30));
        assert_eq!(retention_days("{}"), None);
        assert_eq!(retention_days(r#"{"messageRetentionDays": 0}"#), None);
        assert_eq!(retention_days(r#"{"messageRetentionDays": "30"}"#), None);
        assert_eq!(retention_days("not json"), None);
    }

    #[test]
    fn absent_null_and_values_are_told_apart() {
        #[derive(Deserialize)]
        struct Body {
            #[serde(default, deserialize_with = "present")]
            days: Option<Option<i64>>,
        }
        let parse = |text: &str| serde_json::from_str::<Body>(text).map(|b| b.days).ok();
        assert_eq!(parse("{}"), Some(None));
        assert_eq!(parse(r#"{"days": null}"#), Some(Some(None)));
        assert_eq!(parse(r#"{"days": 7}"#), Some(Some(Some(7))));
        assert_eq!(parse(r#"{"days": "7"}"#), None);
    }
}

//! Per-user upload limits: a count rate (`limits.upload_rate`) and a byte quota over any 24
//! hours (`files.quota_bytes_per_day`), both counted by the IM layer's rate limiter, so
//! cluster-wide when Redis is configured. An upload is admitted or refused on its head, before
//! its body is read: by its `Content-Length` when it has one; without one, it is refused only
//! when nothing is left, and its size is counted once it has been read.

use std::time::Duration;

use super::limits::{Decision, RateLimiter};
use crate::app_error::{AppError, ErrorCode};
use crate::files::FilesSettings;

/// The window of `files.quota_bytes_per_day`.
const DAY: Duration = Duration::from_secs(86_400);

fn rate_limited(what: String, retry_after: Duration) -> AppError {
    AppError::new(
        ErrorCode::RateLimited,
        format!("{what}; retry in {} ms", retry_after.as_millis()),
    )
}

/// Counts an upload of `user` announcing `length` bytes (when it does) against the rate and
/// the quota.
///
/// # Errors
///
/// `RATE_LIMITED` past either limit.
pub(super) async fn admit(
    limiter: &dyn RateLimiter,
    settings: &FilesSettings,
    user: &str,
    length: Option<u64>,
) -> Result<(), AppError> {
    let rate = settings.upload_rate;
    if let Decision::Deny { retry_after } = limiter.check(&format!("upload:{user}"), rate).await {
        return Err(rate_limited(
            format!("more than {} uploads in {:?}", rate.count, rate.per),
            retry_after,
        ));
    }
    charge(limiter, settings, user, length.unwrap_or(0)).await
}

/// Counts `bytes` uploaded by `user` against the quota.
///
/// # Errors
///
/// `RATE_LIMITED` when they do not fit.
pub(super) async fn charge(
    limiter: &dyn RateLimiter,
    settings: &FilesSettings,
    user: &str,
    bytes: u64,
) -> Result<(), AppError> {
    let quota = settings.quota_bytes_per_day;
    let key = format!("upload-bytes:{user}");
    match limiter.check_weighted(&key, bytes, quota, DAY).await {
        Decision::Allow => Ok(()),
        Decision::Deny { retry_after } => Err(rate_limited(
            format!("uploads over {quota} bytes in 24 hours"),
            retry_after,
        )),
    }
}

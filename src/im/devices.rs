//! The caller's devices for offline push (see [`super::push`]).

use serde::{Deserialize, Serialize};

use super::Im;
use crate::app_error::{AppError, ErrorCode};
use crate::auth::Identity;
use crate::store::devices::DeviceRow;
use crate::util::now_ms;

/// Characters of a push token.
const TOKEN_MAX_CHARS: usize = 512;

/// `POST /api/v1/devices`.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeviceRequest {
    /// The push token the device's platform gave it.
    pub token: String,
    /// `ios`, `android` or `web`.
    pub platform: String,
}

/// A registered device.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DeviceJson {
    /// The push token.
    pub token: String,
    /// `ios`, `android` or `web`.
    pub platform: String,
    /// When it was registered.
    pub created_at: i64,
}

impl Im {
    /// Registers a device of the caller; at most `push.max_devices` are kept per user, the
    /// ones registered longest ago go.
    ///
    /// # Errors
    ///
    /// `INVALID_ARGUMENT`, `UNAVAILABLE`.
    pub async fn register_device(
        &self,
        caller: &Identity,
        request: DeviceRequest,
    ) -> Result<DeviceJson, AppError> {
        let token = request.token.trim();
        if token.is_empty()
            || token.chars().count() > TOKEN_MAX_CHARS
            || token.chars().any(char::is_control)
        {
            return Err(AppError::invalid(format!(
                "token must be 1 to {TOKEN_MAX_CHARS} printable characters"
            )));
        }
        if !["ios", "android", "web"].contains(&request.platform.as_str()) {
            return Err(AppError::invalid("platform must be ios, android or web"));
        }
        let row = DeviceRow {
            user_id: caller.user_id.clone(),
            token: token.to_owned(),
            platform: request.platform,
            created_at: now_ms(),
        };
        self.store()
            .add_device(&row, self.settings().push.max_devices)
            .await?;
        Ok(DeviceJson {
            token: row.token,
            platform: row.platform,
            created_at: row.created_at,
        })
    }

    /// Forgets one of the caller's devices.
    ///
    /// # Errors
    ///
    /// `NOT_FOUND` when the caller has no such device, `UNAVAILABLE`.
    pub async fn remove_device(&self, caller: &Identity, token: &str) -> Result<(), AppError> {
        if self.store().remove_device(&caller.user_id, token).await? {
            Ok(())
        } else {
            Err(AppError::new(ErrorCode::NotFound, "no such device"))
        }
    }
}

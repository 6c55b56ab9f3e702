//! `POST /notifications`: system notifications, role `system`.

use axum::extract::{Request, State};
use serde_json::json;

use super::ApiState;
use super::extract::{Caller, read_json};
use super::reply::{ApiResult, created};
use crate::im::json::{MessageJson, NotificationRequest};
use crate::im::notify::may_notify;

/// The handler. A caller without role `system` is refused before its body is read.
pub(super) async fn notify(
    State(state): State<ApiState>,
    Caller(caller): Caller,
    request: Request,
) -> ApiResult {
    may_notify(&caller)?;
    let request: NotificationRequest = read_json(request.into_body(), usize::MAX).await?;
    let messages = state.im.notify_many(&caller, &request).await;
    crate::metrics::Metrics::get().send(
        crate::metrics::SendSource::Rest,
        messages.as_ref().map(drop).map_err(|e| e.code),
    );
    let messages = messages?;
    let items: Vec<MessageJson> = messages.iter().map(MessageJson::from).collect();
    created(json!({"items": items}))
}

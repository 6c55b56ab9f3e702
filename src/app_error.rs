//! Application errors of the contract (section 7): a code, a message, and the ids that let a
//! client match the error to what it sent. They are not STOMP errors: over STOMP they go to the
//! sender's `/user/queue/errors` and the connection stays open; over REST they are the JSON body
//! of the response with the code's status.

use serde::Serialize;

/// The error codes of the contract, each with its HTTP status.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ErrorCode {
    /// 401: no or a bad token.
    Unauthorized,
    /// 403: not allowed.
    Forbidden,
    /// 404: no such thing.
    NotFound,
    /// 403: not a member of the conversation.
    NotMember,
    /// 400: malformed or missing input.
    InvalidArgument,
    /// 400: text over the limit.
    ContentTooLong,
    /// 413: upload over the limit.
    PayloadTooLarge,
    /// 429: send rate exceeded.
    RateLimited,
    /// 429: too many messages to someone who never replied.
    StrangerLimit,
    /// 403: the recipient blocked the sender.
    Blocked,
    /// 403: private messages need the two users to be contacts (`im.private_policy`).
    NotContact,
    /// 403: the sender is banned.
    Banned,
    /// 400: sensitive words.
    SensitiveContent,
    /// 409: too late to recall.
    RecallWindowExpired,
    /// 409: too late to edit.
    EditWindowExpired,
    /// 409: the group has no room.
    GroupFull,
    /// 409: the state does not allow it.
    Conflict,
    /// 503: a dependency is down or a buffer is full.
    Unavailable,
    /// 500: a bug or an unexpected failure.
    Internal,
    /// 408: the request body did not arrive within `server.request_timeout_ms`.
    RequestTimeout,
    /// 405: the REST endpoint exists but does not take the request's method.
    MethodNotAllowed,
}

impl ErrorCode {
    /// Every code, in the order of the contract.
    pub const ALL: [ErrorCode; 21] = [
        ErrorCode::Unauthorized,
        ErrorCode::Forbidden,
        ErrorCode::NotFound,
        ErrorCode::NotMember,
        ErrorCode::InvalidArgument,
        ErrorCode::ContentTooLong,
        ErrorCode::PayloadTooLarge,
        ErrorCode::RateLimited,
        ErrorCode::StrangerLimit,
        ErrorCode::Blocked,
        ErrorCode::NotContact,
        ErrorCode::Banned,
        ErrorCode::SensitiveContent,
        ErrorCode::RecallWindowExpired,
        ErrorCode::EditWindowExpired,
        ErrorCode::GroupFull,
        ErrorCode::Conflict,
        ErrorCode::Unavailable,
        ErrorCode::Internal,
        ErrorCode::RequestTimeout,
        ErrorCode::MethodNotAllowed,
    ];

    /// The code as the contract spells it (`NOT_FOUND`).
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::Unauthorized => "UNAUTHORIZED",
            ErrorCode::Forbidden => "FORBIDDEN",
            ErrorCode::NotFound => "NOT_FOUND",
            ErrorCode::NotMember => "NOT_MEMBER",
            ErrorCode::InvalidArgument => "INVALID_ARGUMENT",
            ErrorCode::ContentTooLong => "CONTENT_TOO_LONG",
            ErrorCode::PayloadTooLarge => "PAYLOAD_TOO_LARGE",
            ErrorCode::RateLimited => "RATE_LIMITED",
            ErrorCode::StrangerLimit => "STRANGER_LIMIT",
            ErrorCode::Blocked => "BLOCKED",
            ErrorCode::NotContact => "NOT_CONTACT",
            ErrorCode::Banned => "BANNED",
            ErrorCode::SensitiveContent => "SENSITIVE_CONTENT",
            ErrorCode::RecallWindowExpired => "RECALL_WINDOW_EXPIRED",
            ErrorCode::EditWindowExpired => "EDIT_WINDOW_EXPIRED",
            ErrorCode::GroupFull => "GROUP_FULL",
            ErrorCode::Conflict => "CONFLICT",
            ErrorCode::Unavailable => "UNAVAILABLE",
            ErrorCode::Internal => "INTERNAL",
            ErrorCode::RequestTimeout => "REQUEST_TIMEOUT",
            ErrorCode::MethodNotAllowed => "METHOD_NOT_ALLOWED",
        }
    }

    /// The HTTP status of the code.
    pub fn http_status(self) -> u16 {
        match self {
            ErrorCode::Unauthorized => 401,
            ErrorCode::Forbidden
            | ErrorCode::NotMember
            | ErrorCode::Blocked
            | ErrorCode::NotContact
            | ErrorCode::Banned => 403,
            ErrorCode::NotFound => 404,
            ErrorCode::InvalidArgument
            | ErrorCode::ContentTooLong
            | ErrorCode::SensitiveContent => 400,
            ErrorCode::PayloadTooLarge => 413,
            ErrorCode::RateLimited | ErrorCode::StrangerLimit => 429,
            ErrorCode::RecallWindowExpired
            | ErrorCode::EditWindowExpired
            | ErrorCode::GroupFull
            | ErrorCode::Conflict => 409,
            ErrorCode::Unavailable => 503,
            ErrorCode::Internal => 500,
            ErrorCode::RequestTimeout => 408,
            ErrorCode::MethodNotAllowed => 405,
        }
    }
}

/// An application error, as sent to the client.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, thiserror::Error)]
#[serde(rename_all = "camelCase")]
#[error("{code:?}: {message}")]
pub struct AppError {
    /// What went wrong, as a contract code.
    pub code: ErrorCode,
    /// A short human-readable explanation.
    pub message: String,
    /// The `clientMsgId` of the send that failed, when there was one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_msg_id: Option<String>,
    /// The `receipt` of the STOMP frame that failed, when it had one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub receipt_id: Option<String>,
}

impl AppError {
    /// An error with a code and a message.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> AppError {
        AppError {
            code,
            message: message.into(),
            client_msg_id: None,
            receipt_id: None,
        }
    }

    /// Shorthand for [`ErrorCode::Forbidden`].
    pub fn forbidden(message: impl Into<String>) -> AppError {
        AppError::new(ErrorCode::Forbidden, message)
    }

    /// Shorthand for [`ErrorCode::InvalidArgument`].
    pub fn invalid(message: impl Into<String>) -> AppError {
        AppError::new(ErrorCode::InvalidArgument, message)
    }

    /// The JSON body.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|_| {
            format!(
                r#"{{"code":"INTERNAL","message":"{}"}}"#,
                "unserialisable error"
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_is_spelt_as_it_serialises() {
        for code in ErrorCode::ALL {
            let json = serde_json::to_string(&code).unwrap();
            assert_eq!(json, format!("\"{}\"", code.as_str()));
        }
    }
}

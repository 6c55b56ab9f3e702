//! Why the hub could not register a session or a subscription.

use super::queue_backend::QueueError;
use super::relay::RelayError;

/// Why a subscription could not be registered.
#[derive(Debug, thiserror::Error)]
pub enum SubscribeError {
    /// The session already has a subscription with this id.
    #[error("subscription id {0} is already in use")]
    IdInUse(String),
    /// The session holds its maximum of subscriptions.
    #[error("too many subscriptions")]
    TooMany,
    /// The relay could not declare the interest.
    #[error(transparent)]
    Relay(#[from] RelayError),
    /// The queue cannot be consumed (cluster mode: RabbitMQ refused or is away).
    #[error(transparent)]
    Queue(#[from] QueueError),
}

/// Why a session could not be registered.
#[derive(Debug, thiserror::Error)]
pub enum AddSessionError {
    /// The user has `max_sessions_per_user` sessions open on this node already.
    #[error("user {user} already has {max} sessions open")]
    TooMany {
        /// The user id.
        user: String,
        /// The configured limit.
        max: usize,
    },
    /// The relay could not declare the user's interest.
    #[error(transparent)]
    Relay(#[from] RelayError),
}

//! The RabbitMQ side of cluster mode: implementations of the seams that the hub owns (the
//! [`crate::hub::Relay`] between nodes in [`amqp`], the [`crate::hub::QueueBackend`] of generic
//! queues in [`queues`]), the wire format between nodes ([`envelope`]) and the publisher of
//! store events ([`events`]). Everything here depends on the hub; the hub never on this.

pub mod amqp;
pub mod envelope;
pub mod events;
pub mod queues;
pub mod supervisor;

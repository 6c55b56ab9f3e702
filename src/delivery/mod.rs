//! The vocabulary of delivery that the session, the router, the hub, the queues and the relay
//! all speak: a session's mailbox ([`SessionHandle`], its bounded outbound queue and its ledger
//! of unacknowledged deliveries), ack modes and what an ACK acts on, and where publications go
//! ([`Route`], [`Interest`]).
//!
//! It sits below all of them and imports none of them (only `auth` for who is connected,
//! `metrics` and `util`), so that dependencies can point one way: session → router → hub →
//! delivery, with the RabbitMQ relay above the hub.

pub mod ack;
pub mod ledger;
pub mod mailbox;
pub mod route;

pub(crate) use ack::settle_targets;
pub use ack::{AckHook, AckMode, AckTarget, Lender};
pub use ledger::UnackedLimits;
pub use mailbox::{
    Delivery, Outgoing, SessionHandle, SessionLimits, SessionOrigin, SlowReason, Transport,
};
pub use route::{Interest, Route};

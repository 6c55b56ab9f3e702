//! broker: an instant-messaging broker that speaks STOMP over WebSocket.
//!
//! The binary is a thin shell over [`server::Server`]; tests start the same server in-process.
//! Dependencies point one way: each module imports only modules below it in this list.
//!
//! ```text
//! server      start and shutdown; server/backends.rs picks every seam's implementation
//! http        routes on hyper, the WebSocket upgrade, health, metrics, the web client
//! api         REST: one route table, handlers that call `im`
//! im          the chat domain, plugged into the router's extension points
//! files       file objects, image decoding, download headers
//! relay       RabbitMQ implementations of the hub's seams, the events publisher
//! session     one STOMP connection: handshake, frames, writer
//! router      destinations, ACL, extension points
//! hub         sessions, subscriptions, fan-out; owns the Relay and QueueBackend seams
//! store       persistence
//! ordering    push order of local commits, cross-node topic sequencing
//! delivery    a session's mailbox, the ack vocabulary, routes
//! domain      conversation ids, kinds, roles and statuses as types
//! auth, config, metrics, app_error, redact, util, ...   leaves any layer may use
//! ```
//!
//! `relay` implements the hub's traits and hands what other nodes publish to
//! [`hub::Hub::deliver_local`]; the hub never names it. There is no import cycle between these
//! modules, nor between the files of one; `docs/architecture.md` walks a message through them.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod api;
pub mod app_error;
pub mod auth;
pub mod config;
pub mod delivery;
pub mod domain;
pub mod files;
pub mod http;
pub mod http_guard;
pub mod hub;
pub mod im;
pub mod metrics;
pub mod ordering;
pub mod os;
pub mod per_ip;
pub mod private_fs;
pub mod redact;
pub mod relay;
pub mod router;
pub mod server;
pub mod session;
pub mod store;
pub mod tls;
pub mod util;

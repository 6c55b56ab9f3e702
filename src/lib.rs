//! broker: an instant-messaging broker that speaks STOMP over WebSocket.
//!
//! The binary is a thin shell over [`server::Server`]; tests start the same server in-process.
//! Dependencies point one way: each module imports only modules below it in this list.
//!
//! ```text
//! server      start and shutdown; picks the in-process or RabbitMQ implementation of each seam
//! http        routes on hyper, the WebSocket upgrade
//! im, files   the chat domain and its files, plugged into the router's extension points
//! session     one STOMP connection: handshake, frames, writer
//! router      destinations, ACL, extension points
//! relay       RabbitMQ implementations of the hub's seams, the store events publisher
//! hub         sessions, subscriptions, fan-out; owns the Relay and QueueBackend seams
//! delivery    a session's mailbox, the ack vocabulary, routes
//! store       persistence
//! auth, config, metrics, app_error, redact, util, ...   leaves any layer may use
//! ```
//!
//! `relay` implements the hub's traits and hands what other nodes publish to
//! [`hub::Hub::deliver_local`]; the hub never names it. (`im` and `files` still import each
//! other; that knot is theirs to untie.)

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
pub mod util;

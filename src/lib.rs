//! broker: an instant-messaging broker that speaks STOMP over WebSocket.
//!
//! The binary is a thin shell over [`server::Server`]; tests start the same server in-process.
//! Layers point one way: `session` (one connection) → `router` (destinations, extension
//! points) → `hub` (subscriptions, fan-out) → `relay` (other nodes).

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod api;
pub mod app_error;
pub mod auth;
pub mod config;
pub mod files;
pub mod http;
pub mod http_guard;
pub mod hub;
pub mod im;
pub mod metrics;
pub mod os;
pub mod per_ip;
pub mod private_fs;
pub mod redact;
pub mod relay;
pub mod router;
pub mod server;
pub mod session;
pub mod store;

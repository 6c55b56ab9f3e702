//! The integration tests, compiled as one test binary (one link instead of one per file). Each
//! module is one area of behaviour; its tests start the real broker in this process on port 0
//! (or cluster nodes as child processes) and talk to it over real sockets, as a client would.
//!
//! Run one area with `cargo test --test integration <module>::`, for example
//! `cargo test --test integration acks::`.
//!
//! Everything here shares one process: the metrics recorder is process-wide (tests compare a
//! series before and after, never its absolute value), and no test may change the process's
//! environment, working directory or limits.

mod common;

mod acks;
mod action_limits;
mod admin_sessions;
mod announcements;
mod attachments;
mod auth;
mod bounds;
mod cluster;
mod cluster_faults;
mod cluster_limits;
mod cluster_message_changes;
mod cluster_queues;
mod config;
mod connect;
mod contacts;
mod crash;
mod errors;
mod files;
mod forward;
mod framing;
mod heartbeat;
mod http;
mod im_assistant;
mod im_delivery;
mod im_group_reads;
mod im_group_settings;
mod im_groups;
mod im_housekeeping;
mod im_mentions;
mod im_message_changes;
mod im_notifications;
mod im_oracle;
mod im_presence;
mod im_private;
mod im_properties;
mod im_read;
mod im_read_on_send;
mod im_recall;
mod im_rest;
mod im_retention;
mod im_send;
mod im_stomp_errors;
mod limits;
mod metrics;
mod pipelining;
mod push;
mod receipts;
mod reports;
mod resume;
mod resume_private;
mod safety_limits;
mod search;
mod shutdown;
mod slow_consumer;
mod stomp_core;
mod store;
mod subscriptions;
mod tcp;
mod tls;
mod transactions;
mod web;

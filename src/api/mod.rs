//! The REST API under `/api/v1` (contract section 6): an adapter over the IM layer.
//!
//! [`routes`] is the one table of every endpoint. Each handler, in the file of its resource,
//! only translates: it takes the caller ([`extract::Caller`]), the path, the query and the body
//! ([`extract::Json`]), calls one method of [`Im`], and turns its answer into a status and a
//! JSON body. Rules (who may do what, what is valid, what is visible) live in `crate::im`, once,
//! for STOMP and REST alike. Every answer that is not 2xx carries the contract's JSON error body
//! (see [`reply`]), also for unknown paths (404 `NOT_FOUND`) and wrong methods (405
//! `METHOD_NOT_ALLOWED`).
//!
//! Layers: `http` nests this router; this module uses `im`, `files`, `auth` and `app_error`,
//! and nothing below it uses this module.

mod announcements;
mod assistant;
mod blocks;
mod contacts;
mod conversations;
mod dev;
mod devices;
pub mod extract;
mod files;
mod groups;
mod message_changes;
mod messages;
mod notifications;
mod presence;
pub mod reply;
mod reports;
mod search;

use std::sync::Arc;

use axum::Router;
use axum::routing::{delete, get, patch, post, put};

use crate::app_error::{AppError, ErrorCode};
use crate::auth::Authenticator;
use crate::im::Im;

/// What the REST handlers share.
#[derive(Clone)]
pub struct ApiState {
    /// The IM service.
    pub im: Im,
    /// Token verification.
    pub auth: Arc<Authenticator>,
    /// Whether `POST /dev/token` mints tokens (`auth.dev_login`); 404 otherwise.
    pub dev_login: bool,
}

/// Every endpoint of the REST API, to be nested under `/api/v1`.
pub fn routes(state: ApiState) -> Router {
    Router::new()
        // Conversations.
        .route("/conversations", get(conversations::list))
        .route("/conversations/private", post(conversations::private))
        .route("/conversations/{id}", get(conversations::one))
        .route(
            "/conversations/{id}/settings",
            patch(conversations::settings),
        )
        .route("/conversations/{id}/messages", get(conversations::history))
        .route("/conversations/{id}/read", post(conversations::read))
        .route("/conversations/{id}/clear", post(conversations::clear))
        .route("/unread", get(conversations::unread))
        // Messages.
        .route("/messages", post(messages::send))
        .route("/messages/forward", post(messages::forward))
        .route("/messages/{id}/recall", post(messages::recall))
        .route("/messages/{id}/readers", get(messages::readers))
        .route(
            "/messages/{id}",
            get(messages::one)
                .delete(messages::delete)
                .patch(message_changes::edit),
        )
        .route("/messages/{id}/reactions", post(message_changes::react))
        .route(
            "/messages/{id}/pin",
            put(message_changes::pin).delete(message_changes::unpin),
        )
        .route("/conversations/{id}/pins", get(message_changes::pins))
        .route("/mentions", get(message_changes::mentions))
        .route("/search", get(search::search))
        .route(
            "/announcements",
            get(announcements::list).post(announcements::announce),
        )
        .route("/announcements/read", post(announcements::read))
        .route("/devices", post(devices::register))
        .route("/devices/{token}", delete(devices::remove))
        .route("/contacts", get(contacts::list))
        .route("/contacts/{user}", delete(contacts::remove))
        .route(
            "/contact-requests",
            get(contacts::pending).post(contacts::request),
        )
        .route("/contact-requests/{id}", delete(contacts::cancel))
        .route("/contact-requests/{id}/accept", post(contacts::accept))
        .route("/contact-requests/{id}/decline", post(contacts::decline))
        // Groups.
        .route("/groups", post(groups::create))
        .route(
            "/groups/{id}",
            patch(groups::update).delete(groups::dissolve),
        )
        .route("/groups/{id}/members", post(groups::invite))
        .route("/groups/{id}/members/{user}", delete(groups::remove_member))
        .route("/groups/{id}/members/{user}/role", put(groups::set_role))
        .route(
            "/groups/{id}/members/{user}/mute",
            put(groups::mute).delete(groups::unmute),
        )
        .route("/groups/{id}/nickname", put(groups::nickname))
        .route("/groups/{id}/exit", post(groups::exit))
        // Notifications, presence, blocks.
        .route("/notifications", post(notifications::notify))
        .route("/presence", get(presence::presence))
        .route(
            "/blocks/{user}",
            post(blocks::block).delete(blocks::unblock),
        )
        // Reports, and what admins do about them.
        .route("/reports", post(reports::report))
        .route("/admin/reports", get(reports::list_reports))
        .route("/admin/bans", get(reports::list_bans))
        .route("/admin/bans/{user}", delete(reports::lift_ban))
        .route(
            "/admin/users/{user}/sessions",
            get(reports::user_sessions).delete(reports::close_user_sessions),
        )
        .route(
            "/admin/users/{user}/sessions/{session}",
            delete(reports::close_session),
        )
        // Files.
        .route("/files", post(files::upload))
        .route("/files/{id}", get(files::download))
        .route("/files/{id}/thumbnail", get(files::thumbnail))
        // Assistant conversations (staff), dev tokens.
        .route("/assistant/conversations", get(assistant::list))
        .route("/dev/token", post(dev::dev_token))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state)
}

/// The answer for a path under `/api/v1` that names no endpoint.
pub async fn not_found() -> AppError {
    AppError::new(ErrorCode::NotFound, "no such endpoint")
}

async fn method_not_allowed() -> AppError {
    AppError::new(
        ErrorCode::MethodNotAllowed,
        "the endpoint does not take this method",
    )
}

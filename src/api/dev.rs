//! `POST /api/v1/dev/token` (contract section 2): tokens for the demo client's "try as" button
//! when `auth.dev_login` is on. The configuration refuses the flag unless the HTTP listener is on
//! a loopback address; this handler also refuses any request whose `Host` is not a loopback name
//! (a page on another site can reach a loopback listener by DNS rebinding, under its own host
//! name), and anything but `application/json` (which a cross-site form cannot send without a
//! preflight). The tokens it mints carry `"dev": true`, which a broker without dev login refuses.

use std::net::{Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, header, uri::Authority};
use serde::Deserialize;
use serde_json::json;

use super::ApiState;
use super::extract::read_json;
use super::reply::{ApiResult, ok};
use crate::app_error::{AppError, ErrorCode};
use crate::auth::{AuthError, Role, is_valid_user_id};

/// How long a dev token lasts: a working day of trying the demo.
const DEV_TOKEN_TTL: Duration = Duration::from_secs(12 * 3600);

/// The largest body read: `{"sub", "roles"}` fits many times over.
const MAX_BODY_BYTES: usize = 4096;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DevTokenRequest {
    sub: String,
    #[serde(default)]
    roles: Option<Vec<String>>,
}

/// Whether `host` (a `Host` value or a URI authority) names this machine: `localhost`, an
/// address of `127.0.0.0/8` or `[::1]`, with an optional port.
fn is_loopback_host(host: &str) -> bool {
    let Ok(authority) = host.parse::<Authority>() else {
        return false;
    };
    let name = authority.host();
    // Only a port may follow the name (the parser lets user info and a bad port through).
    let port_ok = match authority.as_str().strip_prefix(name) {
        Some("") => true,
        Some(rest) => rest
            .strip_prefix(':')
            .is_some_and(|port| port.parse::<u16>().is_ok()),
        None => false,
    };
    if !port_ok {
        return false;
    }
    match name.strip_prefix('[').and_then(|n| n.strip_suffix(']')) {
        Some(v6) => v6.parse::<Ipv6Addr>().is_ok_and(|ip| ip.is_loopback()),
        None => {
            name.eq_ignore_ascii_case("localhost")
                || name.parse::<Ipv4Addr>().is_ok_and(|ip| ip.is_loopback())
        }
    }
}

/// Every name the request gives for its target (the `Host` header, and the authority of an
/// absolute-form request target) is a loopback one, and there is at least one.
fn names_loopback(parts: &Parts) -> bool {
    let header = match parts.headers.get(header::HOST) {
        None => None,
        Some(value) => match value.to_str() {
            Ok(text) => Some(text),
            Err(_) => return false,
        },
    };
    let target = parts.uri.authority().map(Authority::as_str);
    (header.is_some() || target.is_some())
        && header.is_none_or(is_loopback_host)
        && target.is_none_or(is_loopback_host)
}

fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|media| media.trim().eq_ignore_ascii_case("application/json"))
}

/// The handler: the checks above in order, each before anything more of the request is read.
pub(super) async fn dev_token(State(state): State<ApiState>, request: Request) -> ApiResult {
    // Off means absent, not forbidden: the endpoint must not even be discoverable, and nothing
    // of the request is read.
    if !state.dev_login {
        return Err(AppError::new(ErrorCode::NotFound, "no such endpoint"));
    }
    let (parts, body) = request.into_parts();
    if !names_loopback(&parts) {
        return Err(AppError::forbidden(
            "dev tokens are only handed out to requests for localhost, 127.0.0.0/8 or [::1]",
        ));
    }
    if !is_json(&parts.headers) {
        return Err(AppError::invalid("Content-Type must be application/json"));
    }
    let request: DevTokenRequest = read_json(body, MAX_BODY_BYTES).await?;
    if !is_valid_user_id(&request.sub) {
        return Err(AppError::invalid(
            "sub must be 1 to 64 of A-Z a-z 0-9 - . @ :",
        ));
    }
    let mut roles = Vec::new();
    for name in request.roles.unwrap_or_default() {
        let role = Role::parse(&name).ok_or_else(|| {
            AppError::invalid(format!(
                "unknown role {name:?}: use user, system, admin or staff"
            ))
        })?;
        if !roles.contains(&role) {
            roles.push(role);
        }
    }
    if roles.is_empty() {
        roles.push(Role::User);
    }
    match state.auth.mint_dev(&request.sub, &roles, DEV_TOKEN_TTL) {
        Ok(token) => ok(json!({ "token": token })),
        Err(AuthError::InvalidUserId(sub)) => {
            Err(AppError::invalid(format!("invalid user id {sub:?}")))
        }
        Err(error) => Err(AppError::new(ErrorCode::Internal, error.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::is_loopback_host;

    #[test]
    fn loopback_hosts_with_and_without_a_port() {
        for host in [
            "localhost",
            "LocalHost:8080",
            "127.0.0.1",
            "127.9.8.7:80",
            "[::1]",
            "[::1]:8080",
        ] {
            assert!(is_loopback_host(host), "{host}");
        }
        for host in [
            "evil.example",
            "localhost.evil.example",
            "127.0.0.1.nip.io",
            "10.0.0.1:8080",
            "[::2]:80",
            "user@localhost",
            "localhost:port",
            "",
            "0.0.0.0",
        ] {
            assert!(!is_loopback_host(host), "{host}");
        }
    }
}

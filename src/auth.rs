//! Authentication: JWT verification for STOMP CONNECT and REST, and minting for `broker token`.
//!
//! Owns the signing material (configured secret, public key, or a generated secret kept on
//! disk) and the rules for user ids and roles. It knows nothing of sessions or HTTP.

use std::fmt;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Deserializer, Serialize};

use crate::config::AuthConfig;

/// Why a token or a user id is refused.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// No token was presented.
    #[error("no token")]
    MissingToken,
    /// The token is malformed, badly signed or expired.
    #[error("invalid token: {0}")]
    InvalidToken(String),
    /// The `sub` claim is not a valid user id.
    #[error("invalid user id {0:?}: use 1 to 64 of A-Z a-z 0-9 - . @ :")]
    InvalidUserId(String),
    /// The signing material could not be loaded or created.
    #[error("{0}")]
    Key(String),
}

/// What a token may allow.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// An end user (the default).
    User,
    /// A backend system: may publish notifications and to generic destinations.
    System,
    /// An operator: moderation endpoints.
    Admin,
    /// Customer-service staff: assistant conversations.
    Staff,
}

impl Role {
    /// The role's name in tokens and configuration.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::User => "user",
            Role::System => "system",
            Role::Admin => "admin",
            Role::Staff => "staff",
        }
    }

    /// Parses a role name.
    pub fn parse(name: &str) -> Option<Role> {
        match name {
            "user" => Some(Role::User),
            "system" => Some(Role::System),
            "admin" => Some(Role::Admin),
            "staff" => Some(Role::Staff),
            _ => None,
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The claims the broker reads. `nbf`, `iss` and `aud` are checked by the verifier and not kept.
#[derive(Clone, Debug, Deserialize)]
pub struct Claims {
    /// The user id.
    pub sub: String,
    /// Expiry, seconds since the Unix epoch.
    #[serde(deserialize_with = "numeric_date")]
    pub exp: u64,
    /// Roles; missing means `["user"]`. Unknown names are ignored.
    #[serde(default)]
    pub roles: Option<Vec<String>>,
    /// A display name.
    #[serde(default)]
    pub name: Option<String>,
    /// Minted by the dev token endpoint: accepted only by a broker with `auth.dev_login` on.
    #[serde(default)]
    pub dev: bool,
}

/// The claims the broker writes.
#[derive(Serialize)]
struct Minted<'a> {
    sub: &'a str,
    exp: u64,
    roles: Vec<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    iss: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    aud: Option<&'a str>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    dev: bool,
}

/// A JWT NumericDate: an integer or, as RFC 7519 allows, a non-integer number of seconds. The
/// verifier has already refused values that do not fit a `u64`; fractions are dropped.
fn numeric_date<'de, D: Deserializer<'de>>(deserializer: D) -> Result<u64, D::Error> {
    let number = serde_json::Number::deserialize(deserializer)?;
    number
        .as_u64()
        .or_else(|| {
            number
                .as_f64()
                .filter(|f| f.is_finite() && *f >= 0.0)
                // `as` saturates: a float past u64::MAX becomes u64::MAX.
                .map(|f| f as u64)
        })
        .ok_or_else(|| serde::de::Error::custom("exp must be a non-negative number of seconds"))
}

/// The furthest a session's expiry is set from now. A token may carry any `exp` up to
/// `u64::MAX`; past this horizon it is treated as never expiring, so that neither `SystemTime`
/// nor a session's timer arithmetic can overflow.
const EXPIRY_HORIZON: Duration = Duration::from_secs(100 * 365 * 86_400);

/// When a token stops being accepted: `exp` plus the leeway, capped at [`EXPIRY_HORIZON`].
fn expiry(exp: u64, leeway: u64) -> SystemTime {
    let now = SystemTime::now();
    let horizon = now.checked_add(EXPIRY_HORIZON).unwrap_or(now);
    UNIX_EPOCH
        .checked_add(Duration::from_secs(exp.saturating_add(leeway)))
        .map_or(horizon, |at| at.min(horizon))
}

/// The token of an `Authorization` value `Bearer <token>`; the scheme is matched in any case
/// (RFC 9110: authentication schemes are case-insensitive).
pub fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim_start().split_once([' ', '\t'])?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// A verified identity.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    /// The user id (the token's `sub`).
    pub user_id: String,
    /// Its roles; never empty.
    pub roles: Vec<Role>,
    /// The display name, if the token had one.
    pub name: Option<String>,
    /// When the token expires.
    pub expires_at: SystemTime,
}

impl Identity {
    /// Whether the identity holds `role`.
    pub fn has_role(&self, role: Role) -> bool {
        self.roles.contains(&role)
    }
}

/// The contract's user id alphabet, checked where identities are read.
pub use crate::domain::is_valid_user_id;

/// Verifies tokens, and mints them when the key is a shared secret.
#[derive(Clone)]
pub struct Authenticator {
    decoding: DecodingKey,
    encoding: Option<EncodingKey>,
    validation: Validation,
    /// `auth.issuer` and `auth.audience`, written into minted tokens so that they verify.
    issuer: Option<String>,
    audience: Option<String>,
    /// Whether tokens of the dev token endpoint are accepted (`auth.dev_login`).
    accept_dev: bool,
}

impl fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Authenticator")
            .field("algorithms", &self.validation.algorithms)
            .finish_non_exhaustive()
    }
}

impl Authenticator {
    /// Builds the verifier from the `[auth]` section: the configured secret, else the public
    /// key file, else the generated secret (created on first use).
    ///
    /// # Errors
    ///
    /// [`AuthError::Key`] when the key file cannot be read or parsed, or the generated secret
    /// cannot be written.
    pub fn from_config(config: &AuthConfig) -> Result<Authenticator, AuthError> {
        let keyed = if let Some(secret) = &config.jwt_secret {
            Authenticator::hs256(secret.as_bytes())
        } else if let Some(path) = &config.jwt_public_key_file {
            let pem = std::fs::read(path)
                .map_err(|e| AuthError::Key(format!("cannot read {}: {e}", path.display())))?;
            Authenticator::public_key(&pem)
                .map_err(|e| AuthError::Key(format!("{}: {e}", path.display())))?
        } else {
            let secret = load_or_create_secret(&config.generated_secret_file)?;
            Authenticator::hs256(secret.as_bytes())
        };
        Ok(keyed.with_rules(config))
    }

    /// Applies the claim rules of `[auth]`: issuer, audience, leeway, dev tokens.
    pub fn with_rules(mut self, config: &AuthConfig) -> Authenticator {
        let mut required = vec!["exp", "sub"];
        self.validation.leeway = config.leeway_s.min(crate::config::MAX_LEEWAY_S);
        if let Some(issuer) = &config.issuer {
            self.validation.set_issuer(&[issuer]);
            required.push("iss");
        }
        if let Some(audience) = &config.audience {
            self.validation.set_audience(&[audience]);
            self.validation.validate_aud = true;
            required.push("aud");
        }
        self.validation.set_required_spec_claims(&required);
        self.issuer.clone_from(&config.issuer);
        self.audience.clone_from(&config.audience);
        self.accept_dev = config.dev_login;
        self
    }

    /// HS256 with a shared secret; can also mint tokens.
    pub fn hs256(secret: &[u8]) -> Authenticator {
        Authenticator {
            decoding: DecodingKey::from_secret(secret),
            encoding: Some(EncodingKey::from_secret(secret)),
            validation: validation(&[Algorithm::HS256]),
            issuer: None,
            audience: None,
            accept_dev: false,
        }
    }

    /// RS256 or ES256 with a PEM public key; verification only.
    ///
    /// # Errors
    ///
    /// When the PEM is neither an RSA nor an EC public key.
    pub fn public_key(pem: &[u8]) -> Result<Authenticator, AuthError> {
        let (decoding, algorithm) = match DecodingKey::from_rsa_pem(pem) {
            Ok(key) => (key, Algorithm::RS256),
            Err(_) => (
                DecodingKey::from_ec_pem(pem).map_err(|e| {
                    AuthError::Key(format!("not an RSA or EC public key in PEM form: {e}"))
                })?,
                Algorithm::ES256,
            ),
        };
        Ok(Authenticator {
            decoding,
            encoding: None,
            validation: validation(&[algorithm]),
            issuer: None,
            audience: None,
            accept_dev: false,
        })
    }

    /// Verifies a token and returns who it names.
    ///
    /// # Errors
    ///
    /// [`AuthError::InvalidToken`] for a malformed, badly signed, expired or not yet valid
    /// token, one of another issuer or audience than configured, or a dev token when dev login
    /// is off; [`AuthError::InvalidUserId`] when its `sub` breaks the user-id alphabet.
    pub fn verify(&self, token: &str) -> Result<Identity, AuthError> {
        let data = jsonwebtoken::decode::<Claims>(token.trim(), &self.decoding, &self.validation)
            .map_err(|e| AuthError::InvalidToken(e.to_string()))?;
        let claims = data.claims;
        if claims.dev && !self.accept_dev {
            return Err(AuthError::InvalidToken(
                "a dev token, and this broker runs without auth.dev_login".into(),
            ));
        }
        if !is_valid_user_id(&claims.sub) {
            return Err(AuthError::InvalidUserId(claims.sub));
        }
        let mut roles: Vec<Role> = match &claims.roles {
            None => vec![Role::User],
            Some(names) => names.iter().filter_map(|n| Role::parse(n)).collect(),
        };
        if roles.is_empty() {
            roles.push(Role::User);
        }
        Ok(Identity {
            user_id: claims.sub,
            roles,
            name: claims.name,
            expires_at: expiry(claims.exp, self.validation.leeway),
        })
    }

    /// Signs a token for `sub` with `roles`, valid for `ttl`.
    ///
    /// # Errors
    ///
    /// [`AuthError::Key`] when the broker verifies with a public key and so cannot sign;
    /// [`AuthError::InvalidUserId`] for a bad `sub`.
    pub fn mint(&self, sub: &str, roles: &[Role], ttl: Duration) -> Result<String, AuthError> {
        self.mint_claims(sub, roles, ttl, false)
    }

    /// Signs a token as [`Authenticator::mint`] does, marked `"dev": true`: only a broker with
    /// `auth.dev_login` on accepts it.
    ///
    /// # Errors
    ///
    /// As [`Authenticator::mint`].
    pub fn mint_dev(&self, sub: &str, roles: &[Role], ttl: Duration) -> Result<String, AuthError> {
        self.mint_claims(sub, roles, ttl, true)
    }

    fn mint_claims(
        &self,
        sub: &str,
        roles: &[Role],
        ttl: Duration,
        dev: bool,
    ) -> Result<String, AuthError> {
        let key = self.encoding.as_ref().ok_or_else(|| {
            AuthError::Key(
                "the broker verifies tokens with a public key; mint them with the private key"
                    .into(),
            )
        })?;
        if !is_valid_user_id(sub) {
            return Err(AuthError::InvalidUserId(sub.to_owned()));
        }
        let exp = SystemTime::now()
            .checked_add(ttl)
            .unwrap_or(SystemTime::now())
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let claims = Minted {
            sub,
            exp,
            roles: roles.iter().map(|r| r.as_str()).collect(),
            iss: self.issuer.as_deref(),
            aud: self.audience.as_deref(),
            dev,
        };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, key)
            .map_err(|e| AuthError::Key(e.to_string()))
    }
}

fn validation(algorithms: &[Algorithm]) -> Validation {
    let mut validation = Validation::new(algorithms[0]);
    validation.algorithms = algorithms.to_vec();
    validation.set_required_spec_claims(&["exp", "sub"]);
    // Expiry is enforced to the second unless `auth.leeway_s` says otherwise: an open session is
    // closed exactly when its token ends.
    validation.leeway = 0;
    validation.validate_nbf = true;
    // Without a configured audience a token's `aud` names someone else's concern, not a reason
    // to refuse it (the library's default would refuse every token carrying one).
    validation.validate_aud = false;
    validation
}

/// Reads the generated secret, creating it (random, owner-only) the first time.
fn load_or_create_secret(path: &Path) -> Result<String, AuthError> {
    match std::fs::read_to_string(path) {
        Ok(secret) if !secret.trim().is_empty() => return Ok(secret.trim().to_owned()),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => {
            return Err(AuthError::Key(format!(
                "cannot read {}: {e}",
                path.display()
            )));
        }
    }
    let secret: String = (0..32)
        .map(|_| format!("{:02x}", rand::random::<u8>()))
        .collect();
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        crate::private_fs::create_dir(dir)
            .map_err(|e| AuthError::Key(format!("cannot create {}: {e}", dir.display())))?;
    }
    write_private(path, &secret)
        .map_err(|e| AuthError::Key(format!("cannot write {}: {e}", path.display())))?;
    Ok(secret)
}

#[cfg(unix)]
fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(text.as_bytes())
}

#[cfg(not(unix))]
fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    std::fs::write(path, text)
}

/// Parses a duration such as `30s`, `15m`, `1h`, `7d` (a bare number is seconds).
pub fn parse_ttl(text: &str) -> Option<Duration> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: u64 = number.parse().ok()?;
    let seconds = match unit {
        "" | "s" => number,
        "m" => number.checked_mul(60)?,
        "h" => number.checked_mul(3600)?,
        "d" => number.checked_mul(86400)?,
        _ => return None,
    };
    Some(Duration::from_secs(seconds))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minted_token_verifies_with_roles() {
        let auth = Authenticator::hs256(b"secret");
        let token = auth
            .mint("alice", &[Role::System], Duration::from_secs(60))
            .unwrap();
        let identity = auth.verify(&token).unwrap();
        assert_eq!(identity.user_id, "alice");
        assert_eq!(identity.roles, vec![Role::System]);
    }

    #[test]
    fn token_signed_with_another_secret_is_refused() {
        let token = Authenticator::hs256(b"one")
            .mint("alice", &[Role::User], Duration::from_secs(60))
            .unwrap();
        assert!(matches!(
            Authenticator::hs256(b"two").verify(&token),
            Err(AuthError::InvalidToken(_))
        ));
    }

    #[test]
    fn user_id_alphabet() {
        assert!(is_valid_user_id("alice.b@example.com:1-2"));
        assert!(!is_valid_user_id("a_b"));
        assert!(!is_valid_user_id("a/b"));
        assert!(!is_valid_user_id(""));
        assert!(!is_valid_user_id(&"a".repeat(65)));
    }

    #[test]
    fn bearer_scheme_is_matched_in_any_case() {
        assert_eq!(bearer_token("Bearer abc"), Some("abc"));
        assert_eq!(bearer_token("bearer abc"), Some("abc"));
        assert_eq!(bearer_token("BEARER \tabc "), Some("abc"));
        assert_eq!(bearer_token("Basic abc"), None);
        assert_eq!(bearer_token("Bearer "), None);
        assert_eq!(bearer_token("abc"), None);
    }

    #[test]
    fn a_huge_exp_is_capped_at_the_horizon() {
        for exp in [u64::MAX, i64::MAX as u64, u64::MAX - 1] {
            let earliest = SystemTime::now() + EXPIRY_HORIZON;
            let at = expiry(exp, crate::config::MAX_LEEWAY_S);
            assert!(earliest <= at && at <= SystemTime::now() + EXPIRY_HORIZON);
        }
        assert_eq!(expiry(10, 5), UNIX_EPOCH + Duration::from_secs(15));
    }

    #[test]
    fn ttl_units() {
        assert_eq!(parse_ttl("90"), Some(Duration::from_secs(90)));
        assert_eq!(parse_ttl("1h"), Some(Duration::from_secs(3600)));
        assert_eq!(parse_ttl("2d"), Some(Duration::from_secs(172800)));
        assert_eq!(parse_ttl("1y"), None);
    }
}

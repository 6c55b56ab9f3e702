//! Configuration: `broker.toml`, then `BROKER_<SECTION>_<KEY>` environment overrides, validated
//! once at start. Nothing else in the broker reads files or the environment for settings.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

mod layers;
mod limits;
mod push;
mod values;

use layers::{apply_override, merge, one_line, read};
pub use limits::LimitsConfig;
pub use push::{PushConfig, PushProvider};
pub use values::{ExternalPrefixes, HeartBeat, Rate};

/// The largest clock skew `auth.leeway_s` may tolerate, in seconds.
pub const MAX_LEEWAY_S: u64 = 300;

/// The configuration shipped as `broker.toml`; the built-in defaults are this very file, so the
/// two cannot drift apart.
pub const DEFAULT_TOML: &str = include_str!("../../broker.toml");

/// Why a configuration cannot be used. The message is one line, fit for the console.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The TOML is malformed or a key has the wrong type or is unknown.
    #[error("{origin}: {message}")]
    Parse {
        /// Where the bad value came from.
        origin: String,
        /// What is wrong, on one line.
        message: String,
    },
    /// A key has a value outside what the broker accepts.
    #[error("invalid {key} = {value:?}: {reason}")]
    Invalid {
        /// The `section.key`.
        key: &'static str,
        /// The offending value.
        value: String,
        /// Why it is refused.
        reason: String,
    },
}

/// The whole configuration.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Listeners and connection handling.
    pub server: ServerConfig,
    /// This node's identity in a cluster.
    #[serde(default)]
    pub cluster: ClusterConfig,
    /// Token verification.
    pub auth: AuthConfig,
    /// The database.
    pub storage: StorageConfig,
    /// Cluster relay through RabbitMQ.
    pub relay: RelayConfig,
    /// Cluster presence and rate limits in Redis.
    #[serde(default)]
    pub presence: PresenceConfig,
    /// STOMP session settings.
    pub stomp: StompConfig,
    /// Size and rate limits.
    pub limits: LimitsConfig,
    /// Who may use generic destinations.
    pub acl: AclConfig,
    /// Chat rules.
    pub im: ImConfig,
    /// Sensitive words and bans.
    pub moderation: ModerationConfig,
    /// Uploaded files.
    pub files: FilesConfig,
    /// Offline push.
    pub push: PushConfig,
    /// `BROKER_*` variables that name no section, ignored (see [`Config::from_toml`]).
    #[serde(skip)]
    pub ignored_env: Vec<String>,
    /// The configuration in effect, as TOML (defaults, file and overrides merged).
    #[serde(skip)]
    pub effective: toml::Table,
}

/// `[moderation]`
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModerationConfig {
    /// Sensitive words, one per line; none when unset.
    #[serde(default)]
    pub words_file: Option<PathBuf>,
    /// What a hit does to the message.
    pub action: ModerationAction,
    /// Offences (distinct counted reporters plus rejected messages) a user may collect within
    /// the window before a ban.
    pub ban_threshold: u32,
    /// The window those are counted in, in seconds.
    pub ban_window_s: u64,
    /// How long a ban lasts, in seconds.
    pub ban_duration_s: u64,
}

/// `moderation.action`
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ModerationAction {
    /// Refuse the message with `SENSITIVE_CONTENT`.
    Reject,
    /// Replace each hit with `*` and store the message.
    Mask,
}

/// `[files]`
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilesConfig {
    /// Which store keeps uploads.
    pub store: FileStoreKind,
    /// Where the local store keeps uploads.
    pub dir: PathBuf,
    /// The bucket of the S3 store.
    #[serde(default)]
    pub s3_bucket: Option<String>,
    /// The S3 endpoint (MinIO, Ceph, R2...); AWS when unset.
    #[serde(default)]
    pub s3_endpoint: Option<String>,
    /// The S3 region.
    pub s3_region: String,
    /// A folder in the bucket under which the keys are kept.
    #[serde(default)]
    pub s3_prefix: String,
    /// The access key; `AWS_ACCESS_KEY_ID` (or the instance's role) when unset.
    #[serde(default)]
    pub s3_access_key_id: Option<String>,
    /// The secret key; `AWS_SECRET_ACCESS_KEY` when unset.
    #[serde(default)]
    pub s3_secret_access_key: Option<String>,
    /// Allows a plain `http://` endpoint.
    pub s3_allow_http: bool,
    /// Bound on each request to the store, retries included.
    pub s3_timeout_ms: u64,
    /// `https://` URL prefixes a media attachment may point under, besides this broker's files.
    pub external_url_prefixes: Vec<String>,
    /// Pixels (width × height) an uploaded image may have; read from its header before it is
    /// decoded.
    pub image_max_pixels: u64,
    /// Bytes one user may upload within any 24 hours.
    pub quota_bytes_per_day: u64,
}

/// `files.store`
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FileStoreKind {
    /// Files under `files.dir`.
    Local,
    /// Objects in `files.s3_bucket` of an S3-compatible store.
    S3,
}

/// `[im]`
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImConfig {
    /// How long a sender may recall a message, in seconds.
    pub recall_window_s: u64,
    /// Members a group may have.
    pub max_group_members: usize,
    /// How often the purge of messages older than a conversation's `messageRetentionDays`
    /// runs, in seconds.
    pub retention_purge_interval_s: u64,
    /// Who may send a private message.
    pub private_policy: PrivatePolicy,
    /// How long a sender may edit a text message, in seconds.
    pub edit_window_s: u64,
    /// Distinct emoji one message may carry.
    pub max_reaction_kinds: usize,
    /// Messages pinned in one conversation.
    pub max_pins: usize,
    /// Users one group message may mention.
    pub max_mentions: usize,
    /// Whether private and assistant messages are numbered per user, so that
    /// `/user/queue/messages` resumes (`since-position`).
    pub private_resume: bool,
}

/// `im.private_policy`: who may send a private message.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum PrivatePolicy {
    /// Anyone, within the stranger limits.
    #[default]
    Open,
    /// Only a contact.
    Contacts,
}

/// `[server]`
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// HTTP, WebSocket, REST and metrics.
    pub http_addr: SocketAddr,
    /// STOMP over TCP; off when unset.
    #[serde(default)]
    pub stomp_tcp_addr: Option<SocketAddr>,
    /// Connections beyond this are refused at accept.
    pub max_connections: usize,
    /// Connections from one address (IPv6: one /64) beyond this are refused at accept; 0 for
    /// no such cap.
    pub max_connections_per_ip: usize,
    /// How long a new connection has to complete its handshake and CONNECT.
    pub connect_timeout_ms: u64,
    /// How long shutdown waits for sessions to close before it gives up on them.
    pub shutdown_grace_ms: u64,
    /// The built demo client served at `/` (`web/dist` after `npm run build` in `web/`).
    pub web_dir: PathBuf,
    /// HTTP connections open at once on a listener; beyond it a new one is refused at accept.
    /// A WebSocket leaves this budget for `max_connections` once upgraded.
    pub max_http_connections: usize,
    /// How long a request body may take to arrive, counted from the end of its head.
    pub request_timeout_ms: u64,
    /// `/metrics` on a listener of its own (and no longer on `http_addr`); unset keeps it on
    /// `http_addr`.
    #[serde(default)]
    pub metrics_addr: Option<SocketAddr>,
    /// PEM certificate chain: with `tls_key_file`, `http_addr` serves `https://` and `wss://`
    /// and `stomp_tcp_addr` STOMP over TLS.
    #[serde(default)]
    pub tls_cert_file: Option<PathBuf>,
    /// PEM private key of `tls_cert_file`.
    #[serde(default)]
    pub tls_key_file: Option<PathBuf>,
}

/// `[cluster]`
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterConfig {
    /// This node's name; host name plus a random suffix when unset.
    #[serde(default)]
    pub node_id: Option<String>,
}

/// `[auth]`
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    /// HS256 secret.
    #[serde(default)]
    pub jwt_secret: Option<String>,
    /// PEM public key for RS256 or ES256 tokens.
    #[serde(default)]
    pub jwt_public_key_file: Option<PathBuf>,
    /// Where the generated HS256 secret is kept when neither of the above is set.
    pub generated_secret_file: PathBuf,
    /// The dev token endpoint; loopback `http_addr` only.
    pub dev_login: bool,
    /// The `iss` every token must carry; not checked when unset.
    #[serde(default)]
    pub issuer: Option<String>,
    /// A value every token's `aud` must name; any `aud`, or none, is accepted when unset.
    #[serde(default)]
    pub audience: Option<String>,
    /// Clock skew tolerated on `exp` and `nbf`, in seconds.
    pub leeway_s: u64,
}

/// `[storage]`
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StorageConfig {
    /// `sqlite://path` or `postgres://...`.
    pub url: String,
    /// PostgreSQL connections in the pool.
    pub pool_size: u32,
    /// Bound on each database operation.
    pub timeout_ms: u64,
    /// Most messages committed in one transaction by the group-commit writer.
    pub max_batch: usize,
    /// Most system notifications in one such transaction; people's messages take the rest.
    pub max_bulk_batch: usize,
}

/// `[relay]`
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RelayConfig {
    /// RabbitMQ for cluster mode; single node when unset.
    #[serde(default)]
    pub amqp_url: Option<String>,
    /// The durable queue backend systems publish notifications to.
    #[serde(default = "default_notifications_queue")]
    pub notifications_queue: String,
}

fn default_notifications_queue() -> String {
    "im.notifications".to_owned()
}

/// `[presence]`
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PresenceConfig {
    /// Redis for cluster mode; in process when unset.
    #[serde(default)]
    pub redis_url: Option<String>,
}

/// `[stomp]`
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StompConfig {
    /// What the server offers as `heart-beat`: "send-every-ms,expect-every-ms".
    pub heartbeat_ms: HeartBeat,
    /// The most transactions one session may have open at once.
    pub max_transactions: usize,
    /// The most frames one transaction may hold before COMMIT.
    pub max_transaction_frames: usize,
    /// The most bytes (as sent: command, headers, body) one session's open transactions may
    /// hold together before COMMIT.
    pub max_transaction_bytes: usize,
    /// The most subscriptions one session may hold.
    pub max_subscriptions: usize,
}

/// `[acl]`: who may SUBSCRIBE and SEND to generic `/topic/*` and `/queue/*` destinations.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AclConfig {
    /// Roles that may subscribe where no rule matches.
    pub default_subscribe: Vec<String>,
    /// Roles that may send where no rule matches.
    pub default_send: Vec<String>,
    /// Rules, first match wins.
    #[serde(default)]
    pub rules: Vec<AclRule>,
}

/// One `[[acl.rules]]` entry.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AclRule {
    /// A destination; a trailing `*` matches any rest.
    pub pattern: String,
    /// Roles that may subscribe.
    #[serde(default)]
    pub subscribe: Vec<String>,
    /// Roles that may send.
    #[serde(default)]
    pub send: Vec<String>,
}

impl Config {
    /// The service URLs of this configuration, which may carry passwords (for redaction).
    pub fn service_urls(&self) -> Vec<String> {
        [
            Some(self.storage.url.clone()),
            self.relay.amqp_url.clone(),
            self.presence.redis_url.clone(),
            self.files.s3_endpoint.clone(),
            self.push.url.clone(),
        ]
        .into_iter()
        .flatten()
        .collect()
    }

    /// Loads `path` (or `./broker.toml` when it exists, or the built-in defaults), then applies
    /// `BROKER_<SECTION>_<KEY>` overrides from `env`.
    ///
    /// # Errors
    ///
    /// [`ConfigError`] when the file cannot be read or a value is malformed or invalid.
    pub fn load(
        path: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        let implicit = Path::new("broker.toml");
        let (origin, text) = match path {
            Some(path) => (path.display().to_string(), read(path)?),
            None if implicit.exists() => ("broker.toml".to_owned(), read(implicit)?),
            None => ("built-in defaults".to_owned(), DEFAULT_TOML.to_owned()),
        };
        Config::from_toml(&origin, &text, env)
    }

    /// Parses a TOML text, fills keys it lacks from the defaults, applies overrides. A
    /// `BROKER_*` variable whose first word is no section is left out and named in
    /// [`Config::ignored_env`]; one of a section with an unknown key is an error.
    ///
    /// # Errors
    ///
    /// [`ConfigError`] when a value is malformed or invalid.
    pub fn from_toml(
        origin: &str,
        text: &str,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        let parse_error = |origin: &str, error: &dyn std::fmt::Display| ConfigError::Parse {
            origin: origin.to_owned(),
            message: one_line(&error.to_string()),
        };
        let mut table: toml::Table = DEFAULT_TOML
            .parse()
            .map_err(|e| parse_error("built-in defaults", &e))?;
        let given: toml::Table = text.parse().map_err(|e| parse_error(origin, &e))?;
        merge(&mut table, given);
        let overrides: BTreeMap<String, String> = env
            .into_iter()
            .filter(|(name, _)| name.starts_with("BROKER_"))
            .collect();
        let mut ignored_env = Vec::new();
        for (name, value) in overrides {
            if !apply_override(&mut table, &name, &value) {
                ignored_env.push(name);
            }
        }
        let mut config: Config = toml::Value::Table(table.clone())
            .try_into()
            .map_err(|e| parse_error(origin, &e))?;
        config.validate()?;
        config.ignored_env = ignored_env;
        config.effective = table;
        Ok(config)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        for (key, value) in self.counts() {
            if value == 0 {
                return Err(ConfigError::Invalid {
                    key,
                    value: "0".into(),
                    reason: "must be at least 1".into(),
                });
            }
        }
        if self.limits.queue_prefetch > self.limits.max_unacked_per_subscription {
            return Err(ConfigError::Invalid {
                key: "limits.queue_prefetch",
                value: self.limits.queue_prefetch.to_string(),
                reason: "must not exceed limits.max_unacked_per_subscription".into(),
            });
        }
        if self.push.provider != PushProvider::None
            && self.push.url.as_deref().is_none_or(str::is_empty)
        {
            return Err(ConfigError::Invalid {
                key: "push.url",
                value: String::new(),
                reason: "a push provider needs the gateway's URL".into(),
            });
        }
        if self.files.store == FileStoreKind::S3
            && self.files.s3_bucket.as_deref().is_none_or(str::is_empty)
        {
            return Err(ConfigError::Invalid {
                key: "files.s3_bucket",
                value: String::new(),
                reason: "files.store = \"s3\" needs a bucket".into(),
            });
        }
        self.validate_rules()
    }

    /// Every key that must be at least 1, with its value.
    fn counts(&self) -> Vec<(&'static str, u64)> {
        let n = |value: usize| u64::try_from(value).unwrap_or(u64::MAX);
        let limits = &self.limits;
        vec![
            ("limits.max_frame_bytes", n(limits.max_frame_bytes)),
            ("limits.max_headers", n(limits.max_headers)),
            (
                "limits.max_header_line_bytes",
                n(limits.max_header_line_bytes),
            ),
            ("limits.max_outbound_bytes", n(limits.max_outbound_bytes)),
            ("limits.max_inflight_sends", n(limits.max_inflight_sends)),
            ("limits.max_inflight_bytes", n(limits.max_inflight_bytes)),
            (
                "limits.notification_max_users",
                n(limits.notification_max_users),
            ),
            ("limits.queue_prefetch", n(limits.queue_prefetch)),
            (
                "stomp.max_transaction_bytes",
                n(self.stomp.max_transaction_bytes),
            ),
            ("limits.frame_timeout_ms", limits.frame_timeout_ms),
            (
                "limits.max_sessions_per_user",
                n(limits.max_sessions_per_user),
            ),
            ("limits.max_unacked", n(limits.max_unacked)),
            (
                "limits.max_unacked_per_subscription",
                n(limits.max_unacked_per_subscription),
            ),
            ("server.max_connections", n(self.server.max_connections)),
            ("storage.max_batch", n(self.storage.max_batch)),
            ("storage.max_bulk_batch", n(self.storage.max_bulk_batch)),
            ("storage.pool_size", u64::from(self.storage.pool_size)),
            ("im.max_group_members", n(self.im.max_group_members)),
            ("push.queue_capacity", n(self.push.queue_capacity)),
            ("push.batch_max", n(self.push.batch_max)),
            ("push.attempts", u64::from(self.push.attempts)),
            ("push.timeout_ms", self.push.timeout_ms),
            ("push.max_devices", n(self.push.max_devices)),
            ("limits.text_max_chars", n(limits.text_max_chars)),
            ("limits.json_max_bytes", n(limits.json_max_bytes)),
            (
                "server.max_http_connections",
                n(self.server.max_http_connections),
            ),
            ("server.request_timeout_ms", self.server.request_timeout_ms),
            ("files.image_max_pixels", self.files.image_max_pixels),
            ("files.quota_bytes_per_day", self.files.quota_bytes_per_day),
            (
                "limits.group_name_max_chars",
                n(limits.group_name_max_chars),
            ),
            ("limits.card_data_max_bytes", n(limits.card_data_max_bytes)),
            (
                "im.retention_purge_interval_s",
                self.im.retention_purge_interval_s,
            ),
            ("files.s3_timeout_ms", self.files.s3_timeout_ms),
        ]
    }

    /// The rules between keys, and the keys with a format.
    fn validate_rules(&self) -> Result<(), ConfigError> {
        if self.server.tls_cert_file.is_some() != self.server.tls_key_file.is_some() {
            return Err(ConfigError::Invalid {
                key: "server.tls_cert_file",
                value: format!("{:?}", self.server.tls_cert_file),
                reason: "server.tls_cert_file and server.tls_key_file go together".into(),
            });
        }
        if self.auth.dev_login && !self.server.http_addr.ip().is_loopback() {
            return Err(ConfigError::Invalid {
                key: "auth.dev_login",
                value: "true".into(),
                reason: format!(
                    "the dev token endpoint is only allowed when server.http_addr is a loopback \
                     address, not {}",
                    self.server.http_addr
                ),
            });
        }
        if self.auth.dev_login && self.auth.jwt_public_key_file.is_some() {
            return Err(ConfigError::Invalid {
                key: "auth.dev_login",
                value: "true".into(),
                reason: "the dev token endpoint needs a secret to sign with, and \
                         auth.jwt_public_key_file is set"
                    .into(),
            });
        }
        if let Err(reason) = ExternalPrefixes::parse(&self.files.external_url_prefixes) {
            return Err(ConfigError::Invalid {
                key: "files.external_url_prefixes",
                value: self.files.external_url_prefixes.join(" "),
                reason,
            });
        }
        if self.auth.leeway_s > MAX_LEEWAY_S {
            return Err(ConfigError::Invalid {
                key: "auth.leeway_s",
                value: self.auth.leeway_s.to_string(),
                reason: format!("at most {}", MAX_LEEWAY_S),
            });
        }
        if let Some(id) = &self.cluster.node_id
            && (id.is_empty()
                || !id
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_')))
        {
            return Err(ConfigError::Invalid {
                key: "cluster.node_id",
                value: id.clone(),
                reason: "use letters, digits, '-', '.' and '_'".into(),
            });
        }
        Ok(())
    }

    /// The connect timeout as a duration.
    pub fn connect_timeout(&self) -> Duration {
        Duration::from_millis(self.server.connect_timeout_ms)
    }

    /// The request body timeout as a duration.
    pub fn request_timeout(&self) -> Duration {
        Duration::from_millis(self.server.request_timeout_ms)
    }

    /// The node id from the configuration, else the host name and a random suffix.
    pub fn node_id(&self) -> String {
        if let Some(id) = &self.cluster.node_id {
            return id.clone();
        }
        let host = std::fs::read_to_string("/etc/hostname")
            .ok()
            .map(|h| h.trim().to_owned())
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "node".to_owned());
        let host: String = host
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' {
                    c
                } else {
                    '-'
                }
            })
            .collect();
        format!("{host}-{:06x}", rand::random::<u32>() & 0xff_ffff)
    }
}

#[cfg(test)]
mod tests;

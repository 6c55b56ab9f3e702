//! Limits and abuse on the send path (contract section 7): bans, the per-user send rate, blocks,
//! sensitive words, and the stranger rules of private chats; the per-user rates of other actions
//! ([`Action`]); and blocks. Reports and what admins do about them are in [`super::reports`].

use std::sync::Arc;
use std::time::Duration;

use dashmap::DashMap;

use super::Im;
use super::json::peer_of;
use super::limits::{Action, ActionRates, Decision, InProcessLimiter, Rate, RateLimiter};
use super::moderation::Words;
use crate::app_error::{AppError, ErrorCode};
use crate::auth::{Identity, is_valid_user_id};
use crate::config::{Config, ModerationAction};
use crate::domain::ConversationId;
use crate::hub::SubscriptionKey;
use crate::store::safety::{BanRow, HitRow, row_id};
use crate::store::{NewMessage, Target};
use crate::util::now_ms;

/// The safety rules from the configuration.
#[derive(Clone, Debug)]
pub struct SafetySettings {
    /// Messages per user.
    pub send_rate: Rate,
    /// Messages per user to users who never replied.
    pub stranger_rate: Rate,
    /// Messages to a user who never replied, until they reply.
    pub stranger_before_reply: u32,
    /// The sensitive-word list file.
    pub words_file: Option<std::path::PathBuf>,
    /// Reject or mask.
    pub action: ModerationAction,
    /// Offences tolerated within the window.
    pub ban_threshold: u32,
    /// The window offences are counted in.
    pub ban_window: Duration,
    /// How long a ban lasts.
    pub ban_duration: Duration,
    /// The rates of actions other than sends.
    pub actions: ActionRates,
}

impl SafetySettings {
    /// Reads the rules from the configuration.
    pub fn from_config(config: &Config) -> SafetySettings {
        SafetySettings {
            send_rate: config.limits.send_rate,
            stranger_rate: config.limits.stranger_rate,
            stranger_before_reply: config.limits.stranger_before_reply,
            words_file: config.moderation.words_file.clone(),
            action: config.moderation.action,
            ban_threshold: config.moderation.ban_threshold,
            ban_window: Duration::from_secs(config.moderation.ban_window_s),
            ban_duration: Duration::from_secs(config.moderation.ban_duration_s),
            actions: ActionRates::from_config(&config.limits),
        }
    }
}

/// The safety state of the IM service.
pub struct Safety {
    settings: SafetySettings,
    limiter: Arc<dyn RateLimiter>,
    words: Words,
    /// The users known to have sent in a private chat: a reply never un-happens, so these
    /// need no second look at the database.
    replied: RepliedCache,
    /// Bans in force, by user, until when (epoch ms); the database holds the same, this keeps
    /// a query off every send.
    bans: DashMap<String, i64>,
}

/// The private conversations whose replies [`Safety`] remembers; past it, the check of a
/// stranger asks the database again.
const REPLIED_CACHE_CONVERSATIONS: usize = 100_000;

/// The users known to have sent in a private chat, by conversation. Keyed by conversation so
/// that the look-up on every private send borrows its strings instead of building a key. A
/// cache, not a record: emptied when it holds `capacity` conversations, it bounds the memory
/// that many conversations (and accounts made to open them) can take.
struct RepliedCache {
    users: DashMap<Box<str>, Vec<Box<str>>>,
    capacity: usize,
}

impl RepliedCache {
    fn new(capacity: usize) -> RepliedCache {
        RepliedCache {
            users: DashMap::new(),
            capacity,
        }
    }

    fn contains(&self, conversation: &str, user: &str) -> bool {
        self.users
            .get(conversation)
            .is_some_and(|users| users.iter().any(|known| **known == *user))
    }

    fn insert(&self, conversation: &str, user: &str) {
        if !self.users.contains_key(conversation) && self.users.len() >= self.capacity {
            self.users.clear();
        }
        let mut users = self.users.entry(conversation.into()).or_default();
        if !users.iter().any(|known| **known == *user) {
            users.push(user.into());
        }
    }
}

/// How often a node reloads the bans in force (see [`Im::watch_bans`]).
const BAN_RELOAD: Duration = Duration::from_secs(10);

fn millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

impl Safety {
    /// The state for `settings`, with the in-process rate limiter.
    pub fn new(settings: SafetySettings) -> Safety {
        Safety::with_limiter(settings, Arc::new(InProcessLimiter::new()))
    }

    /// The state for `settings`, counting rates with `limiter`.
    pub fn with_limiter(settings: SafetySettings, limiter: Arc<dyn RateLimiter>) -> Safety {
        Safety {
            words: Words::open(settings.words_file.clone()),
            settings,
            limiter,
            replied: RepliedCache::new(REPLIED_CACHE_CONVERSATIONS),
            bans: DashMap::new(),
        }
    }

    /// The sensitive-word list.
    pub fn words(&self) -> &Words {
        &self.words
    }
}

impl Im {
    fn safety(&self) -> &Safety {
        &self.inner.safety
    }

    /// Keeps this node's cache of the bans in force in step with the database: at once, then
    /// every [`BAN_RELOAD`], so that a ban made or lifted on another node of a cluster applies
    /// here too. The task ends when the service is dropped.
    pub(super) fn watch_bans(&self) {
        let alive = Arc::downgrade(&self.inner);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(BAN_RELOAD);
            loop {
                tick.tick().await;
                let Some(inner) = alive.upgrade() else {
                    return;
                };
                Im { inner }.load_bans().await;
            }
        });
    }

    async fn load_bans(&self) {
        let rows = match self.store().active_bans(now_ms()).await {
            Ok(rows) => rows,
            Err(error) => {
                tracing::warn!(%error, "cannot load bans");
                return;
            }
        };
        let bans = &self.safety().bans;
        let stale: Vec<String> = bans
            .iter()
            .map(|entry| entry.key().clone())
            .filter(|user| !rows.iter().any(|row| row.user_id == *user))
            .collect();
        for row in rows {
            bans.insert(row.user_id, row.until);
        }
        // Lifted elsewhere, or made here after the list was read: the row decides.
        for user in stale {
            match self.store().ban_of(&user).await {
                Ok(Some(ban)) if ban.until > now_ms() => {}
                Ok(_) => {
                    bans.remove(&user);
                }
                Err(error) => tracing::warn!(%error, "cannot load a ban"),
            }
        }
    }

    /// Counts one `action` of `user` if its rate allows it; returns whether it did.
    pub(super) async fn within_rate(&self, action: Action, user: &str) -> bool {
        let rate = self.safety().settings.actions.of(action);
        matches!(
            self.safety().limiter.check(&action.key(user), rate).await,
            Decision::Allow
        )
    }

    /// Counts one `action` of `user`.
    ///
    /// # Errors
    ///
    /// `RATE_LIMITED` beyond the action's rate.
    pub(super) async fn limit(&self, action: Action, user: &str) -> Result<(), AppError> {
        let rate = self.safety().settings.actions.of(action);
        match self.safety().limiter.check(&action.key(user), rate).await {
            Decision::Allow => Ok(()),
            Decision::Deny { retry_after } => Err(AppError::new(
                ErrorCode::RateLimited,
                format!(
                    "more than {} in {:?}; retry in {} ms",
                    rate.count,
                    rate.per,
                    retry_after.as_millis()
                ),
            )),
        }
    }

    /// The private conversation of `me` and `peer`, created when it does not exist yet: then
    /// counted against `limits.conversation_create_rate`, and refused when `peer` has blocked
    /// `me`. Returns its id.
    ///
    /// # Errors
    ///
    /// `RATE_LIMITED`, `BLOCKED`, `UNAVAILABLE`.
    pub(super) async fn open_private(&self, me: &str, peer: &str) -> Result<String, AppError> {
        let id: String = ConversationId::private(me, peer).into();
        if self.store().conversation(&id).await?.is_some() {
            return Ok(id);
        }
        self.limit(Action::ConversationCreate, me).await?;
        self.store()
            .create_private(me, peer)
            .await
            .map_err(AppError::from)
    }

    /// Refuses a banned user.
    ///
    /// # Errors
    ///
    /// `BANNED` while the ban lasts.
    pub(super) fn check_ban(&self, me: &str) -> Result<(), AppError> {
        let bans = &self.safety().bans;
        if let Some(until) = bans.get(me).map(|u| *u) {
            if until > now_ms() {
                return Err(AppError::new(
                    ErrorCode::Banned,
                    format!("you are banned from sending until {until}"),
                ));
            }
            bans.remove(me);
        }
        Ok(())
    }

    /// Forgets this node's cached ban of `user` (an admin lifted it).
    pub(super) fn forget_ban(&self, user: &str) {
        self.safety().bans.remove(user);
    }

    /// Applies bans, the send rate, blocks, sensitive words and the stranger rules to a
    /// message about to be stored; masking rewrites its content.
    ///
    /// # Errors
    ///
    /// `BANNED`, `RATE_LIMITED`, `BLOCKED`, `SENSITIVE_CONTENT`, `STRANGER_LIMIT`,
    /// `UNAVAILABLE`.
    pub(super) async fn check_send(
        &self,
        sender: &Identity,
        message: &mut NewMessage,
    ) -> Result<(), AppError> {
        let me = sender.user_id.as_str();
        let safety = self.safety();
        let settings = &safety.settings;
        self.check_ban(me)?;
        // A retry of a stored message passes the limits: it stores nothing and must get the
        // stored message back.
        let is_retry = || async {
            self.store()
                .has_client_msg(me, &message.client_msg_id)
                .await
                .map_err(AppError::from)
        };
        if let Decision::Deny { retry_after } = safety
            .limiter
            .check(&format!("send:{me}"), settings.send_rate)
            .await
            && !Box::pin(is_retry()).await?
        {
            return Err(AppError::new(
                ErrorCode::RateLimited,
                format!(
                    "more than {} messages in {:?}; retry in {} ms",
                    settings.send_rate.count,
                    settings.send_rate.per,
                    retry_after.as_millis()
                ),
            ));
        }
        let conversation = message.target.conversation_id();
        let peer = match &message.target {
            // Only a private conversation has a peer.
            Target::Private { .. } | Target::Conversation(_) => peer_of(&conversation, me),
            Target::System { .. } | Target::Assistant { .. } => None,
        };
        // The writer refuses the message with BLOCKED if the peer has blocked the sender.
        message.unless_blocked_by.clone_from(&peer);
        self.moderate(me, &conversation, &mut message.content)
            .await?;
        if let Some(peer) = &peer {
            // Boxed: only private sends under a contacts policy take it, and inline it would
            // grow every send's state.
            if self.private_policy_applies(sender) {
                Box::pin(self.check_private_policy(sender, peer)).await?;
            }
            self.check_stranger(me, peer, &conversation, message)
                .await?;
        }
        Ok(())
    }

    /// Applies the sensitive-word list to a text about to be stored (a send's, an edit's):
    /// records the hits, then masks the text or refuses it.
    ///
    /// # Errors
    ///
    /// `SENSITIVE_CONTENT` under `reject` (which may ban), `UNAVAILABLE`.
    pub(super) async fn moderate(
        &self,
        me: &str,
        conversation: &str,
        content: &mut String,
    ) -> Result<(), AppError> {
        let action = self.safety().settings.action;
        let list = self.safety().words.get();
        if list.is_empty() {
            return Ok(());
        }
        let Some(scan) = list.scan(content) else {
            return Ok(());
        };
        let action_name = match action {
            ModerationAction::Reject => "reject",
            ModerationAction::Mask => "mask",
        };
        let now = now_ms();
        let rows: Vec<HitRow> = scan
            .rules
            .iter()
            .map(|rule| HitRow {
                id: row_id(),
                user_id: me.to_owned(),
                conversation_id: Some(conversation.to_owned()),
                rule: rule.clone(),
                action: action_name.to_owned(),
                created_at: now,
            })
            .collect();
        tracing::info!(user = me, conversation, rules = ?scan.rules, action = action_name, "sensitive words");
        Box::pin(self.store().record_hits(&rows)).await?;
        match action {
            ModerationAction::Mask => {
                *content = scan.masked;
                Ok(())
            }
            ModerationAction::Reject => {
                Box::pin(self.consider_ban(me)).await?;
                Err(AppError::new(
                    ErrorCode::SensitiveContent,
                    "the message contains words that are not allowed",
                ))
            }
        }
    }

    async fn check_stranger(
        &self,
        me: &str,
        peer: &str,
        conversation: &str,
        message: &NewMessage,
    ) -> Result<(), AppError> {
        let safety = self.safety();
        if safety.replied.contains(conversation, peer) {
            return Ok(());
        }
        let store = self.store();
        if Box::pin(store.sent_count(conversation, peer, 1)).await? > 0 {
            safety.replied.insert(conversation, peer);
            return Ok(());
        }
        let settings = &safety.settings;
        let before_reply = i64::from(settings.stranger_before_reply);
        let sent = Box::pin(store.sent_count(conversation, me, before_reply)).await?;
        let retry = || async {
            store
                .has_client_msg(me, &message.client_msg_id)
                .await
                .map_err(AppError::from)
        };
        if sent >= before_reply {
            if Box::pin(retry()).await? {
                return Ok(());
            }
            return Err(AppError::new(
                ErrorCode::StrangerLimit,
                format!(
                    "{peer} has not replied yet: at most {before_reply} message(s) until they do"
                ),
            ));
        }
        if let Decision::Deny { .. } = safety
            .limiter
            .check(&format!("stranger:{me}"), settings.stranger_rate)
            .await
            && !Box::pin(retry()).await?
        {
            return Err(AppError::new(
                ErrorCode::StrangerLimit,
                format!(
                    "at most {} messages in {:?} to users who have not replied",
                    settings.stranger_rate.count, settings.stranger_rate.per
                ),
            ));
        }
        Ok(())
    }

    /// Bans `user` when their offences since the window started, or since their last ban ended
    /// if later, exceed the threshold. Offences are their rejected messages and the distinct
    /// users whose reports against them count (see [`Im::report`]): one account reporting many
    /// times is one offence.
    pub(super) async fn consider_ban(&self, user: &str) -> Result<(), AppError> {
        let settings = &self.safety().settings;
        let now = now_ms();
        let previous = self.store().ban_of(user).await?;
        if previous.as_ref().is_some_and(|ban| ban.until > now) {
            return Ok(());
        }
        let since =
            (now - millis(settings.ban_window)).max(previous.map_or(i64::MIN, |ban| ban.until));
        let offences = self.store().offences_since(user, since).await?;
        if offences <= i64::from(settings.ban_threshold) {
            return Ok(());
        }
        let until = now.saturating_add(millis(settings.ban_duration));
        self.store()
            .set_ban(&BanRow {
                user_id: user.to_owned(),
                reason: format!("{offences} reporters or rejected messages"),
                banned_at: now,
                until,
            })
            .await?;
        self.safety().bans.insert(user.to_owned(), until);
        tracing::warn!(user, offences, until, "user banned");
        Ok(())
    }
}

fn check_user(user: &str, caller: &Identity) -> Result<(), AppError> {
    if !is_valid_user_id(user) || user == caller.user_id {
        return Err(AppError::invalid("userId must be another user's id"));
    }
    Ok(())
}

impl Im {
    /// The caller blocks `user`: `user`'s messages to the caller are refused with `BLOCKED`,
    /// and `user` no longer sees the caller's presence.
    ///
    /// # Errors
    ///
    /// `INVALID_ARGUMENT` when `user` is not another user's id; `UNAVAILABLE`.
    pub async fn block(&self, caller: &Identity, user: &str) -> Result<(), AppError> {
        check_user(user, caller)?;
        self.store().block(&caller.user_id, user).await?;
        // A later SUBSCRIBE is refused by the presence guard; one made before goes now, as a
        // removed member's group subscription does.
        let presence = SubscriptionKey::Topic(format!("presence.{}", caller.user_id).into());
        self.hub().unsubscribe_user(user, &presence).await;
        Ok(())
    }

    /// The caller unblocks `user`.
    ///
    /// # Errors
    ///
    /// `INVALID_ARGUMENT` when `user` is not another user's id; `UNAVAILABLE`.
    pub async fn unblock(&self, caller: &Identity, user: &str) -> Result<(), AppError> {
        check_user(user, caller)?;
        self.store().unblock(&caller.user_id, user).await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::RepliedCache;

    #[test]
    fn replied_cache_remembers_each_user_of_a_conversation() {
        let cache = RepliedCache::new(10);
        cache.insert("p:alice:bob", "bob");
        cache.insert("p:alice:bob", "bob");
        assert!(cache.contains("p:alice:bob", "bob"));
        assert!(!cache.contains("p:alice:bob", "alice"));
        cache.insert("p:alice:bob", "alice");
        assert!(cache.contains("p:alice:bob", "alice"));
        assert_eq!(
            cache.users.get("p:alice:bob").map(|users| users.len()),
            Some(2)
        );
        assert!(!cache.contains("p:alice:carol", "carol"));
    }

    #[test]
    fn replied_cache_never_holds_more_conversations_than_its_capacity() {
        let cache = RepliedCache::new(3);
        for n in 0..10 {
            cache.insert(&format!("p:a:u{n}"), "a");
            assert!(cache.users.len() <= 3);
            // The newest is always remembered.
            assert!(cache.contains(&format!("p:a:u{n}"), "a"));
        }
        // A second user of a conversation held adds no conversation, and empties nothing.
        let before = cache.users.len();
        cache.insert("p:a:u9", "u9");
        assert_eq!(cache.users.len(), before);
        assert!(cache.contains("p:a:u9", "a"));
    }
}

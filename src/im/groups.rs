//! Groups: create, update, invite, remove, roles, exit, dissolve, and their events.

use serde::Deserialize;
use serde_json::json;

use super::group_settings::{GroupSettings, NICKNAME_MAX_CHARS, RulesChange};
use super::json::{ConversationJson, MemberJson};
use super::limits::Action;
use super::{Bounds, Im, URL_MAX_CHARS};
use crate::app_error::{AppError, ErrorCode};
use crate::auth::{Identity, is_valid_user_id};
use crate::domain::{ConversationId, ConversationKind, ConversationStatus, MemberRole};
use crate::hub::SubscriptionKey;
use crate::store::{GroupChange, SettingsChange};
use crate::util::now_ms;
use schema::ConversationRow;

/// `POST /api/v1/groups`.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CreateGroup {
    /// The group's name.
    pub name: String,
    /// Avatar URL.
    #[serde(default)]
    pub avatar: Option<String>,
    /// The first members besides the caller.
    #[serde(default)]
    pub member_ids: Vec<String>,
}

/// `PATCH /api/v1/groups/{id}`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UpdateGroup {
    /// New name.
    #[serde(default)]
    pub name: Option<String>,
    /// New avatar.
    #[serde(default)]
    pub avatar: Option<String>,
    /// New announcement.
    #[serde(default)]
    pub announcement: Option<String>,
    /// Whether plain members may invite.
    #[serde(default)]
    pub allow_invite: Option<bool>,
    /// Days after which messages are purged; `null` keeps them forever.
    #[serde(default, deserialize_with = "super::retention::present")]
    pub message_retention_days: Option<Option<i64>>,
    /// Whether plain members may leave.
    #[serde(default)]
    pub allow_member_exit: Option<bool>,
    /// Whether new members see the messages from before they joined.
    #[serde(default)]
    pub enable_message_history: Option<bool>,
    /// The group's own member limit; `null` removes it.
    #[serde(default, deserialize_with = "super::retention::present")]
    pub max_members: Option<Option<i64>>,
    /// Whether only the owner and admins may send.
    #[serde(default)]
    pub all_muted: Option<bool>,
}

/// `PUT /api/v1/groups/{id}/nickname`.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SetNickname {
    /// The caller's nickname in the group; `null` clears it.
    pub nickname: Option<String>,
}

/// `PUT /api/v1/groups/{id}/members/{userId}/mute`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Mute {
    /// For how long; until unmuted when absent or `null`.
    #[serde(default)]
    pub minutes: Option<i64>,
}

/// The longest timed mute, in minutes (a year); longer is "until unmuted".
const MAX_MUTE_MINUTES: i64 = 525_600;

fn check_users(users: &[String]) -> Result<(), AppError> {
    match users.iter().find(|u| !is_valid_user_id(u)) {
        Some(bad) => Err(AppError::invalid(format!("invalid user id {bad:?}"))),
        None => Ok(()),
    }
}

/// The fields every member is pushed on a change: bounded, so that one change cannot cut the
/// members as slow consumers.
fn check_fields(
    bounds: &Bounds,
    name: Option<&str>,
    avatar: Option<&str>,
    announcement: Option<&str>,
) -> Result<(), AppError> {
    let max = bounds.group_name_max_chars;
    if name.is_some_and(|name| name.trim().is_empty() || name.chars().count() > max) {
        return Err(AppError::invalid(format!(
            "name must be 1 to {max} characters"
        )));
    }
    if avatar.is_some_and(|url| url.chars().count() > URL_MAX_CHARS) {
        return Err(AppError::invalid(format!(
            "avatar must be a URL of at most {URL_MAX_CHARS} characters"
        )));
    }
    let max = bounds.group_announcement_max_chars;
    if announcement.is_some_and(|text| text.chars().count() > max) {
        return Err(AppError::invalid(format!(
            "announcement must be at most {max} characters"
        )));
    }
    Ok(())
}

impl Im {
    /// A group the caller belongs to, with its checked id and the caller's role (a stored
    /// role that does not parse counts as a plain member's).
    async fn group_role(
        &self,
        id: &str,
        caller: &str,
    ) -> Result<(ConversationId, ConversationRow, MemberRole), AppError> {
        let id = super::conversation_id(id)?;
        let (row, member) = self.membership(&id, caller).await?;
        if id.kind() != ConversationKind::Group {
            return Err(AppError::invalid(format!("{id} is not a group")));
        }
        if row.status.parse() != Ok(ConversationStatus::Active) {
            return Err(AppError::new(
                ErrorCode::Conflict,
                format!("{id} is dissolved"),
            ));
        }
        let role = member.role.parse().unwrap_or(MemberRole::Member);
        Ok((id, row, role))
    }

    /// The conversation as `user` sees it, with members for groups.
    ///
    /// # Errors
    ///
    /// `NOT_FOUND`, `NOT_MEMBER`, `UNAVAILABLE`.
    pub async fn conversation_view(
        &self,
        user: &str,
        id: &str,
    ) -> Result<ConversationJson, AppError> {
        self.membership(&super::conversation_id(id)?, user).await?;
        let summary =
            self.store().summary(id, user).await?.ok_or_else(|| {
                AppError::new(ErrorCode::NotFound, format!("no conversation {id}"))
            })?;
        let mut view = ConversationJson::from_summary(&summary, user);
        self.mark_mentions(user, std::slice::from_mut(&mut view))
            .await?;
        if summary.conversation.kind.parse() == Ok(ConversationKind::Group) {
            let members = self.store().members(id).await?;
            view.members = Some(members.iter().map(MemberJson::from).collect());
        }
        Ok(view)
    }

    /// Tells each user that a conversation changed for them.
    pub(super) async fn conversation_updated(&self, id: &str, users: &[String]) {
        for user in users {
            match self.conversation_view(user, id).await {
                Ok(view) => self.push_user(user, "events", "conversation.updated", &view),
                Err(_) => self.push_user(
                    user,
                    "events",
                    "conversation.updated",
                    &json!({"id": id, "removed": true}),
                ),
            }
        }
    }

    async fn member_ids(&self, id: &str) -> Result<Vec<String>, AppError> {
        Ok(self
            .store()
            .members(id)
            .await?
            .into_iter()
            .map(|m| m.user_id)
            .collect())
    }

    /// Creates a group owned by the caller.
    ///
    /// # Errors
    ///
    /// `INVALID_ARGUMENT`, `GROUP_FULL`, `RATE_LIMITED`, `UNAVAILABLE`.
    pub async fn create_group(
        &self,
        caller: &Identity,
        request: CreateGroup,
    ) -> Result<ConversationJson, AppError> {
        let name = request.name.trim();
        check_fields(
            &self.settings().bounds,
            Some(request.name.as_str()),
            request.avatar.as_deref(),
            None,
        )?;
        check_users(&request.member_ids)?;
        let mut members: Vec<String> = Vec::new();
        for user in &request.member_ids {
            if *user != caller.user_id && !members.contains(user) {
                members.push(user.clone());
            }
        }
        if members.len() + 1 > self.settings().max_group_members {
            return Err(AppError::new(
                ErrorCode::GroupFull,
                format!(
                    "a group has at most {} members",
                    self.settings().max_group_members
                ),
            ));
        }
        self.limit(Action::GroupCreate, &caller.user_id).await?;
        let id = ConversationId::group(&format!("{:032x}", rand::random::<u128>()));
        self.store()
            .create_group(
                id.as_str(),
                name,
                request.avatar.as_deref(),
                &caller.user_id,
                &members,
            )
            .await?;
        let mut everyone = vec![caller.user_id.clone()];
        everyone.extend(members.iter().cloned());
        self.record(
            "conversation.created",
            json!({"conversationId": id, "userIds": everyone}),
        )
        .await;
        self.conversation_updated(id.as_str(), &everyone).await;
        self.conversation_view(&caller.user_id, id.as_str()).await
    }

    /// Changes a group's name, avatar, announcement or invitation rule (owner or admin).
    ///
    /// # Errors
    ///
    /// `FORBIDDEN`, `NOT_MEMBER`, `NOT_FOUND`, `INVALID_ARGUMENT`.
    pub async fn update_group(
        &self,
        caller: &Identity,
        id: &str,
        request: UpdateGroup,
    ) -> Result<ConversationJson, AppError> {
        let (id, _, role) = self.group_role(id, &caller.user_id).await?;
        if !role.manages() {
            return Err(AppError::forbidden(
                "only the owner or an admin may change the group",
            ));
        }
        check_fields(
            &self.settings().bounds,
            request.name.as_deref(),
            request.avatar.as_deref(),
            request.announcement.as_deref(),
        )?;
        let rules = RulesChange {
            allow_member_exit: request.allow_member_exit,
            enable_message_history: request.enable_message_history,
            max_members: request.max_members,
            all_muted: request.all_muted,
        };
        if !rules.is_empty() {
            // Checked before anything is written, so a refusal changes nothing.
            let row = self.conversation(&id).await?;
            let members = self.member_ids(id.as_str()).await?.len();
            let settings =
                rules.apply(&row.settings, self.settings().max_group_members, members)?;
            if let Some(days) = request.message_retention_days {
                self.set_retention(caller, id.as_str(), days).await?;
            }
            // Applied again to what the retention change wrote.
            let row = self.conversation(&id).await?;
            let settings = rules
                .apply(&row.settings, self.settings().max_group_members, members)
                .unwrap_or(settings);
            self.store()
                .set_conversation_settings(id.as_str(), &settings)
                .await?;
        } else if let Some(days) = request.message_retention_days {
            self.set_retention(caller, id.as_str(), days).await?;
        }
        let change = GroupChange {
            name: request.name.map(|n| n.trim().to_owned()),
            avatar: request.avatar,
            announcement: request.announcement,
            allow_invite: request.allow_invite,
        };
        let row = self.store().update_group(id.as_str(), &change).await?;
        let rules = GroupSettings::of(&row.settings);
        self.push_group(
            &id,
            "group.updated",
            &json!({
                "conversationId": id,
                "name": row.name,
                "avatar": row.avatar,
                "announcement": row.announcement,
                "allowInvite": row.allow_invite,
                "messageRetentionDays": super::retention::retention_days(&row.settings),
                "allowMemberExit": rules.allow_member_exit,
                "enableMessageHistory": rules.enable_message_history,
                "maxMembers": rules.max_members,
                "allMuted": rules.all_muted,
                "by": caller.user_id,
            }),
        );
        let members = self.member_ids(id.as_str()).await?;
        self.conversation_updated(id.as_str(), &members).await;
        self.conversation_view(&caller.user_id, id.as_str()).await
    }

    /// Invites users: owner or admin, or any member when the group allows it.
    ///
    /// # Errors
    ///
    /// `FORBIDDEN`, `GROUP_FULL`, `INVALID_ARGUMENT`, `NOT_MEMBER`, `RATE_LIMITED`.
    pub async fn invite(
        &self,
        caller: &Identity,
        id: &str,
        users: &[String],
    ) -> Result<Vec<String>, AppError> {
        check_users(users)?;
        let (id, row, role) = self.group_role(id, &caller.user_id).await?;
        if !role.manages() && !row.allow_invite {
            return Err(AppError::forbidden("only the owner or an admin may invite"));
        }
        self.limit(Action::Invite, &caller.user_id).await?;
        let rules = GroupSettings::of(&row.settings);
        let added = self
            .store()
            .add_members_seeing(
                id.as_str(),
                users,
                rules.member_limit(self.settings().max_group_members),
                rules.enable_message_history,
            )
            .await?;
        if !added.is_empty() {
            self.record(
                "member.joined",
                json!({"conversationId": id, "userIds": added}),
            )
            .await;
            self.push_group(
                &id,
                "member.added",
                &json!({"conversationId": id, "userIds": added, "by": caller.user_id}),
            );
            self.conversation_updated(id.as_str(), &added).await;
        }
        Ok(added)
    }

    /// Removes a member: the owner may remove anyone else, an admin only plain members.
    /// The removed member stops receiving the group at once.
    ///
    /// # Errors
    ///
    /// `FORBIDDEN`, `NOT_FOUND`, `NOT_MEMBER`.
    pub async fn remove(&self, caller: &Identity, id: &str, user: &str) -> Result<(), AppError> {
        let (id, _, role) = self.group_role(id, &caller.user_id).await?;
        if user == caller.user_id {
            return Err(AppError::invalid("use exit to leave a group"));
        }
        let target = self
            .store()
            .member(id.as_str(), user)
            .await?
            .ok_or_else(|| AppError::new(ErrorCode::NotFound, format!("{user} is not a member")))?;
        // A stored role that does not parse is not a plain member: only the owner removes it.
        let target_role = target.role.parse().unwrap_or(MemberRole::Admin);
        if !role.outranks(target_role) {
            return Err(AppError::forbidden("not allowed to remove this member"));
        }
        self.store().remove_member(id.as_str(), user).await?;
        self.member_left(&id, user, &caller.user_id).await;
        Ok(())
    }

    async fn member_left(&self, id: &ConversationId, user: &str, by: &str) {
        self.record(
            "member.exited",
            json!({"conversationId": id, "userIds": [user], "by": by}),
        )
        .await;
        self.push_group(
            id,
            "member.removed",
            &json!({"conversationId": id, "userId": user, "by": by}),
        );
        if let Some(topic) = id.topic() {
            self.hub()
                .unsubscribe_user(user, &SubscriptionKey::Topic(topic.into()))
                .await;
        }
        self.conversation_updated(id.as_str(), &[user.to_owned()])
            .await;
    }

    /// Sets a member's role (owner only): `admin`, `member`, or `owner` to transfer ownership.
    ///
    /// # Errors
    ///
    /// `FORBIDDEN`, `INVALID_ARGUMENT`, `NOT_FOUND`.
    pub async fn set_role(
        &self,
        caller: &Identity,
        id: &str,
        user: &str,
        role: &str,
    ) -> Result<(), AppError> {
        let Ok(role) = role.parse::<MemberRole>() else {
            return Err(AppError::invalid("role must be owner, admin or member"));
        };
        let (id, _, caller_role) = self.group_role(id, &caller.user_id).await?;
        if caller_role != MemberRole::Owner {
            return Err(AppError::forbidden("only the owner may change roles"));
        }
        if user == caller.user_id {
            return Err(AppError::invalid(
                "the owner's role changes by transferring ownership",
            ));
        }
        self.store().set_role(id.as_str(), user, role).await?;
        self.push_group(
            &id,
            "member.role",
            &json!({"conversationId": id, "userId": user, "role": role, "by": caller.user_id}),
        );
        if role == MemberRole::Owner {
            self.push_group(
                &id,
                "member.role",
                &json!({"conversationId": id, "userId": caller.user_id, "role": MemberRole::Admin, "by": caller.user_id}),
            );
        }
        let members = self.member_ids(id.as_str()).await?;
        self.conversation_updated(id.as_str(), &members).await;
        Ok(())
    }

    /// Leaves a group; an owner must transfer ownership first.
    ///
    /// # Errors
    ///
    /// `CONFLICT` for the owner, `NOT_MEMBER`.
    pub async fn exit(&self, caller: &Identity, id: &str) -> Result<(), AppError> {
        let (id, row, role) = self.group_role(id, &caller.user_id).await?;
        if role == MemberRole::Owner {
            return Err(AppError::new(
                ErrorCode::Conflict,
                "the owner must transfer ownership before leaving",
            ));
        }
        if role == MemberRole::Member && !GroupSettings::of(&row.settings).allow_member_exit {
            return Err(AppError::forbidden(
                "this group does not let members leave; ask the owner or an admin",
            ));
        }
        self.store()
            .remove_member(id.as_str(), &caller.user_id)
            .await?;
        self.member_left(&id, &caller.user_id, &caller.user_id)
            .await;
        Ok(())
    }

    /// Dissolves a group (owner only).
    ///
    /// # Errors
    ///
    /// `FORBIDDEN`, `NOT_MEMBER`, `CONFLICT` when already dissolved.
    pub async fn dissolve(&self, caller: &Identity, id: &str) -> Result<(), AppError> {
        let (id, _, role) = self.group_role(id, &caller.user_id).await?;
        if role != MemberRole::Owner {
            return Err(AppError::forbidden("only the owner may dissolve the group"));
        }
        self.store().dissolve(id.as_str()).await?;
        self.record(
            "group.dissolved",
            json!({"conversationId": id, "userIds": [caller.user_id]}),
        )
        .await;
        self.push_group(
            &id,
            "group.dissolved",
            &json!({"conversationId": id, "by": caller.user_id}),
        );
        let members = self.member_ids(id.as_str()).await?;
        if let Some(topic) = id.topic() {
            for user in &members {
                self.hub()
                    .unsubscribe_user(user, &SubscriptionKey::Topic(topic.clone().into()))
                    .await;
            }
        }
        self.conversation_updated(id.as_str(), &members).await;
        Ok(())
    }
}

impl Im {
    /// Sets or clears the caller's nickname in a group; pushes `member.updated` to the group.
    ///
    /// # Errors
    ///
    /// `INVALID_ARGUMENT` (1 to 32 characters), `NOT_MEMBER`, `NOT_FOUND`, `CONFLICT`.
    pub async fn set_nickname(
        &self,
        caller: &Identity,
        id: &str,
        request: SetNickname,
    ) -> Result<(), AppError> {
        let nickname = request.nickname.as_deref().map(str::trim);
        if nickname.is_some_and(|n| n.is_empty() || n.chars().count() > NICKNAME_MAX_CHARS) {
            return Err(AppError::invalid(format!(
                "nickname must be 1 to {NICKNAME_MAX_CHARS} characters, or null"
            )));
        }
        let (id, _, _) = self.group_role(id, &caller.user_id).await?;
        self.limit(Action::MemberUpdate, &caller.user_id).await?;
        let change = SettingsChange {
            nickname: Some(nickname.map(str::to_owned)),
            ..SettingsChange::default()
        };
        self.store()
            .update_settings(id.as_str(), &caller.user_id, &change)
            .await?;
        self.push_group(
            &id,
            "member.updated",
            &json!({"conversationId": id, "userId": caller.user_id, "nickname": nickname}),
        );
        Ok(())
    }

    /// Mutes a member of a group (`minutes`, or until unmuted) or unmutes them (`None`): the
    /// owner may mute anyone else, an admin only plain members. Pushes `member.muted` or
    /// `member.unmuted` to the group.
    ///
    /// # Errors
    ///
    /// `FORBIDDEN`, `INVALID_ARGUMENT`, `NOT_FOUND`, `NOT_MEMBER`, `CONFLICT`.
    pub async fn mute_member(
        &self,
        caller: &Identity,
        id: &str,
        user: &str,
        mute: Option<Mute>,
    ) -> Result<(), AppError> {
        let (id, _, role) = self.group_role(id, &caller.user_id).await?;
        let target = self
            .store()
            .member(id.as_str(), user)
            .await?
            .ok_or_else(|| AppError::new(ErrorCode::NotFound, format!("{user} is not a member")))?;
        let target_role = target.role.parse().unwrap_or(MemberRole::Admin);
        if user == caller.user_id || !role.outranks(target_role) {
            return Err(AppError::forbidden("not allowed to mute this member"));
        }
        let until = match &mute {
            None => None,
            Some(Mute { minutes: None }) => Some(i64::MAX),
            Some(Mute {
                minutes: Some(minutes),
            }) => {
                if !(1..=MAX_MUTE_MINUTES).contains(minutes) {
                    return Err(AppError::invalid(format!(
                        "minutes must be 1 to {MAX_MUTE_MINUTES}, or null for until unmuted"
                    )));
                }
                Some(now_ms().saturating_add(minutes * 60_000))
            }
        };
        self.limit(Action::MemberUpdate, &caller.user_id).await?;
        let change = SettingsChange {
            muted_until: Some(until),
            ..SettingsChange::default()
        };
        self.store()
            .update_settings(id.as_str(), user, &change)
            .await?;
        let (event, body) = match until {
            Some(until) => (
                "member.muted",
                json!({"conversationId": id, "userId": user, "until": (until != i64::MAX).then_some(until), "by": caller.user_id}),
            ),
            None => (
                "member.unmuted",
                json!({"conversationId": id, "userId": user, "by": caller.user_id}),
            ),
        };
        self.push_group(&id, event, &body);
        Ok(())
    }

    /// Whether `member` may send to the group `row` now: not while they are muted, and only
    /// the owner and admins while the whole group is.
    ///
    /// # Errors
    ///
    /// `FORBIDDEN`.
    pub(super) fn check_group_send(
        row: &ConversationRow,
        member: &schema::MemberRow,
    ) -> Result<(), AppError> {
        if member.muted_until.is_some_and(|until| until > now_ms()) {
            return Err(AppError::forbidden("you are muted in this group"));
        }
        let manages = member.role.parse().is_ok_and(MemberRole::manages);
        if !manages && GroupSettings::of(&row.settings).all_muted {
            return Err(AppError::forbidden(
                "the group is muted: only the owner and admins may send",
            ));
        }
        Ok(())
    }
}

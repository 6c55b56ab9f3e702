//! Conversations and memberships: lists, lookups, per-user settings, and group changes.

use std::collections::HashMap;

use diesel::prelude::*;
use diesel_async::{AsyncConnection, RunQueryDsl};
use schema::{ConversationRow, MemberRow, MessageRow, conversations, members, messages};

use super::{Store, StoreError, with_conn};
use crate::domain::{ConversationKind, ConversationStatus, MemberRole};
use crate::util::now_ms;

/// One entry of a user's conversation list.
#[derive(Clone, Debug)]
pub struct ConversationSummary {
    /// The conversation.
    pub conversation: ConversationRow,
    /// The user's membership.
    pub member: MemberRow,
    /// The newest message.
    pub last_message: Option<MessageRow>,
    /// Current members.
    pub member_count: i64,
}

impl ConversationSummary {
    /// Messages after the user's read position (their own never count: sending marks read),
    /// and after the point where they cleared the conversation's history.
    pub fn unread(&self) -> i64 {
        let seen = self
            .member
            .read_seq
            .max(self.member.joined_seq)
            .max(self.member.cleared_seq);
        (self.conversation.last_seq - seen).max(0)
    }

    /// Whether the user hid it and no message came since.
    pub fn hidden(&self) -> bool {
        self.conversation.last_seq <= self.member.hidden_seq
    }
}

/// A page of a conversation list.
#[derive(Clone, Debug)]
pub struct ConversationPage {
    /// The entries, pinned first, then by last activity.
    pub items: Vec<ConversationSummary>,
    /// Where the next page starts, if there is one.
    pub next_cursor: Option<String>,
}

/// A membership's settings to change; `None` leaves a setting as it is.
#[derive(Clone, Debug, Default, AsChangeset)]
#[diesel(table_name = members)]
pub struct SettingsChange {
    /// Pinned.
    pub pinned: Option<bool>,
    /// Muted.
    pub muted: Option<bool>,
    /// Archived.
    pub archived: Option<bool>,
    /// Their nickname in a group (`Some(None)` clears it).
    pub nickname: Option<Option<String>>,
    /// Until when they may not send in a group (`Some(None)` unmutes).
    pub muted_until: Option<Option<i64>>,
}

impl SettingsChange {
    fn is_empty(&self) -> bool {
        self.pinned.is_none()
            && self.muted.is_none()
            && self.archived.is_none()
            && self.nickname.is_none()
            && self.muted_until.is_none()
    }
}

/// Group fields to change; `None` leaves a field as it is.
#[derive(Clone, Debug, Default, AsChangeset)]
#[diesel(table_name = conversations)]
pub struct GroupChange {
    /// Name.
    pub name: Option<String>,
    /// Avatar URL.
    pub avatar: Option<String>,
    /// Announcement.
    pub announcement: Option<String>,
    /// Whether plain members may invite.
    pub allow_invite: Option<bool>,
}

/// A list cursor: `<pinned 0|1>.<last activity>.<conversation id>`.
fn parse_cursor(cursor: &str) -> Option<(bool, i64, String)> {
    let mut parts = cursor.splitn(3, '.');
    let pinned = parts.next()? == "1";
    let activity = parts.next()?.parse().ok()?;
    let id = parts.next()?.to_owned();
    Some((pinned, activity, id))
}

/// A new active conversation with nothing in it yet.
pub(super) fn new_conversation(id: String, kind: ConversationKind, now: i64) -> ConversationRow {
    ConversationRow {
        id,
        kind: kind.as_str().to_owned(),
        name: None,
        avatar: None,
        announcement: None,
        owner_id: None,
        allow_invite: false,
        last_seq: 0,
        last_message_id: None,
        last_activity_at: now,
        status: ConversationStatus::Active.as_str().to_owned(),
        settings: "{}".to_owned(),
        created_at: now,
    }
}

/// A member who joined at `seq` and has read up to it.
pub(super) fn member_row(
    conversation: &str,
    user: &str,
    role: MemberRole,
    now: i64,
    seq: i64,
) -> MemberRow {
    MemberRow {
        conversation_id: conversation.to_owned(),
        user_id: user.to_owned(),
        role: role.as_str().to_owned(),
        joined_at: now,
        left_at: None,
        joined_seq: seq,
        read_seq: seq,
        cleared_seq: 0,
        delivered_seq: 0,
        pinned: false,
        muted: false,
        archived: false,
        hidden_seq: -1,
        nickname: None,
        muted_until: None,
    }
}

impl Store {
    /// A conversation by id.
    ///
    /// # Errors
    ///
    /// [`StoreError`] when the database fails.
    pub async fn conversation(&self, id: &str) -> Result<Option<ConversationRow>, StoreError> {
        self.timed(async {
            with_conn!(&self.pool, |conn| {
                Ok(conversations::table
                    .find(id)
                    .select(ConversationRow::as_select())
                    .first(conn)
                    .await
                    .optional()?)
            })
        })
        .await
    }

    /// A user's current membership of a conversation.
    ///
    /// # Errors
    ///
    /// [`StoreError`] when the database fails.
    pub async fn member(
        &self,
        conversation: &str,
        user: &str,
    ) -> Result<Option<MemberRow>, StoreError> {
        self.timed(async {
            with_conn!(&self.pool, |conn| {
                Ok(members::table
                    .find((conversation, user))
                    .filter(members::left_at.is_null())
                    .select(MemberRow::as_select())
                    .first(conn)
                    .await
                    .optional()?)
            })
        })
        .await
    }

    /// The current members of a conversation, in join order.
    ///
    /// # Errors
    ///
    /// [`StoreError`] when the database fails.
    pub async fn members(&self, conversation: &str) -> Result<Vec<MemberRow>, StoreError> {
        self.timed(async {
            with_conn!(&self.pool, |conn| {
                Ok(members::table
                    .filter(members::conversation_id.eq(conversation))
                    .filter(members::left_at.is_null())
                    .order((members::joined_at.asc(), members::user_id.asc()))
                    .select(MemberRow::as_select())
                    .load(conn)
                    .await?)
            })
        })
        .await
    }

    /// A page of `user`'s conversations: pinned first, then by last activity.
    ///
    /// # Errors
    ///
    /// [`StoreError`] when the database fails.
    pub async fn conversations_of(
        &self,
        user: &str,
        limit: i64,
        cursor: Option<&str>,
    ) -> Result<ConversationPage, StoreError> {
        let limit = limit.clamp(1, 100);
        let cursor = cursor.and_then(parse_cursor);
        let mut page = self
            .timed(async {
                with_conn!(&self.pool, |conn| {
                    let mut query = members::table
                        .inner_join(conversations::table)
                        .filter(members::user_id.eq(user))
                        .filter(members::left_at.is_null())
                        // Hidden until its next message.
                        .filter(conversations::last_seq.gt(members::hidden_seq))
                        .select((ConversationRow::as_select(), MemberRow::as_select()))
                        .order((
                            members::pinned.desc(),
                            conversations::last_activity_at.desc(),
                            conversations::id.desc(),
                        ))
                        .limit(limit + 1)
                        .into_boxed();
                    if let Some((pinned, activity, id)) = cursor {
                        let same_pin_after = members::pinned.eq(pinned).and(
                            conversations::last_activity_at.lt(activity).or(
                                conversations::last_activity_at
                                    .eq(activity)
                                    .and(conversations::id.lt(id)),
                            ),
                        );
                        query = if pinned {
                            query.filter(members::pinned.eq(false).or(same_pin_after))
                        } else {
                            query.filter(same_pin_after)
                        };
                    }
                    let mut rows: Vec<(ConversationRow, MemberRow)> = query.load(conn).await?;
                    let more = rows.len() > usize::try_from(limit).unwrap_or(usize::MAX);
                    rows.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
                    let ids: Vec<String> = rows.iter().map(|(c, _)| c.id.clone()).collect();
                    let last_ids: Vec<i64> =
                        rows.iter().filter_map(|(c, _)| c.last_message_id).collect();
                    let last_messages: HashMap<i64, MessageRow> = messages::table
                        .filter(messages::id.eq_any(&last_ids))
                        .select(MessageRow::as_select())
                        .load(conn)
                        .await?
                        .into_iter()
                        .map(|m| (m.id, m))
                        .collect();
                    let counts: HashMap<String, i64> = members::table
                        .filter(members::conversation_id.eq_any(&ids))
                        .filter(members::left_at.is_null())
                        .group_by(members::conversation_id)
                        .select((members::conversation_id, diesel::dsl::count_star()))
                        .load::<(String, i64)>(conn)
                        .await?
                        .into_iter()
                        .collect();
                    let next_cursor = more.then(|| rows.last()).flatten().map(|(c, m)| {
                        format!("{}.{}.{}", u8::from(m.pinned), c.last_activity_at, c.id)
                    });
                    let items = rows
                        .into_iter()
                        .map(|(conversation, member)| ConversationSummary {
                            last_message: conversation
                                .last_message_id
                                .and_then(|id| last_messages.get(&id).cloned()),
                            member_count: counts.get(&conversation.id).copied().unwrap_or(0),
                            conversation,
                            member,
                        })
                        .collect();
                    Ok(ConversationPage { items, next_cursor })
                })
            })
            .await?;
        self.visible_last_messages(user, &mut page.items).await?;
        let mut last: Vec<MessageRow> = page
            .items
            .iter_mut()
            .filter_map(|item| item.last_message.take())
            .collect();
        self.with_statuses(&mut last).await?;
        let mut last = last.into_iter().peekable();
        for item in &mut page.items {
            if last
                .peek()
                .is_some_and(|m| m.conversation_id == item.conversation.id)
            {
                item.last_message = last.next();
            }
        }
        Ok(page)
    }

    /// One conversation as the list shows it, for `user`.
    ///
    /// # Errors
    ///
    /// [`StoreError`] when the database fails.
    pub async fn summary(
        &self,
        conversation: &str,
        user: &str,
    ) -> Result<Option<ConversationSummary>, StoreError> {
        let Some(row) = self.conversation(conversation).await? else {
            return Ok(None);
        };
        let Some(member) = self.member(conversation, user).await? else {
            return Ok(None);
        };
        let last_message = match row.last_message_id {
            Some(id) => self.message(id).await?,
            None => None,
        };
        let member_count = i64::try_from(self.members(conversation).await?.len()).unwrap_or(0);
        let mut summary = ConversationSummary {
            conversation: row,
            member,
            last_message,
            member_count,
        };
        self.visible_last_messages(user, std::slice::from_mut(&mut summary))
            .await?;
        if let Some(message) = &mut summary.last_message {
            self.with_statuses(std::slice::from_mut(message)).await?;
        }
        Ok(Some(summary))
    }

    /// Changes a current member's settings.
    ///
    /// # Errors
    ///
    /// [`StoreError::NotFound`] when the user is not a member.
    pub async fn update_settings(
        &self,
        conversation: &str,
        user: &str,
        change: &SettingsChange,
    ) -> Result<(), StoreError> {
        if change.is_empty() {
            return Ok(());
        }
        self.timed(async {
            with_conn!(&self.pool, |conn| {
                let changed = diesel::update(
                    members::table
                        .find((conversation, user))
                        .filter(members::left_at.is_null()),
                )
                .set(change)
                .execute(conn)
                .await?;
                if changed == 0 {
                    return Err(StoreError::NotFound);
                }
                Ok(())
            })
        })
        .await
    }

    /// Creates a group owned by `owner` with `members` (the owner need not be among them).
    ///
    /// # Errors
    ///
    /// [`StoreError`] when the database fails.
    pub async fn create_group(
        &self,
        id: &str,
        name: &str,
        avatar: Option<&str>,
        owner: &str,
        members: &[String],
    ) -> Result<ConversationRow, StoreError> {
        let now = now_ms();
        let row = ConversationRow {
            name: Some(name.to_owned()),
            avatar: avatar.map(str::to_owned),
            owner_id: Some(owner.to_owned()),
            ..new_conversation(id.to_owned(), ConversationKind::Group, now)
        };
        let mut rows = vec![member_row(id, owner, MemberRole::Owner, now, 0)];
        rows.extend(
            members
                .iter()
                .filter(|m| m.as_str() != owner)
                .map(|m| member_row(id, m, MemberRole::Member, now, 0)),
        );
        self.timed(async {
            with_conn!(&self.pool, |conn| {
                conn.transaction(async |conn| {
                    diesel::insert_into(conversations::table)
                        .values(&row)
                        .execute(conn)
                        .await?;
                    super::InsertRows::insert_members(conn, &rows).await?;
                    Ok::<_, StoreError>(())
                })
                .await
            })
        })
        .await?;
        Ok(row)
    }

    /// Changes a group's fields; returns the updated row.
    ///
    /// # Errors
    ///
    /// [`StoreError::NotFound`] for an unknown or dissolved group.
    pub async fn update_group(
        &self,
        id: &str,
        change: &GroupChange,
    ) -> Result<ConversationRow, StoreError> {
        let now = now_ms();
        self.timed(async {
            with_conn!(&self.pool, |conn| {
                let changed = diesel::update(
                    conversations::table
                        .find(id)
                        .filter(conversations::status.eq(ConversationStatus::Active.as_str())),
                )
                .set((change, conversations::last_activity_at.eq(now)))
                .execute(conn)
                .await?;
                if changed == 0 {
                    return Err(StoreError::NotFound);
                }
                Ok(conversations::table
                    .find(id)
                    .select(ConversationRow::as_select())
                    .first(conn)
                    .await?)
            })
        })
        .await
    }

    /// Adds users to a group, rejoining former members; refuses to go above `max_members`.
    /// Returns the users actually added (current members are skipped).
    ///
    /// # Errors
    ///
    /// [`StoreError::GroupFull`] when the group would exceed `max_members`.
    pub async fn add_members(
        &self,
        id: &str,
        users: &[String],
        max_members: usize,
    ) -> Result<Vec<String>, StoreError> {
        self.add_members_seeing(id, users, max_members, false).await
    }

    /// As [`Store::add_members`]; with `history`, the new members see the messages from before
    /// they joined (their join point is the start), else only those after.
    ///
    /// # Errors
    ///
    /// As [`Store::add_members`].
    pub async fn add_members_seeing(
        &self,
        id: &str,
        users: &[String],
        max_members: usize,
        history: bool,
    ) -> Result<Vec<String>, StoreError> {
        let now = now_ms();
        self.timed(async {
            with_conn!(&self.pool, |conn| {
                conn.transaction(async |conn| {
                    // The update takes the conversation's row lock (PostgreSQL), so concurrent
                    // invitations cannot both pass the size check.
                    let last_seq: i64 = diesel::update(
                        conversations::table
                            .find(id)
                            .filter(conversations::status.eq(ConversationStatus::Active.as_str())),
                    )
                    .set(conversations::last_activity_at.eq(now))
                    .returning(conversations::last_seq)
                    .get_result(conn)
                    .await
                    .optional()?
                    .ok_or(StoreError::NotFound)?;
                    let current: Vec<String> = members::table
                        .filter(members::conversation_id.eq(id))
                        .filter(members::left_at.is_null())
                        .select(members::user_id)
                        .load(conn)
                        .await?;
                    let mut added: Vec<String> = Vec::new();
                    for user in users {
                        if !current.contains(user) && !added.contains(user) {
                            added.push(user.clone());
                        }
                    }
                    if current.len() + added.len() > max_members {
                        return Err(StoreError::GroupFull);
                    }
                    let joined_seq = if history { 0 } else { last_seq };
                    for user in &added {
                        let rejoined = diesel::update(members::table.find((id, user)))
                            .set((
                                members::left_at.eq(None::<i64>),
                                members::role.eq(MemberRole::Member.as_str()),
                                members::joined_at.eq(now),
                                members::joined_seq.eq(joined_seq),
                                members::read_seq.eq(last_seq),
                                members::hidden_seq.eq(-1),
                                members::nickname.eq(None::<String>),
                                members::muted_until.eq(None::<i64>),
                            ))
                            .execute(conn)
                            .await?;
                        if rejoined == 0 {
                            let row = MemberRow {
                                joined_seq,
                                ..member_row(id, user, MemberRole::Member, now, last_seq)
                            };
                            diesel::insert_into(members::table)
                                .values(&row)
                                .execute(conn)
                                .await?;
                        }
                    }
                    Ok(added)
                })
                .await
            })
        })
        .await
    }

    /// Ends a membership (removal or exit).
    ///
    /// # Errors
    ///
    /// [`StoreError::NotFound`] when the user is not a member.
    pub async fn remove_member(&self, id: &str, user: &str) -> Result<(), StoreError> {
        let now = now_ms();
        self.timed(async {
            with_conn!(&self.pool, |conn| {
                let changed = diesel::update(
                    members::table
                        .find((id, user))
                        .filter(members::left_at.is_null()),
                )
                .set(members::left_at.eq(Some(now)))
                .execute(conn)
                .await?;
                if changed == 0 {
                    return Err(StoreError::NotFound);
                }
                Ok(())
            })
        })
        .await
    }

    /// Sets a member's role. With `owner`, ownership moves to `user` and the previous owner
    /// becomes an admin.
    ///
    /// # Errors
    ///
    /// [`StoreError::NotFound`] when the user is not a member.
    pub async fn set_role(&self, id: &str, user: &str, role: MemberRole) -> Result<(), StoreError> {
        self.timed(async {
            with_conn!(&self.pool, |conn| {
                conn.transaction(async |conn| {
                    if role == MemberRole::Owner {
                        diesel::update(
                            members::table
                                .filter(members::conversation_id.eq(id))
                                .filter(members::role.eq(MemberRole::Owner.as_str())),
                        )
                        .set(members::role.eq(MemberRole::Admin.as_str()))
                        .execute(conn)
                        .await?;
                        diesel::update(conversations::table.find(id))
                            .set(conversations::owner_id.eq(Some(user)))
                            .execute(conn)
                            .await?;
                    }
                    let changed = diesel::update(
                        members::table
                            .find((id, user))
                            .filter(members::left_at.is_null()),
                    )
                    .set(members::role.eq(role.as_str()))
                    .execute(conn)
                    .await?;
                    if changed == 0 {
                        return Err(StoreError::NotFound);
                    }
                    Ok(())
                })
                .await
            })
        })
        .await
    }

    /// Dissolves a group: nobody can send to it any more; history stays readable.
    ///
    /// # Errors
    ///
    /// [`StoreError::NotFound`] for an unknown or already dissolved group.
    pub async fn dissolve(&self, id: &str) -> Result<(), StoreError> {
        let now = now_ms();
        self.timed(async {
            with_conn!(&self.pool, |conn| {
                let changed = diesel::update(
                    conversations::table
                        .find(id)
                        .filter(conversations::status.eq(ConversationStatus::Active.as_str())),
                )
                .set((
                    conversations::status.eq(ConversationStatus::Dissolved.as_str()),
                    conversations::last_activity_at.eq(now),
                ))
                .execute(conn)
                .await?;
                if changed == 0 {
                    return Err(StoreError::NotFound);
                }
                Ok(())
            })
        })
        .await
    }
}

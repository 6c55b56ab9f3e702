//! Safety and content tables: blocks, reports, sensitive-word hits, bans, uploaded files (their
//! shares are in [`super::shares`]), and the retention purge.
//!
//! The tables are declared here rather than in the `schema` crate because only this module
//! queries them.

use diesel::prelude::*;
use diesel_async::{AsyncConnection, RunQueryDsl};
use schema::{conversations, members, message_deletions, messages};

use super::{Store, StoreError, with_conn};
use crate::util::now_ms;

/// The tables of migration `2026-11-23-000002_safety`.
pub mod tables {
    #![allow(missing_docs)]

    diesel::table! {
        /// Who blocked whom.
        blocks (user_id, blocked_id) {
            user_id -> Text,
            blocked_id -> Text,
            created_at -> BigInt,
        }
    }

    diesel::table! {
        /// Abuse reports.
        reports (id) {
            id -> BigInt,
            reporter_id -> Text,
            user_id -> Text,
            message_id -> Nullable<BigInt>,
            reason -> Text,
            created_at -> BigInt,
            counted -> Bool,
        }
    }

    diesel::table! {
        /// Sensitive-word hits.
        moderation_hits (id) {
            id -> BigInt,
            user_id -> Text,
            conversation_id -> Nullable<Text>,
            rule -> Text,
            action -> Text,
            created_at -> BigInt,
        }
    }

    diesel::table! {
        /// Bans, one row per user ever banned.
        bans (user_id) {
            user_id -> Text,
            reason -> Text,
            banned_at -> BigInt,
            until -> BigInt,
        }
    }

    diesel::table! {
        /// Uploaded files.
        files (id) {
            id -> Text,
            owner_id -> Text,
            name -> Text,
            mime -> Text,
            size -> BigInt,
            width -> Nullable<BigInt>,
            height -> Nullable<BigInt>,
            has_thumbnail -> Bool,
            created_at -> BigInt,
        }
    }
}

use tables::{bans, blocks, files, moderation_hits, reports};

/// A row of `reports`.
#[derive(Clone, Debug, PartialEq, Eq, Queryable, Selectable, Insertable)]
#[diesel(table_name = reports)]
pub struct ReportRow {
    /// Generated id.
    pub id: i64,
    /// Who reported.
    pub reporter_id: String,
    /// Who is reported.
    pub user_id: String,
    /// The message reported, if any.
    pub message_id: Option<i64>,
    /// Why.
    pub reason: String,
    /// When.
    pub created_at: i64,
    /// Whether it counts toward an automatic ban: its reporter had received a message from the
    /// reported user when they made it.
    pub counted: bool,
}

/// A row of `moderation_hits`.
#[derive(Clone, Debug, PartialEq, Eq, Queryable, Selectable, Insertable)]
#[diesel(table_name = moderation_hits)]
pub struct HitRow {
    /// Generated id.
    pub id: i64,
    /// The sender.
    pub user_id: String,
    /// Where the message was going.
    pub conversation_id: Option<String>,
    /// The word that matched.
    pub rule: String,
    /// `reject` or `mask`.
    pub action: String,
    /// When.
    pub created_at: i64,
}

/// A row of `bans`.
#[derive(Clone, Debug, PartialEq, Eq, Queryable, Selectable, Insertable, AsChangeset)]
#[diesel(table_name = bans)]
pub struct BanRow {
    /// The banned user.
    pub user_id: String,
    /// Why.
    pub reason: String,
    /// Since when.
    pub banned_at: i64,
    /// Until when (epoch ms); the ban is over from then on.
    pub until: i64,
}

/// A row of `files`.
#[derive(Clone, Debug, PartialEq, Eq, Queryable, Selectable, Insertable)]
#[diesel(table_name = files)]
pub struct FileRow {
    /// Random id, also the key in the file store.
    pub id: String,
    /// The uploader.
    pub owner_id: String,
    /// The name given at upload.
    pub name: String,
    /// The content type (checked against the bytes for images).
    pub mime: String,
    /// Bytes.
    pub size: i64,
    /// Image width.
    pub width: Option<i64>,
    /// Image height.
    pub height: Option<i64>,
    /// Whether a thumbnail is stored.
    pub has_thumbnail: bool,
    /// When.
    pub created_at: i64,
}

/// A fresh id for rows that no one refers to by number: time-ordered with random low bits, and
/// larger than every id this process made before, so that rows made within one millisecond
/// (reports, contact requests) still list in the order they were made.
pub fn row_id() -> i64 {
    use std::sync::atomic::{AtomicI64, Ordering};
    static LAST: AtomicI64 = AtomicI64::new(0);
    let candidate = (now_ms() << 20) | i64::from(rand::random::<u32>() & 0xf_ffff);
    let mut last = AtomicI64::load(&LAST, Ordering::Relaxed);
    loop {
        let next = candidate.max(last.saturating_add(1));
        match LAST.compare_exchange_weak(last, next, Ordering::Relaxed, Ordering::Relaxed) {
            Ok(_) => return next,
            Err(current) => last = current,
        }
    }
}

impl Store {
    /// `user` blocks `blocked`; blocking twice is not an error.
    ///
    /// # Errors
    ///
    /// [`StoreError`] when the database fails.
    pub async fn block(&self, user: &str, blocked: &str) -> Result<(), StoreError> {
        let now = now_ms();
        self.timed(async {
            with_conn!(&self.pool, |conn| {
                diesel::insert_into(blocks::table)
                    .values((
                        blocks::user_id.eq(user),
                        blocks::blocked_id.eq(blocked),
                        blocks::created_at.eq(now),
                    ))
                    .on_conflict_do_nothing()
                    .execute(conn)
                    .await?;
                Ok(())
            })
        })
        .await
    }

    /// `user` unblocks `blocked`.
    ///
    /// # Errors
    ///
    /// [`StoreError`] when the database fails.
    pub async fn unblock(&self, user: &str, blocked: &str) -> Result<(), StoreError> {
        self.timed(async {
            with_conn!(&self.pool, |conn| {
                diesel::delete(
                    blocks::table
                        .filter(blocks::user_id.eq(user))
                        .filter(blocks::blocked_id.eq(blocked)),
                )
                .execute(conn)
                .await?;
                Ok(())
            })
        })
        .await
    }

    /// Stores a report.
    ///
    /// # Errors
    ///
    /// [`StoreError`] when the database fails.
    pub async fn add_report(&self, row: &ReportRow) -> Result<(), StoreError> {
        self.timed(async {
            with_conn!(&self.pool, |conn| {
                diesel::insert_into(reports::table)
                    .values(row)
                    .execute(conn)
                    .await?;
                Ok(())
            })
        })
        .await
    }

    /// Records sensitive-word hits.
    ///
    /// # Errors
    ///
    /// [`StoreError`] when the database fails.
    pub async fn record_hits(&self, rows: &[HitRow]) -> Result<(), StoreError> {
        self.timed(async {
            with_conn!(&self.pool, |conn| {
                for row in rows {
                    diesel::insert_into(moderation_hits::table)
                        .values(row)
                        .execute(conn)
                        .await?;
                }
                Ok(())
            })
        })
        .await
    }

    /// The distinct reporters whose counted reports against `user` were made since `since`,
    /// plus `user`'s rejected messages (one per message, however many words it hit) since then.
    ///
    /// # Errors
    ///
    /// [`StoreError`] when the database fails.
    pub async fn offences_since(&self, user: &str, since: i64) -> Result<i64, StoreError> {
        self.timed(async {
            with_conn!(&self.pool, |conn| {
                let reported: i64 = reports::table
                    .filter(reports::user_id.eq(user))
                    .filter(reports::counted.eq(true))
                    .filter(reports::created_at.gt(since))
                    .select(diesel::dsl::count(reports::reporter_id).aggregate_distinct())
                    .get_result(conn)
                    .await?;
                let rejected: i64 = moderation_hits::table
                    .filter(moderation_hits::user_id.eq(user))
                    .filter(moderation_hits::created_at.gt(since))
                    .filter(moderation_hits::action.eq("reject"))
                    .select(moderation_hits::created_at)
                    .distinct()
                    .count()
                    .get_result(conn)
                    .await?;
                Ok(reported + rejected)
            })
        })
        .await
    }

    /// The user's ban row, current or past.
    ///
    /// # Errors
    ///
    /// [`StoreError`] when the database fails.
    pub async fn ban_of(&self, user: &str) -> Result<Option<BanRow>, StoreError> {
        self.timed(async {
            with_conn!(&self.pool, |conn| {
                Ok(bans::table
                    .find(user)
                    .select(BanRow::as_select())
                    .first(conn)
                    .await
                    .optional()?)
            })
        })
        .await
    }

    /// Bans a user (replacing any earlier ban row).
    ///
    /// # Errors
    ///
    /// [`StoreError`] when the database fails.
    pub async fn set_ban(&self, row: &BanRow) -> Result<(), StoreError> {
        self.timed(async {
            with_conn!(&self.pool, |conn| {
                diesel::insert_into(bans::table)
                    .values(row)
                    .on_conflict(bans::user_id)
                    .do_update()
                    .set(row)
                    .execute(conn)
                    .await?;
                Ok(())
            })
        })
        .await
    }

    /// Bans in force at `now`, newest first.
    ///
    /// # Errors
    ///
    /// [`StoreError`] when the database fails.
    pub async fn active_bans(&self, now: i64) -> Result<Vec<BanRow>, StoreError> {
        self.timed(async {
            with_conn!(&self.pool, |conn| {
                Ok(bans::table
                    .filter(bans::until.gt(now))
                    .order(bans::banned_at.desc())
                    .limit(1000)
                    .select(BanRow::as_select())
                    .load(conn)
                    .await?)
            })
        })
        .await
    }

    /// Ends a ban now. Returns whether one was in force.
    ///
    /// # Errors
    ///
    /// [`StoreError`] when the database fails.
    pub async fn lift_ban(&self, user: &str, now: i64) -> Result<bool, StoreError> {
        self.timed(async {
            with_conn!(&self.pool, |conn| {
                let changed = diesel::update(
                    bans::table
                        .filter(bans::user_id.eq(user))
                        .filter(bans::until.gt(now)),
                )
                .set(bans::until.eq(now))
                .execute(conn)
                .await?;
                Ok(changed > 0)
            })
        })
        .await
    }

    /// Messages `user` has sent in a conversation, counting at most `cap` of them.
    ///
    /// # Errors
    ///
    /// [`StoreError`] when the database fails.
    pub async fn sent_count(
        &self,
        conversation: &str,
        user: &str,
        cap: i64,
    ) -> Result<i64, StoreError> {
        self.timed(async {
            with_conn!(&self.pool, |conn| {
                let ids: Vec<i64> = messages::table
                    .filter(messages::conversation_id.eq(conversation))
                    .filter(messages::sender_id.eq(user))
                    .select(messages::id)
                    .limit(cap)
                    .load(conn)
                    .await?;
                Ok(i64::try_from(ids.len()).unwrap_or(i64::MAX))
            })
        })
        .await
    }

    /// Whether `user` already sent `client_msg_id` (a retry, which the limits let through).
    ///
    /// # Errors
    ///
    /// [`StoreError`] when the database fails.
    pub async fn has_client_msg(
        &self,
        user: &str,
        client_msg_id: &str,
    ) -> Result<bool, StoreError> {
        self.timed(async {
            with_conn!(&self.pool, |conn| {
                let count: i64 = messages::table
                    .filter(messages::sender_id.eq(user))
                    .filter(messages::client_msg_id.eq(client_msg_id))
                    .count()
                    .get_result(conn)
                    .await?;
                Ok(count > 0)
            })
        })
        .await
    }

    /// Stores an uploaded file's row.
    ///
    /// # Errors
    ///
    /// [`StoreError`] when the database fails.
    pub async fn add_file(&self, row: &FileRow) -> Result<(), StoreError> {
        self.timed(async {
            with_conn!(&self.pool, |conn| {
                diesel::insert_into(files::table)
                    .values(row)
                    .execute(conn)
                    .await?;
                Ok(())
            })
        })
        .await
    }

    /// A file by id.
    ///
    /// # Errors
    ///
    /// [`StoreError`] when the database fails.
    pub async fn file(&self, id: &str) -> Result<Option<FileRow>, StoreError> {
        self.timed(async {
            with_conn!(&self.pool, |conn| {
                Ok(files::table
                    .find(id)
                    .select(FileRow::as_select())
                    .first(conn)
                    .await
                    .optional()?)
            })
        })
        .await
    }

    /// Conversations whose settings mention a retention, with their settings JSON.
    ///
    /// # Errors
    ///
    /// [`StoreError`] when the database fails.
    pub async fn retention_settings(&self) -> Result<Vec<(String, String)>, StoreError> {
        self.timed(async {
            with_conn!(&self.pool, |conn| {
                Ok(conversations::table
                    .filter(conversations::settings.like("%messageRetentionDays%"))
                    .select((conversations::id, conversations::settings))
                    .load(conn)
                    .await?)
            })
        })
        .await
    }

    /// Replaces a conversation's settings JSON.
    ///
    /// # Errors
    ///
    /// [`StoreError`] when the database fails.
    pub async fn set_conversation_settings(
        &self,
        conversation: &str,
        settings: &str,
    ) -> Result<(), StoreError> {
        self.timed(async {
            with_conn!(&self.pool, |conn| {
                diesel::update(conversations::table.find(conversation))
                    .set(conversations::settings.eq(settings))
                    .execute(conn)
                    .await?;
                Ok(())
            })
        })
        .await
    }

    /// Deletes the oldest messages of a conversation: the longest run from its first message
    /// on whose messages were all stored before `before` (epoch ms), at most `max_rows` of them,
    /// with what hangs on them (per-user deletion marks; the SQLite search index follows by
    /// trigger). Returns how many messages went; the caller repeats while that is `max_rows`.
    ///
    /// Only a prefix by seq goes, so history stays gapless and simply starts later. Read
    /// positions below the purged prefix move up to its end, so purged messages never count as
    /// unread. Safe to run on several nodes at once: each step is idempotent.
    ///
    /// # Errors
    ///
    /// [`StoreError`] when the database fails.
    pub async fn purge_before(
        &self,
        conversation: &str,
        before: i64,
        max_rows: i64,
    ) -> Result<usize, StoreError> {
        self.timed(async {
            with_conn!(&self.pool, |conn| {
                conn.transaction(async |conn| {
                    super::InsertRows::lock_for_write(conn).await?;
                    let oldest: Vec<(i64, i64)> = messages::table
                        .filter(messages::conversation_id.eq(conversation))
                        .order(messages::seq.asc())
                        .limit(max_rows.max(1))
                        .select((messages::seq, messages::created_at))
                        .load(conn)
                        .await?;
                    // Clocks of different nodes may disagree a little, so a later seq can carry
                    // an earlier time: the prefix stops at the first message that is too new.
                    let Some(cutoff) = oldest
                        .iter()
                        .take_while(|(_, created)| *created < before)
                        .map(|(seq, _)| *seq)
                        .last()
                    else {
                        return Ok(0);
                    };
                    let purged_ids = messages::table
                        .filter(messages::conversation_id.eq(conversation))
                        .filter(messages::seq.le(cutoff))
                        .select(messages::id);
                    diesel::delete(
                        message_deletions::table
                            .filter(message_deletions::conversation_id.eq(conversation))
                            .filter(message_deletions::message_id.eq_any(purged_ids)),
                    )
                    .execute(conn)
                    .await?;
                    // A purged message shares its file no more. The ids are read first: the
                    // share table is declared apart from the schema crate's, so diesel cannot
                    // nest a query of one in the other.
                    let purged: Vec<i64> = messages::table
                        .filter(messages::conversation_id.eq(conversation))
                        .filter(messages::seq.le(cutoff))
                        .select(messages::id)
                        .load(conn)
                        .await?;
                    diesel::delete(
                        super::shares::file_shares::table
                            .filter(super::shares::file_shares::message_id.eq_any(&purged)),
                    )
                    .execute(conn)
                    .await?;
                    {
                        use super::reactions::tables::{conversation_pins, message_reactions};
                        diesel::delete(
                            message_reactions::table
                                .filter(message_reactions::message_id.eq_any(&purged)),
                        )
                        .execute(conn)
                        .await?;
                        diesel::delete(
                            conversation_pins::table
                                .filter(conversation_pins::message_id.eq_any(&purged)),
                        )
                        .execute(conn)
                        .await?;
                    }
                    let purged = diesel::delete(
                        messages::table
                            .filter(messages::conversation_id.eq(conversation))
                            .filter(messages::seq.le(cutoff)),
                    )
                    .execute(conn)
                    .await?;
                    diesel::update(
                        members::table
                            .filter(members::conversation_id.eq(conversation))
                            .filter(members::read_seq.lt(cutoff)),
                    )
                    .set(members::read_seq.eq(cutoff))
                    .execute(conn)
                    .await?;
                    Ok::<_, StoreError>(purged)
                })
                .await
            })
        })
        .await
    }
}

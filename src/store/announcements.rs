//! Announcements to all users, and each user's read marker. Only the newest
//! [`KEPT_ANNOUNCEMENTS`] are kept.

use diesel::prelude::*;
use diesel_async::{AsyncConnection, RunQueryDsl};

use self::tables::{announcement_reads, announcements};
use super::{Store, StoreError, with_conn};

/// The tables of this module.
pub mod tables {
    #![allow(missing_docs)]

    diesel::table! {
        /// Announcements, newest by id.
        announcements (id) {
            id -> BigInt,
            sender_id -> Text,
            content_type -> Text,
            body -> Text,
            created_at -> BigInt,
        }
    }

    diesel::table! {
        /// Read markers.
        announcement_reads (user_id) {
            user_id -> Text,
            read_up_to -> BigInt,
        }
    }
}

/// Announcements kept; older ones are deleted as new ones come.
pub const KEPT_ANNOUNCEMENTS: i64 = 1000;

/// A row of `announcements`.
#[derive(Clone, Debug, PartialEq, Eq, Queryable, Selectable, Insertable)]
#[diesel(table_name = announcements)]
pub struct AnnouncementRow {
    /// Its id: later announcements have larger ids.
    pub id: i64,
    /// The backend that sent it.
    pub sender_id: String,
    /// The MIME type of its body.
    pub content_type: String,
    /// Its text.
    pub body: String,
    /// When it was stored.
    pub created_at: i64,
}

impl Store {
    /// Stores an announcement, and forgets those beyond the newest [`KEPT_ANNOUNCEMENTS`].
    ///
    /// # Errors
    ///
    /// [`StoreError`] when the database fails.
    pub async fn add_announcement(&self, row: &AnnouncementRow) -> Result<(), StoreError> {
        self.timed(async {
            with_conn!(&self.pool, |conn| {
                conn.transaction(async |conn| {
                    diesel::insert_into(announcements::table)
                        .values(row)
                        .execute(conn)
                        .await?;
                    let oldest_kept: Option<i64> = announcements::table
                        .order(announcements::id.desc())
                        .offset(KEPT_ANNOUNCEMENTS - 1)
                        .select(announcements::id)
                        .first(conn)
                        .await
                        .optional()?;
                    if let Some(oldest) = oldest_kept {
                        diesel::delete(announcements::table.filter(announcements::id.lt(oldest)))
                            .execute(conn)
                            .await?;
                    }
                    Ok::<_, StoreError>(())
                })
                .await
            })
        })
        .await
    }

    /// Announcements older than `before` (by id), newest first; at most `limit`.
    ///
    /// # Errors
    ///
    /// [`StoreError`] when the database fails.
    pub async fn announcements_page(
        &self,
        before: Option<i64>,
        limit: i64,
    ) -> Result<Vec<AnnouncementRow>, StoreError> {
        self.timed(async {
            with_conn!(&self.pool, |conn| {
                let mut query = announcements::table
                    .order(announcements::id.desc())
                    .limit(limit)
                    .select(AnnouncementRow::as_select())
                    .into_boxed();
                if let Some(before) = before {
                    query = query.filter(announcements::id.lt(before));
                }
                Ok(query.load(conn).await?)
            })
        })
        .await
    }

    /// `user`'s read marker (0 when they never read one) and how many kept announcements
    /// are newer than it.
    ///
    /// # Errors
    ///
    /// [`StoreError`] when the database fails.
    pub async fn announcement_marker(&self, user: &str) -> Result<(i64, i64), StoreError> {
        self.timed(async {
            with_conn!(&self.pool, |conn| {
                let marker: i64 = announcement_reads::table
                    .find(user)
                    .select(announcement_reads::read_up_to)
                    .first(conn)
                    .await
                    .optional()?
                    .unwrap_or(0);
                let unread: i64 = announcements::table
                    .filter(announcements::id.gt(marker))
                    .count()
                    .get_result(conn)
                    .await?;
                Ok((marker, unread))
            })
        })
        .await
    }

    /// Moves `user`'s read marker forward to `up_to` (never back).
    ///
    /// # Errors
    ///
    /// [`StoreError`] when the database fails.
    pub async fn mark_announcements_read(&self, user: &str, up_to: i64) -> Result<(), StoreError> {
        self.timed(async {
            with_conn!(&self.pool, |conn| {
                let moved = diesel::update(
                    announcement_reads::table
                        .find(user)
                        .filter(announcement_reads::read_up_to.lt(up_to)),
                )
                .set(announcement_reads::read_up_to.eq(up_to))
                .execute(conn)
                .await?;
                if moved == 0 {
                    diesel::insert_into(announcement_reads::table)
                        .values((
                            announcement_reads::user_id.eq(user),
                            announcement_reads::read_up_to.eq(up_to),
                        ))
                        .on_conflict_do_nothing()
                        .execute(conn)
                        .await?;
                }
                Ok(())
            })
        })
        .await
    }
}

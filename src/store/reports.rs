//! Report queries: whether a reporter has received a message from the user they report (the
//! condition for a report to count toward a ban), and the admin listing of reports.

use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use schema::{members, messages};

use super::safety::ReportRow;
use super::safety::tables::reports;
use super::{Store, StoreError, with_conn};

impl Store {
    /// Whether `user` has received a message from `sender`: one `sender` sent in a conversation
    /// `user` is or was a member of, after `user` joined it.
    ///
    /// # Errors
    ///
    /// [`StoreError`] when the database fails.
    pub async fn has_received_from(&self, user: &str, sender: &str) -> Result<bool, StoreError> {
        self.timed(async {
            with_conn!(&self.pool, |conn| {
                let found: Option<i64> = messages::table
                    .inner_join(
                        members::table.on(members::conversation_id.eq(messages::conversation_id)),
                    )
                    .filter(members::user_id.eq(user))
                    .filter(messages::sender_id.eq(sender))
                    .filter(messages::seq.gt(members::joined_seq))
                    .select(messages::id)
                    .first(conn)
                    .await
                    .optional()?;
                Ok(found.is_some())
            })
        })
        .await
    }

    /// Reports, newest first (by time, then id): all of them, or those against `user`; only
    /// those after `after` in that order, a report's `(created_at, id)`, when given; at most
    /// `limit`.
    ///
    /// # Errors
    ///
    /// [`StoreError`] when the database fails.
    pub async fn reports_page(
        &self,
        user: Option<&str>,
        after: Option<(i64, i64)>,
        limit: i64,
    ) -> Result<Vec<ReportRow>, StoreError> {
        self.timed(async {
            with_conn!(&self.pool, |conn| {
                let mut query = reports::table
                    .order((reports::created_at.desc(), reports::id.desc()))
                    .limit(limit)
                    .select(ReportRow::as_select())
                    .into_boxed();
                if let Some(user) = user {
                    query = query.filter(reports::user_id.eq(user.to_owned()));
                }
                if let Some((created_at, id)) = after {
                    query = query.filter(
                        reports::created_at
                            .lt(created_at)
                            .or(reports::created_at.eq(created_at).and(reports::id.lt(id))),
                    );
                }
                Ok(query.load(conn).await?)
            })
        })
        .await
    }
}

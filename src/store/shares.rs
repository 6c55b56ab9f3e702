//! File shares: which stored message made an uploaded file downloadable by the members of its
//! conversation.
//!
//! A share is a row keyed by the message that carries the file. The group-commit writer inserts
//! it in the transaction that stores the message, so a send that is refused (a block in that
//! transaction, or any check before it) or fails shares nothing; a recall or a retention purge
//! deletes it with the message. The uploader's own access does not depend on shares.

use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use schema::{MessageRow, members};

use super::{Store, StoreError, with_conn};

diesel::table! {
    /// One row per stored message that carries an uploaded file.
    file_shares (message_id) {
        message_id -> BigInt,
        file_id -> Text,
        conversation_id -> Text,
    }
}

/// A row of `file_shares`.
#[derive(Clone, Debug, PartialEq, Eq, Insertable)]
#[diesel(table_name = file_shares)]
pub(crate) struct ShareRow {
    message_id: i64,
    file_id: String,
    conversation_id: String,
}

/// The shares of the messages a batch stores: `stored` pairs the index of each message of the
/// batch with its row, and `file_of` names the file a message at an index shares, if any.
pub(crate) fn of_batch<'a, 'f>(
    file_of: impl Fn(usize) -> Option<&'f String>,
    stored: impl Iterator<Item = (usize, &'a MessageRow)>,
) -> Vec<ShareRow> {
    stored
        .filter_map(|(index, row)| {
            let file = file_of(index)?;
            Some(ShareRow {
                message_id: row.id,
                file_id: file.clone(),
                conversation_id: row.conversation_id.clone(),
            })
        })
        .collect()
}

/// Inserting shares, which the two backends do differently (as [`super::InsertRows`]).
pub(crate) trait RecordShares {
    /// Inserts share rows inside the caller's transaction.
    fn record_shares(
        &mut self,
        rows: &[ShareRow],
    ) -> impl Future<Output = diesel::QueryResult<usize>> + Send;
}

impl RecordShares for diesel_async::AsyncPgConnection {
    async fn record_shares(&mut self, rows: &[ShareRow]) -> diesel::QueryResult<usize> {
        // Three bind parameters per row, far below PostgreSQL's 65535 for any batch.
        diesel::insert_into(file_shares::table)
            .values(rows)
            .on_conflict_do_nothing()
            .execute(self)
            .await
    }
}

impl RecordShares for super::SqliteConn {
    async fn record_shares(&mut self, rows: &[ShareRow]) -> diesel::QueryResult<usize> {
        let mut inserted = 0;
        for row in rows {
            inserted += diesel::insert_into(file_shares::table)
                .values(row)
                .on_conflict_do_nothing()
                .execute(self)
                .await?;
        }
        Ok(inserted)
    }
}

impl Store {
    /// Whether `user` is a current member of a conversation in which a standing message carries
    /// the file.
    ///
    /// # Errors
    ///
    /// [`StoreError`] when the database fails.
    pub async fn file_shared_with(&self, file: &str, user: &str) -> Result<bool, StoreError> {
        self.timed(async {
            with_conn!(&self.pool, |conn| {
                // Two statements: the tables are declared in different crates, so diesel
                // cannot nest one in a query of the other.
                let shared_in: Vec<String> = file_shares::table
                    .filter(file_shares::file_id.eq(file))
                    .select(file_shares::conversation_id)
                    .distinct()
                    .load(conn)
                    .await?;
                if shared_in.is_empty() {
                    return Ok(false);
                }
                let count: i64 = members::table
                    .filter(members::user_id.eq(user))
                    .filter(members::left_at.is_null())
                    .filter(members::conversation_id.eq_any(shared_in))
                    .count()
                    .get_result(conn)
                    .await?;
                Ok(count > 0)
            })
        })
        .await
    }
}

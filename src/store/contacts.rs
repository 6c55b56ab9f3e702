//! Contacts and contact requests: a request waits for its recipient's decision; accepting it
//! makes the two users each other's contacts (a row per direction, written in one
//! transaction with the decision).

use diesel::prelude::*;
use diesel_async::{AsyncConnection, RunQueryDsl};

use self::tables::{contact_requests, contacts};
use super::{Store, StoreError, with_conn};

/// The tables of this module.
pub mod tables {
    #![allow(missing_docs)]

    diesel::table! {
        /// Contact requests, pending and decided.
        contact_requests (id) {
            id -> BigInt,
            from_user -> Text,
            to_user -> Text,
            note -> Text,
            status -> Text,
            created_at -> BigInt,
            updated_at -> BigInt,
        }
    }

    diesel::table! {
        /// Contacts, one row per direction.
        contacts (user_id, contact_id) {
            user_id -> Text,
            contact_id -> Text,
            created_at -> BigInt,
        }
    }
}

/// A status of a contact request.
pub mod status {
    /// Waiting for the recipient.
    pub const PENDING: &str = "pending";
    /// The recipient accepted: the two are contacts.
    pub const ACCEPTED: &str = "accepted";
    /// The recipient declined.
    pub const DECLINED: &str = "declined";
    /// The sender took it back.
    pub const CANCELLED: &str = "cancelled";
}

/// A row of `contact_requests`.
#[derive(Clone, Debug, PartialEq, Eq, Queryable, Selectable, Insertable)]
#[diesel(table_name = contact_requests)]
pub struct ContactRequestRow {
    /// Its id.
    pub id: i64,
    /// Who asks.
    pub from_user: String,
    /// Who is asked.
    pub to_user: String,
    /// A short note to the recipient.
    pub note: String,
    /// See [`status`].
    pub status: String,
    /// When it was made.
    pub created_at: i64,
    /// When it was last decided (or made).
    pub updated_at: i64,
}

#[derive(Insertable)]
#[diesel(table_name = contacts)]
struct ContactRow<'a> {
    user_id: &'a str,
    contact_id: &'a str,
    created_at: i64,
}

impl Store {
    /// Whether `a` and `b` are contacts.
    ///
    /// # Errors
    ///
    /// [`StoreError`] when the database fails.
    pub async fn are_contacts(&self, a: &str, b: &str) -> Result<bool, StoreError> {
        self.timed(async {
            with_conn!(&self.pool, |conn| {
                let found: Option<String> = contacts::table
                    .find((a, b))
                    .select(contacts::contact_id)
                    .first(conn)
                    .await
                    .optional()?;
                Ok(found.is_some())
            })
        })
        .await
    }

    /// The pending request from `from` to `to`, if any.
    ///
    /// # Errors
    ///
    /// [`StoreError`] when the database fails.
    pub async fn pending_contact_request(
        &self,
        from: &str,
        to: &str,
    ) -> Result<Option<ContactRequestRow>, StoreError> {
        self.timed(async {
            with_conn!(&self.pool, |conn| {
                Ok(contact_requests::table
                    .filter(contact_requests::from_user.eq(from))
                    .filter(contact_requests::to_user.eq(to))
                    .filter(contact_requests::status.eq(status::PENDING))
                    .select(ContactRequestRow::as_select())
                    .first(conn)
                    .await
                    .optional()?)
            })
        })
        .await
    }

    /// A request by id.
    ///
    /// # Errors
    ///
    /// [`StoreError`] when the database fails.
    pub async fn contact_request(&self, id: i64) -> Result<Option<ContactRequestRow>, StoreError> {
        self.timed(async {
            with_conn!(&self.pool, |conn| {
                Ok(contact_requests::table
                    .find(id)
                    .select(ContactRequestRow::as_select())
                    .first(conn)
                    .await
                    .optional()?)
            })
        })
        .await
    }

    /// Stores a new pending request; when one from the same user to the same user is pending
    /// already (a concurrent call), answers that one instead.
    ///
    /// # Errors
    ///
    /// [`StoreError`] when the database fails.
    pub async fn add_contact_request(
        &self,
        row: &ContactRequestRow,
    ) -> Result<ContactRequestRow, StoreError> {
        let inserted = self
            .timed(async {
                with_conn!(&self.pool, |conn| {
                    Ok(diesel::insert_into(contact_requests::table)
                        .values(row)
                        .on_conflict_do_nothing()
                        .execute(conn)
                        .await?)
                })
            })
            .await?;
        if inserted == 1 {
            return Ok(row.clone());
        }
        self.pending_contact_request(&row.from_user, &row.to_user)
            .await?
            .ok_or_else(|| StoreError::Unavailable("the request changed meanwhile; retry".into()))
    }

    /// Decides the pending request `id`: `decision` is one of [`status`] other than pending;
    /// accepting it makes the two users contacts in the same transaction. `None` when it was
    /// not pending (any more).
    ///
    /// # Errors
    ///
    /// [`StoreError`] when the database fails.
    pub async fn decide_contact_request(
        &self,
        id: i64,
        decision: &'static str,
        now: i64,
    ) -> Result<Option<ContactRequestRow>, StoreError> {
        self.timed(async {
            with_conn!(&self.pool, |conn| {
                conn.transaction(async |conn| {
                    let changed = diesel::update(
                        contact_requests::table
                            .find(id)
                            .filter(contact_requests::status.eq(status::PENDING)),
                    )
                    .set((
                        contact_requests::status.eq(decision),
                        contact_requests::updated_at.eq(now),
                    ))
                    .execute(conn)
                    .await?;
                    if changed == 0 {
                        return Ok(None);
                    }
                    let row: ContactRequestRow = contact_requests::table
                        .find(id)
                        .select(ContactRequestRow::as_select())
                        .first(conn)
                        .await?;
                    if decision == status::ACCEPTED {
                        for (user_id, contact_id) in [
                            (&row.from_user, &row.to_user),
                            (&row.to_user, &row.from_user),
                        ] {
                            diesel::insert_into(contacts::table)
                                .values(ContactRow {
                                    user_id,
                                    contact_id,
                                    created_at: now,
                                })
                                .on_conflict_do_nothing()
                                .execute(conn)
                                .await?;
                        }
                    }
                    Ok::<_, StoreError>(Some(row))
                })
                .await
            })
        })
        .await
    }

    /// Ends the contact between `a` and `b`, both ways; whether they were contacts.
    ///
    /// # Errors
    ///
    /// [`StoreError`] when the database fails.
    pub async fn remove_contact(&self, a: &str, b: &str) -> Result<bool, StoreError> {
        self.timed(async {
            with_conn!(&self.pool, |conn| {
                let removed = diesel::delete(
                    contacts::table.filter(
                        contacts::user_id
                            .eq(a)
                            .and(contacts::contact_id.eq(b))
                            .or(contacts::user_id.eq(b).and(contacts::contact_id.eq(a))),
                    ),
                )
                .execute(conn)
                .await?;
                Ok(removed > 0)
            })
        })
        .await
    }

    /// `user`'s contacts as `(contact, since)`, ordered by id, those after `after`; at most
    /// `limit`.
    ///
    /// # Errors
    ///
    /// [`StoreError`] when the database fails.
    pub async fn contacts_page(
        &self,
        user: &str,
        after: Option<&str>,
        limit: i64,
    ) -> Result<Vec<(String, i64)>, StoreError> {
        self.timed(async {
            with_conn!(&self.pool, |conn| {
                let mut query = contacts::table
                    .filter(contacts::user_id.eq(user))
                    .order(contacts::contact_id.asc())
                    .limit(limit)
                    .select((contacts::contact_id, contacts::created_at))
                    .into_boxed();
                if let Some(after) = after {
                    query = query.filter(contacts::contact_id.gt(after.to_owned()));
                }
                Ok(query.load(conn).await?)
            })
        })
        .await
    }

    /// Pending requests to `user` (`incoming`) or from them, newest first, those after
    /// `after` (a request's `(created_at, id)`); at most `limit`.
    ///
    /// # Errors
    ///
    /// [`StoreError`] when the database fails.
    pub async fn pending_contact_requests(
        &self,
        user: &str,
        incoming: bool,
        after: Option<(i64, i64)>,
        limit: i64,
    ) -> Result<Vec<ContactRequestRow>, StoreError> {
        self.timed(async {
            with_conn!(&self.pool, |conn| {
                let mut query = contact_requests::table
                    .filter(contact_requests::status.eq(status::PENDING))
                    .order((
                        contact_requests::created_at.desc(),
                        contact_requests::id.desc(),
                    ))
                    .limit(limit)
                    .select(ContactRequestRow::as_select())
                    .into_boxed();
                query = if incoming {
                    query.filter(contact_requests::to_user.eq(user.to_owned()))
                } else {
                    query.filter(contact_requests::from_user.eq(user.to_owned()))
                };
                if let Some((created_at, id)) = after {
                    query = query.filter(
                        contact_requests::created_at.lt(created_at).or(
                            contact_requests::created_at
                                .eq(created_at)
                                .and(contact_requests::id.lt(id)),
                        ),
                    );
                }
                Ok(query.load(conn).await?)
            })
        })
        .await
    }
}

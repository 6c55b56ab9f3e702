//! Push tokens of users' devices.

use diesel::prelude::*;
use diesel_async::{AsyncConnection, RunQueryDsl};
use schema::members;

use self::tables::devices;
use super::{Store, StoreError, with_conn};

/// The tables of this module.
pub mod tables {
    #![allow(missing_docs)]

    diesel::table! {
        /// Push tokens.
        devices (user_id, token) {
            user_id -> Text,
            token -> Text,
            platform -> Text,
            created_at -> BigInt,
        }
    }
}

/// A row of `devices`.
#[derive(Clone, Debug, PartialEq, Eq, Queryable, Selectable, Insertable)]
#[diesel(table_name = devices)]
pub struct DeviceRow {
    /// Whose.
    pub user_id: String,
    /// The push token.
    pub token: String,
    /// `ios`, `android` or `web`.
    pub platform: String,
    /// When it was registered.
    pub created_at: i64,
}

impl Store {
    /// Registers a device (again: its platform and time are updated), keeping at most `max`
    /// per user: the ones registered longest ago go.
    ///
    /// # Errors
    ///
    /// [`StoreError`] when the database fails.
    pub async fn add_device(&self, row: &DeviceRow, max: usize) -> Result<(), StoreError> {
        let keep = i64::try_from(max).unwrap_or(i64::MAX);
        self.timed(async {
            with_conn!(&self.pool, |conn| {
                conn.transaction(async |conn| {
                    diesel::delete(devices::table.find((&row.user_id, &row.token)))
                        .execute(conn)
                        .await?;
                    diesel::insert_into(devices::table)
                        .values(row)
                        .execute(conn)
                        .await?;
                    let kept: Vec<String> = devices::table
                        .filter(devices::user_id.eq(&row.user_id))
                        .order((devices::created_at.desc(), devices::token.desc()))
                        .limit(keep)
                        .select(devices::token)
                        .load(conn)
                        .await?;
                    diesel::delete(
                        devices::table
                            .filter(devices::user_id.eq(&row.user_id))
                            .filter(devices::token.ne_all(&kept)),
                    )
                    .execute(conn)
                    .await?;
                    Ok::<_, StoreError>(())
                })
                .await
            })
        })
        .await
    }

    /// Forgets a device; whether it was registered.
    ///
    /// # Errors
    ///
    /// [`StoreError`] when the database fails.
    pub async fn remove_device(&self, user: &str, token: &str) -> Result<bool, StoreError> {
        self.timed(async {
            with_conn!(&self.pool, |conn| {
                Ok(diesel::delete(devices::table.find((user, token)))
                    .execute(conn)
                    .await?
                    > 0)
            })
        })
        .await
    }

    /// `user`'s devices.
    ///
    /// # Errors
    ///
    /// [`StoreError`] when the database fails.
    pub async fn devices_of(&self, user: &str) -> Result<Vec<DeviceRow>, StoreError> {
        self.timed(async {
            with_conn!(&self.pool, |conn| {
                Ok(devices::table
                    .filter(devices::user_id.eq(user))
                    .order(devices::created_at.desc())
                    .select(DeviceRow::as_select())
                    .load(conn)
                    .await?)
            })
        })
        .await
    }

    /// The devices of the current members of `conversation` other than `except` who have not
    /// muted it, or whom the message mentions (`mentioned`, or everybody): whom a message there
    /// may be pushed to.
    ///
    /// # Errors
    ///
    /// [`StoreError`] when the database fails.
    pub async fn push_devices(
        &self,
        conversation: &str,
        except: &str,
        mentioned: &[String],
        everybody: bool,
    ) -> Result<Vec<DeviceRow>, StoreError> {
        self.timed(async {
            with_conn!(&self.pool, |conn| {
                let mut query = members::table
                    .filter(members::conversation_id.eq(conversation))
                    .filter(members::left_at.is_null())
                    .select(members::user_id)
                    .into_boxed();
                if !everybody {
                    query = query.filter(
                        members::muted
                            .eq(false)
                            .or(members::user_id.eq_any(mentioned)),
                    );
                }
                let audience: Vec<String> = query.load(conn).await?;
                Ok(devices::table
                    .filter(devices::user_id.eq_any(&audience))
                    .filter(devices::user_id.ne(except))
                    .select(DeviceRow::as_select())
                    .load(conn)
                    .await?)
            })
        })
        .await
    }
}

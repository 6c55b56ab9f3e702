//! What blocks hide besides private messages: presence and typing between the two users, and a
//! new private conversation opened by the blocked user; and who may see whose presence at all.

use std::collections::HashSet;

use diesel::prelude::*;
use diesel_async::{AsyncConnection, RunQueryDsl};
use schema::{conversations, members};

use super::contacts::tables::contacts;
use super::conversations::{member_row, new_conversation};
use super::safety::tables::blocks;
use super::{Store, StoreError, with_conn};
use crate::domain::{ConversationId, ConversationKind, MemberRole};
use crate::util::now_ms;

impl Store {
    /// Whether either of two users has blocked the other.
    ///
    /// # Errors
    ///
    /// [`StoreError`] when the database fails.
    pub async fn blocked_between(&self, a: &str, b: &str) -> Result<bool, StoreError> {
        self.timed(async {
            with_conn!(&self.pool, |conn| {
                let count: i64 = blocks::table
                    .filter(
                        blocks::user_id
                            .eq(a)
                            .and(blocks::blocked_id.eq(b))
                            .or(blocks::user_id.eq(b).and(blocks::blocked_id.eq(a))),
                    )
                    .count()
                    .get_result(conn)
                    .await?;
                Ok(count > 0)
            })
        })
        .await
    }

    /// Those of `users` whose presence `viewer` may see: `viewer` themself, and the users who
    /// share a current conversation with `viewer` or are their contacts, and have not blocked
    /// them.
    ///
    /// # Errors
    ///
    /// [`StoreError`] when the database fails.
    pub async fn presence_visible_to(
        &self,
        viewer: &str,
        users: &[&str],
    ) -> Result<HashSet<String>, StoreError> {
        let others: Vec<&str> = users.iter().copied().filter(|u| *u != viewer).collect();
        let mut visible: HashSet<String> = users
            .iter()
            .filter(|u| **u == viewer)
            .map(|u| (*u).to_owned())
            .collect();
        if others.is_empty() {
            return Ok(visible);
        }
        let (sharing, blocking) = self
            .timed(async {
                with_conn!(&self.pool, |conn| {
                    let viewers = diesel::alias!(members as viewers);
                    let mine = viewers
                        .filter(viewers.field(members::user_id).eq(viewer))
                        .filter(viewers.field(members::left_at).is_null())
                        .select(viewers.field(members::conversation_id));
                    let sharing: Vec<String> = members::table
                        .filter(members::user_id.eq_any(&others))
                        .filter(members::left_at.is_null())
                        .filter(members::conversation_id.eq_any(mine))
                        .select(members::user_id)
                        .distinct()
                        .load(conn)
                        .await?;
                    let mut sharing = sharing;
                    let contacts: Vec<String> = contacts::table
                        .filter(contacts::user_id.eq(viewer))
                        .filter(contacts::contact_id.eq_any(&others))
                        .select(contacts::contact_id)
                        .load(conn)
                        .await?;
                    sharing.extend(contacts);
                    let blocking: Vec<String> = blocks::table
                        .filter(blocks::user_id.eq_any(&others))
                        .filter(blocks::blocked_id.eq(viewer))
                        .select(blocks::user_id)
                        .load(conn)
                        .await?;
                    Ok::<_, StoreError>((sharing, blocking))
                })
            })
            .await?;
        let blocking: HashSet<String> = blocking.into_iter().collect();
        visible.extend(sharing.into_iter().filter(|u| !blocking.contains(u)));
        Ok(visible)
    }

    /// Creates the private conversation of `user` and `peer` unless it exists; a user `peer`
    /// has blocked cannot create it. Returns its id.
    ///
    /// # Errors
    ///
    /// [`StoreError::Blocked`] naming `peer`; [`StoreError`] when the database fails.
    pub async fn create_private(&self, user: &str, peer: &str) -> Result<String, StoreError> {
        let id: String = ConversationId::private(user, peer).into();
        let now = now_ms();
        self.timed(async {
            with_conn!(&self.pool, |conn| {
                conn.transaction(async |conn| {
                    super::InsertRows::lock_for_write(conn).await?;
                    let blocked: i64 = blocks::table
                        .filter(blocks::user_id.eq(peer))
                        .filter(blocks::blocked_id.eq(user))
                        .count()
                        .get_result(conn)
                        .await?;
                    if blocked > 0 {
                        return Err(StoreError::Blocked(peer.to_owned()));
                    }
                    diesel::insert_into(conversations::table)
                        .values(&new_conversation(
                            id.clone(),
                            ConversationKind::Private,
                            now,
                        ))
                        .on_conflict_do_nothing()
                        .execute(conn)
                        .await?;
                    let rows = [
                        member_row(&id, user, MemberRole::Member, now, 0),
                        member_row(&id, peer, MemberRole::Member, now, 0),
                    ];
                    super::InsertRows::insert_members(conn, &rows).await?;
                    Ok::<_, StoreError>(())
                })
                .await
            })
        })
        .await?;
        Ok(id)
    }
}

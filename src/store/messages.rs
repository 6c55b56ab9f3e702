//! Messages: sending (through the group-commit writer), history, read positions, delivery,
//! recall and per-user deletion.

use diesel::prelude::*;
use diesel_async::{AsyncConnection, RunQueryDsl};
use schema::{MessageDeletionRow, MessageRow, conversations, members, message_deletions, messages};

use super::{Store, StoreError, with_conn};
use crate::domain::{ConversationId, ConversationKind, MessageStatus, kind_of};
use crate::ordering::Turn;
use crate::util::now_ms;

/// Where a new message goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// An existing conversation, by id.
    Conversation(String),
    /// The private conversation of two users; created on the first message.
    Private {
        /// One user.
        a: String,
        /// The other.
        b: String,
    },
    /// A user's system-notification conversation; created on the first notification.
    System {
        /// The user.
        user: String,
    },
    /// A user's customer-service conversation; created on the first message.
    Assistant {
        /// The user.
        user: String,
    },
}

impl Target {
    /// The conversation id this target names.
    pub fn conversation_id(&self) -> String {
        match self {
            Target::Conversation(id) => id.clone(),
            Target::Private { a, b } => ConversationId::private(a, b).into(),
            Target::System { user } => ConversationId::system(user).into(),
            Target::Assistant { user } => ConversationId::assistant(user).into(),
        }
    }

    /// The conversation kind, for targets that create their conversation.
    pub(crate) fn kind(&self) -> Option<ConversationKind> {
        match self {
            Target::Conversation(_) => None,
            Target::Private { .. } => Some(ConversationKind::Private),
            Target::System { .. } => Some(ConversationKind::System),
            Target::Assistant { .. } => Some(ConversationKind::Assistant),
        }
    }

    /// The members a created conversation starts with.
    pub(crate) fn participants(&self) -> Vec<String> {
        match self {
            Target::Conversation(_) => Vec::new(),
            Target::Private { a, b } if a == b => vec![a.clone()],
            Target::Private { a, b } => vec![a.clone(), b.clone()],
            Target::System { user } | Target::Assistant { user } => vec![user.clone()],
        }
    }
}

/// A message to store.
#[derive(Clone, Debug)]
pub struct NewMessage {
    /// Where it goes.
    pub target: Target,
    /// Who sends it.
    pub sender: String,
    /// The sender's idempotency key.
    pub client_msg_id: String,
    /// `text`, `image`, ...
    pub format: String,
    /// Text content.
    pub content: String,
    /// JSON attachment.
    pub attachment: Option<String>,
    /// Replied-to message id.
    pub reply_to: Option<i64>,
    /// JSON of the forwarded original.
    pub forwarded_from: Option<String>,
    /// A user whose blocks refuse the message ([`StoreError::Blocked`]): the peer of a private
    /// chat. Checked in the transaction that stores it, as one statement per batch.
    pub unless_blocked_by: Option<String>,
    /// The id of an uploaded file the message carries: shared with the conversation's members
    /// in the transaction that stores the message, and only then.
    pub shared_file: Option<String>,
    /// JSON array of the users a group message mentions (or `["@all"]`), already checked.
    pub mentions: Option<String>,
}

/// What a send did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SendOutcome {
    /// Stored now; `created` when this message created its conversation.
    Stored {
        /// The stored message.
        message: MessageRow,
        /// Whether the conversation was created by it.
        created: bool,
        /// Whether storing it moved the sender's read position past messages of others
        /// (sending marks read), so that read events are due.
        marked_read: bool,
    },
    /// The sender had already sent this clientMsgId: nothing was stored.
    Duplicate(MessageRow),
}

impl SendOutcome {
    /// The message, stored now or before.
    pub fn message(&self) -> &MessageRow {
        match self {
            SendOutcome::Stored { message, .. } | SendOutcome::Duplicate(message) => message,
        }
    }
}

/// A history page request.
#[derive(Clone, Copy, Debug, Default)]
pub struct HistoryQuery {
    /// Messages with seq below this.
    pub before_seq: Option<i64>,
    /// Messages with seq above this.
    pub after_seq: Option<i64>,
    /// At most this many (1-100).
    pub limit: i64,
}

impl Store {
    /// Stores a message through the group-commit writer and resolves after the commit.
    ///
    /// # Errors
    ///
    /// [`StoreError::NotFound`] when the target conversation does not exist; other
    /// [`StoreError`]s when the database fails.
    pub async fn send(&self, message: NewMessage) -> Result<SendOutcome, StoreError> {
        self.writer().send(Box::new(message), Turn::free()).await
    }

    /// As [`Store::send`], queued for the writer only once `turn` comes: a session's pipelined
    /// sends are queued, and so numbered, in the order of its frames.
    ///
    /// # Errors
    ///
    /// As [`Store::send`].
    pub fn send_in_turn(
        &self,
        message: Box<NewMessage>,
        turn: Turn,
    ) -> impl Future<Output = Result<SendOutcome, StoreError>> + Send + '_ {
        // The writer's future itself, not one wrapping it: each async layer keeps its own
        // copy of the message in the state of every SEND.
        self.writer().send(message, turn)
    }

    /// Stores system notifications through the writer's notification queue (see
    /// `storage.max_bulk_batch`): all are queued at once, once `turn` comes, and committed in
    /// as few batches as the writer likes. Resolves after the last commit, with one answer per
    /// message in the order given.
    pub async fn send_bulk(
        &self,
        messages: Vec<NewMessage>,
        turn: Turn,
    ) -> Vec<Result<SendOutcome, StoreError>> {
        self.writer().send_bulk(messages, turn).await
    }

    /// A message by id.
    ///
    /// # Errors
    ///
    /// [`StoreError`] when the database fails.
    pub async fn message(&self, id: i64) -> Result<Option<MessageRow>, StoreError> {
        self.timed(async {
            with_conn!(&self.pool, |conn| {
                Ok(messages::table
                    .find(id)
                    .select(MessageRow::as_select())
                    .first(conn)
                    .await
                    .optional()?)
            })
        })
        .await
    }

    /// The newest `limit` messages of `conversation` with a seq in `(after, up_to]`, newest
    /// first.
    ///
    /// # Errors
    ///
    /// [`StoreError`] when the database fails.
    pub async fn newest_between(
        &self,
        conversation: &str,
        after: i64,
        up_to: i64,
        limit: i64,
    ) -> Result<Vec<MessageRow>, StoreError> {
        self.timed(async {
            with_conn!(&self.pool, |conn| {
                Ok(messages::table
                    .filter(messages::conversation_id.eq(conversation))
                    .filter(messages::seq.gt(after))
                    .filter(messages::seq.le(up_to))
                    .order(messages::seq.desc())
                    .limit(limit)
                    .select(MessageRow::as_select())
                    .load(conn)
                    .await?)
            })
        })
        .await
    }

    /// A page of `user`'s history of a conversation, ascending by seq: messages before the
    /// user joined, cleared, or deleted by the user are left out; recalled ones keep their place.
    ///
    /// # Errors
    ///
    /// [`StoreError`] when the database fails.
    pub async fn history(
        &self,
        conversation: &str,
        user: &str,
        floor_seq: i64,
        query: HistoryQuery,
    ) -> Result<Vec<MessageRow>, StoreError> {
        let limit = query.limit.clamp(1, 100);
        let mut rows = self
            .timed(async {
                with_conn!(&self.pool, |conn| {
                    let deleted = message_deletions::table
                        .filter(message_deletions::user_id.eq(user))
                        .filter(message_deletions::conversation_id.eq(conversation))
                        .select(message_deletions::message_id);
                    let mut page = messages::table
                        .filter(messages::conversation_id.eq(conversation))
                        .filter(messages::seq.gt(floor_seq))
                        .filter(messages::id.ne_all(deleted))
                        .select(MessageRow::as_select())
                        .limit(limit)
                        .into_boxed();
                    if let Some(after) = query.after_seq {
                        page = page.filter(messages::seq.gt(after));
                    }
                    if let Some(before) = query.before_seq {
                        page = page.filter(messages::seq.lt(before));
                    }
                    let ascending = query.after_seq.is_some();
                    page = if ascending {
                        page.order(messages::seq.asc())
                    } else {
                        page.order(messages::seq.desc())
                    };
                    let mut rows: Vec<MessageRow> = page.load(conn).await?;
                    if !ascending {
                        rows.reverse();
                    }
                    Ok(rows)
                })
            })
            .await?;
        self.with_statuses(&mut rows).await?;
        Ok(rows)
    }

    /// Moves a member's read position forward to `up_to` (never back, never past the last
    /// message). Returns the new position, or `None` when it did not move.
    ///
    /// # Errors
    ///
    /// [`StoreError`] when the database fails.
    pub async fn mark_read(
        &self,
        conversation: &str,
        user: &str,
        up_to: i64,
    ) -> Result<Option<i64>, StoreError> {
        self.timed(async {
            with_conn!(&self.pool, |conn| {
                let last: i64 = conversations::table
                    .find(conversation)
                    .select(conversations::last_seq)
                    .first(conn)
                    .await?;
                let target = up_to.min(last);
                let moved = diesel::update(
                    members::table
                        .filter(members::conversation_id.eq(conversation))
                        .filter(members::user_id.eq(user))
                        .filter(members::read_seq.lt(target)),
                )
                .set(members::read_seq.eq(target))
                .execute(conn)
                .await?;
                Ok((moved > 0).then_some(target))
            })
        })
        .await
    }

    /// Fills in the status of private messages, which follows from the recipient's positions:
    /// `read` up to their read position, `delivered` up to their delivered position, else
    /// `sent` (recalled messages stay `recalled`). Rows are never rewritten when delivered or
    /// read, so a send costs one row write.
    ///
    /// # Errors
    ///
    /// [`StoreError`] when the database fails.
    pub async fn with_statuses(&self, rows: &mut [MessageRow]) -> Result<(), StoreError> {
        let mut private: Vec<&str> = rows
            .iter()
            .filter(|row| counts_deliveries(row))
            .map(|row| row.conversation_id.as_str())
            .collect();
        if private.is_empty() {
            return Ok(());
        }
        private.sort_unstable();
        private.dedup();
        let positions: Vec<(String, String, i64, i64)> = self
            .timed(async {
                with_conn!(&self.pool, |conn| {
                    Ok(members::table
                        .filter(members::conversation_id.eq_any(&private))
                        .select((
                            members::conversation_id,
                            members::user_id,
                            members::read_seq,
                            members::delivered_seq,
                        ))
                        .load(conn)
                        .await?)
                })
            })
            .await?;
        for row in rows.iter_mut().filter(|row| counts_deliveries(row)) {
            let recipient = positions
                .iter()
                .find(|(c, u, _, _)| *c == row.conversation_id && *u != row.sender_id);
            let status = match recipient {
                Some((_, _, read, _)) if row.seq <= *read => MessageStatus::Read,
                Some((_, _, _, delivered)) if row.seq <= *delivered => MessageStatus::Delivered,
                _ => MessageStatus::Sent,
            };
            status.as_str().clone_into(&mut row.status);
        }
        Ok(())
    }

    /// Recalls a message: empties its content and attachment, marks it `recalled`, and takes
    /// back the file it shared (its recipients can no longer download it). Returns the updated
    /// row.
    ///
    /// # Errors
    ///
    /// [`StoreError::NotFound`] for an unknown id, [`StoreError::AlreadyRecalled`] when it was
    /// recalled already.
    pub async fn recall(&self, id: i64) -> Result<MessageRow, StoreError> {
        use super::shares::file_shares;
        let now = now_ms();
        self.timed(async {
            with_conn!(&self.pool, |conn| {
                conn.transaction(async |conn| {
                    let changed = diesel::update(
                        messages::table
                            .find(id)
                            .filter(messages::recalled_at.is_null()),
                    )
                    .set((
                        messages::content.eq(""),
                        messages::attachment.eq(None::<String>),
                        messages::status.eq(MessageStatus::Recalled.as_str()),
                        messages::recalled_at.eq(Some(now)),
                    ))
                    .execute(conn)
                    .await?;
                    if changed > 0 {
                        diesel::delete(file_shares::table.find(id))
                            .execute(conn)
                            .await?;
                    }
                    let row: Option<MessageRow> = messages::table
                        .find(id)
                        .select(MessageRow::as_select())
                        .first(conn)
                        .await
                        .optional()?;
                    match (row, changed) {
                        (None, _) => Err(StoreError::NotFound),
                        (Some(_), 0) => Err(StoreError::AlreadyRecalled),
                        (Some(row), _) => Ok(row),
                    }
                })
                .await
            })
        })
        .await
    }

    /// Replaces the text of a message that is not recalled, and stamps `edited_at`.
    ///
    /// # Errors
    ///
    /// [`StoreError::NotFound`] for an unknown id, [`StoreError::AlreadyRecalled`] when it was
    /// recalled.
    pub async fn edit(&self, id: i64, content: &str, now: i64) -> Result<MessageRow, StoreError> {
        self.timed(async {
            with_conn!(&self.pool, |conn| {
                let row: Option<MessageRow> = diesel::update(
                    messages::table
                        .find(id)
                        .filter(messages::recalled_at.is_null()),
                )
                .set((
                    messages::content.eq(content),
                    messages::edited_at.eq(Some(now)),
                ))
                .returning(MessageRow::as_returning())
                .get_result(conn)
                .await
                .optional()?;
                match row {
                    Some(row) => Ok(row),
                    None => {
                        let exists: Option<i64> = messages::table
                            .find(id)
                            .select(messages::id)
                            .first(conn)
                            .await
                            .optional()?;
                        Err(exists.map_or(StoreError::NotFound, |_| StoreError::AlreadyRecalled))
                    }
                }
            })
        })
        .await
    }

    /// Hides a message from one user's history.
    ///
    /// # Errors
    ///
    /// [`StoreError`] when the database fails.
    pub async fn delete_for(&self, user: &str, message: &MessageRow) -> Result<(), StoreError> {
        let row = MessageDeletionRow {
            user_id: user.to_owned(),
            message_id: message.id,
            conversation_id: message.conversation_id.clone(),
            deleted_at: now_ms(),
        };
        self.timed(async {
            with_conn!(&self.pool, |conn| {
                diesel::insert_into(message_deletions::table)
                    .values(&row)
                    .on_conflict_do_nothing()
                    .execute(conn)
                    .await?;
                Ok(())
            })
        })
        .await
    }

    /// Whether `user` deleted `message` for themselves.
    ///
    /// # Errors
    ///
    /// [`StoreError`] when the database fails.
    pub async fn is_deleted_for(&self, user: &str, message: i64) -> Result<bool, StoreError> {
        self.timed(async {
            with_conn!(&self.pool, |conn| {
                let count: i64 = message_deletions::table
                    .filter(message_deletions::user_id.eq(user))
                    .filter(message_deletions::message_id.eq(message))
                    .count()
                    .get_result(conn)
                    .await?;
                Ok(count > 0)
            })
        })
        .await
    }
}

/// Whether a message's status depends on its recipient's positions: a private message that
/// was not recalled (a group's or a user's own conversation has no one recipient).
fn counts_deliveries(row: &MessageRow) -> bool {
    row.status.parse() != Ok(MessageStatus::Recalled)
        && kind_of(&row.conversation_id) == Some(ConversationKind::Private)
}

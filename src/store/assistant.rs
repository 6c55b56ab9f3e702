//! Assistant (customer-service) conversations as staff see them: all of them, newest activity
//! first.

use std::collections::HashMap;

use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use schema::{ConversationRow, MessageRow, conversations, members, messages};

use super::{Store, StoreError, with_conn};

/// One assistant conversation in the staff list.
#[derive(Clone, Debug)]
pub struct AssistantSummary {
    /// The conversation.
    pub conversation: ConversationRow,
    /// The newest message.
    pub last_message: Option<MessageRow>,
    /// The user's read position.
    pub user_read_seq: i64,
}

/// A page of the staff list.
#[derive(Clone, Debug)]
pub struct AssistantPage {
    /// The entries, by last activity, newest first.
    pub items: Vec<AssistantSummary>,
    /// Where the next page starts, if there is one.
    pub next_cursor: Option<String>,
}

/// A list cursor: `<last activity>.<conversation id>`.
fn parse_cursor(cursor: &str) -> Option<(i64, String)> {
    let (activity, id) = cursor.split_once('.')?;
    Some((activity.parse().ok()?, id.to_owned()))
}

impl Store {
    /// A page of every assistant conversation, by last activity, newest first.
    ///
    /// # Errors
    ///
    /// [`StoreError`] when the database fails.
    pub async fn assistant_conversations(
        &self,
        limit: i64,
        cursor: Option<&str>,
    ) -> Result<AssistantPage, StoreError> {
        let limit = limit.clamp(1, 100);
        let cursor = cursor.and_then(parse_cursor);
        self.timed(async {
            with_conn!(&self.pool, |conn| {
                // The generated column is set on exactly the assistant conversations, so its
                // partial index serves this query and no other update has to maintain it.
                let mut query = conversations::table
                    .filter(conversations::assistant_activity_at.is_not_null())
                    .order((
                        conversations::assistant_activity_at.desc(),
                        conversations::id.desc(),
                    ))
                    .select(ConversationRow::as_select())
                    .limit(limit + 1)
                    .into_boxed();
                if let Some((activity, id)) = cursor {
                    query = query.filter(
                        conversations::assistant_activity_at.lt(activity).or(
                            conversations::assistant_activity_at
                                .eq(activity)
                                .and(conversations::id.lt(id)),
                        ),
                    );
                }
                let mut rows: Vec<ConversationRow> = query.load(conn).await?;
                let page = usize::try_from(limit).unwrap_or(usize::MAX);
                let more = rows.len() > page;
                rows.truncate(page);
                let last_ids: Vec<i64> = rows.iter().filter_map(|c| c.last_message_id).collect();
                let mut last_messages: HashMap<i64, MessageRow> = messages::table
                    .filter(messages::id.eq_any(&last_ids))
                    .select(MessageRow::as_select())
                    .load(conn)
                    .await?
                    .into_iter()
                    .map(|m| (m.id, m))
                    .collect();
                let ids: Vec<&str> = rows.iter().map(|c| c.id.as_str()).collect();
                let read: HashMap<String, i64> = members::table
                    .filter(members::conversation_id.eq_any(&ids))
                    .select((members::conversation_id, members::read_seq))
                    .load::<(String, i64)>(conn)
                    .await?
                    .into_iter()
                    .collect();
                let next_cursor = more
                    .then(|| rows.last())
                    .flatten()
                    .map(|c| format!("{}.{}", c.last_activity_at, c.id));
                let items = rows
                    .into_iter()
                    .map(|conversation| AssistantSummary {
                        last_message: conversation
                            .last_message_id
                            .and_then(|id| last_messages.remove(&id)),
                        user_read_seq: read.get(&conversation.id).copied().unwrap_or(0),
                        conversation,
                    })
                    .collect();
                Ok(AssistantPage { items, next_cursor })
            })
        })
        .await
    }
}

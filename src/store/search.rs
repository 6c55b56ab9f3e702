//! Substring search over a user's messages, newest first.
//!
//! PostgreSQL: `ILIKE '%q%'`, served for queries of three characters or more by the pg_trgm GIN
//! index on `messages.content` (trigrams of CJK text are indexed too under a UTF-8 database).
//! SQLite: an FTS5 trigram table (`messages_fts`, kept by triggers) for three characters or
//! more, unless the caller's history (in the conversation searched, or in all their
//! conversations) is small enough that scanning it is cheaper: the trigram index finds every
//! match in the whole database before the caller's conversations filter them, so a common phrase
//! costs in proportion to the whole database, while the scan costs in proportion to the caller's
//! history. Shorter queries have no trigram to look up, so both backends fall back to `LIKE` over
//! the caller's conversations, which the join on `members` keeps to those conversations' rows.
//! (The PostgreSQL planner makes the same choice between its trigram index and the scan itself.)

use diesel::prelude::*;
use diesel::sql_types::{BigInt, Text};
use diesel_async::RunQueryDsl;
use schema::{MessageRow, messages};

use super::{Store, StoreError};

/// A search request, already validated.
#[derive(Clone, Debug, Default)]
pub struct SearchQuery {
    /// The caller: only their current conversations are searched.
    pub user: String,
    /// The text to find, as a substring.
    pub text: String,
    /// Only this conversation.
    pub conversation: Option<String>,
    /// Only this format.
    pub format: Option<String>,
    /// Only messages stored at or after this time (epoch ms).
    pub from: Option<i64>,
    /// Only messages stored before this time (epoch ms).
    pub to: Option<i64>,
    /// Only messages with a smaller id (the cursor of the previous page).
    pub before_id: Option<i64>,
    /// Page size.
    pub limit: i64,
}

/// Messages in the caller's history up to which SQLite scans them with `LIKE` rather than ask the
/// trigram index: a scan of this many rows takes a few milliseconds.
pub(crate) const SQLITE_SCAN_LIMIT: i64 = 50_000;

#[derive(QueryableByName)]
struct HistorySize {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

#[derive(QueryableByName)]
struct Hit {
    #[diesel(sql_type = BigInt)]
    id: i64,
}

/// `%text%` for LIKE with `\` as the escape character.
fn like_pattern(text: &str) -> String {
    let mut pattern = String::with_capacity(text.len() + 2);
    pattern.push('%');
    for c in text.chars() {
        if matches!(c, '%' | '_' | '\\') {
            pattern.push('\\');
        }
        pattern.push(c);
    }
    pattern.push('%');
    pattern
}

/// An FTS5 phrase matching `text` literally.
fn fts_phrase(text: &str) -> String {
    format!("\"{}\"", text.replace('"', "\"\""))
}

/// Bind values in order, for SQL built with numbered placeholders (`$n`, `?n`).
enum Bind {
    Text(String),
    Int(i64),
}

/// Builds the query text for one backend: the `FROM`/`WHERE` clauses are shared, only the
/// placeholder style, the case-insensitive operator and the trigram source differ. With `scan`,
/// SQLite does not use its trigram table.
fn build(query: &SearchQuery, postgres: bool, scan: bool) -> (String, Vec<Bind>) {
    let mut binds: Vec<Bind> = Vec::new();
    let next = |binds: &mut Vec<Bind>, value: Bind| {
        binds.push(value);
        // Numbered in both dialects, so the caller's id can be used twice with one bind.
        if postgres {
            format!("${}", binds.len())
        } else {
            format!("?{}", binds.len())
        }
    };
    let trigram = !scan && query.text.chars().count() >= 3;
    let user = next(&mut binds, Bind::Text(query.user.clone()));
    let mut sql = String::from("SELECT m.id FROM ");
    let mut filters: Vec<String> = Vec::new();
    if !postgres && trigram {
        sql.push_str("messages_fts JOIN messages m ON m.id = messages_fts.rowid ");
        let phrase = next(&mut binds, Bind::Text(fts_phrase(&query.text)));
        filters.push(format!("messages_fts MATCH {phrase}"));
    } else {
        sql.push_str("messages m ");
        let pattern = next(&mut binds, Bind::Text(like_pattern(&query.text)));
        let operator = if postgres { "ILIKE" } else { "LIKE" };
        filters.push(format!("m.content {operator} {pattern} ESCAPE '\\'"));
    }
    sql.push_str(&format!(
        "JOIN members mb ON mb.conversation_id = m.conversation_id AND mb.user_id = {user} \
         AND mb.left_at IS NULL "
    ));
    filters.push(
        "m.seq > CASE WHEN mb.joined_seq > mb.cleared_seq THEN mb.joined_seq \
         ELSE mb.cleared_seq END"
            .to_owned(),
    );
    filters.push("m.status <> 'recalled'".to_owned());
    filters.push(format!(
        "NOT EXISTS (SELECT 1 FROM message_deletions d WHERE d.user_id = {user} \
         AND d.message_id = m.id)"
    ));
    if let Some(conversation) = &query.conversation {
        let p = next(&mut binds, Bind::Text(conversation.clone()));
        filters.push(format!("m.conversation_id = {p}"));
    }
    if let Some(format) = &query.format {
        let p = next(&mut binds, Bind::Text(format.clone()));
        filters.push(format!("m.format = {p}"));
    }
    if let Some(from) = query.from {
        let p = next(&mut binds, Bind::Int(from));
        filters.push(format!("m.created_at >= {p}"));
    }
    if let Some(to) = query.to {
        let p = next(&mut binds, Bind::Int(to));
        filters.push(format!("m.created_at < {p}"));
    }
    if let Some(before) = query.before_id {
        let p = next(&mut binds, Bind::Int(before));
        filters.push(format!("m.id < {p}"));
    }
    let limit = next(&mut binds, Bind::Int(query.limit.clamp(1, 100)));
    sql.push_str("WHERE ");
    sql.push_str(&filters.join(" AND "));
    sql.push_str(&format!(" ORDER BY m.id DESC LIMIT {limit}"));
    (sql, binds)
}

macro_rules! run_search {
    ($conn:ident, $backend:ty, $sql:expr, $binds:expr) => {{
        let mut statement = diesel::sql_query($sql).into_boxed::<$backend>();
        for bind in $binds {
            statement = match bind {
                Bind::Text(text) => statement.bind::<Text, _>(text),
                Bind::Int(value) => statement.bind::<BigInt, _>(value),
            };
        }
        let hits: Vec<Hit> = statement.load($conn).await?;
        let ids: Vec<i64> = hits.into_iter().map(|hit| hit.id).collect();
        let rows: Vec<MessageRow> = messages::table
            .filter(messages::id.eq_any(&ids))
            .order(messages::id.desc())
            .select(MessageRow::as_select())
            .load($conn)
            .await?;
        Ok(rows)
    }};
}

impl Store {
    /// The newest messages of `query.user`'s current conversations containing `query.text`,
    /// leaving out messages before they joined, cleared or deleted by them, and recalled ones.
    ///
    /// # Errors
    ///
    /// [`StoreError`] when the database fails.
    pub async fn search(&self, query: &SearchQuery) -> Result<Vec<MessageRow>, StoreError> {
        // Matches on the pool itself rather than through `with_conn!`: the query is boxed per
        // backend type.
        let scan_limit = std::sync::atomic::AtomicI64::load(
            &self.search_scan_limit,
            std::sync::atomic::Ordering::Relaxed,
        );
        let mut rows = self
            .timed(async {
                match &self.pool {
                    super::Pool::Postgres(pool) => {
                        let (sql, binds) = build(query, true, false);
                        let mut pooled = pool
                            .get()
                            .await
                            .map_err(|e| StoreError::Unavailable(e.to_string()))?;
                        let conn: &mut diesel_async::AsyncPgConnection = &mut pooled;
                        run_search!(conn, diesel::pg::Pg, sql, binds)
                    }
                    super::Pool::Sqlite(pool) => {
                        let mut pooled = pool
                            .get()
                            .await
                            .map_err(|e| StoreError::Unavailable(e.to_string()))?;
                        let conn: &mut super::SqliteConn = &mut pooled;
                        let history: HistorySize = diesel::sql_query(
                            "SELECT CAST(COALESCE(SUM(c.last_seq - CASE WHEN mb.joined_seq > \
                         mb.cleared_seq THEN mb.joined_seq ELSE mb.cleared_seq END), 0) AS BIGINT) \
                         AS n FROM members mb JOIN conversations c ON c.id = mb.conversation_id \
                         WHERE mb.user_id = ?1 AND mb.left_at IS NULL \
                         AND (?2 IS NULL OR mb.conversation_id = ?2)",
                        )
                        .bind::<Text, _>(&query.user)
                        .bind::<diesel::sql_types::Nullable<Text>, _>(query.conversation.as_deref())
                        .get_result(conn)
                        .await?;
                        let (sql, binds) = build(query, false, history.n <= scan_limit);
                        run_search!(conn, diesel::sqlite::Sqlite, sql, binds)
                    }
                }
            })
            .await?;
        self.with_statuses(&mut rows).await?;
        Ok(rows)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn like_patterns_escape_wildcards() {
        assert_eq!(like_pattern("50%_a\\b"), "%50\\%\\_a\\\\b%");
        assert_eq!(fts_phrase("say \"hi\""), "\"say \"\"hi\"\"\"");
    }

    #[test]
    fn short_queries_do_not_use_the_trigram_table() {
        let query = SearchQuery {
            user: "u".into(),
            text: "饭".into(),
            limit: 20,
            ..SearchQuery::default()
        };
        let (sql, _) = build(&query, false, false);
        assert!(!sql.contains("messages_fts"), "{sql}");
        let query = SearchQuery {
            text: "一起吃饭".into(),
            ..query
        };
        let (sql, binds) = build(&query, false, false);
        assert!(sql.contains("messages_fts MATCH ?2"), "{sql}");
        assert_eq!(binds.len(), 3);
        let (sql, _) = build(&query, false, true);
        assert!(
            !sql.contains("messages_fts"),
            "a small history is scanned: {sql}"
        );
        let (sql, _) = build(&query, true, false);
        assert!(sql.contains("ILIKE $2"), "{sql}");
        assert!(sql.ends_with("LIMIT $3"), "{sql}");
    }
}

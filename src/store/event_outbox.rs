//! The event outbox: domain events for the RabbitMQ exchange `im.events` are written to a table
//! (in the transaction of the change, or right after it) and published from there, so an event
//! is never lost while RabbitMQ is away and never published for a change that did not commit.
//!
//! Nodes sharing PostgreSQL drain the outbox together: each batch is claimed with
//! `FOR UPDATE SKIP LOCKED` and deleted in the same transaction that waits for RabbitMQ's
//! confirms, so a batch is published by one node, and by none if the publish fails.

use std::future::Future;
use std::pin::Pin;

use diesel_async::{AsyncConnection, RunQueryDsl};
use schema::{OutboxRow, event_outbox};
use serde_json::{Map, Value, json};

use super::{IdGenerator, Store, StoreError, with_conn};
use crate::util::now_ms;

/// Rows published per batch.
pub const BATCH: i64 = 256;

/// Publishes a batch; resolves to true when RabbitMQ confirmed every row.
pub type PublishBatch<'a> =
    &'a (dyn Fn(Vec<OutboxRow>) -> Pin<Box<dyn Future<Output = bool> + Send>> + Send + Sync);

/// Builds an outbox row: `{"event", "at", "nodeId", ...fields}`.
pub(crate) fn event_row(ids: &IdGenerator, node: &str, event: &str, fields: Value) -> OutboxRow {
    let now = now_ms();
    let mut body = Map::new();
    body.insert("event".into(), json!(event));
    body.insert("at".into(), json!(now));
    body.insert("nodeId".into(), json!(node));
    if let Value::Object(fields) = fields {
        body.extend(fields);
    }
    OutboxRow {
        id: ids.next(),
        event: event.to_owned(),
        body: Value::Object(body).to_string(),
        created_at: now,
    }
}

impl Store {
    /// Whether domain events are recorded (cluster mode).
    pub fn records_events(&self) -> bool {
        self.outbox_node.is_some()
    }

    /// Records domain events that follow a committed change; nothing in single-node mode.
    ///
    /// # Errors
    ///
    /// [`StoreError`] when the database fails.
    pub async fn record_events(&self, events: Vec<(&str, Value)>) -> Result<(), StoreError> {
        let Some(node) = &self.outbox_node else {
            return Ok(());
        };
        let rows: Vec<OutboxRow> = events
            .into_iter()
            .map(|(event, fields)| event_row(&self.ids, node, event, fields))
            .collect();
        self.timed(async {
            with_conn!(&self.pool, |conn| {
                for row in &rows {
                    diesel::insert_into(event_outbox::table)
                        .values(row)
                        .execute(conn)
                        .await?;
                }
                Ok(())
            })
        })
        .await
    }

    /// Claims the oldest batch, hands it to `publish`, and deletes it when `publish`
    /// confirms. Returns the number of events published (0 when the outbox is empty).
    ///
    /// # Errors
    ///
    /// [`StoreError`] when the database fails; [`StoreError::Unavailable`] when the publish
    /// was not confirmed (the batch stays for a later attempt).
    pub async fn publish_outbox(&self, publish: PublishBatch<'_>) -> Result<usize, StoreError> {
        // Several nodes drain one PostgreSQL outbox; SQLite serves one node.
        let claim = if self.is_postgres() {
            format!(
                "DELETE FROM event_outbox WHERE id IN (SELECT id FROM event_outbox ORDER BY id \
                 LIMIT {BATCH} FOR UPDATE SKIP LOCKED) RETURNING id, event, body, created_at"
            )
        } else {
            format!(
                "DELETE FROM event_outbox WHERE id IN (SELECT id FROM event_outbox ORDER BY id \
                 LIMIT {BATCH}) RETURNING id, event, body, created_at"
            )
        };
        with_conn!(&self.pool, |conn| {
            conn.transaction(async |conn| {
                let mut rows: Vec<OutboxRow> = diesel::sql_query(claim.as_str()).load(conn).await?;
                if rows.is_empty() {
                    return Ok(0);
                }
                rows.sort_by_key(|row| row.id);
                let count = rows.len();
                if publish(rows).await {
                    Ok(count)
                } else {
                    Err(StoreError::Unavailable("events not confirmed".into()))
                }
            })
            .await
        })
    }
}

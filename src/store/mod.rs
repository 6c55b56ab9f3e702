//! Storage through Diesel: PostgreSQL (diesel-async, pooled) in production, SQLite (bundled,
//! pooled, WAL) as the embedded default. One set of query code serves both: each operation's
//! body is written once and expanded per backend by [`with_conn!`], so the types stay concrete
//! and the SQL is the same.
//!
//! Message writes go through a group-commit writer ([`writer`]): concurrent sends are batched
//! into one transaction, which is what makes the write path fast, while each conversation's seq
//! stays gapless and every caller hears back only after the commit. The writer registers the
//! seqs it committed with the [`PushOrder`] it was given, before it answers; the store runs no
//! pushes itself.
//!
//! The store knows nothing of sessions or STOMP.

pub mod announcements;
mod assistant;
mod blocks;
pub mod contacts;
mod conversations;
pub mod devices;
pub mod event_outbox;
mod housekeeping;
pub mod inbox;
mod mentions;
mod messages;
pub mod reactions;
mod reports;
pub mod safety;
pub mod search;
mod shares;
pub mod writer;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use diesel::{Connection, SqliteConnection};
use diesel_async::AsyncPgConnection;
use diesel_async::pooled_connection::bb8::Pool as Bb8Pool;
use diesel_async::pooled_connection::{
    AsyncDieselConnectionManager, ManagerConfig, RecyclingMethod,
};
use diesel_async::sync_connection_wrapper::SyncConnectionWrapper;
use diesel_migrations::{EmbeddedMigrations, MigrationHarness, embed_migrations};

use crate::ordering::PushOrder;
use crate::redact::{redact_secrets, redact_url};
use crate::util::now_ms;

pub use assistant::{AssistantPage, AssistantSummary};
pub use conversations::{ConversationPage, ConversationSummary, GroupChange, SettingsChange};
pub use messages::{HistoryQuery, NewMessage, SendOutcome, Target};

const POSTGRES_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/postgres");
const SQLITE_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/sqlite");

/// The SQLite connection type: sync diesel run on blocking threads.
pub type SqliteConn = SyncConnectionWrapper<SqliteConnection>;

/// Why a storage operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database answered with an error.
    #[error("database error: {0}")]
    Database(#[from] diesel::result::Error),
    /// No connection could be had.
    #[error("database unavailable: {0}")]
    Unavailable(String),
    /// The operation took longer than the store's timeout.
    #[error("database timed out")]
    Timeout,
    /// A migration failed.
    #[error("migration failed: {0}")]
    Migration(String),
    /// The URL names no supported database.
    #[error("unsupported storage.url {0:?}: use sqlite://<path> or postgres://...")]
    UnsupportedUrl(String),
    /// The row asked for does not exist.
    #[error("not found")]
    NotFound,
    /// Adding the members would take the group past its member limit.
    #[error("the group is full")]
    GroupFull,
    /// The message was recalled already.
    #[error("the message is already recalled")]
    AlreadyRecalled,
    /// The recipient (named) has blocked the sender: the message was not stored.
    #[error("{0} has blocked the sender")]
    Blocked(String),
    /// A per-item bound would be passed (named: what is full).
    #[error("{0}")]
    Full(&'static str),
    /// A send of a batch written without looking its clientMsgId up first turned out to be
    /// stored before: the batch was undone, and the writer commits it again, looking first.
    #[error("a send of the batch was stored before")]
    StoredBefore,
}

/// The pool behind the store.
#[derive(Clone)]
pub(crate) enum Pool {
    Postgres(Bb8Pool<AsyncPgConnection>),
    Sqlite(Bb8Pool<SqliteConn>),
}

/// Runs `$body` with `$conn` bound to a pooled connection of whichever backend the store uses.
/// The body is compiled once per backend, so it is written once and typed concretely.
macro_rules! with_conn {
    ($pool:expr, |$conn:ident| $body:expr) => {{
        match $pool {
            $crate::store::Pool::Postgres(pool) => {
                let mut pooled = pool
                    .get()
                    .await
                    .map_err(|e| $crate::store::StoreError::Unavailable(e.to_string()))?;
                let $conn: &mut diesel_async::AsyncPgConnection = &mut pooled;
                $body
            }
            $crate::store::Pool::Sqlite(pool) => {
                let mut pooled = pool
                    .get()
                    .await
                    .map_err(|e| $crate::store::StoreError::Unavailable(e.to_string()))?;
                let $conn: &mut $crate::store::SqliteConn = &mut pooled;
                $body
            }
        }
    }};
}
pub(crate) use with_conn;

/// Inserts that the two backends need done differently: PostgreSQL takes many rows in one
/// statement; SQLite (in process, inside the same transaction) takes them one by one.
pub(crate) trait InsertRows {
    /// Inserts message rows.
    fn insert_messages(
        &mut self,
        rows: &[schema::MessageRow],
    ) -> impl Future<Output = diesel::QueryResult<usize>> + Send;

    /// Inserts member rows, skipping members already there.
    fn insert_members(
        &mut self,
        rows: &[schema::MemberRow],
    ) -> impl Future<Output = diesel::QueryResult<usize>> + Send;

    /// Called first in a transaction that reads before it writes. SQLite cannot turn a read
    /// transaction into a write transaction once another connection has written since the read
    /// began: it fails at once with "database is locked" instead of waiting for the busy
    /// timeout. Taking the write lock before the first read makes the transaction wait instead.
    /// PostgreSQL needs nothing.
    fn lock_for_write(&mut self) -> impl Future<Output = diesel::QueryResult<()>> + Send;
}

impl InsertRows for AsyncPgConnection {
    async fn insert_messages(&mut self, rows: &[schema::MessageRow]) -> diesel::QueryResult<usize> {
        use diesel_async::RunQueryDsl;
        // PostgreSQL allows 65535 bind parameters per statement; 17 per row.
        let mut inserted = 0;
        for chunk in rows.chunks(3500) {
            inserted += diesel::insert_into(schema::messages::table)
                .values(chunk)
                .execute(self)
                .await?;
        }
        Ok(inserted)
    }

    async fn insert_members(&mut self, rows: &[schema::MemberRow]) -> diesel::QueryResult<usize> {
        use diesel_async::RunQueryDsl;
        // 12 bind parameters per row.
        let mut inserted = 0;
        for chunk in rows.chunks(5000) {
            inserted += diesel::insert_into(schema::members::table)
                .values(chunk)
                .on_conflict_do_nothing()
                .execute(self)
                .await?;
        }
        Ok(inserted)
    }

    async fn lock_for_write(&mut self) -> diesel::QueryResult<()> {
        Ok(())
    }
}

impl InsertRows for SqliteConn {
    async fn insert_messages(&mut self, rows: &[schema::MessageRow]) -> diesel::QueryResult<usize> {
        use diesel_async::RunQueryDsl;
        let mut inserted = 0;
        for row in rows {
            inserted += diesel::insert_into(schema::messages::table)
                .values(row)
                .execute(self)
                .await?;
        }
        Ok(inserted)
    }

    async fn insert_members(&mut self, rows: &[schema::MemberRow]) -> diesel::QueryResult<usize> {
        use diesel_async::RunQueryDsl;
        let mut inserted = 0;
        for row in rows {
            inserted += diesel::insert_into(schema::members::table)
                .values(row)
                .on_conflict_do_nothing()
                .execute(self)
                .await?;
        }
        Ok(inserted)
    }

    async fn lock_for_write(&mut self) -> diesel::QueryResult<()> {
        use diesel_async::RunQueryDsl;
        // A write statement, even one that changes no row, takes the write lock (waiting up to
        // the busy timeout) before the transaction has read anything.
        diesel::sql_query("UPDATE conversations SET last_seq = last_seq WHERE 0 = 1")
            .execute(self)
            .await
            .map(|_| ())
    }
}

/// Settings of the store.
#[derive(Clone, Debug)]
pub struct StoreSettings {
    /// `sqlite://path` or `postgres://...`.
    pub url: String,
    /// Pool size (PostgreSQL; SQLite uses a small pool of its own).
    pub pool_size: u32,
    /// Bound on each database operation.
    pub timeout: Duration,
    /// Largest batch the writer commits at once.
    pub max_batch: usize,
    /// Most notifications in one batch (the rest of it is for people's messages).
    pub max_bulk_batch: usize,
    /// This node's number in message ids (0-1023).
    pub node_number: u16,
    /// This node's id when domain events are recorded for `im.events` (cluster mode).
    pub outbox_node: Option<String>,
    /// Whether private and assistant messages take inbox positions (`im.private_resume`).
    pub inbox_positions: bool,
}

/// The store handle.
#[derive(Clone)]
pub struct Store {
    pub(crate) pool: Pool,
    pub(crate) ids: Arc<IdGenerator>,
    pub(crate) outbox_node: Option<String>,
    pub(crate) timeout: Duration,
    writer: writer::WriterHandle,
    /// See [`Store::set_search_scan_limit`].
    pub(crate) search_scan_limit: Arc<std::sync::atomic::AtomicI64>,
}

/// How the store is doing, for `/metrics`.
#[derive(Clone, Copy, Debug, Default)]
pub struct StoreLoad {
    /// Sends waiting for the group-commit writer.
    pub writer_queued: usize,
    /// Database connections open.
    pub connections: u32,
    /// Of those, idle.
    pub idle: u32,
    /// Requests for a connection that had to wait, since start.
    pub waited: u64,
    /// Requests for a connection that timed out waiting, since start.
    pub timed_out: u64,
}

impl Store {
    /// The writer's backlog and the connection pool's state.
    pub fn load(&self) -> StoreLoad {
        let state = match &self.pool {
            Pool::Postgres(pool) => pool.state(),
            Pool::Sqlite(pool) => pool.state(),
        };
        StoreLoad {
            writer_queued: self.writer.queued(),
            connections: state.connections,
            idle: state.idle_connections,
            waited: state.statistics.get_waited,
            timed_out: state.statistics.get_timed_out,
        }
    }

    /// Connects, runs pending migrations and starts the group-commit writer, which registers
    /// every seq it commits with `push_order` before it answers the sender.
    ///
    /// # Errors
    ///
    /// [`StoreError`] when the database is unreachable or a migration fails.
    pub async fn open(
        settings: &StoreSettings,
        push_order: Arc<PushOrder>,
    ) -> Result<Store, StoreError> {
        migrate(&settings.url).await?;
        let pool = connect(settings).await?;
        let ids = Arc::new(IdGenerator::new(settings.node_number));
        let writer = writer::start(settings, ids.clone(), push_order).await?;
        Ok(Store {
            pool,
            ids,
            outbox_node: settings.outbox_node.clone(),
            timeout: settings.timeout,
            writer,
            search_scan_limit: Arc::new(std::sync::atomic::AtomicI64::new(
                search::SQLITE_SCAN_LIMIT,
            )),
        })
    }

    /// Whether the database answers (for `/readyz`).
    pub async fn ping(&self) -> bool {
        let query = async {
            with_conn!(&self.pool, |conn| {
                use diesel_async::RunQueryDsl;
                diesel::sql_query("SELECT 1")
                    .execute(conn)
                    .await
                    .map_err(StoreError::from)
            })
        };
        matches!(
            tokio::time::timeout(Duration::from_secs(2), query).await,
            Ok(Ok(_))
        )
    }

    /// Sets the size of a caller's history (messages) up to which SQLite search scans it instead
    /// of asking its trigram index (see [`search`]); for tests of both paths.
    pub fn set_search_scan_limit(&self, messages: i64) {
        self.search_scan_limit
            .store(messages, std::sync::atomic::Ordering::Relaxed);
    }

    /// Whether this store is PostgreSQL.
    pub fn is_postgres(&self) -> bool {
        matches!(self.pool, Pool::Postgres(_))
    }

    /// Bounds an operation by the store's timeout.
    pub(crate) async fn timed<T>(
        &self,
        operation: impl Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        tokio::time::timeout(self.timeout, operation)
            .await
            .map_err(|_| StoreError::Timeout)?
    }
}

/// Runs the pending migrations of the database at `url`, creating a SQLite file's folder.
///
/// # Errors
///
/// [`StoreError`] when the database is unreachable or a migration fails.
pub async fn migrate(url: &str) -> Result<(), StoreError> {
    let url = url.to_owned();
    tokio::task::spawn_blocking(move || -> Result<(), StoreError> {
        // Connection errors may quote the URL, and so its password.
        let failed = |e: Box<dyn std::error::Error + Send + Sync>| {
            StoreError::Migration(redact_secrets(&e.to_string(), &url))
        };
        let unavailable = |e: &dyn std::fmt::Display| {
            StoreError::Unavailable(redact_secrets(&e.to_string(), &url))
        };
        if let Some(path) = sqlite_path(&url) {
            prepare_sqlite_dir(path)?;
            let mut conn = SqliteConnection::establish(path).map_err(|e| unavailable(&e))?;
            // Another process (a broker still closing, or one running) may hold a lock for a
            // moment: wait for it as the pooled connections do, instead of failing at once.
            diesel::connection::SimpleConnection::batch_execute(
                &mut conn,
                "PRAGMA busy_timeout = 5000;",
            )
            .map_err(|e| unavailable(&e))?;
            conn.run_pending_migrations(SQLITE_MIGRATIONS)
                .map_err(failed)?;
            return Ok(());
        }
        if is_postgres_url(&url) {
            // Runs diesel's sync migration machinery over the async connection, on this
            // blocking thread, so no libpq is needed.
            let mut conn = diesel_async::async_connection_wrapper::AsyncConnectionWrapper::<
                AsyncPgConnection,
            >::establish(&url)
            .map_err(|e| unavailable(&e))?;
            conn.run_pending_migrations(POSTGRES_MIGRATIONS)
                .map_err(failed)?;
            return Ok(());
        }
        Err(StoreError::UnsupportedUrl(redact_url(&url)))
    })
    .await
    .map_err(|e| StoreError::Migration(e.to_string()))?
}

fn sqlite_path(url: &str) -> Option<&str> {
    url.strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
}

fn is_postgres_url(url: &str) -> bool {
    url.starts_with("postgres://") || url.starts_with("postgresql://")
}

/// Creates the database's folder (`0700`) and file (`0600`) before SQLite opens it: SQLite
/// would create the file with the umask's mode, and gives its `-wal` and `-shm` files the mode
/// of the database file.
fn prepare_sqlite_dir(path: &str) -> Result<(), StoreError> {
    if path == ":memory:" || path.starts_with("file:") || path.contains('?') {
        return Ok(());
    }
    let path = Path::new(path);
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        crate::private_fs::create_dir(dir).map_err(|e| {
            StoreError::Unavailable(format!("cannot create {}: {e}", dir.display()))
        })?;
    }
    crate::private_fs::create_file(path)
        .map_err(|e| StoreError::Unavailable(format!("cannot create {}: {e}", path.display())))
}

async fn connect(settings: &StoreSettings) -> Result<Pool, StoreError> {
    connect_sized(settings, settings.pool_size, 4).await
}

/// A pool of at most `postgres_size` connections on PostgreSQL, `sqlite_size` on SQLite.
async fn connect_sized(
    settings: &StoreSettings,
    postgres_size: u32,
    sqlite_size: u32,
) -> Result<Pool, StoreError> {
    let unavailable = |e: &dyn std::fmt::Display| {
        StoreError::Unavailable(redact_secrets(&e.to_string(), &settings.url))
    };
    if let Some(path) = sqlite_path(&settings.url) {
        let mut config = ManagerConfig::<SqliteConn>::default();
        config.recycling_method = RecyclingMethod::Fast;
        config.custom_setup = Box::new(|path| {
            let path = path.to_owned();
            Box::pin(async move {
                use diesel_async::{AsyncConnection, SimpleAsyncConnection};
                let mut conn = SqliteConn::establish(&path).await?;
                // WAL lets readers proceed while the writer commits; NORMAL sync is durable
                // across process crashes in WAL mode; the busy timeout absorbs the short
                // write locks of the other pooled connections.
                conn.batch_execute(
                    "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; \
                     PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 5000;",
                )
                .await
                .map_err(diesel::ConnectionError::CouldntSetupConfiguration)?;
                Ok(conn)
            })
        });
        let manager = AsyncDieselConnectionManager::new_with_config(path, config);
        let pool = Bb8Pool::builder()
            .max_size(sqlite_size)
            .connection_timeout(settings.timeout)
            .build(manager)
            .await
            .map_err(|e| unavailable(&e))?;
        return Ok(Pool::Sqlite(pool));
    }
    if is_postgres_url(&settings.url) {
        let mut config = ManagerConfig::<AsyncPgConnection>::default();
        config.recycling_method = RecyclingMethod::Fast;
        let manager = AsyncDieselConnectionManager::new_with_config(&settings.url, config);
        let pool = Bb8Pool::builder()
            .max_size(postgres_size)
            .connection_timeout(settings.timeout)
            .build(manager)
            .await
            .map_err(|e| unavailable(&e))?;
        return Ok(Pool::Postgres(pool));
    }
    Err(StoreError::UnsupportedUrl(redact_url(&settings.url)))
}

/// 2026-01-01T00:00:00Z: the epoch of message ids, leaving 69 years of 41-bit milliseconds.
const ID_EPOCH_MS: i64 = 1_767_225_600_000;

/// Time-ordered 64-bit ids: 41 bits of milliseconds, 10 bits of node, 12 bits of sequence.
#[derive(Debug)]
pub struct IdGenerator {
    node: i64,
    /// `(ms << 12) | sequence` of the last id, so one atomic holds the whole state.
    last: AtomicU64,
}

impl IdGenerator {
    /// A generator for node `node` (taken modulo 1024).
    pub fn new(node: u16) -> IdGenerator {
        IdGenerator {
            node: i64::from(node % 1024),
            last: AtomicU64::new(0),
        }
    }

    /// The next id; strictly increasing on this node.
    pub fn next(&self) -> i64 {
        let now = u64::try_from((now_ms() - ID_EPOCH_MS).max(0)).unwrap_or(0) << 12;
        let mut last = self.last.load(Ordering::Relaxed);
        loop {
            // More than 4096 ids in a millisecond borrow from the next millisecond.
            let next = if now > last { now } else { last + 1 };
            match self
                .last
                .compare_exchange_weak(last, next, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => {
                    let ms = i64::try_from(next >> 12).unwrap_or(0);
                    let seq = i64::try_from(next & 0xfff).unwrap_or(0);
                    return (ms << 22) | (self.node << 12) | seq;
                }
                Err(current) => last = current,
            }
        }
    }
}

/// A node number for ids, derived from the node id (FNV-1a, 10 bits).
pub fn node_number(node_id: &str) -> u16 {
    let mut hash: u32 = 0x811c_9dc5;
    for byte in node_id.bytes() {
        hash ^= u32::from(byte);
        hash = hash.wrapping_mul(0x0100_0193);
    }
    u16::try_from(hash % 1024).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_increase_and_carry_the_node() {
        let ids = IdGenerator::new(5);
        let mut previous = 0;
        for _ in 0..10_000 {
            let id = ids.next();
            assert!(id > previous);
            assert_eq!((id >> 12) & 0x3ff, 5);
            previous = id;
        }
    }
}

//! Search benchmark on one million stored messages (it takes minutes):
//!
//! ```sh
//! BROKER_TEST_POSTGRES_URL=postgres://postgres@127.0.0.1:5432/test cargo bench --bench search
//! ```
//!
//! `BENCH_SEARCH_BACKEND=sqlite` or `=postgres` runs one half only.
//!
//! Seeds 20 000 private conversations of 50 messages each among 1 000 users (each user is in 40
//! conversations, about 2 000 messages), with Chinese text in which 1 message in 50 (one in every conversation) contains
//! 一起吃饭, then times `Store::search` (the query behind `GET /api/v1/search`, limit 20) for a
//! CJK substring in one conversation and across all of a user's conversations, and a
//! two-character query that takes the fallback scan. Prints p50 and p99 per backend.

#[allow(dead_code)]
#[path = "../tests/integration/common/db.rs"]
mod db;

use std::sync::Arc;
use std::time::{Duration, Instant};

use broker::ordering::PushOrder;
use broker::store::search::SearchQuery;
use broker::store::{Store, StoreSettings};
use diesel::Connection;
use diesel_async::{AsyncConnection, AsyncPgConnection, SimpleAsyncConnection};

const MESSAGES: i64 = 1_000_000;
const ROUNDS: usize = 300;

/// The content of message `g`, as a SQL expression valid in both dialects.
fn content_sql() -> String {
    let phrases = [
        "今天天气不错",
        "我们明天开会",
        "这个方案怎么样",
        "周末去爬山吧",
        "晚上一起看电影",
        "项目进度如何",
        "收到请回复",
        "hello world",
        "好的没问题",
        "谢谢你的帮助",
    ];
    let pick = |multiplier: u64| {
        let arms: String = phrases
            .iter()
            .enumerate()
            .map(|(i, p)| format!(" WHEN {i} THEN '{p}'"))
            .collect();
        format!("(CASE ((g * {multiplier}) % 10){arms} END)")
    };
    format!(
        "{} || '，' || {} || ' #' || g || (CASE WHEN g % 50 = 7 THEN '，今天晚上一起吃饭吗' ELSE '' END)",
        pick(7919),
        pick(104_729)
    )
}

/// The seeding statements; `series(n)` is a FROM item yielding `g` = 1..=n.
fn seed_sql(series: impl Fn(i64) -> String) -> String {
    format!(
        "INSERT INTO conversations (id, kind, last_seq, last_activity_at, status, settings, created_at)
           SELECT 'private_' || g, 'private', 50, 0, 'active', '{{}}', 0 FROM {small};
         INSERT INTO members (conversation_id, user_id, role, joined_at)
           SELECT 'private_' || g, 'u' || (g % 1000), 'member', 0 FROM {small};
         INSERT INTO members (conversation_id, user_id, role, joined_at)
           SELECT 'private_' || g, 'u' || ((g % 1000 + 500) % 1000), 'member', 0 FROM {small};
         INSERT INTO messages (id, conversation_id, seq, sender_id, client_msg_id, format, content, status, created_at)
           SELECT g, 'private_' || ((g - 1) / 50 + 1), (g - 1) % 50 + 1, 'u' || (((g - 1) / 50 + 1) % 1000),
                  'b' || g, 'text', {content}, 'sent', CAST(1763900000000 AS BIGINT) + g
           FROM {large};",
        content = content_sql(),
        small = series(20_000),
        large = series(MESSAGES),
    )
}

fn percentile(samples: &mut [Duration], p: f64) -> Duration {
    samples.sort();
    let index = ((samples.len() as f64 - 1.0) * p).round() as usize;
    samples[index]
}

async fn time(store: &Store, label: &str, query: SearchQuery) {
    let first = store.search(&query).await.expect("search");
    let mut samples = Vec::with_capacity(ROUNDS);
    for _ in 0..ROUNDS {
        let start = Instant::now();
        let rows = store.search(&query).await.expect("search");
        samples.push(start.elapsed());
        assert_eq!(rows.len(), first.len());
    }
    let p50 = percentile(&mut samples, 0.50);
    let p99 = percentile(&mut samples, 0.99);
    println!(
        "{label}: {} hits on the page, p50 {:.2} ms, p99 {:.2} ms",
        first.len(),
        p50.as_secs_f64() * 1000.0,
        p99.as_secs_f64() * 1000.0
    );
}

async fn run(label: &str, store: &Store) {
    let user = "u7".to_owned();
    let all = SearchQuery {
        user: user.clone(),
        text: "一起吃饭".into(),
        limit: 20,
        ..SearchQuery::default()
    };
    time(
        store,
        &format!("{label} CJK substring, all 40 conversations"),
        all.clone(),
    )
    .await;
    time(
        store,
        &format!("{label} CJK substring, one conversation"),
        SearchQuery {
            conversation: Some("private_7".into()),
            ..all.clone()
        },
    )
    .await;
    time(
        store,
        &format!("{label} two characters (fallback scan), all conversations"),
        SearchQuery {
            text: "吃饭".into(),
            ..all.clone()
        },
    )
    .await;
    time(
        store,
        &format!("{label} CJK substring with no hit, all conversations"),
        SearchQuery {
            text: "不存在的词".into(),
            ..all
        },
    )
    .await;
}

fn settings(url: &str) -> StoreSettings {
    StoreSettings {
        url: url.to_owned(),
        pool_size: 4,
        timeout: Duration::from_secs(60),
        max_batch: 64,
        max_bulk_batch: 64,
        node_number: 1,
        outbox_node: None,
        inbox_positions: true,
    }
}

/// Whether to run the `label` half: `BENCH_SEARCH_BACKEND=sqlite|postgres` runs one only.
fn wanted(label: &str) -> bool {
    std::env::var("BENCH_SEARCH_BACKEND").map_or(true, |only| only == label)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    if wanted("sqlite") {
        sqlite().await;
    }
    if wanted("postgres") {
        postgres().await;
    }
}

async fn sqlite() {
    let sqlite = db::sqlite();
    let store = Store::open(&settings(&sqlite.url), Arc::new(PushOrder::default()))
        .await
        .expect("open");
    let started = Instant::now();
    let path = sqlite.url.trim_start_matches("sqlite://").to_owned();
    tokio::task::spawn_blocking(move || {
        use diesel::connection::SimpleConnection;
        let mut conn = diesel::SqliteConnection::establish(&path).expect("sqlite");
        // SQLite has no generate_series by default: a recursive CTE stands in for it.
        let sql = seed_sql(|n| {
            format!(
                "(WITH RECURSIVE s(g) AS (SELECT 1 UNION ALL SELECT g + 1 FROM s WHERE g < {n}) \
                 SELECT g FROM s)"
            )
        });
        conn.batch_execute(&format!("BEGIN; {sql} COMMIT; ANALYZE;"))
            .expect("seed sqlite");
    })
    .await
    .expect("seed task");
    println!("sqlite: seeded in {:.1} s", started.elapsed().as_secs_f64());
    run("sqlite", &store).await;
}

async fn postgres() {
    if let Some(postgres) = db::postgres().await {
        let store = Store::open(&settings(&postgres.url), Arc::new(PushOrder::default()))
            .await
            .expect("open");
        let started = Instant::now();
        let mut conn = AsyncPgConnection::establish(&postgres.url)
            .await
            .expect("postgres");
        // Building the trigram index once after the load is much faster than maintaining it
        // row by row.
        conn.batch_execute(&format!(
            "DROP INDEX messages_content_trgm; {} \
             CREATE INDEX messages_content_trgm ON messages USING gin (content gin_trgm_ops);",
            // bigint, as in SQLite: `g * 104729` overflows a PostgreSQL integer.
            seed_sql(|n| format!("generate_series(CAST(1 AS BIGINT), CAST({n} AS BIGINT)) AS g"))
        ))
        .await
        .expect("seed postgres");
        conn.batch_execute("VACUUM ANALYZE")
            .await
            .expect("analyze postgres");
        println!(
            "postgres: seeded in {:.1} s",
            started.elapsed().as_secs_f64()
        );
        run("postgres", &store).await;
    }
}

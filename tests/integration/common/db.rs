//! Databases for tests: a fresh SQLite file always, and a fresh PostgreSQL database when
//! `BROKER_TEST_POSTGRES_URL` is set. In CI (`CI=true`) PostgreSQL is required.

use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};

/// A database a test runs against; dropped (best effort) with the value.
pub struct TestDatabase {
    /// `sqlite` or `postgres`.
    pub label: &'static str,
    /// The URL to give the broker.
    pub url: String,
    _dir: Option<tempfile::TempDir>,
    /// For PostgreSQL: the server URL to connect to for dropping the database, and its name.
    postgres: Option<(String, String)>,
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let Some((base, name)) = self.postgres.take() else {
            return;
        };
        // Drop runs inside the test's runtime, which cannot block on a future: a thread with a
        // runtime of its own does the work. FORCE ends a broker's connections that are still
        // open; a failure only leaves the database behind.
        let dropped = std::thread::spawn(move || {
            let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            runtime.block_on(async {
                if let Ok(mut admin) = AsyncPgConnection::establish(&base).await {
                    let _ =
                        diesel::sql_query(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                            .execute(&mut admin)
                            .await;
                }
            });
        });
        let _ = dropped.join();
    }
}

/// The PostgreSQL server URL from the environment, or a failure in CI when it is missing.
fn postgres_base() -> Option<String> {
    match std::env::var("BROKER_TEST_POSTGRES_URL") {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "CI=true but BROKER_TEST_POSTGRES_URL is not set"
            );
            None
        }
    }
}

/// A fresh SQLite database in a temporary folder.
pub fn sqlite() -> TestDatabase {
    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite://{}", dir.path().join("broker.db").display());
    TestDatabase {
        label: "sqlite",
        url,
        _dir: Some(dir),
        postgres: None,
    }
}

/// A fresh, empty PostgreSQL database, when PostgreSQL is configured.
pub async fn postgres() -> Option<TestDatabase> {
    let base = postgres_base()?;
    Some(postgres_at(&base).await)
}

/// A fresh, empty database on the PostgreSQL server at `base` (a URL naming any database).
pub async fn postgres_at(base: &str) -> TestDatabase {
    let name = format!("broker_test_{:016x}", rand::random::<u64>());
    let mut admin = AsyncPgConnection::establish(base)
        .await
        .unwrap_or_else(|e| panic!("PostgreSQL at {base} is not reachable: {e}"));
    diesel::sql_query(format!("CREATE DATABASE {name}"))
        .execute(&mut admin)
        .await
        .expect("create test database");
    let (prefix, _) = base.rsplit_once('/').expect("database in URL");
    TestDatabase {
        label: "postgres",
        url: format!("{prefix}/{name}"),
        _dir: None,
        postgres: Some((base.to_owned(), name)),
    }
}

/// Every configured backend, SQLite first.
pub async fn all() -> Vec<TestDatabase> {
    let mut databases = vec![sqlite()];
    databases.extend(postgres().await);
    databases
}

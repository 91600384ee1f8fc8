//! Shared by the store-level tests: each test body runs on SQLite (a temp file) and on
//! PostgreSQL (127.0.0.1:5432, database `test`, a schema of its own, dropped afterwards), and
//! events are turned into batches as the consumer would.

#![allow(dead_code)]

use packwell::coupon::CouponKey;
use packwell::engine::Shop;
use packwell::event::event_from_value;
use packwell::store::{Batch, BatchItem, DecideEnv, Fence, PgStore, SqliteStore, Store};
use serde_json::Value;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

pub const PG_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

/// A store under test, with a way to run raw SQL on the same database.
pub struct Backend {
    pub name: &'static str,
    pub store: Arc<dyn Store>,
    pub raw: Raw,
    _dir: Option<tempfile::TempDir>,
    _schema: Option<SchemaGuard>,
    /// Opens a second store (another connection pool) on the same database.
    pub reopen: Reopen,
}

pub enum Raw {
    Sqlite(sqlx::SqlitePool),
    Pg(sqlx::PgPool),
}

pub enum Reopen {
    Sqlite(String),
    Pg(String),
}

impl Backend {
    pub async fn exec(&self, sql: &str) {
        match &self.raw {
            Raw::Sqlite(p) => sqlx::query(sql).execute(p).await.map(|_| ()).unwrap(),
            Raw::Pg(p) => sqlx::query(sql).execute(p).await.map(|_| ()).unwrap(),
        }
    }

    pub async fn another(&self) -> Arc<dyn Store> {
        match &self.reopen {
            Reopen::Sqlite(path) => Arc::new(SqliteStore::open(path).await.unwrap()),
            Reopen::Pg(schema) => {
                Arc::new(PgStore::with_pool(pg_pool(schema).await).await.unwrap())
            }
        }
    }
}

/// Drops the test's schema, also when the test panics.
pub struct SchemaGuard(String);

impl Drop for SchemaGuard {
    fn drop(&mut self) {
        let schema = self.0.clone();
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                if let Ok(pool) = sqlx::PgPool::connect(PG_URL).await {
                    let _ = sqlx::query(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
                        .execute(&pool)
                        .await;
                }
            });
        })
        .join();
    }
}

pub async fn pg_pool(schema: &str) -> sqlx::PgPool {
    use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
    use std::str::FromStr;
    let opts = PgConnectOptions::from_str(PG_URL)
        .unwrap()
        .options([("search_path", schema)]);
    PgPoolOptions::new()
        .max_connections(4)
        .connect_with(opts)
        .await
        .unwrap()
}

static SEQ: AtomicU32 = AtomicU32::new(0);

pub async fn sqlite() -> Backend {
    let dir = tempfile::tempdir().unwrap();
    let path = dir
        .path()
        .join("packwell.db")
        .to_string_lossy()
        .into_owned();
    let store = Arc::new(SqliteStore::open(&path).await.unwrap());
    let raw = sqlx::SqlitePool::connect(&format!("sqlite:{path}"))
        .await
        .unwrap();
    Backend {
        name: "sqlite",
        store,
        raw: Raw::Sqlite(raw),
        _dir: Some(dir),
        _schema: None,
        reopen: Reopen::Sqlite(path),
    }
}

pub async fn postgres() -> Backend {
    let schema = format!(
        "pw_test_{}_{}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    );
    let admin = sqlx::PgPool::connect(PG_URL)
        .await
        .expect("PostgreSQL at 127.0.0.1:5432 (database test)");
    sqlx::query(&format!("CREATE SCHEMA {schema}"))
        .execute(&admin)
        .await
        .unwrap();
    let guard = SchemaGuard(schema.clone());
    let pool = pg_pool(&schema).await;
    let store = Arc::new(PgStore::with_pool(pool.clone()).await.unwrap());
    Backend {
        name: "postgres",
        store,
        raw: Raw::Pg(pool),
        _dir: None,
        _schema: Some(guard),
        reopen: Reopen::Pg(schema),
    }
}

/// Runs a test body on both backends.
macro_rules! on_both {
    ($name:ident, $body:ident) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $name() {
            $body(sqlite().await).await;
            $body(postgres().await).await;
        }
    };
}

pub fn env_from(rules: &str, templates: &[(&str, &str)]) -> DecideEnv {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("rules")).unwrap();
    std::fs::write(dir.path().join("rules/r.toml"), rules).unwrap();
    for (path, text) in templates {
        let path = dir.path().join("templates").join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }
    let out = packwell::rules::load_rules(&dir.path().join("rules"), &dir.path().join("templates"));
    let msgs: Vec<String> = out.findings.iter().map(|f| f.to_string()).collect();
    DecideEnv {
        rules: Arc::new(out.rules.unwrap_or_else(|| panic!("{msgs:?}"))),
        key: CouponKey::from_bytes(vec![9; 32]),
        shop: Shop::default(),
    }
}

pub fn item(offset: i64, v: &Value) -> BatchItem {
    let bytes = serde_json::to_vec(v).unwrap();
    let customer = v["order"]["customer"]["id"]
        .as_str()
        .or(v["customer_id"].as_str())
        .unwrap_or("")
        .as_bytes()
        .to_vec();
    BatchItem {
        offset,
        key: Some(customer),
        value: bytes,
        event: event_from_value(v),
        decide: true,
    }
}

pub fn batch(events: &[Value]) -> Batch {
    Batch {
        fence: Fence::None,
        items: events
            .iter()
            .enumerate()
            .map(|(i, v)| item(i as i64, v))
            .collect(),
    }
}

/// A small deterministic generator (SplitMix64): the same seed, the same history.
pub struct SplitMix(pub u64);

impl SplitMix {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

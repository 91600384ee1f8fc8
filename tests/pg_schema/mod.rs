//! A PostgreSQL schema of a test's own, for tests that hand the store's URL to the `packwell`
//! binary (the store-level tests use `store_support` instead).

pub const PG_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

/// Runs one statement on the local server (127.0.0.1:5432, database `test`).
pub fn psql(sql: &str) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let pool = sqlx::PgPool::connect(PG_URL)
            .await
            .expect("PostgreSQL at 127.0.0.1:5432 (database test)");
        sqlx::query(sql).execute(&pool).await.unwrap();
    });
}

/// A schema of the test's own, made empty, and dropped afterwards, also when the test fails.
pub struct Schema(pub String);

impl Schema {
    pub fn new(name: &str) -> Schema {
        psql(&format!("DROP SCHEMA IF EXISTS {name} CASCADE"));
        psql(&format!("CREATE SCHEMA {name}"));
        Schema(name.to_string())
    }

    /// The store URL whose tables live in this schema.
    pub fn store_url(&self) -> String {
        format!("{PG_URL}?options[search_path]={}", self.0)
    }
}

impl Drop for Schema {
    fn drop(&mut self) {
        psql(&format!("DROP SCHEMA IF EXISTS {} CASCADE", self.0));
    }
}

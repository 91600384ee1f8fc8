//! Shared by the end-to-end benchmarks (`service`, `station`, `report`): their settings from
//! the environment and a PostgreSQL database of their own.

/// A number from the environment, or `default` when unset or not a number.
pub fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// `PW_BENCH_SKIP_PG` set (to anything but empty or `0`): the machine has no PostgreSQL to
/// measure against.
pub fn skip_postgres() -> bool {
    std::env::var("PW_BENCH_SKIP_PG").is_ok_and(|v| !v.is_empty() && v != "0")
}

/// A PostgreSQL database created for one benchmark run (named after the process, so two runs
/// do not meet) and dropped, with any connection still open to it, when this is dropped, so a
/// benchmark that fails half-way leaves nothing behind.
///
/// The server is the one in `PW_BENCH_PG_URL` (default
/// `postgres://postgres@127.0.0.1:5432/test`); its database there only serves to create ours.
pub struct ScratchDatabase {
    admin_url: String,
    name: String,
    /// The new database's URL, for the store.
    pub url: String,
}

impl ScratchDatabase {
    /// Creates `<prefix>_<pid>`, dropping a leftover of that name first. Call it outside any
    /// tokio runtime: it runs its statements on a small runtime of its own, which is what lets
    /// `Drop` clean up too.
    pub fn create(prefix: &str) -> ScratchDatabase {
        let admin_url = admin_url();
        let name = format!("{prefix}_{}", std::process::id());
        let url = database_url(&name);
        run_statements(
            &admin_url,
            &[
                format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
                format!("CREATE DATABASE {name}"),
            ],
        )
        .unwrap_or_else(|e| {
            panic!("cannot create the database {name} on {admin_url}: {e} (PW_BENCH_SKIP_PG=1 skips PostgreSQL)")
        });
        ScratchDatabase {
            admin_url,
            name,
            url,
        }
    }
}

/// The server's URL with the database the benchmarks start from: `PW_BENCH_PG_URL`, default
/// `postgres://postgres@127.0.0.1:5432/test`.
pub fn admin_url() -> String {
    std::env::var("PW_BENCH_PG_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

/// The URL of database `name` on the benchmarks' server.
pub fn database_url(name: &str) -> String {
    let admin = admin_url();
    let server = admin.rsplit_once('/').map_or(admin.as_str(), |(s, _)| s);
    format!("{server}/{name}")
}

impl Drop for ScratchDatabase {
    fn drop(&mut self) {
        let drop = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name);
        if let Err(e) = run_statements(&self.admin_url, &[drop]) {
            eprintln!("warning: could not drop the database {}: {e}", self.name);
        }
    }
}

fn run_statements(url: &str, statements: &[String]) -> Result<(), sqlx::Error> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime for the database statements");
    runtime.block_on(async {
        let pool = sqlx::PgPool::connect(url).await?;
        for statement in statements {
            sqlx::query(statement).execute(&pool).await?;
        }
        pool.close().await;
        Ok(())
    })
}

//! `packwell backtest --from-store` through the binary: a history imported into a store (SQLite,
//! then PostgreSQL) and replayed from the events the store kept prints exactly what
//! `backtest --events` prints for the same file with the same window, in text and in JSON; the
//! store is only read (its files are byte for byte as before); `--events` and `--from-store`
//! exclude each other, and a missing store or a bad `--days` is a usage error (exit 2).

mod pg_schema;

use pg_schema::Schema;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_packwell");

fn rules_dir() -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("rules")
        .display()
        .to_string()
}

/// A scratch folder with the first `n` events of the example history.
fn scratch(n: usize) -> (tempfile::TempDir, PathBuf) {
    scratch_while(|i, _| i < n)
}

/// A scratch folder with the events of the example history's first `days` days: a window of
/// 30 days then has history before it.
fn scratch_days(days: i64) -> (tempfile::TempDir, PathBuf) {
    let at = |line: &str| {
        let v: Value = serde_json::from_str(line).expect("a JSON line");
        chrono::DateTime::parse_from_rfc3339(v["occurred_at"].as_str().expect("occurred_at"))
            .expect("a time")
    };
    let mut first = None;
    scratch_while(|_, line| {
        let t = at(line);
        t < *first.get_or_insert(t) + chrono::Duration::days(days)
    })
}

/// A scratch folder with the example history's first events, while `keep(index, line)`.
fn scratch_while(mut keep: impl FnMut(usize, &str) -> bool) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("a temporary folder");
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/history.ndjson"),
    )
    .expect("examples/history.ndjson");
    let lines: Vec<&str> = text
        .lines()
        .enumerate()
        .take_while(|(i, l)| keep(*i, l))
        .map(|(_, l)| l)
        .collect();
    assert!(!lines.is_empty());
    let file = dir.path().join("history.ndjson");
    std::fs::write(&file, lines.join("\n") + "\n").expect("write the history");
    (dir, file)
}

/// `packwell ARGS` in `dir` with `PACKWELL_STORE_URL` = `store` and no other PACKWELL_* setting.
fn packwell(dir: &Path, store: &str, args: &[&str]) -> Output {
    let mut c = Command::new(BIN);
    c.current_dir(dir);
    for (k, _) in std::env::vars() {
        if k.starts_with("PACKWELL_") {
            c.env_remove(k);
        }
    }
    c.env("PACKWELL_STORE_URL", store)
        .args(args)
        .output()
        .expect("run packwell")
}

fn ok(out: &Output) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    String::from_utf8(out.stdout.clone()).expect("UTF-8")
}

fn backtest(dir: &Path, store: &str, source: &[&str], format: &str) -> String {
    let rules = rules_dir();
    let mut args = vec!["backtest", "--rules", &rules, "--format", format];
    args.extend_from_slice(source);
    ok(&packwell(dir, store, &args))
}

fn import(dir: &Path, store: &str, history: &Path) {
    let rules = rules_dir();
    let file = history.to_str().unwrap();
    ok(&packwell(
        dir,
        store,
        &["import", "--events", file, "--rules", &rules],
    ));
}

/// Compares both backtests of `history`, imported into `store`, in text and JSON.
fn replayed_alike(dir: &Path, store: &str, history: &Path) {
    let file = history.to_str().unwrap();
    for format in ["text", "json"] {
        let from_file = backtest(dir, store, &["--events", file, "--days", "30"], format);
        let from_store = backtest(dir, store, &["--from-store", "--days", "30"], format);
        assert_eq!(from_store, from_file, "{format}");
        // 30 days is the default.
        assert_eq!(backtest(dir, store, &["--from-store"], format), from_file);
    }
    let report: Value =
        serde_json::from_str(&backtest(dir, store, &["--from-store"], "json")).unwrap();
    // The window decided orders, and the days before it were replayed as history.
    let history = report["window"]["history"].as_u64().unwrap();
    assert!(report["orders"].as_u64().unwrap() > 100, "{report}");
    assert!(
        history > 100 && history < report["events"].as_u64().unwrap(),
        "{report}"
    );
    assert_eq!(report["window"]["days"], 30);
    assert_eq!(report["rejected"], 0);
    // Without a window the whole file is decided, and more orders with it.
    let whole: Value =
        serde_json::from_str(&backtest(dir, store, &["--events", file], "json")).unwrap();
    assert!(whole["window"].is_null());
    assert!(
        whole["orders"].as_u64() > report["orders"].as_u64(),
        "{whole}"
    );
}

/// The bytes of the SQLite store's files (the database and its WAL).
fn store_files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    ["store.db", "store.db-wal"]
        .iter()
        .filter_map(|name| {
            std::fs::read(dir.join(name))
                .ok()
                .map(|b| (name.to_string(), b))
        })
        .collect()
}

#[test]
fn from_store_prints_what_the_file_prints_and_changes_nothing_on_sqlite() {
    let (dir, history) = scratch_days(40);
    let store = dir.path().join("store.db").display().to_string();
    import(dir.path(), &store, &history);
    let before = store_files(dir.path());
    assert!(!before.is_empty());
    replayed_alike(dir.path(), &store, &history);
    assert!(
        store_files(dir.path()) == before,
        "the store's files changed"
    );
}

#[test]
fn from_store_prints_what_the_file_prints_on_postgres() {
    let schema = Schema::new(&format!("pw_cli_backtest_{}", std::process::id()));
    let (dir, history) = scratch_days(40);
    let store = schema.store_url();
    import(dir.path(), &store, &history);
    replayed_alike(dir.path(), &store, &history);
}

#[test]
fn the_source_is_one_of_a_file_or_the_store() {
    let (dir, history) = scratch(10);
    let store = dir.path().join("none.db").display().to_string();
    let rules = rules_dir();
    let file = history.to_str().unwrap();
    let usage = |args: &[&str], says: &str| {
        let out = packwell(dir.path(), &store, args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(says), "{args:?}: {stderr}");
    };
    usage(
        &[
            "backtest",
            "--rules",
            &rules,
            "--events",
            file,
            "--from-store",
        ],
        "cannot be used with",
    );
    usage(&["backtest", "--rules", &rules], "--events");
    usage(
        &["backtest", "--rules", &rules, "--from-store", "--days", "0"],
        "--days",
    );
    // No store where the configuration says: said, and not created.
    usage(
        &["backtest", "--rules", &rules, "--from-store"],
        "there is no store at",
    );
    assert!(!dir.path().join("none.db").exists());
}

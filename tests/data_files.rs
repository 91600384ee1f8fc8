//! The data folder is the service user's alone: `packwell run` started with a umask that
//! leaves new files readable by everyone (022) makes every folder under `data/` 0700 and every
//! file 0600 (the SQLite file, its WAL and shared memory, the lock, the coupon key, the outbox
//! e-mails); a data folder made open before is narrowed, and the log names what was. And a
//! store made before `secure_delete` was set is rewritten once when opened, so that what was
//! deleted before is gone from its free pages.

mod service_support;

use chrono::Utc;
use serde_json::json;
use service_support::*;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Every folder and file under `dir` (`dir` first) with its permission bits.
fn modes(dir: &Path) -> Vec<(PathBuf, bool, u32)> {
    let mut out = Vec::new();
    let mut dirs = vec![dir.to_path_buf()];
    while let Some(d) = dirs.pop() {
        let meta = std::fs::symlink_metadata(&d).expect("metadata");
        out.push((d.clone(), true, meta.permissions().mode() & 0o7777));
        for entry in std::fs::read_dir(&d).expect("read_dir").flatten() {
            let path = entry.path();
            let meta = std::fs::symlink_metadata(&path).expect("metadata");
            if meta.is_dir() {
                dirs.push(path);
            } else {
                out.push((path, false, meta.permissions().mode() & 0o7777));
            }
        }
    }
    out
}

/// Asserts every folder is 0700 and every file 0600; returns the names seen.
fn assert_private(dir: &Path) -> Vec<String> {
    let all = modes(dir);
    let open: Vec<String> = all
        .iter()
        .filter(|(_, is_dir, mode)| *mode != if *is_dir { 0o700 } else { 0o600 })
        .map(|(p, _, mode)| format!("{} {mode:04o}", p.display()))
        .collect();
    assert!(open.is_empty(), "open to others: {open:?}");
    all.iter()
        .map(|(p, _, _)| p.strip_prefix(dir).unwrap().display().to_string())
        .collect()
}

/// The example order, placed three hours ago: its thank-you e-mail is due at once.
fn order() -> Vec<(Option<String>, Vec<u8>)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(root.join("examples/orders/fragrance-new-york.json"))
        .expect("example order");
    let mut e: serde_json::Value = serde_json::from_str(&text).expect("json");
    let at = Utc::now() - chrono::Duration::hours(3);
    e["occurred_at"] = json!(at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true));
    vec![(customer_key(&e), serde_json::to_vec(&e).unwrap())]
}

/// The example rules without quiet hours, so that the e-mail goes whatever the time of day.
fn workdir() -> Workdir {
    let work = Workdir::without_quiet_hours();
    std::fs::write(
        work.path().join("packwell.toml"),
        "[email]\npoll_ms = 100\n",
    )
    .expect("config");
    work
}

#[test]
fn a_new_data_folder_is_the_service_users_alone_whatever_the_umask() {
    let broker = TestBroker::start();
    let work = workdir();
    let mut service = ServiceProcess::start_with_umask(
        work.path(),
        &broker.addr,
        "022",
        &["--config", "packwell.toml"],
    );
    produce(&broker.addr, &order());
    let outbox = work.path().join("data/outbox");
    wait_for("the thank-you e-mail", Duration::from_secs(60), || {
        std::fs::read_dir(&outbox).is_ok_and(|mut d| {
            d.any(|e| e.is_ok_and(|e| e.path().extension().is_some_and(|x| x == "eml")))
        })
    });
    // While it runs: the store's WAL and shared memory are there too.
    let names = assert_private(&work.path().join("data"));
    for name in [
        "packwell.db",
        "packwell.db-wal",
        "packwell.db-shm",
        "packwell.lock",
        "coupon.key",
        "outbox",
    ] {
        assert!(names.iter().any(|n| n == name), "no {name} in {names:?}");
    }
    assert!(names.iter().any(|n| n.ends_with(".eml")), "{names:?}");
    let (code, _) = service.terminate();
    assert_eq!(code, Some(0), "{}", service.log());
    assert_private(&work.path().join("data"));
    assert!(
        !service.log().contains("open to other users"),
        "{}",
        service.log()
    );
}

#[test]
fn an_open_data_folder_is_narrowed_and_named() {
    let broker = TestBroker::start();
    let work = workdir();
    let data = work.path().join("data");
    std::fs::create_dir_all(data.join("outbox")).unwrap();
    std::fs::write(data.join("outbox/old.eml"), "To: a@b.example\r\n\r\nhello").unwrap();
    for (path, mode) in [("", 0o755), ("outbox", 0o755), ("outbox/old.eml", 0o644)] {
        std::fs::set_permissions(data.join(path), std::fs::Permissions::from_mode(mode)).unwrap();
    }
    let mut service = ServiceProcess::start_with_umask(
        work.path(),
        &broker.addr,
        "022",
        &["--config", "packwell.toml"],
    );
    assert_private(&data);
    let log = service.log();
    for line in [
        "warning: data was 0755, open to other users: now 0700",
        "warning: data/outbox was 0755, open to other users: now 0700",
        "warning: data/outbox/old.eml was 0644, open to other users: now 0600",
    ] {
        assert!(log.contains(line), "{line:?} not in:\n{log}");
    }
    let (code, _) = service.terminate();
    assert_eq!(code, Some(0), "{}", service.log());
}

/// A store kept in the working folder itself (`[store] url = "packwell.db"`): Packwell's
/// files there are narrowed, the folder and the user's other files are left as they are.
#[test]
fn a_store_in_the_working_folder_narrows_only_packwells_files() {
    let broker = TestBroker::start();
    let work = workdir();
    let dir = work.path();
    std::fs::write(dir.join("notes.txt"), "mine").unwrap();
    std::fs::create_dir_all(dir.join("photos")).unwrap();
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(
        dir.join("notes.txt"),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    std::fs::set_permissions(dir.join("photos"), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::write(
        dir.join("packwell.toml"),
        "[store]\nurl = \"packwell.db\"\n[coupons]\nkey_file = \"coupon.key\"\n[email]\npoll_ms = 100\n",
    )
    .unwrap();
    let mut service =
        ServiceProcess::start_with_umask(dir, &broker.addr, "022", &["--config", "packwell.toml"]);
    let mode = |p: &str| std::fs::metadata(dir.join(p)).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode("packwell.db"), 0o600);
    assert_eq!(mode("coupon.key"), 0o600);
    assert_eq!(
        mode("notes.txt"),
        0o644,
        "the user's own file is left alone"
    );
    assert_eq!(mode("photos"), 0o755, "the user's own folder is left alone");
    assert_eq!(mode(""), 0o755, "the working folder is left alone");
    let (code, _) = service.terminate();
    assert_eq!(code, Some(0), "{}", service.log());
}

/// Whether any file of the store (the database, its WAL, its shared memory) holds `needle`.
fn store_holds(db: &Path, needle: &[u8]) -> bool {
    ["", "-wal", "-shm"].iter().any(|suffix| {
        std::fs::read(format!("{}{suffix}", db.display()))
            .is_ok_and(|bytes| bytes.windows(needle.len()).any(|w| w == needle))
    })
}

/// A store as Packwell left it before `secure_delete`: a deleted row's bytes in free space,
/// and no record of a rewrite.
async fn leave_deleted_bytes(db: &Path, needle: &str, forget_rewrite: bool) {
    use sqlx::sqlite::SqliteConnectOptions;
    use std::str::FromStr;
    let opts = SqliteConnectOptions::from_str(&format!("sqlite:{}", db.display()))
        .unwrap()
        .pragma("secure_delete", "OFF");
    let raw = sqlx::SqlitePool::connect_with(opts).await.unwrap();
    if forget_rewrite {
        sqlx::query("DELETE FROM meta WHERE key = 'secure_delete'")
            .execute(&raw)
            .await
            .unwrap();
    }
    let data = json!({"first_name": needle, "padding": "x".repeat(3000)}).to_string();
    sqlx::query("INSERT INTO profiles (customer_id, data, updated_at) VALUES ('C-OLD', $1, 0)")
        .bind(&data)
        .execute(&raw)
        .await
        .unwrap();
    sqlx::query("DELETE FROM profiles WHERE customer_id = 'C-OLD'")
        .execute(&raw)
        .await
        .unwrap();
    sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
        .execute(&raw)
        .await
        .unwrap();
    raw.close().await;
}

async fn marker(db: &Path) -> Option<String> {
    let raw = sqlx::SqlitePool::connect(&format!("sqlite:{}", db.display()))
        .await
        .unwrap();
    let value = sqlx::query_scalar("SELECT value FROM meta WHERE key = 'secure_delete'")
        .fetch_optional(&raw)
        .await
        .unwrap();
    raw.close().await;
    value
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_older_store_is_vacuumed_once_when_opened() {
    use packwell::store::SqliteStore;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("packwell.db");
    let path = db.display().to_string();
    // A new store needs no rewrite: it is marked as it is made.
    SqliteStore::open(&path).await.unwrap();
    assert!(marker(&db).await.is_some());

    leave_deleted_bytes(&db, "Oldemaria-Vacuumsky", true).await;
    assert!(
        store_holds(&db, b"Oldemaria-Vacuumsky"),
        "the test needs the freed bytes"
    );
    assert_eq!(marker(&db).await, None);
    SqliteStore::open(&path).await.unwrap();
    assert!(!store_holds(&db, b"Oldemaria-Vacuumsky"), "not rewritten");
    let first = marker(&db).await.expect("marked once rewritten");

    // Once only: a later opening leaves the file as it is (what Packwell deletes from then on
    // is overwritten as it goes; these bytes were freed by another program, without it).
    leave_deleted_bytes(&db, "Secondo-Leftover", false).await;
    SqliteStore::open(&path).await.unwrap();
    assert!(store_holds(&db, b"Secondo-Leftover"), "rewritten again");
    assert_eq!(marker(&db).await, Some(first));
}

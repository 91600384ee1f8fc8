//! Nothing lost, nothing doubled, when it matters most:
//! - the service killed with SIGKILL at several points while thousands of events flow, and
//!   restarted each time (SQLite);
//! - two service processes in one consumer group on one PostgreSQL, with a rebalance when the
//!   second joins and another when the first stops.
//!
//! At the end every order has exactly one decision, no coupon code was issued twice, stock and
//! budgets match what the decisions gave, and the output topics carry every decision, with
//! duplicates only as identical re-sends.

mod service_support;

use serde_json::Value;
use service_support::*;
use sqlx::Row;
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

/// How many of the example history's events flow: its first two and a half months, thousands
/// of orders, enough for every kill and rebalance to land mid-stream.
const EVENTS: usize = 23_000;

/// The first [`EVENTS`] events of the example history, keyed as a shop would send them.
fn stream(filter: impl Fn(&Value) -> bool) -> Vec<(Option<String>, Vec<u8>)> {
    history()
        .into_iter()
        .take(EVENTS)
        .filter(|e| filter(e))
        .map(|e| (customer_key(&e), e.to_string().into_bytes()))
        .collect()
}

fn placed_orders(messages: &[(Option<String>, Vec<u8>)]) -> BTreeSet<String> {
    messages
        .iter()
        .filter_map(|(_, v)| serde_json::from_slice::<Value>(v).ok())
        .filter(|e| e["type"] == "order.placed")
        .filter_map(|e| e["order"]["id"].as_str().map(str::to_string))
        .collect()
}

/// Sends `messages` in slices with pauses, so that the stream is still flowing while the
/// services are killed or rebalanced.
fn send_slowly(
    brokers: String,
    messages: Vec<(Option<String>, Vec<u8>)>,
    slices: usize,
    pause: Duration,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let size = messages.len().div_ceil(slices);
        for chunk in messages.chunks(size) {
            produce(&brokers, chunk);
            std::thread::sleep(pause);
        }
    })
}

/// Waits (up to 4 minutes) until `n` orders have a decision; `log` tells why not.
async fn wait_until_decided<DB: sqlx::Database>(
    pool: &sqlx::Pool<DB>,
    n: usize,
    log: impl Fn() -> String,
) where
    for<'c> &'c mut DB::Connection: sqlx::Executor<'c, Database = DB>,
    for<'a> <DB as sqlx::Database>::Arguments<'a>: sqlx::IntoArguments<'a, DB>,
    i64: for<'r> sqlx::Decode<'r, DB> + sqlx::Type<DB>,
    usize: sqlx::ColumnIndex<DB::Row>,
{
    let deadline = Instant::now() + Duration::from_secs(240);
    loop {
        let decided: i64 = sqlx::query("SELECT COUNT(*) FROM decisions")
            .fetch_one(pool)
            .await
            .expect("count")
            .try_get(0)
            .expect("n");
        if decided as usize >= n {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "only {decided} of {n} decided; log:\n{}",
            log()
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// The checks every run ends with, on the store (through SQL) and on the output topics.
async fn check_exactly_once<DB: sqlx::Database>(
    pool: &sqlx::Pool<DB>,
    brokers: &str,
    orders: &BTreeSet<String>,
) where
    for<'c> &'c mut DB::Connection: sqlx::Executor<'c, Database = DB>,
    for<'a> <DB as sqlx::Database>::Arguments<'a>: sqlx::IntoArguments<'a, DB>,
    i64: for<'r> sqlx::Decode<'r, DB> + sqlx::Type<DB>,
    String: for<'r> sqlx::Decode<'r, DB> + sqlx::Type<DB>,
    usize: sqlx::ColumnIndex<DB::Row>,
{
    // Every order decided, once (the primary key makes "once" a count).
    let decided: Vec<String> = sqlx::query("SELECT order_id FROM decisions")
        .fetch_all(pool)
        .await
        .expect("decisions")
        .iter()
        .map(|r| r.try_get::<String, _>(0).expect("id"))
        .collect();
    let decided: BTreeSet<String> = decided.into_iter().collect();
    assert_sets_equal(&decided, orders, "orders decided");
    // Stock: what is used is what the decisions gave and did not take back.
    let used: BTreeMap<(String, String), i64> =
        sqlx::query("SELECT insert_id, slot, used FROM stock")
            .fetch_all(pool)
            .await
            .expect("stock")
            .iter()
            .map(|r| {
                (
                    (r.try_get(0).expect("id"), r.try_get(1).expect("slot")),
                    r.try_get(2).expect("used"),
                )
            })
            .collect();
    let given: BTreeMap<(String, String), i64> = sqlx::query(
        "SELECT insert_id, stock_slot, COUNT(*) FROM given_inserts \
         WHERE stock_slot IS NOT NULL AND state IN ('given', 'packed', 'not_packed') GROUP BY insert_id, stock_slot",
    )
    .fetch_all(pool)
    .await
    .expect("given")
    .iter()
    .map(|r| ((r.try_get(0).expect("id"), r.try_get(1).expect("slot")), r.try_get(2).expect("n")))
    .collect();
    let used_nonzero: BTreeMap<_, _> = used.into_iter().filter(|(_, n)| *n != 0).collect();
    assert_eq!(used_nonzero, given, "stock used = inserts given");
    assert!(!given.is_empty(), "the history gives stocked inserts");
    // Budgets: spent = 3.50 (the gift box's cost, in 1/10000) × boxes given by the rule.
    let budgets: Vec<(String, i64)> = sqlx::query("SELECT rule_id, spent_units FROM budgets")
        .fetch_all(pool)
        .await
        .expect("budgets")
        .iter()
        .map(|r| (r.try_get(0).expect("rule"), r.try_get(1).expect("spent")))
        .collect();
    let mut spent: BTreeMap<String, i64> = BTreeMap::new();
    for (rule, units) in budgets {
        *spent.entry(rule).or_default() += units;
    }
    let given_by_rule: BTreeMap<String, i64> =
        sqlx::query("SELECT rule_id, COUNT(*) FROM given_inserts GROUP BY rule_id")
            .fetch_all(pool)
            .await
            .expect("given by rule")
            .iter()
            .map(|r| (r.try_get(0).expect("rule"), r.try_get(1).expect("n")))
            .collect();
    for (rule, units) in &spent {
        let boxes = given_by_rule.get(rule).copied().unwrap_or(0);
        assert_eq!(*units, boxes * 35_000, "budget of {rule}");
    }
    let codes: i64 = sqlx::query("SELECT COUNT(*) FROM coupons")
        .fetch_one(pool)
        .await
        .expect("coupons")
        .try_get(0)
        .expect("n");
    // Wait for the relay, then read the topics.
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let unsent: i64 = sqlx::query("SELECT COUNT(*) FROM outbox WHERE NOT sent")
            .fetch_one(pool)
            .await
            .expect("outbox")
            .try_get(0)
            .expect("n");
        if unsent == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "{unsent} outbox rows never sent");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let brokers = brokers.to_string();
    let n_orders = orders.len();
    let packing = tokio::task::spawn_blocking(move || {
        read_topic(
            &brokers,
            "packing-instructions",
            Duration::from_secs(120),
            |m| {
                m.iter()
                    .filter_map(|c| c.key.as_deref())
                    .collect::<BTreeSet<_>>()
                    .len()
                    >= n_orders
            },
        )
    })
    .await
    .expect("reader");
    let mut by_order: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    for m in &packing {
        let key = m.key.clone().expect("keyed by order");
        if let Some(first) = by_order.get(&key) {
            assert_eq!(
                first, &m.value,
                "a re-sent packing instruction differs: {key}"
            );
        } else {
            by_order.insert(key, m.value.clone());
        }
    }
    assert_sets_equal(
        &by_order.keys().cloned().collect(),
        orders,
        "decisions on packing-instructions",
    );
    assert!(codes > 0, "the history gives coupons");
}

/// Equal sets, or a message naming a few of the differences (not thousands of ids).
fn assert_sets_equal(found: &BTreeSet<String>, expected: &BTreeSet<String>, what: &str) {
    let missing: Vec<&String> = expected.difference(found).take(10).collect();
    let extra: Vec<&String> = found.difference(expected).take(10).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "{what}: {} of {} expected; missing (first 10) {missing:?}, unexpected {extra:?}",
        found.len(),
        expected.len()
    );
}

/// The coupon events' content by code: every `coupon.issued` of a code identical.
fn check_coupon_events(brokers: &str, codes_expected: usize) {
    let coupons = read_topic(brokers, "coupons", Duration::from_secs(60), |m| {
        m.iter()
            .filter_map(|c| c.key.as_deref())
            .collect::<BTreeSet<_>>()
            .len()
            >= codes_expected
    });
    let mut issued: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    for m in coupons
        .iter()
        .filter(|m| m.json()["type"] == "coupon.issued")
    {
        let key = m.key.clone().expect("keyed by code");
        if let Some(first) = issued.get(&key) {
            assert_eq!(
                first, &m.value,
                "coupon {key} issued twice with different content"
            );
        } else {
            issued.insert(key, m.value.clone());
        }
    }
    assert_eq!(issued.len(), codes_expected);
}

#[test]
fn killed_at_any_point_and_restarted_nothing_is_lost_or_doubled() {
    let broker = TestBroker::start();
    let work = Workdir::new();
    let messages = stream(|_| true);
    let orders = placed_orders(&messages);
    assert!(orders.len() > 5000, "a stream of thousands");
    let sender = send_slowly(
        broker.addr.clone(),
        messages,
        12,
        Duration::from_millis(400),
    );
    let mut service = ServiceProcess::start(
        work.path(),
        &broker.addr,
        &[("PACKWELL_KAFKA_BATCH_MAX", "200")],
    );
    // Kill at different points: while joining, mid-stream, right after a restart.
    for wait in [1500u64, 2500, 700, 2000] {
        std::thread::sleep(Duration::from_millis(wait));
        service.kill();
        service = ServiceProcess::start(
            work.path(),
            &broker.addr,
            &[("PACKWELL_KAFKA_BATCH_MAX", "200")],
        );
    }
    sender.join().expect("sender");
    let url = work.sqlite_url();
    broker.runtime.block_on(async {
        let pool = sqlx::sqlite::SqlitePoolOptions::new()
            .connect_with(
                sqlx::sqlite::SqliteConnectOptions::new()
                    .filename(&url)
                    .read_only(true),
            )
            .await
            .expect("open the store");
        wait_until_decided(&pool, orders.len(), || service.log()).await;
        check_exactly_once(&pool, &broker.addr, &orders).await;
        let codes: i64 = sqlx::query("SELECT COUNT(*) FROM coupons")
            .fetch_one(&pool)
            .await
            .expect("n")
            .try_get(0)
            .expect("n");
        let brokers = broker.addr.clone();
        tokio::task::spawn_blocking(move || check_coupon_events(&brokers, codes as usize))
            .await
            .expect("coupon check");
    });
    let (code, _) = service.terminate();
    assert_eq!(code, Some(0));
}

#[test]
fn two_instances_on_one_postgresql_share_the_work_through_rebalances() {
    let broker = TestBroker::start();
    let db = format!("pw_svc_{}", std::process::id());
    let admin_url = "postgres://postgres@127.0.0.1:5432/test";
    let url = format!("postgres://postgres@127.0.0.1:5432/{db}");
    broker.runtime.block_on(async {
        let admin = sqlx::PgPool::connect(admin_url)
            .await
            .expect("PostgreSQL at 127.0.0.1:5432");
        let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)"))
            .execute(&admin)
            .await;
        sqlx::query(&format!("CREATE DATABASE {db}"))
            .execute(&admin)
            .await
            .expect("create database");
    });
    let (a_dir, b_dir) = (Workdir::new(), Workdir::new());
    let shared = tempfile::tempdir().expect("tempdir");
    let key = shared.path().join("coupon.key");
    let env = [
        ("PACKWELL_STORE_URL", url.as_str()),
        (
            "PACKWELL_COUPONS_KEY_FILE",
            key.to_str().expect("utf-8 path"),
        ),
        ("PACKWELL_KAFKA_BATCH_MAX", "100"),
    ];
    let messages = stream(|e| e["type"] == "order.placed" || e["type"] == "order.cancelled");
    let orders = placed_orders(&messages);
    let sender = send_slowly(
        broker.addr.clone(),
        messages,
        10,
        Duration::from_millis(500),
    );
    let mut a = ServiceProcess::start(a_dir.path(), &broker.addr, &env);
    std::thread::sleep(Duration::from_millis(1500));
    let b = ServiceProcess::start(b_dir.path(), &broker.addr, &env);
    std::thread::sleep(Duration::from_millis(2000));
    let (code, _) = a.terminate();
    assert_eq!(code, Some(0), "{}", a.log());
    sender.join().expect("sender");
    broker.runtime.block_on(async {
        let pool = sqlx::PgPool::connect(&url).await.expect("connect");
        wait_until_decided(&pool, orders.len(), || b.log()).await;
        check_exactly_once(&pool, &broker.addr, &orders).await;
        pool.close().await;
    });
    assert!(
        a.log().contains("partition assigned") && b.log().contains("partition assigned"),
        "both instances took partitions"
    );
    drop(b);
    broker.runtime.block_on(async {
        let admin = sqlx::PgPool::connect(admin_url).await.expect("connect");
        let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)"))
            .execute(&admin)
            .await;
    });
}

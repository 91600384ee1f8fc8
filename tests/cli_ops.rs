//! The operator controls `packwell stock set` and `packwell coupon void` through the binary,
//! on a SQLite store named by `PACKWELL_STORE_URL` (docs/REFERENCE.md §4): the change is made in
//! the store and logged; unknown inserts, warehouses and codes are exit 2, a coupon voided or
//! redeemed already is exit 1, and a store that does not exist is not created.
//! (`dlq replay` needs a broker: see `kafka_broker.rs`.)

use packwell::coupon::CouponKey;
use packwell::event::event_from_value;
use packwell::store::{self, Batch, BatchItem, DecideEnv, Fence, Store};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

const BIN: &str = env!("CARGO_BIN_EXE_packwell");

fn rules_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("rules")
}

/// Runs `f` on the store at `url`.
fn with_store<T>(url: &str, f: impl AsyncFnOnce(Arc<dyn Store>) -> T) -> T {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    rt.block_on(async {
        let store = store::open(url).await.expect("open the store");
        f(store).await
    })
}

/// A first order of a new customer at WH-BER: the example rules give it a welcome coupon and
/// a tea sachet.
fn placed(customer: &str, order: &str) -> Value {
    json!({"event_id": format!("p-{order}"), "type": "order.placed", "occurred_at": "2026-11-20T10:00:00Z",
        "order": {"id": order, "customer": {"id": customer, "email": format!("{customer}@mail.example"), "first_name": "Ann"},
            "currency": "EUR", "total": "54.90",
            "items": [{"sku": "BK-1", "name": "A book", "category": "books", "quantity": 1, "unit_price": "54.90"}],
            "shipping": {"country": "DE"}, "warehouse": "WH-BER"}})
}

/// A store decided on the example rules for `events` (order.placed ones).
fn store_with(url: &str, events: &[Value]) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let loaded = packwell::rules::load_rules(&root.join("rules"), &root.join("templates"));
    let env = DecideEnv {
        rules: Arc::new(loaded.rules.expect("the example rules are valid")),
        key: CouponKey::from_bytes(vec![9; 32]),
        shop: packwell::engine::Shop::default(),
    };
    let items = events
        .iter()
        .enumerate()
        .map(|(i, v)| BatchItem {
            offset: i as i64,
            key: v["order"]["customer"]["id"]
                .as_str()
                .map(|k| k.as_bytes().to_vec()),
            value: serde_json::to_vec(v).unwrap(),
            event: event_from_value(v),
            decide: true,
        })
        .collect();
    with_store(url, async |s| {
        s.apply_batch(
            &Batch {
                fence: Fence::None,
                items,
            },
            &env,
        )
        .await
        .expect("apply")
    });
}

struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Run {
    fn expect(&self, code: i32, needle: &str) -> &Self {
        let all = format!("{}{}", self.stdout, self.stderr);
        assert!(
            self.code == Some(code) && all.contains(needle) && !all.contains("panicked"),
            "expected exit {code} saying {needle:?}\n--- exit {:?}\n--- stdout\n{}--- stderr\n{}",
            self.code,
            self.stdout,
            self.stderr
        );
        self
    }
}

/// `packwell ARGS` in `dir` with `PACKWELL_STORE_URL` = `url`, as user `ops-test`.
fn packwell(dir: &Path, url: &str, args: &[&str]) -> Run {
    let mut c = Command::new(BIN);
    c.current_dir(dir);
    for (k, _) in std::env::vars() {
        if k.starts_with("PACKWELL_") {
            c.env_remove(k);
        }
    }
    let out = c
        .env("PACKWELL_STORE_URL", url)
        .env("USER", "ops-test")
        .args(args)
        .output()
        .expect("run packwell");
    Run {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn stock_set(dir: &Path, url: &str, args: &[&str]) -> Run {
    let rules = rules_dir();
    let mut all = vec!["stock", "set", "--rules", rules.to_str().unwrap()];
    all.extend_from_slice(args);
    packwell(dir, url, &all)
}

fn log(url: &str) -> Vec<(String, String, String, Value)> {
    with_store(url, async |s| {
        s.operator_log(100)
            .await
            .unwrap()
            .into_iter()
            .map(|r| {
                (
                    r.actor,
                    r.action,
                    r.subject,
                    serde_json::from_str(&r.detail).unwrap(),
                )
            })
            .collect()
    })
}

#[test]
fn stock_set_changes_the_counter_and_logs_it() {
    let dir = tempfile::tempdir().unwrap();
    let url = dir.path().join("packwell.db").display().to_string();
    store_with(&url, &[placed("C-1", "O-1")]);
    let used = |insert: &str, slot: &str| -> Option<i64> {
        with_store(&url, async |s| s.stock_used().await.unwrap())
            .into_iter()
            .find(|(i, sl, _)| i == insert && sl == slot)
            .map(|(_, _, n)| n)
    };
    assert_eq!(used("tea-sachet", "*"), Some(1));

    stock_set(dir.path(), &url, &["tea-sachet", "7"]).expect(
        0,
        "stock of tea-sachet (one pool for every warehouse): 7 remaining (was 499); allocation 500",
    );
    assert_eq!(used("tea-sachet", "*"), Some(493));
    stock_set(
        dir.path(),
        &url,
        &["fragrance-sample", "--warehouse", "WH-NYC", "150"],
    )
    .expect(
        0,
        "stock of fragrance-sample in WH-NYC: 150 remaining (was 200)",
    );
    assert_eq!(used("fragrance-sample", "WH-NYC"), Some(50));
    let log = log(&url);
    assert_eq!(
        log.iter()
            .map(|(a, b, c, _)| (a.as_str(), b.as_str(), c.as_str()))
            .collect::<Vec<_>>(),
        [
            ("ops-test", "stock.set", "fragrance-sample/WH-NYC"),
            ("ops-test", "stock.set", "tea-sachet/*")
        ]
    );
    assert_eq!(log[1].3["remaining_after"], 7);

    // Refused, changing nothing.
    stock_set(dir.path(), &url, &["tea-sachett", "7"]).expect(2, "did you mean \"tea-sachet\"");
    stock_set(dir.path(), &url, &["welcome-coupon", "7"]).expect(2, "has no stock");
    stock_set(
        dir.path(),
        &url,
        &["fragrance-sample", "--warehouse", "WH-PAR", "1"],
    )
    .expect(2, "stocked in WH-BER, WH-NYC");
    stock_set(dir.path(), &url, &["fragrance-sample", "1"]).expect(2, "--warehouse");
    stock_set(
        dir.path(),
        &url,
        &["tea-sachet", "--warehouse", "WH-BER", "1"],
    )
    .expect(2, "leave out --warehouse");
    stock_set(dir.path(), &url, &["tea-sachet", "501"]).expect(2, "raise `stock` in the rules");
    stock_set(dir.path(), &url, &["tea-sachet", "-1"]).expect(2, "");
    assert_eq!(used("tea-sachet", "*"), Some(493));
    assert_eq!(self::log(&url).len(), 2);

    // A store that is not there is not created.
    let absent = dir.path().join("absent.db").display().to_string();
    stock_set(dir.path(), &absent, &["tea-sachet", "7"]).expect(2, "there is no store at");
    assert!(!dir.path().join("absent.db").exists());
}

#[test]
fn coupon_void_voids_once_and_names_the_state_otherwise() {
    let dir = tempfile::tempdir().unwrap();
    let url = dir.path().join("packwell.db").display().to_string();
    store_with(&url, &[placed("C-3", "O-1"), placed("C-2", "O-2")]);
    let coupon = |order: &str| {
        with_store(&url, async |s| s.coupons_of_order(order).await.unwrap())
            .into_iter()
            .next()
            .expect("a coupon")
    };
    let code = coupon("O-1").code;

    packwell(dir.path(), &url, &["coupon", "void", &code]).expect(
        0,
        &format!("voided coupon {code} (order O-1, customer C-3); coupon.voided version 2"),
    );
    let c = coupon("O-1");
    assert_eq!((c.state.as_str(), c.version), ("voided", 2));
    let outbox = with_store(&url, async |s| s.unsent_outbox(100).await.unwrap());
    let voided: Vec<Value> = outbox
        .iter()
        .filter(|r| r.topic == "coupons" && r.key.as_deref() == Some(code.as_bytes()))
        .map(|r| serde_json::from_slice(&r.payload).unwrap())
        .filter(|v: &Value| v["type"] == "coupon.voided")
        .collect();
    assert_eq!(voided.len(), 1);
    assert_eq!(
        (&voided[0]["version"], &voided[0]["reason"]),
        (&json!(2), &json!("operator"))
    );

    packwell(dir.path(), &url, &["coupon", "void", &code]).expect(1, "is voided already");
    packwell(dir.path(), &url, &["coupon", "void", "WELCOME-NOSUCHCODE"])
        .expect(2, "no coupon WELCOME-NOSUCHCODE");
    // Redeemed on a later order.
    let code2 = coupon("O-2").code;
    let mut next = placed("C-2", "O-3");
    next["event_id"] = json!("p-O-3");
    next["order"]["coupon_codes"] = json!([code2]);
    store_with(&url, &[next]);
    packwell(dir.path(), &url, &["coupon", "void", &code2]).expect(1, "redeemed (on order O-3)");
    assert_eq!(coupon("O-2").state, "redeemed");

    let log = log(&url);
    assert_eq!(log.len(), 1, "{log:?}");
    assert_eq!(
        (log[0].0.as_str(), log[0].1.as_str(), log[0].2.as_str()),
        ("ops-test", "coupon.void", code.as_str())
    );
}

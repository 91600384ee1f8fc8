//! One event path, two ways to run it: the service's store (the state of each batch loaded in
//! bulk, the effects written in its transaction, on SQLite and on PostgreSQL) and the in-memory
//! replay (the whole state kept, every effect gathered) must come to the same shop. Random
//! histories on a small universe (4 customers, 8 orders, so events collide), cut into random
//! batches, are run both ways, and what each made is compared: decisions, coupons, stock and
//! budget counters, profiles, e-mail jobs and the outbox, message by message.

use packwell::event::event_from_value;
use packwell::money::to_units;
use packwell::replay::Replay;
use packwell::step::{DlqEntry, EmailStart, Message};
use packwell::store::{Batch, DecideEnv, Fence, apply_guarded};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use serde_json::Value;
use std::collections::{BTreeMap, HashSet};
use std::sync::OnceLock;

mod one_path_support;
#[macro_use]
mod store_support;
use one_path_support::*;
use store_support::*;

/// A coupon for every order (with a card), a second coupon on a budget for big orders, a gift
/// from a pool of 3 for book orders (so stock runs out and comes back), an e-mail on every
/// order and one after delivery with half the customers held out.
const RULES: &str = r#"
[[insert]]
id = "thanks"
kind = "coupon"
amount = { EUR = "5.00" }
code_prefix = "TY"
[[insert]]
id = "big"
kind = "coupon"
amount = { EUR = "10.00" }
code_prefix = "BIG"
[[insert]]
id = "card"
kind = "note"
template = "card"
[[insert]]
id = "tea"
kind = "gift"
unit_cost = "0.40"
stock = 3
[[rule]]
id = "thanks"
when = "true"
give = ["thanks", "card"]
[[rule]]
id = "tea"
when = "'books' in order.categories"
give = ["tea"]
[[rule]]
id = "big"
when = "order.total >= 50"
give = ["big"]
budget = { EUR = "20.00", per = "month" }
[[followup]]
id = "hello"
on = "order.placed"
when = "true"
template = "hello"
after = "2h"
[[followup]]
id = "checkin"
on = "order.delivered"
when = "true"
template = "checkin"
after = "1d"
holdout = "50%"
"#;

fn env() -> &'static DecideEnv {
    static ENV: OnceLock<DecideEnv> = OnceLock::new();
    ENV.get_or_init(|| {
        env_from(
            RULES,
            &[
                ("notes/card.hbs", "Thank you, {{customer.first_name}}"),
                ("emails/hello/subject.hbs", "Hi {{customer.first_name}}"),
                ("emails/hello/html.hbs", "<p>Hi</p>"),
                ("emails/checkin/subject.hbs", "All well?"),
                ("emails/checkin/html.hbs", "<p>All well?</p>"),
            ],
        )
    })
}

fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("a runtime")
    })
}

/// Runs `history` through the store in batches of `sizes` (cycled), with offsets counted over
/// the whole history, and through a replay; returns the replay.
async fn run(b: &Backend, history: &[Value], sizes: &[usize]) -> Replay<'static> {
    let env = env();
    let mut next = 0;
    for size in sizes.iter().cycle() {
        if next >= history.len() {
            break;
        }
        let end = (next + (*size).max(1)).min(history.len());
        let mut batch = Batch {
            fence: Fence::None,
            items: (next..end).map(|i| item(i as i64, &history[i])).collect(),
        };
        apply_guarded(&*b.store, &mut batch, env)
            .await
            .unwrap_or_else(|e| panic!("{}: batch at {next}: {e}", b.name));
        next = end;
    }
    let mut replay = Replay::new(&env.rules, &env.key, &env.shop);
    for v in history {
        let e = event_from_value(v).expect("a valid event");
        replay.apply(&e, true, false);
    }
    replay
}

/// Two lists compared item by item, the first difference named.
fn same<T: PartialEq + std::fmt::Debug>(
    what: &str,
    store: &[T],
    replay: &[T],
) -> Result<(), TestCaseError> {
    if let Some(i) = (0..store.len().max(replay.len())).find(|&i| store.get(i) != replay.get(i)) {
        return Err(TestCaseError::fail(format!(
            "{what} differ at {i} (store {} rows, replay {}):\n  store:  {:?}\n  replay: {:?}",
            store.len(),
            replay.len(),
            store.get(i),
            replay.get(i)
        )));
    }
    Ok(())
}

/// An outbox row as compared: topic, key, payload (as text), headers.
type Row = (String, Option<String>, String, Option<String>);

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Everything the store holds that the replay also made, compared.
async fn agree(b: &Backend, replay: &Replay<'_>, history: &[Value]) -> Result<(), TestCaseError> {
    let name = b.name;
    let store = &*b.store;
    let fx = &replay.effects;
    for o in 0..ORDERS {
        let id = order_id(o);
        // Decisions, as their JSON.
        let stored = store.decision(&id).await.expect("a read");
        let stored = stored.map(|d| serde_json::to_value(d.decision).expect("JSON"));
        let replayed = replay
            .decisions
            .get(&id)
            .map(|d| serde_json::to_value(d).expect("JSON"));
        prop_assert_eq!(stored, replayed, "{}: the decision of {}", name, id);
        // Coupons: code, insert, state, version, redeeming order.
        let stored: Vec<_> = store
            .coupons_of_order(&id)
            .await
            .expect("a read")
            .into_iter()
            .map(|c| (c.code, c.insert_id, c.state, c.version, c.redeemed_order_id))
            .collect();
        let mut replayed: Vec<_> = replay
            .state
            .order_coupons
            .get(&id)
            .into_iter()
            .flatten()
            .map(|code| {
                let c = &replay.state.coupons[code];
                let insert = fx
                    .coupons
                    .iter()
                    .find(|i| &i.code == code)
                    .map(|i| i.insert_id.clone());
                let redeemed = fx
                    .coupon_changes
                    .iter()
                    .filter(|ch| &ch.code == code)
                    .find_map(|ch| ch.redeemed_order_id.clone());
                (
                    code.clone(),
                    insert.unwrap_or_default(),
                    c.status.as_str().to_string(),
                    c.version,
                    redeemed,
                )
            })
            .collect();
        replayed.sort();
        same(&format!("{name}: coupons of {id}"), &stored, &replayed)?;
        // E-mail jobs: the first job of an (order, follow-up) stands, as the store keeps it.
        let mut stored: Vec<_> = store
            .email_jobs(Some(&id), None, 100)
            .await
            .expect("a read")
            .into_iter()
            .map(|j| (j.followup_id, j.state, j.reason, j.due_at))
            .collect();
        stored.sort();
        let mut seen = HashSet::new();
        let mut replayed: Vec<_> = fx
            .emails
            .iter()
            .filter(|e| e.order_id == id && seen.insert(e.followup_id.clone()))
            .map(|e| {
                let (state, reason) = match e.state {
                    EmailStart::Pending => ("pending", None),
                    EmailStart::HeldOut => ("skipped", Some("holdout".to_string())),
                    EmailStart::Cancelled => ("skipped", Some("cancelled".to_string())),
                };
                (e.followup_id.clone(), state.to_string(), reason, e.due_at)
            })
            .collect();
        replayed.sort();
        same(&format!("{name}: e-mail jobs of {id}"), &stored, &replayed)?;
    }
    for c in 0..CUSTOMERS {
        let id = customer(c);
        let stored = store.profile(&id).await.expect("a read");
        let stored = stored.map(|p| serde_json::to_value(p).expect("JSON"));
        let replayed = replay
            .state
            .profiles
            .get(&id)
            .map(|p| serde_json::to_value(p).expect("JSON"));
        prop_assert_eq!(stored, replayed, "{}: the profile of {}", name, id);
    }
    // Counters: stock used (a counter back at 0 is a row in the store, nothing in the replay).
    let stored: Vec<_> = store
        .stock_used()
        .await
        .expect("a read")
        .into_iter()
        .filter(|s| s.2 != 0)
        .collect();
    let replayed: BTreeMap<_, _> = replay
        .state
        .counters
        .stock
        .iter()
        .filter(|(_, used)| **used != 0)
        .map(|((insert, slot), used)| ((insert.clone(), slot.clone()), i64::from(*used)))
        .collect();
    let replayed: Vec<_> = replayed.into_iter().map(|((i, s), u)| (i, s, u)).collect();
    same(&format!("{name}: stock used"), &stored, &replayed)?;
    // Budgets: the store offers no read of them, so they are read from the table.
    let stored = budgets(b).await;
    let replayed: BTreeMap<_, _> = replay
        .state
        .counters
        .budget
        .iter()
        .map(|((rule, period, currency), spent)| {
            (
                (rule.clone(), period.clone(), currency.clone()),
                to_units(*spent),
            )
        })
        .collect();
    let replayed: Vec<_> = replayed
        .into_iter()
        .map(|((r, p, c), u)| (r, p, c, u))
        .collect();
    same(&format!("{name}: budgets spent"), &stored, &replayed)?;
    // The outbox, in id order, against the replay's messages converted as the store converts
    // them. The replay's DLQ entries carry its own count of events as their offset (the same
    // as the store's here: each batch's offsets count over the whole history), no key and no
    // value (it has no message, only the event); the message at that offset gives them.
    let stored: Vec<Row> = store
        .unsent_outbox(100_000)
        .await
        .expect("a read")
        .into_iter()
        .map(|r| {
            (
                r.topic,
                r.key.as_deref().map(text),
                text(&r.payload),
                r.headers,
            )
        })
        .collect();
    let mut replayed: Vec<Row> = Vec::with_capacity(fx.messages.len());
    for m in &fx.messages {
        let m = match m {
            Message::Dlq(d) => {
                let sent = item(d.offset, &history[d.offset as usize]);
                Message::Dlq(DlqEntry {
                    key: sent.key,
                    value: sent.value,
                    ..d.clone()
                })
            }
            m => m.clone(),
        };
        let o = m.to_outbox(Fence::None.dlq_source()).expect("a message");
        replayed.push((
            o.topic.to_string(),
            o.key.as_deref().map(text),
            text(&o.payload),
            o.headers,
        ));
    }
    same(&format!("{name}: outbox messages"), &stored, &replayed)?;
    Ok(())
}

async fn budgets(b: &Backend) -> Vec<(String, String, String, i64)> {
    let sql = "SELECT rule_id, period, currency, spent_units FROM budgets WHERE spent_units <> 0 \
               ORDER BY rule_id, period, currency";
    match &b.raw {
        Raw::Sqlite(p) => sqlx::query_as(sql).fetch_all(p).await,
        Raw::Pg(p) => sqlx::query_as(sql).fetch_all(p).await,
    }
    .expect("budgets")
}

async fn check(b: Backend, ops: &[Op], sizes: &[usize]) -> Result<(), TestCaseError> {
    let history = history(ops, &env().key);
    let replay = run(&b, &history, sizes).await;
    agree(&b, &replay, &history).await
}

/// Each case opens a store, so few of them; shrinking is bounded for the same reason.
fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 32,
        max_shrink_iters: 256,
        ..ProptestConfig::default()
    }
}

/// Batch sizes, 1 to 10 events, taken in turn. Batches of several events make the store find
/// within one batch what the replay found event by event (codes issued and redeemed, stock
/// taken back and given again, which also sends some batches down the careful path).
fn sizes() -> impl Strategy<Value = Vec<usize>> {
    prop::collection::vec(1usize..=10, 1..8)
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn the_sqlite_store_and_the_replay_make_the_same_shop(ops in ops(), sizes in sizes()) {
        runtime().block_on(async { check(sqlite().await, &ops, &sizes).await })?;
    }

    #[test]
    fn the_postgres_store_and_the_replay_make_the_same_shop(ops in ops(), sizes in sizes()) {
        runtime().block_on(async { check(postgres().await, &ops, &sizes).await })?;
    }
}

/// One known history, step by step: a coupon given, redeemed by a later order; the gift's
/// stock runs out, and an order cancelled gives its unit back, so a later book order gets the
/// gift again; an order with two coupons cancelled in a later batch has both voided, in code
/// order (as when the cancellation comes in the same batch as the order).
async fn known_history(b: Backend) {
    let placed = |order: u8, lines: u8, double: bool, redeem: Option<(u8, Code)>| Op::Placed {
        order,
        other: false,
        lines,
        double,
        redeem,
    };
    let books = |order: u8| placed(order, 0b0001, false, None);
    let cancelled = |order: u8| Op::About {
        fact: Fact::Cancelled,
        order,
        other: false,
    };
    // In batches of 2, 1, 3 and 2 events.
    let ops = [
        books(0),
        // Two lines at 30.00, no book: both coupons and the card, no gift.
        placed(1, 0b0100, true, None),
        books(2),
        books(3),
        placed(4, 0b0001, false, Some((0, Code::Thanks))),
        cancelled(3),
        cancelled(1),
        books(5),
    ];
    let history = history(&ops, &env().key);
    let replay = run(&b, &history, &[2, 1, 3]).await;
    let name = b.name;
    let coupons = |order: &'static str| {
        let store = b.store.clone();
        async move {
            let rows = store.coupons_of_order(order).await.unwrap();
            rows.into_iter()
                .map(|c| (c.insert_id, c.state, c.version, c.redeemed_order_id))
                .collect::<Vec<_>>()
        }
    };
    let row = |insert: &str, state: &str, version, redeemed: Option<&str>| {
        (
            insert.to_string(),
            state.to_string(),
            version,
            redeemed.map(str::to_string),
        )
    };
    assert_eq!(
        coupons("o0").await,
        [row("thanks", "redeemed", 1, Some("o4"))],
        "{name}"
    );
    assert_eq!(
        coupons("o1").await,
        [
            row("big", "voided", 2, None),
            row("thanks", "voided", 2, None)
        ],
        "{name}"
    );
    let voided: Vec<String> = b
        .store
        .unsent_outbox(100)
        .await
        .unwrap()
        .into_iter()
        .filter(|r| String::from_utf8_lossy(&r.payload).contains("coupon.voided"))
        .map(|r| String::from_utf8_lossy(&r.key.unwrap()).into_owned())
        .collect();
    assert_eq!(
        voided,
        [
            issued_code(&env().key, 3, Code::Thanks),
            issued_code(&env().key, 1, Code::Big),
            issued_code(&env().key, 1, Code::Thanks)
        ],
        "{name}"
    );
    let gifts = |order: &'static str| {
        let store = b.store.clone();
        async move {
            let d = store.decision(order).await.unwrap().unwrap().decision;
            d.inserts.iter().filter(|i| i.insert_id == "tea").count()
        }
    };
    assert_eq!(gifts("o4").await, 0, "{name}: the stock ran out");
    assert_eq!(gifts("o5").await, 1, "{name}: o3's unit came back");
    assert_eq!(
        b.store.stock_used().await.unwrap(),
        [("tea".to_string(), "*".to_string(), 3)],
        "{name}"
    );
    assert_eq!(
        budgets(&b).await,
        [(
            "big".to_string(),
            "2026-11".to_string(),
            "EUR".to_string(),
            100_000
        )],
        "{name}"
    );
    // And the replay made the same.
    if let Err(e) = agree(&b, &replay, &history).await {
        panic!("{e}");
    }
}
on_both!(a_known_history_makes_the_same_shop_both_ways, known_history);

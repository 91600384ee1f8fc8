//! The store, against both backends: every test runs on SQLite (a temp file) and on
//! PostgreSQL (127.0.0.1:5432, database `test`, a schema of its own, dropped afterwards).

use packwell::engine::SkipReason;
use packwell::event::{RejectReason, Rejected};
use packwell::store::{
    Batch, BatchItem, DecideEnv, Fence, NotPackedReason, PackedLine, PackedOutcome, PgStore,
    SqliteStore, StockChange, StockSetting, Store, StoreError, VoidOutcome,
};
use serde_json::{Value, json};
use std::sync::Arc;

#[macro_use]
mod store_support;
use store_support::*;

const RULES: &str = r#"
[[insert]]
id = "thanks"
kind = "coupon"
amount = { EUR = "5.00" }
code_prefix = "TY"
[[insert]]
id = "tea"
kind = "gift"
unit_cost = "0.40"
stock = 100
[[insert]]
id = "box"
kind = "packaging"
unit_cost = "1.00"
[[rule]]
id = "thanks"
when = "true"
give = ["thanks", "tea"]
[[rule]]
id = "box"
when = "order.total >= 100"
give = ["box"]
budget = { EUR = "2.00", per = "month" }
[[followup]]
id = "hello"
on = "order.placed"
when = "true"
template = "hello"
after = "2h"
"#;

/// A rules folder with `rules` and the given template files, loaded into a decision setting.
fn env_with(rules: &str) -> DecideEnv {
    env_from(
        rules,
        &[
            ("emails/hello/subject.hbs", "Hi {{customer.first_name}}"),
            ("emails/hello/html.hbs", "<p>Hi</p>"),
        ],
    )
}

fn env() -> DecideEnv {
    env_with(RULES)
}

fn placed(customer: &str, order: &str, total: &str) -> Value {
    json!({"event_id": format!("p-{order}"), "type": "order.placed", "occurred_at": "2026-11-20T10:00:00Z",
        "order": {"id": order, "customer": {"id": customer, "email": format!("{customer}@mail.example"),
            "first_name": "Greta", "last_name": "Garbo-Lindqvist"},
            "currency": "EUR", "total": total,
            "items": [{"sku": "S", "name": "Book", "category": "books", "quantity": 1, "unit_price": total}],
            "shipping": {"country": "DE"}, "warehouse": "WH-BER"}})
}

fn about(kind: &str, id: &str, customer: &str, order: &str) -> Value {
    json!({"event_id": id, "type": kind, "occurred_at": "2026-11-21T10:00:00Z", "order_id": order, "customer_id": customer})
}

async fn stock_used(store: &dyn Store, insert: &str) -> i64 {
    store
        .stock_used()
        .await
        .unwrap()
        .into_iter()
        .filter(|(i, _, _)| i == insert)
        .map(|(_, _, n)| n)
        .sum()
}

async fn idempotent_replay(b: Backend) {
    let env = env();
    let events = [placed("c1", "o1", "20.00"), placed("c2", "o2", "30.00")];
    let first = b.store.apply_batch(&batch(&events), &env).await.unwrap();
    assert_eq!(first.seen_before, 0, "{}", b.name);
    let d1 = b.store.decision("o1").await.unwrap().unwrap();
    let codes1 = b.store.coupons_of_order("o1").await.unwrap();
    let again = b.store.apply_batch(&batch(&events), &env).await.unwrap();
    assert_eq!(again.seen_before, 2, "{}", b.name);
    assert_eq!(
        b.store.decision("o1").await.unwrap().unwrap(),
        d1,
        "{}",
        b.name
    );
    assert_eq!(
        b.store.coupons_of_order("o1").await.unwrap(),
        codes1,
        "{}",
        b.name
    );
    assert_eq!(
        stock_used(&*b.store, "tea").await,
        2,
        "{}: no second decrement",
        b.name
    );
    // The same order under a new event id changes nothing either.
    let mut dup = placed("c1", "o1", "20.00");
    dup["event_id"] = json!("another-id");
    b.store.apply_batch(&batch(&[dup]), &env).await.unwrap();
    assert_eq!(stock_used(&*b.store, "tea").await, 2, "{}", b.name);
    assert_eq!(
        b.store.profile("c1").await.unwrap().unwrap().orders_count,
        1,
        "{}",
        b.name
    );
    let rows = b.store.unsent_outbox(100).await.unwrap();
    let packing = rows
        .iter()
        .filter(|r| r.topic == "packing-instructions")
        .count();
    assert_eq!(packing, 2, "{}: one packing message per order", b.name);
    assert!(rows.windows(2).all(|w| w[0].id < w[1].id));
}
on_both!(replaying_a_batch_changes_nothing, idempotent_replay);

async fn fails_midway(b: Backend) {
    let env = env();
    // An order whose stored summary is corrupt makes the second event fail.
    b.exec("INSERT INTO orders (order_id, customer_id, data, placed_at) VALUES ('bad', 'c9', 'not json', 0)").await;
    let events = [
        placed("c1", "o1", "20.00"),
        about("order.delivered", "d1", "c9", "bad"),
    ];
    let mut events = events.to_vec();
    events[1]["delivered_at"] = json!("2026-11-22T10:00:00Z");
    let err = b
        .store
        .apply_batch(&batch(&events), &env)
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Corrupt(_)), "{}: {err}", b.name);
    assert!(
        b.store.decision("o1").await.unwrap().is_none(),
        "{}",
        b.name
    );
    assert!(b.store.profile("c1").await.unwrap().is_none(), "{}", b.name);
    assert!(
        b.store.unsent_outbox(10).await.unwrap().is_empty(),
        "{}",
        b.name
    );
    assert_eq!(stock_used(&*b.store, "tea").await, 0, "{}", b.name);
    // The first event was not recorded as processed: a retry decides it.
    b.store
        .apply_batch(&batch(&events[..1]), &env)
        .await
        .unwrap();
    assert!(
        b.store.decision("o1").await.unwrap().is_some(),
        "{}",
        b.name
    );
}
on_both!(a_batch_that_fails_midway_leaves_nothing, fails_midway);

async fn concurrent_claims(b: Backend) {
    let env = Arc::new(env());
    let other = b.another().await;
    let mut tasks = Vec::new();
    for (s, store) in [b.store.clone(), other].into_iter().enumerate() {
        for chunk in 0..10 {
            let store = store.clone();
            let env = env.clone();
            tasks.push(tokio::spawn(async move {
                // 2 pools × 10 tasks × 50 orders = 1000 orders, 10 per batch.
                for part in 0..5 {
                    let events: Vec<Value> = (0..10)
                        .map(|i| {
                            let n = ((s * 10 + chunk) * 5 + part) * 10 + i;
                            placed(&format!("k{n}"), &format!("ko{n}"), "20.00")
                        })
                        .collect();
                    loop {
                        match store.apply_batch(&batch(&events), &env).await {
                            Ok(_) => break,
                            // SQLite: two writers on one file may time out waiting; retry the batch.
                            Err(StoreError::Db(e)) if e.to_string().contains("locked") => continue,
                            Err(e) => panic!("{e}"),
                        }
                    }
                }
            }));
        }
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(stock_used(&*b.store, "tea").await, 100, "{}", b.name);
    let mut with_tea = 0;
    for n in 0..1000 {
        let d = b.store.decision(&format!("ko{n}")).await.unwrap().unwrap();
        if d.decision.inserts.iter().any(|i| i.insert_id == "tea") {
            with_tea += 1;
        } else {
            assert!(
                d.decision
                    .skipped
                    .iter()
                    .any(|s| s.reason == SkipReason::Stock),
                "{}",
                b.name
            );
        }
    }
    assert_eq!(with_tea, 100, "{}", b.name);
}
on_both!(
    concurrent_claims_on_a_stock_of_100_give_exactly_100,
    concurrent_claims
);

async fn budget(b: Backend) {
    let env = env();
    let events: Vec<Value> = (0..3)
        .map(|i| placed(&format!("b{i}"), &format!("bo{i}"), "150.00"))
        .collect();
    b.store.apply_batch(&batch(&events), &env).await.unwrap();
    let boxes: Vec<bool> = futures_like(&*b.store, &["bo0", "bo1", "bo2"], "box").await;
    assert_eq!(boxes, [true, true, false], "{}", b.name);
    let d = b.store.decision("bo2").await.unwrap().unwrap().decision;
    assert!(
        d.skipped.iter().any(|s| s.rule_id == "box"
            && s.reason == SkipReason::Budget
            && s.insert_id.as_deref() == Some("box")),
        "{}: {:?}",
        b.name,
        d.skipped
    );
}
on_both!(budget_exhaustion_gives_reason_budget, budget);

async fn futures_like(store: &dyn Store, orders: &[&str], insert: &str) -> Vec<bool> {
    let mut out = Vec::new();
    for o in orders {
        let d = store.decision(o).await.unwrap().unwrap().decision;
        out.push(d.inserts.iter().any(|i| i.insert_id == insert));
    }
    out
}

/// A station's confirmation of an order: the inserts named with a reason were not packed,
/// every other one was.
async fn confirm(
    b: &Backend,
    order: &str,
    not_packed: &[(&str, Option<NotPackedReason>)],
) -> PackedOutcome {
    let d = b.store.decision(order).await.unwrap().unwrap().decision;
    let lines: Vec<PackedLine> = d
        .inserts
        .iter()
        .map(|i| {
            let reason = not_packed
                .iter()
                .find(|(id, _)| *id == i.insert_id)
                .and_then(|(_, r)| *r);
            PackedLine {
                insert_id: i.insert_id.clone(),
                rule_id: i.rule_id.clone(),
                packed: reason.is_none(),
                reason,
            }
        })
        .collect();
    b.store
        .confirm_packed(order, "station-1", &lines, &env().rules)
        .await
        .unwrap()
}

async fn packed_confirmation(b: Backend) {
    let env = env();
    b.store
        .apply_batch(
            &batch(&[
                placed("c1", "o1", "20.00"),
                placed("c2", "o2", "20.00"),
                placed("c3", "o3", "20.00"),
            ]),
            &env,
        )
        .await
        .unwrap();
    assert_eq!(stock_used(&*b.store, "tea").await, 3);

    // o1: the coupon did not go in and the tea was damaged: the code is voided (with its
    // event), the tea stays used.
    let o1 = [
        ("thanks", Some(NotPackedReason::Other)),
        ("tea", Some(NotPackedReason::Damaged)),
    ];
    let first = confirm(&b, "o1", &o1).await;
    let PackedOutcome::Recorded(recorded) = first else {
        panic!("{}: {first:?}", b.name)
    };
    assert_eq!(recorded.station, "station-1");
    assert_eq!(stock_used(&*b.store, "tea").await, 3, "{}", b.name);
    let coupons = b.store.coupons_of_order("o1").await.unwrap();
    assert_eq!(
        (coupons[0].state.as_str(), coupons[0].version),
        ("voided", 2),
        "{}",
        b.name
    );
    let voided = b
        .store
        .unsent_outbox(100)
        .await
        .unwrap()
        .into_iter()
        .filter(|r| {
            let text = String::from_utf8_lossy(&r.payload).to_string();
            r.topic == "coupons" && text.contains("coupon.voided") && text.contains("not_packed")
        })
        .count();
    assert_eq!(voided, 1, "{}", b.name);

    // The same confirmation again changes nothing and answers with the first; another one
    // is a conflict and changes nothing either.
    let again = confirm(&b, "o1", &o1).await;
    assert_eq!(
        again,
        PackedOutcome::Repeated(recorded.clone()),
        "{}",
        b.name
    );
    let other = confirm(&b, "o1", &[]).await;
    assert_eq!(
        other,
        PackedOutcome::Conflict(recorded.clone()),
        "{}",
        b.name
    );
    assert_eq!(
        b.store.coupons_of_order("o1").await.unwrap()[0].version,
        2,
        "{}",
        b.name
    );
    let stored = b.store.decision("o1").await.unwrap().unwrap();
    assert_eq!(stored.packed, Some(recorded), "{}", b.name);
    assert_eq!(
        b.store.decision("o2").await.unwrap().unwrap().packed,
        None,
        "{}",
        b.name
    );

    // o2: out of tea at the station: the rest of the allocation is gone.
    confirm(&b, "o2", &[("tea", Some(NotPackedReason::OutOfStock))]).await;
    assert_eq!(stock_used(&*b.store, "tea").await, 100, "{}", b.name);
    // o3 packed everything; a cancellation afterwards returns nothing that was packed.
    confirm(&b, "o3", &[]).await;
    b.store
        .apply_batch(&batch(&[about("order.cancelled", "x3", "c3", "o3")]), &env)
        .await
        .unwrap();
    assert_eq!(stock_used(&*b.store, "tea").await, 100, "{}", b.name);

    let unknown = b
        .store
        .confirm_packed("o-none", "s", &[], &env.rules)
        .await
        .unwrap();
    assert_eq!(unknown, PackedOutcome::NotDecided, "{}", b.name);
}
on_both!(
    a_packed_confirmation_has_its_effects_once,
    packed_confirmation
);

async fn cancellation(b: Backend) {
    let env = env();
    b.store
        .apply_batch(
            &batch(&[placed("c1", "o1", "20.00"), placed("c2", "o2", "20.00")]),
            &env,
        )
        .await
        .unwrap();
    assert_eq!(stock_used(&*b.store, "tea").await, 2);
    // o2's tea could not be packed ("other": back on the shelf).
    let outcome = confirm(&b, "o2", &[("tea", Some(NotPackedReason::Other))]).await;
    assert!(matches!(outcome, PackedOutcome::Recorded(_)), "{outcome:?}");
    assert_eq!(stock_used(&*b.store, "tea").await, 1, "{}", b.name);
    let cancel1 = about("order.cancelled", "x1", "c1", "o1");
    let cancel2 = about("order.cancelled", "x2", "c2", "o2");
    b.store
        .apply_batch(&batch(&[cancel1.clone(), cancel2]), &env)
        .await
        .unwrap();
    // o1 returned its tea; o2's was returned when it was not packed, not again now.
    assert_eq!(stock_used(&*b.store, "tea").await, 0, "{}", b.name);
    let c = b.store.coupons_of_order("o1").await.unwrap();
    assert_eq!(
        (c[0].state.as_str(), c[0].version),
        ("voided", 2),
        "{}",
        b.name
    );
    // A second cancellation (another event id) changes nothing.
    let mut again = cancel1;
    again["event_id"] = json!("x1-again");
    b.store.apply_batch(&batch(&[again]), &env).await.unwrap();
    assert_eq!(
        b.store.coupons_of_order("o1").await.unwrap()[0].version,
        2,
        "{}",
        b.name
    );
    let voided: Vec<_> = b
        .store
        .unsent_outbox(100)
        .await
        .unwrap()
        .into_iter()
        .filter(|r| {
            r.topic == "coupons" && String::from_utf8_lossy(&r.payload).contains("coupon.voided")
        })
        .collect();
    assert_eq!(
        voided.len(),
        1,
        "{}: only o1's coupon is voided (o2 was packed)",
        b.name
    );
    assert!(String::from_utf8_lossy(&voided[0].payload).contains("\"version\":2"));
}
on_both!(cancellation_voids_and_restocks_exactly_once, cancellation);

async fn fencing(b: Backend) {
    let env = env();
    let (e1, next) = b.store.claim_partition("orders", 3).await.unwrap();
    assert_eq!(next, 0);
    let (e2, _) = b.store.claim_partition("orders", 3).await.unwrap();
    assert!(e2 > e1);
    let mut stale = batch(&[placed("c1", "o1", "20.00")]);
    stale.fence = Fence::Partition {
        topic: "orders".into(),
        partition: 3,
        epoch: e1,
        start: 0,
        end: 1,
    };
    let err = b.store.apply_batch(&stale.clone(), &env).await.unwrap_err();
    assert!(
        matches!(err, StoreError::Fenced { .. }),
        "{}: {err}",
        b.name
    );
    assert!(
        b.store.decision("o1").await.unwrap().is_none(),
        "{}",
        b.name
    );
    assert!(b.store.profile("c1").await.unwrap().is_none(), "{}", b.name);
    stale.fence = Fence::Partition {
        topic: "orders".into(),
        partition: 3,
        epoch: e2,
        start: 0,
        end: 1,
    };
    b.store.apply_batch(&stale.clone(), &env).await.unwrap();
    let p = b.store.partition_offsets("orders").await.unwrap();
    assert_eq!(
        (p[0].partition, p[0].next_offset, p[0].epoch),
        (3, 1, e2),
        "{}",
        b.name
    );
    // A batch that does not start at the stored offset is refused too.
    assert!(matches!(
        b.store.apply_batch(&stale, &env).await,
        Err(StoreError::Fenced { .. })
    ));
}
on_both!(a_fenced_off_batch_leaves_nothing, fencing);

async fn redemption(b: Backend) {
    let env = env();
    b.store
        .apply_batch(&batch(&[placed("c1", "o1", "20.00")]), &env)
        .await
        .unwrap();
    let code = b.store.coupons_of_order("o1").await.unwrap()[0]
        .code
        .clone();
    let mut next = placed("c1", "o2", "40.00");
    next["order"]["coupon_codes"] = json!([code]);
    b.store.apply_batch(&batch(&[next]), &env).await.unwrap();
    let c = &b.store.coupons_of_order("o1").await.unwrap()[0];
    assert_eq!(
        (c.state.as_str(), c.redeemed_order_id.as_deref()),
        ("redeemed", Some("o2")),
        "{}",
        b.name
    );
    assert_eq!(
        b.store
            .profile("c1")
            .await
            .unwrap()
            .unwrap()
            .coupons_redeemed,
        1
    );
}
on_both!(redeemed_coupons_are_marked, redemption);

async fn forget(b: Backend) {
    let env = env_from(
        "[[insert]]\nid = \"card\"\nkind = \"note\"\ntemplate = \"card\"\n[[rule]]\nid = \"card\"\nwhen = \"true\"\ngive = [\"card\"]\n",
        &[(
            "notes/card.hbs",
            "Dear {{customer.first_name}} {{customer.last_name}}",
        )],
    );
    let mut bad = placed("c1", "o0", "1.00");
    bad["order"]["items"][0]["quantity"] = json!(0);
    b.store
        .apply_batch(&batch(&[placed("c1", "o1", "20.00"), bad]), &env)
        .await
        .unwrap();
    let before = b.store.dump_text().await.unwrap();
    assert!(
        before.contains("c1@mail.example") && before.contains("Garbo-Lindqvist"),
        "{}",
        b.name
    );
    let report = b.store.forget_customer("c1").await.unwrap();
    assert_eq!(report.profiles, 1);
    let after = b.store.dump_text().await.unwrap();
    for pii in ["c1@mail.example", "Greta", "Garbo-Lindqvist"] {
        assert!(!after.contains(pii), "{}: {pii} is still stored", b.name);
    }
    // Anonymous counts stay.
    assert_eq!(
        b.store.profile("c1").await.unwrap().unwrap().orders_count,
        1
    );
}
on_both!(forget_leaves_no_email_or_name_behind, forget);

async fn dlq(b: Backend) {
    let env = env();
    let mut items = vec![item(0, &placed("c1", "o1", "20.00"))];
    items.push(BatchItem {
        offset: 1,
        key: Some(b"c2".to_vec()),
        value: b"{not json".to_vec(),
        event: Err(Rejected {
            reason: RejectReason::InvalidJson,
            message: "not valid JSON".into(),
        }),
        decide: true,
    });
    let mut wrong_key = item(2, &placed("c3", "o3", "20.00"));
    wrong_key.key = Some(b"someone-else".to_vec());
    items.push(wrong_key);
    let mut conflict = placed("c4", "o1", "20.00");
    conflict["event_id"] = json!("conflicting");
    items.push(item(3, &conflict));
    let report = b
        .store
        .apply_batch(
            &Batch {
                fence: Fence::None,
                items,
            },
            &env,
        )
        .await
        .unwrap();
    assert_eq!(report.rejected, 3, "{}", b.name);
    let dlq: Vec<_> = b
        .store
        .unsent_outbox(100)
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.topic == "orders.dlq")
        .collect();
    let reasons: Vec<String> = dlq
        .iter()
        .map(|r| {
            serde_json::from_str::<Value>(r.headers.as_deref().unwrap()).unwrap()["packwell-reason"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(
        reasons,
        ["invalid_json", "key_mismatch", "conflict"],
        "{}",
        b.name
    );
    assert_eq!(dlq[0].payload, b"{not json", "the value is kept unchanged");
    assert!(b.store.decision("o3").await.unwrap().is_none());
}
on_both!(bad_events_go_to_the_dlq_in_the_batch, dlq);

async fn emails(b: Backend) {
    let env = env();
    b.store
        .apply_batch(&batch(&[placed("c1", "o1", "20.00")]), &env)
        .await
        .unwrap();
    let due = chrono::DateTime::parse_from_rfc3339("2026-11-20T12:00:00Z")
        .unwrap()
        .timestamp();
    assert!(
        b.store
            .claim_due_emails(due - 1, due + 60, 10)
            .await
            .unwrap()
            .is_empty(),
        "{}: not due yet",
        b.name
    );
    let jobs = b.store.claim_due_emails(due, due + 60, 10).await.unwrap();
    assert_eq!(jobs.len(), 1, "{}", b.name);
    assert_eq!(
        (jobs[0].followup_id.as_str(), jobs[0].attempts),
        ("hello", 1)
    );
    assert!(
        b.store
            .claim_due_emails(due + 1, due + 61, 10)
            .await
            .unwrap()
            .is_empty(),
        "{}: leased",
        b.name
    );
    assert_eq!(
        b.store
            .claim_due_emails(due + 61, due + 120, 10)
            .await
            .unwrap()
            .len(),
        1,
        "{}: lease ran out",
        b.name
    );
    // A cancelled order's pending e-mail is skipped.
    b.store
        .apply_batch(&batch(&[about("order.cancelled", "x1", "c1", "o1")]), &env)
        .await
        .unwrap();
    assert!(
        b.store
            .claim_due_emails(due + 500, due + 600, 10)
            .await
            .unwrap()
            .is_empty(),
        "{}",
        b.name
    );
}
on_both!(email_jobs_are_claimed_with_a_lease, emails);

async fn keys(b: Backend) {
    b.store.check_key_fingerprint("sha256:aaaa").await.unwrap();
    b.store.check_key_fingerprint("sha256:aaaa").await.unwrap();
    assert!(
        matches!(
            b.store.check_key_fingerprint("sha256:bbbb").await,
            Err(StoreError::KeyMismatch { .. })
        ),
        "{}",
        b.name
    );
    assert_eq!(
        b.store.key_fingerprint().await.unwrap().as_deref(),
        Some("sha256:aaaa")
    );
}
on_both!(a_different_coupon_key_is_refused, keys);

async fn newer_schema(b: Backend) {
    b.exec(
        "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) VALUES (9999, 'from the future', TRUE, '\\x00', 0)",
    )
    .await;
    let reopened = match &b.reopen {
        Reopen::Sqlite(path) => SqliteStore::open(path).await.map(|_| ()),
        Reopen::Pg(schema) => PgStore::with_pool(pg_pool(schema).await).await.map(|_| ()),
    };
    match reopened {
        Err(StoreError::SchemaTooNew(9999)) => {}
        Err(other) => panic!("{}: {other}", b.name),
        Ok(()) => panic!("{}: a newer schema was accepted", b.name),
    }
}
on_both!(a_newer_schema_stops_start_up, newer_schema);

async fn allocation(b: Backend) {
    let env = env();
    b.store
        .apply_batch(
            &batch(&[placed("c1", "o1", "20.00"), placed("c2", "o2", "20.00")]),
            &env,
        )
        .await
        .unwrap();
    // The marketer lowers the allocation to 2: what was given counts against it, nothing resets.
    let lowered = env_with(&RULES.replace("stock = 100", "stock = 2"));
    b.store
        .apply_batch(&batch(&[placed("c3", "o3", "20.00")]), &lowered)
        .await
        .unwrap();
    let d = b.store.decision("o3").await.unwrap().unwrap().decision;
    assert!(
        d.skipped
            .iter()
            .any(|s| s.insert_id.as_deref() == Some("tea") && s.reason == SkipReason::Stock),
        "{}",
        b.name
    );
    // Raised again: the same counter, more room.
    let raised = env_with(&RULES.replace("stock = 100", "stock = 3"));
    b.store
        .apply_batch(&batch(&[placed("c4", "o4", "20.00")]), &raised)
        .await
        .unwrap();
    assert!(
        b.store
            .decision("o4")
            .await
            .unwrap()
            .unwrap()
            .decision
            .inserts
            .iter()
            .any(|i| i.insert_id == "tea")
    );
    assert_eq!(stock_used(&*b.store, "tea").await, 3, "{}", b.name);
}
on_both!(stock_is_an_allocation_that_rules_can_change, allocation);

async fn retention(b: Backend) {
    let env = env();
    let events: Vec<Value> = (0..7)
        .map(|i| placed(&format!("r{i}"), &format!("ro{i}"), "20.00"))
        .collect();
    b.store.apply_batch(&batch(&events), &env).await.unwrap();
    let ids: Vec<i64> = b
        .store
        .unsent_outbox(100)
        .await
        .unwrap()
        .iter()
        .map(|r| r.id)
        .collect();
    b.store.mark_sent(&ids).await.unwrap();
    // Nothing was decided (2026-11-20) or processed before November.
    let november = chrono::DateTime::parse_from_rfc3339("2026-11-01T00:00:00Z")
        .unwrap()
        .timestamp();
    assert_eq!(
        packwell::store::purge(&*b.store, november, 3)
            .await
            .unwrap(),
        0,
        "{}",
        b.name
    );
    let now = chrono::Utc::now().timestamp();
    // Everything decided before tomorrow goes, three rows at a time; profiles stay.
    let removed = packwell::store::purge(&*b.store, now + 86_400, 3)
        .await
        .unwrap();
    assert!(removed >= 7 * 3, "{}: {removed}", b.name);
    assert!(
        b.store.decision("ro0").await.unwrap().is_none(),
        "{}",
        b.name
    );
    assert!(b.store.unsent_outbox(100).await.unwrap().is_empty());
    assert_eq!(
        b.store.profile("r0").await.unwrap().unwrap().orders_count,
        1
    );
}
on_both!(retention_removes_old_rows_in_small_batches, retention);

async fn foreign_order(b: Backend) {
    let env = env();
    b.store
        .apply_batch(&batch(&[placed("c1", "o1", "20.00")]), &env)
        .await
        .unwrap();
    // c2 claims to cancel c1's order: set aside, c1's coupon and stock untouched.
    let report = b
        .store
        .apply_batch(&batch(&[about("order.cancelled", "x1", "c2", "o1")]), &env)
        .await
        .unwrap();
    assert_eq!(report.rejected, 1, "{}", b.name);
    assert_eq!(
        b.store.coupons_of_order("o1").await.unwrap()[0].state,
        "issued",
        "{}",
        b.name
    );
    assert_eq!(stock_used(&*b.store, "tea").await, 1, "{}", b.name);
    assert!(b.store.profile("c2").await.unwrap().is_none(), "{}", b.name);
}
on_both!(
    an_event_about_another_customers_order_is_a_conflict,
    foreign_order
);

async fn log_rows(store: &dyn Store, action: &str) -> Vec<(String, String, Value)> {
    store
        .operator_log(100)
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.action == action)
        .map(|r| {
            let detail: Value = serde_json::from_str(&r.detail).expect("detail is JSON");
            (r.actor, r.subject, detail)
        })
        .collect()
}

async fn stock_set(b: Backend) {
    let env = env();
    b.store
        .apply_batch(&batch(&[placed("c1", "o1", "20.00")]), &env)
        .await
        .unwrap();
    assert_eq!(stock_used(&*b.store, "tea").await, 1, "{}", b.name);
    // The shelf holds one more sachet: 1 remaining of the allocation of 100.
    let one_left = StockSetting {
        insert_id: "tea".into(),
        slot: "*".into(),
        allocation: 100,
        remaining: 1,
    };
    let changes = b
        .store
        .set_stock(std::slice::from_ref(&one_left), "ops-test")
        .await
        .unwrap();
    assert_eq!(
        changes,
        vec![StockChange {
            insert_id: "tea".into(),
            slot: "*".into(),
            allocation: 100,
            used_before: 1,
            used_after: 99
        }],
        "{}",
        b.name
    );
    // The next decision sees it: o2 gets the last one, o3 none.
    b.store
        .apply_batch(
            &batch(&[placed("c2", "o2", "20.00"), placed("c3", "o3", "20.00")]),
            &env,
        )
        .await
        .unwrap();
    assert_eq!(
        futures_like(&*b.store, &["o2", "o3"], "tea").await,
        [true, false],
        "{}",
        b.name
    );
    let d = b.store.decision("o3").await.unwrap().unwrap().decision;
    assert!(
        d.skipped
            .iter()
            .any(|s| s.insert_id.as_deref() == Some("tea") && s.reason == SkipReason::Stock),
        "{}",
        b.name
    );
    assert_eq!(stock_used(&*b.store, "tea").await, 100, "{}", b.name);
    // Refilled to the whole allocation; a warehouse counter that did not exist yet is created.
    let refill = [
        StockSetting {
            remaining: 100,
            ..one_left.clone()
        },
        StockSetting {
            insert_id: "vial".into(),
            slot: "WH-BER".into(),
            allocation: 30,
            remaining: 25,
        },
    ];
    let changes = b.store.set_stock(&refill, "ops-test").await.unwrap();
    assert_eq!(
        changes
            .iter()
            .map(|c| (c.insert_id.as_str(), c.used_before, c.used_after))
            .collect::<Vec<_>>(),
        [("tea", 100, 0), ("vial", 0, 5)],
        "{}",
        b.name
    );
    b.store
        .apply_batch(&batch(&[placed("c4", "o4", "20.00")]), &env)
        .await
        .unwrap();
    assert_eq!(futures_like(&*b.store, &["o4"], "tea").await, [true]);
    // More than the allocation is refused, and changes nothing.
    let err = b
        .store
        .set_stock(
            &[StockSetting {
                remaining: 101,
                ..one_left.clone()
            }],
            "ops-test",
        )
        .await
        .unwrap_err();
    assert!(err.to_string().contains("allocation"), "{}: {err}", b.name);
    assert_eq!(stock_used(&*b.store, "tea").await, 1, "{}", b.name);
    // One log row per counter set, newest first.
    let log = log_rows(&*b.store, "stock.set").await;
    let seen: Vec<(&str, &str, i64, i64)> = log
        .iter()
        .map(|(actor, subject, d)| {
            (
                actor.as_str(),
                subject.as_str(),
                d["remaining_before"].as_i64().unwrap(),
                d["remaining_after"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            ("ops-test", "vial/WH-BER", 30, 25),
            ("ops-test", "tea/*", 0, 100),
            ("ops-test", "tea/*", 99, 1)
        ],
        "{}",
        b.name
    );
}
on_both!(stock_set_is_seen_by_the_next_decision_and_logged, stock_set);

async fn coupon_void(b: Backend) {
    let env = env();
    b.store
        .apply_batch(
            &batch(&[placed("c1", "o1", "20.00"), placed("c2", "o2", "20.00")]),
            &env,
        )
        .await
        .unwrap();
    let code = b.store.coupons_of_order("o1").await.unwrap()[0]
        .code
        .clone();
    let before = b.store.outbox_backlog().await.unwrap();
    let outcome = b.store.void_coupon(&code, "ops-test").await.unwrap();
    assert_eq!(
        outcome,
        VoidOutcome::Voided {
            version: 2,
            order_id: "o1".into(),
            customer_id: "c1".into()
        },
        "{}",
        b.name
    );
    let c = &b.store.coupons_of_order("o1").await.unwrap()[0];
    assert_eq!((c.state.as_str(), c.version), ("voided", 2), "{}", b.name);
    // One coupon.voided message, keyed by the code, after every earlier row.
    let rows = b.store.unsent_outbox(100).await.unwrap();
    assert_eq!(rows.len() as i64, before + 1, "{}", b.name);
    let last = rows.last().unwrap();
    assert_eq!(
        (last.topic.as_str(), last.key.as_deref()),
        ("coupons", Some(code.as_bytes()))
    );
    let msg: Value = serde_json::from_slice(&last.payload).unwrap();
    assert_eq!(
        (
            &msg["type"],
            &msg["version"],
            &msg["reason"],
            &msg["order_id"],
            &msg["customer_id"],
            &msg["schema_version"]
        ),
        (
            &json!("coupon.voided"),
            &json!(2),
            &json!("operator"),
            &json!("o1"),
            &json!("c1"),
            &json!(1)
        ),
        "{}",
        b.name
    );
    assert!(msg["occurred_at"].is_string());
    // Not twice: the second time it is voided already, and nothing is written.
    assert_eq!(
        b.store.void_coupon(&code, "ops-test").await.unwrap(),
        VoidOutcome::Final {
            state: "voided".into(),
            redeemed_order_id: None
        },
        "{}",
        b.name
    );
    assert_eq!(b.store.outbox_backlog().await.unwrap(), before + 1);
    assert_eq!(b.store.coupons_of_order("o1").await.unwrap()[0].version, 2);
    // The order's cancellation later does not void it again.
    b.store
        .apply_batch(&batch(&[about("order.cancelled", "x1", "c1", "o1")]), &env)
        .await
        .unwrap();
    assert_eq!(b.store.coupons_of_order("o1").await.unwrap()[0].version, 2);
    // A redeemed code and an unknown one.
    let code2 = b.store.coupons_of_order("o2").await.unwrap()[0]
        .code
        .clone();
    let mut next = placed("c2", "o5", "40.00");
    next["order"]["coupon_codes"] = json!([code2]);
    b.store.apply_batch(&batch(&[next]), &env).await.unwrap();
    assert_eq!(
        b.store.void_coupon(&code2, "ops-test").await.unwrap(),
        VoidOutcome::Final {
            state: "redeemed".into(),
            redeemed_order_id: Some("o5".into())
        },
        "{}",
        b.name
    );
    assert_eq!(
        b.store
            .void_coupon("TY-NOSUCHCODE", "ops-test")
            .await
            .unwrap(),
        VoidOutcome::Unknown
    );
    // Only the change is logged.
    let log = log_rows(&*b.store, "coupon.void").await;
    assert_eq!(log.len(), 1, "{}: {log:?}", b.name);
    assert_eq!(log[0].1, code);
    assert_eq!(
        (&log[0].2["order_id"], &log[0].2["version"]),
        (&json!("o1"), &json!(2))
    );
}
on_both!(
    voiding_a_coupon_emits_version_2_once_and_is_logged,
    coupon_void
);

async fn dlq_rows_and_retention(b: Backend) {
    let env = env();
    let bad = |offset: i64, key: Option<&str>, value: &[u8]| BatchItem {
        offset,
        key: key.map(|k| k.as_bytes().to_vec()),
        value: value.to_vec(),
        event: Err(Rejected {
            reason: RejectReason::InvalidJson,
            message: "not valid JSON".into(),
        }),
        decide: true,
    };
    let (epoch, _) = b.store.claim_partition("orders", 2).await.unwrap();
    let items = vec![
        bad(0, Some("c1"), b"{one"),
        item(1, &placed("c1", "o1", "20.00")),
        bad(2, None, b"{two"),
    ];
    b.store
        .apply_batch(
            &Batch {
                fence: Fence::Partition {
                    topic: "orders".into(),
                    partition: 2,
                    epoch,
                    start: 0,
                    end: 3,
                },
                items,
            },
            &env,
        )
        .await
        .unwrap();
    let rows = b.store.dlq_rows(i64::MIN, 0, 100).await.unwrap();
    let seen: Vec<(Option<String>, String, bool)> = rows
        .iter()
        .map(|r| {
            (
                r.key
                    .as_deref()
                    .map(|k| String::from_utf8_lossy(k).into_owned()),
                String::from_utf8_lossy(&r.value).into_owned(),
                r.sent,
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            (Some("c1".to_string()), "{one".to_string(), false),
            (None, "{two".to_string(), false)
        ],
        "{}",
        b.name
    );
    let h: Value = serde_json::from_str(rows[1].headers.as_deref().unwrap()).unwrap();
    assert_eq!(
        (
            &h["packwell-source-partition"],
            &h["packwell-source-offset"]
        ),
        (&json!("2"), &json!("2"))
    );
    // Paged by id, and by time.
    let page = b.store.dlq_rows(i64::MIN, rows[0].id, 100).await.unwrap();
    assert_eq!(page.len(), 1);
    let later = rows[0].created_at + 3600;
    assert!(b.store.dlq_rows(later, 0, 100).await.unwrap().is_empty());
    // Sent rows are still read; once retention removed them, the store says up to when.
    let ids: Vec<i64> = b
        .store
        .unsent_outbox(100)
        .await
        .unwrap()
        .iter()
        .map(|r| r.id)
        .collect();
    b.store.mark_sent(&ids).await.unwrap();
    assert!(b.store.dlq_rows(i64::MIN, 0, 100).await.unwrap()[0].sent);
    assert_eq!(b.store.dlq_purged_through().await.unwrap(), None);
    packwell::store::purge(&*b.store, chrono::Utc::now().timestamp() + 86_400, 100)
        .await
        .unwrap();
    assert!(b.store.dlq_rows(i64::MIN, 0, 100).await.unwrap().is_empty());
    assert_eq!(
        b.store.dlq_purged_through().await.unwrap(),
        Some(rows[1].created_at),
        "{}",
        b.name
    );
    // A control that changes nothing else is logged on its own; the log outlives retention.
    b.store
        .log_operator("ops-test", "dlq.replay", "orders.dlq", &json!({"sent": 2}))
        .await
        .unwrap();
    packwell::store::purge(&*b.store, chrono::Utc::now().timestamp() + 86_400, 100)
        .await
        .unwrap();
    let log = log_rows(&*b.store, "dlq.replay").await;
    assert_eq!(
        log,
        [(
            "ops-test".to_string(),
            "orders.dlq".to_string(),
            json!({"sent": 2})
        )],
        "{}",
        b.name
    );
    assert!(b.store.dump_text().await.unwrap().contains("dlq.replay"));
}
on_both!(
    dlq_rows_are_read_sent_or_not_and_retention_is_remembered,
    dlq_rows_and_retention
);

/// Confirmations and cancellations of the same orders at once: each order ends either
/// confirmed (its coupon issued when packed, its tea used) or cancelled before anything was
/// confirmed (nothing recorded, coupon voided, tea back) — never a packed coupon that is void.
async fn confirmations_racing_cancellations(b: Backend) {
    let env = Arc::new(env());
    let n = 200;
    let events: Vec<Value> = (0..n)
        .map(|i| placed(&format!("rc{i}"), &format!("ro{i}"), "20.00"))
        .collect();
    b.store.apply_batch(&batch(&events), &env).await.unwrap();
    let mut tasks = Vec::new();
    for i in 0..n {
        let order = format!("ro{i}");
        let d = b.store.decision(&order).await.unwrap().unwrap().decision;
        let lines: Vec<PackedLine> = d
            .inserts
            .iter()
            .map(|g| PackedLine {
                insert_id: g.insert_id.clone(),
                rule_id: g.rule_id.clone(),
                packed: true,
                reason: None,
            })
            .collect();
        let (store, rules, o) = (b.store.clone(), env.rules.clone(), order.clone());
        tasks.push(tokio::spawn(async move {
            store
                .confirm_packed(&o, "s", &lines, &rules)
                .await
                .map(|_| ())
                .map_err(|e| format!("confirm {o}: {e}"))
        }));
        let (store, env, cancel) = (
            b.store.clone(),
            env.clone(),
            about(
                "order.cancelled",
                &format!("x-{order}"),
                &format!("rc{i}"),
                &order,
            ),
        );
        tasks.push(tokio::spawn(async move {
            tokio::time::sleep(std::time::Duration::from_micros((i as u64 * 37) % 3000)).await;
            store
                .apply_batch(&batch(&[cancel]), &env)
                .await
                .map(|_| ())
                .map_err(|e| format!("cancel: {e}"))
        }));
    }
    let mut errors = Vec::new();
    for t in tasks {
        if let Err(e) = t.await.unwrap() {
            errors.push(e);
        }
    }
    assert!(errors.is_empty(), "{}: {errors:?}", b.name);
    let mut confirmed = 0;
    for i in 0..n {
        let order = format!("ro{i}");
        let coupon = &b.store.coupons_of_order(&order).await.unwrap()[0];
        let stored = b.store.decision(&order).await.unwrap().unwrap();
        let has_tea = stored.decision.inserts.iter().any(|g| g.insert_id == "tea");
        match stored.packed {
            Some(_) => {
                confirmed += i64::from(has_tea);
                assert_eq!(
                    coupon.state, "issued",
                    "{}: {order} was packed with its coupon",
                    b.name
                );
            }
            None => assert_eq!(coupon.state, "voided", "{}: {order} was cancelled", b.name),
        }
    }
    // Tea (a stock of 100) stays used by the parcels confirmed with it, and only by them.
    assert_eq!(stock_used(&*b.store, "tea").await, confirmed, "{}", b.name);
}
on_both!(
    confirmations_and_cancellations_of_the_same_orders_never_interleave,
    confirmations_racing_cancellations
);

const TWO_STOCKS: &str = r#"
[[insert]]
id = "a"
kind = "gift"
unit_cost = "0.40"
stock = 1000
[[insert]]
id = "b"
kind = "gift"
unit_cost = "0.40"
stock = 1000
[[rule]]
id = "ab"
when = "order.total >= 50"
give = ["a", "b"]
[[rule]]
id = "ba"
when = "order.total < 50"
give = ["b", "a"]
"#;

/// Confirmations at once whose orders list the same stocked inserts in opposite orders: stock
/// rows are taken in one order, so none deadlocks, and everything goes back to stock.
async fn confirmations_take_stock_rows_in_one_order(b: Backend) {
    let env = Arc::new(env_with(TWO_STOCKS));
    let n = 200;
    let events: Vec<Value> = (0..n)
        .map(|i| {
            placed(
                &format!("sc{i}"),
                &format!("so{i}"),
                if i % 2 == 0 { "60.00" } else { "20.00" },
            )
        })
        .collect();
    b.store.apply_batch(&batch(&events), &env).await.unwrap();
    let mut tasks = Vec::new();
    for i in 0..n {
        let order = format!("so{i}");
        let d = b.store.decision(&order).await.unwrap().unwrap().decision;
        let lines: Vec<PackedLine> = d
            .inserts
            .iter()
            .map(|g| PackedLine {
                insert_id: g.insert_id.clone(),
                rule_id: g.rule_id.clone(),
                packed: false,
                reason: Some(NotPackedReason::Other),
            })
            .collect();
        let (store, rules) = (b.store.clone(), env.rules.clone());
        tasks.push(tokio::spawn(async move {
            store
                .confirm_packed(&order, "s", &lines, &rules)
                .await
                .map_err(|e| format!("{order}: {e}"))
        }));
    }
    for t in tasks {
        let outcome = t.await.unwrap();
        assert!(
            matches!(outcome, Ok(PackedOutcome::Recorded(_))),
            "{}: {outcome:?}",
            b.name
        );
    }
    assert_eq!(
        (
            stock_used(&*b.store, "a").await,
            stock_used(&*b.store, "b").await
        ),
        (0, 0),
        "{}",
        b.name
    );
}
on_both!(
    concurrent_confirmations_do_not_deadlock_on_stock,
    confirmations_take_stock_rows_in_one_order
);

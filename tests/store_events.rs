//! The events the store keeps (`store/events.rs`), on both backends: each event a batch applies
//! is kept once, in application order, and reads back as the event it was, digest included;
//! events set aside (invalid, under another key, a conflict, one whose effect cannot be held)
//! and events seen before are not; an import's events (decide = false) are; retention removes
//! those kept before its cutoff, by when they were kept; `forget` removes a customer's, and
//! leaves no byte of theirs in the table.

use chrono::Utc;
use packwell::event::{Event, EventBody, event_from_value};
use packwell::store::events::{all_kept_events, open_read_only};
use packwell::store::{Batch, BatchItem, Fence, KeptEvent};
use rust_decimal::Decimal;
use serde_json::{Value, json};

#[macro_use]
mod store_support;
use store_support::*;

const RULES: &str = "[[insert]]\nid = \"tea\"\nkind = \"gift\"\n\
    [[rule]]\nid = \"tea\"\nwhen = \"true\"\ngive = [\"tea\"]\n";

fn placed(customer: &str, order: &str, person: [&str; 4]) -> Value {
    json!({"event_id": format!("p-{order}"), "type": "order.placed", "occurred_at": "2026-11-20T10:00:00Z",
        "order": {"id": order, "customer": {"id": customer, "email": person[0], "first_name": person[1]},
            "currency": "EUR", "total": "20.00",
            "items": [{"sku": "S", "name": "Book", "category": "books", "quantity": 2, "unit_price": "10.00"}],
            "shipping": {"country": "NL", "city": person[2], "postcode": person[3]}, "warehouse": "WH-AMS"}})
}

fn shipped(customer: &str, order: &str) -> Value {
    json!({"event_id": format!("s-{order}"), "type": "order.shipped", "occurred_at": "2026-11-21T10:00:00Z",
        "order_id": order, "customer_id": customer, "carrier": "DHL"})
}

fn feedback(customer: &str, id: &str) -> Value {
    json!({"event_id": id, "type": "customer.feedback", "occurred_at": "2026-11-22T10:00:00.5Z",
        "customer_id": customer, "nps": 9, "comment": "quick"})
}

const ANA: [&str; 4] = [
    "ana.vermeulen@kept.example",
    "Anneliese",
    "Oudewater",
    "OW 3421",
];
const BO: [&str; 4] = ["bo.stays@kept.example", "Bodhilde", "Gouda", "GD 2801"];

fn parsed(v: &Value) -> Event {
    event_from_value(v).expect("a valid event")
}

async fn kept(b: &Backend) -> Vec<KeptEvent> {
    all_kept_events(&*b.store, None, 3, |_| {}).await.unwrap()
}

fn ids(kept: &[KeptEvent]) -> Vec<String> {
    kept.iter()
        .map(|k| match &k.event {
            Ok(e) => e.event_id.clone(),
            Err(e) => format!("unreadable: {e}"),
        })
        .collect()
}

/// Every column of every kept row, bytes as they are, for searching.
async fn raw_rows(b: &Backend) -> Vec<(String, String, i64, i64, Vec<u8>)> {
    let sql = "SELECT event_id, customer_id, occurred_at, stored_at, body FROM events ORDER BY seq";
    match &b.raw {
        Raw::Sqlite(p) => sqlx::query_as(sql).fetch_all(p).await.unwrap(),
        Raw::Pg(p) => sqlx::query_as(sql).fetch_all(p).await.unwrap(),
    }
}

fn holds(rows: &[(String, String, i64, i64, Vec<u8>)], needle: &str) -> bool {
    rows.iter().any(|(id, customer, _, _, body)| {
        [id.as_bytes(), customer.as_bytes(), body.as_slice()]
            .iter()
            .any(|bytes| bytes.windows(needle.len()).any(|w| w == needle.as_bytes()))
    })
}

async fn applied_events_are_kept(b: Backend) {
    let env = env_from(RULES, &[]);
    let mut bad = placed("c1", "o-bad", ANA);
    bad["order"]["items"] = json!([]);
    let mut wrong_key = item(3, &feedback("c2", "f-wrong-key"));
    wrong_key.key = Some(b"someone-else".to_vec());
    let first = Batch {
        fence: Fence::None,
        items: vec![
            item(0, &placed("c1", "o1", ANA)),
            item(1, &shipped("c1", "o1")),
            item(2, &bad),
            wrong_key,
            item(4, &feedback("c2", "f-1")),
            // The same event again in the batch: seen before.
            item(5, &placed("c1", "o1", ANA)),
        ],
    };
    let report = b.store.apply_batch(&first, &env).await.unwrap();
    assert_eq!((report.rejected, report.seen_before), (2, 1), "{}", b.name);

    // A redelivery, an id reused for another event, the order again with other content, the
    // order under another customer, an event about someone else's order: none is kept. The
    // same order under a new id changes nothing, and is kept as it was applied. An import's
    // order (decide = false) is kept.
    let mut reused = feedback("c2", "f-1");
    reused["nps"] = json!(3);
    let mut changed = placed("c1", "o1", ANA);
    changed["event_id"] = json!("p-o1-changed");
    changed["order"]["total"] = json!("25.00");
    let mut elsewhere = placed("c2", "o1", BO);
    elsewhere["event_id"] = json!("p-o1-c2");
    let mut again = placed("c1", "o1", ANA);
    again["event_id"] = json!("p-o1-again");
    let mut imported = item(6, &placed("c2", "o2", BO));
    imported.decide = false;
    let second = Batch {
        fence: Fence::None,
        items: vec![
            item(0, &feedback("c2", "f-1")),
            item(1, &reused),
            item(2, &changed),
            item(3, &elsewhere),
            item(4, &shipped("c2", "o1")),
            item(5, &again),
            imported,
        ],
    };
    let report = b.store.apply_batch(&second, &env).await.unwrap();
    assert_eq!((report.rejected, report.seen_before), (4, 1), "{}", b.name);
    assert!(b.store.decision("o2").await.unwrap().is_none());

    let kept = kept(&b).await;
    assert_eq!(
        ids(&kept),
        ["p-o1", "s-o1", "f-1", "p-o1-again", "p-o2"],
        "{}",
        b.name
    );
    assert!(kept.windows(2).all(|w| w[0].seq < w[1].seq));
    let expected = [
        placed("c1", "o1", ANA),
        shipped("c1", "o1"),
        feedback("c2", "f-1"),
        again,
        placed("c2", "o2", BO),
    ];
    let now = Utc::now().timestamp();
    for (k, v) in kept.iter().zip(&expected) {
        let want = parsed(v);
        let got = k.event.as_ref().unwrap();
        assert_eq!(got, &want, "{}", b.name);
        assert_eq!(got.digest, want.digest, "{}", b.name);
        assert!((now - k.stored_at).abs() < 60, "{}", b.name);
    }
    let rows = raw_rows(&b).await;
    let columns: Vec<(&str, &str, i64)> = rows
        .iter()
        .map(|r| (r.0.as_str(), r.1.as_str(), r.2))
        .collect();
    assert_eq!(columns[0], ("p-o1", "c1", 1_795_168_800), "{}", b.name);
    assert_eq!(columns[2], ("f-1", "c2", 1_795_341_600), "{}", b.name);

    // Read on from a place, and from a time.
    let after = b.store.kept_events(kept[1].seq, None, 2).await.unwrap();
    assert_eq!(ids(&after), ["f-1", "p-o1-again"], "{}", b.name);
    let since = b
        .store
        .kept_events(i64::MIN, Some(1_795_219_200), 10)
        .await
        .unwrap();
    assert_eq!(ids(&since), ["s-o1", "f-1"], "{}", b.name);
}
on_both!(
    applied_events_are_kept_once_in_order_and_others_are_not,
    applied_events_are_kept
);

async fn unholdable_not_kept(b: Backend) {
    let env = env_from(RULES, &[]);
    // Built past the parser's bounds, as a history stored before them could hold: the first
    // is applied and kept, and reads back as what it is, not an event; the second cannot add
    // up (out_of_range) and is not kept.
    let with_max = |order: &str| {
        let mut e = parsed(&placed("c1", order, ANA));
        if let EventBody::OrderPlaced(o) = &mut e.body {
            o.total = Decimal::MAX;
        }
        BatchItem {
            offset: 0,
            key: Some(b"c1".to_vec()),
            value: b"{}".to_vec(),
            event: Ok(e),
            decide: true,
        }
    };
    let batch = Batch {
        fence: Fence::None,
        items: vec![with_max("o1"), with_max("o2")],
    };
    let report = b.store.apply_batch(&batch, &env).await.unwrap();
    assert_eq!(report.rejected, 1, "{}", b.name);
    let kept = kept(&b).await;
    assert_eq!(kept.len(), 1, "{}", b.name);
    let err = kept[0].event.as_ref().unwrap_err();
    assert_eq!(err.field, "order.total", "{}", b.name);
}
on_both!(
    an_event_set_aside_by_the_fold_is_not_kept_and_bounds_are_checked_on_reading,
    unholdable_not_kept
);

async fn retention(b: Backend) {
    let env = env_from(RULES, &[]);
    let mut old_event = feedback("c2", "f-2019");
    old_event["occurred_at"] = json!("2019-01-01T00:00:00Z");
    b.store
        .apply_batch(
            &batch(&[
                placed("c1", "o1", ANA),
                shipped("c1", "o1"),
                feedback("c2", "f-1"),
                old_event,
            ]),
            &env,
        )
        .await
        .unwrap();
    // Two kept 500 days ago; the one that happened in 2019 was kept now.
    b.exec(
        "UPDATE events SET stored_at = stored_at - 500 * 86400 WHERE event_id IN ('p-o1', 's-o1')",
    )
    .await;
    let cutoff = Utc::now().timestamp() - 400 * 86_400;
    let removed = b.store.purge_older_than(cutoff, 1).await.unwrap();
    assert_eq!(removed, 1, "{}: one row a table at most", b.name);
    packwell::store::purge(&*b.store, cutoff, 1).await.unwrap();
    assert_eq!(ids(&kept(&b).await), ["f-1", "f-2019"], "{}", b.name);
    // Their processed ids were processed now and stay: a redelivery is still seen before.
    let report = b
        .store
        .apply_batch(&batch(&[placed("c1", "o1", ANA)]), &env)
        .await
        .unwrap();
    assert_eq!(report.seen_before, 1, "{}", b.name);
    assert_eq!(kept(&b).await.len(), 2, "{}", b.name);
}
on_both!(retention_removes_events_kept_before_its_cutoff, retention);

async fn forget(b: Backend) {
    let env = env_from(RULES, &[]);
    b.store
        .apply_batch(
            &batch(&[
                placed("c1", "o1", ANA),
                placed("c2", "o2", BO),
                shipped("c1", "o1"),
                feedback("c1", "f-1"),
            ]),
            &env,
        )
        .await
        .unwrap();
    let before = raw_rows(&b).await;
    for needle in ANA.iter().chain(&BO) {
        assert!(
            holds(&before, needle),
            "{}: {needle} in no kept event (the test proves nothing)",
            b.name
        );
    }

    let report = b.store.forget_customer("c1").await.unwrap();
    assert_eq!(report.events, 3, "{}: {report:?}", b.name);
    let after = raw_rows(&b).await;
    for needle in ANA.iter().chain(&["c1"]) {
        assert!(!holds(&after, needle), "{}: {needle} still kept", b.name);
    }
    assert_eq!(ids(&kept(&b).await), ["p-o2"], "{}", b.name);
    for needle in BO {
        assert!(holds(&after, needle), "{}: {needle} went too", b.name);
    }
    // PostgreSQL vacuums the table, so the deleted row versions go too.
    if let Raw::Pg(pool) = &b.raw {
        let vacuums: i64 = sqlx::query_scalar(
            "SELECT COALESCE(SUM(vacuum_count), 0)::bigint FROM pg_stat_user_tables \
             WHERE schemaname = current_schema() AND relname = 'events'",
        )
        .fetch_one(pool)
        .await
        .unwrap();
        assert_eq!(vacuums, 1, "{}", b.name);
    }
    let again = b.store.forget_customer("c1").await.unwrap();
    assert_eq!(again.events, 0, "{}", b.name);
}
on_both!(forget_removes_the_customers_kept_events, forget);

async fn only_their_events(b: Backend) {
    // Someone who has only events that leave no profile data (a feedback, an unsubscribe) is
    // still found and erased.
    let env = env_from(RULES, &[]);
    let unsubscribed = json!({"event_id": "u-1", "type": "customer.unsubscribed",
        "occurred_at": "2026-11-22T10:00:00Z", "customer_id": "c3"});
    b.store
        .apply_batch(&batch(&[feedback("c3", "f-3"), unsubscribed]), &env)
        .await
        .unwrap();
    let report = b.store.forget_customer("c3").await.unwrap();
    assert_eq!(report.events, 2, "{}: {report:?}", b.name);
    assert!(report.cleanup.is_some(), "{}", b.name);
    assert!(kept(&b).await.is_empty(), "{}", b.name);
}
on_both!(
    forget_erases_a_customer_known_by_events_only,
    only_their_events
);

async fn read_only(b: Backend) {
    let env = env_from(RULES, &[]);
    b.store
        .apply_batch(
            &batch(&[placed("c1", "o1", ANA), shipped("c1", "o1")]),
            &env,
        )
        .await
        .unwrap();
    let url = match &b.reopen {
        Reopen::Sqlite(path) => path.clone(),
        Reopen::Pg(schema) => format!("{PG_URL}?options[search_path]={schema}"),
    };
    let reader = open_read_only(&url).await.unwrap();
    let read = all_kept_events(&*reader, None, 10, |_| {}).await.unwrap();
    assert_eq!(read, kept(&b).await, "{}", b.name);
    // Nothing written through it takes.
    let more = batch(&[feedback("c1", "f-9")]);
    assert!(reader.apply_batch(&more, &env).await.is_err(), "{}", b.name);
    assert!(reader.forget_customer("c1").await.is_err(), "{}", b.name);
    assert_eq!(ids(&kept(&b).await), ["p-o1", "s-o1"], "{}", b.name);
    assert!(
        b.store
            .profile("c1")
            .await
            .unwrap()
            .unwrap()
            .email
            .is_some()
    );
    // A store whose schema is older than this Packwell's is not updated by a reader: refused.
    b.exec("DELETE FROM _sqlx_migrations WHERE version = 8")
        .await;
    let refused = open_read_only(&url).await.err().expect("refused");
    assert!(
        refused.to_string().contains("migration 8 is not applied"),
        "{}: {refused}",
        b.name
    );
}
on_both!(
    a_read_only_opening_reads_the_kept_events_and_writes_nothing,
    read_only
);

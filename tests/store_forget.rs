//! `forget` in the store, on both backends: every outbox message about the customer, sent or
//! not (the packing instruction whose card greets them, the DLQ copy of a bad event of theirs
//! with their address, their `customer.unsubscribed`), keeps its shape and loses their data;
//! another customer's messages are untouched; PostgreSQL vacuums the tables it wrote.

use chrono::Utc;
use serde_json::{Value, json};

#[macro_use]
mod store_support;
use store_support::*;

const RULES: &str = "[[insert]]\nid = \"card\"\nkind = \"note\"\ntemplate = \"card\"\n\
    [[rule]]\nid = \"card\"\nwhen = \"true\"\ngive = [\"card\"]\n";

const THEIRS: [&str; 5] = [
    "ottilie.vanderkamp@erase.example",
    "Ottilie",
    "Vanderkamp",
    "Zwartewaal",
    "ZW 4242",
];

fn placed(customer: &str, order: &str, person: [&str; 5]) -> Value {
    json!({"event_id": format!("p-{order}"), "type": "order.placed", "occurred_at": "2026-11-20T10:00:00Z",
        "order": {"id": order, "customer": {"id": customer, "email": person[0], "first_name": person[1],
            "last_name": person[2]},
            "currency": "EUR", "total": "20.00",
            "items": [{"sku": "S", "name": "Book", "category": "books", "quantity": 1, "unit_price": "20.00"}],
            "shipping": {"country": "NL", "city": person[3], "postcode": person[4]}, "warehouse": "WH-AMS"}})
}

/// An outbox row as stored: topic, key, payload, headers.
type OutboxRow = (String, Option<Vec<u8>>, Vec<u8>, Option<String>);

/// Every outbox row: (topic, key, payload, headers) as text.
async fn outbox(b: &Backend) -> Vec<(String, String, String, String)> {
    let sql = "SELECT topic, msg_key, payload, headers FROM outbox ORDER BY id";
    let rows: Vec<OutboxRow> = match &b.raw {
        Raw::Sqlite(p) => sqlx::query_as(sql).fetch_all(p).await.unwrap(),
        Raw::Pg(p) => sqlx::query_as(sql).fetch_all(p).await.unwrap(),
    };
    rows.into_iter()
        .map(|(t, k, p, h)| {
            (
                t,
                String::from_utf8_lossy(&k.unwrap_or_default()).into_owned(),
                String::from_utf8_lossy(&p).into_owned(),
                h.unwrap_or_default(),
            )
        })
        .collect()
}

async fn forget_scrubs_every_message(b: Backend) {
    let env = env_from(
        RULES,
        &[(
            "notes/card.hbs",
            "Dear {{customer.first_name}} {{customer.last_name}}",
        )],
    );
    let other = [
        "kees.blijft@keep.example",
        "Kees",
        "Blijft",
        "Blijdorp",
        "BL 1111",
    ];
    let mut bad = placed("C-1", "O-BAD", THEIRS);
    bad["event_id"] = json!("p-bad");
    bad["order"]["items"] = json!([]);
    b.store
        .apply_batch(
            &batch(&[
                placed("C-1", "O-1", THEIRS),
                placed("C-2", "O-2", other),
                bad,
            ]),
            &env,
        )
        .await
        .unwrap();
    // The relay has sent these; the unsubscribe after them is not sent yet.
    let sent: Vec<i64> = b
        .store
        .unsent_outbox(100)
        .await
        .unwrap()
        .iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(sent.len(), 3, "{}", b.name);
    b.store.mark_sent(&sent).await.unwrap();
    assert!(b.store.unsubscribe("C-1", Utc::now()).await.unwrap());
    let before = outbox(&b).await;
    for needle in THEIRS {
        assert!(
            before.iter().any(|(_, _, p, _)| p.contains(needle)),
            "{}: {needle} in no message (the test proves nothing)",
            b.name
        );
    }

    let report = b.store.forget_customer("C-1").await.unwrap();
    assert_eq!(
        (
            report.profiles,
            report.decisions,
            report.orders,
            report.outbox_rows
        ),
        (1, 1, 0, 3),
        "{}: {report:?}",
        b.name
    );
    let after = outbox(&b).await;
    assert_eq!(after.len(), before.len());
    for (topic, key, payload, headers) in &after {
        for needle in THEIRS {
            assert!(
                !payload.contains(needle) && !headers.contains(needle),
                "{}: {needle} still in {topic} {key}: {payload} {headers}",
                b.name
            );
        }
    }
    // Their messages keep their shape; the other customer's are as they were.
    let by_key = |k: &str, t: &str| {
        after
            .iter()
            .find(|(topic, key, _, _)| key == k && topic == t)
            .map(|(_, _, p, _)| serde_json::from_str::<Value>(p).unwrap())
            .unwrap()
    };
    let packing = by_key("O-1", "packing-instructions");
    assert_eq!(packing["inserts"][0]["note"]["text"], "[erased]");
    let dlq = by_key("C-1", "orders.dlq");
    assert_eq!(dlq["order"]["customer"], json!({"id": "C-1"}));
    assert_eq!(dlq["order"]["shipping"], json!({"country": "NL"}));
    let unsubscribed = by_key("C-1", "customer-preferences");
    assert_eq!(unsubscribed["customer_id"], "C-1");
    assert!(unsubscribed.get("email").is_none(), "{unsubscribed}");
    assert!(
        by_key("O-2", "packing-instructions")
            .to_string()
            .contains("Dear Kees Blijft"),
        "{}",
        b.name
    );
    let dump = b.store.dump_text().await.unwrap();
    for needle in THEIRS {
        assert!(!dump.contains(needle), "{}: {needle} still stored", b.name);
    }
    assert!(dump.contains("kees.blijft@keep.example"));

    // PostgreSQL: the old row versions were vacuumed away, after the commit.
    let cleanup = report.cleanup.clone().unwrap_or_default();
    if let Raw::Pg(pool) = &b.raw {
        assert!(cleanup.contains("vacuumed"), "{cleanup}");
        let vacuums: i64 = sqlx::query_scalar(
            "SELECT COALESCE(SUM(vacuum_count), 0)::bigint FROM pg_stat_user_tables \
             WHERE schemaname = current_schema() AND relname IN ('outbox', 'profiles', 'decisions')",
        )
        .fetch_one(pool)
        .await
        .unwrap();
        assert_eq!(
            vacuums, 3,
            "outbox, profiles and decisions vacuumed once each"
        );
    } else {
        assert!(cleanup.contains("WAL emptied"), "{cleanup}");
    }

    // Again: nothing more to erase.
    let again = b.store.forget_customer("C-1").await.unwrap();
    assert_eq!(
        (
            again.profiles,
            again.decisions,
            again.outbox_rows,
            again.cleanup
        ),
        (0, 0, 0, None),
        "{}",
        b.name
    );
}
on_both!(
    forget_scrubs_every_outbox_message,
    forget_scrubs_every_message
);

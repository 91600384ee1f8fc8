//! Every message Packwell emits validates against its JSON Schema in `schemas/` (docs/REFERENCE.md
//! §5), and those schemas are the ones the message types generate (`packwell::message`).
//!
//! A realistic stream (first orders that get coupons, a customer's history and repeat order, a
//! cancellation that voids a coupon, malformed events, a key mismatch, conflicts, an oversized
//! value, an import with a bad line) goes through `Store::apply_batch` on a scratch SQLite store
//! with the example rules and templates; every outbox row is then checked against the schema of
//! its topic (the DLQ's headers against the DLQ headers schema). The e-mail sender then sends
//! one e-mail (issuing its coupons), its address bounces and another customer unsubscribes, for
//! `customer-preferences`.
//!
//! Regenerate the files with `PACKWELL_UPDATE_SCHEMAS=1 cargo test --test message_schemas`.

use jsonschema::Validator;
use packwell::coupon::CouponKey;
use packwell::engine::Shop;
use packwell::event::{RejectReason, Rejected, parse_event_within};
use packwell::message::message_schemas;
use packwell::store::{
    Batch, BatchItem, DLQ_MAX_VALUE, DecideEnv, Fence, NotPackedReason, OutboxRow, PackedLine,
    PackedOutcome, SqliteStore, Store, TOPIC_COUPONS, TOPIC_DLQ, TOPIC_PACKING,
};
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

const TOPIC_PREFERENCES: &str = packwell::kafka::TOPIC_CUSTOMER_PREFERENCES;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The schema file that a topic's messages follow (for the DLQ: its headers).
fn schema_for_topic(topic: &str) -> Option<&'static str> {
    message_schemas()
        .into_iter()
        .find(|s| s.topic == topic)
        .map(|s| s.file)
}

/// The message schema files in `dir` that differ from what the message types generate, or are
/// missing.
fn stale_schemas(dir: &Path) -> Vec<&'static str> {
    message_schemas()
        .into_iter()
        .filter(|s| std::fs::read_to_string(dir.join(s.file)).ok().as_deref() != Some(&s.json))
        .map(|s| s.file)
        .collect()
}

/// Compares (or, with `PACKWELL_UPDATE_SCHEMAS` set, writes) each message schema in `schemas/`.
#[test]
fn message_schemas_are_generated_from_the_types() {
    let dir = root().join("schemas");
    if std::env::var_os("PACKWELL_UPDATE_SCHEMAS").is_some() {
        for schema in message_schemas() {
            std::fs::write(dir.join(schema.file), &schema.json).unwrap();
        }
    }
    let stale: Vec<String> = stale_schemas(&dir)
        .iter()
        .map(|f| format!("schemas/{f}"))
        .collect();
    assert!(
        stale.is_empty(),
        "{} stale: the message types generate something else; run PACKWELL_UPDATE_SCHEMAS=1 cargo test --test message_schemas",
        stale.join(", ")
    );
}

#[test]
fn a_schema_file_edited_by_hand_or_missing_is_stale() {
    let dir = tempfile::tempdir().unwrap();
    for schema in message_schemas() {
        std::fs::write(dir.path().join(schema.file), &schema.json).unwrap();
    }
    assert_eq!(stale_schemas(dir.path()), Vec::<&str>::new());
    let coupons = dir.path().join("coupon-event.schema.json");
    let text = std::fs::read_to_string(&coupons).unwrap();
    std::fs::write(&coupons, text.replace("\"minimum\": 1", "\"minimum\": 0")).unwrap();
    std::fs::remove_file(dir.path().join("dlq-headers.schema.json")).unwrap();
    assert_eq!(
        stale_schemas(dir.path()),
        ["coupon-event.schema.json", "dlq-headers.schema.json"]
    );
}

fn read_schema(name: &str) -> Value {
    let path = root().join("schemas").join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A validator for `schemas/<name>`, which must itself be a valid draft 2020-12 schema. Formats
/// (`date-time`, `date`, `email`) are checked, not just annotated.
fn validator(name: &str) -> Validator {
    let schema = read_schema(name);
    assert_eq!(
        schema["$schema"], "https://json-schema.org/draft/2020-12/schema",
        "{name}"
    );
    if let Err(e) = jsonschema::meta::validate(&schema) {
        panic!("{name} is not a valid JSON Schema: {e}");
    }
    jsonschema::draft202012::options()
        .should_validate_formats(true)
        .build(&schema)
        .unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn errors(v: &Validator, instance: &Value) -> Vec<String> {
    let mut out = Vec::new();
    for e in v.iter_errors(instance) {
        describe(&e, "", &mut out);
    }
    out
}

/// An error, and for a failed `oneOf` / `anyOf` what each branch found wrong (else all one
/// learns is that no branch matched).
fn describe(e: &jsonschema::ValidationError<'_>, branch: &str, out: &mut Vec<String>) {
    use jsonschema::error::ValidationErrorKind as Kind;
    out.push(format!(
        "{branch}{} (at {:?}, schema {:?})",
        e,
        e.instance_path().as_str(),
        e.schema_path().as_str()
    ));
    if let Kind::OneOfNotValid { context } | Kind::AnyOf { context } = e.kind() {
        for (i, errs) in context.iter().enumerate() {
            for inner in errs {
                describe(inner, &format!("{branch}  branch {i}: "), out);
            }
        }
    }
}

fn assert_valid(v: &Validator, what: &str, instance: &Value) {
    let errs = errors(v, instance);
    assert!(
        errs.is_empty(),
        "{what} does not match its schema: {errs:#?}\n{instance:#}"
    );
}

fn assert_invalid(v: &Validator, what: &str, instance: &Value) {
    assert!(
        !v.is_valid(instance),
        "{what} should not match the schema:\n{instance:#}"
    );
}

/// Every reason an event is rejected for. A new variant stops the `match` from compiling: add
/// it here and to `RejectReason::ALL`, which the `packwell-reason` enum of
/// schemas/dlq-headers.schema.json is generated from.
fn every_reject_reason() -> Vec<RejectReason> {
    use RejectReason::*;
    let all = [
        InvalidJson,
        UnknownType,
        MissingField,
        InvalidValue,
        KeyMismatch,
        Conflict,
        OutOfRange,
        TooLarge,
        InternalError,
        Unmappable,
    ];
    for r in all {
        match r {
            InvalidJson | UnknownType | MissingField | InvalidValue | KeyMismatch | Conflict
            | OutOfRange | TooLarge | InternalError | Unmappable => {}
        }
    }
    all.to_vec()
}

fn example_env() -> DecideEnv {
    let out = packwell::rules::load_rules(&root().join("rules"), &root().join("templates"));
    let msgs: Vec<String> = out.findings.iter().map(|f| f.to_string()).collect();
    DecideEnv {
        rules: Arc::new(out.rules.unwrap_or_else(|| panic!("{msgs:?}"))),
        key: CouponKey::from_bytes(vec![42; 32]),
        shop: Shop::default(),
    }
}

fn example(path: &str) -> Value {
    let text = std::fs::read_to_string(root().join(path)).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn example_history(path: &str) -> Vec<Value> {
    std::fs::read_to_string(root().join(path))
        .unwrap()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// One message as a producer would send it: raw bytes under a key, parsed as the consumer does.
struct Msg {
    key: String,
    value: Vec<u8>,
}

fn keyed(v: &Value) -> Msg {
    let customer = v["order"]["customer"]["id"]
        .as_str()
        .or(v["customer_id"].as_str())
        .expect("a customer id")
        .to_string();
    Msg {
        key: customer,
        value: serde_json::to_vec(v).unwrap(),
    }
}

fn raw(key: &str, value: impl Into<Vec<u8>>) -> Msg {
    Msg {
        key: key.to_string(),
        value: value.into(),
    }
}

fn items(start: i64, msgs: Vec<Msg>, decide: bool) -> Vec<BatchItem> {
    msgs.into_iter()
        .enumerate()
        .map(|(i, m)| BatchItem {
            offset: start + i as i64,
            key: Some(m.key.as_bytes().to_vec()),
            // As the consumer reads them, with the default `[kafka] max_event_bytes`.
            event: parse_event_within(&m.value, 1024 * 1024),
            value: m.value,
            decide,
        })
        .collect()
}

/// Applies `msgs` as the next batch of partition 0 of `orders`.
async fn consume(store: &dyn Store, epoch: i64, next: &mut i64, msgs: Vec<Msg>, env: &DecideEnv) {
    let batch_items = items(*next, msgs, true);
    let end = *next + batch_items.len() as i64;
    store
        .apply_batch(
            &Batch {
                fence: Fence::Partition {
                    topic: "orders".into(),
                    partition: 0,
                    epoch,
                    start: *next,
                    end,
                },
                items: batch_items,
            },
            env,
        )
        .await
        .unwrap();
    *next = end;
}

/// Runs the stream through a scratch store and returns every outbox row.
async fn emitted() -> Vec<OutboxRow> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir
        .path()
        .join("packwell.db")
        .to_string_lossy()
        .into_owned();
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&path).await.unwrap());
    let env = example_env();
    let (epoch, mut next) = store.claim_partition("orders", 0).await.unwrap();

    // A regular customer's year of history, then first orders in both currencies (coupons,
    // notes, gifts, samples, holdouts), then the regular's VIP order.
    let mut first: Vec<Msg> = example_history("examples/history/berlin-regular.ndjson")
        .iter()
        .map(keyed)
        .collect();
    for order in [
        "examples/orders/first-book-order.json",
        "examples/orders/fragrance-new-york.json",
        "examples/orders/birthday-first-order-hamburg.json",
        "examples/orders/big-first-order-vienna.json",
        "examples/orders/berlin-regular-vip.json",
        "examples/orders/december-gift-munich.json",
    ] {
        first.push(keyed(&example(order)));
    }
    // Malformed events, each bound for the DLQ.
    first.push(raw(
        "C-1001",
        r#"{"event_id": "ev-broken", "type": "order.placed", "occurred_at": "2026-11-20T09:31:00Z", "order": {"#,
    ));
    first.push(keyed(
        &json!({"event_id": "ev-teleport", "type": "order.teleported",
        "occurred_at": "2026-11-20T10:00:00Z", "customer_id": "C-1001", "order_id": "O-1001"}),
    ));
    let mut no_items = example("examples/orders/first-book-order.json");
    no_items["event_id"] = json!("ev-no-items");
    no_items["order"]["id"] = json!("O-1002");
    no_items["order"].as_object_mut().unwrap().remove("items");
    first.push(keyed(&no_items));
    let mut zero = example("examples/orders/first-book-order.json");
    zero["event_id"] = json!("ev-zero");
    zero["order"]["id"] = json!("O-1003");
    zero["order"]["items"][0]["quantity"] = json!(0);
    first.push(keyed(&zero));
    let feedback = json!({"event_id": "ev-nps-11", "type": "customer.feedback",
        "occurred_at": "2026-11-21T08:00:00Z", "customer_id": "C-2006", "nps": 11});
    first.push(keyed(&feedback));
    // A value over the DLQ's size limit: cut, with `packwell-truncated`.
    let blob = json!({"event_id": "ev-blob", "type": "order.exported", "occurred_at": "2026-11-20T10:00:00Z",
        "customer_id": "C-1001", "attachment": "x".repeat(DLQ_MAX_VALUE + 100)});
    first.push(keyed(&blob));
    consume(&*store, epoch, &mut next, first, &env).await;

    // A cancellation before packing voids O-1001's coupon; a shipment keyed by someone else;
    // an order id reused by another customer; an event about another customer's order.
    let mut second = vec![keyed(
        &json!({"event_id": "ev-O-1001-cancelled", "type": "order.cancelled",
        "occurred_at": "2026-11-20T12:00:00Z", "order_id": "O-1001", "customer_id": "C-1001"}),
    )];
    let mut wrong_key = keyed(
        &json!({"event_id": "ev-O-2401-shipped", "type": "order.shipped",
        "occurred_at": "2026-11-28T09:00:00Z", "order_id": "O-2401", "customer_id": "C-2005", "carrier": "DHL"}),
    );
    wrong_key.key = "C-9999".into();
    second.push(wrong_key);
    let mut reused = example("examples/orders/first-book-order.json");
    reused["event_id"] = json!("ev-O-1001-again");
    reused["order"]["customer"]["id"] = json!("C-3000");
    second.push(keyed(&reused));
    second.push(keyed(
        &json!({"event_id": "ev-O-2201-cancelled-by-other", "type": "order.cancelled",
        "occurred_at": "2026-11-25T12:00:00Z", "order_id": "O-2201", "customer_id": "C-1001"}),
    ));
    second.push(keyed(
        &json!({"event_id": "ev-O-2101-delivered", "type": "order.delivered",
        "occurred_at": "2026-11-24T15:00:00Z", "order_id": "O-2101", "customer_id": "C-2006",
        "delivered_at": "2026-11-24T14:30:00Z"}),
    ));
    // Past the bounds: an amount no order has, and an event over 1 MiB.
    let mut huge = example("examples/orders/first-book-order.json");
    huge["event_id"] = json!("ev-huge-total");
    huge["order"]["id"] = json!("O-1004");
    huge["order"]["total"] = json!("79228162514264337593543950335");
    second.push(keyed(&huge));
    let oversized = json!({"event_id": "ev-oversized", "type": "customer.feedback", "occurred_at": "2026-11-20T10:00:00Z",
        "customer_id": "C-1001", "nps": 9, "comment": "x".repeat(1024 * 1024)});
    second.push(keyed(&oversized));
    consume(&*store, epoch, &mut next, second, &env).await;

    // An event the decision path failed on twice, set aside as the guard does it.
    let mut third = items(
        next,
        vec![keyed(&example("examples/orders/december-gift-munich.json"))],
        true,
    );
    third[0].event = Err(Rejected {
        reason: RejectReason::InternalError,
        message: "the decision path failed on this event twice: test".into(),
    });
    let end = next + 1;
    store
        .apply_batch(
            &Batch {
                fence: Fence::Partition {
                    topic: "orders".into(),
                    partition: 0,
                    epoch,
                    start: next,
                    end,
                },
                items: third,
            },
            &env,
        )
        .await
        .unwrap();

    // The New York station packed O-2101 without its coupon: voided.
    let decision = store.decision("O-2101").await.unwrap().unwrap().decision;
    let packed: Vec<PackedLine> = decision
        .inserts
        .iter()
        .map(|i| {
            let coupon = i.kind == "coupon";
            PackedLine {
                insert_id: i.insert_id.clone(),
                rule_id: i.rule_id.clone(),
                packed: !coupon,
                reason: coupon.then_some(NotPackedReason::Other),
            }
        })
        .collect();
    assert!(
        packed.iter().any(|p| !p.packed),
        "O-2101 should get a coupon"
    );
    let outcome = store
        .confirm_packed("O-2101", "nyc-1", &packed, &env.rules)
        .await
        .unwrap();
    assert!(matches!(outcome, PackedOutcome::Recorded(_)), "{outcome:?}");

    // An import of old history with a bad line: not read from Kafka.
    let import = vec![
        raw(
            "C-4000",
            "{\"event_id\": \"ev-old\", \"type\": \"order.placed\"",
        ),
        keyed(
            &json!({"event_id": "ev-old-feedback", "type": "customer.feedback",
            "occurred_at": "2025-03-01T10:00:00Z", "customer_id": "C-4000", "nps": 9}),
        ),
    ];
    store
        .apply_batch(
            &Batch {
                fence: Fence::Import {
                    source: "history/2025.ndjson".into(),
                    start: 0,
                    end: 2,
                },
                items: items(0, import, false),
            },
            &env,
        )
        .await
        .unwrap();

    // The e-mail sender hands one e-mail over (the first one due, at a daytime hour in Berlin,
    // outside the example rules' quiet hours); its address then bounces, and another customer
    // unsubscribes by link: both are told on customer-preferences.
    let job = store
        .email_jobs(None, None, 1000)
        .await
        .unwrap()
        .into_iter()
        .filter(|j| j.state == "pending")
        .min_by_key(|j| j.due_at)
        .expect("a pending e-mail");
    let due = chrono::DateTime::from_timestamp(job.due_at, 0).unwrap();
    let day = if chrono::Timelike::hour(&due) >= 12 {
        due.date_naive().succ_opt().unwrap()
    } else {
        due.date_naive()
    };
    let at = day.and_hms_opt(10, 0, 0).unwrap().and_utc().max(due);
    let outbox = tempfile::tempdir().unwrap();
    let worker = Arc::new(packwell::email::Worker::new(
        store.clone(),
        Arc::new(arc_swap::ArcSwap::from_pointee(env.clone())),
        Arc::new(packwell::email::provider::OutboxDir::new(
            outbox.path().to_path_buf(),
        )),
        packwell::email::WorkerSettings::from_config(&packwell::config::Config::default()),
        packwell::metrics::Metrics::new().email,
        Arc::new(packwell::email::ManualClock::new(at)),
    ));
    worker.drain().await.unwrap();
    let sent = store
        .email_jobs(None, None, 1000)
        .await
        .unwrap()
        .into_iter()
        .find(|j| j.state == "sent")
        .expect("an e-mail sent");
    let address = store
        .profile(&sent.customer_id)
        .await
        .unwrap()
        .unwrap()
        .email
        .unwrap();
    let at = chrono::Utc::now();
    assert_eq!(
        store
            .suppress(&address, "complaint", at)
            .await
            .unwrap()
            .customers,
        std::slice::from_ref(&sent.customer_id)
    );
    assert!(store.unsubscribe("C-1001", at).await.unwrap());
    // A shop webhook that could not be mapped: its dead letter names the platform's topic and
    // no partition or offset.
    let letter = packwell::message::DeadLetter::webhook(
        "shopify",
        "orders/create",
        Some(b"delivery-1".to_vec()),
        br#"{"id": 820982911946154508}"#,
        "customer: the order names no customer (a guest checkout)",
    );
    store
        .record_webhooks(&[packwell::store::HandledWebhook {
            platform: "shopify".into(),
            delivery_id: "delivery-1".into(),
            event_ids: Vec::new(),
            dead_letter: Some(letter.into_outbox()),
        }])
        .await
        .unwrap();

    store.unsent_outbox(10_000).await.unwrap()
}

#[tokio::test]
async fn every_emitted_message_matches_its_schema() {
    let rows = emitted().await;
    let validators: BTreeMap<&str, Validator> = message_schemas()
        .iter()
        .map(|s| (s.topic, validator(s.file)))
        .collect();

    let mut topics: BTreeSet<String> = BTreeSet::new();
    let mut kinds: BTreeSet<String> = BTreeSet::new();
    let mut empty_parcels = 0;
    for row in &rows {
        assert!(
            schema_for_topic(&row.topic).is_some(),
            "topic {:?} has no schema in schemas/ (docs/REFERENCE.md §5)",
            row.topic
        );
        topics.insert(row.topic.clone());
        let v = &validators[row.topic.as_str()];
        if row.topic == TOPIC_DLQ {
            let headers: Value = serde_json::from_str(row.headers.as_deref().unwrap_or("null"))
                .expect("DLQ headers are a JSON object");
            assert_valid(v, "DLQ headers", &headers);
            let reason = headers["packwell-reason"].as_str().unwrap();
            kinds.insert(format!("dlq {reason}"));
            if headers.get("packwell-truncated").is_some() {
                kinds.insert("dlq truncated".into());
                assert_eq!(row.payload.len(), DLQ_MAX_VALUE);
            }
            if headers["packwell-source-partition"] == "" {
                kinds.insert("dlq import".into());
            }
            continue;
        }
        let payload: Value = serde_json::from_slice(&row.payload)
            .unwrap_or_else(|e| panic!("{}: payload is not JSON: {e}", row.topic));
        assert_valid(v, &format!("a {} message", row.topic), &payload);
        assert_eq!(payload["schema_version"], 1, "{payload}");
        match row.topic.as_str() {
            TOPIC_PACKING => {
                assert_eq!(
                    row.key.as_deref(),
                    payload["order_id"].as_str().map(str::as_bytes)
                );
                let inserts = payload["inserts"].as_array().unwrap();
                if inserts.is_empty() {
                    empty_parcels += 1;
                }
                for i in inserts {
                    kinds.insert(format!("insert {}", i["kind"].as_str().unwrap()));
                }
            }
            TOPIC_COUPONS => {
                assert_eq!(
                    row.key.as_deref(),
                    payload["code"].as_str().map(str::as_bytes)
                );
                let kind = payload["type"].as_str().unwrap();
                match payload["reason"].as_str() {
                    Some(reason) => kinds.insert(format!("{kind} {reason}")),
                    None => kinds.insert(kind.to_string()),
                };
            }
            TOPIC_PREFERENCES => {
                assert_eq!(
                    row.key.as_deref(),
                    payload["customer_id"].as_str().map(str::as_bytes)
                );
                kinds.insert(payload["type"].as_str().unwrap().to_string());
            }
            _ => {}
        }
    }

    // The stream produced every kind of message it was built to produce, so none of the
    // schemas above was checked against nothing.
    let expected_topics: BTreeSet<String> =
        [TOPIC_PACKING, TOPIC_COUPONS, TOPIC_DLQ, TOPIC_PREFERENCES]
            .map(String::from)
            .into();
    assert_eq!(topics, expected_topics);
    for kind in [
        "coupon.issued",
        "coupon.voided order_cancelled",
        "coupon.voided not_packed",
        "insert coupon",
        "insert note",
        "insert gift",
        "insert sample",
        "dlq truncated",
        "dlq import",
        "customer.unsubscribed",
        "customer.suppressed",
    ] {
        assert!(kinds.contains(kind), "no {kind:?} among {kinds:?}");
    }
    for reason in every_reject_reason() {
        let kind = format!("dlq {}", reason.as_str());
        assert!(kinds.contains(&kind), "no {kind:?} among {kinds:?}");
    }
    assert!(empty_parcels > 0, "no decision without inserts");
}

#[test]
fn simulated_decisions_match_the_packing_instruction_schema() {
    // `simulate --format json --explain` prints the same decision, with `explain`.
    let v = validator("packing-instruction.schema.json");
    let dir = root().join("examples/orders");
    let mut orders: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    orders.sort();
    assert!(!orders.is_empty());
    for path in orders {
        let rel = path
            .strip_prefix(root())
            .unwrap()
            .to_string_lossy()
            .into_owned();
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_packwell"))
            .args(["simulate", "--order", &rel, "--format", "json", "--explain"])
            .current_dir(root())
            .env("PACKWELL_COUPONS_KEY_FILE", "/nonexistent/coupon.key")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{rel}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let decision: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert!(decision.get("explain").is_some(), "{rel}");
        assert_valid(&v, &rel, &decision);
    }
}

#[test]
fn the_dlq_reason_enum_lists_every_reject_reason() {
    let schema = read_schema("dlq-headers.schema.json");
    let listed: BTreeSet<&str> = schema["properties"]["packwell-reason"]["enum"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_str().unwrap())
        .collect();
    let reasons: BTreeSet<&str> = every_reject_reason().iter().map(|r| r.as_str()).collect();
    assert_eq!(listed, reasons);
}

#[test]
fn message_schemas_use_the_published_patterns() {
    let coupons = read_schema("coupon-event.schema.json");
    assert_eq!(
        coupons["$defs"]["Code"]["pattern"],
        packwell::coupon::CODE_PATTERN
    );
    assert_eq!(
        coupons["$defs"]["Amount"]["pattern"],
        packwell::money::AMOUNT_PATTERN
    );
    assert_eq!(
        coupons["$defs"]["CouponIssued"]["properties"]["currency"]["pattern"],
        packwell::money::CURRENCY_PATTERN
    );
}

#[test]
fn every_shipped_schema_is_checked_here_or_generated() {
    let mut names: Vec<String> = std::fs::read_dir(root().join("schemas"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    for name in names {
        // rules.schema.json describes rule files (tests/schema.rs), and report.schema.json the
        // effect report (tests/schema.rs, and tests/report.rs validates the command's output
        // against it): neither is a message.
        if name == "rules.schema.json" || name == "report.schema.json" {
            continue;
        }
        assert!(
            message_schemas().iter().any(|s| s.file == name),
            "schemas/{name} belongs to no topic"
        );
        validator(&name);
    }
}

/// A valid message of each kind, then the same with one thing wrong: the schemas reject what
/// consumers must not be sent, so the test above can fail.
#[tokio::test]
async fn wrong_messages_fail_validation() {
    let rows = emitted().await;
    let first = |topic: &str, kind: Option<&str>| -> Value {
        rows.iter()
            .filter(|r| r.topic == topic)
            .map(|r| serde_json::from_slice::<Value>(&r.payload).unwrap())
            .find(|p| kind.is_none_or(|k| p["type"] == k))
            .unwrap_or_else(|| panic!("no {topic} {kind:?} message"))
    };
    let with = |v: &Value, pointer: &str, value: Value| -> Value {
        let mut v = v.clone();
        *v.pointer_mut(pointer)
            .unwrap_or_else(|| panic!("{pointer}")) = value;
        v
    };
    let without = |v: &Value, field: &str| -> Value {
        let mut v = v.clone();
        v.as_object_mut().unwrap().remove(field);
        v
    };
    let adding = |v: &Value, field: &str, value: Value| -> Value {
        let mut v = v.clone();
        v.as_object_mut().unwrap().insert(field.into(), value);
        v
    };
    let number = |text: &str| -> Value { serde_json::from_str(text).unwrap() };

    let coupons = validator("coupon-event.schema.json");
    let issued = first(TOPIC_COUPONS, Some("coupon.issued"));
    assert_valid(&coupons, "coupon.issued", &issued);
    assert_invalid(
        &coupons,
        "amount as a number",
        &with(&issued, "/amount", number("10.00")),
    );
    assert_invalid(
        &coupons,
        "amount with a comma",
        &with(&issued, "/amount", json!("10,00")),
    );
    assert_invalid(
        &coupons,
        "a lower-case code",
        &with(&issued, "/code", json!("welcome-7kq2m9xw4pjr")),
    );
    assert_invalid(
        &coupons,
        "a code with an O",
        &with(&issued, "/code", json!("WELCOME-OOOOOOOOOOOO")),
    );
    assert_invalid(
        &coupons,
        "a time that is not RFC 3339",
        &with(&issued, "/occurred_at", json!("yesterday")),
    );
    assert_invalid(
        &coupons,
        "schema_version 2",
        &with(&issued, "/schema_version", json!(2)),
    );
    assert_invalid(
        &coupons,
        "no schema_version",
        &without(&issued, "schema_version"),
    );
    assert_invalid(
        &coupons,
        "an unknown type",
        &with(&issued, "/type", json!("coupon.redeemed")),
    );
    assert_invalid(
        &coupons,
        "an extra field",
        &adding(&issued, "discount_percent", json!(10)),
    );
    let voided = first(TOPIC_COUPONS, Some("coupon.voided"));
    assert_valid(&coupons, "coupon.voided", &voided);
    assert_invalid(&coupons, "no version", &without(&voided, "version"));
    assert_invalid(&coupons, "version 0", &with(&voided, "/version", json!(0)));
    assert_invalid(
        &coupons,
        "an unknown void reason",
        &with(&voided, "/reason", json!("expired")),
    );
    assert_invalid(
        &coupons,
        "voided as issued",
        &with(&voided, "/type", json!("coupon.issued")),
    );

    let packing = validator("packing-instruction.schema.json");
    let decision = rows
        .iter()
        .filter(|r| r.topic == TOPIC_PACKING)
        .map(|r| serde_json::from_slice::<Value>(&r.payload).unwrap())
        .find(|d| {
            d["inserts"]
                .as_array()
                .unwrap()
                .iter()
                .any(|i| i["kind"] == "coupon")
        })
        .expect("a decision with a coupon");
    let coupon_at = decision["inserts"]
        .as_array()
        .unwrap()
        .iter()
        .position(|i| i["kind"] == "coupon")
        .unwrap();
    let coupon = format!("/inserts/{coupon_at}/coupon");
    assert_valid(&packing, "a decision", &decision);
    assert_invalid(
        &packing,
        "coupon amount as a number",
        &with(&decision, &format!("{coupon}/amount"), number("10.00")),
    );
    assert_invalid(
        &packing,
        "an expiry that is no date",
        &with(
            &decision,
            &format!("{coupon}/expires_on"),
            json!("2027-02-30"),
        ),
    );
    assert_invalid(&packing, "a coupon insert without its coupon", &{
        let mut d = decision.clone();
        d["inserts"][coupon_at]
            .as_object_mut()
            .unwrap()
            .remove("coupon");
        d
    });
    assert_invalid(
        &packing,
        "an unknown insert kind",
        &with(
            &decision,
            &format!("/inserts/{coupon_at}/kind"),
            json!("voucher"),
        ),
    );
    assert_invalid(
        &packing,
        "quantity 0",
        &with(
            &decision,
            &format!("/inserts/{coupon_at}/quantity"),
            json!(0),
        ),
    );
    assert_invalid(
        &packing,
        "an unknown skip reason",
        &with(
            &decision,
            "/skipped",
            json!([{"rule_id": "x", "reason": "weather"}]),
        ),
    );
    assert_invalid(
        &packing,
        "no schema_version",
        &without(&decision, "schema_version"),
    );
    assert_invalid(
        &packing,
        "schema_version 2",
        &with(&decision, "/schema_version", json!(2)),
    );
    assert_invalid(
        &packing,
        "a decision time that is not RFC 3339",
        &with(&decision, "/decided_at", json!("2026-11-20 10:00")),
    );

    let dlq = validator("dlq-headers.schema.json");
    let headers: Value = rows
        .iter()
        .find(|r| r.topic == TOPIC_DLQ)
        .and_then(|r| r.headers.as_deref())
        .map(|h| serde_json::from_str(h).unwrap())
        .expect("a DLQ row");
    assert_valid(&dlq, "DLQ headers", &headers);
    assert_invalid(
        &dlq,
        "an unknown reason",
        &with(&headers, "/packwell-reason", json!("too_old")),
    );
    assert_invalid(
        &dlq,
        "the offset as a number",
        &with(&headers, "/packwell-source-offset", json!(3)),
    );
    assert_invalid(&dlq, "no error", &without(&headers, "packwell-error"));
    assert_invalid(
        &dlq,
        "an unknown header",
        &adding(&headers, "packwell-retry", json!("1")),
    );

    // customer-preferences: the emitted ones are checked above; these pin what is refused.
    let prefs = validator("customer-preference.schema.json");
    let unsubscribed = json!({"schema_version": 1, "type": "customer.unsubscribed", "customer_id": "C-1001",
        "email": "lena.hoffmann@example.com", "occurred_at": "2026-11-25T08:00:00Z"});
    let suppressed = json!({"schema_version": 1, "type": "customer.suppressed", "customer_id": "C-1001",
        "email": "lena.hoffmann@example.com", "reason": "hard_bounce", "occurred_at": "2026-11-25T08:00:00Z"});
    assert_valid(&prefs, "customer.unsubscribed", &unsubscribed);
    assert_valid(
        &prefs,
        "customer.unsubscribed without an address",
        &without(&unsubscribed, "email"),
    );
    assert_valid(&prefs, "customer.suppressed", &suppressed);
    assert_valid(
        &prefs,
        "a complaint",
        &with(&suppressed, "/reason", json!("complaint")),
    );
    assert_invalid(
        &prefs,
        "a soft bounce",
        &with(&suppressed, "/reason", json!("soft_bounce")),
    );
    assert_invalid(
        &prefs,
        "suppressed without a reason",
        &without(&suppressed, "reason"),
    );
    assert_invalid(
        &prefs,
        "unsubscribed with a reason",
        &adding(&unsubscribed, "reason", json!("complaint")),
    );
    assert_invalid(
        &prefs,
        "no customer id",
        &without(&unsubscribed, "customer_id"),
    );
    assert_invalid(
        &prefs,
        "an address that is none",
        &with(&unsubscribed, "/email", json!("not an address")),
    );
    assert_invalid(&prefs, "no time", &without(&suppressed, "occurred_at"));
}

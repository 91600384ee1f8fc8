//! Each message is byte for byte the JSON that the `json!` literals it replaced wrote (those
//! literals are copied here as they were), and goes to its topic under its key.

use super::*;
use serde_json::json;

fn coupon(min_order: Option<&str>) -> CouponGiven {
    CouponGiven {
        code: "WELCOME-7KQ2M9XW4PJR".into(),
        amount: "10.00".into(),
        currency: "EUR".into(),
        min_order: min_order.map(str::to_string),
        expires_on: "2027-02-18".into(),
    }
}

fn payload(row: &OutboxMessage) -> &str {
    std::str::from_utf8(&row.payload).unwrap()
}

#[test]
fn coupon_issued_in_a_parcel_is_what_the_batch_wrote() {
    let mut decision: Decision = serde_json::from_value(json!({
        "schema_version": 1, "order_id": "O-1001", "customer_id": "C-1001", "warehouse": "berlin",
        "rules_version": format!("sha256:{}", "0".repeat(64)), "decided_at": "2026-11-20T09:31:00Z",
        "segments": [], "inserts": [], "followups": [], "skipped": []
    }))
    .unwrap();
    for min_order in [None, Some("50.00")] {
        let c = coupon(min_order);
        let g: GivenInsert = serde_json::from_value(json!({
            "insert_id": "welcome-coupon", "kind": "coupon", "rule_id": "first-order",
            "quantity": 1, "coupon": c
        }))
        .unwrap();
        decision.inserts = vec![g.clone()];
        let d = &decision;
        let before = json!({"schema_version": 1, "type": "coupon.issued", "code": c.code, "version": 1,
            "order_id": d.order_id, "customer_id": d.customer_id, "rule_id": g.rule_id, "insert_id": g.insert_id,
            "amount": c.amount, "currency": c.currency, "min_order": c.min_order, "expires_on": c.expires_on,
            "occurred_at": d.decided_at});
        let row = CouponIssued::in_parcel(d, &g, &c).into_outbox();
        assert_eq!(payload(&row), before.to_string());
        assert_eq!(row.topic, "coupons");
        assert_eq!(row.key.as_deref(), Some(c.code.as_bytes()));
        assert_eq!(row.headers, None);
    }
}

#[test]
fn coupon_issued_in_an_email_is_what_the_hand_over_wrote() {
    let job = IssuedFor {
        order_id: "O-1001",
        customer_id: "C-1001",
        rule_id: "thank-you",
        insert_id: "next-order",
    };
    let c = CouponGiven {
        code: "THANKS-7KQ2M9XW4PJR".into(),
        amount: "5.00".into(),
        currency: "EUR".into(),
        min_order: None,
        expires_on: "2027-01-31".into(),
    };
    let at = "2026-11-27T10:00:00Z";
    let before = json!({"schema_version": 1, "type": "coupon.issued", "code": c.code, "version": 1,
        "order_id": job.order_id, "customer_id": job.customer_id, "rule_id": job.rule_id, "insert_id": job.insert_id,
        "amount": c.amount, "currency": c.currency, "min_order": c.min_order, "expires_on": c.expires_on,
        "occurred_at": at});
    let row = CouponIssued::new(job, &c, at).into_outbox();
    assert_eq!(payload(&row), before.to_string());
    assert_eq!(row.key.as_deref(), Some(c.code.as_bytes()));
}

#[test]
fn coupon_voided_is_what_each_void_wrote() {
    let (code, version, order_id, customer) = ("WELCOME-7KQ2M9XW4PJR", 2_i64, "O-1001", "C-1001");
    let at = "2026-11-20T12:00:00.5Z";
    for (reason, text) in [
        (CouponVoidReason::OrderCancelled, "order_cancelled"),
        (CouponVoidReason::NotPacked, "not_packed"),
        (CouponVoidReason::Operator, "operator"),
        (CouponVoidReason::EmailNotSent, "email_not_sent"),
    ] {
        let before = json!({"schema_version": 1, "type": "coupon.voided", "code": code, "version": version,
            "order_id": order_id, "customer_id": customer, "reason": text, "occurred_at": at});
        let row = CouponVoided::new(code, version, order_id, customer, reason, at).into_outbox();
        assert_eq!(payload(&row), before.to_string());
        assert_eq!(row.topic, "coupons");
        assert_eq!(row.key.as_deref(), Some(code.as_bytes()));
    }
}

#[test]
fn customer_unsubscribed_is_what_the_link_wrote() {
    let (customer_id, at) = ("C-1001", "2026-11-25T08:00:00Z");
    for email in [Some("lena.hoffmann@example.com"), Some("  "), None] {
        let mut before = json!({"schema_version": 1, "type": "customer.unsubscribed", "customer_id": customer_id,
            "occurred_at": at});
        if let Some(e) = email.filter(|e| !e.trim().is_empty()) {
            before["email"] = json!(e);
        }
        let row = CustomerUnsubscribed::new(customer_id, email, at).into_outbox();
        assert_eq!(payload(&row), before.to_string());
        assert_eq!(row.topic, "customer-preferences");
        assert_eq!(row.key.as_deref(), Some(customer_id.as_bytes()));
    }
}

#[test]
fn customer_suppressed_is_what_the_bounce_wrote() {
    let (c, email, at) = (
        "C-1001",
        " lena.hoffmann@example.com ",
        "2026-11-25T08:00:00Z",
    );
    for reason in ["hard_bounce", "complaint"] {
        let before = json!({"schema_version": 1, "type": "customer.suppressed", "customer_id": c, "email": email.trim(),
            "reason": reason, "occurred_at": at});
        let typed: SuppressionReason = reason.parse().unwrap();
        assert_eq!(typed.as_str(), reason);
        let row = CustomerSuppressed::new(c, email, typed, at).into_outbox();
        assert_eq!(payload(&row), before.to_string());
        assert_eq!(row.key.as_deref(), Some(c.as_bytes()));
    }
    assert!("soft_bounce".parse::<SuppressionReason>().is_err());
}

#[test]
fn a_topic_with_two_kinds_serializes_each_as_itself() {
    let voided = CouponVoided::new(
        "WELCOME-7KQ2M9XW4PJR",
        2,
        "O-1",
        "C-1",
        CouponVoidReason::Operator,
        "2026-11-20T12:00:00Z",
    );
    assert_eq!(
        serde_json::to_string(&CouponEvent::Voided(voided.clone())).unwrap(),
        serde_json::to_string(&voided).unwrap()
    );
}

#[test]
fn the_decision_goes_to_packing_instructions_under_its_order() {
    let decision: Decision = serde_json::from_value(json!({
        "schema_version": 1, "order_id": "O-1001", "customer_id": "C-1001", "warehouse": "berlin",
        "rules_version": format!("sha256:{}", "0".repeat(64)), "decided_at": "2026-11-20T09:31:00Z",
        "segments": [], "inserts": [], "followups": [], "skipped": []
    }))
    .unwrap();
    let row = OutboxMessage::try_from(&decision).unwrap();
    assert_eq!(row.topic, "packing-instructions");
    assert_eq!(row.key.as_deref(), Some(&b"O-1001"[..]));
    assert_eq!(row.payload, serde_json::to_vec(&decision).unwrap());
}

//! Settling what an event changes for orders already decided: codes redeemed by a new order,
//! and a cancellation's coupons voided, inserts returned to stock once and e-mails cancelled.

use super::*;
use crate::message;

/// Codes used on a new order are redeemed, if they are issued and still valid to redeem.
pub(super) fn redeem(state: &mut State, effects: &mut Effects, order_id: &str, codes: &[String]) {
    for code in codes {
        if let Some(c) = state.coupons.get_mut(code)
            && c.status == CouponStatus::Issued
        {
            c.status = CouponStatus::Redeemed;
            effects.coupon_changes.push(CouponChange {
                code: code.clone(),
                from: CouponStatus::Issued,
                to: CouponStatus::Redeemed,
                version: c.version,
                redeemed_order_id: Some(order_id.to_string()),
            });
        }
    }
}

/// An order cancelled before packing: its coupons are voided (`coupon.voided`), its inserts go
/// back to stock once (docs/ARCHITECTURE.md, the insert state machine: only those still `given`),
/// its e-mails are cancelled. A parcel a station confirmed keeps what it holds.
pub(super) fn cancel(state: &mut State, effects: &mut Effects, order_id: &str, at: &str) {
    let given = state.given.get_mut(order_id);
    let packed = state.packed.contains(order_id)
        || given
            .as_ref()
            .is_some_and(|g| g.iter().any(|g| g.status == GivenStatus::Packed));
    if !packed {
        // In code order: the same whether the codes were issued in this batch or read from the
        // store, so the `coupon.voided` messages do not depend on where a batch was cut.
        let mut codes: Vec<&String> = state
            .order_coupons
            .get(order_id)
            .into_iter()
            .flatten()
            .collect();
        codes.sort_unstable();
        for code in codes {
            let Some(c) = state.coupons.get_mut(code) else {
                continue;
            };
            if c.status != CouponStatus::Issued {
                continue;
            }
            c.status = CouponStatus::Voided;
            c.version = c.version.saturating_add(1);
            effects.coupon_changes.push(CouponChange {
                code: code.clone(),
                from: CouponStatus::Issued,
                to: CouponStatus::Voided,
                version: c.version,
                redeemed_order_id: None,
            });
            effects
                .messages
                .push(Message::CouponVoided(message::CouponVoided::new(
                    code,
                    c.version,
                    order_id,
                    &c.customer_id,
                    message::CouponVoidReason::OrderCancelled,
                    at,
                )));
        }
        for g in given.into_iter().flatten() {
            if g.status != GivenStatus::Given {
                continue;
            }
            let to = if g.kind == "coupon" {
                GivenStatus::Voided
            } else if let Some(slot) = &g.stock_slot {
                effects
                    .stock_returns
                    .push((g.insert_id.clone(), slot.clone()));
                state.counters.give_back(&g.insert_id, slot);
                GivenStatus::Returned
            } else {
                continue;
            };
            effects.given_changes.push(GivenChange {
                order_id: order_id.to_string(),
                seq: g.seq,
                from: GivenStatus::Given,
                to,
            });
            g.status = to;
        }
    }
    cancel_emails(effects, order_id);
}

/// A cancelled or returned order's e-mails are not sent: those scheduled before are cancelled
/// where they are kept, those scheduled in the same batch are written cancelled.
pub(super) fn cancel_emails(effects: &mut Effects, order_id: &str) {
    for e in effects.emails.iter_mut().filter(|e| e.order_id == order_id) {
        if e.state == EmailStart::Pending {
            e.state = EmailStart::Cancelled;
        }
    }
    effects.email_cancellations.push(order_id.to_string());
}

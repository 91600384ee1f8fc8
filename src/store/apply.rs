//! The parts of applying a batch that do not touch the database: the counter view the engine
//! decides on, the DLQ message's parts and money as integer units.

use crate::engine::{Counters, IssuedCodes};
use crate::event::RejectReason;
use crate::money::Currency;
use crate::rules::StockSlot;
use rust_decimal::Decimal;
use std::collections::{HashMap, HashSet};

use super::types::Fence;
use crate::message::DeadLetter;

/// Counters as read in the batch's transaction, plus codes found taken while writing.
#[derive(Debug, Default)]
pub struct CounterView {
    pub stock: HashMap<(String, String), u32>,
    pub budget: HashMap<(String, String, String), Decimal>,
    pub taken_codes: HashSet<String>,
}

impl CounterView {
    /// Counts claims that were taken in the database.
    pub fn take(&mut self, claims: &[crate::engine::Claim]) {
        for claim in claims {
            match claim {
                crate::engine::Claim::Stock {
                    insert_id,
                    slot,
                    quantity,
                    ..
                } => {
                    *self
                        .stock
                        .entry((insert_id.clone(), slot.as_str().to_string()))
                        .or_default() += quantity;
                }
                crate::engine::Claim::Budget {
                    rule_id,
                    period,
                    currency,
                    amount,
                    ..
                } => {
                    *self
                        .budget
                        .entry((rule_id.clone(), period.clone(), currency.to_string()))
                        .or_default() += amount;
                }
            }
        }
    }
}

impl Counters for CounterView {
    fn stock_used(&self, insert_id: &str, slot: &StockSlot) -> u32 {
        self.stock
            .get(&(insert_id.to_string(), slot.as_str().to_string()))
            .copied()
            .unwrap_or(0)
    }
    fn budget_spent(&self, rule_id: &str, period: &str, currency: Currency) -> Decimal {
        self.budget
            .get(&(
                rule_id.to_string(),
                period.to_string(),
                currency.to_string(),
            ))
            .copied()
            .unwrap_or(Decimal::ZERO)
    }
}

impl IssuedCodes for CounterView {
    fn is_issued(&self, code: &str) -> bool {
        self.taken_codes.contains(code)
    }
}

/// Money counters are integers of 1/10000 so that a conditional `UPDATE` compares exactly in
/// both databases. Amounts finer than that round up: a budget is never overspent.
pub const UNITS_PER_ONE: i64 = 10_000;

pub fn to_units(d: Decimal) -> i64 {
    match d.checked_mul(Decimal::from(UNITS_PER_ONE)) {
        Some(scaled) => {
            let scaled = scaled.ceil();
            i64::try_from(scaled.mantissa() / 10i128.pow(scaled.scale())).unwrap_or(i64::MAX)
        }
        None => i64::MAX,
    }
}

pub fn from_units(u: i64) -> Decimal {
    Decimal::from(u) / Decimal::from(UNITS_PER_ONE)
}

/// The DLQ value (cut to the size limit) and headers of CONTRACT §5 ([`DeadLetter`]).
pub fn dlq_message(
    fence: &Fence,
    offset: i64,
    value: &[u8],
    reason: RejectReason,
    error: &str,
) -> (Vec<u8>, String) {
    let letter = DeadLetter::new(fence, offset, None, value, reason, error);
    (letter.value, letter.headers.to_json())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_are_exact_and_round_up() {
        assert_eq!(to_units("10.00".parse().unwrap()), 100_000);
        assert_eq!(to_units("0.40".parse().unwrap()), 4_000);
        assert_eq!(to_units("0.00001".parse().unwrap()), 1);
        assert_eq!(from_units(4_000).normalize().to_string(), "0.4");
    }
}

//! The counters a decision reads (stock used, budget spent, coupon codes issued), as traits
//! so that the store, backtests and `simulate` each give their own view.

use crate::money::Currency;
use crate::rules::StockSlot;
use rust_decimal::Decimal;

/// Counters as the engine sees them when it decides.
pub trait Counters {
    /// Net units of an insert taken from a stock slot (given less returned).
    fn stock_used(&self, insert_id: &str, slot: &StockSlot) -> u32;
    /// What a rule has spent in a period and currency.
    fn budget_spent(&self, rule_id: &str, period: &str, currency: Currency) -> Decimal;
}

/// Codes already issued (for collisions, which move the attempt counter on).
pub trait IssuedCodes {
    fn is_issued(&self, code: &str) -> bool;
}

/// No counters used and no codes issued: a fresh shop.
pub struct Fresh;

impl Counters for Fresh {
    fn stock_used(&self, _: &str, _: &StockSlot) -> u32 {
        0
    }
    fn budget_spent(&self, _: &str, _: &str, _: Currency) -> Decimal {
        Decimal::ZERO
    }
}

impl IssuedCodes for Fresh {
    fn is_issued(&self, _: &str) -> bool {
        false
    }
}

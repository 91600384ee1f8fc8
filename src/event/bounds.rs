//! The domain's sane bounds, checked at the edge so that every sum the history keeps is exact.
//!
//! With amounts of at most [`MAX_AMOUNT`] to four decimal places and
//! quantities of at most [`MAX_QUANTITY`], a line's value is below 10^18
//! and a lifetime of `u32::MAX` such orders below 10^26: far inside `Decimal`'s 96-bit mantissa
//! at scale 4, so no sum or product of accepted input rounds or overflows. The fold still checks
//! every operation (a stored history may predate these bounds).

use rust_decimal::Decimal;

/// The largest order total or unit price: 10^12 in the currency's main unit, room for
/// currencies with large numbers (a trillion Vietnamese dong is about 40 million euros).
pub const MAX_AMOUNT: Decimal = Decimal::from_parts(3_567_587_328, 232, 0, false, 0);
/// At most four decimal places: the finest minor unit of ISO 4217 (CLF, UYW).
pub const MAX_AMOUNT_SCALE: u32 = 4;
/// The most units of one line of an order.
pub const MAX_QUANTITY: u32 = 1_000_000;
/// The most lines in one order, and items in one return.
pub const MAX_ITEMS: usize = 1_000;
/// The most coupon codes redeemed on one order.
pub const MAX_COUPON_CODES: usize = 100;
/// The longest text field (ids, names, SKUs, comments), in bytes.
pub const MAX_TEXT_BYTES: usize = 4_096;

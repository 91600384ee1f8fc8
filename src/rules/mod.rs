//! Rules: the marketer's folder of `*.toml` files turned into one validated, compiled
//! [`RuleSet`]. Loading reports every problem at once as `file:line:col: message`.

pub mod expr;
pub mod limits;
mod load;
pub mod model;
pub mod units;

pub use load::{Finding, LoadOutcome, load_rules};
pub use model::InsertKind;

use crate::money::Currency;
use crate::render::Templates;
use chrono::{Datelike, Duration, NaiveDate, NaiveTime};
use chrono_tz::Tz;
use rust_decimal::Decimal;
use std::collections::{BTreeMap, HashMap};
use zen_expression::Expression;
use zen_expression::expression::Standard;

/// A compiled condition and the text it came from.
#[derive(Debug, Clone)]
pub struct Condition {
    pub source: String,
    pub expr: Expression<Standard>,
}

#[derive(Debug, Clone)]
pub struct Package {
    pub max_inserts: u32,
    pub currency: Currency,
}

#[derive(Debug, Clone)]
pub struct Segment {
    pub id: String,
    pub when: Condition,
}

#[derive(Debug, Clone)]
pub struct Insert {
    pub id: String,
    pub kind: InsertKind,
    pub title: Option<String>,
    pub body: InsertBody,
}

#[derive(Debug, Clone)]
pub enum InsertBody {
    Coupon(CouponSpec),
    Note {
        template: String,
    },
    Item {
        sku: Option<String>,
        unit_cost: Decimal,
        stock: Option<Stock>,
    },
}

#[derive(Debug, Clone)]
pub struct CouponSpec {
    pub amount: BTreeMap<Currency, Decimal>,
    pub min_order: BTreeMap<Currency, Decimal>,
    pub valid_days: u32,
    pub code_prefix: String,
}

/// Stock as configured: an allocation, one pool or per warehouse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stock {
    Pool(u32),
    PerWarehouse(BTreeMap<String, u32>),
}

impl Stock {
    /// The counter key an order from `warehouse` draws on, and its allocation;
    /// `None` when that warehouse has no allocation at all.
    pub fn slot(&self, warehouse: &str) -> Option<(StockSlot, u32)> {
        match self {
            Stock::Pool(n) => Some((StockSlot::Pool, *n)),
            Stock::PerWarehouse(map) => map
                .get(warehouse)
                .map(|n| (StockSlot::Warehouse(warehouse.to_string()), *n)),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum StockSlot {
    Pool,
    Warehouse(String),
}

impl StockSlot {
    pub fn as_str(&self) -> &str {
        match self {
            StockSlot::Pool => "*",
            StockSlot::Warehouse(w) => w,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Live,
    Shadow,
    Off,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Period {
    Day,
    Week,
    Month,
}

impl Period {
    /// The key of the calendar period a date falls in: `2026-11-20`, `2026-W47`, `2026-11`.
    pub fn key(&self, date: NaiveDate) -> String {
        match self {
            Period::Day => date.format("%Y-%m-%d").to_string(),
            Period::Week => {
                let w = date.iso_week();
                format!("{}-W{:02}", w.year(), w.week())
            }
            Period::Month => date.format("%Y-%m").to_string(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Budget {
    pub per: Period,
    pub limits: BTreeMap<Currency, Decimal>,
}

/// One variant of a rule's or follow-up's experiment (docs/REFERENCE.md §2 Variants).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Variant {
    /// Unique within its rule: letters, digits, `-` and `_`.
    pub id: String,
    /// Indices into [`RuleSet::inserts`], in `give` order.
    pub give: Vec<usize>,
    /// Positive; the variant's share is its weight over the sum of the weights.
    pub weight: u32,
    /// Follow-ups: the variant's own e-mail template, when it has one.
    pub template: Option<String>,
}

/// The weights of an experiment's variants, in order, for [`crate::engine::draw_variant`].
pub fn variant_weights(variants: &[Variant]) -> Vec<u32> {
    variants.iter().map(|v| v.weight).collect()
}

#[derive(Debug, Clone)]
pub struct Rule {
    pub id: String,
    pub when: Condition,
    /// Indices into [`RuleSet::inserts`], in `give` order; empty when the rule has variants.
    pub give: Vec<usize>,
    /// The experiment's variants; empty when the rule gives `give` to everyone treated.
    pub variants: Vec<Variant>,
    pub priority: i64,
    pub group: Option<String>,
    pub cooldown: Option<Duration>,
    /// Share of customers held out, in basis points (0..=10000).
    pub holdout_bp: u16,
    pub active_from: Option<NaiveDate>,
    pub active_until: Option<NaiveDate>,
    pub budget: Option<Budget>,
    pub mode: Mode,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    OrderPlaced,
    OrderShipped,
    OrderDelivered,
}

impl Trigger {
    pub fn as_str(&self) -> &'static str {
        match self {
            Trigger::OrderPlaced => "order.placed",
            Trigger::OrderShipped => "order.shipped",
            Trigger::OrderDelivered => "order.delivered",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Followup {
    pub id: String,
    pub on: Trigger,
    pub when: Option<Condition>,
    pub template: String,
    pub after: Duration,
    pub give: Vec<usize>,
    /// The experiment's variants; empty when every e-mail is the same.
    pub variants: Vec<Variant>,
    pub holdout_bp: u16,
    pub mode: Mode,
}

impl Followup {
    /// This follow-up as one of its variants sends it.
    fn as_variant(&self, variant: &Variant) -> Followup {
        Followup {
            template: variant
                .template
                .clone()
                .unwrap_or_else(|| self.template.clone()),
            give: variant.give.clone(),
            ..self.clone()
        }
    }
}

#[derive(Debug, Clone)]
pub struct EmailPolicy {
    pub max_per_customer: Option<(u32, Duration)>,
    pub quiet_hours: Option<(NaiveTime, NaiveTime)>,
    pub default_time_zone: Tz,
    pub expire_after: Duration,
}

impl Default for EmailPolicy {
    fn default() -> Self {
        EmailPolicy {
            max_per_customer: None,
            quiet_hours: None,
            default_time_zone: Tz::UTC,
            expire_after: Duration::days(3),
        }
    }
}

/// Which costly parts of the expression context any condition reads, so that the engine
/// builds only those for each order (found from the conditions at load time).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ContextNeeds {
    pub order_items: bool,
    pub order_categories: bool,
    pub order_coupon_codes: bool,
    pub order_shipping: bool,
    pub order_placed_at: bool,
    pub customer_first_order_at: bool,
    pub customer_categories_bought: bool,
    pub customer_median_days: bool,
    pub decision_date: bool,
}

impl ContextNeeds {
    pub fn all() -> Self {
        ContextNeeds {
            order_items: true,
            order_categories: true,
            order_coupon_codes: true,
            order_shipping: true,
            order_placed_at: true,
            customer_first_order_at: true,
            customer_categories_bought: true,
            customer_median_days: true,
            decision_date: true,
        }
    }

    /// Marks what a read path (`order.items`, `customer`) needs.
    pub fn add(&mut self, path: &str) {
        let mut parts = path.split('.');
        let root = parts.next().unwrap_or("");
        let Some(field) = parts.next() else {
            // The whole root object is read (e.g. passed to a function): build all of it.
            match root {
                "order" => {
                    self.order_items = true;
                    self.order_categories = true;
                    self.order_coupon_codes = true;
                    self.order_shipping = true;
                    self.order_placed_at = true;
                }
                "customer" => {
                    self.customer_first_order_at = true;
                    self.customer_categories_bought = true;
                    self.customer_median_days = true;
                }
                "decision" => self.decision_date = true,
                _ => {}
            }
            return;
        };
        match (root, field) {
            ("order", "items") => self.order_items = true,
            ("order", "categories") => self.order_categories = true,
            ("order", "coupon_codes") => self.order_coupon_codes = true,
            ("order", "shipping") => self.order_shipping = true,
            ("order", "placed_at") => self.order_placed_at = true,
            ("customer", "first_order_at") => self.customer_first_order_at = true,
            ("customer", "categories_bought") => self.customer_categories_bought = true,
            ("customer", "median_days_between_orders") => self.customer_median_days = true,
            ("decision", "date") => self.decision_date = true,
            _ => {}
        }
    }
}

/// Everything the engine needs from the rules folder, validated and compiled once.
#[derive(Clone)]
pub struct RuleSet {
    /// `sha256:` of the rule files and templates, recorded in every decision.
    pub version: String,
    pub package: Package,
    pub segments: Vec<Segment>,
    pub inserts: Vec<Insert>,
    /// Sorted by priority (higher first), ties in file order.
    pub rules: Vec<Rule>,
    pub followups: Vec<Followup>,
    /// Each variant of a follow-up as the e-mail that is sent: the follow-up with the
    /// variant's template and coupons, by (follow-up id, variant id).
    followup_variants: HashMap<(String, String), Followup>,
    pub email: EmailPolicy,
    pub templates: Templates,
    /// What the conditions read, so the context is built to measure.
    pub needs: ContextNeeds,
    insert_index: HashMap<String, usize>,
}

impl RuleSet {
    pub fn insert(&self, id: &str) -> Option<&Insert> {
        self.insert_index.get(id).map(|i| &self.inserts[*i])
    }

    pub fn rule(&self, id: &str) -> Option<&Rule> {
        self.rules.iter().find(|r| r.id == id)
    }

    pub fn followup(&self, id: &str) -> Option<&Followup> {
        self.followups.iter().find(|f| f.id == id)
    }

    /// A follow-up as one of its variants is sent: its template and coupons.
    pub fn followup_variant(&self, id: &str, variant: &str) -> Option<&Followup> {
        self.followup_variants
            .get(&(id.to_string(), variant.to_string()))
    }
}

impl std::fmt::Debug for RuleSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RuleSet")
            .field("version", &self.version)
            .field("segments", &self.segments.len())
            .field("inserts", &self.inserts.len())
            .field("rules", &self.rules.len())
            .field("followups", &self.followups.len())
            .finish()
    }
}

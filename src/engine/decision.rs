//! What a decision is: the packing instruction as stored and emitted (its types are also its
//! JSON Schema), why rules gave nothing, and what a decision takes from the counters and
//! tells the effect report.

use crate::money::Currency;
use crate::rules::StockSlot;
use rust_decimal::Decimal;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The `schema_version` of the decision as stored and emitted (docs/REFERENCE.md §3, §5).
pub const SCHEMA_VERSION: u32 = 1;

/// Why a rule (or one of its inserts) gave nothing.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum SkipReason {
    Condition,
    Error,
    Inactive,
    Group,
    Cooldown,
    Currency,
    Stock,
    Budget,
    MaxInserts,
    Holdout,
    Shadow,
}

impl SkipReason {
    pub fn as_str(&self) -> &'static str {
        match self {
            SkipReason::Condition => "condition",
            SkipReason::Error => "error",
            SkipReason::Inactive => "inactive",
            SkipReason::Group => "group",
            SkipReason::Cooldown => "cooldown",
            SkipReason::Currency => "currency",
            SkipReason::Stock => "stock",
            SkipReason::Budget => "budget",
            SkipReason::MaxInserts => "max_inserts",
            SkipReason::Holdout => "holdout",
            SkipReason::Shadow => "shadow",
        }
    }
}

// The types below are also the JSON Schema of the decision (`schemas/packing-instruction.
// schema.json`, generated in `crate::message::schema`): the `schemars` attributes only shape that
// schema, never what is serialized.

/// A decision as `simulate --format json` prints it, as stored, and as emitted on Kafka
/// `packing-instructions` (key: the order id; consumers may upsert by `order_id`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields, title = "Packwell packing instruction")]
pub struct Decision {
    /// The version of this message's shape.
    #[schemars(extend("const" = SCHEMA_VERSION))]
    pub schema_version: u32,
    #[schemars(length(min = 1))]
    pub order_id: String,
    #[schemars(length(min = 1))]
    pub customer_id: String,
    /// The warehouse that packs the parcel.
    #[schemars(length(min = 1))]
    pub warehouse: String,
    /// A hash of every rule file and template the decision was made with.
    #[schemars(pattern(RULES_VERSION_PATTERN))]
    pub rules_version: String,
    /// The decision time: the `order.placed` event's `occurred_at` (or `simulate --at`), UTC.
    #[schemars(extend("format" = "date-time"))]
    pub decided_at: String,
    /// Ids of the segments the customer is in for this order, in file order.
    pub segments: Vec<String>,
    /// What goes in the parcel; empty when nothing does (the order is decided all the same).
    pub inserts: Vec<GivenInsert>,
    /// The e-mails this order's `order.placed` schedules.
    pub followups: Vec<ScheduledFollowup>,
    /// Rules, inserts and follow-ups that gave nothing, and why.
    pub skipped: Vec<Skip>,
    /// Only with `simulate --explain`; never stored or emitted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub explain: Option<Explain>,
}

/// An insert that goes in the parcel.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema, utoipa::ToSchema)]
#[schemars(
    deny_unknown_fields,
    extend("allOf" = [
        {"if": {"properties": {"kind": {"const": "coupon"}}}, "then": {"required": ["coupon"]}},
        {"if": {"properties": {"kind": {"const": "note"}}}, "then": {"required": ["note"]}}
    ])
)]
pub struct GivenInsert {
    pub insert_id: String,
    #[schemars(with = "crate::rules::model::InsertKind")]
    #[schema(value_type = crate::rules::model::InsertKind)]
    pub kind: String,
    /// The rule that gave it.
    pub rule_id: String,
    /// The rule's variant the customer is in, when the rule is an experiment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    #[schemars(range(min = 1))]
    #[schema(minimum = 1)]
    pub quantity: u32,
    /// Gifts, samples and packaging: the stock-keeping unit to pick, if the rules name one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sku: Option<String>,
    /// Coupons (always present for kind `coupon`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub coupon: Option<CouponGiven>,
    /// Notes (always present for kind `note`): the card's text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<NoteGiven>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema, utoipa::ToSchema)]
#[schemars(deny_unknown_fields)]
pub struct CouponGiven {
    /// The prefix, a dash and 12 characters of Crockford's base32.
    #[schemars(pattern(crate::coupon::CODE_PATTERN))]
    pub code: String,
    /// Face value in `currency`, a decimal string.
    #[schemars(pattern(crate::money::AMOUNT_PATTERN))]
    pub amount: String,
    /// The order's currency (ISO 4217).
    #[schemars(pattern(crate::money::CURRENCY_PATTERN))]
    pub currency: String,
    /// The least order total the coupon is valid for, a decimal string.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(pattern(crate::money::AMOUNT_PATTERN))]
    pub min_order: Option<String>,
    /// The last day the coupon is valid (YYYY-MM-DD).
    #[schemars(extend("format" = "date"))]
    #[schema(format = Date)]
    pub expires_on: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema, utoipa::ToSchema)]
#[schemars(deny_unknown_fields)]
pub struct NoteGiven {
    /// The card's text, rendered from its template.
    pub text: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema, utoipa::ToSchema)]
#[schemars(deny_unknown_fields)]
pub struct ScheduledFollowup {
    pub followup_id: String,
    /// The follow-up's variant the customer is in, when the follow-up is an experiment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
    /// When the e-mail is due, UTC (quiet hours may hold it back further).
    #[schemars(extend("format" = "date-time"))]
    #[schema(format = DateTime)]
    pub due_at: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct Skip {
    /// The rule or follow-up.
    pub rule_id: String,
    /// Set when one insert of the rule was skipped (`currency`, `stock`, `budget`,
    /// `max_inserts`); absent when the whole rule was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub insert_id: Option<String>,
    pub reason: SkipReason,
    /// With reason `error`: why the condition could not be evaluated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct Explain {
    pub segments: Vec<ExplainSegment>,
    pub rules: Vec<ExplainRule>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct ExplainSegment {
    pub id: String,
    pub matched: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct ExplainRule {
    pub id: String,
    /// "given", "off", or the skip reason that stopped the rule.
    pub outcome: String,
}

/// `rules_version`: "sha256:" and the hex digest.
pub const RULES_VERSION_PATTERN: &str = "^sha256:[0-9a-f]{64}$";

/// A claim on a counter that the caller must take when it stores the decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    Stock {
        insert_id: String,
        slot: StockSlot,
        allocation: u32,
        quantity: u32,
    },
    Budget {
        rule_id: String,
        period: String,
        currency: Currency,
        limit: Decimal,
        amount: Decimal,
    },
}

/// What an insert given costs, for budgets, backtests and reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cost {
    pub rule_id: String,
    pub insert_id: String,
    pub currency: Currency,
    pub amount: Decimal,
}

/// A decision and what it takes from counters.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub decision: Decision,
    pub claims: Vec<Claim>,
    pub costs: Vec<Cost>,
    /// Rules that gave at least one insert (their cooldowns start now).
    pub rules_given: Vec<String>,
    /// Follow-ups this order would have scheduled but for the customer's holdout: recorded
    /// as e-mail jobs skipped with reason `holdout`, the control group of the effect report.
    pub followup_holdouts: Vec<ScheduledFollowup>,
    /// Each rule that gave, was held out or ran in shadow, with what it gave or would have
    /// given: the effect report's attribution data.
    pub exposures: Vec<Exposure>,
    /// What could not be evaluated or rendered (a condition, a note), as sentences for the
    /// log. The engine does no I/O: whoever applies the decision logs them.
    pub problems: Vec<String>,
}

/// How a rule met a customer in a decision, for the effect report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arm {
    /// The rule gave at least one insert.
    Treated,
    /// The rule would have given, but the customer is in its holdout.
    HeldOut,
    /// A shadow rule would have given.
    Shadow,
}

impl Arm {
    pub fn as_str(&self) -> &'static str {
        match self {
            Arm::Treated => "treated",
            Arm::HeldOut => "held_out",
            Arm::Shadow => "shadow",
        }
    }
}

/// A rule's part in one decision: its arm and the cost (docs/REFERENCE.md §2) of what it gave, or
/// of what it would have given when held out or in shadow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exposure {
    pub rule_id: String,
    pub arm: Arm,
    /// The customer's variant: given (treated), or that would have been (held out, shadow).
    pub variant: Option<String>,
    pub costs: Vec<(Currency, Decimal)>,
}

/// Between an arm and its variant where the store keeps them as one name (`treated:note`),
/// so that a customer who met two variants is `mixed` like one who met two arms.
const VARIANT_SEPARATOR: char = ':';

/// The arm as the store and the report name it: `treated`, or `treated:<variant>`.
pub fn arm_label(arm: &str, variant: Option<&str>) -> String {
    match variant {
        Some(v) => format!("{arm}{VARIANT_SEPARATOR}{v}"),
        None => arm.to_string(),
    }
}

/// An arm's name split into the arm and its variant (see [`arm_label`]).
pub fn split_arm_label(label: &str) -> (&str, Option<&str>) {
    match label.split_once(VARIANT_SEPARATOR) {
        Some((arm, variant)) => (arm, Some(variant)),
        None => (label, None),
    }
}

impl Exposure {
    /// See [`arm_label`].
    pub fn arm_label(&self) -> String {
        arm_label(self.arm.as_str(), self.variant.as_deref())
    }
}

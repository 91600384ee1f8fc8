//! The rule files as written (docs/REFERENCE.md §2): serde types with spans, and the JSON Schema
//! that editors use for completion (`schemas/rules.schema.json` is generated from these).

use schemars::JsonSchema;
use serde::Deserialize;
use std::collections::BTreeMap;
use toml::Spanned;

/// One `rules/*.toml` file. Every section is optional in a single file; the folder as a whole
/// is checked (one `[package]`, one `[email]`, ids unique across files).
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "Packwell rule file")]
pub struct RuleFile {
    /// What every parcel may hold. One per rules folder.
    #[schemars(with = "Option<PackageSpec>")]
    pub package: Option<Spanned<PackageSpec>>,
    /// Named customer segments, evaluated in file order for every order.
    #[serde(default)]
    pub segment: Vec<SegmentSpec>,
    /// The catalogue of what can go in a parcel.
    #[serde(default)]
    pub insert: Vec<InsertSpec>,
    /// Rules that decide inserts when an order is placed.
    #[serde(default)]
    pub rule: Vec<RuleSpec>,
    /// Follow-up e-mails scheduled after an event.
    #[serde(default)]
    pub followup: Vec<FollowupSpec>,
    /// Limits that keep e-mail from flooding anyone. One per rules folder.
    #[schemars(with = "Option<EmailSpec>")]
    pub email: Option<Spanned<EmailSpec>>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PackageSpec {
    /// Never more than this many inserts in one parcel (default 3).
    pub max_inserts: Option<u32>,
    /// The currency of every `unit_cost` (ISO 4217, default "EUR").
    #[schemars(with = "Option<String>")]
    pub currency: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SegmentSpec {
    #[schemars(with = "String")]
    pub id: Spanned<String>,
    /// A ZEN expression; `segments` holds the segments matched so far.
    #[schemars(with = "String")]
    pub when: Spanned<String>,
    pub description: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum InsertKind {
    Coupon,
    Note,
    Gift,
    Sample,
    Packaging,
}

impl InsertKind {
    pub fn as_str(&self) -> &'static str {
        match self {
            InsertKind::Coupon => "coupon",
            InsertKind::Note => "note",
            InsertKind::Gift => "gift",
            InsertKind::Sample => "sample",
            InsertKind::Packaging => "packaging",
        }
    }
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct InsertSpec {
    #[schemars(with = "String")]
    pub id: Spanned<String>,
    pub kind: InsertKind,
    pub title: Option<String>,
    pub description: Option<String>,
    /// Coupons: the fixed amount per currency, e.g. `{ EUR = "10.00", USD = "10.00" }`.
    #[schemars(with = "Option<BTreeMap<String, String>>")]
    pub amount: Option<Spanned<BTreeMap<String, Spanned<String>>>>,
    /// Coupons: the minimum order value per currency for the coupon to be redeemable.
    #[schemars(with = "Option<BTreeMap<String, String>>")]
    pub min_order: Option<Spanned<BTreeMap<String, Spanned<String>>>>,
    /// Coupons: days from the decision until the coupon expires (default 30).
    pub valid_days: Option<u32>,
    /// Coupons: the code's prefix, before a dash and 12 random-looking characters.
    #[schemars(with = "Option<String>")]
    pub code_prefix: Option<Spanned<String>>,
    /// Notes: the card's template, `templates/notes/NAME.hbs`.
    #[schemars(with = "Option<String>")]
    pub template: Option<Spanned<String>>,
    /// Gifts, samples, packaging: the article to pick.
    pub sku: Option<String>,
    /// Gifts, samples, packaging: what one costs, in the `[package]` currency.
    #[schemars(with = "Option<String>")]
    pub unit_cost: Option<Spanned<String>>,
    /// One pool for all warehouses (`stock = 500`) or per warehouse (`{ WH-BER = 300 }`).
    #[schemars(with = "Option<StockSpec>")]
    pub stock: Option<Spanned<StockSpec>>,
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum StockSpec {
    Pool(u32),
    PerWarehouse(BTreeMap<String, u32>),
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(extend("oneOf" = [{"required": ["give"]}, {"required": ["variants"]}]))]
pub struct RuleSpec {
    #[schemars(with = "String")]
    pub id: Spanned<String>,
    #[schemars(with = "String")]
    pub when: Spanned<String>,
    /// Insert ids, given in this order. A rule has `give` or `variants`, not both.
    #[serde(default)]
    #[schemars(with = "Vec<String>")]
    pub give: Vec<Spanned<String>>,
    /// An experiment between inserts: each customer is drawn into one variant (in proportion
    /// to the weights, independently of the holdout) and keeps it.
    #[serde(default)]
    #[schemars(length(min = 2, max = 10))]
    pub variants: Vec<VariantSpec>,
    pub description: Option<String>,
    /// Higher first; ties go by file order (default 0).
    pub priority: Option<i64>,
    /// At most one rule of a group gives (the highest priority).
    pub group: Option<String>,
    /// Gives to one customer at most once in this long, e.g. "90d".
    #[schemars(with = "Option<String>")]
    pub cooldown: Option<Spanned<String>>,
    /// A deterministic control group, e.g. "10%".
    #[schemars(with = "Option<String>")]
    pub holdout: Option<Spanned<String>>,
    /// UTC dates, inclusive.
    #[schemars(with = "Option<ActiveSpec>")]
    pub active: Option<Spanned<ActiveSpec>>,
    /// `{ EUR = "2000.00", per = "month" }`: what this rule may give per period.
    #[schemars(with = "Option<BTreeMap<String, String>>")]
    pub budget: Option<Spanned<BTreeMap<String, Spanned<String>>>>,
    /// live (default) | shadow | off
    #[schemars(with = "Option<String>")]
    pub mode: Option<Spanned<String>>,
}

/// One variant of a rule's experiment.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct VariantSpec {
    /// Unique within the rule: letters, digits, `-` and `_`.
    #[schemars(with = "String")]
    pub id: Spanned<String>,
    /// Insert ids, given in this order.
    #[schemars(with = "Vec<String>")]
    pub give: Vec<Spanned<String>>,
    /// A positive integer: the variant's share is its weight over the sum of the weights.
    #[schemars(with = "u32", range(min = 1, max = 1_000_000))]
    pub weight: Spanned<i64>,
}

/// One variant of a follow-up's experiment: its coupons and, if it differs, its template.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FollowupVariantSpec {
    /// Unique within the follow-up: letters, digits, `-` and `_`.
    #[schemars(with = "String")]
    pub id: Spanned<String>,
    /// Coupons put in the e-mail (default: none).
    #[serde(default)]
    #[schemars(with = "Vec<String>")]
    pub give: Vec<Spanned<String>>,
    /// `templates/emails/NAME/` (default: the follow-up's).
    #[schemars(with = "Option<String>")]
    pub template: Option<Spanned<String>>,
    /// A positive integer: the variant's share is its weight over the sum of the weights.
    #[schemars(with = "u32", range(min = 1, max = 1_000_000))]
    pub weight: Spanned<i64>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ActiveSpec {
    #[schemars(with = "Option<String>")]
    pub from: Option<Spanned<String>>,
    #[schemars(with = "Option<String>")]
    pub until: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(extend("not" = {"required": ["give", "variants"]}))]
pub struct FollowupSpec {
    #[schemars(with = "String")]
    pub id: Spanned<String>,
    /// order.placed | order.shipped | order.delivered
    #[schemars(with = "String")]
    pub on: Spanned<String>,
    #[schemars(with = "Option<String>")]
    pub when: Option<Spanned<String>>,
    /// `templates/emails/NAME/`
    #[schemars(with = "String")]
    pub template: Spanned<String>,
    /// From the event's time, e.g. "4d", "2h".
    #[schemars(with = "String")]
    pub after: Spanned<String>,
    /// Coupons put in the e-mail, issued when it is sent.
    #[serde(default)]
    #[schemars(with = "Vec<String>")]
    pub give: Vec<Spanned<String>>,
    /// An experiment between e-mails: each customer is drawn into one variant (in proportion
    /// to the weights, independently of the holdout) and keeps it.
    #[serde(default)]
    #[schemars(length(min = 2, max = 10))]
    pub variants: Vec<FollowupVariantSpec>,
    #[schemars(with = "Option<String>")]
    pub holdout: Option<Spanned<String>>,
    pub description: Option<String>,
    /// live (default) | off
    #[schemars(with = "Option<String>")]
    pub mode: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EmailSpec {
    pub max_per_customer: Option<FrequencySpec>,
    pub quiet_hours: Option<QuietHoursSpec>,
    #[schemars(with = "Option<String>")]
    pub default_time_zone: Option<Spanned<String>>,
    #[schemars(with = "Option<String>")]
    pub expire_after: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FrequencySpec {
    pub count: u32,
    #[schemars(with = "String")]
    pub per: Spanned<String>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct QuietHoursSpec {
    #[schemars(with = "String")]
    pub from: Spanned<String>,
    #[schemars(with = "String")]
    pub until: Spanned<String>,
}

/// The JSON Schema of a rule file, as shipped in `schemas/rules.schema.json`.
pub fn rules_schema_json() -> String {
    let schema = schemars::schema_for!(RuleFile);
    let mut text = serde_json::to_string_pretty(&schema).unwrap_or_default();
    text.push('\n');
    text
}

//! The keys each table of a rule file may have, and the check that names an unknown one
//! (with the closest known key) where it is written.

use super::*;

pub(super) const TOP_KEYS: &[&str] = &["package", "segment", "insert", "rule", "followup", "email"];
pub(super) const PACKAGE_KEYS: &[&str] = &["max_inserts", "currency"];
pub(super) const SEGMENT_KEYS: &[&str] = &["id", "when", "description"];
pub(super) const INSERT_KEYS: &[&str] = &[
    "id",
    "kind",
    "title",
    "description",
    "amount",
    "min_order",
    "valid_days",
    "code_prefix",
    "template",
    "sku",
    "unit_cost",
    "stock",
];
pub(super) const RULE_KEYS: &[&str] = &[
    "id",
    "when",
    "give",
    "variants",
    "description",
    "priority",
    "group",
    "cooldown",
    "holdout",
    "active",
    "budget",
    "mode",
];
pub(super) const ACTIVE_KEYS: &[&str] = &["from", "until"];
pub(super) const VARIANT_KEYS: &[&str] = &["id", "give", "weight"];
pub(super) const FOLLOWUP_VARIANT_KEYS: &[&str] = &["id", "give", "template", "weight"];
pub(super) const FOLLOWUP_KEYS: &[&str] = &[
    "id",
    "on",
    "when",
    "template",
    "after",
    "give",
    "variants",
    "holdout",
    "description",
    "mode",
];
pub(super) const EMAIL_KEYS: &[&str] = &[
    "max_per_customer",
    "quiet_hours",
    "default_time_zone",
    "expire_after",
];
pub(super) const FREQUENCY_KEYS: &[&str] = &["count", "per"];
pub(super) const QUIET_KEYS: &[&str] = &["from", "until"];

pub(super) type KeyVisitor<'a> = dyn Fn(&str, &toml_edit::Item, &mut Collector) + 'a;

pub(super) fn each_table(item: &toml_edit::Item, mut f: impl FnMut(&toml_edit::Item)) {
    match item {
        toml_edit::Item::ArrayOfTables(a) => {
            for t in a.iter() {
                f(&toml_edit::Item::Table(t.clone()));
            }
        }
        toml_edit::Item::Value(toml_edit::Value::Array(a)) => {
            for v in a.iter() {
                f(&toml_edit::Item::Value(v.clone()));
            }
        }
        other => f(other),
    }
}

pub(super) fn check_table_keys(
    src: &Source,
    item: &toml_edit::Item,
    known: &[&str],
    what: &str,
    c: &mut Collector,
) {
    check_table_keys_nested(src, item, known, what, c, &|_, _, _| {})
}

pub(super) fn check_table_keys_nested(
    src: &Source,
    item: &toml_edit::Item,
    known: &[&str],
    what: &str,
    c: &mut Collector,
    nested: &KeyVisitor<'_>,
) {
    match item {
        toml_edit::Item::Table(t) => check_keys(src, t, known, what, c, nested),
        toml_edit::Item::Value(toml_edit::Value::InlineTable(t)) => {
            for (key, value) in t.iter() {
                let span = t.key(key).and_then(|k| k.span()).unwrap_or(0..0);
                if known.contains(&key) {
                    nested(key, &toml_edit::Item::Value(value.clone()), c);
                } else {
                    c.error(src, &span, unknown_key_message(key, known, what));
                }
            }
        }
        _ => {}
    }
}

pub(super) fn check_keys(
    src: &Source,
    table: &toml_edit::Table,
    known: &[&str],
    what: &str,
    c: &mut Collector,
    nested: &KeyVisitor<'_>,
) {
    for (key, item) in table.iter() {
        let span = table
            .key(key)
            .and_then(|k| k.span())
            .or_else(|| item.span())
            .unwrap_or(0..0);
        if known.contains(&key) {
            nested(key, item, c);
        } else {
            c.error(src, &span, unknown_key_message(key, known, what));
        }
    }
}

fn unknown_key_message(key: &str, known: &[&str], what: &str) -> String {
    match closest(key, known.iter().copied(), SharedStart) {
        Some(s) => format!("unknown key `{key}` in {what}, did you mean `{s}`?"),
        None => format!(
            "unknown key `{key}` in {what} (expected one of: {})",
            known.join(", ")
        ),
    }
}

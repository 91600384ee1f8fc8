//! "Save as shadow": an edited rule file written with `mode = "shadow"` on each `[[rule]]`
//! whose definition the edit changed (or added), so the edit is recorded on live traffic before
//! it gives anything. The rest of the file keeps its text, comments and layout (`toml_edit`).

use std::collections::HashMap;

/// `new` with `mode = "shadow"` set on every rule that differs from `old`'s rule of the same id
/// (the mode left out of the comparison), the ids it set, and the changed ids it could not set
/// (a rule not written as a `[[rule]]` table). `old` is the file as it was (empty for a new
/// file); a text that is not TOML is given back as it is, for validation to say what is wrong
/// with it.
pub fn shadow_changed_rules(old: &str, new: &str) -> (String, Vec<String>, Vec<String>) {
    let Ok(mut doc) = new.parse::<toml_edit::DocumentMut>() else {
        return (new.to_string(), Vec::new(), Vec::new());
    };
    let before = rules_by_id(old);
    let after = rules_by_id(new);
    let changed: Vec<&String> = after
        .iter()
        .filter(|(id, rule)| before.get(*id) != Some(*rule))
        .map(|(id, _)| id)
        .collect();
    let mut shadowed = Vec::new();
    if let Some(tables) = doc
        .get_mut("rule")
        .and_then(toml_edit::Item::as_array_of_tables_mut)
    {
        for table in tables.iter_mut() {
            let Some(id) = table.get("id").and_then(|v| v.as_str()).map(str::to_owned) else {
                continue;
            };
            if changed.contains(&&id) {
                table.insert("mode", toml_edit::value("shadow"));
                shadowed.push(id);
            }
        }
    }
    let missed = changed
        .into_iter()
        .filter(|id| !shadowed.contains(id))
        .cloned()
        .collect();
    (doc.to_string(), shadowed, missed)
}

/// The `[[rule]]` tables of a file by id, without their `mode`; none for a text that is not
/// TOML.
fn rules_by_id(text: &str) -> HashMap<String, toml::Table> {
    let Ok(doc) = text.parse::<toml::Table>() else {
        return HashMap::new();
    };
    let Some(toml::Value::Array(rules)) = doc.get("rule") else {
        return HashMap::new();
    };
    rules
        .iter()
        .filter_map(|r| {
            let mut table = r.as_table()?.clone();
            let id = table.get("id")?.as_str()?.to_owned();
            table.remove("mode");
            Some((id, table))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const OLD: &str = r#"# Welcome gifts
[[rule]]
id = "welcome"
when = "customer.orders_count == 1"
give = ["welcome-note"]

[[rule]]
id = "vip"   # the best customers
when = "'vip' in segments"
give = ["premium-box"]
"#;

    #[test]
    fn only_changed_and_new_rules_become_shadow_and_the_text_keeps_its_layout() {
        let new = OLD.replace("orders_count == 1", "orders_count <= 1")
            + "\n[[rule]]\nid = \"new-one\"\nwhen = \"true\"\ngive = [\"card\"]\n";
        let (text, shadowed, missed) = shadow_changed_rules(OLD, &new);
        assert_eq!(shadowed, ["welcome", "new-one"]);
        assert!(missed.is_empty());
        assert!(
            text.starts_with("# Welcome gifts\n[[rule]]\nid = \"welcome\"\n"),
            "{text}"
        );
        assert!(
            text.contains("id = \"vip\"   # the best customers\n"),
            "{text}"
        );
        let parsed = rules_by_id(&text);
        let mode = |id: &str| {
            text.parse::<toml::Table>().unwrap()["rule"]
                .as_array()
                .unwrap()
                .iter()
                .find(|r| r["id"].as_str() == Some(id))
                .and_then(|r| r.get("mode").map(|m| m.as_str().unwrap().to_owned()))
        };
        assert_eq!(mode("welcome").as_deref(), Some("shadow"));
        assert_eq!(mode("new-one").as_deref(), Some("shadow"));
        assert_eq!(mode("vip"), None);
        assert_eq!(parsed.len(), 3);
    }

    #[test]
    fn a_mode_change_alone_is_no_change_and_bad_toml_is_kept() {
        let new = OLD.replace(
            "give = [\"premium-box\"]",
            "give = [\"premium-box\"]\nmode = \"off\"",
        );
        assert_eq!(shadow_changed_rules(OLD, &new).1, Vec::<String>::new());
        let broken = "[[rule]\nid = ";
        assert_eq!(
            shadow_changed_rules(OLD, broken),
            (broken.to_string(), vec![], vec![])
        );
    }

    #[test]
    fn a_changed_rule_written_inline_is_told_not_left_live() {
        let new = "rule = [{ id = \"welcome\", when = \"true\", give = [\"welcome-note\"] }]\n";
        let (_, shadowed, missed) = shadow_changed_rules(OLD, new);
        assert!(shadowed.is_empty());
        assert_eq!(missed, ["welcome"]);
    }
}

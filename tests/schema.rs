//! The shipped JSON Schemas generated from Rust types must match those types: the rule files
//! `validate` reads and the effect report. Regenerate with
//! `PACKWELL_UPDATE_SCHEMAS=1 cargo test --test schema`. (The schemas of the messages, the
//! decision on `packing-instructions` among them, are checked the same way in
//! tests/message_schemas.rs.)

use std::path::Path;

/// Compares (or, with `PACKWELL_UPDATE_SCHEMAS` set, writes) `schemas/<name>`.
fn check_generated(name: &str, fresh: &str) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("schemas")
        .join(name);
    if std::env::var_os("PACKWELL_UPDATE_SCHEMAS").is_some() {
        std::fs::write(&path, fresh).unwrap();
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == fresh,
        "schemas/{name} is stale: run PACKWELL_UPDATE_SCHEMAS=1 cargo test --test schema"
    );
}

#[test]
fn rules_schema_is_up_to_date() {
    check_generated(
        "rules.schema.json",
        &packwell::rules::model::rules_schema_json(),
    );
}

#[test]
fn report_schema_is_up_to_date() {
    check_generated(
        "report.schema.json",
        &packwell::report::report_schema_json(),
    );
}

#[test]
fn example_rule_files_point_editors_at_the_schema() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("rules");
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            let text = std::fs::read_to_string(&path).unwrap();
            assert!(
                text.lines()
                    .any(|l| l.trim() == "#:schema ../schemas/rules.schema.json"),
                "{} has no #:schema line",
                path.display()
            );
            seen += 1;
        }
    }
    assert!(seen > 0);
}

//! The shipped JSON Schema of rule files must match the types `validate` reads.
//! Regenerate with `PACKWELL_UPDATE_SCHEMAS=1 cargo test --test schema`.

use std::path::Path;

#[test]
fn rules_schema_is_up_to_date() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("schemas/rules.schema.json");
    let fresh = packwell::rules::model::rules_schema_json();
    if std::env::var_os("PACKWELL_UPDATE_SCHEMAS").is_some() {
        std::fs::write(&path, &fresh).unwrap();
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == fresh,
        "schemas/rules.schema.json is stale: run PACKWELL_UPDATE_SCHEMAS=1 cargo test --test schema"
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

//! The files of a rules folder: which are read, the version hash over them and the templates,
//! and one rule file parsed (TOML syntax, unknown keys, then the typed structure).

use super::keys::{
    ACTIVE_KEYS, EMAIL_KEYS, FOLLOWUP_KEYS, FOLLOWUP_VARIANT_KEYS, FREQUENCY_KEYS, INSERT_KEYS,
    PACKAGE_KEYS, QUIET_KEYS, RULE_KEYS, SEGMENT_KEYS, TOP_KEYS, VARIANT_KEYS, check_keys,
    check_table_keys, check_table_keys_nested, each_table,
};
use super::*;

pub(super) fn list_rule_files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_file() && path.extension().is_some_and(|e| e == "toml") {
            out.push(path);
        }
    }
    out.sort();
    Ok(out)
}

/// The rules version: a hash over every rule file and template, names and contents.
pub(super) fn version_hash(files: &[Source], templates_dir: &Path) -> String {
    let mut h = Sha256::new();
    for f in files {
        let name = f
            .path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        h.update((name.len() as u64).to_be_bytes());
        h.update(name.as_bytes());
        h.update((f.text.len() as u64).to_be_bytes());
        h.update(f.text.as_bytes());
    }
    let mut templates = Vec::new();
    collect_files(templates_dir, &mut templates);
    templates.sort();
    for (rel, bytes) in templates {
        h.update((rel.len() as u64).to_be_bytes());
        h.update(rel.as_bytes());
        h.update((bytes.len() as u64).to_be_bytes());
        h.update(&bytes);
    }
    format!("sha256:{}", hex::encode(h.finalize()))
}

/// The `.hbs` files the template loader can read (`notes/*.hbs`, `emails/NAME/*.hbs`), with
/// their bytes. A walk with its own stack, three folders deep: the loader reads no deeper, and
/// a symbolic link back up the tree must end the walk, not the process. A file is read up to
/// one byte past the template size limit: a larger one is an error of the folder anyway.
fn collect_files(root: &Path, out: &mut Vec<(String, Vec<u8>)>) {
    use std::io::Read;
    let max = crate::render::limits::MAX_TEMPLATE_BYTES as u64 + 1;
    let mut dirs = vec![(root.to_path_buf(), 0usize)];
    while let Some((dir, level)) = dirs.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                if level < 2 {
                    dirs.push((path, level + 1));
                }
                continue;
            }
            if path.extension().is_none_or(|e| e != "hbs") {
                continue;
            }
            let mut bytes = Vec::new();
            let read = std::fs::File::open(&path).and_then(|f| f.take(max).read_to_end(&mut bytes));
            if read.is_ok() {
                let rel = path
                    .strip_prefix(root)
                    .unwrap_or(&path)
                    .to_string_lossy()
                    .replace('\\', "/");
                out.push((rel, bytes));
            }
        }
    }
}

/// TOML syntax, then unknown keys (all of them), then the typed structure.
pub(super) fn parse_file(src: &Source, c: &mut Collector) -> Option<RuleFile> {
    let doc = match toml_edit::Document::parse(src.text.as_str()) {
        Ok(doc) => doc,
        Err(e) => {
            let span = e.span().unwrap_or(0..0);
            c.error(
                src,
                &span,
                format!("TOML syntax: {}", first_line(e.message())),
            );
            return None;
        }
    };
    let before = c.findings.len();
    check_keys(
        src,
        doc.as_table(),
        TOP_KEYS,
        "the top level",
        c,
        &|key, item, c| match key {
            "package" => check_table_keys(src, item, PACKAGE_KEYS, "[package]", c),
            "email" => {
                check_table_keys_nested(src, item, EMAIL_KEYS, "[email]", c, &|k, it, c| match k {
                    "max_per_customer" => {
                        check_table_keys(src, it, FREQUENCY_KEYS, "email.max_per_customer", c)
                    }
                    "quiet_hours" => check_table_keys(src, it, QUIET_KEYS, "email.quiet_hours", c),
                    _ => {}
                })
            }
            "segment" => each_table(item, |t| {
                check_table_keys(src, t, SEGMENT_KEYS, "[[segment]]", c)
            }),
            "insert" => each_table(item, |t| {
                check_table_keys(src, t, INSERT_KEYS, "[[insert]]", c)
            }),
            "rule" => each_table(item, |t| {
                check_table_keys_nested(src, t, RULE_KEYS, "[[rule]]", c, &|k, it, c| match k {
                    "active" => check_table_keys(src, it, ACTIVE_KEYS, "rule.active", c),
                    "variants" => each_table(it, |v| {
                        check_table_keys(src, v, VARIANT_KEYS, "a rule's variant", c)
                    }),
                    _ => {}
                })
            }),
            "followup" => each_table(item, |t| {
                check_table_keys_nested(src, t, FOLLOWUP_KEYS, "[[followup]]", c, &|k, it, c| {
                    if k == "variants" {
                        each_table(it, |v| {
                            check_table_keys(
                                src,
                                v,
                                FOLLOWUP_VARIANT_KEYS,
                                "a follow-up's variant",
                                c,
                            )
                        })
                    }
                })
            }),
            _ => {}
        },
    );
    if c.findings.len() > before {
        return None;
    }
    match toml::from_str::<RuleFile>(&src.text) {
        Ok(f) => Some(f),
        Err(e) => {
            let span = e.span().unwrap_or(0..0);
            c.error(src, &span, first_line(e.message()).to_string());
            None
        }
    }
}

fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or(s).trim()
}

//! Loading a rules folder: TOML syntax, unknown keys, types, then every semantic check of
//! docs/REFERENCE.md §2, all reported at once with the file, line and column they point at.
//!
//! Here: [`load_rules`], the findings and where they point. Next to it: `files` (which files,
//! the version hash, one file parsed), `keys` (the keys each table may have), `names` (ids and
//! template names), `build` (the rule set from parsed files), `values` (currencies, amounts,
//! durations, conditions), `inserts`, `rule`, `followup`, `variants`.

use super::expr::{self, ExprCheck};
use super::model::{self, RuleFile, StockSpec};
use super::units::{parse_date, parse_duration, parse_percent, parse_time_of_day};
use super::*;
use crate::money::{Currency, parse_amount};
use crate::suggest::{Likeness::SharedStart, closest};
use sha2::{Digest, Sha256};
use std::collections::HashSet;
use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};
use toml::Spanned;

mod build;
mod files;
mod followup;
mod inserts;
mod keys;
mod names;
mod rule;
mod values;
mod variants;

use build::build;
use files::{list_rule_files, parse_file, version_hash};
use names::TemplateNames;

/// One problem (or warning) found while loading rules or templates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub file: PathBuf,
    pub line: usize,
    pub col: usize,
    pub message: String,
    pub warning: bool,
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = if self.warning { "warning: " } else { "" };
        write!(
            f,
            "{}:{}:{}: {kind}{}",
            self.file.display(),
            self.line,
            self.col,
            self.message
        )
    }
}

/// The result of loading: the rules when there was no error, and every finding.
pub struct LoadOutcome {
    pub rules: Option<RuleSet>,
    pub findings: Vec<Finding>,
}

impl LoadOutcome {
    pub fn errors(&self) -> impl Iterator<Item = &Finding> {
        self.findings.iter().filter(|f| !f.warning)
    }
    pub fn warnings(&self) -> impl Iterator<Item = &Finding> {
        self.findings.iter().filter(|f| f.warning)
    }
}

/// A file's text, for turning byte offsets into line and column.
struct Source {
    path: PathBuf,
    text: String,
}

impl Source {
    /// 1-based line and column (in characters) of a byte offset.
    fn position(&self, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.text.len());
        let before = self.text.get(..offset).unwrap_or("");
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map(|i| i + 1).unwrap_or(0);
        let col = before
            .get(line_start..)
            .map(|s| s.chars().count())
            .unwrap_or(0)
            + 1;
        (line, col)
    }

    /// Offset of the first character inside a string value whose span includes its quotes.
    fn string_content_start(&self, span: &Range<usize>) -> usize {
        let rest = self.text.get(span.start..).unwrap_or("");
        let mut start = span.start;
        if rest.starts_with("\"\"\"") || rest.starts_with("'''") {
            start += 3;
            // A newline right after the opening delimiter is not part of the string.
            let after = self.text.get(start..).unwrap_or("");
            if after.starts_with("\r\n") {
                start += 2;
            } else if after.starts_with('\n') {
                start += 1;
            }
        } else if rest.starts_with('"') || rest.starts_with('\'') {
            start += 1;
        }
        start
    }
}

struct Collector {
    findings: Vec<Finding>,
    needs: ContextNeeds,
}

impl Collector {
    fn at(&mut self, src: &Source, offset: usize, warning: bool, message: impl Into<String>) {
        let (line, col) = src.position(offset);
        self.findings.push(Finding {
            file: src.path.clone(),
            line,
            col,
            message: message.into(),
            warning,
        });
    }
    fn error(&mut self, src: &Source, span: &Range<usize>, message: impl Into<String>) {
        self.at(src, span.start, false, message);
    }
}

/// Loads and validates the rules folder and its templates.
///
/// Safe on any thread with the 2 MiB stack Rust gives spawned threads: every recursive parser
/// (TOML, conditions, templates) sees only text within the limits of [`super::limits`] and
/// [`crate::render::limits`], whose worst case needs about 1.1 MiB in a debug build (see
/// tests/limits.rs). So `validate`, `test` and `simulate` load on the main thread (8 MiB), and
/// the service's reload thread has a stack of its own (`service::reload::RELOAD_STACK`).
pub fn load_rules(rules_dir: &Path, templates_dir: &Path) -> LoadOutcome {
    let mut c = Collector {
        findings: Vec::new(),
        needs: ContextNeeds::default(),
    };
    let mut files = Vec::new();
    match list_rule_files(rules_dir) {
        Ok(paths) if paths.is_empty() => {
            c.findings.push(Finding {
                file: rules_dir.to_path_buf(),
                line: 1,
                col: 1,
                message: "no *.toml rule files in this folder".into(),
                warning: false,
            });
        }
        Ok(paths) => {
            for path in paths {
                match super::limits::read_rule_file(&path) {
                    Ok(text) => files.push(Source { path, text }),
                    Err(message) => c.findings.push(Finding {
                        file: path,
                        line: 1,
                        col: 1,
                        message,
                        warning: false,
                    }),
                }
            }
        }
        Err(e) => c.findings.push(Finding {
            file: rules_dir.to_path_buf(),
            line: 1,
            col: 1,
            message: format!("cannot read the rules folder: {e}"),
            warning: false,
        }),
    }

    let mut parsed: Vec<(usize, RuleFile)> = Vec::new();
    for (i, src) in files.iter().enumerate() {
        if let Some(file) = parse_file(src, &mut c) {
            parsed.push((i, file));
        }
    }

    let template_names = TemplateNames::on_disk(templates_dir);
    let templates = match Templates::load(templates_dir) {
        Ok(t) => t,
        Err(issues) => {
            for issue in issues {
                c.findings.push(Finding {
                    file: issue.file,
                    line: issue.line,
                    col: issue.col,
                    message: issue.message,
                    warning: false,
                });
            }
            Templates::empty()
        }
    };

    let version = version_hash(&files, templates_dir);
    let rules = build(&files, parsed, templates, &template_names, version, &mut c);
    let has_error = c.findings.iter().any(|f| !f.warning);
    LoadOutcome {
        rules: if has_error { None } else { rules },
        findings: c.findings,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PACKAGE: &str = "[package]\nmax_inserts = 3\n";
    const SEGMENT: &str =
        "[[segment]]\nid = \"first_order\"\nwhen = \"customer.orders_count == 1\"\n";

    /// Loads a rules folder holding `files` (no templates), and the folder to name files by.
    fn load(files: &[(&str, &str)]) -> (tempfile::TempDir, LoadOutcome) {
        let dir = tempfile::tempdir().expect("tempdir");
        for (name, text) in files {
            std::fs::write(dir.path().join(name), text).expect("write");
        }
        let outcome = load_rules(dir.path(), &dir.path().join("templates"));
        (dir, outcome)
    }

    /// Errors as `file:line:col: message`, the file named inside the folder.
    fn errors(files: &[(&str, &str)]) -> Vec<String> {
        let (dir, outcome) = load(files);
        outcome
            .errors()
            .map(|f| {
                let file = f.file.strip_prefix(dir.path()).unwrap_or(&f.file);
                format!("{}:{}:{}: {}", file.display(), f.line, f.col, f.message)
            })
            .collect()
    }

    #[test]
    fn a_clean_folder_gives_rules_and_no_findings() {
        let (_dir, outcome) = load(&[("a.toml", &format!("{PACKAGE}\n{SEGMENT}"))]);
        assert_eq!(outcome.findings, Vec::new());
        let rules = outcome.rules.expect("rules");
        assert_eq!(rules.segments.len(), 1);
        assert_eq!(rules.segments[0].id, "first_order");
    }

    #[test]
    fn an_unknown_key_is_reported_at_its_line_and_column_with_the_closest_key() {
        let text = format!("{PACKAGE}\n{}", SEGMENT.replace("when =", "whn ="));
        let (_dir, outcome) = load(&[("a.toml", &text)]);
        assert!(outcome.rules.is_none(), "an error leaves no rules");
        let found = errors(&[("a.toml", &text)]);
        assert_eq!(found.len(), 1, "{found:#?}");
        assert!(
            found[0].starts_with("a.toml:6:1: unknown key `whn`"),
            "{}",
            found[0]
        );
        assert!(found[0].ends_with("did you mean `when`?"), "{}", found[0]);
    }

    #[test]
    fn a_duplicate_id_in_another_file_points_at_the_first_one() {
        let found = errors(&[
            ("a.toml", &format!("{PACKAGE}\n{SEGMENT}")),
            ("b.toml", SEGMENT),
        ]);
        assert_eq!(found.len(), 1, "{found:#?}");
        let (at, message) = found[0].split_once(": ").expect("file:line:col: message");
        assert_eq!(at, "b.toml:2:6");
        assert!(
            message.starts_with("duplicate segment id \"first_order\" (first defined at "),
            "{message}"
        );
        assert!(message.ends_with("a.toml:5:6)"), "{message}");
    }

    #[test]
    fn a_folder_without_rule_files_is_one_error_at_its_start() {
        let found = errors(&[("notes.txt", "not rules")]);
        assert_eq!(found, vec![":1:1: no *.toml rule files in this folder"]);
    }
}

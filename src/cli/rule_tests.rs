//! `packwell test`: the marketer's rule tests (`rules/tests/*.toml`), each case decided like
//! `simulate` and compared with what it expects, with a readable diff of what differed.

use super::simulate::simulate_order;
use super::{CliResult, Common, Failure, RulesArgs};
use crate::coupon::CouponKey;
use crate::engine::{Decision, Shop};
use crate::rules::RuleSet;
use serde::Deserialize;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TestFile {
    #[serde(default)]
    case: Vec<Case>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    name: String,
    order: PathBuf,
    history: Option<PathBuf>,
    at: Option<String>,
    /// Exactly these inserts, in any order.
    expect_inserts: Option<Vec<String>>,
    /// At least these skips.
    #[serde(default)]
    expect_skipped: Vec<ExpectSkip>,
    /// Exactly these segments, in any order.
    expect_segments: Option<Vec<String>>,
    /// Exactly these follow-ups scheduled by the order, in any order.
    expect_followups: Option<Vec<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ExpectSkip {
    rule: String,
    reason: String,
    insert: Option<String>,
}

/// One case's result: its name and, when it failed, what differed.
pub struct CaseResult {
    pub file: PathBuf,
    pub name: String,
    pub problems: Vec<String>,
}

fn set_diff(what: &str, expected: &[String], got: &[String]) -> Option<String> {
    let e: BTreeSet<&str> = expected.iter().map(String::as_str).collect();
    let g: BTreeSet<&str> = got.iter().map(String::as_str).collect();
    if e == g {
        return None;
    }
    let missing: Vec<&str> = e.difference(&g).copied().collect();
    let extra: Vec<&str> = g.difference(&e).copied().collect();
    let mut s = format!(
        "{what}: expected [{}], got [{}]",
        expected.join(", "),
        got.join(", ")
    );
    if !missing.is_empty() {
        s.push_str(&format!("\n        - missing:    {}", missing.join(", ")));
    }
    if !extra.is_empty() {
        s.push_str(&format!("\n        + unexpected: {}", extra.join(", ")));
    }
    Some(s)
}

fn check(case: &Case, d: &Decision) -> Vec<String> {
    let mut problems = Vec::new();
    if let Some(expected) = &case.expect_inserts {
        let got: Vec<String> = d.inserts.iter().map(|i| i.insert_id.clone()).collect();
        problems.extend(set_diff("inserts", expected, &got));
    }
    if let Some(expected) = &case.expect_segments {
        problems.extend(set_diff("segments", expected, &d.segments));
    }
    if let Some(expected) = &case.expect_followups {
        let got: Vec<String> = d.followups.iter().map(|f| f.followup_id.clone()).collect();
        problems.extend(set_diff("follow-ups", expected, &got));
    }
    for want in &case.expect_skipped {
        let found = d.skipped.iter().any(|s| {
            s.rule_id == want.rule
                && s.reason.as_str() == want.reason
                && want
                    .insert
                    .as_ref()
                    .is_none_or(|i| s.insert_id.as_ref() == Some(i))
        });
        if !found {
            let got: Vec<String> = d
                .skipped
                .iter()
                .filter(|s| s.rule_id == want.rule)
                .map(|s| match &s.insert_id {
                    Some(i) => format!("{} ({i})", s.reason.as_str()),
                    None => s.reason.as_str().to_string(),
                })
                .collect();
            let given = d.inserts.iter().any(|i| i.rule_id == want.rule);
            let actual = if !got.is_empty() {
                format!("skipped as: {}", got.join(", "))
            } else if given {
                "it gave its inserts".to_string()
            } else {
                "its condition did not hold (or it is not in the rules)".to_string()
            };
            problems.push(format!(
                "skipped: expected rule {:?} skipped with reason {:?}, but {actual}",
                want.rule, want.reason
            ));
        }
    }
    problems
}

fn test_files(rules_dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(rules_dir.join("tests"))
        .map(|rd| {
            rd.flatten()
                .map(|e| e.path())
                .filter(|p| p.is_file() && p.extension().is_some_and(|e| e == "toml"))
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    files
}

/// Runs every case of `rules_dir/tests/*.toml`. A case file that cannot be read is a usage error.
pub fn run_rule_tests(
    rules_dir: &Path,
    rules: &RuleSet,
    key: &CouponKey,
    shop: &Shop,
) -> Result<Vec<CaseResult>, Failure> {
    let mut results = Vec::new();
    for file in test_files(rules_dir) {
        let text = std::fs::read_to_string(&file)
            .map_err(|e| Failure::usage(format!("error: cannot read {}: {e}", file.display())))?;
        let parsed: TestFile = toml::from_str(&text).map_err(|e| {
            let (line, col) = e.span().map(|s| line_col(&text, s.start)).unwrap_or((1, 1));
            Failure::usage(format!("{}:{line}:{col}: {}", file.display(), e.message()))
        })?;
        let base = file.parent().unwrap_or(Path::new("."));
        for case in parsed.case {
            let problems = match run_case(base, &case, rules, key, shop) {
                Ok(d) => check(&case, &d),
                Err(f) => vec![f.message],
            };
            results.push(CaseResult {
                file: file.clone(),
                name: case.name.clone(),
                problems,
            });
        }
    }
    Ok(results)
}

fn run_case(
    base: &Path,
    case: &Case,
    rules: &RuleSet,
    key: &CouponKey,
    shop: &Shop,
) -> Result<Decision, Failure> {
    let order = super::read_event_file(&base.join(&case.order))?;
    let history = super::read_history(case.history.as_ref().map(|h| base.join(h)).as_deref())?;
    let at = case.at.as_deref().map(super::parse_time).transpose()?;
    Ok(simulate_order(rules, key, shop, &history, &order, at, true)?.decision)
}

fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = text.get(..offset).unwrap_or("");
    let line = before.matches('\n').count() + 1;
    let col = before
        .rsplit('\n')
        .next()
        .map(|l| l.chars().count())
        .unwrap_or(0)
        + 1;
    (line, col)
}

#[derive(Debug, clap::Args)]
pub struct TestArgs {
    #[command(flatten)]
    pub common: Common,
    #[command(flatten)]
    pub rules: RulesArgs,
}

pub fn run(args: &TestArgs) -> CliResult {
    let config = super::load_config(&args.common)?;
    let rules = super::load_valid_rules(&args.rules)?;
    let key = super::read_only_key(&config)?;
    let results = run_rule_tests(&args.rules.rules, &rules, &key, &config.shop())?;
    let mut failed = 0;
    for r in &results {
        if r.problems.is_empty() {
            println!("ok   {}", r.name);
        } else {
            failed += 1;
            println!("FAIL {}  ({})", r.name, r.file.display());
            for p in &r.problems {
                println!("     {p}");
            }
        }
    }
    if results.is_empty() {
        println!(
            "no rule tests in {}",
            args.rules.rules.join("tests").display()
        );
    }
    println!("{} passed, {failed} failed", results.len() - failed);
    if failed > 0 {
        Err(Failure::finding(""))
    } else {
        Ok(())
    }
}

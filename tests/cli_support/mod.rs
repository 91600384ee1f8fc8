//! Shared helpers for the command-line tests (`cli_validate`, `cli_inputs`): a minimal valid
//! project in a temporary folder, edits that must hit exactly one place, positions computed
//! from the text written, and a runner for the `packwell` binary.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use tempfile::TempDir;

/// The rule file of the valid base project: a `[package]`, one segment, a coupon with an
/// amount, a note with a template, and one rule giving both.
pub const BASE_RULES: &str = r#"[package]
max_inserts = 3

[[segment]]
id = "first_order"
when = "customer.orders_count == 1"

[[insert]]
id = "coupon-10"
kind = "coupon"
title = "10 off your next order"
amount = { EUR = "10.00" }
code_prefix = "THANKS"

[[insert]]
id = "hello-note"
kind = "note"
template = "hello"

[[rule]]
id = "welcome"
when = "'first_order' in segments"
give = ["hello-note", "coupon-10"]
"#;

/// Where the base rule file lives inside the project.
pub const RULES_FILE: &str = "rules/10-rules.toml";

/// The note template of the base project.
pub const NOTE_FILE: &str = "templates/notes/hello.hbs";
pub const BASE_NOTE: &str = "Hello {{customer.first_name}}!\nThank you for your order.\n";

/// A first order of a new customer, in EUR: the base rules give it the note and the coupon.
pub const BASE_ORDER: &str = r#"{
  "event_id": "ev-O-1-placed",
  "type": "order.placed",
  "occurred_at": "2026-11-20T10:00:00Z",
  "order": {
    "id": "O-1",
    "customer": { "id": "C-1", "email": "ann@example.com", "first_name": "Ann" },
    "currency": "EUR",
    "total": "54.90",
    "items": [
      { "sku": "BK-1", "name": "A book", "category": "books", "quantity": 1, "unit_price": "54.90" }
    ],
    "shipping": { "country": "DE" },
    "warehouse": "WH-BER"
  }
}
"#;

/// A project folder (`rules/`, `templates/`, input files) in a temporary directory.
pub struct Project {
    dir: TempDir,
}

impl Project {
    /// The valid base project.
    pub fn base() -> Project {
        let p = Project::empty();
        p.write(RULES_FILE, BASE_RULES);
        p.write(NOTE_FILE, BASE_NOTE);
        p
    }

    /// The base project with the base rule file replaced by `rules`.
    pub fn with_rules(rules: &str) -> Project {
        let p = Project::base();
        p.write(RULES_FILE, rules);
        p
    }

    /// The base project with the note template replaced by `note`.
    pub fn with_note(note: &str) -> Project {
        let p = Project::base();
        p.write(NOTE_FILE, note);
        p
    }

    pub fn empty() -> Project {
        Project {
            dir: tempfile::tempdir().expect("create a temporary folder"),
        }
    }

    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// Writes a file (creating its folders) and returns its full path.
    pub fn write(&self, rel: &str, text: &str) -> PathBuf {
        let path = self.path(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).expect("create folders");
        }
        std::fs::write(&path, text).expect("write a fixture file");
        path
    }

    /// `packwell ARGS...`, run inside the project folder (so no coupon key and no
    /// configuration of the machine running the tests is read).
    pub fn packwell(&self, args: &[&str]) -> Run {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_packwell"));
        cmd.args(args).current_dir(self.dir.path());
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("PACKWELL_") {
                cmd.env_remove(&name);
            }
        }
        let out = cmd.output().expect("run the packwell binary");
        Run {
            args: args.iter().map(|a| a.to_string()).collect(),
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// `packwell validate --rules DIR/rules --templates DIR/templates`.
    pub fn validate(&self) -> Run {
        let rules = self.path("rules");
        let templates = self.path("templates");
        self.packwell(&[
            "validate",
            "--rules",
            rules.to_str().expect("UTF-8 temp path"),
            "--templates",
            templates.to_str().expect("UTF-8 temp path"),
        ])
    }

    /// `packwell simulate --rules DIR/rules --templates DIR/templates EXTRA...`.
    pub fn simulate(&self, extra: &[&str]) -> Run {
        let rules = self.path("rules");
        let templates = self.path("templates");
        let mut args = vec![
            "simulate",
            "--rules",
            rules.to_str().expect("UTF-8 temp path"),
            "--templates",
            templates.to_str().expect("UTF-8 temp path"),
        ];
        args.extend_from_slice(extra);
        self.packwell(&args)
    }
}

/// What one run of the binary did.
pub struct Run {
    pub args: Vec<String>,
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// stdout and stderr together.
    pub fn output(&self) -> String {
        format!("{}{}", self.stdout, self.stderr)
    }

    fn describe(&self) -> String {
        format!(
            "packwell {}\nexit code: {:?}\n--- stdout ---\n{}--- stderr ---\n{}",
            self.args.join(" "),
            self.code,
            self.stdout,
            self.stderr
        )
    }

    pub fn assert_code(&self, expected: i32) -> &Self {
        assert_eq!(
            self.code,
            Some(expected),
            "expected exit code {expected}\n{}",
            self.describe()
        );
        self
    }

    /// No Rust panic message anywhere in the output.
    pub fn assert_no_panic(&self) -> &Self {
        assert!(
            !self.output().contains("panicked"),
            "the program panicked\n{}",
            self.describe()
        );
        self
    }

    pub fn assert_contains(&self, needle: &str) -> &Self {
        assert!(
            self.output().contains(needle),
            "expected the output to contain {needle:?}\n{}",
            self.describe()
        );
        self
    }

    pub fn assert_stderr_contains(&self, needle: &str) -> &Self {
        assert!(
            self.stderr.contains(needle),
            "expected stderr to contain {needle:?}\n{}",
            self.describe()
        );
        self
    }

    pub fn assert_not_contains(&self, needle: &str) -> &Self {
        assert!(
            !self.output().contains(needle),
            "expected the output NOT to contain {needle:?}\n{}",
            self.describe()
        );
        self
    }

    /// The output line that reports `file:line:col:`, if any.
    fn finding_line(&self, file: &Path, (line, col): (usize, usize)) -> Option<String> {
        let prefix = format!("{}:{line}:{col}: ", file.display());
        self.output()
            .lines()
            .find(|l| l.starts_with(&prefix))
            .map(str::to_owned)
    }

    /// An error (not a warning) at `file:line:col:` whose message contains every fragment.
    pub fn assert_error_at(&self, file: &Path, pos: (usize, usize), fragments: &[&str]) -> &Self {
        self.assert_finding_at(file, pos, fragments, false)
    }

    /// A warning at `file:line:col:` whose message contains every fragment.
    pub fn assert_warning_at(&self, file: &Path, pos: (usize, usize), fragments: &[&str]) -> &Self {
        self.assert_finding_at(file, pos, fragments, true)
    }

    fn assert_finding_at(
        &self,
        file: &Path,
        pos: (usize, usize),
        fragments: &[&str],
        warning: bool,
    ) -> &Self {
        let what = if warning { "a warning" } else { "an error" };
        let Some(line) = self.finding_line(file, pos) else {
            panic!(
                "expected {what} at {}:{}:{}:\n{}",
                file.display(),
                pos.0,
                pos.1,
                self.describe()
            );
        };
        let message = &line[format!("{}:{}:{}: ", file.display(), pos.0, pos.1).len()..];
        assert_eq!(
            message.starts_with("warning"),
            warning,
            "expected {what} at {}:{}:{}, got: {line}\n{}",
            file.display(),
            pos.0,
            pos.1,
            self.describe()
        );
        for fragment in fragments {
            assert!(
                message.contains(fragment),
                "the finding at {}:{}:{} should say {fragment:?}, got: {line}\n{}",
                file.display(),
                pos.0,
                pos.1,
                self.describe()
            );
        }
        self
    }

    /// How many lines of the output are findings (`...:LINE:COL: ...`) in `file`.
    pub fn findings_in(&self, file: &Path) -> usize {
        let prefix = format!("{}:", file.display());
        self.output()
            .lines()
            .filter(|l| l.starts_with(&prefix))
            .count()
    }
}

/// `text` with `from` replaced by `to`; `from` must occur exactly once, so that a fixture
/// edit cannot silently miss (or hit twice) when the base changes.
pub fn edit(text: &str, from: &str, to: &str) -> String {
    assert_eq!(
        text.matches(from).count(),
        1,
        "the fixture edit expects {from:?} exactly once in:\n{text}"
    );
    text.replacen(from, to, 1)
}

/// 1-based line and column (in characters) where `needle` starts in `text`; `needle` must
/// occur exactly once.
pub fn position(text: &str, needle: &str) -> (usize, usize) {
    assert_eq!(
        text.matches(needle).count(),
        1,
        "the position helper expects {needle:?} exactly once in:\n{text}"
    );
    let offset = text.find(needle).expect("found above");
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let col = before[line_start..].chars().count() + 1;
    (line, col)
}

/// 1-based line and column where the last occurrence of `needle` starts in `text`.
pub fn last_position(text: &str, needle: &str) -> (usize, usize) {
    let offset = text
        .rfind(needle)
        .unwrap_or_else(|| panic!("{needle:?} not found in:\n{text}"));
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    (line, before[line_start..].chars().count() + 1)
}

/// `position` of `needle` shifted by `chars` characters to the right on the same line.
pub fn position_plus(text: &str, needle: &str, chars: usize) -> (usize, usize) {
    let (line, col) = position(text, needle);
    (line, col + chars)
}

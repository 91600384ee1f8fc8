//! Loading a rules folder: TOML syntax, unknown keys, types, then every semantic check of
//! CONTRACT §2, all reported at once with the file, line and column they point at.

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

const TOP_KEYS: &[&str] = &["package", "segment", "insert", "rule", "followup", "email"];
const PACKAGE_KEYS: &[&str] = &["max_inserts", "currency"];
const SEGMENT_KEYS: &[&str] = &["id", "when", "description"];
const INSERT_KEYS: &[&str] = &[
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
const RULE_KEYS: &[&str] = &[
    "id",
    "when",
    "give",
    "description",
    "priority",
    "group",
    "cooldown",
    "holdout",
    "active",
    "budget",
    "mode",
];
const ACTIVE_KEYS: &[&str] = &["from", "until"];
const FOLLOWUP_KEYS: &[&str] = &[
    "id",
    "on",
    "when",
    "template",
    "after",
    "give",
    "holdout",
    "description",
    "mode",
];
const EMAIL_KEYS: &[&str] = &[
    "max_per_customer",
    "quiet_hours",
    "default_time_zone",
    "expire_after",
];
const FREQUENCY_KEYS: &[&str] = &["count", "per"];
const QUIET_KEYS: &[&str] = &["from", "until"];

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

fn list_rule_files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
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
fn version_hash(files: &[Source], templates_dir: &Path) -> String {
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
fn parse_file(src: &Source, c: &mut Collector) -> Option<RuleFile> {
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
                check_table_keys_nested(src, t, RULE_KEYS, "[[rule]]", c, &|k, it, c| {
                    if k == "active" {
                        check_table_keys(src, it, ACTIVE_KEYS, "rule.active", c)
                    }
                })
            }),
            "followup" => each_table(item, |t| {
                check_table_keys(src, t, FOLLOWUP_KEYS, "[[followup]]", c)
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

type KeyVisitor<'a> = dyn Fn(&str, &toml_edit::Item, &mut Collector) + 'a;

fn each_table(item: &toml_edit::Item, mut f: impl FnMut(&toml_edit::Item)) {
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

fn check_table_keys(
    src: &Source,
    item: &toml_edit::Item,
    known: &[&str],
    what: &str,
    c: &mut Collector,
) {
    check_table_keys_nested(src, item, known, what, c, &|_, _, _| {})
}

fn check_table_keys_nested(
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

fn check_keys(
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

/// Ids defined so far, with where, to reject duplicates.
struct Ids<'a> {
    what: &'static str,
    seen: HashMap<String, (&'a Source, usize)>,
}

impl<'a> Ids<'a> {
    fn new(what: &'static str) -> Self {
        Ids {
            what,
            seen: HashMap::new(),
        }
    }
    fn add(&mut self, src: &'a Source, id: &Spanned<String>, c: &mut Collector) {
        let name = id.get_ref();
        if name.trim().is_empty() {
            c.error(
                src,
                &id.span(),
                format!("{} id must not be empty", self.what),
            );
            return;
        }
        if let Some((first, at)) = self.seen.get(name) {
            let (line, col) = first.position(*at);
            c.error(
                src,
                &id.span(),
                format!(
                    "duplicate {} id {name:?} (first defined at {}:{line}:{col})",
                    self.what,
                    first.path.display()
                ),
            );
        } else {
            self.seen.insert(name.clone(), (src, id.span().start));
        }
    }
}

/// The templates that exist on disk, so that references are checked against the files even
/// when a template has an error of its own (reported once, by the template check).
struct TemplateNames {
    notes: Vec<String>,
    emails: Vec<String>,
}

impl TemplateNames {
    fn on_disk(dir: &Path) -> Self {
        let names = |sub: &str, want_dir: bool| -> Vec<String> {
            let mut v: Vec<String> = std::fs::read_dir(dir.join(sub))
                .map(|rd| {
                    rd.flatten()
                        .map(|e| e.path())
                        .filter(|p| {
                            if want_dir {
                                p.is_dir()
                            } else {
                                p.extension().is_some_and(|e| e == "hbs")
                            }
                        })
                        .filter_map(|p| {
                            let name = if want_dir {
                                p.file_name()
                            } else {
                                p.file_stem()
                            };
                            name.map(|n| n.to_string_lossy().into_owned())
                        })
                        .collect()
                })
                .unwrap_or_default();
            v.sort();
            v
        };
        TemplateNames {
            notes: names("notes", false),
            emails: names("emails", true),
        }
    }
    fn has_note(&self, name: &str) -> bool {
        self.notes.iter().any(|n| n == name)
    }
    fn has_email(&self, name: &str) -> bool {
        self.emails.iter().any(|n| n == name)
    }
}

fn build(
    files: &[Source],
    parsed: Vec<(usize, RuleFile)>,
    templates: Templates,
    template_names: &TemplateNames,
    version: String,
    c: &mut Collector,
) -> Option<RuleSet> {
    let mut package: Option<Package> = None;
    let mut email: Option<EmailPolicy> = None;
    let mut package_seen: Option<(&Source, usize)> = None;
    let mut email_seen: Option<(&Source, usize)> = None;

    // First pass: package and insert catalogue, so rules in earlier files may name inserts of later ones.
    let mut insert_ids = Ids::new("insert");
    let mut inserts: Vec<Insert> = Vec::new();
    for (i, file) in &parsed {
        let src = &files[*i];
        if let Some(p) = &file.package {
            if let Some((first, at)) = package_seen {
                let (line, col) = first.position(at);
                c.error(
                    src,
                    &p.span(),
                    format!(
                        "a second [package] (the first is at {}:{line}:{col})",
                        first.path.display()
                    ),
                );
            }
            package_seen = Some((src, p.span().start));
            let spec = p.get_ref();
            let currency = match &spec.currency {
                None => Some(eur()),
                Some(cur) => currency_at(src, cur, c),
            };
            if spec.max_inserts == Some(0) {
                c.error(src, &p.span(), "max_inserts must be at least 1");
            }
            package = currency.map(|currency| Package {
                max_inserts: spec.max_inserts.unwrap_or(3).max(1),
                currency,
            });
        }
    }
    let package = package.unwrap_or(Package {
        max_inserts: 3,
        currency: eur(),
    });

    for (i, file) in &parsed {
        let src = &files[*i];
        for spec in &file.insert {
            insert_ids.add(src, &spec.id, c);
            if let Some(insert) = build_insert(src, spec, template_names, c) {
                inserts.push(insert);
            }
        }
    }
    let insert_index: HashMap<String, usize> = inserts
        .iter()
        .enumerate()
        .map(|(i, x)| (x.id.clone(), i))
        .collect();

    let ty_order = expr::context_type(false);
    let ty_delivery = expr::context_type(true);
    let mut segment_ids = Ids::new("segment");
    let mut segments: Vec<Segment> = Vec::new();
    let mut all_segment_ids: HashSet<String> = HashSet::new();
    for (_, file) in &parsed {
        for s in &file.segment {
            all_segment_ids.insert(s.id.get_ref().clone());
        }
    }
    // Names count as defined even when their condition is broken: that error is reported once,
    // not again at every rule that reads the segment.
    let mut segment_names: Vec<&str> = Vec::new();
    for (i, file) in &parsed {
        let src = &files[*i];
        for spec in &file.segment {
            segment_ids.add(src, &spec.id, c);
            let cond = condition(
                src,
                &spec.when,
                &ty_order,
                Some((&segment_names, &all_segment_ids)),
                c,
            );
            segment_names.push(spec.id.get_ref());
            if let Some(when) = cond {
                segments.push(Segment {
                    id: spec.id.get_ref().clone(),
                    when,
                });
            }
        }
    }

    let mut rule_ids = Ids::new("rule or follow-up");
    let mut rules: Vec<Rule> = Vec::new();
    let mut followups: Vec<Followup> = Vec::new();
    for (i, file) in &parsed {
        let src = &files[*i];
        for spec in &file.rule {
            rule_ids.add(src, &spec.id, c);
            if let Some(rule) = build_rule(
                src,
                spec,
                &insert_index,
                &inserts,
                &ty_order,
                &segment_names,
                &all_segment_ids,
                c,
            ) {
                rules.push(rule);
            }
        }
    }
    for (i, file) in &parsed {
        let src = &files[*i];
        for spec in &file.followup {
            rule_ids.add(src, &spec.id, c);
            if let Some(f) = build_followup(
                src,
                spec,
                &insert_index,
                &inserts,
                template_names,
                (&ty_order, &ty_delivery),
                &segment_names,
                &all_segment_ids,
                c,
            ) {
                followups.push(f);
            }
        }
        if let Some(e) = &file.email {
            if let Some((first, at)) = email_seen {
                let (line, col) = first.position(at);
                c.error(
                    src,
                    &e.span(),
                    format!(
                        "a second [email] (the first is at {}:{line}:{col})",
                        first.path.display()
                    ),
                );
            }
            email_seen = Some((src, e.span().start));
            email = build_email(src, e.get_ref(), c);
        }
    }
    // Stable sort: ties keep file order.
    rules.sort_by_key(|r| std::cmp::Reverse(r.priority));

    Some(RuleSet {
        version,
        package,
        segments,
        inserts,
        rules,
        followups,
        email: email.unwrap_or_default(),
        templates,
        needs: c.needs,
        insert_index,
    })
}

fn eur() -> Currency {
    Currency::try_from("EUR".to_string()).unwrap_or_else(|_| unreachable_currency())
}

#[cold]
fn unreachable_currency() -> Currency {
    // "EUR" is in every ISO 4217 table; this path only exists to avoid a panic on input.
    Currency::try_from("XXX".to_string()).unwrap_or_else(|_| std::process::abort())
}

fn currency_at(src: &Source, s: &Spanned<String>, c: &mut Collector) -> Option<Currency> {
    match s.get_ref().parse::<Currency>() {
        Ok(cur) => Some(cur),
        Err(e) => {
            c.error(src, &s.span(), e);
            None
        }
    }
}

fn money_map(
    src: &Source,
    map: &Spanned<std::collections::BTreeMap<String, Spanned<String>>>,
    what: &str,
    c: &mut Collector,
) -> std::collections::BTreeMap<Currency, Decimal> {
    let mut out = std::collections::BTreeMap::new();
    for (code, amount) in map.get_ref() {
        let cur = match code.parse::<Currency>() {
            Ok(cur) => cur,
            Err(e) => {
                c.error(src, &amount.span(), format!("{what}: {e}"));
                continue;
            }
        };
        match rule_amount(amount.get_ref()) {
            Ok(d) if d >= Decimal::ZERO => {
                out.insert(cur, d);
            }
            Ok(_) => c.error(
                src,
                &amount.span(),
                format!("{what}: an amount must not be negative"),
            ),
            Err(e) => c.error(src, &amount.span(), format!("{what}: {e}")),
        }
    }
    out
}

fn build_insert(
    src: &Source,
    spec: &model::InsertSpec,
    templates: &TemplateNames,
    c: &mut Collector,
) -> Option<Insert> {
    let id = spec.id.get_ref().clone();
    let span = spec.id.span();
    let not_for = |c: &mut Collector, key: &str, kinds: &str| {
        c.error(
            src,
            &span,
            format!("insert {id:?}: `{key}` applies to {kinds} only"),
        );
    };
    let coupon_keys = spec.amount.is_some()
        || spec.min_order.is_some()
        || spec.valid_days.is_some()
        || spec.code_prefix.is_some();
    let item_keys = spec.sku.is_some() || spec.unit_cost.is_some() || spec.stock.is_some();
    let body = match spec.kind {
        InsertKind::Coupon => {
            if item_keys {
                not_for(c, "sku/unit_cost/stock", "gifts, samples and packaging");
            }
            if spec.template.is_some() {
                not_for(c, "template", "notes");
            }
            let Some(amount_spec) = &spec.amount else {
                c.error(
                    src,
                    &span,
                    format!("coupon {id:?} has no `amount` (e.g. amount = {{ EUR = \"10.00\" }})"),
                );
                return None;
            };
            let amount = money_map(src, amount_spec, "amount", c);
            if amount_spec.get_ref().is_empty() {
                c.error(
                    src,
                    &amount_spec.span(),
                    format!("coupon {id:?}: `amount` names no currency"),
                );
            }
            let min_order = spec
                .min_order
                .as_ref()
                .map(|m| money_map(src, m, "min_order", c))
                .unwrap_or_default();
            let code_prefix = match &spec.code_prefix {
                None => "PW".to_string(),
                Some(p) => {
                    let ok = !p.get_ref().is_empty()
                        && p.get_ref().len() <= 16
                        && p.get_ref()
                            .chars()
                            .all(|ch| ch.is_ascii_uppercase() || ch.is_ascii_digit());
                    if !ok {
                        c.error(
                            src,
                            &p.span(),
                            "code_prefix: use 1 to 16 upper-case letters or digits",
                        );
                    }
                    p.get_ref().clone()
                }
            };
            if spec.valid_days == Some(0) {
                c.error(
                    src,
                    &span,
                    format!("coupon {id:?}: valid_days must be at least 1"),
                );
            }
            InsertBody::Coupon(CouponSpec {
                amount,
                min_order,
                valid_days: spec.valid_days.unwrap_or(30),
                code_prefix,
            })
        }
        InsertKind::Note => {
            if coupon_keys {
                not_for(c, "amount/min_order/valid_days/code_prefix", "coupons");
            }
            if item_keys {
                not_for(c, "sku/unit_cost/stock", "gifts, samples and packaging");
            }
            let Some(t) = &spec.template else {
                c.error(
                    src,
                    &span,
                    format!("note {id:?} has no `template` (templates/notes/NAME.hbs)"),
                );
                return None;
            };
            if !templates.has_note(t.get_ref()) {
                let hint = closest(
                    t.get_ref(),
                    templates.notes.iter().map(String::as_str),
                    SharedStart,
                )
                .map(|s| format!(", did you mean {s:?}?"))
                .unwrap_or_default();
                c.error(
                    src,
                    &t.span(),
                    format!(
                        "unknown note template {:?} (no templates/notes/{}.hbs){hint}",
                        t.get_ref(),
                        t.get_ref()
                    ),
                );
            }
            InsertBody::Note {
                template: t.get_ref().clone(),
            }
        }
        InsertKind::Gift | InsertKind::Sample | InsertKind::Packaging => {
            if coupon_keys {
                not_for(c, "amount/min_order/valid_days/code_prefix", "coupons");
            }
            if spec.template.is_some() {
                not_for(c, "template", "notes");
            }
            let unit_cost = match &spec.unit_cost {
                None => Decimal::ZERO,
                Some(u) => match rule_amount(u.get_ref()) {
                    Ok(d) if d >= Decimal::ZERO => d,
                    Ok(_) => {
                        c.error(src, &u.span(), "unit_cost must not be negative");
                        Decimal::ZERO
                    }
                    Err(e) => {
                        c.error(src, &u.span(), format!("unit_cost: {e}"));
                        Decimal::ZERO
                    }
                },
            };
            let stock = spec.stock.as_ref().map(|s| match s.get_ref() {
                StockSpec::Pool(n) => Stock::Pool(*n),
                StockSpec::PerWarehouse(m) => Stock::PerWarehouse(m.clone()),
            });
            InsertBody::Item {
                sku: spec.sku.clone(),
                unit_cost,
                stock,
            }
        }
    };
    Some(Insert {
        id,
        kind: spec.kind,
        title: spec.title.clone(),
        body,
    })
}

fn mode_at(
    src: &Source,
    m: &Option<Spanned<String>>,
    allow_shadow: bool,
    c: &mut Collector,
) -> Mode {
    match m.as_ref().map(|m| (m.get_ref().as_str(), m.span())) {
        None | Some(("live", _)) => Mode::Live,
        Some(("shadow", _)) if allow_shadow => Mode::Shadow,
        Some(("off", _)) => Mode::Off,
        Some((other, span)) => {
            let expected = if allow_shadow {
                "live, shadow or off"
            } else {
                "live or off"
            };
            c.error(
                src,
                &span,
                format!("bad mode {other:?}: expected {expected}"),
            );
            Mode::Live
        }
    }
}

fn percent_at(src: &Source, p: &Option<Spanned<String>>, c: &mut Collector) -> u16 {
    match p {
        None => 0,
        Some(p) => parse_percent(p.get_ref()).unwrap_or_else(|e| {
            c.error(src, &p.span(), format!("holdout: {e}"));
            0
        }),
    }
}

fn duration_at(
    src: &Source,
    d: &Spanned<String>,
    what: &str,
    c: &mut Collector,
) -> Option<Duration> {
    match parse_duration(d.get_ref()) {
        Ok(d) => Some(d),
        Err(e) => {
            c.error(src, &d.span(), format!("{what}: {e}"));
            None
        }
    }
}

fn give_list(
    src: &Source,
    owner: &str,
    give: &[Spanned<String>],
    insert_index: &HashMap<String, usize>,
    inserts: &[Insert],
    coupons_only: bool,
    c: &mut Collector,
) -> Vec<usize> {
    let mut out = Vec::with_capacity(give.len());
    for g in give {
        match insert_index.get(g.get_ref()) {
            Some(i) => {
                if coupons_only && inserts[*i].kind != InsertKind::Coupon {
                    c.error(
                        src,
                        &g.span(),
                        format!(
                            "{owner}: a follow-up can only give coupons, {:?} is a {}",
                            g.get_ref(),
                            inserts[*i].kind.as_str()
                        ),
                    );
                } else if out.contains(i) {
                    c.error(
                        src,
                        &g.span(),
                        format!("{owner}: insert {:?} is given twice", g.get_ref()),
                    );
                } else {
                    out.push(*i);
                }
            }
            None => {
                let hint = closest(
                    g.get_ref(),
                    insert_index.keys().map(String::as_str),
                    SharedStart,
                )
                .map(|s| format!(", did you mean {s:?}?"))
                .unwrap_or_default();
                c.error(
                    src,
                    &g.span(),
                    format!("{owner}: unknown insert {:?}{hint}", g.get_ref()),
                );
            }
        }
    }
    out
}

#[allow(clippy::too_many_arguments)]
fn build_rule(
    src: &Source,
    spec: &model::RuleSpec,
    insert_index: &HashMap<String, usize>,
    inserts: &[Insert],
    ty: &zen_expression::variable::VariableType,
    segments: &[&str],
    all_segments: &HashSet<String>,
    c: &mut Collector,
) -> Option<Rule> {
    let id = spec.id.get_ref().clone();
    let owner = format!("rule {id:?}");
    let when = condition(src, &spec.when, ty, Some((segments, all_segments)), c);
    if spec.give.is_empty() {
        c.error(
            src,
            &spec.id.span(),
            format!("{owner} gives nothing: `give` lists no insert"),
        );
    }
    let give = give_list(src, &owner, &spec.give, insert_index, inserts, false, c);
    let cooldown = spec
        .cooldown
        .as_ref()
        .and_then(|d| duration_at(src, d, "cooldown", c));
    let holdout_bp = percent_at(src, &spec.holdout, c);
    let (mut active_from, mut active_until) = (None, None);
    if let Some(a) = &spec.active {
        let parse = |s: &Option<Spanned<String>>, c: &mut Collector| {
            s.as_ref().and_then(|s| match parse_date(s.get_ref()) {
                Ok(d) => Some(d),
                Err(e) => {
                    c.error(src, &s.span(), format!("active: {e}"));
                    None
                }
            })
        };
        active_from = parse(&a.get_ref().from, c);
        active_until = parse(&a.get_ref().until, c);
        if let (Some(f), Some(u)) = (active_from, active_until)
            && f > u
        {
            c.error(
                src,
                &a.span(),
                format!("active: `from` ({f}) is after `until` ({u})"),
            );
        }
    }
    let budget = spec.budget.as_ref().and_then(|b| build_budget(src, b, c));
    let mode = mode_at(src, &spec.mode, true, c);
    Some(Rule {
        id,
        when: when?,
        give,
        priority: spec.priority.unwrap_or(0),
        group: spec.group.clone(),
        cooldown,
        holdout_bp,
        active_from,
        active_until,
        budget,
        mode,
    })
}

fn build_budget(
    src: &Source,
    b: &Spanned<std::collections::BTreeMap<String, Spanned<String>>>,
    c: &mut Collector,
) -> Option<Budget> {
    let mut map = b.get_ref().clone();
    let per = match map.remove("per") {
        None => {
            c.error(
                src,
                &b.span(),
                "budget: `per` is missing (\"month\", \"week\" or \"day\")",
            );
            return None;
        }
        Some(p) => match p.get_ref().as_str() {
            "month" => Period::Month,
            "week" => Period::Week,
            "day" => Period::Day,
            other => {
                c.error(
                    src,
                    &p.span(),
                    format!(
                        "budget: bad period {other:?}: expected \"month\", \"week\" or \"day\""
                    ),
                );
                return None;
            }
        },
    };
    if map.is_empty() {
        c.error(
            src,
            &b.span(),
            "budget: name at least one currency, e.g. { EUR = \"2000.00\", per = \"month\" }",
        );
        return None;
    }
    let spanned = Spanned::new(b.span(), map);
    let limits = money_map(src, &spanned, "budget", c);
    Some(Budget { per, limits })
}

#[allow(clippy::too_many_arguments)]
fn build_followup(
    src: &Source,
    spec: &model::FollowupSpec,
    insert_index: &HashMap<String, usize>,
    inserts: &[Insert],
    templates: &TemplateNames,
    types: (
        &zen_expression::variable::VariableType,
        &zen_expression::variable::VariableType,
    ),
    segments: &[&str],
    all_segments: &HashSet<String>,
    c: &mut Collector,
) -> Option<Followup> {
    let id = spec.id.get_ref().clone();
    let owner = format!("follow-up {id:?}");
    let on = match spec.on.get_ref().as_str() {
        "order.placed" => Some(Trigger::OrderPlaced),
        "order.shipped" => Some(Trigger::OrderShipped),
        "order.delivered" => Some(Trigger::OrderDelivered),
        other => {
            c.error(
                src,
                &spec.on.span(),
                format!(
                    "bad `on` {other:?}: expected order.placed, order.shipped or order.delivered"
                ),
            );
            None
        }
    };
    let ty = if on == Some(Trigger::OrderDelivered) {
        types.1
    } else {
        types.0
    };
    let when = match &spec.when {
        None => Some(None),
        Some(w) => condition(src, w, ty, Some((segments, all_segments)), c).map(Some),
    };
    if !templates.has_email(spec.template.get_ref()) {
        let hint = closest(
            spec.template.get_ref(),
            templates.emails.iter().map(String::as_str),
            SharedStart,
        )
        .map(|s| format!(", did you mean {s:?}?"))
        .unwrap_or_default();
        c.error(
            src,
            &spec.template.span(),
            format!(
                "unknown e-mail template {:?} (no templates/emails/{}/){hint}",
                spec.template.get_ref(),
                spec.template.get_ref()
            ),
        );
    }
    let after = duration_at(src, &spec.after, "after", c);
    let give = give_list(src, &owner, &spec.give, insert_index, inserts, true, c);
    let holdout_bp = percent_at(src, &spec.holdout, c);
    let mode = mode_at(src, &spec.mode, false, c);
    Some(Followup {
        id,
        on: on?,
        when: when?,
        template: spec.template.get_ref().clone(),
        after: after?,
        give,
        holdout_bp,
        mode,
    })
}

fn build_email(src: &Source, spec: &model::EmailSpec, c: &mut Collector) -> Option<EmailPolicy> {
    let mut policy = EmailPolicy::default();
    if let Some(f) = &spec.max_per_customer {
        if f.count == 0 {
            c.error(
                src,
                &f.per.span(),
                "max_per_customer: count must be at least 1",
            );
        }
        if let Some(per) = duration_at(src, &f.per, "max_per_customer.per", c) {
            policy.max_per_customer = Some((f.count, per));
        }
    }
    if let Some(q) = &spec.quiet_hours {
        let from = parse_time_of_day(q.from.get_ref())
            .map_err(|e| c.error(src, &q.from.span(), format!("quiet_hours.from: {e}")));
        let until = parse_time_of_day(q.until.get_ref())
            .map_err(|e| c.error(src, &q.until.span(), format!("quiet_hours.until: {e}")));
        if let (Ok(f), Ok(u)) = (from, until) {
            policy.quiet_hours = Some((f, u));
        }
    }
    if let Some(tz) = &spec.default_time_zone {
        match tz.get_ref().parse::<Tz>() {
            Ok(t) => policy.default_time_zone = t,
            Err(_) => c.error(
                src,
                &tz.span(),
                format!("unknown IANA time zone {:?}", tz.get_ref()),
            ),
        }
    }
    if let Some(e) = &spec.expire_after
        && let Some(d) = duration_at(src, e, "expire_after", c)
    {
        policy.expire_after = d;
    }
    Some(policy)
}

/// Checks and compiles one condition, positioning every finding inside the file.
fn condition(
    src: &Source,
    when: &Spanned<String>,
    ty: &zen_expression::variable::VariableType,
    segments: Option<(&[&str], &HashSet<String>)>,
    c: &mut Collector,
) -> Option<Condition> {
    let text = when.get_ref();
    let base = src.string_content_start(&when.span());
    if let Some(v) = super::limits::check_expression(text) {
        c.at(src, base + v.offset, false, format!("when: {}", v.message));
        return None;
    }
    // zen-expression is third-party code fed the marketer's text: a panic in it must be a
    // finding, not a crashed `validate` (the reload thread has its own guard as well).
    let checked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        expr::check(text, ty, segments)
    }));
    let Ok(check): Result<ExprCheck, _> = checked else {
        c.at(
            src,
            base,
            false,
            "when: the expression parser failed on this condition",
        );
        return None;
    };
    for path in &check.reads {
        c.needs.add(path);
    }
    let mut failed = false;
    for f in &check.findings {
        failed |= !f.warning;
        c.at(src, base + f.span.0, f.warning, f.message.clone());
    }
    if failed {
        return None;
    }
    let compiled = std::panic::catch_unwind(|| expr::compile(text))
        .unwrap_or_else(|_| Err("the expression compiler failed on it".to_string()));
    match compiled {
        Ok(expr) => Some(Condition {
            source: text.clone(),
            expr,
        }),
        Err(e) => {
            c.at(
                src,
                base,
                false,
                format!("expression does not compile: {e}"),
            );
            None
        }
    }
}

/// An amount in a rule file: exact, with at most 4 decimals (counters of money are kept in
/// 1/10000 units so that both databases compare them exactly).
fn rule_amount(s: &str) -> Result<Decimal, String> {
    let d = parse_amount(s)?;
    if d.normalize().scale() > 4 {
        return Err(format!("{s:?} has more than 4 decimals"));
    }
    Ok(d)
}

//! Templates for packing-station notes and e-mails (CONTRACT §5, §6).
//!
//! This module owns the template folder (`notes/NAME.hbs`, `emails/NAME/{subject,html,text}.hbs`),
//! the shape of the data a template may read, the check that `packwell validate` runs over every
//! template's syntax tree, the `money` and `date` helpers, and rendering (HTML escaped, text
//! parts not, a text part derived from the HTML when an e-mail has no `text.hbs`).
//! It builds no context itself: callers pass the JSON object described in CONTRACT §6, with
//! every key present (strict mode turns a missing key into an error, a null into nothing).

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use handlebars::template::{
    BlockParam, HelperTemplate, Parameter, Subexpression, Template, TemplateElement,
};
use handlebars::{Handlebars, PathSeg, RenderErrorReason};
use serde_json::Value;

use crate::suggest::{Likeness, closest};

mod compiled;
mod format;
pub mod limits;
mod text;

use compiled::Program;
pub use format::{DateHelper, MoneyHelper, format_date, format_money};
pub use limits::{TemplateKind, check_template};
pub use text::html_to_text;

/// Helpers that handlebars 6 registers itself (`Registry::new`, without the optional
/// `string_helpers` feature); together with [`PACKWELL_HELPERS`] the only names a template may
/// call.
pub const BUILTIN_HELPERS: &[&str] = &[
    "if", "unless", "each", "with", "lookup", "raw", "log", "eq", "ne", "gt", "gte", "lt", "lte",
    "and", "or", "not", "len",
];

/// Helpers Packwell adds.
pub const PACKWELL_HELPERS: &[&str] = &["money", "date"];

/// One problem found in a template file, positioned for a marketer's editor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateIssue {
    pub file: PathBuf,
    pub line: usize,
    pub col: usize,
    pub message: String,
}

impl fmt::Display for TemplateIssue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}",
            self.file.display(),
            self.line,
            self.col,
            self.message
        )
    }
}

/// An e-mail as rendered for one customer.
/// Template data as handlebars holds it (see [`Templates::render_note_with`]).
pub type TemplateData = handlebars::Context;

#[derive(Debug, Clone, serde::Serialize, PartialEq, Eq)]
pub struct RenderedEmail {
    pub subject: String,
    pub html: String,
    pub text: String,
}

#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error("no note template named {0:?}")]
    UnknownNote(String),
    #[error("no e-mail template named {0:?}")]
    UnknownEmail(String),
    #[error("{}", describe_render_failure(.template, .source))]
    Template {
        /// The template's path inside the templates folder, e.g. `emails/thanks/html.hbs`.
        template: String,
        #[source]
        source: handlebars::RenderError,
    },
    #[error("{template}: the text part could not be derived from the HTML: {message}")]
    TextFromHtml { template: String, message: String },
}

/// A value the `money` or `date` formatting could not handle.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct FormatError(String);

/// The parts of the template data (CONTRACT §6) that templates read, so that callers build
/// only those: a top-level key, whole or some of its members. A template that the fast path
/// does not render needs everything (handlebars may read anything).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DataNeeds {
    everything: bool,
    /// Top-level key -> the members read, or `None` for all of them.
    keys: BTreeMap<String, Option<std::collections::BTreeSet<String>>>,
}

impl DataNeeds {
    pub fn everything() -> DataNeeds {
        DataNeeds {
            everything: true,
            keys: BTreeMap::new(),
        }
    }

    /// Whether the top-level `key` is read at all.
    pub fn wants(&self, key: &str) -> bool {
        self.everything || self.keys.contains_key(key)
    }

    /// Whether the member `field` of the top-level `key` is read.
    pub fn wants_member(&self, key: &str, field: &str) -> bool {
        self.everything
            || match self.keys.get(key) {
                Some(None) => true,
                Some(Some(fields)) => fields.contains(field),
                None => false,
            }
    }

    /// A path read from the top of the data: its first name, and its second (a value read
    /// whole from there on).
    fn add(&mut self, path: &[Box<str>]) {
        match path {
            [] => self.everything = true,
            [key] => {
                self.keys.insert(key.to_string(), None);
            }
            [key, field, ..] => {
                let entry = self
                    .keys
                    .entry(key.to_string())
                    .or_insert_with(|| Some(Default::default()));
                if let Some(fields) = entry {
                    fields.insert(field.to_string());
                }
            }
        }
    }

    fn merge(&mut self, other: &DataNeeds) {
        self.everything |= other.everything;
        for (key, fields) in &other.keys {
            match (self.keys.get_mut(key), fields) {
                (None, _) => {
                    self.keys.insert(key.clone(), fields.clone());
                }
                (Some(mine @ Some(_)), None) => *mine = None,
                (Some(Some(mine)), Some(theirs)) => mine.extend(theirs.iter().cloned()),
                (Some(None), _) => {}
            }
        }
    }

    /// What a template needs: its program's reads, or everything without a program.
    fn of(program: Option<&Program>) -> DataNeeds {
        program.map_or_else(DataNeeds::everything, |p| p.needs().clone())
    }
}

/// All templates of a folder, parsed and checked once; cheap to clone (Arc inside), Send + Sync.
#[derive(Clone)]
pub struct Templates {
    inner: Arc<Inner>,
}

struct Inner {
    /// Note name -> its program, when it compiles to one (see [`compiled`]).
    notes: BTreeMap<String, Option<Program>>,
    /// What the notes read, all of them together.
    note_needs: DataNeeds,
    emails: BTreeMap<String, EmailParts>,
    /// Escapes every value: used for `html.hbs` only.
    html: Handlebars<'static>,
    /// No escaping: notes are printed, subjects and text parts are not HTML.
    plain: Handlebars<'static>,
}

/// The programs of an e-mail's parts, where they compile to one; handlebars renders the rest.
struct EmailParts {
    /// What the parts read, together.
    needs: DataNeeds,
    subject: Option<Program>,
    html: Option<Program>,
    /// Whether the folder has its own `text.hbs`, and its program.
    has_text: bool,
    text: Option<Program>,
}

impl fmt::Debug for Templates {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Templates")
            .field("notes", &self.inner.notes.keys().collect::<Vec<_>>())
            .field("emails", &self.inner.emails.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl Templates {
    /// Loads `dir/notes/NAME.hbs` and `dir/emails/NAME/{subject.hbs, html.hbs, text.hbs?}`.
    /// A missing `dir` means no templates (Ok, empty). Returns every problem found at once.
    pub fn load(dir: &Path) -> Result<Templates, Vec<TemplateIssue>> {
        let mut loader = Loader::default();
        match std::fs::metadata(dir) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Templates::empty()),
            Err(e) => loader.issue(dir, format!("cannot read the templates folder: {e}")),
            Ok(meta) if !meta.is_dir() => loader.issue(dir, "is not a folder".to_owned()),
            Ok(_) => {
                loader.load_notes(&dir.join("notes"));
                loader.load_emails(&dir.join("emails"));
            }
        }
        loader.finish()
    }

    pub fn empty() -> Templates {
        Templates {
            inner: Arc::new(Inner {
                notes: BTreeMap::new(),
                note_needs: DataNeeds::default(),
                emails: BTreeMap::new(),
                html: registry(true),
                plain: registry(false),
            }),
        }
    }

    pub fn has_note(&self, name: &str) -> bool {
        self.inner.notes.contains_key(name)
    }

    pub fn has_email(&self, name: &str) -> bool {
        self.inner.emails.contains_key(name)
    }

    pub fn note_names(&self) -> Vec<String> {
        self.inner.notes.keys().cloned().collect()
    }

    pub fn email_names(&self) -> Vec<String> {
        self.inner.emails.keys().cloned().collect()
    }

    /// What the notes read of their data (the engine builds that once per decision).
    pub fn note_needs(&self) -> &DataNeeds {
        &self.inner.note_needs
    }

    /// What an e-mail's parts read of their data; everything for an unknown e-mail.
    pub fn email_needs(&self, name: &str) -> &DataNeeds {
        static EVERYTHING: DataNeeds = DataNeeds {
            everything: true,
            keys: BTreeMap::new(),
        };
        self.inner
            .emails
            .get(name)
            .map_or(&EVERYTHING, |parts| &parts.needs)
    }

    pub fn render_note(&self, name: &str, ctx: &Value) -> Result<String, RenderError> {
        let Some(program) = self.inner.notes.get(name) else {
            return Err(RenderError::UnknownNote(name.to_owned()));
        };
        if let Some(out) = program.as_ref().and_then(|p| p.render(ctx)) {
            return Ok(out);
        }
        render(&self.inner.plain, &note_key(name), ctx)
    }

    /// Renders a note from data built beforehand: the engine builds it once per decision and
    /// swaps only the coupons between notes, instead of copying the whole context per render.
    pub fn render_note_with(&self, name: &str, data: &TemplateData) -> Result<String, RenderError> {
        let Some(program) = self.inner.notes.get(name) else {
            return Err(RenderError::UnknownNote(name.to_owned()));
        };
        render_with(&self.inner.plain, program.as_ref(), || note_key(name), data)
    }

    pub fn render_email(&self, name: &str, ctx: &Value) -> Result<RenderedEmail, RenderError> {
        if !self.has_email(name) {
            return Err(RenderError::UnknownEmail(name.to_owned()));
        }
        // One handlebars context for the two or three parts: `Handlebars::render` would
        // serialize the data into a context of its own for each of them.
        self.render_email_with(name, &TemplateData::from(ctx.clone()))
    }

    /// Renders an e-mail from data built beforehand, as [`Templates::render_note_with`] does
    /// a note: the sender moves the data it has just built into a context, and nothing is
    /// copied.
    pub fn render_email_with(
        &self,
        name: &str,
        data: &TemplateData,
    ) -> Result<RenderedEmail, RenderError> {
        let Some(parts) = self.inner.emails.get(name) else {
            return Err(RenderError::UnknownEmail(name.to_owned()));
        };
        let subject = render_with(
            &self.inner.plain,
            parts.subject.as_ref(),
            || email_key(name, "subject"),
            data,
        )?;
        let html = render_with(
            &self.inner.html,
            parts.html.as_ref(),
            || email_key(name, "html"),
            data,
        )?;
        let text = if parts.has_text {
            render_with(
                &self.inner.plain,
                parts.text.as_ref(),
                || email_key(name, "text"),
                data,
            )?
        } else {
            html_to_text(&html).map_err(|message| RenderError::TextFromHtml {
                template: email_key(name, "html"),
                message,
            })?
        };
        Ok(RenderedEmail {
            // A subject is one header line: a newline from a template or from customer data
            // must not start another header.
            subject: collapse_whitespace(&subject),
            html,
            text,
        })
    }
}

fn note_key(name: &str) -> String {
    format!("notes/{name}.hbs")
}

fn email_key(name: &str, part: &str) -> String {
    format!("emails/{name}/{part}.hbs")
}

fn registry(escape_html: bool) -> Handlebars<'static> {
    let mut hb = Handlebars::new();
    hb.set_strict_mode(true);
    if !escape_html {
        hb.register_escape_fn(handlebars::no_escape);
    }
    hb.register_helper("money", Box::new(MoneyHelper));
    hb.register_helper("date", Box::new(DateHelper));
    hb
}

fn render(hb: &Handlebars<'static>, key: &str, ctx: &Value) -> Result<String, RenderError> {
    hb.render(key, ctx).map_err(|source| RenderError::Template {
        template: key.to_owned(),
        source,
    })
}

/// The program's output where it renders the data, else handlebars' (output or error).
fn render_with(
    hb: &Handlebars<'static>,
    program: Option<&Program>,
    key: impl FnOnce() -> String,
    data: &TemplateData,
) -> Result<String, RenderError> {
    if let Some(out) = program.and_then(|p| p.render(data.data())) {
        return Ok(out);
    }
    let key = key();
    hb.render_with_context(&key, data)
        .map_err(|source| RenderError::Template {
            template: key,
            source,
        })
}

fn describe_render_failure(template: &str, err: &handlebars::RenderError) -> String {
    let what = match err.reason() {
        RenderErrorReason::MissingVariable(Some(path)) => {
            format!("variable {path} is missing from the data")
        }
        RenderErrorReason::MissingVariable(None) => "a variable is missing from the data".into(),
        RenderErrorReason::Other(message) => message.clone(),
        other => other.to_string(),
    };
    match (err.line_no, err.column_no) {
        (Some(line), Some(col)) => format!("{template}:{line}:{col}: {what}"),
        _ => format!("{template}: {what}"),
    }
}

fn collapse_whitespace(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for word in s.split_whitespace() {
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(word);
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Loading

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Part {
    Note,
    Subject,
    Html,
    Text,
}

#[derive(Default)]
struct Loader {
    issues: Vec<TemplateIssue>,
    /// Checked templates, registered only when the whole folder is clean.
    notes: Vec<(String, Template)>,
    emails: Vec<(String, Template, Template, Option<Template>)>,
}

impl Loader {
    fn issue(&mut self, file: &Path, message: String) {
        self.issues.push(TemplateIssue {
            file: file.to_path_buf(),
            line: 1,
            col: 1,
            message,
        });
    }

    /// Entries of a folder sorted by name, without hidden files; `None` when it does not exist.
    fn list(&mut self, dir: &Path) -> Option<Vec<(String, PathBuf, bool)>> {
        let entries = match std::fs::read_dir(dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
            Err(e) => {
                self.issue(dir, format!("cannot read the folder: {e}"));
                return None;
            }
        };
        let mut out = Vec::new();
        for entry in entries {
            let entry = match entry {
                Ok(entry) => entry,
                Err(e) => {
                    self.issue(dir, format!("cannot read the folder: {e}"));
                    continue;
                }
            };
            let path = entry.path();
            let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
                self.issue(&path, "the file name is not UTF-8".to_owned());
                continue;
            };
            if name.starts_with('.') {
                continue;
            }
            // metadata() follows symlinks, so a linked template counts like a copied one.
            let is_dir = std::fs::metadata(&path)
                .map(|m| m.is_dir())
                .unwrap_or(false);
            out.push((name, path, is_dir));
        }
        out.sort();
        Some(out)
    }

    fn load_notes(&mut self, dir: &Path) {
        let Some(entries) = self.list(dir) else {
            return;
        };
        for (file_name, path, is_dir) in entries {
            let Some(name) = file_name.strip_suffix(".hbs") else {
                continue;
            };
            if is_dir {
                continue;
            }
            if name.is_empty() {
                self.issue(&path, "a note template needs a name before .hbs".to_owned());
                continue;
            }
            if let Some(template) = self.read_and_check(&path, &note_key(name), Part::Note) {
                self.notes.push((name.to_owned(), template));
            }
        }
    }

    fn load_emails(&mut self, dir: &Path) {
        let Some(entries) = self.list(dir) else {
            return;
        };
        for (name, path, is_dir) in entries {
            if !is_dir {
                if name.ends_with(".hbs") {
                    self.issue(
                        &path,
                        "an e-mail is a folder: emails/NAME/ with subject.hbs, html.hbs and \
                         optionally text.hbs"
                            .to_owned(),
                    );
                }
                continue;
            }
            self.load_email(&name, &path);
        }
    }

    fn load_email(&mut self, name: &str, dir: &Path) {
        for (file_name, path, _) in self.list(dir).unwrap_or_default() {
            let known = matches!(file_name.as_str(), "subject.hbs" | "html.hbs" | "text.hbs");
            if file_name.ends_with(".hbs") && !known {
                self.issue(
                    &path,
                    "unknown e-mail part: an e-mail folder holds subject.hbs, html.hbs and \
                     optionally text.hbs"
                        .to_owned(),
                );
            }
        }
        let required = |loader: &mut Loader, part: &str, kind: Part| {
            let path = dir.join(format!("{part}.hbs"));
            if path.is_file() {
                loader.read_and_check(&path, &email_key(name, part), kind)
            } else {
                loader.issue(
                    &path,
                    format!("missing: the e-mail {name:?} needs subject.hbs and html.hbs"),
                );
                None
            }
        };
        let subject = required(self, "subject", Part::Subject);
        let html = required(self, "html", Part::Html);
        let text_path = dir.join("text.hbs");
        let text = if text_path.is_file() {
            // Outer None: text.hbs is there but broken; inner None: there is none.
            self.read_and_check(&text_path, &email_key(name, "text"), Part::Text)
                .map(Some)
        } else {
            Some(None)
        };
        if let (Some(subject), Some(html), Some(text)) = (subject, html, text) {
            self.emails.push((name.to_owned(), subject, html, text));
        }
    }

    fn read_and_check(&mut self, path: &Path, key: &str, part: Part) -> Option<Template> {
        let source = match limits::read_template_file(path) {
            Ok(source) => source,
            Err((line, col, message)) => {
                self.issues.push(TemplateIssue {
                    file: path.to_path_buf(),
                    line,
                    col,
                    message,
                });
                return None;
            }
        };
        let (template, issues) = check_source(path, &source, key, part);
        let clean = issues.is_empty();
        self.issues.extend(issues);
        template.filter(|_| clean)
    }

    fn finish(mut self) -> Result<Templates, Vec<TemplateIssue>> {
        if !self.issues.is_empty() {
            self.issues.sort_by(|a, b| {
                (&a.file, a.line, a.col, &a.message).cmp(&(&b.file, b.line, b.col, &b.message))
            });
            self.issues.dedup();
            return Err(self.issues);
        }
        let mut html = registry(true);
        let mut plain = registry(false);
        let mut notes = BTreeMap::new();
        let mut note_needs = DataNeeds::default();
        let mut emails = BTreeMap::new();
        for (name, template) in self.notes {
            let program = Program::compile(&template, false);
            note_needs.merge(&DataNeeds::of(program.as_ref()));
            plain.register_template(&note_key(&name), template);
            notes.insert(name, program);
        }
        for (name, subject, html_part, text) in self.emails {
            let subject_program = Program::compile(&subject, false);
            let html_program = Program::compile(&html_part, true);
            let text_program = text.as_ref().and_then(|t| Program::compile(t, false));
            let mut needs = DataNeeds::of(subject_program.as_ref());
            needs.merge(&DataNeeds::of(html_program.as_ref()));
            if text.is_some() {
                needs.merge(&DataNeeds::of(text_program.as_ref()));
            }
            let parts = EmailParts {
                needs,
                subject: subject_program,
                html: html_program,
                has_text: text.is_some(),
                text: text_program,
            };
            plain.register_template(&email_key(&name, "subject"), subject);
            html.register_template(&email_key(&name, "html"), html_part);
            if let Some(text) = text {
                plain.register_template(&email_key(&name, "text"), text);
            }
            emails.insert(name, parts);
        }
        Ok(Templates {
            inner: Arc::new(Inner {
                notes,
                note_needs,
                emails,
                html,
                plain,
            }),
        })
    }
}

/// Parses one template and checks it; the template is returned even with issues so that a
/// caller can tell "did not parse" (None) from "parsed, but names unknown things".
fn check_source(
    file: &Path,
    source: &str,
    key: &str,
    part: Part,
) -> (Option<Template>, Vec<TemplateIssue>) {
    // Before the parser, which recurses once per nesting level (see `limits`).
    if let Some(v) = limits::check_template_limits(source) {
        let (line, col) = line_col(source, v.offset);
        let issue = TemplateIssue {
            file: file.to_path_buf(),
            line,
            col,
            message: v.message,
        };
        return (None, vec![issue]);
    }
    // The handlebars parser has internal unwraps; a template that trips one must become an
    // issue for the marketer, not a crashed `validate` or service.
    let compiled = std::panic::catch_unwind(|| Template::compile_with_name(source, key.to_owned()));
    let template = match compiled {
        Ok(Ok(template)) => template,
        Ok(Err(e)) => {
            let (mut line, mut col) = e.pos().unwrap_or((1, 1));
            let mut reason = parse_reason(&e, source);
            // Handlebars reports an unclosed block at the end of the file; point at the block
            // that was opened instead, which is where the marketer has to look.
            if reason.starts_with("a block is not closed")
                && let Some((name, at)) = unclosed_block(source)
            {
                (line, col) = line_col(source, at);
                reason = format!("{{{{#{name}}}}} is not closed: add {{{{/{name}}}}}");
            }
            let issue = TemplateIssue {
                file: file.to_path_buf(),
                line,
                col,
                message: format!("template does not parse: {reason}"),
            };
            return (None, vec![issue]);
        }
        Err(_) => {
            let issue = TemplateIssue {
                file: file.to_path_buf(),
                line: 1,
                col: 1,
                message: "template does not parse (the parser failed on it)".to_owned(),
            };
            return (None, vec![issue]);
        }
    };
    let mut checker = Checker::new(file, source, part);
    checker.template(&template, Pos { line: 1, col: 1 });
    (Some(template), checker.issues)
}

/// The innermost block opened (`{{#name`) and never closed, with its byte offset.
fn unclosed_block(source: &str) -> Option<(String, usize)> {
    let tags = regex::Regex::new(r"\{\{~?\s*([#/])\s*([A-Za-z_][\w.-]*)").ok()?;
    let mut open: Vec<(String, usize)> = Vec::new();
    for cap in tags.captures_iter(source) {
        let (Some(whole), Some(kind), Some(name)) = (cap.get(0), cap.get(1), cap.get(2)) else {
            continue;
        };
        if kind.as_str() == "#" {
            open.push((name.as_str().to_owned(), whole.start()));
        } else if open.last().is_some_and(|(n, _)| n == name.as_str()) {
            open.pop();
        }
    }
    open.pop()
}

/// 1-based line and column (in characters) of a byte offset.
fn line_col(source: &str, offset: usize) -> (usize, usize) {
    let before = source.get(..offset).unwrap_or("");
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

fn parse_reason(e: &handlebars::TemplateError, source: &str) -> String {
    let handlebars::TemplateErrorReason::InvalidSyntax(text) = e.reason() else {
        return e.reason().to_string();
    };
    // pest names grammar rules ("expected helper_block_end, ..."); say what they mean.
    let at_end = e.pos().is_some_and(|(line, col)| {
        let last_line = source.lines().count().max(1);
        line > last_line
            || (line == last_line && col > source.lines().last().map_or(0, |l| l.chars().count()))
    });
    if text.contains("helper_block_end") && at_end {
        "a block is not closed: every {{#name ...}} needs its {{/name}}".to_owned()
    } else if text.contains("trailing_tilde_to_omit_whitespace") {
        "the tag is not closed: expected }}".to_owned()
    } else if text.contains("path_inline") || text.contains("identifier") {
        "expected a variable or helper name inside {{ }}".to_owned()
    } else {
        // Keep pest's last line ("expected ..."), not its copy of the source.
        let last = text
            .lines()
            .map(str::trim)
            .rfind(|l| !l.is_empty())
            .unwrap_or("invalid syntax");
        format!(
            "invalid handlebars syntax: {}",
            last.trim_start_matches("= ")
        )
    }
}

// ---------------------------------------------------------------------------------------------
// What a template may read (CONTRACT §6)

#[derive(Clone, Copy, Debug)]
enum Ty {
    /// Not known statically (an object's values under `#each`, a helper's result): anything goes.
    Any,
    /// A string, number, boolean or null: has no members.
    Scalar,
    Object(&'static [(&'static str, Ty)]),
    List(&'static Ty),
}

const S: Ty = Ty::Scalar;
const STRINGS: Ty = Ty::List(&Ty::Scalar);
const ITEM: Ty = Ty::Object(&[
    ("sku", S),
    ("name", S),
    ("category", S),
    ("quantity", S),
    ("unit_price", S),
]);
const COUPON: Ty = Ty::Object(&[
    ("code", S),
    ("title", S),
    ("amount", S),
    ("currency", S),
    ("min_order", S),
    ("expires_on", S),
]);
const CUSTOMER: Ty = Ty::Object(&[
    ("first_name", S),
    ("last_name", S),
    ("email", S),
    ("orders_count", S),
    ("lifetime_spend", S),
    ("categories_bought", STRINGS),
    ("nps_group", S),
]);
const ORDER: Ty = Ty::Object(&[
    ("id", S),
    ("total", S),
    ("currency", S),
    ("items", Ty::List(&ITEM)),
    ("categories", STRINGS),
    ("placed_at", S),
]);
const DELIVERY: Ty = Ty::Object(&[("delivered_at", S), ("late_days", S)]);
const SHOP: Ty = Ty::Object(&[("name", S), ("url", S)]);
const NOTE_ROOT: Ty = Ty::Object(&[
    ("customer", CUSTOMER),
    ("order", ORDER),
    ("coupons", Ty::List(&COUPON)),
    ("coupon", COUPON),
    ("delivery", DELIVERY),
    ("shop", SHOP),
    ("locale", S),
]);
const EMAIL_ROOT: Ty = Ty::Object(&[
    ("customer", CUSTOMER),
    ("order", ORDER),
    ("coupons", Ty::List(&COUPON)),
    ("coupon", COUPON),
    ("delivery", DELIVERY),
    ("shop", SHOP),
    ("locale", S),
    ("unsubscribe_url", S),
]);

/// Members only e-mails have, so a note that names one gets a message saying why.
const EMAIL_ONLY: &[&str] = &["unsubscribe_url"];

// ---------------------------------------------------------------------------------------------
// The syntax-tree walk

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Pos {
    line: usize,
    col: usize,
}

/// One handlebars block context: only `#each` and `#with` open one (as in handlebars-rust),
/// so `../` inside `#if` climbs the same number of levels as at render time.
struct Scope {
    this: Ty,
    block_params: Vec<(String, Ty)>,
    each: bool,
}

struct Checker<'a> {
    file: &'a Path,
    source: &'a str,
    line_starts: Vec<usize>,
    part: Part,
    root: Ty,
    scopes: Vec<Scope>,
    issues: Vec<TemplateIssue>,
}

impl<'a> Checker<'a> {
    fn new(file: &'a Path, source: &'a str, part: Part) -> Checker<'a> {
        let mut line_starts = vec![0];
        line_starts.extend(source.match_indices('\n').map(|(i, _)| i + 1));
        let root = if part == Part::Note {
            NOTE_ROOT
        } else {
            EMAIL_ROOT
        };
        Checker {
            file,
            source,
            line_starts,
            part,
            root,
            scopes: vec![Scope {
                this: root,
                block_params: Vec::new(),
                each: false,
            }],
            issues: Vec::new(),
        }
    }

    fn report(&mut self, pos: Pos, message: String) {
        self.issues.push(TemplateIssue {
            file: self.file.to_path_buf(),
            line: pos.line,
            col: pos.col,
            message,
        });
    }

    fn template(&mut self, template: &Template, fallback: Pos) {
        for (i, element) in template.elements.iter().enumerate() {
            // `{{else if}}` chains are stored as templates without a mapping: they take the
            // position the caller found for their `{{else` tag.
            let pos = template.mapping.get(i).map_or(fallback, |m| Pos {
                line: m.0,
                col: m.1,
            });
            self.element(element, pos);
        }
    }

    fn element(&mut self, element: &TemplateElement, pos: Pos) {
        match element {
            TemplateElement::Expression(ht) => {
                self.expression(ht, pos);
            }
            TemplateElement::HtmlExpression(ht) => {
                if self.part == Part::Html {
                    self.report(
                        pos,
                        "{{{ }}} turns HTML escaping off; write {{ }} so every value is escaped"
                            .to_owned(),
                    );
                }
                self.expression(ht, pos);
            }
            TemplateElement::HelperBlock(ht) => self.block(ht, pos),
            TemplateElement::PartialExpression(_) | TemplateElement::PartialBlock(_) => self
                .report(
                    pos,
                    "partials ({{> ...}}) are not supported: each template stands alone".to_owned(),
                ),
            TemplateElement::DecoratorExpression(_) | TemplateElement::DecoratorBlock(_) => {
                self.report(pos, "decorators ({{* ...}}) are not supported".to_owned())
            }
            _ => {}
        }
    }

    /// `{{name}}`, `{{helper args}}` or a subexpression; returns the type of its value.
    fn expression(&mut self, ht: &HelperTemplate, pos: Pos) -> Ty {
        let name_only = !ht.block && ht.params.is_empty() && ht.hash.is_empty();
        match &ht.name {
            Parameter::Path(path) if name_only => {
                let raw = path_raw(path);
                // Handlebars calls a registered helper before it looks a bare name up.
                if is_helper(raw) {
                    self.helper_call(raw, ht, pos);
                    Ty::Any
                } else {
                    self.path(path, pos)
                }
            }
            Parameter::Subexpression(sub) => self.subexpression(sub, pos),
            Parameter::Literal(_) => Ty::Any,
            name => {
                let name = name.as_name().unwrap_or_default().to_owned();
                self.helper_call(&name, ht, pos);
                Ty::Any
            }
        }
    }

    fn subexpression(&mut self, sub: &Subexpression, pos: Pos) -> Ty {
        match sub.as_element() {
            TemplateElement::Expression(ht) => self.expression(ht, pos),
            _ => Ty::Any,
        }
    }

    fn helper_call(&mut self, name: &str, ht: &HelperTemplate, pos: Pos) {
        let name_pos = self.token_pos(pos, name);
        if !is_helper(name) {
            let known = BUILTIN_HELPERS.iter().chain(PACKWELL_HELPERS).copied();
            let message = match closest(name, known, Likeness::FewEdits) {
                Some(guess) => format!("unknown helper \"{name}\", did you mean \"{guess}\"?"),
                None => format!("unknown helper \"{name}\""),
            };
            self.report(name_pos, message);
        } else if let Some(expected) = arity(name)
            && ht.params.len() != expected.0
        {
            self.report(
                name_pos,
                format!(
                    "helper \"{name}\" takes {}, found {} argument(s)",
                    expected.1,
                    ht.params.len()
                ),
            );
        }
        self.arguments(ht, pos);
    }

    fn arguments(&mut self, ht: &HelperTemplate, pos: Pos) {
        for param in &ht.params {
            self.parameter(param, pos);
        }
        let mut hash: Vec<_> = ht.hash.iter().collect();
        hash.sort_by(|a, b| a.0.cmp(b.0));
        for (_, value) in hash {
            self.parameter(value, pos);
        }
    }

    fn parameter(&mut self, param: &Parameter, pos: Pos) -> Ty {
        match param {
            Parameter::Path(path) => self.path(path, pos),
            Parameter::Subexpression(sub) => self.subexpression(sub, pos),
            _ => Ty::Any,
        }
    }

    fn block(&mut self, ht: &HelperTemplate, pos: Pos) {
        let name = ht.name.as_name().unwrap_or_default().to_owned();
        match name.as_str() {
            "each" | "with" => {
                let name_pos = self.token_pos(pos, &name);
                if ht.params.len() != 1 {
                    self.report(
                        name_pos,
                        format!("#{name} takes one argument, found {}", ht.params.len()),
                    );
                }
                let ty = ht
                    .params
                    .first()
                    .map_or(Ty::Any, |p| self.parameter(p, pos));
                let mut hash: Vec<_> = ht.hash.iter().collect();
                hash.sort_by(|a, b| a.0.cmp(b.0));
                for (_, value) in hash {
                    self.parameter(value, pos);
                }
                let scope = if name == "each" {
                    self.each_scope(ty, ht, pos)
                } else {
                    Scope {
                        this: ty,
                        block_params: block_param_names(ht.block_param.as_ref())
                            .into_iter()
                            .take(1)
                            .map(|n| (n, ty))
                            .collect(),
                        each: false,
                    }
                };
                self.scopes.push(scope);
                if let Some(body) = &ht.template {
                    self.template(body, pos);
                }
                self.scopes.pop();
                // `{{else}}` of #each / #with renders in the outer context.
                if let Some(inverse) = &ht.inverse {
                    self.inverse(inverse, pos);
                }
            }
            // The body of {{{{raw}}}} is text, not template syntax.
            "raw" => self.arguments(ht, pos),
            _ => {
                self.helper_call(&name, ht, pos);
                if matches!(name.as_str(), "if" | "unless") && ht.params.len() != 1 {
                    let name_pos = self.token_pos(pos, &name);
                    self.report(
                        name_pos,
                        format!("#{name} takes one argument, found {}", ht.params.len()),
                    );
                }
                if let Some(body) = &ht.template {
                    self.template(body, pos);
                }
                if let Some(inverse) = &ht.inverse {
                    self.inverse(inverse, pos);
                }
            }
        }
    }

    /// The `{{else}}` part of a block. An `{{else if ...}}` chain has no positions of its own,
    /// so its elements are placed at the block's next `{{else` tag.
    fn inverse(&mut self, inverse: &Template, block_pos: Pos) {
        let at = self.next_else_tag(block_pos).unwrap_or(block_pos);
        self.template(inverse, at);
    }

    /// The first `{{else ...}}` / `{{^}}` tag that belongs to the block whose opening (or
    /// previous else) tag is at `pos`, skipping nested blocks, comments and raw blocks.
    fn next_else_tag(&self, pos: Pos) -> Option<Pos> {
        let start = self.offset(pos)?;
        let src = &self.source[start..];
        let mut depth = 0usize;
        let mut i = 0;
        while let Some(found) = src.get(i..)?.find("{{") {
            let tag = i + found;
            let after = &src[tag + 2..];
            let end_of = |pattern: &str, from: usize| {
                src[from..]
                    .find(pattern)
                    .map_or(src.len(), |e| from + e + pattern.len())
            };
            if after.starts_with("{{") {
                // {{{{raw}}}} ... {{{{/raw}}}}: its body is text.
                i = end_of("}}}}", end_of("{{{{/", tag + 4));
                continue;
            }
            let inner = after.trim_start_matches(['{', '~', '&']).trim_start();
            if inner.starts_with("!--") {
                i = end_of("--}}", tag + 2);
                continue;
            }
            i = end_of("}}", tag + 2);
            if tag == 0 {
                depth = 1;
            } else if inner.starts_with('#') {
                depth += 1;
            } else if inner.starts_with('/') {
                depth = depth.saturating_sub(1);
                if depth == 0 {
                    return None;
                }
            } else if depth == 1 && !inner.starts_with('!') {
                let is_else = inner.starts_with('^')
                    || inner.strip_prefix("else").is_some_and(|rest| {
                        !rest
                            .chars()
                            .next()
                            .is_some_and(|c| c.is_alphanumeric() || matches!(c, '_' | '-' | '.'))
                    });
                if is_else {
                    return Some(self.pos_of(start + tag));
                }
            }
        }
        None
    }

    fn each_scope(&mut self, ty: Ty, ht: &HelperTemplate, pos: Pos) -> Scope {
        let (item, key) = match ty {
            Ty::List(item) => (*item, Ty::Scalar),
            // An object's values differ in shape; what they are is not known here.
            Ty::Object(_) | Ty::Any => (Ty::Any, Ty::Scalar),
            Ty::Scalar => {
                let what = ht
                    .params
                    .first()
                    .and_then(|p| match p {
                        Parameter::Path(path) => Some(path_raw(path).to_owned()),
                        _ => None,
                    })
                    .unwrap_or_else(|| "its argument".to_owned());
                let at = self.token_pos(pos, &what);
                self.report(at, format!("#each needs a list, but {what} is not one"));
                (Ty::Any, Ty::Scalar)
            }
        };
        let names = block_param_names(ht.block_param.as_ref());
        Scope {
            this: item,
            block_params: names.into_iter().zip([item, key]).collect(),
            each: true,
        }
    }

    fn path(&mut self, path: &handlebars::Path, pos: Pos) -> Ty {
        match path {
            handlebars::Path::Local((level, name, raw)) => {
                let at = self.token_pos(pos, raw);
                match name.as_str() {
                    "root" if *level == 0 => self.root,
                    "index" | "first" | "last" | "key" => {
                        let in_each = self
                            .scopes
                            .len()
                            .checked_sub(1 + level)
                            .and_then(|i| self.scopes.get(i))
                            .is_some_and(|s| s.each);
                        if !in_each {
                            self.report(
                                at,
                                format!("@{name} is only defined inside {{{{#each}}}}"),
                            );
                        }
                        Ty::Scalar
                    }
                    _ => {
                        self.report(at, format!("unknown variable {raw}"));
                        Ty::Any
                    }
                }
            }
            handlebars::Path::Relative((segs, raw)) => self.relative_path(segs, raw, pos),
        }
    }

    fn relative_path(&mut self, segs: &[PathSeg], raw: &str, pos: Pos) -> Ty {
        let at = self.token_pos(pos, raw);
        let mut ups = 0usize;
        let mut from_root = false;
        let mut names: Vec<&str> = Vec::new();
        for seg in segs {
            match seg {
                PathSeg::Named(name) => names.push(name),
                // handlebars does not export its grammar's rule type, only its Debug name.
                PathSeg::Ruled(rule) if names.is_empty() => match format!("{rule:?}").as_str() {
                    "path_root" => from_root = true,
                    "path_up" => ups += 1,
                    _ => return Ty::Any,
                },
                _ => return Ty::Any,
            }
        }

        let block_param = match names.first() {
            Some(first) if !from_root => self
                .scopes
                .iter()
                .rev()
                .find_map(|s| s.block_params.iter().find(|(n, _)| n == first))
                .map(|(_, ty)| *ty),
            _ => None,
        };
        let (mut ty, rest) = if let Some(ty) = block_param {
            (ty, &names[1..])
        } else if from_root {
            (self.root, &names[..])
        } else {
            match self.scopes.len().checked_sub(1 + ups) {
                Some(i) => (self.scopes[i].this, &names[..]),
                None => {
                    self.report(
                        at,
                        format!("{raw} climbs above the top of the template with ../"),
                    );
                    return Ty::Any;
                }
            }
        };

        let at_root = block_param.is_none() && matches!(ty, Ty::Object(f) if is_root_fields(f));
        let offsets = segment_offsets(raw, &names);
        let skipped = names.len() - rest.len();
        for (i, name) in rest.iter().enumerate() {
            let index = skipped + i;
            match ty {
                Ty::Any => return Ty::Any,
                Ty::Object(fields) => {
                    if let Some((_, field)) = fields.iter().find(|(f, _)| f == name) {
                        ty = *field;
                        continue;
                    }
                    if at_root && i == 0 && EMAIL_ONLY.contains(name) {
                        self.report(
                            at,
                            format!(
                                "unknown variable {raw}: it is only given to e-mails, not notes"
                            ),
                        );
                        return Ty::Any;
                    }
                    let guess = closest(name, fields.iter().map(|(f, _)| *f), Likeness::FewEdits);
                    let message = match (guess, offsets.get(index)) {
                        (Some(guess), Some(&(start, end))) => format!(
                            "unknown variable {raw}, did you mean {}{guess}{}?",
                            &raw[..start],
                            &raw[end..]
                        ),
                        _ => format!("unknown variable {raw}"),
                    };
                    self.report(at, message);
                    return Ty::Any;
                }
                Ty::List(item) => {
                    if name.parse::<usize>().is_ok() {
                        ty = *item;
                        continue;
                    }
                    let list = value_before(raw, offsets.get(index));
                    self.report(
                        at,
                        format!(
                            "unknown variable {raw}: {list} is a list; go through it with \
                             {{{{#each {list}}}}}"
                        ),
                    );
                    return Ty::Any;
                }
                Ty::Scalar => {
                    let value = value_before(raw, offsets.get(index));
                    self.report(at, format!("unknown variable {raw}: {value} has no fields"));
                    return Ty::Any;
                }
            }
        }
        ty
    }

    /// Where `token` starts inside the tag at `pos`; the tag's own position when it cannot be
    /// found (the parser keeps positions per tag, not per argument).
    fn token_pos(&self, pos: Pos, token: &str) -> Pos {
        let Some(start) = self.offset(pos) else {
            return pos;
        };
        let rest = &self.source[start..];
        let tag_end = rest.find("}}").map_or(rest.len(), |i| i + 2);
        let tag = &rest[..tag_end];
        let is_path_char = |c: char| {
            c.is_alphanumeric() || matches!(c, '_' | '-' | '.' | '/' | '@' | '$' | ':' | '[' | ']')
        };
        let found = tag.match_indices(token).map(|(i, _)| i).find(|&i| {
            let before = tag[..i].chars().next_back();
            let after = tag[i + token.len()..].chars().next();
            !before.is_some_and(is_path_char) && !after.is_some_and(is_path_char)
        });
        match found {
            Some(i) => self.pos_of(start + i),
            None => pos,
        }
    }

    fn offset(&self, pos: Pos) -> Option<usize> {
        let line_start = *self.line_starts.get(pos.line.checked_sub(1)?)?;
        let line = &self.source[line_start..];
        let within = line
            .char_indices()
            .nth(pos.col.checked_sub(1)?)
            .map_or(line.len(), |(i, _)| i);
        Some(line_start + within)
    }

    fn pos_of(&self, offset: usize) -> Pos {
        let line_index = self
            .line_starts
            .partition_point(|&start| start <= offset)
            .saturating_sub(1);
        let line_start = self.line_starts.get(line_index).copied().unwrap_or(0);
        let col = self
            .source
            .get(line_start..offset)
            .map_or(0, |s| s.chars().count());
        Pos {
            line: line_index + 1,
            col: col + 1,
        }
    }
}

/// The part of a path before a segment, as written; `this` when the segment comes first.
fn value_before<'r>(raw: &'r str, segment: Option<&(usize, usize)>) -> &'r str {
    let before = segment.map_or(raw, |&(start, _)| raw.get(..start).unwrap_or(raw));
    let before = before.trim_end_matches(['.', '/']);
    if before.is_empty() || before == "this" {
        "this"
    } else {
        before
    }
}

fn is_root_fields(fields: &[(&str, Ty)]) -> bool {
    fields.iter().any(|(f, _)| *f == "customer")
}

fn is_helper(name: &str) -> bool {
    BUILTIN_HELPERS.contains(&name) || PACKWELL_HELPERS.contains(&name)
}

/// Argument counts that are known ahead, with how to say them.
fn arity(name: &str) -> Option<(usize, &'static str)> {
    match name {
        "money" => Some((2, "2 arguments (amount currency)")),
        "date" => Some((1, "1 argument (a date)")),
        _ => None,
    }
}

fn path_raw(path: &handlebars::Path) -> &str {
    match path {
        handlebars::Path::Relative((_, raw)) | handlebars::Path::Local((_, _, raw)) => raw,
    }
}

fn block_param_names(param: Option<&BlockParam>) -> Vec<String> {
    let name = |p: &Parameter| p.as_name().map(str::to_owned);
    match param {
        Some(BlockParam::Single(p)) => name(p).into_iter().collect(),
        Some(BlockParam::Pair((a, b))) => name(a).into_iter().chain(name(b)).collect(),
        _ => Vec::new(),
    }
}

/// Byte ranges of each named segment inside the path as written, for suggestions that keep
/// the user's own spelling of the rest (`../`, `this.`, `@root.`).
fn segment_offsets(raw: &str, names: &[&str]) -> Vec<(usize, usize)> {
    let mut cursor = 0;
    let mut out = Vec::with_capacity(names.len());
    for name in names {
        match raw.get(cursor..).and_then(|rest| rest.find(name)) {
            Some(i) => {
                let start = cursor + i;
                cursor = start + name.len();
                out.push((start, cursor));
            }
            None => break,
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::NaiveDate;
    use rust_decimal::Decimal;
    use serde_json::json;

    fn coupon() -> Value {
        json!({ "code": "THANKS-7KQ2M9XW4PJR", "title": "10 off your next order",
                "amount": "10.00", "currency": "EUR", "min_order": "30.00",
                "expires_on": "2027-01-19" })
    }

    /// A context with every key of CONTRACT §6, as the callers build it.
    fn ctx(first_name: &str, locale: &str) -> Value {
        json!({
            "customer": { "first_name": first_name, "last_name": null,
                          "email": "ana@example.com", "orders_count": 1,
                          "lifetime_spend": "54.90", "categories_bought": ["books", "tea"],
                          "nps_group": null },
            "order": { "id": "O-1001", "total": "54.90", "currency": "EUR",
                       "items": [{ "sku": "B-1", "name": "A Book", "category": "books",
                                   "quantity": 1, "unit_price": "54.90" }],
                       "categories": ["books"], "placed_at": "2026-11-20T10:00:00Z" },
            "coupons": [coupon()],
            "coupon": coupon(),
            "delivery": null,
            "shop": { "name": "Shop", "url": "https://shop.example" },
            "unsubscribe_url": "https://packwell.shop.example/u/tok",
            "locale": locale,
        })
    }

    fn folder(files: &[(&str, &str)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("tempdir");
        for (path, content) in files {
            let path = dir.path().join(path);
            std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
            std::fs::write(path, content).expect("write");
        }
        dir
    }

    fn load(files: &[(&str, &str)]) -> Templates {
        let dir = folder(files);
        match Templates::load(dir.path()) {
            Ok(t) => t,
            Err(issues) => panic!("unexpected issues: {issues:#?}"),
        }
    }

    /// Issues as `relative/path:line:col: message`.
    fn issues(files: &[(&str, &str)]) -> Vec<String> {
        let dir = folder(files);
        match Templates::load(dir.path()) {
            Ok(_) => Vec::new(),
            Err(issues) => issues
                .into_iter()
                .map(|i| {
                    let rel = i.file.strip_prefix(dir.path()).expect("inside the folder");
                    TemplateIssue {
                        file: rel.to_path_buf(),
                        ..i
                    }
                    .to_string()
                })
                .collect(),
        }
    }

    fn email(name: &str, subject: &str, html: &str) -> [(String, String); 2] {
        [
            (format!("emails/{name}/subject.hbs"), subject.to_owned()),
            (format!("emails/{name}/html.hbs"), html.to_owned()),
        ]
    }

    fn refs(files: &[(String, String)]) -> Vec<(&str, &str)> {
        files
            .iter()
            .map(|(a, b)| (a.as_str(), b.as_str()))
            .collect()
    }

    #[test]
    fn issue_display_is_file_line_col_message() {
        let issue = TemplateIssue {
            file: PathBuf::from("templates/notes/welcome.hbs"),
            line: 3,
            col: 7,
            message: "unknown helper \"monee\"".to_owned(),
        };
        assert_eq!(
            issue.to_string(),
            "templates/notes/welcome.hbs:3:7: unknown helper \"monee\""
        );
    }

    #[test]
    fn a_template_that_does_not_parse_is_reported_where_handlebars_says() {
        assert_eq!(
            issues(&[("notes/bad.hbs", "Hi\n  {{#if coupon}}x{{/each}}")]),
            [
                "notes/bad.hbs:2:18: template does not parse: helper \"if\" was opened, but \
              \"each\" is closing"
            ]
        );
        assert_eq!(
            issues(&[("notes/open.hbs", "Hi {{#if coupon}}x")]),
            ["notes/open.hbs:1:4: template does not parse: {{#if}} is not closed: add {{/if}}"]
        );
        assert_eq!(
            issues(&[("notes/tag.hbs", "Hi\n{{customer.first_name")]),
            ["notes/tag.hbs:2:22: template does not parse: the tag is not closed: expected }}"]
        );
    }

    #[test]
    fn an_unknown_variable_is_reported_with_a_suggestion() {
        assert_eq!(
            issues(&[(
                "notes/welcome.hbs",
                "Dear {{customer.frist_name}},\nthanks!"
            )]),
            [
                "notes/welcome.hbs:1:8: unknown variable customer.frist_name, did you mean \
              customer.first_name?"
            ]
        );
        assert_eq!(
            issues(&[("notes/n.hbs", "{{custmer.first_name}} {{basket}}")]),
            [
                "notes/n.hbs:1:3: unknown variable custmer.first_name, did you mean \
                 customer.first_name?",
                "notes/n.hbs:1:26: unknown variable basket",
            ]
        );
    }

    #[test]
    fn variables_are_checked_inside_blocks_arguments_subexpressions_and_hashes() {
        let source = "\
{{#if customer.frist_name}}x{{/if}}
{{#each order.items}}{{nme}} {{../shop.name}} {{@index}}{{/each}}
{{#with shop}}{{ulr}}{{/with}}
{{#unless (eq coupon.cod \"X\")}}y{{/unless}}
{{money order.totl order.currency}}
{{lookup order \"id\" fallback=custmer}}
{{#each coupons}}{{../coupon.code}}{{@root.shop.nam}}{{/each}}
{{#each customer.categories_bought as |cat i|}}{{cat.x}}{{i}}{{/each}}
{{#if coupon}}{{else if delivery.late_dys}}z{{/if}}
";
        assert_eq!(
            issues(&[("notes/n.hbs", source)]),
            [
                "notes/n.hbs:1:7: unknown variable customer.frist_name, did you mean \
                 customer.first_name?",
                "notes/n.hbs:2:24: unknown variable nme, did you mean name?",
                "notes/n.hbs:3:17: unknown variable ulr, did you mean url?",
                "notes/n.hbs:4:15: unknown variable coupon.cod, did you mean coupon.code?",
                "notes/n.hbs:5:9: unknown variable order.totl, did you mean order.total?",
                "notes/n.hbs:6:30: unknown variable custmer, did you mean customer?",
                "notes/n.hbs:7:38: unknown variable @root.shop.nam, did you mean \
                 @root.shop.name?",
                "notes/n.hbs:8:50: unknown variable cat.x: cat has no fields",
                "notes/n.hbs:9:25: unknown variable delivery.late_dys, did you mean \
                 delivery.late_days?",
            ]
        );
    }

    #[test]
    fn else_if_chains_are_positioned_at_their_own_else_tags() {
        let source = "{{#if coupon}}{{#if shop}}{{else if shop.nme}}{{/if}}{{else if delivery}}\
                      {{else if order.totl}}{{else}}{{custmer}}{{/if}}";
        assert_eq!(
            issues(&[("notes/e.hbs", source)]),
            [
                "notes/e.hbs:1:37: unknown variable shop.nme, did you mean shop.name?",
                "notes/e.hbs:1:84: unknown variable order.totl, did you mean order.total?",
                "notes/e.hbs:1:106: unknown variable custmer, did you mean customer?",
            ]
        );
    }

    #[test]
    fn item_fields_parent_scope_root_and_data_variables_resolve() {
        let source = "\
{{#each order.items}}{{@index}} {{sku}} {{this.name}} {{quantity}} {{../order.id}} {{@root.shop.name}}{{#if @first}}first{{/if}}{{/each}}
{{#each coupons as |c|}}{{c.code}} {{money c.amount c.currency}} {{date c.expires_on}}{{else}}none{{/each}}
{{#each customer.categories_bought}}{{this}}{{#unless @last}}, {{/unless}}{{/each}}
{{#with customer as |who|}}{{who.first_name}} {{first_name}}{{/with}}
{{#if (gt (len coupons) 1)}}many{{/if}} {{order.items.0.sku}} {{lookup order.items 0}}
{{#each coupon}}{{@key}}{{/each}} {{coupon.title}}
";
        let templates = load(&[("notes/ok.hbs", source)]);
        let text = templates
            .render_note("ok", &ctx("Ana", "en"))
            .expect("renders");
        assert!(
            text.starts_with("0 B-1 A Book 1 O-1001 Shopfirst\n"),
            "{text}"
        );
        assert!(
            text.contains("THANKS-7KQ2M9XW4PJR €10.00 Jan 19, 2027"),
            "{text}"
        );
        assert!(text.contains("books, tea\nAna Ana\n"), "{text}");
    }

    #[test]
    fn members_of_lists_and_plain_values_are_reported() {
        let source = "{{order.items.name}}\n{{#with coupons}}{{code}}{{/with}}\n\
                      {{#each customer.categories_bought}}{{name}}{{/each}} {{shop.name.first}}";
        assert_eq!(
            issues(&[("notes/l.hbs", source)]),
            [
                "notes/l.hbs:1:3: unknown variable order.items.name: order.items is a list; go \
                 through it with {{#each order.items}}",
                "notes/l.hbs:2:20: unknown variable code: this is a list; go through it with \
                 {{#each this}}",
                "notes/l.hbs:3:39: unknown variable name: this has no fields",
                "notes/l.hbs:3:57: unknown variable shop.name.first: shop.name has no fields",
            ]
        );
    }

    #[test]
    fn an_unknown_helper_is_reported_in_expressions_blocks_and_subexpressions() {
        let source = "Hello\n  {{monee order.total order.currency}}\n{{#iff coupon}}x{{/iff}}\n{{#if (eqq 1 2)}}y{{/if}} {{shout customer.first_name}}";
        assert_eq!(
            issues(&[("notes/h.hbs", source)]),
            [
                "notes/h.hbs:2:5: unknown helper \"monee\", did you mean \"money\"?",
                "notes/h.hbs:3:4: unknown helper \"iff\", did you mean \"if\"?",
                "notes/h.hbs:4:8: unknown helper \"eqq\", did you mean \"eq\"?",
                "notes/h.hbs:4:29: unknown helper \"shout\"",
            ]
        );
    }

    #[test]
    fn money_and_date_need_their_arguments() {
        assert_eq!(
            issues(&[("notes/a.hbs", "{{money order.total}}\n{{date}}")]),
            [
                "notes/a.hbs:1:3: helper \"money\" takes 2 arguments (amount currency), found \
                 1 argument(s)",
                "notes/a.hbs:2:3: helper \"date\" takes 1 argument (a date), found 0 \
                 argument(s)",
            ]
        );
    }

    #[test]
    fn unsubscribe_url_belongs_to_e_mails_only() {
        assert_eq!(
            issues(&[("notes/n.hbs", "Bye: {{unsubscribe_url}}")]),
            [
                "notes/n.hbs:1:8: unknown variable unsubscribe_url: it is only given to e-mails, \
              not notes"
            ]
        );
        let files = email(
            "bye",
            "Bye {{customer.first_name}}",
            "<a href=\"{{unsubscribe_url}}\">Unsubscribe</a>",
        );
        assert!(issues(&refs(&files)).is_empty());
    }

    #[test]
    fn an_e_mail_without_subject_or_html_is_reported() {
        assert_eq!(
            issues(&[
                ("emails/a/html.hbs", "<p>Hi</p>"),
                ("emails/b/subject.hbs", "Hi"),
                ("emails/b/text.hbs", "Hi"),
                ("emails/c/subject.hbs", "Hi"),
                ("emails/c/html.hbs", "Hi"),
                ("emails/c/body.hbs", "Hi"),
                ("emails/stray.hbs", "Hi"),
            ]),
            [
                "emails/a/subject.hbs:1:1: missing: the e-mail \"a\" needs subject.hbs and \
                 html.hbs",
                "emails/b/html.hbs:1:1: missing: the e-mail \"b\" needs subject.hbs and \
                 html.hbs",
                "emails/c/body.hbs:1:1: unknown e-mail part: an e-mail folder holds \
                 subject.hbs, html.hbs and optionally text.hbs",
                "emails/stray.hbs:1:1: an e-mail is a folder: emails/NAME/ with subject.hbs, \
                 html.hbs and optionally text.hbs",
            ]
        );
    }

    #[test]
    fn html_parts_may_not_turn_escaping_off() {
        let mut files = email(
            "e",
            "{{{customer.first_name}}}",
            "<p>{{{customer.first_name}}}</p>",
        )
        .to_vec();
        files.push((
            "emails/e/text.hbs".into(),
            "{{{customer.first_name}}}".into(),
        ));
        assert_eq!(
            issues(&refs(&files)),
            [
                "emails/e/html.hbs:1:4: {{{ }}} turns HTML escaping off; write {{ }} so every \
              value is escaped"
            ]
        );
    }

    #[test]
    fn data_variables_outside_each_and_climbing_above_the_top_are_reported() {
        assert_eq!(
            issues(&[(
                "notes/n.hbs",
                "{{@index}}\n{{#with shop}}{{@first}}{{../../order.id}}{{/with}}\n{{#each customer.first_name}}x{{/each}}\n{{> footer}}"
            )]),
            [
                "notes/n.hbs:1:3: @index is only defined inside {{#each}}",
                "notes/n.hbs:2:17: @first is only defined inside {{#each}}",
                "notes/n.hbs:2:27: ../../order.id climbs above the top of the template with ../",
                "notes/n.hbs:3:9: #each needs a list, but customer.first_name is not one",
                "notes/n.hbs:4:1: partials ({{> ...}}) are not supported: each template stands \
                 alone",
            ]
        );
    }

    #[test]
    fn a_missing_folder_is_no_templates_and_names_are_listed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let templates = Templates::load(&dir.path().join("nope")).expect("no folder is fine");
        assert!(templates.note_names().is_empty() && templates.email_names().is_empty());

        let mut files = email("thanks", "Thanks", "<p>Thanks</p>").to_vec();
        files.push(("notes/welcome.hbs".into(), "Welcome".into()));
        files.push(("notes/README.md".into(), "not a template".into()));
        let templates = load(&refs(&files));
        assert_eq!(templates.note_names(), ["welcome"]);
        assert_eq!(templates.email_names(), ["thanks"]);
        assert!(templates.has_note("welcome") && !templates.has_note("thanks"));
        assert!(templates.has_email("thanks") && !templates.has_email("welcome"));
        assert!(matches!(
            templates.render_note("nope", &ctx("Ana", "en")),
            Err(RenderError::UnknownNote(n)) if n == "nope"
        ));
        assert!(matches!(
            templates.render_email("welcome", &ctx("Ana", "en")),
            Err(RenderError::UnknownEmail(n)) if n == "welcome"
        ));
    }

    #[test]
    fn html_escapes_values_and_notes_do_not() {
        let mut files = email(
            "hi",
            "Hi {{customer.first_name}}",
            "<p>Hi {{customer.first_name}}</p>",
        )
        .to_vec();
        files.push(("notes/hi.hbs".into(), "Hi {{customer.first_name}}".into()));
        let templates = load(&refs(&files));
        let evil = "<script>alert(1)</script>";
        let data = ctx(evil, "en");

        let mail = templates.render_email("hi", &data).expect("renders");
        assert_eq!(mail.html, "<p>Hi &lt;script&gt;alert(1)&lt;/script&gt;</p>");
        assert_eq!(mail.subject, format!("Hi {evil}"));
        assert_eq!(
            templates.render_note("hi", &data).expect("renders"),
            format!("Hi {evil}")
        );
    }

    #[test]
    fn money_is_formatted_for_the_locale_without_floats() {
        let amount = |s: &str| Decimal::from_str_exact(s).expect("decimal");
        let money = |a: &str, c: &str, l: &str| format_money(&amount(a), c, l).expect("formats");
        assert_eq!(money("10.00", "EUR", "en"), "€10.00");
        assert_eq!(money("10.00", "EUR", "de"), "10,00\u{a0}€");
        assert_eq!(money("1234.5", "EUR", "de-AT"), "€\u{a0}1\u{a0}234,50");
        assert_eq!(money("10", "USD", "en-US"), "$10.00");
        assert_eq!(money("1234.56", "USD", "en-US"), "$1,234.56");
        // Beyond f64's 15-16 significant digits: exact only without a float in between.
        assert_eq!(
            money("12345678901234567.89", "EUR", "en"),
            "€12,345,678,901,234,567.89"
        );
        // No data for the language, or no locale at all: English.
        assert_eq!(money("10.00", "EUR", "xx"), "€10.00");
        assert_eq!(money("10.00", "EUR", "not a locale!"), "€10.00");
        assert_eq!(money("10.00", "EUR", "de_DE"), "10,00\u{a0}€");
        assert!(format_money(&amount("1"), "EURO", "en").is_err());
    }

    #[test]
    fn the_money_helper_reads_strings_and_numbers_and_rejects_bad_amounts() {
        let templates = load(&[("notes/m.hbs", "{{money coupon.amount coupon.currency}}")]);
        let mut data = ctx("Ana", "de-AT");
        assert_eq!(
            templates.render_note("m", &data).expect("renders"),
            "€\u{a0}10,00"
        );
        data["coupon"]["amount"] = serde_json::from_str("2.50").expect("number");
        data["locale"] = json!("en-US");
        assert_eq!(templates.render_note("m", &data).expect("renders"), "€2.50");
        data["coupon"]["amount"] = json!("ten");
        let err = templates.render_note("m", &data).expect_err("bad amount");
        assert_eq!(
            err.to_string(),
            "notes/m.hbs:1:1: money: the amount must be a decimal like \"10.00\", found \"ten\""
        );
        data["coupon"]["amount"] = Value::Null;
        let err = templates.render_note("m", &data).expect_err("null amount");
        assert!(err.to_string().contains("coupon.amount is null"), "{err}");
    }

    #[test]
    fn dates_are_formatted_for_the_locale() {
        let day = NaiveDate::from_ymd_opt(2026, 11, 20).expect("date");
        assert_eq!(format_date(day, "en").expect("formats"), "Nov 20, 2026");
        assert_eq!(format_date(day, "de").expect("formats"), "20.11.2026");
        assert_eq!(format_date(day, "en-GB").expect("formats"), "20 Nov 2026");
        assert_eq!(format_date(day, "zz-ZZ").expect("formats"), "Nov 20, 2026");

        let templates = load(&[(
            "notes/d.hbs",
            "{{date coupon.expires_on}} / {{date order.placed_at}}",
        )]);
        assert_eq!(
            templates
                .render_note("d", &ctx("Ana", "de-AT"))
                .expect("renders"),
            "19.01.2027 / 20.11.2026"
        );
        let mut data = ctx("Ana", "en");
        data["order"]["placed_at"] = json!("last Tuesday");
        let err = templates.render_note("d", &data).expect_err("bad date");
        assert!(err.to_string().contains("found \"last Tuesday\""), "{err}");
    }

    #[test]
    fn strict_mode_fails_on_a_missing_variable_and_allows_null() {
        let templates = load(&[(
            "notes/s.hbs",
            "Hi {{customer.first_name}}{{customer.last_name}} from {{shop.name}}",
        )]);
        assert_eq!(
            templates
                .render_note("s", &ctx("Ana", "en"))
                .expect("null renders as nothing"),
            "Hi Ana from Shop"
        );
        let mut data = ctx("Ana", "en");
        if let Some(map) = data.as_object_mut() {
            map.remove("shop");
        }
        let err = templates
            .render_note("s", &data)
            .expect_err("shop is missing");
        assert_eq!(
            err.to_string(),
            "notes/s.hbs:1:55: variable shop.name is missing from the data"
        );
    }

    #[test]
    fn the_text_part_is_derived_from_the_html_when_there_is_no_text_hbs() {
        let html = "<html><head><title>T</title><style>p { color: red }</style></head><body>\n\
            <h1>Hello   {{customer.first_name}}</h1>\n\
            <p>Your coupon <b>{{coupon.code}}</b> is worth {{money coupon.amount coupon.currency}}&nbsp;&amp; more.</p>\n\
            <p>Visit <a href=\"{{shop.url}}/books?a=1&amp;b=2\">our   shop</a>.</p>\n\
            <p><a href=\"{{unsubscribe_url}}\">Unsubscribe</a></p></body></html>";
        let templates = load(&refs(&email("t", "Your coupon", html)));
        let mail = templates
            .render_email("t", &ctx("Ana & Bo", "en"))
            .expect("renders");
        assert_eq!(
            mail.text,
            "Hello Ana & Bo\n\n\
             Your coupon THANKS-7KQ2M9XW4PJR is worth €10.00\u{a0}& more.\n\n\
             Visit our shop (https://shop.example/books?a=1&b=2).\n\n\
             Unsubscribe (https://packwell.shop.example/u/tok)\n"
        );
    }

    #[test]
    fn a_text_hbs_is_used_as_written_and_the_subject_stays_on_one_line() {
        let mut files = email("t", "Hello\n  {{customer.first_name}}\n", "<p>x</p>").to_vec();
        files.push((
            "emails/t/text.hbs".into(),
            "Hi {{customer.first_name}} & co\n".into(),
        ));
        let templates = load(&refs(&files));
        let mail = templates
            .render_email("t", &ctx("Ana\r\nBcc: x@example.com", "en"))
            .expect("renders");
        assert_eq!(mail.subject, "Hello Ana Bcc: x@example.com");
        assert_eq!(mail.text, "Hi Ana\r\nBcc: x@example.com & co\n");
    }

    #[test]
    fn the_builtin_helper_list_matches_handlebars() {
        let mut hb = Handlebars::new();
        hb.set_strict_mode(true);
        let is_missing_variable = |name: &str| {
            matches!(
                hb.render_template(&format!("{{{{{name}}}}}"), &json!({})),
                Err(e) if matches!(e.reason(), RenderErrorReason::MissingVariable(_))
            )
        };
        for name in BUILTIN_HELPERS {
            assert!(
                !is_missing_variable(name),
                "{name} is not a handlebars helper"
            );
        }
        assert!(is_missing_variable("uppercase"));
    }

    #[test]
    fn templates_can_be_shared_between_threads() {
        fn assert_send_sync<T: Send + Sync + Clone>() {}
        assert_send_sync::<Templates>();
    }
}

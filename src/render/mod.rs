//! Templates for packing-station notes and e-mails (docs/REFERENCE.md §5, §6).
//!
//! This module owns the template folder (`notes/NAME.hbs`, `emails/NAME/{subject,html,text}.hbs`,
//! and their language versions `notes/NAME.LANG.hbs`, `emails/NAME.LANG/`), the shape of the
//! data a template may read, the check that `packwell validate` runs over every
//! template's syntax tree, the `money` and `date` helpers, and rendering (HTML escaped, text
//! parts not, a text part derived from the HTML when an e-mail has no `text.hbs`).
//! It builds no context itself: callers pass the JSON object described in docs/REFERENCE.md §6,
//! with every key present (strict mode turns a missing key into an error, a null into nothing).
//!
//! Here: the registry of loaded templates and rendering. Next to it: `load` (reading a
//! folder), `language` (language versions: their names, the one a customer gets), `check` (what `validate` reports, with the data's shape in `check/shape.rs`),
//! `limits` (size and nesting, before any parser), `compiled` (the fast path for simple
//! templates), `format` (the `money` and `date` helpers), `text` (HTML to plain text).

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use handlebars::{Handlebars, RenderErrorReason};
use serde_json::Value;

mod check;
mod compiled;
mod format;
mod language;
pub mod limits;
mod load;
mod text;

use check::is_helper;
pub use check::{TemplateKind, check_template};
use compiled::Program;
pub use format::{DateHelper, MoneyHelper, format_date, format_money};
pub use language::{TemplateName, split_language};
use language::{Versions, locale_of};
use load::Loader;
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

/// The parts of the template data (docs/REFERENCE.md §6) that templates read, so that callers build
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
    /// Note name -> its versions (the default and one per language).
    notes: BTreeMap<String, Versions<Note>>,
    /// What the notes read, all of them together.
    note_needs: DataNeeds,
    emails: BTreeMap<String, Email>,
    /// Escapes every value: used for `html.hbs` only.
    html: Handlebars<'static>,
    /// No escaping: notes are printed, subjects and text parts are not HTML.
    plain: Handlebars<'static>,
}

/// One version of a note: its name in the registries and its program, when it compiles to one
/// (see [`compiled`]).
struct Note {
    key: String,
    program: Option<Program>,
}

/// An e-mail's versions, with what any of them reads: the data is built before the version is
/// chosen.
struct Email {
    needs: DataNeeds,
    versions: Versions<EmailParts>,
}

/// The programs of an e-mail's parts, where they compile to one; handlebars renders the rest.
struct EmailParts {
    /// The folder (`thanks.de`), which names the parts in the registries.
    folder: String,
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
    /// Loads `dir/notes/NAME.hbs` and `dir/emails/NAME/{subject.hbs, html.hbs, text.hbs?}`,
    /// with their language versions (`NAME.LANG`, see [`split_language`]). A missing `dir`
    /// means no templates (Ok, empty). Returns every problem found at once.
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

    /// Whether a note of that name (as rules name it, without a language) exists.
    pub fn has_note(&self, name: &str) -> bool {
        self.inner.notes.contains_key(name)
    }

    pub fn has_email(&self, name: &str) -> bool {
        self.inner.emails.contains_key(name)
    }

    /// The names of the notes, as rules name them (a language version is not one of its own).
    pub fn note_names(&self) -> Vec<String> {
        self.inner.notes.keys().cloned().collect()
    }

    pub fn email_names(&self) -> Vec<String> {
        self.inner.emails.keys().cloned().collect()
    }

    /// How many language versions the notes and e-mails have besides their defaults.
    pub fn language_versions(&self) -> usize {
        let notes: usize = self.inner.notes.values().map(Versions::languages).sum();
        let emails: usize = self
            .inner
            .emails
            .values()
            .map(|e| e.versions.languages())
            .sum();
        notes + emails
    }

    /// The file a note is rendered from for the data's `locale` (`notes/welcome.de.hbs`).
    pub fn note_file(&self, name: &str, data: &Value) -> Option<&str> {
        let versions = self.inner.notes.get(name)?;
        Some(&versions.for_locale(locale_of(data)).key)
    }

    /// What the notes read of their data (the engine builds that once per decision).
    pub fn note_needs(&self) -> &DataNeeds {
        &self.inner.note_needs
    }

    /// What an e-mail's parts read of their data, in any of its languages; everything for an
    /// unknown e-mail.
    pub fn email_needs(&self, name: &str) -> &DataNeeds {
        static EVERYTHING: DataNeeds = DataNeeds {
            everything: true,
            keys: BTreeMap::new(),
        };
        self.inner
            .emails
            .get(name)
            .map_or(&EVERYTHING, |email| &email.needs)
    }

    /// Renders the version of a note for the data's `locale` (see [`Templates::render_note_with`]).
    pub fn render_note(&self, name: &str, ctx: &Value) -> Result<String, RenderError> {
        let Some(versions) = self.inner.notes.get(name) else {
            return Err(RenderError::UnknownNote(name.to_owned()));
        };
        let note = versions.for_locale(locale_of(ctx));
        if let Some(out) = note.program.as_ref().and_then(|p| p.render(ctx)) {
            return Ok(out);
        }
        render(&self.inner.plain, &note.key, ctx)
    }

    /// Renders a note from data built beforehand: the engine builds it once per decision and
    /// swaps only the coupons between notes, instead of copying the whole context per render.
    /// The version is the one for the data's `locale` (`fr-CA`, else `fr`, else the default;
    /// `en` when the data names none), so that the text and its amounts and dates speak one
    /// language.
    pub fn render_note_with(&self, name: &str, data: &TemplateData) -> Result<String, RenderError> {
        let Some(versions) = self.inner.notes.get(name) else {
            return Err(RenderError::UnknownNote(name.to_owned()));
        };
        let note = versions.for_locale(locale_of(data.data()));
        render_with(
            &self.inner.plain,
            note.program.as_ref(),
            || note.key.clone(),
            data,
        )
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
    /// a note (the version for the data's `locale` included): the sender moves the data it has
    /// just built into a context, and nothing is copied.
    pub fn render_email_with(
        &self,
        name: &str,
        data: &TemplateData,
    ) -> Result<RenderedEmail, RenderError> {
        let Some(email) = self.inner.emails.get(name) else {
            return Err(RenderError::UnknownEmail(name.to_owned()));
        };
        let parts = email.versions.for_locale(locale_of(data.data()));
        let name = parts.folder.as_str();
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

#[cfg(test)]
mod tests;

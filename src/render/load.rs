//! Reading a templates folder: which files are notes and which are e-mail parts, each read
//! within the size limit and checked, and all of them registered only when the whole folder
//! is clean.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use handlebars::template::Template;

use super::check::{check_source, line_col};
use super::limits::{MAX_TEMPLATE_BYTES, template_depth, too_large};
use super::{
    DataNeeds, EmailParts, Inner, Program, TemplateIssue, Templates, email_key, note_key, registry,
};

/// Which file of a note or an e-mail a template is: it decides the data the template may read
/// and whether its values are HTML-escaped.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum Part {
    Note,
    Subject,
    Html,
    Text,
}

#[derive(Default)]
pub(super) struct Loader {
    issues: Vec<TemplateIssue>,
    /// Checked templates, registered only when the whole folder is clean.
    notes: Vec<(String, Template)>,
    emails: Vec<(String, Template, Template, Option<Template>)>,
}

impl Loader {
    pub(super) fn issue(&mut self, file: &Path, message: String) {
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

    pub(super) fn load_notes(&mut self, dir: &Path) {
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

    pub(super) fn load_emails(&mut self, dir: &Path) {
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
        let source = match read_template_file(path) {
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

    pub(super) fn finish(mut self) -> Result<Templates, Vec<TemplateIssue>> {
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

/// Templates holding one note `name` of the given text, checked as [`Templates::load`]
/// checks a folder; for rendering a text without writing it to disk.
pub fn note_from_text(name: &str, source: &str) -> Result<Templates, Vec<TemplateIssue>> {
    let mut loader = Loader::default();
    let file = PathBuf::from(format!("notes/{name}.hbs"));
    let (template, issues) = check_source(&file, source, &note_key(name), Part::Note);
    match template {
        Some(t) if issues.is_empty() => loader.notes.push((name.to_owned(), t)),
        _ => loader.issues.extend(issues),
    }
    loader.finish()
}

/// Reads a template file, refusing one larger than [`MAX_TEMPLATE_BYTES`] without reading it
/// all. `Err` holds the line, column and message for the marketer.
pub(crate) fn read_template_file(path: &Path) -> Result<String, (usize, usize, String)> {
    use std::io::Read;
    let at_start = |message: String| (1, 1, message);
    let file =
        std::fs::File::open(path).map_err(|e| at_start(format!("cannot read the file: {e}")))?;
    let mut bytes = Vec::new();
    file.take(MAX_TEMPLATE_BYTES as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| at_start(format!("cannot read the file: {e}")))?;
    if bytes.len() > MAX_TEMPLATE_BYTES {
        // What was read, up to the last whole character, tells where nesting went too deep.
        let head = match std::str::from_utf8(&bytes) {
            Ok(text) => text,
            Err(e) => std::str::from_utf8(&bytes[..e.valid_up_to()]).unwrap_or_default(),
        };
        let v = template_depth(head).err().unwrap_or_else(too_large);
        let (line, col) = line_col(head, v.offset);
        return Err((line, col, v.message));
    }
    String::from_utf8(bytes).map_err(|_| at_start("the file is not UTF-8 text".to_owned()))
}

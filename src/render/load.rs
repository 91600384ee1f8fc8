//! Reading a templates folder: which files are notes and which are e-mail parts, each read
//! within the size limit and checked, and all of them registered only when the whole folder
//! is clean.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use handlebars::template::Template;

use super::check::{check_source, line_col};
use super::language::{Versions, split_language};
use super::limits::{MAX_TEMPLATE_BYTES, template_depth, too_large};
use super::{
    DataNeeds, Email, EmailParts, Inner, Note, Program, TemplateIssue, Templates, email_key,
    note_key, registry,
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

/// A note's file stem or an e-mail's folder name, with the template and language it is of.
#[derive(Debug, Clone)]
pub(super) struct Named {
    /// As on disk: `welcome.de`.
    name: String,
    /// As rules name it: `welcome`.
    base: String,
    /// BCP 47 (`de`, `fr-CA`) for a language version.
    language: Option<String>,
}

impl Named {
    fn default_of(name: &str) -> Named {
        Named {
            name: name.to_owned(),
            base: name.to_owned(),
            language: None,
        }
    }
}

#[derive(Default)]
pub(super) struct Loader {
    issues: Vec<TemplateIssue>,
    /// Checked templates, registered only when the whole folder is clean.
    notes: Vec<(Named, Template)>,
    emails: Vec<(Named, Template, Template, Option<Template>)>,
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
        let mut files = Vec::new();
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
            files.push((name.to_owned(), path));
        }
        for (named, path) in self.name_versions(files, |base| format!("the default {base}.hbs")) {
            if let Some(template) = self.read_and_check(&path, &note_key(&named.name), Part::Note) {
                self.notes.push((named, template));
            }
        }
    }

    /// The names of a folder's notes or e-mails split into template and language; a name
    /// that cannot be one, a language version without the default beside it (`default`
    /// says which file that is) and two files of one language are issues at their file.
    /// Every file with a usable name is returned, to be checked all the same.
    fn name_versions(
        &mut self,
        files: Vec<(String, PathBuf)>,
        default: impl Fn(&str) -> String,
    ) -> Vec<(Named, PathBuf)> {
        let mut named = Vec::with_capacity(files.len());
        for (name, path) in files {
            match split_language(&name) {
                Ok(n) => {
                    let (base, language) = (n.base.to_owned(), n.language);
                    named.push((
                        Named {
                            name,
                            base,
                            language,
                        },
                        path,
                    ));
                }
                Err(message) => self.issue(&path, message),
            }
        }
        let defaults: BTreeSet<&str> = named
            .iter()
            .filter(|(n, _)| n.language.is_none())
            .map(|(n, _)| n.base.as_str())
            .collect();
        let mut seen: BTreeMap<(String, String), &str> = BTreeMap::new();
        let mut issues = Vec::new();
        for (n, path) in &named {
            let Some(language) = &n.language else {
                continue;
            };
            if !defaults.contains(n.base.as_str()) {
                issues.push((
                    path.clone(),
                    format!(
                        "a language version ({language}) needs {} beside it: a customer whose \
                         locale has no version of its own gets that one (a name whose part after \
                         its last dot reads as a language is a language version; write \
                         {:?} for a template of its own)",
                        default(&n.base),
                        format!("{}-{}", n.base, language)
                    ),
                ));
            }
            let key = (n.base.clone(), language.to_ascii_lowercase());
            match seen.get(&key) {
                Some(first) => issues.push((
                    path.clone(),
                    format!(
                        "the same language as {first:?}: a template has one version per language"
                    ),
                )),
                None => {
                    seen.insert(key, &n.name);
                }
            }
        }
        for (path, message) in issues {
            self.issue(&path, message);
        }
        named
    }

    pub(super) fn load_emails(&mut self, dir: &Path) {
        let Some(entries) = self.list(dir) else {
            return;
        };
        let mut folders = Vec::new();
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
            folders.push((name, path));
        }
        for (named, path) in
            self.name_versions(folders, |base| format!("the default emails/{base}/"))
        {
            self.load_email(named, &path);
        }
    }

    fn load_email(&mut self, named: Named, dir: &Path) {
        let name = named.name.as_str();
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
            self.emails.push((named, subject, html, text));
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
        let mut note_needs = DataNeeds::default();
        let mut notes = Vec::with_capacity(self.notes.len());
        for (named, template) in self.notes {
            let program = Program::compile(&template, false);
            note_needs.merge(&DataNeeds::of(program.as_ref()));
            let key = note_key(&named.name);
            plain.register_template(&key, template);
            notes.push((named, Note { key, program }));
        }
        let mut emails = Vec::with_capacity(self.emails.len());
        for (named, subject, html_part, text) in self.emails {
            let name = &named.name;
            let subject_program = Program::compile(&subject, false);
            let html_program = Program::compile(&html_part, true);
            let text_program = text.as_ref().and_then(|t| Program::compile(t, false));
            let mut needs = DataNeeds::of(subject_program.as_ref());
            needs.merge(&DataNeeds::of(html_program.as_ref()));
            if text.is_some() {
                needs.merge(&DataNeeds::of(text_program.as_ref()));
            }
            plain.register_template(&email_key(name, "subject"), subject);
            html.register_template(&email_key(name, "html"), html_part);
            let has_text = text.is_some();
            if let Some(text) = text {
                plain.register_template(&email_key(name, "text"), text);
            }
            let parts = EmailParts {
                folder: name.clone(),
                needs,
                subject: subject_program,
                html: html_program,
                has_text,
                text: text_program,
            };
            emails.push((named, parts));
        }
        let notes = by_template(notes);
        // An e-mail's data is built once, before its version is chosen: it holds what any
        // of them reads.
        let emails = by_template(emails)
            .into_iter()
            .map(|(name, versions)| {
                let mut needs = DataNeeds::default();
                for parts in versions.all() {
                    needs.merge(&parts.needs);
                }
                (name, Email { needs, versions })
            })
            .collect();
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

/// Versions gathered under their template's name. Every language version has its default
/// once the folder is clean ([`Loader::name_versions`]); one without is left out.
fn by_template<T>(versions: Vec<(Named, T)>) -> BTreeMap<String, Versions<T>> {
    let (defaults, languages): (Vec<_>, Vec<_>) = versions
        .into_iter()
        .partition(|(n, _)| n.language.is_none());
    let mut out: BTreeMap<String, Versions<T>> = defaults
        .into_iter()
        .map(|(n, v)| (n.base, Versions::new(v)))
        .collect();
    for (n, v) in languages {
        if let (Some(versions), Some(language)) = (out.get_mut(&n.base), &n.language) {
            versions.add(language, v);
        }
    }
    out
}

/// Templates holding one note `name` of the given text, checked as [`Templates::load`]
/// checks a folder; for rendering a text without writing it to disk.
pub fn note_from_text(name: &str, source: &str) -> Result<Templates, Vec<TemplateIssue>> {
    let mut loader = Loader::default();
    let file = PathBuf::from(format!("notes/{name}.hbs"));
    let (template, issues) = check_source(&file, source, &note_key(name), Part::Note);
    match template {
        Some(t) if issues.is_empty() => loader.notes.push((Named::default_of(name), t)),
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

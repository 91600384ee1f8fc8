//! The names rules refer to: ids defined so far (to reject a duplicate where it is written)
//! and the templates that exist on disk.

use super::*;

/// Ids defined so far, with where, to reject duplicates.
pub(super) struct Ids<'a> {
    what: &'static str,
    seen: HashMap<String, (&'a Source, usize)>,
}

impl<'a> Ids<'a> {
    pub(super) fn new(what: &'static str) -> Self {
        Ids {
            what,
            seen: HashMap::new(),
        }
    }
    pub(super) fn add(&mut self, src: &'a Source, id: &Spanned<String>, c: &mut Collector) {
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
/// when a template has an error of its own (reported once, by the template check). Names are
/// those rules use: a language version (`welcome.de.hbs`, `emails/thanks.fr/`) counts for its
/// template (`welcome`, `thanks`), and is remembered to tell a rule that names it directly.
pub(super) struct TemplateNames {
    pub(super) notes: Vec<String>,
    pub(super) emails: Vec<String>,
    /// Language version's name on disk -> (its template, its language), notes and e-mails.
    note_languages: HashMap<String, (String, String)>,
    email_languages: HashMap<String, (String, String)>,
}

impl TemplateNames {
    pub(super) fn on_disk(dir: &Path) -> Self {
        let names = |sub: &str, want_dir: bool| -> Vec<String> {
            std::fs::read_dir(dir.join(sub))
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
                .unwrap_or_default()
        };
        let (notes, note_languages) = by_template(names("notes", false));
        let (emails, email_languages) = by_template(names("emails", true));
        TemplateNames {
            notes,
            emails,
            note_languages,
            email_languages,
        }
    }
    pub(super) fn has_note(&self, name: &str) -> bool {
        self.notes.iter().any(|n| n == name)
    }
    pub(super) fn has_email(&self, name: &str) -> bool {
        self.emails.iter().any(|n| n == name)
    }
    /// The template and language of a note's language version named as on disk.
    pub(super) fn note_language(&self, name: &str) -> Option<&(String, String)> {
        self.note_languages.get(name)
    }
    /// The template and language of an e-mail's language version named as on disk.
    pub(super) fn email_language(&self, name: &str) -> Option<&(String, String)> {
        self.email_languages.get(name)
    }
}

/// Template names (sorted, once each) from names on disk, and the language versions among them.
fn by_template(on_disk: Vec<String>) -> (Vec<String>, HashMap<String, (String, String)>) {
    let mut templates = Vec::with_capacity(on_disk.len());
    let mut languages = HashMap::new();
    for name in on_disk {
        match crate::render::split_language(&name) {
            Ok(crate::render::TemplateName {
                base,
                language: Some(language),
            }) => {
                templates.push(base.to_owned());
                languages.insert(name.clone(), (base.to_owned(), language));
            }
            // A name the template check rejects is still a name: one error, at the file.
            Ok(_) | Err(_) => templates.push(name),
        }
    }
    templates.sort();
    templates.dedup();
    (templates, languages)
}

/// The error for a rule that names a language version instead of its template.
pub(super) fn names_a_language_version(
    what: &str,
    name: &str,
    (base, language): &(String, String),
) -> String {
    format!(
        "{what} template {name:?} is the {language} version of {base:?}: name the template \
         ({base:?}); each customer gets the version for their locale"
    )
}

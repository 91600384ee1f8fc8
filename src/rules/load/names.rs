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
/// when a template has an error of its own (reported once, by the template check).
pub(super) struct TemplateNames {
    pub(super) notes: Vec<String>,
    pub(super) emails: Vec<String>,
}

impl TemplateNames {
    pub(super) fn on_disk(dir: &Path) -> Self {
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
    pub(super) fn has_note(&self, name: &str) -> bool {
        self.notes.iter().any(|n| n == name)
    }
    pub(super) fn has_email(&self, name: &str) -> bool {
        self.emails.iter().any(|n| n == name)
    }
}

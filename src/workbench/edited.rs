//! The rules as an edit would make them: the folders copied to a scratch folder, the edited
//! files written over the copies, and the copy loaded by the same loader `packwell validate`
//! and the service use. So the findings are exactly `validate`'s, and the rules version is the
//! one the service would show after a save (the version hashes names and contents, not where
//! the folders are).

use super::files::{FileKind, Folders, NotAFile};
use crate::rules::{Finding, LoadOutcome, RuleSet, load_rules};
use std::collections::BTreeMap;
use std::path::Path;

/// Edited files: relative path (as in [`Folders::resolve`]) to their whole new text.
pub type Edits = BTreeMap<String, String>;

/// One finding, with its file relative to the folder that holds `rules/` and `templates/`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct Diagnostic {
    pub file: String,
    pub line: usize,
    pub col: usize,
    /// `error` or `warning`.
    pub severity: String,
    pub message: String,
}

/// The edited folders loaded: the rules when valid, and every finding.
pub struct Loaded {
    pub rules: Option<RuleSet>,
    pub diagnostics: Vec<Diagnostic>,
}

impl Loaded {
    pub fn is_valid(&self) -> bool {
        self.rules.is_some()
    }
}

/// What went wrong before the rules could be loaded at all.
#[derive(Debug)]
pub enum EditError {
    /// A path that is not a rule file or template.
    NotAFile(NotAFile),
    /// The scratch copy could not be made (disk full, a folder not readable).
    Io(String),
}

/// Loads the folders with `edits` over them. Files not named are taken as they are on disk.
///
/// Blocking (it copies and reads files, and loading parses): call it off the async runtime.
pub fn load_edited(folders: &Folders, edits: &Edits) -> Result<Loaded, EditError> {
    let mut targets = Vec::with_capacity(edits.len());
    for (path, text) in edits {
        let (_, kind) = folders.resolve(path).map_err(EditError::NotAFile)?;
        targets.push((path, kind, text));
    }
    let scratch = tempfile::tempdir().map_err(|e| EditError::Io(e.to_string()))?;
    let rules = scratch.path().join("rules");
    let templates = scratch.path().join("templates");
    let io = |e: std::io::Error| EditError::Io(e.to_string());
    copy_tree(&folders.rules, &rules, 0).map_err(io)?;
    copy_tree(&folders.templates, &templates, 0).map_err(io)?;
    let scratch_folders = Folders {
        rules: rules.clone(),
        templates: templates.clone(),
    };
    for (path, kind, text) in targets {
        let (on_disk, _) = scratch_folders.resolve(path).map_err(EditError::NotAFile)?;
        if kind != FileKind::Rules
            && let Some(parent) = on_disk.parent()
        {
            std::fs::create_dir_all(parent).map_err(io)?;
        }
        std::fs::write(&on_disk, text).map_err(io)?;
    }
    let outcome = load_rules(&rules, &templates);
    Ok(Loaded {
        diagnostics: diagnostics(&outcome, scratch.path()),
        rules: outcome.rules,
    })
}

/// The findings with their scratch paths made relative again.
fn diagnostics(outcome: &LoadOutcome, scratch: &Path) -> Vec<Diagnostic> {
    outcome
        .findings
        .iter()
        .map(|f: &Finding| Diagnostic {
            file: f
                .file
                .strip_prefix(scratch)
                .unwrap_or(&f.file)
                .to_string_lossy()
                .replace('\\', "/"),
            line: f.line,
            col: f.col,
            severity: if f.warning { "warning" } else { "error" }.to_string(),
            message: f.message.clone(),
        })
        .collect()
}

/// Copies the rule files and templates of `from` into `to` (`.toml` and `.hbs`), three folders
/// deep as the loaders read (`rules/`, `templates/notes/`, `templates/emails/NAME/`). Hidden
/// folders (`.git`) are left out, hidden files not (the loaders and the version hash read
/// them); an entry that cannot be read (a dangling link) is left out, for the loader to say
/// what is missing; a missing `from` copies nothing.
fn copy_tree(from: &Path, to: &Path, level: usize) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    let entries = match std::fs::read_dir(from) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name();
        let text = name.to_string_lossy();
        // metadata() follows links, as the loaders do.
        let Ok(meta) = std::fs::metadata(entry.path()) else {
            continue;
        };
        if meta.is_dir() {
            if level < 2 && !text.starts_with('.') {
                copy_tree(&entry.path(), &to.join(&name), level + 1)?;
            }
        } else if meta.is_file() && (text.ends_with(".toml") || text.ends_with(".hbs")) {
            std::fs::copy(entry.path(), to.join(&name))?;
        }
    }
    Ok(())
}

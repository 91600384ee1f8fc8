//! The files the workbench edits: rule files (`rules/NAME.toml`), note templates
//! (`templates/notes/NAME.hbs`) and e-mail parts (`templates/emails/NAME/PART.hbs`), named by
//! paths relative to the folder that holds `rules/` and `templates/` (CONTRACT §7). A path is
//! checked against those shapes before it touches the disk, so no request can read or write
//! anything else (no `..`, no hidden file, no other extension, nothing deeper).

use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

/// The rules folder and the templates folder the service reads.
#[derive(Debug, Clone)]
pub struct Folders {
    pub rules: PathBuf,
    pub templates: PathBuf,
}

/// What a file is, by its path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum FileKind {
    Rules,
    Note,
    Email,
}

/// One file of the folders, as the file list shows it.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct FileEntry {
    /// Relative to the folder that holds `rules/` and `templates/`.
    pub path: String,
    pub kind: FileKind,
    /// The file's entity tag (a digest of its bytes, quoted): send it back in `If-Match`.
    pub etag: String,
    pub bytes: u64,
}

/// A path that is not one of the workbench's files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotAFile(pub String);

impl Folders {
    /// Where a relative path lives on disk, and what it is; an error for any path that is not
    /// a rule file or a template.
    pub fn resolve(&self, relative: &str) -> Result<(PathBuf, FileKind), NotAFile> {
        let parts: Vec<&str> = relative.split('/').collect();
        let plain = |name: &str| {
            !name.is_empty()
                && !name.starts_with('.')
                && name.len() <= 128
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        };
        let not = || {
            NotAFile(format!(
                "{relative:?} is not a rule file or a template: expected rules/NAME.toml, \
                 templates/notes/NAME.hbs or templates/emails/NAME/(subject|html|text).hbs"
            ))
        };
        if !parts.iter().all(|p| plain(p)) {
            return Err(not());
        }
        match parts.as_slice() {
            ["rules", name] if name.ends_with(".toml") && name.len() > 5 => {
                Ok((self.rules.join(name), FileKind::Rules))
            }
            ["templates", "notes", name] if name.ends_with(".hbs") && name.len() > 4 => {
                Ok((self.templates.join("notes").join(name), FileKind::Note))
            }
            ["templates", "emails", email, part]
                if matches!(*part, "subject.hbs" | "html.hbs" | "text.hbs") =>
            {
                Ok((
                    self.templates.join("emails").join(email).join(part),
                    FileKind::Email,
                ))
            }
            _ => Err(not()),
        }
    }

    /// Every rule file and template there is, in path order.
    pub fn list(&self) -> Vec<FileEntry> {
        let mut out = Vec::new();
        let mut add = |path: String, kind: FileKind, on_disk: &Path| {
            // Only what the routes can open again.
            if self.resolve(&path).is_err() {
                return;
            }
            if let Ok(bytes) = std::fs::read(on_disk) {
                out.push(FileEntry {
                    path,
                    kind,
                    etag: etag(&bytes),
                    bytes: bytes.len() as u64,
                });
            }
        };
        for (name, on_disk) in entries(&self.rules) {
            if name.ends_with(".toml") {
                add(format!("rules/{name}"), FileKind::Rules, &on_disk);
            }
        }
        for (name, on_disk) in entries(&self.templates.join("notes")) {
            if name.ends_with(".hbs") {
                add(format!("templates/notes/{name}"), FileKind::Note, &on_disk);
            }
        }
        for (email, folder) in entries(&self.templates.join("emails")) {
            for (part, on_disk) in entries(&folder) {
                if matches!(part.as_str(), "subject.hbs" | "html.hbs" | "text.hbs") {
                    let path = format!("templates/emails/{email}/{part}");
                    add(path, FileKind::Email, &on_disk);
                }
            }
        }
        out.sort_by(|a, b| a.path.cmp(&b.path));
        out
    }
}

/// A folder's entries with plain UTF-8 names, hidden ones left out; none when unreadable.
fn entries(dir: &Path) -> Vec<(String, PathBuf)> {
    let Ok(read) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out: Vec<(String, PathBuf)> = read
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_str()?.to_owned();
            (!name.starts_with('.')).then(|| (name, e.path()))
        })
        .collect();
    out.sort();
    out
}

/// A file's entity tag: the SHA-256 of its bytes, quoted as HTTP writes tags.
pub fn etag(bytes: &[u8]) -> String {
    format!("\"{}\"", hex::encode(Sha256::digest(bytes)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn folders() -> Folders {
        Folders {
            rules: PathBuf::from("/shop/rules"),
            templates: PathBuf::from("/shop/templates"),
        }
    }

    #[test]
    fn only_rule_files_and_templates_resolve() {
        let f = folders();
        let ok = |p: &str| f.resolve(p);
        assert_eq!(
            ok("rules/30-rules.toml"),
            Ok((PathBuf::from("/shop/rules/30-rules.toml"), FileKind::Rules))
        );
        assert_eq!(
            ok("templates/notes/welcome.de.hbs").map(|r| r.1),
            Ok(FileKind::Note)
        );
        assert_eq!(
            ok("templates/emails/check-in/html.hbs"),
            Ok((
                PathBuf::from("/shop/templates/emails/check-in/html.hbs"),
                FileKind::Email
            ))
        );
        for bad in [
            "rules/../secret.toml",
            "rules/.hidden.toml",
            "rules/a/b.toml",
            "rules/notes.txt",
            "rules/.toml",
            "/etc/passwd",
            "templates/notes/../../x.hbs",
            "templates/emails/x/other.hbs",
            "templates/notes/a b.hbs",
            "templates/x.hbs",
            "data/packwell.db",
            "",
        ] {
            assert!(f.resolve(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_tag_is_the_digest_of_the_bytes() {
        assert_eq!(
            etag(b""),
            "\"e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855\""
        );
    }
}

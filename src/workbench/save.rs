//! Saving one file: the folders with the new text must validate, then the caller's `If-Match`
//! must still name the file on disk (else someone saved since they read it), then the file is
//! written atomically (a new file renamed over the old, so the service's watcher never reads
//! half a file) and, when the folder is a git work tree, committed with the caller as the
//! author. One save at a time per service (a lock), so of two racing saves that read the same
//! version, one wins and the other is told.

use super::edited::{Diagnostic, Edits, load_edited};
use super::files::{FileKind, Folders, etag};
use super::shadow::shadow_changed_rules;
use std::io::Write as _;
use std::path::Path;
use std::process::Command;

/// A save asked for.
pub struct SaveRequest<'a> {
    pub path: &'a str,
    pub text: String,
    /// The entity tag the caller read; `None` saves whatever is on disk now.
    pub if_match: Option<&'a str>,
    /// Who saves (the token's name): the git author.
    pub author: &'a str,
    pub message: &'a str,
    /// Set `mode = "shadow"` on each rule the edit changes.
    pub shadow: bool,
}

/// A save done.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct Saved {
    pub path: String,
    /// The file's new entity tag.
    pub etag: String,
    /// The rules version of the folders as saved: what the service shows once it reloads.
    pub rules_version: String,
    /// The git commit made, when the folder is a git work tree and the text changed.
    pub commit: Option<String>,
    /// Why no commit could be made in a git work tree (the file is saved all the same).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub commit_error: Option<String>,
    /// The rules set to `mode = "shadow"` ("save as shadow").
    pub shadowed: Vec<String>,
}

/// Why a save was refused.
#[derive(Debug)]
pub enum SaveError {
    NotAFile(String),
    /// "Save as shadow" of something that is not a rule file.
    NotRules,
    /// "Save as shadow" could not set the mode of these changed rules (written inline).
    NotShadowed(Vec<String>),
    /// The folders with the new text do not validate.
    Invalid(Vec<Diagnostic>),
    /// The file is not the version the caller read: its current tag (none: it was removed).
    Changed(Option<String>),
    Io(String),
}

/// Saves one file (blocking: call it off the async runtime, holding the save lock).
pub fn save(folders: &Folders, req: SaveRequest<'_>) -> Result<Saved, SaveError> {
    let (on_disk, kind) = folders
        .resolve(req.path)
        .map_err(|e| SaveError::NotAFile(e.0))?;
    if std::fs::symlink_metadata(&on_disk).is_ok_and(|m| m.file_type().is_symlink()) {
        return Err(SaveError::NotAFile(format!(
            "{} is a symbolic link: edit the file it points to",
            req.path
        )));
    }
    let old = match std::fs::read(&on_disk) {
        Ok(bytes) => Some(bytes),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(SaveError::Io(format!("{}: {e}", req.path))),
    };
    let (text, shadowed) = if req.shadow {
        if kind != FileKind::Rules {
            return Err(SaveError::NotRules);
        }
        let old_text = old
            .as_deref()
            .map(String::from_utf8_lossy)
            .unwrap_or_default();
        let (text, shadowed, missed) = shadow_changed_rules(&old_text, &req.text);
        if !missed.is_empty() {
            return Err(SaveError::NotShadowed(missed));
        }
        (text, shadowed)
    } else {
        (req.text, Vec::new())
    };
    let edits = Edits::from([(req.path.to_string(), text.clone())]);
    let loaded = load_edited(folders, &edits).map_err(|e| match e {
        super::edited::EditError::NotAFile(e) => SaveError::NotAFile(e.0),
        super::edited::EditError::Io(e) => SaveError::Io(e),
    })?;
    let Some(rules) = loaded.rules else {
        return Err(SaveError::Invalid(loaded.diagnostics));
    };
    let current = old.as_deref().map(etag);
    if let Some(wanted) = req.if_match
        && wanted.trim() != "*"
        && current.as_deref() != Some(wanted.trim())
    {
        return Err(SaveError::Changed(current));
    }
    let unchanged = old.as_deref() == Some(text.as_bytes());
    let (mut commit, mut commit_error) = (None, None);
    if !unchanged {
        write_atomically(&on_disk, text.as_bytes())
            .map_err(|e| SaveError::Io(format!("{}: {e}", req.path)))?;
        match commit_file(&on_disk, req.author, req.message) {
            Ok(c) => commit = c,
            Err(e) => {
                tracing::warn!(path = req.path, error = %e, "a saved rule file was not committed");
                commit_error = Some(e);
            }
        }
    }
    Ok(Saved {
        path: req.path.to_string(),
        etag: etag(text.as_bytes()),
        rules_version: rules.version,
        commit,
        commit_error,
        shadowed,
    })
}

/// Writes a file whole or not at all: a temporary file in the same folder, flushed to disk,
/// then renamed over the old one.
fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let folder = path
        .parent()
        .ok_or_else(|| std::io::Error::other("no folder"))?;
    std::fs::create_dir_all(folder)?;
    // The new file keeps the old one's permissions (a temporary file starts private), so
    // whoever else reads the folder (a CI check, a git pull) still can; a new one is 0644.
    let permissions = match std::fs::metadata(path) {
        Ok(meta) => meta.permissions(),
        Err(_) => std::os::unix::fs::PermissionsExt::from_mode(0o644),
    };
    let mut file = tempfile::NamedTempFile::new_in(folder)?;
    file.write_all(bytes)?;
    file.as_file().set_permissions(permissions)?;
    file.as_file().sync_all()?;
    file.persist(path).map_err(|e| e.error)?;
    Ok(())
}

/// Commits the file alone when its folder is in a git work tree: `Ok(None)` when it is not.
/// The author is the token's name; the committer is Packwell, which made the commit for them.
fn commit_file(path: &Path, author: &str, message: &str) -> Result<Option<String>, String> {
    let folder = path.parent().unwrap_or(Path::new("."));
    let git = |args: &[&str]| -> Result<String, String> {
        let mut command = Command::new("git");
        command
            .current_dir(folder)
            .args(args)
            .env("GIT_AUTHOR_NAME", author)
            .env("GIT_AUTHOR_EMAIL", author_address(author))
            .env("GIT_COMMITTER_NAME", "Packwell")
            .env("GIT_COMMITTER_EMAIL", "packwell@workbench.invalid")
            // Never a prompt (credentials, an editor): the service has no one to answer it.
            .env("GIT_TERMINAL_PROMPT", "0")
            .env("GIT_EDITOR", "true");
        let out = run_bounded(command, GIT_TIMEOUT)?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
        } else {
            Err(format!(
                "git {}: {}",
                args.first().unwrap_or(&""),
                String::from_utf8_lossy(&out.stderr).trim()
            ))
        }
    };
    if !is_git_work_tree(folder) {
        return Ok(None);
    }
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    git(&["add", "--", &name])?;
    git(&["commit", "--quiet", "--only", "-m", message, "--", &name])?;
    git(&["rev-parse", "HEAD"]).map(Some)
}

/// Longest a git command of a save may take (a hook, a signing key that waits).
pub const GIT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(20);

/// Runs a command to its end, or kills it after `limit`.
fn run_bounded(
    mut command: Command,
    limit: std::time::Duration,
) -> Result<std::process::Output, String> {
    use std::process::Stdio;
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("git: {e}"))?;
    let deadline = std::time::Instant::now() + limit;
    loop {
        match child.try_wait() {
            Ok(Some(_)) => break,
            Ok(None) if std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "git took longer than {} s and was stopped",
                    limit.as_secs()
                ));
            }
            Err(e) => return Err(format!("git: {e}")),
        }
    }
    child.wait_with_output().map_err(|e| format!("git: {e}"))
}

/// Whether `folder` is inside a git work tree (no git installed: it is not).
pub fn is_git_work_tree(folder: &Path) -> bool {
    Command::new("git")
        .current_dir(folder)
        .args(["rev-parse", "--is-inside-work-tree"])
        .output()
        .is_ok_and(|out| out.status.success() && out.stdout.trim_ascii() == b"true")
}

/// A git author address for a token name: the name's plain characters at a reserved domain,
/// since a token has no e-mail address of its own.
fn author_address(author: &str) -> String {
    let local: String = author
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') {
                c
            } else {
                '-'
            }
        })
        .collect();
    format!("{local}@workbench.invalid")
}

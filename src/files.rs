//! The data folder holds names, addresses and coupon codes: its folders are the service user's
//! alone (0700) and so are its files (0600): the SQLite file with its `-wal` and `-shm`, the
//! lock file, the coupon key and the outbox e-mails.
//!
//! Every file and folder Packwell makes is made with that mode from the start
//! ([`create_private_dir`], [`private_file`]), and SQLite gives the `-wal` and `-shm` files it
//! makes itself the mode of the database file (it sets it explicitly, whatever the umask), so
//! a database file made 0600 is enough. Packwell does not set the process's umask instead: the
//! umask is process-wide, so it would also narrow files a user asks for elsewhere (`report
//! --out`, `preview --out`), and setting it races with threads already making files (the
//! runtime, librdkafka). A umask can only take bits away, so a mode given at creation is
//! 0700/0600 or narrower whatever the umask is. Folders and files made before, or by hand,
//! are narrowed by [`tighten_tree`], which `run` calls on the data folder, saying what changed.

use std::fmt;
use std::fs::{DirBuilder, OpenOptions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// A folder of the data folder: the owner reads, writes and enters it; nobody else.
pub const DIR_MODE: u32 = 0o700;
/// A file of the data folder: the owner reads and writes it; nobody else.
pub const FILE_MODE: u32 = 0o600;
/// The bits that open a file or folder to the group or to others.
const OPEN_TO_OTHERS: u32 = 0o077;

/// Creates `dir` and its missing parents, each 0700.
pub fn create_private_dir(dir: &Path) -> io::Result<()> {
    DirBuilder::new().recursive(true).mode(DIR_MODE).create(dir)
}

/// Options that create a file 0600 (an existing file keeps its mode: see [`tighten`]).
pub fn private_file() -> OpenOptions {
    let mut options = OpenOptions::new();
    options.mode(FILE_MODE);
    options
}

/// A file or folder that was open to others.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModeFinding {
    pub path: PathBuf,
    /// Its permission bits as found.
    pub was: u32,
    /// Why it could not be narrowed; `None` when it was.
    pub error: Option<String>,
}

impl fmt::Display for ModeFinding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let now = self.was & !OPEN_TO_OTHERS;
        match &self.error {
            None => write!(
                f,
                "{} was {:04o}, open to other users: now {now:04o}",
                self.path.display(),
                self.was
            ),
            Some(e) => write!(
                f,
                "{} is {:04o}, open to other users, and cannot be narrowed to {now:04o}: {e}",
                self.path.display(),
                self.was
            ),
        }
    }
}

/// Narrows `path` to its owner (takes the group's and others' bits away) when it is open to
/// others. A symbolic link is left alone (its target is not the data folder's to change); a
/// path that does not exist is nothing to narrow.
pub fn tighten(path: &Path) -> Option<ModeFinding> {
    let meta = std::fs::symlink_metadata(path).ok()?;
    if meta.file_type().is_symlink() {
        return None;
    }
    narrow(path, meta.permissions().mode())
}

fn narrow(path: &Path, mode: u32) -> Option<ModeFinding> {
    let was = mode & 0o7777;
    if was & OPEN_TO_OTHERS == 0 {
        return None;
    }
    let error =
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(was & !OPEN_TO_OTHERS))
            .err()
            .map(|e| e.to_string());
    Some(ModeFinding {
        path: path.to_path_buf(),
        was,
        error,
    })
}

/// Narrows `root` (followed when it is a symbolic link) and every folder and file under it
/// (symbolic links under it are not followed). Walks with a list rather than recursion, so
/// no folder depth can exhaust the stack. A folder that cannot be read is reported too.
pub fn tighten_tree(root: &Path) -> Vec<ModeFinding> {
    let mut found = Vec::new();
    let Ok(meta) = std::fs::metadata(root) else {
        return found;
    };
    found.extend(narrow(root, meta.permissions().mode()));
    if !meta.is_dir() {
        return found;
    }
    let mut folders = vec![root.to_path_buf()];
    while let Some(dir) = folders.pop() {
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) => {
                found.push(ModeFinding {
                    path: dir.clone(),
                    was: 0,
                    error: Some(format!("cannot read the folder: {e}")),
                });
                continue;
            }
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let Ok(meta) = std::fs::symlink_metadata(&path) else {
                continue;
            };
            if meta.file_type().is_symlink() {
                continue;
            }
            found.extend(narrow(&path, meta.permissions().mode()));
            if meta.is_dir() {
                folders.push(path);
            }
        }
    }
    found
}

/// Makes ready the file of a SQLite store: its folder (0700), the file itself (0600, made
/// empty when missing, which SQLite takes as a new database), and narrows the file and its
/// `-wal`/`-shm` when they are open to others. Returns whether the file is new, and what
/// was narrowed.
pub fn prepare_sqlite_file(file: &Path) -> io::Result<(bool, Vec<ModeFinding>)> {
    if let Some(dir) = file.parent().filter(|d| !d.as_os_str().is_empty()) {
        create_private_dir(dir)?;
    }
    let new = match private_file().write(true).create_new(true).open(file) {
        Ok(_) => true,
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => false,
        Err(e) => return Err(e),
    };
    let mut found = Vec::new();
    for suffix in ["", "-wal", "-shm"] {
        let mut name = file.as_os_str().to_os_string();
        name.push(suffix);
        found.extend(tighten(Path::new(&name)));
    }
    Ok((new, found))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(p: &Path) -> u32 {
        std::fs::symlink_metadata(p).unwrap().permissions().mode() & 0o7777
    }

    #[test]
    fn made_private_and_narrowed_when_open() {
        let tmp = tempfile::tempdir().unwrap();
        let data = tmp.path().join("data");
        create_private_dir(&data.join("outbox")).unwrap();
        assert_eq!(mode(&data), 0o700);
        assert_eq!(mode(&data.join("outbox")), 0o700);
        let file = data.join("outbox/a.eml");
        std::io::Write::write_all(
            &mut private_file().write(true).create(true).open(&file).unwrap(),
            b"x",
        )
        .unwrap();
        assert_eq!(mode(&file), 0o600);
        assert!(tighten_tree(&data).is_empty());

        std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
        std::os::unix::fs::symlink("/etc", data.join("elsewhere")).unwrap();
        let found = tighten_tree(&data);
        let paths: Vec<&Path> = found.iter().map(|f| f.path.as_path()).collect();
        assert_eq!(paths, [data.as_path(), file.as_path()], "{found:?}");
        assert!(found.iter().all(|f| f.error.is_none()));
        assert!(found[0].to_string().contains("was 0755"), "{}", found[0]);
        assert_eq!((mode(&data), mode(&file)), (0o700, 0o600));
        assert_eq!(
            mode(Path::new("/etc")) & 0o005,
            0o005,
            "a link's target is left alone"
        );
    }

    #[test]
    fn a_store_file_is_made_0600_with_its_wal() {
        let tmp = tempfile::tempdir().unwrap();
        let db = tmp.path().join("data/packwell.db");
        let (new, found) = prepare_sqlite_file(&db).unwrap();
        assert!(new && found.is_empty());
        assert_eq!(mode(&db), 0o600);
        let wal = tmp.path().join("data/packwell.db-wal");
        std::fs::write(&wal, b"").unwrap();
        std::fs::set_permissions(&wal, std::fs::Permissions::from_mode(0o644)).unwrap();
        let (new, found) = prepare_sqlite_file(&db).unwrap();
        assert!(!new);
        assert_eq!(found.len(), 1);
        assert_eq!(mode(&wal), 0o600);
    }
}

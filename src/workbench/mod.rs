//! The marketers' workbench (CONTRACT §7): the rule files and templates read, validated and
//! tried as edited, backtested against the rules in force, and saved. The rule files on disk
//! (and in git, when the folder is a work tree) stay the one source of truth: an edit lives in
//! the browser until it is saved, and everything here works on a scratch copy of the folders
//! with the edit over it. The HTTP routes are in `crate::http::workbench`; the page is
//! `page/workbench.html` with its editor bundle `page/editor.js` (built from `web/workbench/`).
//!
//! Here: [`Workbench`], what the service keeps for it. Next to it: `files` (which files, their
//! paths and tags), `edited` (the folders as an edit makes them, validated), `shadow` ("save as
//! shadow"), `save`, `try_order` ("try it"), `compare` and `jobs` (background backtests).

mod compare;
mod edited;
mod files;
mod jobs;
mod save;
mod shadow;
mod try_order;

pub use compare::{
    ChangedOrder, Comparison, DailyCost, InsertChange, RuleChange, RunOut, SAMPLE, SideLog,
};
pub use edited::{Diagnostic, EditError, Edits, Loaded, load_edited};
pub use files::{FileEntry, FileKind, Folders, NotAFile, etag};
pub use jobs::{BacktestView, Backtests, Busy, Progress};
pub use save::{SaveError, SaveRequest, Saved, is_git_work_tree, save};
pub use shadow::shadow_changed_rules;
pub use try_order::{
    MAX_HISTORY, Tried, TriedEmail, TriedSide, TryEnv, find_order, history_before, try_order,
};

use std::sync::Arc;

/// The page marketers edit in.
pub const PAGE: &str = include_str!("page/workbench.html");
/// Its editor: CodeMirror 6 and the workbench's glue, bundled from `web/workbench/`.
pub const EDITOR_JS: &[u8] = include_bytes!("page/editor.js");

/// Edits loaded at once; more wait their turn.
pub const LOADS_AT_ONCE: usize = 2;

/// What the service keeps for the workbench.
pub struct Workbench {
    pub folders: Folders,
    /// One save at a time: of two racing saves of the same version, one wins. Held by the
    /// blocking save itself, so a request given up halfway cannot release it early.
    pub saving: std::sync::Mutex<()>,
    /// Validations at once (each copies the folders and loads them on a blocking thread).
    pub loading: tokio::sync::Semaphore,
    pub backtests: Arc<Backtests>,
    /// `[email] from`, for e-mails shown by "try it".
    pub email_from: String,
    /// `[http] public_url`, the base of the unsubscribe links shown.
    pub public_url: String,
}

impl Workbench {
    pub fn new(folders: Folders, email_from: String, public_url: String) -> Workbench {
        Workbench {
            folders,
            saving: std::sync::Mutex::new(()),
            loading: tokio::sync::Semaphore::new(LOADS_AT_ONCE),
            backtests: Arc::new(Backtests::default()),
            email_from,
            public_url,
        }
    }
}

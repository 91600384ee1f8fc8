//! Rules hot reload: a debounced watcher on the rules and templates folders builds a new
//! RuleSet on every change and swaps it in only if it validates; otherwise the error goes to
//! the log, a metric and `/readyz`, and the old rules keep deciding.

use super::Shared;
use crate::rules::load_rules;
use crate::store::DecideEnv;
use notify::event::{AccessKind, AccessMode};
use notify::{Event, EventKind, RecommendedWatcher, RecursiveMode, Watcher};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::mpsc::RecvTimeoutError;
use std::time::Duration;

/// Loads the folders again; swaps the rules in when they are valid. Returns the error text
/// otherwise (and keeps the old rules).
pub fn reload(
    shared: &Shared,
    rules_dir: &std::path::Path,
    templates_dir: &std::path::Path,
) -> Result<String, String> {
    let outcome = load_rules(rules_dir, templates_dir);
    match outcome.rules {
        Some(rules) => {
            let version = rules.version.clone();
            let old = shared.env.load_full();
            if old.rules.version == version {
                return Ok(version);
            }
            shared.env.store(Arc::new(DecideEnv {
                rules: Arc::new(rules),
                key: old.key.clone(),
                shop: old.shop.clone(),
            }));
            shared
                .metrics
                .rules_reloads
                .with_label_values(&["ok"])
                .inc();
            let mut r = shared.readiness.lock().unwrap_or_else(|e| e.into_inner());
            r.rules_error = None;
            r.rules_version = version.clone();
            tracing::info!(%version, "rules reloaded");
            Ok(version)
        }
        None => {
            let errors: Vec<String> = outcome.errors().map(|f| f.to_string()).collect();
            let text = errors.join("\n");
            shared
                .metrics
                .rules_reloads
                .with_label_values(&["invalid"])
                .inc();
            shared
                .readiness
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .rules_error = Some(text.clone());
            tracing::error!(errors = %text, "the changed rules are invalid; the previous rules keep deciding");
            Err(text)
        }
    }
}

/// How long the folders must stay quiet before a change is loaded: an editor's save, or a
/// `git pull` that touches many files, gives one reload.
const QUIET: Duration = Duration::from_millis(300);

/// Watches both folders until the returned watcher is dropped.
pub fn watch(
    shared: Arc<Shared>,
    rules_dir: PathBuf,
    templates_dir: PathBuf,
) -> Result<RecommendedWatcher, String> {
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let mut watcher =
        notify::recommended_watcher(move |result: notify::Result<Event>| match result {
            // Reading a file is an event too (inotify reports opens and closes); the reload reads
            // every file, so counting those would reload forever.
            Ok(event) if changes_content(&event.kind) => {
                let _ = tx.send(());
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(%e, "watching the rules folder"),
        })
        .map_err(|e| format!("cannot watch the rules folder: {e}"))?;
    watcher
        .watch(&rules_dir, RecursiveMode::Recursive)
        .map_err(|e| format!("cannot watch {}: {e}", rules_dir.display()))?;
    if templates_dir.exists() && !templates_dir.starts_with(&rules_dir) {
        watcher
            .watch(&templates_dir, RecursiveMode::Recursive)
            .map_err(|e| format!("cannot watch {}: {e}", templates_dir.display()))?;
    }
    // A weak reference: the watcher's thread must never be the one that drops the service's
    // state (its store's connections need the async runtime to close).
    let shared = Arc::downgrade(&shared);
    std::thread::Builder::new()
        .name("packwell-rules-watch".into())
        .spawn(move || {
            // Ends when the watcher, and with it the sender, is dropped.
            while rx.recv().is_ok() {
                loop {
                    match rx.recv_timeout(QUIET) {
                        Ok(()) => continue,
                        Err(RecvTimeoutError::Timeout) => break,
                        Err(RecvTimeoutError::Disconnected) => return,
                    }
                }
                match shared.upgrade() {
                    Some(shared) => {
                        let _ = reload(&shared, &rules_dir, &templates_dir);
                    }
                    None => return,
                }
            }
        })
        .map_err(|e| format!("cannot start the rules watcher: {e}"))?;
    Ok(watcher)
}

/// Whether an event may have changed what the folders hold.
fn changes_content(kind: &EventKind) -> bool {
    matches!(
        kind,
        EventKind::Create(_) | EventKind::Modify(_) | EventKind::Remove(_) | EventKind::Any
    ) || matches!(
        kind,
        EventKind::Access(AccessKind::Close(AccessMode::Write))
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use notify::event::{CreateKind, ModifyKind};

    #[test]
    fn reading_a_file_is_not_a_change() {
        assert!(!changes_content(&EventKind::Access(AccessKind::Open(
            AccessMode::Any
        ))));
        assert!(!changes_content(&EventKind::Access(AccessKind::Close(
            AccessMode::Read
        ))));
        assert!(changes_content(&EventKind::Access(AccessKind::Close(
            AccessMode::Write
        ))));
        assert!(changes_content(&EventKind::Modify(ModifyKind::Any)));
        assert!(changes_content(&EventKind::Create(CreateKind::File)));
    }
}

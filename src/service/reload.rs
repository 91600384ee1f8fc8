//! Rules hot reload: a debounced watcher on the rules and templates folders builds a new
//! RuleSet on every change and swaps it in only if it validates; otherwise the error goes to
//! the log, a metric and `/readyz`, and the old rules keep deciding.

use super::ServiceState;
use crate::rules::load_rules;
use crate::store::DecideEnv;
use notify::event::{AccessKind, AccessMode};
use notify::{Event, EventKind, RecommendedWatcher, RecursiveMode, Watcher};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::mpsc::RecvTimeoutError;
use std::time::Duration;

/// Loads the folders again; swaps the rules in when they are valid and changed. Returns the
/// error text otherwise (and keeps the old rules). Valid rules always clear the error that
/// `/readyz` shows, also when they are the ones deciding already (a broken file was removed).
pub fn reload(
    shared: &ServiceState,
    rules_dir: &std::path::Path,
    templates_dir: &std::path::Path,
) -> Result<String, String> {
    // Loading is bounded (see `rules::limits`), but a panic of a parser on some text must not
    // end hot reloading: it counts as invalid rules, and the old rules keep deciding.
    let loaded = std::panic::catch_unwind(|| load_rules(rules_dir, templates_dir));
    let outcome = match loaded {
        Ok(outcome) => outcome,
        Err(panic) => {
            let why = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            return Err(invalid(
                shared,
                format!(
                    "{}: the rules could not be loaded: {why}",
                    rules_dir.display()
                ),
            ));
        }
    };
    match outcome.rules {
        Some(rules) => {
            let version = rules.version.clone();
            let old = shared.env.load_full();
            let changed = old.rules.version != version;
            if changed {
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
            }
            let mut r = shared.readiness.lock().unwrap_or_else(|e| e.into_inner());
            let had_error = r.rules_error.take().is_some();
            r.rules_version = version.clone();
            if changed {
                tracing::info!(%version, "rules reloaded");
            } else if had_error {
                tracing::info!(%version, "the rules are valid again; the rules deciding are unchanged");
            }
            Ok(version)
        }
        None => {
            let errors: Vec<String> = outcome.errors().map(|f| f.to_string()).collect();
            Err(invalid(shared, errors.join("\n")))
        }
    }
}

/// Records rules that cannot be swapped in: the log, a metric and `/readyz` say why.
fn invalid(shared: &ServiceState, text: String) -> String {
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
    text
}

/// The stack of the thread that reloads the rules. Loading recurses (the expression and
/// template parsers, our template check); the limits of `rules::limits` and `render::limits`
/// keep the deepest recursion near 1 MiB in a debug build, and a thread of our own with a
/// stated size does not depend on the platform's default (2 MiB for Rust's threads, less on
/// some systems) or on the thread a file-system notification library calls back on.
pub const RELOAD_STACK: usize = 16 * 1024 * 1024;

/// How long the folders must stay quiet before a change is loaded: an editor's save, or a
/// `git pull` that touches many files, gives one reload.
const QUIET: Duration = Duration::from_millis(300);

/// Watches both folders until the returned watcher is dropped.
pub fn watch(
    shared: Arc<ServiceState>,
    rules_dir: PathBuf,
    templates_dir: PathBuf,
) -> Result<RecommendedWatcher, String> {
    // notify calls back on a thread of its own; the callback only signals, and the reload runs
    // on the thread started below, with a stack of a stated size.
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
        .stack_size(RELOAD_STACK)
        .spawn(move || {
            // A panic of the loading itself is an invalid rule folder (see `reload`); one
            // anywhere else in this loop is a dead watcher, which the service never hides.
            let watching = std::panic::AssertUnwindSafe(|| {
                watch_loop(&rx, &shared, &rules_dir, &templates_dir)
            });
            if let Err(panic) = std::panic::catch_unwind(watching)
                && let Some(shared) = shared.upgrade()
            {
                shared.fail(
                    "rules watcher",
                    &format!("panicked: {}", crate::panic_message(&*panic)),
                );
            }
        })
        .map_err(|e| format!("cannot start the rules watcher: {e}"))?;
    Ok(watcher)
}

/// Reloads once the folders were quiet for [`QUIET`] after a change, until the watcher (and
/// with it the sender) is dropped or the service's state is gone.
fn watch_loop(
    rx: &std::sync::mpsc::Receiver<()>,
    shared: &std::sync::Weak<ServiceState>,
    rules_dir: &std::path::Path,
    templates_dir: &std::path::Path,
) {
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
                let _ = reload(&shared, rules_dir, templates_dir);
            }
            None => return,
        }
    }
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

//! Rules hot reload: a debounced watcher on the rules and templates folders builds a new
//! RuleSet on every change and swaps it in only if it validates; otherwise the error goes to
//! the log, a metric and `/readyz`, and the old rules keep deciding.

use super::Shared;
use crate::rules::load_rules;
use crate::store::DecideEnv;
use notify_debouncer_mini::{DebounceEventResult, new_debouncer, notify::RecursiveMode};
use std::path::PathBuf;
use std::sync::Arc;
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

/// Watches both folders until the returned watcher is dropped.
pub fn watch(
    shared: Arc<Shared>,
    rules_dir: PathBuf,
    templates_dir: PathBuf,
) -> Result<
    notify_debouncer_mini::Debouncer<notify_debouncer_mini::notify::RecommendedWatcher>,
    String,
> {
    let (dirs_rules, dirs_templates) = (rules_dir.clone(), templates_dir.clone());
    // A weak reference: the watcher's thread must never be the one that drops the service's
    // state (its store's connections need the async runtime to close).
    let shared = Arc::downgrade(&shared);
    let mut debouncer = new_debouncer(
        Duration::from_millis(300),
        move |result: DebounceEventResult| match result {
            Ok(events) if !events.is_empty() => {
                if let Some(shared) = shared.upgrade() {
                    let _ = reload(&shared, &rules_dir, &templates_dir);
                }
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(%e, "watching the rules folder"),
        },
    )
    .map_err(|e| format!("cannot watch the rules folder: {e}"))?;
    debouncer
        .watcher()
        .watch(&dirs_rules, RecursiveMode::Recursive)
        .map_err(|e| format!("cannot watch {}: {e}", dirs_rules.display()))?;
    if dirs_templates.exists() && !dirs_templates.starts_with(&dirs_rules) {
        debouncer
            .watcher()
            .watch(&dirs_templates, RecursiveMode::Recursive)
            .map_err(|e| format!("cannot watch {}: {e}", dirs_templates.display()))?;
    }
    Ok(debouncer)
}

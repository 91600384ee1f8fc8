//! Reports computed lately, for `GET /v1/report`. A report reads the whole store, so the
//! service keeps each one for a minute and computes one at a time: a dashboard polling every
//! few seconds, or ten of them, costs the store one report a minute.

use super::{Report, ReportOptions};
use crate::rules::RuleSet;
use crate::store::{Store, StoreError};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long a computed report is served again.
pub const REPORT_TTL: Duration = Duration::from_secs(60);

/// A report's options and the version of the rules it was computed with.
type CacheKey = (ReportOptions, String);

/// Reports computed lately, by their options and the rules' version; one computed at a time.
#[derive(Default)]
pub struct ReportCache {
    entries: std::sync::Mutex<HashMap<CacheKey, (Instant, Arc<Report>)>>,
    /// Held while a report is computed: the store computes one at a time, and a request that
    /// waited finds the report it wanted in `entries` when its turn comes.
    computing: tokio::sync::Mutex<()>,
}

impl ReportCache {
    fn cached(&self, key: &CacheKey) -> Option<Arc<Report>> {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries.retain(|_, (at, _)| at.elapsed() < REPORT_TTL);
        entries.get(key).map(|(_, r)| r.clone())
    }

    /// The report of `options` under `rules`, computed lately or now.
    pub async fn get_or_build(
        &self,
        store: &dyn Store,
        rules: &RuleSet,
        options: ReportOptions,
    ) -> Result<Arc<Report>, StoreError> {
        let key = (options, rules.version.clone());
        if let Some(r) = self.cached(&key) {
            return Ok(r);
        }
        let _turn = self.computing.lock().await;
        if let Some(r) = self.cached(&key) {
            return Ok(r);
        }
        let report = super::build(store, Some(rules), options).await?;
        let report = Arc::new(report);
        self.entries
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key, (Instant::now(), report.clone()));
        Ok(report)
    }
}

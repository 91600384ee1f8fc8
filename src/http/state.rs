//! What the HTTP handlers share, as one [`AppState`] whose parts are sub-states (axum's
//! `FromRef`): a handler names only the parts it uses (`State<Arc<dyn Store>>`, say), so what
//! each route touches is read from its signature. The service builds the state from what it
//! runs; nothing here reaches into the consumer, the relay or the sender.

use super::health::Health;
use crate::config::Tokens;
use crate::email::RulesInForce;
use crate::metrics::Metrics;
use crate::report::ReportCache;
use crate::station::InsertListCache;
use crate::store::Store;
use crate::workbench::Workbench;
use axum::extract::FromRef;
use std::sync::Arc;
use tokio::sync::Notify;

/// The parts of the running service that answer requests.
#[derive(Clone, FromRef)]
pub struct AppState {
    pub store: Arc<dyn Store>,
    /// The rules, coupon key and shop in force (they change when the rules reload).
    pub env: Arc<dyn RulesInForce>,
    /// The configured bearer tokens.
    pub tokens: Arc<Tokens>,
    /// Insert lists answered from memory for a moment.
    pub insert_lists: Arc<InsertListCache>,
    /// Effect reports computed lately (`GET /v1/report`).
    pub reports: Arc<ReportCache>,
    pub metrics: Arc<Metrics>,
    /// What `/readyz` asks of the service.
    pub health: Arc<dyn Health>,
    /// The shop webhooks' connectors (none configured: the routes answer 404).
    pub webhooks: Arc<crate::connector::Webhooks>,
    /// Wakes the relay when a request wrote outbox rows (an unsubscribe, a suppression).
    pub outbox_written: Arc<Notify>,
    /// The marketers' workbench: the rules folders, saves and background backtests.
    pub workbench: Arc<Workbench>,
}

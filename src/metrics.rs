//! Prometheus metrics of the service. Labels are small, fixed sets (reasons, insert ids,
//! partitions, routes); order and customer ids go into tracing spans, never into labels.

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};

pub struct Metrics {
    pub registry: Registry,
    pub consumed: IntCounter,
    pub decided: IntCounter,
    pub rejected: IntCounterVec,
    pub inserts_given: IntCounterVec,
    pub batch_seconds: HistogramVec,
    pub consumer_lag: IntGaugeVec,
    pub outbox_backlog: IntGauge,
    pub relayed: IntCounterVec,
    pub rules_reloads: IntCounterVec,
    pub paused: IntGauge,
    pub http_requests: IntCounterVec,
    pub http_seconds: HistogramVec,
    pub webhooks: IntCounterVec,
    pub email: EmailMetrics,
    pub coupon_sync: CouponSyncMetrics,
}

/// The coupon sync worker's metrics (labels: platform, outcome). Cheap to clone.
#[derive(Clone)]
pub struct CouponSyncMetrics {
    /// Outcomes: `created`, `existed`, `disabled`, `failed`, `skipped` (a message older than
    /// the one recorded), `unreadable` (not a coupon message).
    pub synced: IntCounterVec,
    pub retried: IntCounterVec,
}

impl CouponSyncMetrics {
    fn new() -> CouponSyncMetrics {
        let counter_vec = |name: &str, help: &str, labels: &[&str]| {
            IntCounterVec::new(Opts::new(name, help), labels).expect("metric")
        };
        CouponSyncMetrics {
            synced: counter_vec(
                "coupon_sync_total",
                "Coupon messages synced to a shop, by platform and outcome (created, existed, disabled, failed, skipped, unreadable).",
                &["platform", "outcome"],
            ),
            retried: counter_vec(
                "coupon_sync_retries_total",
                "Calls to a shop's API tried again (429, 5xx, throttled, no answer), by platform.",
                &["platform"],
            ),
        }
    }

    fn collectors(&self) -> Vec<Box<dyn prometheus::core::Collector>> {
        vec![
            Box::new(self.synced.clone()),
            Box::new(self.retried.clone()),
        ]
    }
}

/// The e-mail sender's metrics (labels: follow-up ids and skip reasons). Cheap to clone: the
/// worker keeps its own copy.
#[derive(Clone)]
pub struct EmailMetrics {
    pub scheduled: IntCounterVec,
    pub sent: IntCounterVec,
    pub skipped: IntCounterVec,
    pub failed: IntCounterVec,
    pub unknown: IntCounterVec,
    pub retried: IntCounterVec,
    pub send_seconds: HistogramVec,
}

impl EmailMetrics {
    fn new() -> EmailMetrics {
        let counter_vec = |name: &str, help: &str, labels: &[&str]| {
            IntCounterVec::new(Opts::new(name, help), labels).expect("metric")
        };
        EmailMetrics {
            scheduled: counter_vec(
                "emails_scheduled_total",
                "E-mail jobs scheduled, by follow-up.",
                &["followup"],
            ),
            sent: counter_vec(
                "emails_sent_total",
                "E-mails the provider accepted, by follow-up.",
                &["followup"],
            ),
            skipped: counter_vec(
                "emails_skipped_total",
                "E-mail jobs that ended without sending, by reason (holdout included).",
                &["reason"],
            ),
            failed: counter_vec(
                "emails_failed_total",
                "E-mails given up on after the configured tries or a permanent refusal, by follow-up.",
                &["followup"],
            ),
            unknown: counter_vec(
                "emails_unknown_total",
                "E-mails whose hand-over was cut off by a crash, to a provider that cannot de-duplicate: not sent again.",
                &["followup"],
            ),
            retried: counter_vec(
                "emails_retried_total",
                "Hand-overs that will be tried again (429, 5xx, timeouts), by follow-up.",
                &["followup"],
            ),
            send_seconds: HistogramVec::new(
                HistogramOpts::new(
                    "email_send_seconds",
                    "Time to hand one e-mail to the provider, by provider.",
                )
                .buckets(vec![
                    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
                ]),
                &["provider"],
            )
            .expect("metric"),
        }
    }

    fn collectors(&self) -> Vec<Box<dyn prometheus::core::Collector>> {
        vec![
            Box::new(self.scheduled.clone()),
            Box::new(self.sent.clone()),
            Box::new(self.skipped.clone()),
            Box::new(self.failed.clone()),
            Box::new(self.unknown.clone()),
            Box::new(self.retried.clone()),
            Box::new(self.send_seconds.clone()),
        ]
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let registry = Registry::new_custom(Some("packwell".into()), None).unwrap_or_default();
        // The names and label sets below are fixed and valid, so building them cannot fail;
        // a failure would be a programming error caught by the metrics test.
        let counter = |name: &str, help: &str| IntCounter::new(name, help).expect("metric");
        let counter_vec = |name: &str, help: &str, labels: &[&str]| {
            IntCounterVec::new(Opts::new(name, help), labels).expect("metric")
        };
        let m = Metrics {
            consumed: counter("events_consumed_total", "Order events consumed from Kafka."),
            decided: counter("orders_decided_total", "Orders decided."),
            rejected: counter_vec(
                "events_rejected_total",
                "Events set aside in the DLQ, by reason.",
                &["reason"],
            ),
            inserts_given: counter_vec(
                "inserts_given_total",
                "Inserts put into parcels, by insert id.",
                &["insert"],
            ),
            batch_seconds: HistogramVec::new(
                HistogramOpts::new("batch_seconds", "Time to apply one batch to the store.")
                    .buckets(vec![
                        0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
                    ]),
                &["outcome"],
            )
            .expect("metric"),
            consumer_lag: IntGaugeVec::new(
                Opts::new(
                    "consumer_lag",
                    "Messages of an assigned partition not yet applied.",
                ),
                &["partition"],
            )
            .expect("metric"),
            outbox_backlog: IntGauge::new("outbox_backlog", "Outbox rows waiting for the relay.")
                .expect("metric"),
            relayed: counter_vec(
                "messages_relayed_total",
                "Messages produced from the outbox, by topic.",
                &["topic"],
            ),
            rules_reloads: counter_vec(
                "rules_reloads_total",
                "Rule reloads, by result (ok, invalid).",
                &["result"],
            ),
            paused: IntGauge::new(
                "consumer_paused",
                "1 while consuming is paused for the relay to catch up.",
            )
            .expect("metric"),
            http_requests: counter_vec(
                "http_requests_total",
                "HTTP requests, by route and status.",
                &["route", "status"],
            ),
            http_seconds: HistogramVec::new(
                HistogramOpts::new("http_request_seconds", "HTTP request latency.").buckets(vec![
                    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
                ]),
                &["route"],
            )
            .expect("metric"),
            webhooks: counter_vec(
                "webhooks_total",
                "Shop webhooks received, by platform and outcome (produced, duplicate, ignored, unmappable, bad_signature, order_not_stored, unavailable, ...).",
                &["platform", "outcome"],
            ),
            email: EmailMetrics::new(),
            coupon_sync: CouponSyncMetrics::new(),
            registry,
        };
        let collectors: Vec<Box<dyn prometheus::core::Collector>> = vec![
            Box::new(m.consumed.clone()),
            Box::new(m.decided.clone()),
            Box::new(m.rejected.clone()),
            Box::new(m.inserts_given.clone()),
            Box::new(m.batch_seconds.clone()),
            Box::new(m.consumer_lag.clone()),
            Box::new(m.outbox_backlog.clone()),
            Box::new(m.relayed.clone()),
            Box::new(m.rules_reloads.clone()),
            Box::new(m.paused.clone()),
            Box::new(m.http_requests.clone()),
            Box::new(m.http_seconds.clone()),
            Box::new(m.webhooks.clone()),
        ];
        for c in collectors
            .into_iter()
            .chain(m.email.collectors())
            .chain(m.coupon_sync.collectors())
        {
            // Registering distinct names in a fresh registry succeeds.
            let _ = m.registry.register(c);
        }
        m
    }

    /// The Prometheus text format.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        String::from_utf8(buf).unwrap_or_default()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_render_with_their_labels() {
        let m = Metrics::new();
        m.rejected.with_label_values(&["invalid_json"]).inc();
        m.consumed.inc_by(3);
        let text = m.render();
        assert!(
            text.contains("packwell_events_rejected_total{reason=\"invalid_json\"} 1"),
            "{text}"
        );
        assert!(text.contains("packwell_events_consumed_total 3"), "{text}");
    }
}

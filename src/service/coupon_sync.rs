//! Starts the coupon sync worker (`crate::connector::sync`) when some `[connectors.*]` section
//! has `sync_coupons = true`; off otherwise. It consumes `coupons` in a group of its own, with
//! the same client settings as the service's consumer.

use super::{Options, ServiceState, supervised};
use crate::config::Platform;
use crate::connector::api::RetryPolicy;
use crate::connector::sync::{self, CouponSync};
use crate::kafka::{consumer_config, fast_consumer_config};
use std::sync::Arc;

/// The worker's task, or None when no connector syncs coupons.
pub(super) fn start(
    shared: &Arc<ServiceState>,
    opts: &Options,
    clients: &super::ShopClients,
) -> Result<Option<tokio::task::JoinHandle<()>>, String> {
    let settings = opts.config.settings();
    let mut shops = Vec::new();
    for platform in [Platform::Shopify, Platform::WooCommerce] {
        if !settings
            .connectors
            .of(platform)
            .is_some_and(|c| c.sync_coupons)
        {
            continue;
        }
        // The configuration requires the API settings with sync_coupons; checked again here.
        let client = clients.get(&platform).ok_or_else(|| {
            format!("[connectors.{platform}] sync_coupons = true needs the shop's API settings")
        })?;
        shops.push(client.coupons());
    }
    if shops.is_empty() {
        return Ok(None);
    }
    let group = sync::group_of(&opts.config.kafka.group);
    let config = if opts.fast_group {
        fast_consumer_config(&opts.brokers, &group)
    } else {
        let mut c = consumer_config(&opts.brokers, &group);
        let session = settings.kafka.session_timeout.as_millis();
        c.set("session.timeout.ms", session.to_string())
            .set("heartbeat.interval.ms", (session / 4).to_string());
        c
    };
    let consumer = sync::consumer::subscribe(&config)?;
    let worker = CouponSync::new(
        shared.store.clone(),
        shops,
        shared.metrics.coupon_sync.clone(),
        RetryPolicy::SYNC,
    );
    tracing::info!(group, "coupon sync: creating issued codes in the shop");
    Ok(Some(tokio::spawn(supervised(
        shared.clone(),
        "coupon sync",
        sync::consumer::run(consumer, worker, shared.stop.clone()),
    ))))
}

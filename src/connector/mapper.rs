//! The mapping of one connector: built once from its `[connectors.*]` section (the catalogue
//! file read at start), then asked for each verified webhook what it becomes. Every event it
//! returns has passed Packwell's own event parser, so what the route produces is what the
//! consumer accepts.

use super::category::Categories;
use super::mapping::{LookupError, Mapped, MappedEvent, OrderLookup, ProductDirectory};
use super::payload::Why;
use super::{shopify, woocommerce};
use crate::config::{Platform, ShopConnector};
use crate::event::event_from_value;
use std::sync::Arc;

/// Maps one platform's webhooks into Packwell's events.
pub struct Mapper {
    pub(super) connector: ShopConnector,
    pub(super) categories: Categories,
}

impl Mapper {
    /// Reads what the connector's category source needs: the catalogue file (an error names
    /// file:line), or the shop's product directory (`products`, required for `product_type`,
    /// `tag:PREFIX` and `product_categories`).
    pub fn new(
        connector: &ShopConnector,
        products: Option<Arc<dyn ProductDirectory>>,
    ) -> Result<Mapper, String> {
        let categories = Categories::new(&connector.category, products)
            .map_err(|e| format!("[connectors.{}] category: {e}", connector.platform))?;
        Ok(Mapper {
            connector: connector.clone(),
            categories,
        })
    }

    pub fn platform(&self) -> Platform {
        self.connector.platform
    }

    /// What a verified webhook of `topic` (`X-Shopify-Topic`, `X-WC-Webhook-Topic`) with this
    /// raw body becomes. Only a lookup that failed for now is an error (answer 503).
    pub async fn map(
        &self,
        topic: &str,
        body: &[u8],
        orders: &dyn OrderLookup,
    ) -> Result<Mapped, LookupError> {
        match self.connector.platform {
            Platform::Shopify => shopify::map(self, topic.trim(), body, orders).await,
            Platform::WooCommerce => woocommerce::map(self, topic.trim(), body).await,
        }
    }
}

/// The outcome of a platform module before the events are checked.
pub(super) enum Outcome {
    Events(Vec<MappedEvent>),
    Nothing(&'static str),
    OrderNotStored(String),
}

/// Turns a platform module's answer into [`Mapped`]: each event checked with the event
/// parser (a rejection is unmappable, with the parser's sentence), a malformed body
/// unmappable with the sentence naming its field.
pub(super) fn finish(result: Result<Outcome, Why>) -> Mapped {
    match result {
        Err(why) => Mapped::Unmappable(why),
        Ok(Outcome::Nothing(why)) => Mapped::Nothing(why),
        Ok(Outcome::OrderNotStored(id)) => Mapped::OrderNotStored(id),
        Ok(Outcome::Events(events)) => {
            for e in &events {
                if let Err(rejected) = event_from_value(&e.value) {
                    return Mapped::Unmappable(format!(
                        "the mapped event {} is not valid: {}",
                        e.event_id, rejected.message
                    ));
                }
            }
            Mapped::Events(events)
        }
    }
}

/// A result that may be a failed lookup (outer) or an unmappable body (inner).
pub(super) type Step<T> = Result<Result<T, Why>, LookupError>;

/// The locale a template can be chosen by: a BCP 47 tag (`de`, `pt-BR`; Shopify also writes
/// `pt_BR`), else none, so a shop's odd value does not hold back the order.
pub(super) fn locale(text: Option<&str>) -> Option<String> {
    let tag = text?.trim().replace('_', "-");
    icu_locale_core::Locale::try_from_str(&tag)
        .ok()
        .filter(|l| !l.id.language.is_unknown())
        .map(|_| tag)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::CategorySource;
    use std::collections::BTreeMap;

    pub(crate) fn connector(platform: Platform, category: CategorySource) -> ShopConnector {
        ShopConnector {
            platform,
            webhook_secrets: Vec::new(),
            category,
            warehouse: "main".into(),
            warehouse_by_country: BTreeMap::from([("DE".to_string(), "WH-BER".to_string())]),
            sync_coupons: false,
            api: None,
            max_rps: 4,
        }
    }

    #[test]
    fn locales_are_bcp47_or_none() {
        assert_eq!(locale(Some("de")).as_deref(), Some("de"));
        assert_eq!(locale(Some("pt_BR")).as_deref(), Some("pt-BR"));
        assert_eq!(locale(Some("en-US")).as_deref(), Some("en-US"));
        assert_eq!(locale(Some("klingon!")), None);
        assert_eq!(locale(Some("")), None);
        assert_eq!(locale(None), None);
    }

    #[test]
    fn a_catalogue_that_cannot_be_read_stops_the_mapper() {
        let c = connector(
            Platform::Shopify,
            CategorySource::Catalogue("/nonexistent/c.csv".into()),
        );
        let e = Mapper::new(&c, None).map(|_| ()).unwrap_err();
        assert!(
            e.starts_with("[connectors.shopify] category: /nonexistent/c.csv: "),
            "{e}"
        );
        let api = connector(Platform::WooCommerce, CategorySource::ProductCategories);
        assert!(Mapper::new(&api, None).is_err());
    }
}

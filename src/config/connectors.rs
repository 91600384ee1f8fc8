//! `[connectors]`, `[connectors.shopify]` and `[connectors.woocommerce]` (docs/REFERENCE.md §8):
//! the sections as written, and the same checked into [`ConnectorSettings`]. A platform's
//! section being present turns its webhook route on.

use super::{ConfigError, Secret};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::PathBuf;

/// The default of `[connectors] max_body_bytes`: real orders exceed the API's 64 KiB.
pub const DEFAULT_WEBHOOK_BODY_BYTES: usize = 5 * 1024 * 1024;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConnectorsConfig {
    /// Largest webhook body, in bytes (413 beyond), apart from `[http] max_body_bytes`.
    pub max_body_bytes: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shopify: Option<ShopConnectorConfig>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub woocommerce: Option<ShopConnectorConfig>,
}

impl Default for ConnectorsConfig {
    fn default() -> Self {
        ConnectorsConfig {
            max_body_bytes: DEFAULT_WEBHOOK_BODY_BYTES,
            shopify: None,
            woocommerce: None,
        }
    }
}

/// One platform's section. Shopify's API settings are `admin_url` and `access_token`;
/// WooCommerce's are `url`, `consumer_key` and `consumer_secret`. A key of the other platform
/// is an error naming it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ShopConnectorConfig {
    /// The webhook signing secrets: one, or two while rotating.
    pub webhook_secrets: Vec<Secret>,
    /// Where an item's category comes from.
    pub category: Option<String>,
    /// `sku,category` lines, for `category = "catalogue"`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub catalogue: Option<PathBuf>,
    /// The warehouse of an order whose shipping country is not in `warehouse_by_country`.
    pub warehouse: String,
    /// Shipping country (ISO 3166-1 alpha-2) → warehouse.
    pub warehouse_by_country: BTreeMap<String, String>,
    /// Create every issued code in the shop's checkout, and disable it when voided.
    pub sync_coupons: bool,
    /// Shopify: the Admin GraphQL endpoint.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub admin_url: Option<String>,
    /// Shopify: the app's Admin API access token.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub access_token: Option<Secret>,
    /// WooCommerce: the shop's base URL.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// WooCommerce: the REST API key pair.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub consumer_key: Option<Secret>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub consumer_secret: Option<Secret>,
    /// Most calls per second to the shop's API (codes synced, categories looked up).
    pub max_rps: u32,
}

impl Default for ShopConnectorConfig {
    fn default() -> Self {
        ShopConnectorConfig {
            webhook_secrets: Vec::new(),
            category: None,
            catalogue: None,
            warehouse: "main".into(),
            warehouse_by_country: BTreeMap::new(),
            sync_coupons: false,
            admin_url: None,
            access_token: None,
            url: None,
            consumer_key: None,
            consumer_secret: None,
            max_rps: 4,
        }
    }
}

/// The shop platforms Packwell connects to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Platform {
    Shopify,
    WooCommerce,
}

impl Platform {
    /// As in routes, headers, store rows and `ingest replay --platform`.
    pub fn as_str(self) -> &'static str {
        match self {
            Platform::Shopify => "shopify",
            Platform::WooCommerce => "woocommerce",
        }
    }

    pub fn parse(text: &str) -> Option<Platform> {
        match text {
            "shopify" => Some(Platform::Shopify),
            "woocommerce" => Some(Platform::WooCommerce),
            _ => None,
        }
    }
}

impl std::fmt::Display for Platform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where an item's category comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CategorySource {
    /// Shopify: the line item's `vendor`.
    Vendor,
    /// A `sku,category` CSV file.
    Catalogue(PathBuf),
    /// Shopify: the product's type, looked up through the Admin API.
    ProductType,
    /// Shopify: the first product tag starting with the prefix (the prefix removed).
    TagPrefix(String),
    /// WooCommerce: the product's first category, looked up through the REST API.
    ProductCategories,
}

/// The shop's API, where the connector calls it.
#[derive(Debug, Clone, PartialEq)]
pub enum ShopApi {
    Shopify {
        admin_url: String,
        access_token: Secret,
    },
    WooCommerce {
        url: String,
        consumer_key: Secret,
        consumer_secret: Secret,
    },
}

/// `[connectors]` checked.
#[derive(Debug, Clone, PartialEq)]
pub struct ConnectorSettings {
    pub max_body_bytes: usize,
    pub shopify: Option<ShopConnector>,
    pub woocommerce: Option<ShopConnector>,
}

impl ConnectorSettings {
    pub fn of(&self, platform: Platform) -> Option<&ShopConnector> {
        match platform {
            Platform::Shopify => self.shopify.as_ref(),
            Platform::WooCommerce => self.woocommerce.as_ref(),
        }
    }
}

/// One platform's section checked.
#[derive(Debug, Clone, PartialEq)]
pub struct ShopConnector {
    pub platform: Platform,
    /// One or two, tried in order.
    pub webhook_secrets: Vec<Secret>,
    pub category: CategorySource,
    pub warehouse: String,
    /// Keys upper-case.
    pub warehouse_by_country: BTreeMap<String, String>,
    pub sync_coupons: bool,
    /// Present when the section gives the API's address and credentials.
    pub api: Option<ShopApi>,
    pub max_rps: u32,
}

impl ShopConnector {
    /// The warehouse of an order shipped to `country` (any case), else the default.
    pub fn warehouse_for(&self, country: Option<&str>) -> &str {
        country
            .and_then(|c| {
                self.warehouse_by_country
                    .get(&c.trim().to_ascii_uppercase())
            })
            .unwrap_or(&self.warehouse)
    }
}

fn invalid(message: String) -> ConfigError {
    ConfigError::Invalid(message)
}

/// Checks `[connectors]`: the first bad setting is the error.
pub(super) fn parse_connectors(c: &ConnectorsConfig) -> Result<ConnectorSettings, ConfigError> {
    if c.max_body_bytes < 1024 {
        return Err(invalid(format!(
            "[connectors] max_body_bytes = {}: expected at least 1024",
            c.max_body_bytes
        )));
    }
    Ok(ConnectorSettings {
        max_body_bytes: c.max_body_bytes,
        shopify: c
            .shopify
            .as_ref()
            .map(|s| parse_shop(Platform::Shopify, s))
            .transpose()?,
        woocommerce: c
            .woocommerce
            .as_ref()
            .map(|s| parse_shop(Platform::WooCommerce, s))
            .transpose()?,
    })
}

fn parse_shop(platform: Platform, c: &ShopConnectorConfig) -> Result<ShopConnector, ConfigError> {
    let section = format!("[connectors.{platform}]");
    let n = c.webhook_secrets.len();
    if !(1..=2).contains(&n) || c.webhook_secrets.iter().any(|s| s.0.trim().is_empty()) {
        return Err(invalid(format!(
            "{section} webhook_secrets: give one non-empty secret, or two while rotating (found {n})"
        )));
    }
    let foreign: &[(&str, bool)] = match platform {
        Platform::Shopify => &[
            ("url", c.url.is_some()),
            ("consumer_key", c.consumer_key.is_some()),
            ("consumer_secret", c.consumer_secret.is_some()),
        ],
        Platform::WooCommerce => &[
            ("admin_url", c.admin_url.is_some()),
            ("access_token", c.access_token.is_some()),
        ],
    };
    if let Some((key, _)) = foreign.iter().find(|(_, set)| *set) {
        return Err(invalid(format!(
            "{section} {key}: not a setting of this platform"
        )));
    }
    let api = shop_api(platform, c, &section)?;
    let category = category_source(platform, c, &section)?;
    let needs_api = matches!(
        category,
        CategorySource::ProductType
            | CategorySource::TagPrefix(_)
            | CategorySource::ProductCategories
    );
    let credentials = match platform {
        Platform::Shopify => "admin_url and access_token",
        Platform::WooCommerce => "url, consumer_key and consumer_secret",
    };
    if needs_api && api.is_none() {
        let shown = match &category {
            CategorySource::ProductType => "product_type".to_string(),
            CategorySource::TagPrefix(p) => format!("tag:{p}"),
            _ => "product_categories".to_string(),
        };
        let default = if c.category.is_none() {
            " (the default)"
        } else {
            ""
        };
        return Err(invalid(format!(
            "{section} category = {shown:?}{default}: it is looked up through the shop's API, which needs {credentials}; or use category = \"catalogue\""
        )));
    }
    if c.sync_coupons && api.is_none() {
        return Err(invalid(format!(
            "{section} sync_coupons = true: creating codes in the shop needs {credentials}"
        )));
    }
    if c.max_rps == 0 {
        return Err(invalid(format!(
            "{section} max_rps = 0: expected at least 1"
        )));
    }
    if c.warehouse.trim().is_empty() {
        return Err(invalid(format!("{section} warehouse: must not be empty")));
    }
    let mut by_country = BTreeMap::new();
    for (country, warehouse) in &c.warehouse_by_country {
        let code = country.trim().to_ascii_uppercase();
        if code.len() != 2 || !code.bytes().all(|b| b.is_ascii_uppercase()) {
            return Err(invalid(format!(
                "{section} warehouse_by_country: {country:?} is not a two-letter country code"
            )));
        }
        if warehouse.trim().is_empty() {
            return Err(invalid(format!(
                "{section} warehouse_by_country.{country}: the warehouse must not be empty"
            )));
        }
        by_country.insert(code, warehouse.clone());
    }
    Ok(ShopConnector {
        platform,
        webhook_secrets: c.webhook_secrets.clone(),
        category,
        warehouse: c.warehouse.clone(),
        warehouse_by_country: by_country,
        sync_coupons: c.sync_coupons,
        api,
        max_rps: c.max_rps,
    })
}

fn category_source(
    platform: Platform,
    c: &ShopConnectorConfig,
    section: &str,
) -> Result<CategorySource, ConfigError> {
    let default = match platform {
        Platform::Shopify => "vendor",
        Platform::WooCommerce => "product_categories",
    };
    let text = c.category.as_deref().unwrap_or(default).trim();
    let source = match (platform, text) {
        (_, "catalogue") => match &c.catalogue {
            Some(path) => CategorySource::Catalogue(path.clone()),
            None => {
                return Err(invalid(format!(
                    "{section} category = \"catalogue\": name the file with catalogue = \"catalogue.csv\" (sku,category lines)"
                )));
            }
        },
        (Platform::Shopify, "vendor") => CategorySource::Vendor,
        (Platform::Shopify, "product_type") => CategorySource::ProductType,
        (Platform::Shopify, t) if t.starts_with("tag:") && t.len() > 4 => {
            CategorySource::TagPrefix(t[4..].to_string())
        }
        (Platform::WooCommerce, "product_categories") => CategorySource::ProductCategories,
        _ => {
            let expected = match platform {
                Platform::Shopify => {
                    "\"vendor\", \"catalogue\", \"product_type\" or \"tag:PREFIX\""
                }
                Platform::WooCommerce => "\"catalogue\" or \"product_categories\"",
            };
            return Err(invalid(format!(
                "{section} category = {text:?}: expected {expected}"
            )));
        }
    };
    if c.catalogue.is_some() && !matches!(source, CategorySource::Catalogue(_)) {
        return Err(invalid(format!(
            "{section} catalogue: set, but category = {text:?} does not read it"
        )));
    }
    Ok(source)
}

fn shop_api(
    platform: Platform,
    c: &ShopConnectorConfig,
    section: &str,
) -> Result<Option<ShopApi>, ConfigError> {
    let url_ok = |key: &str, url: &str| {
        if url.starts_with("http://") || url.starts_with("https://") {
            Ok(())
        } else {
            Err(invalid(format!(
                "{section} {key} = {url:?}: expected an http:// or https:// URL"
            )))
        }
    };
    match platform {
        Platform::Shopify => match (&c.admin_url, &c.access_token) {
            (None, None) => Ok(None),
            (Some(url), Some(token)) => {
                url_ok("admin_url", url)?;
                Ok(Some(ShopApi::Shopify {
                    admin_url: url.clone(),
                    access_token: token.clone(),
                }))
            }
            (Some(_), None) => Err(invalid(format!(
                "{section} admin_url is set without access_token"
            ))),
            (None, Some(_)) => Err(invalid(format!(
                "{section} access_token is set without admin_url"
            ))),
        },
        Platform::WooCommerce => match (&c.url, &c.consumer_key, &c.consumer_secret) {
            (None, None, None) => Ok(None),
            (Some(url), Some(key), Some(secret)) => {
                url_ok("url", url)?;
                Ok(Some(ShopApi::WooCommerce {
                    url: url.trim_end_matches('/').to_string(),
                    consumer_key: key.clone(),
                    consumer_secret: secret.clone(),
                }))
            }
            _ => Err(invalid(format!(
                "{section} url, consumer_key and consumer_secret go together: set all three or none"
            ))),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shop(text: &str) -> Result<ConnectorSettings, ConfigError> {
        let c: ConnectorsConfig = toml::from_str(text).unwrap();
        parse_connectors(&c)
    }

    #[test]
    fn a_section_turns_its_platform_on_with_documented_defaults() {
        let s = shop("[shopify]\nwebhook_secrets = [\"s1\"]\n").unwrap();
        let shopify = s.shopify.unwrap();
        assert_eq!(shopify.category, CategorySource::Vendor);
        assert_eq!(shopify.warehouse, "main");
        assert!(!shopify.sync_coupons && shopify.api.is_none());
        assert!(s.woocommerce.is_none());
        assert_eq!(s.max_body_bytes, DEFAULT_WEBHOOK_BODY_BYTES);
    }

    #[test]
    fn warehouses_come_from_the_shipping_country() {
        let s = shop(
            "[woocommerce]\nwebhook_secrets = [\"a\", \"b\"]\ncategory = \"catalogue\"\ncatalogue = \"c.csv\"\nwarehouse_by_country = { de = \"WH-BER\" }\n",
        )
        .unwrap();
        let w = s.woocommerce.unwrap();
        assert_eq!(w.warehouse_for(Some("DE")), "WH-BER");
        assert_eq!(w.warehouse_for(Some("fr")), "main");
        assert_eq!(w.warehouse_for(None), "main");
    }

    #[test]
    fn bad_settings_name_themselves() {
        for (text, expected) in [
            ("[shopify]\n", "[connectors.shopify] webhook_secrets"),
            (
                "[shopify]\nwebhook_secrets = [\"a\",\"b\",\"c\"]\n",
                "two while rotating",
            ),
            (
                "[shopify]\nwebhook_secrets = [\"a\"]\ncategory = \"product_type\"\n",
                "needs admin_url and access_token",
            ),
            (
                "[shopify]\nwebhook_secrets = [\"a\"]\ncategory = \"colour\"\n",
                "category = \"colour\": expected",
            ),
            (
                "[woocommerce]\nwebhook_secrets = [\"a\"]\n",
                "category = \"product_categories\" (the default)",
            ),
            (
                "[woocommerce]\nwebhook_secrets = [\"a\"]\ncategory = \"catalogue\"\ncatalogue = \"c.csv\"\nsync_coupons = true\n",
                "sync_coupons = true",
            ),
            (
                "[woocommerce]\nwebhook_secrets = [\"a\"]\nadmin_url = \"https://x\"\n",
                "admin_url: not a setting of this platform",
            ),
            (
                "[shopify]\nwebhook_secrets = [\"a\"]\ncategory = \"catalogue\"\n",
                "name the file",
            ),
            (
                "[shopify]\nwebhook_secrets = [\"a\"]\nwarehouse_by_country = { Germany = \"B\" }\n",
                "not a two-letter country code",
            ),
            (
                "[shopify]\nwebhook_secrets = [\"a\"]\nadmin_url = \"shop.example\"\naccess_token = \"t\"\n",
                "expected an http:// or https:// URL",
            ),
        ] {
            let e = shop(text).unwrap_err().to_string();
            assert!(e.contains(expected), "{text}: {e}");
        }
    }

    #[test]
    fn tag_prefixes_and_api_credentials_are_kept() {
        let s = shop(
            "[shopify]\nwebhook_secrets = [\"a\"]\ncategory = \"tag:cat-\"\nadmin_url = \"https://s.myshopify.com/admin/api/2025-10/graphql.json\"\naccess_token = \"shpat\"\nsync_coupons = true\n",
        )
        .unwrap()
        .shopify
        .unwrap();
        assert_eq!(s.category, CategorySource::TagPrefix("cat-".into()));
        assert!(s.sync_coupons);
        assert!(matches!(s.api, Some(ShopApi::Shopify { .. })));
    }
}

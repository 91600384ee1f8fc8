//! Configuration: documented defaults, then a TOML file (`--config`), then `PACKWELL_*`
//! environment variables (`PACKWELL_KAFKA_BROKERS` sets `[kafka] brokers`). Parsed once at
//! start: [`Config`] keeps the settings as written (what `run --check-config` prints) and
//! [`Settings`] the same checked and parsed into types; a bad value names the setting and the
//! value.

use serde::{Deserialize, Serialize};

mod connectors;
mod load;
mod mask;
mod sections;
mod settings;
mod tokens;
pub use connectors::{
    CategorySource, ConnectorSettings, ConnectorsConfig, DEFAULT_WEBHOOK_BODY_BYTES, Platform,
    ShopApi, ShopConnector, ShopConnectorConfig,
};
pub use mask::{MASK, mask_url_password};
pub use sections::{
    CouponsConfig, DecideConfig, EmailConfig, HttpConfig, KafkaConfig, Role, Secret, ServiceConfig,
    ShopConfig, StoreConfig, TokenConfig,
};
pub use settings::{
    DecideSettings, EmailProvider, EmailSettings, HttpApi, HttpSettings, KafkaSettings,
    ServiceSettings, Settings, SmtpServer, SmtpTls, StoreSettings,
};
pub use tokens::{Caller, Tokens};

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub kafka: KafkaConfig,
    pub store: StoreConfig,
    pub decide: DecideConfig,
    pub http: HttpConfig,
    pub email: EmailConfig,
    pub coupons: CouponsConfig,
    pub shop: ShopConfig,
    pub service: ServiceConfig,
    pub connectors: ConnectorsConfig,
    /// The sections above parsed, by `Config::load` (the defaults' for `Config::default()`).
    /// Not a setting of its own: neither read from the file nor printed.
    #[serde(skip)]
    settings: Settings,
    /// Whether `[decide] max_event_age` was given (in the file or the environment) rather
    /// than left at its default. Not a setting of its own either.
    #[serde(skip)]
    max_event_age_given: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read the configuration file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{0}")]
    Invalid(String),
}

/// The store when `[store] url` is not set: SQLite under `data/`.
pub const DEFAULT_STORE_PATH: &str = "data/packwell.db";

impl Config {
    /// The settings checked and parsed when the configuration was loaded. They do not follow
    /// later changes to the fields: the configuration is not changed after loading, but for
    /// `[http] tokens`, which are not among them, and `run --demo`'s
    /// [`Config::set_max_event_age_days`], which changes both.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// Whether the configuration sets `[decide] max_event_age` itself (in the file or as
    /// `PACKWELL_DECIDE_MAX_EVENT_AGE`) rather than leaving it at its default.
    pub fn max_event_age_given(&self) -> bool {
        self.max_event_age_given
    }

    /// Decides events up to `days` old: `run --demo` sends a history months old and decides
    /// it all. Changes the setting as written and as parsed.
    pub fn set_max_event_age_days(&mut self, days: u32) {
        self.decide.max_event_age = format!("{days}d");
        self.settings.decide.max_event_age = chrono::Duration::days(i64::from(days));
    }

    fn sections(&self) -> settings::Sections<'_> {
        settings::Sections {
            kafka: &self.kafka,
            store: &self.store,
            decide: &self.decide,
            http: &self.http,
            email: &self.email,
            service: &self.service,
            connectors: &self.connectors,
        }
    }

    /// Where the store is: `[store] url` (`PACKWELL_STORE_URL`), else the SQLite file
    /// `data/packwell.db` (relative to the working directory).
    pub fn store_url(&self) -> String {
        self.store
            .url
            .clone()
            .filter(|u| !u.trim().is_empty())
            .unwrap_or_else(|| DEFAULT_STORE_PATH.to_string())
    }

    /// The base of unsubscribe links: `[http] public_url`, else this service's own address.
    pub fn public_url(&self) -> String {
        self.http
            .public_url
            .clone()
            .filter(|u| !u.trim().is_empty())
            .unwrap_or_else(|| format!("http://{}", self.http.listen))
            .trim_end_matches('/')
            .to_string()
    }

    pub fn shop(&self) -> crate::engine::Shop {
        crate::engine::Shop {
            name: self.shop.name.clone(),
            url: self.shop.url.clone(),
        }
    }
}

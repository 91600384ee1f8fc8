//! Configuration: documented defaults, then a TOML file (`--config`), then `PACKWELL_*`
//! environment variables (`PACKWELL_KAFKA_BROKERS` sets `[kafka] brokers`). Parsed once at
//! start into one struct; a bad value names the setting and the value.

use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

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
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KafkaConfig {
    /// Absent: the embedded development broker.
    pub brokers: Option<String>,
    pub group: String,
    /// Where the embedded broker listens when `brokers` is absent.
    pub embedded_listen: String,
    /// Most events of one partition applied in one store transaction.
    pub batch_max: usize,
    /// Longest wait for a batch to fill, in milliseconds.
    pub batch_wait_ms: u64,
    /// Consuming pauses while more outbox rows than this wait for the relay.
    pub max_outbox_backlog: i64,
    /// The consumer group session: how long a stopped instance keeps its partitions. Kafka
    /// brokers accept 6000 and more by default; the embedded broker uses 2000.
    pub session_timeout_ms: u64,
}

impl Default for KafkaConfig {
    fn default() -> Self {
        KafkaConfig {
            brokers: None,
            group: "packwell".into(),
            embedded_listen: "127.0.0.1:9092".into(),
            batch_max: 500,
            batch_wait_ms: 50,
            max_outbox_backlog: 50_000,
            session_timeout_ms: 6000,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    /// Absent: SQLite under `data/`.
    pub url: Option<String>,
    pub retention: String,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            url: None,
            retention: "400d".into(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DecideConfig {
    pub max_event_age: String,
}

impl Default for DecideConfig {
    fn default() -> Self {
        DecideConfig {
            max_event_age: "7d".into(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    pub listen: String,
    pub public_url: Option<String>,
    pub tokens: Vec<TokenConfig>,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            listen: "127.0.0.1:8080".into(),
            public_url: None,
            tokens: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenConfig {
    pub name: String,
    pub token_sha256: Option<String>,
    pub token: Option<String>,
    pub warehouses: Option<Vec<String>>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EmailConfig {
    /// outbox | smtp | http
    pub provider: String,
    pub from: String,
}

impl Default for EmailConfig {
    fn default() -> Self {
        EmailConfig {
            provider: "outbox".into(),
            from: "Shop <hello@shop.example>".into(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CouponsConfig {
    pub key_file: PathBuf,
}

impl Default for CouponsConfig {
    fn default() -> Self {
        CouponsConfig {
            key_file: PathBuf::from("data/coupon.key"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ShopConfig {
    pub name: String,
    pub url: String,
}

impl Default for ShopConfig {
    fn default() -> Self {
        ShopConfig {
            name: "Shop".into(),
            url: "https://shop.example".into(),
        }
    }
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

const SECTIONS: &[&str] = &[
    "kafka", "store", "decide", "http", "email", "coupons", "shop",
];

impl Config {
    /// Loads the file (if given) and the `PACKWELL_*` variables of `env` over the defaults.
    pub fn load(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        let mut table = match file {
            None => toml::Table::new(),
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                    path: path.display().to_string(),
                    source,
                })?;
                text.parse::<toml::Table>().map_err(|e| {
                    ConfigError::Invalid(format!("{}: {}", path.display(), e.message()))
                })?
            }
        };
        for (name, value) in env {
            let Some(rest) = name.strip_prefix("PACKWELL_") else {
                continue;
            };
            let rest = rest.to_ascii_lowercase();
            let Some(section) = SECTIONS.iter().find(|s| rest.starts_with(&format!("{s}_"))) else {
                continue;
            };
            let key = &rest[section.len() + 1..];
            let entry = table
                .entry(section.to_string())
                .or_insert_with(|| toml::Value::Table(toml::Table::new()));
            let typed = typed_env_value(section, key, &name, value)?;
            if let toml::Value::Table(t) = entry {
                t.insert(key.to_string(), typed);
            }
        }
        let config: Config =
            toml::Value::Table(table)
                .try_into()
                .map_err(|e: toml::de::Error| {
                    ConfigError::Invalid(format!("configuration: {}", e.message()))
                })?;
        config.check()?;
        Ok(config)
    }

    /// Loads from the process environment.
    pub fn from_env(file: Option<&Path>) -> Result<Config, ConfigError> {
        Config::load(file, std::env::vars())
    }

    fn check(&self) -> Result<(), ConfigError> {
        let duration = |name: &str, v: &str| {
            crate::rules::units::parse_duration(v)
                .map(|_| ())
                .map_err(|e| ConfigError::Invalid(format!("{name} = {v:?}: {e}")))
        };
        duration("[store] retention", &self.store.retention)?;
        duration("[decide] max_event_age", &self.decide.max_event_age)?;
        if !["outbox", "smtp", "http"].contains(&self.email.provider.as_str()) {
            return Err(ConfigError::Invalid(format!(
                "[email] provider = {:?}: expected \"outbox\", \"smtp\" or \"http\"",
                self.email.provider
            )));
        }
        if self
            .kafka
            .embedded_listen
            .parse::<std::net::SocketAddr>()
            .is_err()
        {
            return Err(ConfigError::Invalid(format!(
                "[kafka] embedded_listen = {:?}: expected an address such as \"127.0.0.1:9092\"",
                self.kafka.embedded_listen
            )));
        }
        if self.kafka.batch_max == 0 || self.kafka.batch_max > 10_000 {
            return Err(ConfigError::Invalid(format!(
                "[kafka] batch_max = {}: expected 1 to 10000",
                self.kafka.batch_max
            )));
        }
        if !(1000..=3_600_000).contains(&self.kafka.session_timeout_ms) {
            return Err(ConfigError::Invalid(format!(
                "[kafka] session_timeout_ms = {}: expected 1000 to 3600000",
                self.kafka.session_timeout_ms
            )));
        }
        if self.kafka.max_outbox_backlog < 1 {
            return Err(ConfigError::Invalid(format!(
                "[kafka] max_outbox_backlog = {}: expected at least 1",
                self.kafka.max_outbox_backlog
            )));
        }
        if self.http.listen.parse::<std::net::SocketAddr>().is_err() {
            return Err(ConfigError::Invalid(format!(
                "[http] listen = {:?}: expected an address such as \"127.0.0.1:8080\"",
                self.http.listen
            )));
        }
        Ok(())
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

    pub fn shop(&self) -> crate::engine::Shop {
        crate::engine::Shop {
            name: self.shop.name.clone(),
            url: self.shop.url.clone(),
        }
    }

    /// The effective configuration as TOML, with secrets masked.
    pub fn to_masked_toml(&self) -> String {
        let mut masked = self.clone();
        for t in &mut masked.http.tokens {
            if t.token.is_some() {
                t.token = Some("********".into());
            }
        }
        if let Some(url) = &masked.store.url {
            masked.store.url = Some(mask_url_password(url));
        }
        toml::to_string_pretty(&masked).unwrap_or_default()
    }
}

/// An environment variable's text as the TOML type its setting has by default (a number for
/// `batch_max`, a string for most), so `PACKWELL_KAFKA_BATCH_MAX=200` works like the file.
fn typed_env_value(
    section: &str,
    key: &str,
    name: &str,
    value: String,
) -> Result<toml::Value, ConfigError> {
    let defaults = toml::Table::try_from(Config::default()).unwrap_or_default();
    let default = defaults
        .get(section)
        .and_then(|s| s.as_table())
        .and_then(|t| t.get(key));
    match default {
        Some(toml::Value::Integer(_)) => value
            .trim()
            .parse::<i64>()
            .map(toml::Value::Integer)
            .map_err(|_| {
                ConfigError::Invalid(format!(
                    "{name} = {value:?} ([{section}] {key}): expected a whole number"
                ))
            }),
        Some(toml::Value::Boolean(_)) => match value.trim() {
            "true" | "1" => Ok(toml::Value::Boolean(true)),
            "false" | "0" => Ok(toml::Value::Boolean(false)),
            _ => Err(ConfigError::Invalid(format!(
                "{name} = {value:?} ([{section}] {key}): expected true or false"
            ))),
        },
        _ => Ok(toml::Value::String(value)),
    }
}

/// The URL with its password, if any, masked: for messages and `--check-config`.
pub fn mask_url_password(url: &str) -> String {
    // postgres://user:secret@host/db → postgres://user:********@host/db
    if let Some((scheme, rest)) = url.split_once("://")
        && let Some((auth, host)) = rest.split_once('@')
        && let Some((user, _)) = auth.split_once(':')
    {
        return format!("{scheme}://{user}:********@{host}");
    }
    url.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_file_then_env() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.toml");
        std::fs::write(
            &p,
            "[shop]\nname = \"Tea & Books\"\n[kafka]\nbrokers = \"k:9092\"\n",
        )
        .unwrap();
        let c = Config::load(
            Some(&p),
            [("PACKWELL_KAFKA_BROKERS".to_string(), "env:9092".to_string())],
        )
        .unwrap();
        assert_eq!(c.shop.name, "Tea & Books");
        assert_eq!(c.kafka.brokers.as_deref(), Some("env:9092"));
        assert_eq!(c.kafka.group, "packwell");
        assert_eq!(c.coupons.key_file, PathBuf::from("data/coupon.key"));
    }

    #[test]
    fn errors_name_the_setting() {
        let e = Config::load(
            None,
            [(
                "PACKWELL_DECIDE_MAX_EVENT_AGE".to_string(),
                "7 days".to_string(),
            )],
        )
        .unwrap_err();
        assert!(
            e.to_string()
                .contains("[decide] max_event_age = \"7 days\""),
            "{e}"
        );
        let e = Config::load(
            None,
            [("PACKWELL_SHOP_COLOUR".to_string(), "red".to_string())],
        )
        .unwrap_err();
        assert!(e.to_string().contains("colour"), "{e}");
    }

    #[test]
    fn numbers_from_the_environment() {
        let c = Config::load(
            None,
            [("PACKWELL_KAFKA_BATCH_MAX".to_string(), "200".to_string())],
        )
        .unwrap();
        assert_eq!(c.kafka.batch_max, 200);
        let e = Config::load(
            None,
            [("PACKWELL_KAFKA_BATCH_MAX".to_string(), "many".to_string())],
        )
        .unwrap_err();
        assert!(
            e.to_string()
                .contains("PACKWELL_KAFKA_BATCH_MAX = \"many\""),
            "{e}"
        );
        let e = Config::load(
            None,
            [("PACKWELL_KAFKA_BATCH_MAX".to_string(), "0".to_string())],
        )
        .unwrap_err();
        assert!(e.to_string().contains("[kafka] batch_max = 0"), "{e}");
    }

    #[test]
    fn store_url_defaults_to_sqlite_under_data() {
        let c = Config::load(None, []).unwrap();
        assert_eq!(c.store_url(), "data/packwell.db");
        let c = Config::load(
            None,
            [(
                "PACKWELL_STORE_URL".to_string(),
                "postgres://packwell@db/packwell".to_string(),
            )],
        )
        .unwrap();
        assert_eq!(c.store_url(), "postgres://packwell@db/packwell");
    }

    #[test]
    fn secrets_are_masked() {
        let mut c = Config::default();
        c.store.url = Some("postgres://pw:hunter2@db/packwell".into());
        c.http.tokens.push(TokenConfig {
            name: "s".into(),
            token_sha256: None,
            token: Some("abc".into()),
            warehouses: None,
        });
        let text = c.to_masked_toml();
        assert!(
            !text.contains("hunter2") && !text.contains("\"abc\""),
            "{text}"
        );
    }
}

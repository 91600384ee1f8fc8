//! Configuration: documented defaults, then a TOML file (`--config`), then `PACKWELL_*`
//! environment variables (`PACKWELL_KAFKA_BROKERS` sets `[kafka] brokers`). Parsed once at
//! start into one struct; a bad value names the setting and the value.

use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

mod mask;
mod tokens;
pub use mask::{MASK, mask_url_password};
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
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServiceConfig {
    /// How long stopping may take in any state (broker or store gone, a provider hanging):
    /// past it, what was not sent stays in the outbox for the next start and the process exits.
    pub shutdown_timeout: String,
}

impl ServiceConfig {
    /// `shutdown_timeout` as a duration: whole seconds (`"20s"`) or a longer unit (`"2m"`),
    /// from 1 second to 1 hour.
    pub fn shutdown_timeout(&self) -> Result<std::time::Duration, ConfigError> {
        let text = &self.shutdown_timeout;
        let bad = || {
            ConfigError::Invalid(format!(
                "[service] shutdown_timeout = {text:?}: expected 1s to 1h, e.g. \"20s\" or \"2m\""
            ))
        };
        let secs = match text.strip_suffix('s') {
            Some(n) if !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) => {
                n.parse::<u64>().map_err(|_| bad())?
            }
            _ => crate::rules::units::parse_duration(text)
                .map_err(|_| bad())?
                .num_seconds()
                .try_into()
                .map_err(|_| bad())?,
        };
        if !(1..=3600).contains(&secs) {
            return Err(bad());
        }
        Ok(std::time::Duration::from_secs(secs))
    }
}

impl Default for ServiceConfig {
    fn default() -> Self {
        ServiceConfig {
            shutdown_timeout: "20s".into(),
        }
    }
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
    /// An event larger than this is not parsed: it goes to the DLQ (`too_large`). No sane
    /// order comes near the default of 1 MiB.
    pub max_event_bytes: usize,
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
            max_event_bytes: 1024 * 1024,
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
    /// Largest request body, in bytes (413 beyond).
    pub max_body_bytes: usize,
    /// Longest a request may take to arrive, in milliseconds (408 beyond); its answer may
    /// take twice as long (503 beyond).
    pub request_timeout_ms: u64,
    /// How long an insert list is answered from memory, in milliseconds (0: never).
    pub cache_ttl_ms: u64,
    /// Most insert lists kept in memory.
    pub cache_entries: u64,
    pub tokens: Vec<TokenConfig>,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            listen: "127.0.0.1:8080".into(),
            public_url: None,
            max_body_bytes: 64 * 1024,
            request_timeout_ms: 10_000,
            cache_ttl_ms: 2_000,
            cache_entries: 100_000,
            tokens: Vec::new(),
        }
    }
}

#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenConfig {
    pub name: String,
    pub token_sha256: Option<String>,
    pub token: Option<String>,
    pub warehouses: Option<Vec<String>>,
}

/// Never shows a token given in clear text.
impl std::fmt::Debug for TokenConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenConfig")
            .field("name", &self.name)
            .field("token_sha256", &self.token_sha256)
            .field("token", &self.token.as_ref().map(|_| "********"))
            .field("warehouses", &self.warehouses)
            .finish()
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EmailConfig {
    /// outbox | smtp | http
    pub provider: String,
    pub from: String,
    /// The SMTP server (`provider = "smtp"` needs it).
    pub smtp_host: Option<String>,
    pub smtp_port: u16,
    /// starttls | tls | none
    pub smtp_tls: String,
    pub smtp_username: Option<String>,
    pub smtp_password: Option<Secret>,
    /// Where `provider = "outbox"` writes `.eml` files.
    pub outbox_dir: PathBuf,
    /// The HTTP provider's endpoint (`provider = "http"` needs it).
    pub http_url: Option<String>,
    /// The header the HTTP provider authenticates with, and its value (a secret).
    pub http_auth_header: String,
    pub http_auth: Option<Secret>,
    /// E-mails handed to the provider at the same time.
    pub concurrency: usize,
    /// Hand-overs of one e-mail before it ends `failed`.
    pub max_tries: u32,
    /// Longest wait for the provider's answer, in milliseconds.
    pub timeout_ms: u64,
    /// The first wait before a retry, in milliseconds; it doubles with each try ...
    pub retry_base_ms: u64,
    /// ... up to this (also the most a `Retry-After` is waited for).
    pub retry_max_ms: u64,
    /// How often due e-mails are looked for, in milliseconds.
    pub poll_ms: u64,
}

impl Default for EmailConfig {
    fn default() -> Self {
        EmailConfig {
            provider: "outbox".into(),
            from: "Shop <hello@shop.example>".into(),
            smtp_host: None,
            smtp_port: 587,
            smtp_tls: "starttls".into(),
            smtp_username: None,
            smtp_password: None,
            outbox_dir: PathBuf::from("data/outbox"),
            http_url: None,
            http_auth_header: "Authorization".into(),
            http_auth: None,
            concurrency: 8,
            max_tries: 8,
            timeout_ms: 10_000,
            retry_base_ms: 1_000,
            retry_max_ms: 3_600_000,
            poll_ms: 1_000,
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

/// A password or API key: kept as given, never shown by `Debug`.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("\"********\"")
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
    "kafka", "store", "decide", "http", "email", "coupons", "shop", "service",
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
        // Environment values are text; a setting whose default is a number or a boolean takes
        // the variable's text parsed as one, so `PACKWELL_EMAIL_SMTP_PORT=1025` works.
        let defaults = toml::Table::try_from(Config::default()).unwrap_or_default();
        for (name, value) in env {
            let Some(rest) = name.strip_prefix("PACKWELL_") else {
                continue;
            };
            let rest = rest.to_ascii_lowercase();
            let Some(section) = SECTIONS.iter().find(|s| rest.starts_with(&format!("{s}_"))) else {
                continue;
            };
            let key = &rest[section.len() + 1..];
            let value = typed_env_value(&defaults, section, key, &name, value)?;
            let entry = table
                .entry(section.to_string())
                .or_insert_with(|| toml::Value::Table(toml::Table::new()));
            if let toml::Value::Table(t) = entry {
                t.insert(key.to_string(), value);
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
        self.service.shutdown_timeout()?;
        if !(1024..=64 * 1024 * 1024).contains(&self.kafka.max_event_bytes) {
            return Err(ConfigError::Invalid(format!(
                "[kafka] max_event_bytes = {}: expected 1024 to 67108864",
                self.kafka.max_event_bytes
            )));
        }
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
        if !["starttls", "tls", "none"].contains(&self.email.smtp_tls.as_str()) {
            return Err(ConfigError::Invalid(format!(
                "[email] smtp_tls = {:?}: expected \"starttls\", \"tls\" or \"none\"",
                self.email.smtp_tls
            )));
        }
        if self.email.smtp_port == 0 {
            return Err(ConfigError::Invalid(
                "[email] smtp_port = 0: expected a port from 1 to 65535".into(),
            ));
        }
        let smtp_host = self.email.smtp_host.as_deref().map(str::trim);
        if self.email.provider == "smtp" && smtp_host.is_none_or(str::is_empty) {
            return Err(ConfigError::Invalid(
                "[email] smtp_host is not set: [email] provider = \"smtp\" needs the server's \
                 host name (PACKWELL_EMAIL_SMTP_HOST)"
                    .into(),
            ));
        }
        if self.email.provider == "http"
            && self
                .email
                .http_url
                .as_deref()
                .is_none_or(|u| !(u.starts_with("http://") || u.starts_with("https://")))
        {
            return Err(ConfigError::Invalid(format!(
                "[email] http_url = {:?}: provider = \"http\" needs the provider's endpoint, \
                 an http:// or https:// URL (PACKWELL_EMAIL_HTTP_URL)",
                mask_url_password(self.email.http_url.as_deref().unwrap_or(""))
            )));
        }
        if self.email.from.parse::<lettre::message::Mailbox>().is_err() {
            return Err(ConfigError::Invalid(format!(
                "[email] from = {:?}: expected an address such as \"Shop <hello@shop.example>\"",
                self.email.from
            )));
        }
        if self
            .email
            .http_auth_header
            .parse::<axum::http::HeaderName>()
            .is_err()
        {
            return Err(ConfigError::Invalid(format!(
                "[email] http_auth_header = {:?}: not a header name",
                self.email.http_auth_header
            )));
        }
        for (name, value, low, high) in [
            ("concurrency", self.email.concurrency as u64, 1, 1000),
            ("max_tries", u64::from(self.email.max_tries), 1, 100),
            ("timeout_ms", self.email.timeout_ms, 100, 600_000),
            ("retry_base_ms", self.email.retry_base_ms, 1, 86_400_000),
            ("retry_max_ms", self.email.retry_max_ms, 1, 86_400_000),
            ("poll_ms", self.email.poll_ms, 10, 3_600_000),
        ] {
            if !(low..=high).contains(&value) {
                return Err(ConfigError::Invalid(format!(
                    "[email] {name} = {value}: expected {low} to {high}"
                )));
            }
        }
        if let Some(url) = &self.http.public_url
            && !(url.starts_with("http://") || url.starts_with("https://"))
        {
            return Err(ConfigError::Invalid(format!(
                "[http] public_url = {:?}: expected an http:// or https:// URL, the base of unsubscribe links",
                mask_url_password(url)
            )));
        }
        if let Err(e) = Tokens::from_config(&self.http.tokens) {
            return Err(ConfigError::Invalid(e));
        }
        if self.http.max_body_bytes < 1024 {
            return Err(ConfigError::Invalid(format!(
                "[http] max_body_bytes = {}: expected at least 1024",
                self.http.max_body_bytes
            )));
        }
        if self.http.request_timeout_ms == 0 {
            return Err(ConfigError::Invalid(
                "[http] request_timeout_ms = 0: expected a time in milliseconds".into(),
            ));
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

    /// The effective configuration as TOML, with secrets masked.
    pub fn to_masked_toml(&self) -> String {
        let mut masked = self.clone();
        for t in &mut masked.http.tokens {
            if t.token.is_some() {
                t.token = Some("********".into());
            }
        }
        // Every setting that may be a URL: a password or key can hide in any of them.
        for url in [
            &mut masked.store.url,
            &mut masked.email.http_url,
            &mut masked.email.smtp_host,
            &mut masked.http.public_url,
            &mut masked.kafka.brokers,
        ]
        .into_iter()
        .flatten()
        {
            *url = mask_url_password(url);
        }
        masked.shop.url = mask_url_password(&masked.shop.url);
        for secret in [&mut masked.email.smtp_password, &mut masked.email.http_auth] {
            if secret.is_some() {
                *secret = Some(Secret(MASK.into()));
            }
        }
        toml::to_string_pretty(&masked).unwrap_or_default()
    }
}

/// An environment variable's text as the TOML value of its setting: an integer or a boolean
/// where the setting's default is one, else a string.
fn typed_env_value(
    defaults: &toml::Table,
    section: &str,
    key: &str,
    name: &str,
    value: String,
) -> Result<toml::Value, ConfigError> {
    let default = defaults
        .get(section)
        .and_then(|s| s.as_table())
        .and_then(|s| s.get(key));
    match default {
        Some(toml::Value::Integer(_)) => value
            .trim()
            .parse::<i64>()
            .map(toml::Value::Integer)
            .map_err(|_| {
                ConfigError::Invalid(format!(
                    "[{section}] {key} = {value:?} (from {name}): expected a whole number"
                ))
            }),
        Some(toml::Value::Boolean(_)) => match value.trim() {
            "true" => Ok(toml::Value::Boolean(true)),
            "false" => Ok(toml::Value::Boolean(false)),
            _ => Err(ConfigError::Invalid(format!(
                "[{section}] {key} = {value:?} (from {name}): expected true or false"
            ))),
        },
        _ => Ok(toml::Value::String(value)),
    }
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

    fn env(vars: &[(&str, &str)]) -> Vec<(String, String)> {
        vars.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn smtp_settings_from_env() {
        let c = Config::load(None, []).unwrap();
        assert_eq!(c.email.smtp_host, None);
        assert_eq!(c.email.smtp_port, 587);
        assert_eq!(c.email.smtp_tls, "starttls");

        let c = Config::load(
            None,
            env(&[
                ("PACKWELL_EMAIL_PROVIDER", "smtp"),
                ("PACKWELL_EMAIL_SMTP_HOST", "mailpit"),
                ("PACKWELL_EMAIL_SMTP_PORT", "1025"),
                ("PACKWELL_EMAIL_SMTP_TLS", "none"),
            ]),
        )
        .unwrap();
        assert_eq!(c.email.smtp_host.as_deref(), Some("mailpit"));
        assert_eq!(c.email.smtp_port, 1025);
        assert_eq!(c.email.smtp_tls, "none");
    }

    #[test]
    fn smtp_settings_are_checked() {
        let err = |vars: &[(&str, &str)]| Config::load(None, env(vars)).unwrap_err().to_string();

        let e = err(&[("PACKWELL_EMAIL_SMTP_TLS", "ssl")]);
        assert!(e.contains("[email] smtp_tls = \"ssl\""), "{e}");
        let e = err(&[("PACKWELL_EMAIL_SMTP_PORT", "twenty-five")]);
        assert!(e.contains("[email] smtp_port = \"twenty-five\""), "{e}");
        assert!(e.contains("PACKWELL_EMAIL_SMTP_PORT"), "{e}");
        let e = err(&[("PACKWELL_EMAIL_SMTP_PORT", "0")]);
        assert!(e.contains("[email] smtp_port = 0"), "{e}");
        let e = err(&[("PACKWELL_EMAIL_SMTP_PORT", "70000")]);
        assert!(e.contains("70000"), "{e}");
        let e = err(&[("PACKWELL_EMAIL_PROVIDER", "smtp")]);
        assert!(e.contains("[email] smtp_host"), "{e}");
        let e = err(&[
            ("PACKWELL_EMAIL_PROVIDER", "smtp"),
            ("PACKWELL_EMAIL_SMTP_HOST", " "),
        ]);
        assert!(e.contains("[email] smtp_host"), "{e}");

        // In a file the port is a TOML integer.
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.toml");
        std::fs::write(
            &p,
            "[email]\nprovider = \"smtp\"\nsmtp_host = \"mail.example\"\nsmtp_port = 465\nsmtp_tls = \"tls\"\n",
        )
        .unwrap();
        let c = Config::load(Some(&p), []).unwrap();
        assert_eq!(c.email.smtp_port, 465);
        assert_eq!(c.email.smtp_tls, "tls");
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
                .contains("[kafka] batch_max = \"many\" (from PACKWELL_KAFKA_BATCH_MAX)"),
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

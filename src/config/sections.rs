//! The configuration's sections as the TOML file and the `PACKWELL_*` variables give them:
//! the shape serde reads and `run --check-config` prints, each with its documented defaults.
//! Values stay as written here; [`super::Settings`] holds them checked and parsed.

use serde::{Deserialize, Serialize};
use std::path::PathBuf;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServiceConfig {
    /// How long stopping may take in any state (broker or store gone, a provider hanging):
    /// past it, what was not sent stays in the outbox for the next start and the process exits.
    pub shutdown_timeout: String,
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
    /// What the token may call; absent: `station` when limited to warehouses, else `admin`.
    pub role: Option<Role>,
}

/// What a token may call (CONTRACT §7), each role everything the one before may and more.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// The order routes: insert lists, cards, confirmations.
    Station,
    /// Also the effect report and the rules routes of the workbench.
    Marketer,
    /// Everything, the e-mail provider's bounces and complaints included.
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Station => "station",
            Role::Marketer => "marketer",
            Role::Admin => "admin",
        }
    }
}

/// Never shows a token given in clear text.
impl std::fmt::Debug for TokenConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenConfig")
            .field("name", &self.name)
            .field("token_sha256", &self.token_sha256)
            .field("token", &self.token.as_ref().map(|_| "********"))
            .field("warehouses", &self.warehouses)
            .field("role", &self.role)
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

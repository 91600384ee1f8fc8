//! The configuration checked and parsed into types, once, when it is loaded: addresses,
//! durations, the e-mail provider with its own settings. A value that does not parse is an
//! error naming the setting and the value, so an invalid configuration has no `Settings`.

use super::sections::{
    DecideConfig, EmailConfig, HttpConfig, KafkaConfig, Secret, ServiceConfig, StoreConfig,
};
use super::{ConfigError, Tokens, mask_url_password};
use axum::http::HeaderName;
use lettre::message::Mailbox;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Every setting that is more than text, as its type. Made by `Config::load`; read with
/// `Config::settings`.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    pub kafka: KafkaSettings,
    pub store: StoreSettings,
    pub decide: DecideSettings,
    pub http: HttpSettings,
    pub email: EmailSettings,
    pub service: ServiceSettings,
    pub connectors: super::ConnectorSettings,
}

#[derive(Debug, Clone, PartialEq)]
pub struct KafkaSettings {
    /// Where the embedded broker listens when `[kafka] brokers` is absent.
    pub embedded_listen: SocketAddr,
    pub batch_max: usize,
    pub batch_wait: Duration,
    pub max_outbox_backlog: i64,
    pub session_timeout: Duration,
    pub max_event_bytes: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub struct StoreSettings {
    /// How long kept events, messages and e-mails stay in the store.
    pub retention: chrono::Duration,
}

#[derive(Debug, Clone, PartialEq)]
pub struct DecideSettings {
    /// An order older than this when it arrives folds into the history without a decision.
    pub max_event_age: chrono::Duration,
}

#[derive(Debug, Clone, PartialEq)]
pub struct HttpSettings {
    pub listen: SocketAddr,
    pub max_body_bytes: usize,
    pub request_timeout: Duration,
    pub cache_ttl: Duration,
    pub cache_entries: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct EmailSettings {
    pub provider: EmailProvider,
    pub from: Mailbox,
    pub concurrency: usize,
    pub max_tries: u32,
    /// Longest wait for the provider's answer.
    pub timeout: Duration,
    pub retry_base: Duration,
    pub retry_max: Duration,
    pub poll: Duration,
}

/// Where e-mails go (`[email] provider`), with the settings that provider needs.
#[derive(Debug, Clone, PartialEq)]
pub enum EmailProvider {
    /// `.eml` files in a folder.
    Outbox {
        dir: PathBuf,
    },
    Smtp(SmtpServer),
    Http(HttpApi),
}

#[derive(Debug, Clone, PartialEq)]
pub struct SmtpServer {
    /// Trimmed, never empty.
    pub host: String,
    pub port: u16,
    pub tls: SmtpTls,
    pub username: Option<String>,
    pub password: Option<Secret>,
}

/// `[email] smtp_tls`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SmtpTls {
    /// Plain first, then STARTTLS (required).
    StartTls,
    /// TLS from the first byte.
    Tls,
    /// No encryption at all (a local test server).
    None,
}

/// An HTTP provider API.
#[derive(Debug, Clone, PartialEq)]
pub struct HttpApi {
    /// An http:// or https:// URL.
    pub url: String,
    pub auth_header: HeaderName,
    /// The header's value; without it no header is sent.
    pub auth: Option<Secret>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ServiceSettings {
    /// How long stopping may take, from 1 second to 1 hour.
    pub shutdown_timeout: Duration,
}

/// The sections `Settings` are parsed from (the rest of the configuration is text as it is).
pub(super) struct Sections<'a> {
    pub kafka: &'a KafkaConfig,
    pub store: &'a StoreConfig,
    pub decide: &'a DecideConfig,
    pub http: &'a HttpConfig,
    pub email: &'a EmailConfig,
    pub service: &'a ServiceConfig,
    pub connectors: &'a super::ConnectorsConfig,
}

/// The documented defaults, parsed: what a `Config` holds before (or without) loading.
impl Default for Settings {
    fn default() -> Self {
        Settings::parse(Sections {
            kafka: &KafkaConfig::default(),
            store: &StoreConfig::default(),
            decide: &DecideConfig::default(),
            http: &HttpConfig::default(),
            email: &EmailConfig::default(),
            service: &ServiceConfig::default(),
            connectors: &super::ConnectorsConfig::default(),
        })
        .expect("the documented defaults are valid")
    }
}

fn invalid(message: String) -> ConfigError {
    ConfigError::Invalid(message)
}

/// A duration in the rules' units (`7d`, `12w`), named by its setting when it does not parse.
fn duration(name: &str, v: &str) -> Result<chrono::Duration, ConfigError> {
    crate::rules::units::parse_duration(v).map_err(|e| invalid(format!("{name} = {v:?}: {e}")))
}

/// `[service] shutdown_timeout`: whole seconds (`"20s"`) or a longer unit (`"2m"`), from 1
/// second to 1 hour.
fn shutdown_timeout(text: &str) -> Result<Duration, ConfigError> {
    let bad = || {
        invalid(format!(
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
    Ok(Duration::from_secs(secs))
}

impl Settings {
    /// Checks every setting, in a fixed order (the first bad one is the error), and keeps
    /// the parsed values.
    pub(super) fn parse(c: Sections<'_>) -> Result<Settings, ConfigError> {
        let retention = duration("[store] retention", &c.store.retention)?;
        let max_event_age = duration("[decide] max_event_age", &c.decide.max_event_age)?;
        let shutdown_timeout = shutdown_timeout(&c.service.shutdown_timeout)?;
        let kafka = parse_kafka(c.kafka, c.email)?;
        let email = parse_email(c.email)?;
        let http = parse_http(c.http)?;
        let connectors = super::connectors::parse_connectors(c.connectors)?;
        Ok(Settings {
            kafka,
            store: StoreSettings { retention },
            decide: DecideSettings { max_event_age },
            http,
            email,
            service: ServiceSettings { shutdown_timeout },
            connectors,
        })
    }
}

/// `[kafka]`, with `[email] provider` checked among its settings: the order of the checks
/// decides which of several bad settings is reported, and operators' scripts see that one.
fn parse_kafka(kafka: &KafkaConfig, email: &EmailConfig) -> Result<KafkaSettings, ConfigError> {
    if !(1024..=64 * 1024 * 1024).contains(&kafka.max_event_bytes) {
        return Err(invalid(format!(
            "[kafka] max_event_bytes = {}: expected 1024 to 67108864",
            kafka.max_event_bytes
        )));
    }
    if !["outbox", "smtp", "http"].contains(&email.provider.as_str()) {
        return Err(invalid(format!(
            "[email] provider = {:?}: expected \"outbox\", \"smtp\" or \"http\"",
            email.provider
        )));
    }
    let embedded_listen = kafka.embedded_listen.parse::<SocketAddr>().map_err(|_| {
        invalid(format!(
            "[kafka] embedded_listen = {:?}: expected an address such as \"127.0.0.1:9092\"",
            kafka.embedded_listen
        ))
    })?;
    if kafka.batch_max == 0 || kafka.batch_max > 10_000 {
        return Err(invalid(format!(
            "[kafka] batch_max = {}: expected 1 to 10000",
            kafka.batch_max
        )));
    }
    if !(1000..=3_600_000).contains(&kafka.session_timeout_ms) {
        return Err(invalid(format!(
            "[kafka] session_timeout_ms = {}: expected 1000 to 3600000",
            kafka.session_timeout_ms
        )));
    }
    if kafka.max_outbox_backlog < 1 {
        return Err(invalid(format!(
            "[kafka] max_outbox_backlog = {}: expected at least 1",
            kafka.max_outbox_backlog
        )));
    }
    Ok(KafkaSettings {
        embedded_listen,
        batch_max: kafka.batch_max,
        batch_wait: Duration::from_millis(kafka.batch_wait_ms),
        max_outbox_backlog: kafka.max_outbox_backlog,
        session_timeout: Duration::from_millis(kafka.session_timeout_ms),
        max_event_bytes: kafka.max_event_bytes,
    })
}

/// `[email]` but its provider's name (checked with `[kafka]`).
fn parse_email(email: &EmailConfig) -> Result<EmailSettings, ConfigError> {
    let tls = match email.smtp_tls.as_str() {
        "starttls" => SmtpTls::StartTls,
        "tls" => SmtpTls::Tls,
        "none" => SmtpTls::None,
        _ => {
            return Err(invalid(format!(
                "[email] smtp_tls = {:?}: expected \"starttls\", \"tls\" or \"none\"",
                email.smtp_tls
            )));
        }
    };
    if email.smtp_port == 0 {
        return Err(invalid(
            "[email] smtp_port = 0: expected a port from 1 to 65535".into(),
        ));
    }
    let smtp_host = email
        .smtp_host
        .as_deref()
        .map(str::trim)
        .filter(|h| !h.is_empty());
    if email.provider == "smtp" && smtp_host.is_none() {
        return Err(invalid(
            "[email] smtp_host is not set: [email] provider = \"smtp\" needs the server's \
             host name (PACKWELL_EMAIL_SMTP_HOST)"
                .into(),
        ));
    }
    let http_url = email
        .http_url
        .as_deref()
        .filter(|u| u.starts_with("http://") || u.starts_with("https://"));
    if email.provider == "http" && http_url.is_none() {
        return Err(invalid(format!(
            "[email] http_url = {:?}: provider = \"http\" needs the provider's endpoint, \
             an http:// or https:// URL (PACKWELL_EMAIL_HTTP_URL)",
            mask_url_password(email.http_url.as_deref().unwrap_or(""))
        )));
    }
    let from = email.from.parse::<Mailbox>().map_err(|_| {
        invalid(format!(
            "[email] from = {:?}: expected an address such as \"Shop <hello@shop.example>\"",
            email.from
        ))
    })?;
    let auth_header = email.http_auth_header.parse::<HeaderName>().map_err(|_| {
        invalid(format!(
            "[email] http_auth_header = {:?}: not a header name",
            email.http_auth_header
        ))
    })?;
    for (name, value, low, high) in [
        ("concurrency", email.concurrency as u64, 1, 1000),
        ("max_tries", u64::from(email.max_tries), 1, 100),
        ("timeout_ms", email.timeout_ms, 100, 600_000),
        ("retry_base_ms", email.retry_base_ms, 1, 86_400_000),
        ("retry_max_ms", email.retry_max_ms, 1, 86_400_000),
        ("poll_ms", email.poll_ms, 10, 3_600_000),
    ] {
        if !(low..=high).contains(&value) {
            return Err(invalid(format!(
                "[email] {name} = {value}: expected {low} to {high}"
            )));
        }
    }
    let provider = match (email.provider.as_str(), smtp_host, http_url) {
        ("smtp", Some(host), _) => EmailProvider::Smtp(SmtpServer {
            host: host.to_string(),
            port: email.smtp_port,
            tls,
            username: email.smtp_username.clone(),
            password: email.smtp_password.clone(),
        }),
        ("http", _, Some(url)) => EmailProvider::Http(HttpApi {
            url: url.to_string(),
            auth_header,
            auth: email.http_auth.clone(),
        }),
        // The provider's name was checked with `[kafka]`, and each provider's needs above.
        _ => EmailProvider::Outbox {
            dir: email.outbox_dir.clone(),
        },
    };
    Ok(EmailSettings {
        provider,
        from,
        concurrency: email.concurrency,
        max_tries: email.max_tries,
        timeout: Duration::from_millis(email.timeout_ms),
        retry_base: Duration::from_millis(email.retry_base_ms),
        retry_max: Duration::from_millis(email.retry_max_ms),
        poll: Duration::from_millis(email.poll_ms),
    })
}

fn parse_http(http: &HttpConfig) -> Result<HttpSettings, ConfigError> {
    if let Some(url) = &http.public_url
        && !(url.starts_with("http://") || url.starts_with("https://"))
    {
        return Err(invalid(format!(
            "[http] public_url = {:?}: expected an http:// or https:// URL, the base of unsubscribe links",
            mask_url_password(url)
        )));
    }
    // Checked here so that a bad token stops loading; the table itself is built where it is
    // used, after `run --demo` may have added its token.
    Tokens::from_config(&http.tokens).map_err(invalid)?;
    if http.max_body_bytes < 1024 {
        return Err(invalid(format!(
            "[http] max_body_bytes = {}: expected at least 1024",
            http.max_body_bytes
        )));
    }
    if http.request_timeout_ms == 0 {
        return Err(invalid(
            "[http] request_timeout_ms = 0: expected a time in milliseconds".into(),
        ));
    }
    let listen = http.listen.parse::<SocketAddr>().map_err(|_| {
        invalid(format!(
            "[http] listen = {:?}: expected an address such as \"127.0.0.1:8080\"",
            http.listen
        ))
    })?;
    Ok(HttpSettings {
        listen,
        max_body_bytes: http.max_body_bytes,
        request_timeout: Duration::from_millis(http.request_timeout_ms),
        cache_ttl: Duration::from_millis(http.cache_ttl_ms),
        cache_entries: http.cache_entries,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_defaults_parse() {
        let s = Settings::default();
        assert_eq!(
            s.http.listen,
            "127.0.0.1:8080".parse::<SocketAddr>().unwrap()
        );
        assert_eq!(s.service.shutdown_timeout, Duration::from_secs(20));
        assert_eq!(
            s.email.provider,
            EmailProvider::Outbox {
                dir: PathBuf::from("data/outbox")
            }
        );
    }

    #[test]
    fn shutdown_timeout_in_seconds_or_longer_units() {
        assert_eq!(shutdown_timeout("4s").unwrap(), Duration::from_secs(4));
        assert_eq!(shutdown_timeout("2m").unwrap(), Duration::from_secs(120));
        assert!(shutdown_timeout("0s").is_err());
        assert!(shutdown_timeout("2h").is_err());
    }
}

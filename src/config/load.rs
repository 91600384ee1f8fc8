//! Loading: the documented defaults, then a TOML file (`--config`), then `PACKWELL_*`
//! environment variables (`PACKWELL_KAFKA_BROKERS` sets `[kafka] brokers`), then the check that
//! parses them into [`Settings`].

use super::{Config, ConfigError, Settings};
use std::path::Path;

const SECTIONS: &[&str] = &[
    "kafka",
    "store",
    "decide",
    "http",
    "email",
    "coupons",
    "shop",
    "service",
    "connectors",
];

/// The sub-sections of `[connectors]`: `PACKWELL_CONNECTORS_SHOPIFY_ACCESS_TOKEN` sets
/// `[connectors.shopify] access_token`.
const CONNECTOR_SECTIONS: &[&str] = &["shopify", "woocommerce"];

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
            let mut entry = table
                .entry(section.to_string())
                .or_insert_with(|| toml::Value::Table(toml::Table::new()));
            let (key, value) = match CONNECTOR_SECTIONS
                .iter()
                .find(|s| *section == "connectors" && key.starts_with(&format!("{s}_")))
            {
                Some(platform) => {
                    if let toml::Value::Table(t) = entry {
                        entry = t
                            .entry(platform.to_string())
                            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
                    }
                    let key = &key[platform.len() + 1..];
                    (key, connector_env_value(key, value))
                }
                None => (key, typed_env_value(&defaults, section, key, &name, value)?),
            };
            if let toml::Value::Table(t) = entry {
                t.insert(key.to_string(), value);
            }
        }
        let max_event_age_given = table
            .get("decide")
            .and_then(toml::Value::as_table)
            .is_some_and(|d| d.contains_key("max_event_age"));
        let mut config: Config =
            toml::Value::Table(table)
                .try_into()
                .map_err(|e: toml::de::Error| {
                    ConfigError::Invalid(format!("configuration: {}", e.message()))
                })?;
        config.settings = Settings::parse(config.sections())?;
        config.max_event_age_given = max_event_age_given;
        Ok(config)
    }

    /// Loads from the process environment.
    pub fn from_env(file: Option<&Path>) -> Result<Config, ConfigError> {
        Config::load(file, std::env::vars())
    }
}

/// A connector setting's text from the environment: `webhook_secrets` a comma-separated list,
/// `sync_coupons` a boolean and `max_rps` a number when they read as one (else the text, which
/// the check then names), anything else text.
fn connector_env_value(key: &str, value: String) -> toml::Value {
    match key {
        "webhook_secrets" => toml::Value::Array(
            value
                .split(',')
                .map(|s| toml::Value::String(s.trim().to_string()))
                .collect(),
        ),
        "sync_coupons" if matches!(value.trim(), "true" | "false") => {
            toml::Value::Boolean(value.trim() == "true")
        }
        "max_rps" => match value.trim().parse::<i64>() {
            Ok(n) => toml::Value::Integer(n),
            Err(_) => toml::Value::String(value),
        },
        _ => toml::Value::String(value),
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
    use std::path::PathBuf;

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
    fn connector_settings_come_from_the_environment_too() {
        let c = Config::load(
            None,
            [
                ("PACKWELL_CONNECTORS_SHOPIFY_WEBHOOK_SECRETS", "old, new"),
                ("PACKWELL_CONNECTORS_SHOPIFY_MAX_RPS", "9"),
                ("PACKWELL_CONNECTORS_MAX_BODY_BYTES", "4096"),
            ]
            .map(|(k, v)| (k.to_string(), v.to_string())),
        )
        .unwrap();
        let shopify = c.settings().connectors.shopify.clone().unwrap();
        let secrets: Vec<&str> = shopify
            .webhook_secrets
            .iter()
            .map(|s| s.0.as_str())
            .collect();
        assert_eq!(secrets, ["old", "new"]);
        assert_eq!(shopify.max_rps, 9);
        assert_eq!(c.settings().connectors.max_body_bytes, 4096);
        assert!(!c.to_masked_toml().contains("old"));
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
    fn max_event_age_is_known_as_given_from_the_file_or_the_environment() {
        let mut c = Config::load(None, []).unwrap();
        assert!(!c.max_event_age_given());
        assert_eq!(c.settings().decide.max_event_age, chrono::Duration::days(7));
        c.set_max_event_age_days(190);
        assert_eq!(
            c.settings().decide.max_event_age,
            chrono::Duration::days(190)
        );
        assert!(c.to_masked_toml().contains("max_event_age = \"190d\""));

        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.toml");
        // Given, even at the default's value: the user chose it.
        std::fs::write(&p, "[decide]\nmax_event_age = \"7d\"\n").unwrap();
        assert!(Config::load(Some(&p), []).unwrap().max_event_age_given());
        let env = [(
            "PACKWELL_DECIDE_MAX_EVENT_AGE".to_string(),
            "2d".to_string(),
        )];
        let c = Config::load(None, env).unwrap();
        assert!(c.max_event_age_given());
        assert_eq!(c.settings().decide.max_event_age, chrono::Duration::days(2));
        std::fs::write(&p, "[decide]\n").unwrap();
        assert!(!Config::load(Some(&p), []).unwrap().max_event_age_given());
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
}

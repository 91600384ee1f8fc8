//! Secrets kept out of anything printed or logged from the configuration: a URL's password
//! (`postgres://user:secret@host/db`), the whole user part of an HTTP URL (an API key is often
//! given as `https://KEY@api.example/`), and query or fragment parameters that name a secret
//! (`?password=…`, `?sslpassword=…`, `&token=…`). Masking errs on the side of hiding: a URL
//! that is not well formed is masked as far as it can be read, never shown less masked. The
//! effective configuration is printed (`run --check-config`) with every such setting masked.

use super::{Config, Secret};

/// What takes the place of a secret.
pub const MASK: &str = "********";

/// The URL with its password, secret parameters and (for http and https) user part masked:
/// for messages, logs, the start banner and `--check-config`.
pub fn mask_url_password(url: &str) -> String {
    let (scheme, rest) = match url.split_once("://") {
        Some((scheme, rest)) => (Some(scheme), rest),
        None => (None, url),
    };
    let userinfo_end = scheme.and_then(|_| userinfo_end(rest));
    let mut out = String::with_capacity(url.len() + MASK.len());
    if let Some(scheme) = scheme {
        out.push_str(scheme);
        out.push_str("://");
    }
    let after_userinfo = match userinfo_end {
        Some(at) => {
            let userinfo = &rest[..at];
            let http = scheme
                .is_some_and(|s| s.eq_ignore_ascii_case("http") || s.eq_ignore_ascii_case("https"));
            match userinfo.split_once(':') {
                Some((user, _)) if !http => {
                    out.push_str(user);
                    out.push(':');
                    out.push_str(MASK);
                }
                // An HTTP provider's user part is its credential, with or without a password.
                _ if http => out.push_str(MASK),
                _ => out.push_str(userinfo),
            }
            out.push('@');
            at + 1
        }
        None => 0,
    };
    out.push_str(&mask_parameters(&rest[after_userinfo..]));
    out
}

/// Where the user part of `rest` (the URL after `scheme://`) ends, at its `@`. The last `@`
/// before the query is taken, so a password holding an `@` is masked whole; when there is
/// none there, the last `@` before the first `/`, so a password holding a `?` or `#` is too.
fn userinfo_end(rest: &str) -> Option<usize> {
    let head = rest.find(['?', '#']).unwrap_or(rest.len());
    let slash = rest.find('/').unwrap_or(rest.len());
    rest[..head].rfind('@').or_else(|| rest[..slash].rfind('@'))
}

/// `text` (the part of a URL after its user part) with the values of secret parameters of
/// its query and fragment masked; the path is kept.
fn mask_parameters(text: &str) -> String {
    let Some(start) = text.find(['?', '#']) else {
        return text.to_string();
    };
    let mut out = String::with_capacity(text.len());
    out.push_str(&text[..start]);
    let mut rest = &text[start..];
    while let Some(separator) = rest.chars().next() {
        out.push(separator);
        rest = &rest[separator.len_utf8()..];
        let end = rest.find(['&', ';', '?', '#']).unwrap_or(rest.len());
        let pair = &rest[..end];
        match pair.split_once('=') {
            Some((name, _)) if is_secret_name(name) => {
                out.push_str(name);
                out.push('=');
                out.push_str(MASK);
            }
            _ => out.push_str(pair),
        }
        rest = &rest[end..];
    }
    out
}

/// Whether a query parameter names a secret: password, passwd, pwd, secret, token, key,
/// sslpassword and their like (`api_key`, `access_token`, `client_secret`), in any case and
/// percent-encoded or not.
pub fn is_secret_name(name: &str) -> bool {
    let name = percent_decode(name).to_ascii_lowercase();
    let name = name.trim();
    const EXACT: &[&str] = &[
        "password",
        "passwd",
        "pwd",
        "pass",
        "secret",
        "token",
        "key",
        "sslpassword",
        "apikey",
        "auth",
        "authorization",
        "signature",
        "sig",
    ];
    const ENDINGS: &[&str] = &[
        "password", "passwd", "secret", "token", "_key", "-key", "apikey",
    ];
    EXACT.contains(&name) || ENDINGS.iter().any(|e| name.ends_with(e))
}

/// `%XX` escapes decoded (others kept as written), for comparing parameter names.
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        if bytes[i] == b'%'
            && let (Some(h), Some(l)) = (
                bytes.get(i + 1).copied().and_then(hex),
                bytes.get(i + 2).copied().and_then(hex),
            )
        {
            out.push((h * 16 + l) as u8);
            i += 3;
        } else {
            if bytes[i] == b'+' {
                out.push(b' ');
            } else {
                out.push(bytes[i]);
            }
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

impl Config {
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
        for shop in [
            &mut masked.connectors.shopify,
            &mut masked.connectors.woocommerce,
        ]
        .into_iter()
        .flatten()
        {
            for secret in &mut shop.webhook_secrets {
                *secret = Secret(MASK.into());
            }
            for secret in [
                &mut shop.access_token,
                &mut shop.consumer_key,
                &mut shop.consumer_secret,
            ]
            .into_iter()
            .flatten()
            {
                *secret = Secret(MASK.into());
            }
            for url in [&mut shop.admin_url, &mut shop.url].into_iter().flatten() {
                *url = mask_url_password(url);
            }
        }
        toml::to_string_pretty(&masked).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::TokenConfig;

    #[test]
    fn passwords_in_the_user_part_are_masked() {
        for (given, shown) in [
            ("postgres://u:secret@h/db", "postgres://u:********@h/db"),
            (
                "postgresql://u:s%40cret@h:5432/db",
                "postgresql://u:********@h:5432/db",
            ),
            // A raw `@`, `?`, `#` or `:` in the password: masked whole all the same.
            ("postgres://u:p@ss@h/db", "postgres://u:********@h/db"),
            ("postgres://u:p?ss@h/db", "postgres://u:********@h/db"),
            ("postgres://u:p#ss@h/db", "postgres://u:********@h/db"),
            ("postgres://u:a:b@h/db", "postgres://u:********@h/db"),
            // A user without a password is shown: it is how the store is told apart.
            (
                "postgres://packwell@db/packwell",
                "postgres://packwell@db/packwell",
            ),
            ("postgres://db/packwell", "postgres://db/packwell"),
            ("data/packwell.db", "data/packwell.db"),
            ("sqlite://data/a@b.db", "sqlite://data/a@b.db"),
            ("", ""),
        ] {
            assert_eq!(mask_url_password(given), shown, "{given}");
        }
    }

    #[test]
    fn an_http_urls_user_part_is_masked_whole() {
        for (given, shown) in [
            (
                "https://user:pw@api.example/send",
                "https://********@api.example/send",
            ),
            (
                "https://APIKEY123@api.example/send",
                "https://********@api.example/send",
            ),
            ("HTTP://a:b@h", "HTTP://********@h"),
            ("https://api.example/send", "https://api.example/send"),
        ] {
            assert_eq!(mask_url_password(given), shown, "{given}");
        }
    }

    #[test]
    fn secret_parameters_are_masked_in_any_case() {
        for (given, shown) in [
            (
                "postgres://u@h/db?password=secret",
                "postgres://u@h/db?password=********",
            ),
            (
                "postgres://h/db?sslmode=require&PassWord=secret&application_name=pw",
                "postgres://h/db?sslmode=require&PassWord=********&application_name=pw",
            ),
            (
                "postgres://h/db?sslpassword=s&sslrootcert=/etc/ca.pem",
                "postgres://h/db?sslpassword=********&sslrootcert=/etc/ca.pem",
            ),
            (
                "https://api.example/send?api_key=k1&x=1&Token=t2;pwd=p3#access_token=t4",
                "https://api.example/send?api_key=********&x=1&Token=********;pwd=********#access_token=********",
            ),
            (
                "https://h/?pass%77ord=s&passwd=s&secret=s&key=s&client_secret=s",
                "https://h/?pass%77ord=********&passwd=********&secret=********&key=********&client_secret=********",
            ),
            ("sqlite:data/p.db?mode=rwc", "sqlite:data/p.db?mode=rwc"),
            ("mail.example?password=x", "mail.example?password=********"),
            // A parameter without a value, or an empty query, is kept as written.
            ("https://h/?token&=x&", "https://h/?token&=x&"),
        ] {
            assert_eq!(mask_url_password(given), shown, "{given}");
        }
    }

    #[test]
    fn no_secret_survives_the_mask() {
        let secret = "Zq9s3cr3t";
        for url in [
            format!("postgres://u:{secret}@h/db?password={secret}"),
            format!("postgres://u:{secret}@h:1/db#password={secret}"),
            format!("https://u:{secret}@h/p?x=1&KEY={secret}&y=2"),
            format!("https://{secret}:@h/"),
            format!("postgres://u:a@{secret}@h/db"),
            format!("postgres://u:{secret}?@h/db"),
            format!("postgres://h/db?options=-c&Sslpassword={secret}"),
        ] {
            let shown = mask_url_password(&url);
            assert!(!shown.contains(secret), "{url} shown as {shown}");
        }
    }

    #[test]
    fn the_effective_configuration_shows_no_secret() {
        use crate::config::{Config, Secret, TokenConfig};
        let mut c = Config::default();
        c.store.url = Some("postgres://u:SECRET-1@h/db?sslpassword=SECRET-2".into());
        c.email.http_url = Some("https://k:SECRET-3@api.example/send?token=SECRET-4".into());
        c.email.smtp_password = Some(Secret("SECRET-5".into()));
        c.email.http_auth = Some(Secret("Bearer SECRET-6".into()));
        c.http.public_url = Some("https://SECRET-7@packwell.example".into());
        c.http.tokens.push(TokenConfig {
            name: "station".into(),
            token_sha256: None,
            token: Some("SECRET-8".into()),
            warehouses: None,
            role: None,
        });
        let text = c.to_masked_toml();
        assert!(!text.contains("SECRET"), "{text}");
        // What is not secret stays readable.
        for shown in [
            "u:********@h/db",
            "https://********@api.example/send",
            "station",
        ] {
            assert!(text.contains(shown), "{shown}: {text}");
        }
    }

    #[test]
    fn names_that_hold_secrets() {
        for name in [
            "password",
            "PWD",
            "sslpassword",
            "x-api-key",
            "refresh_token",
        ] {
            assert!(is_secret_name(name), "{name}");
        }
        for name in [
            "sslmode",
            "user",
            "host",
            "application_name",
            "keys",
            "tokens_ok",
        ] {
            assert!(!is_secret_name(name), "{name}");
        }
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
            role: None,
        });
        let text = c.to_masked_toml();
        assert!(
            !text.contains("hunter2") && !text.contains("\"abc\""),
            "{text}"
        );
    }
}

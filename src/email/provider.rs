//! Where e-mails go (`[email] provider`): an outbox folder of `.eml` files (the embedded
//! default), an SMTP server (lettre; STARTTLS, TLS or plain), or an HTTP provider API (a JSON
//! body with an `Idempotency-Key`). Each answer is sorted into sent, worth another try, given
//! up, or ambiguous (it may have gone out), which decides between retrying and `unknown`.

use super::compose::OutgoingEmail;
use crate::config::{EmailProvider, EmailSettings, HttpApi, SmtpServer, SmtpTls};
use async_trait::async_trait;
use lettre::message::header::{HeaderName, HeaderValue};
use lettre::message::{Mailbox, MultiPart};
use std::path::PathBuf;
use std::time::Duration;

/// Why a hand-over did not end in "sent".
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendError {
    /// Not delivered; worth another try (429, 5xx, a refused connection, an SMTP 4xx).
    Transient {
        detail: String,
        retry_after: Option<Duration>,
    },
    /// Not delivered, and another try will not help (a 4xx of the API, an SMTP 5xx).
    Permanent { detail: String },
    /// The message may have been delivered (the connection broke or timed out mid-send).
    Ambiguous { detail: String },
}

#[async_trait]
pub trait Provider: Send + Sync {
    /// `outbox`, `smtp` or `http`.
    fn name(&self) -> &'static str;
    /// Whether the same message sent twice under one idempotency key arrives once: then a
    /// hand-over interrupted by a crash is sent again, else it ends `unknown`.
    fn deduplicates(&self) -> bool;
    /// Hands the e-mail over; `Ok` carries what the provider said (for the job's detail).
    async fn send(&self, key: &str, email: &OutgoingEmail) -> Result<String, SendError>;
}

/// Chooses the TLS library's cryptography (ring) for the process, once. Packwell's HTTP
/// clients (reqwest with rustls, no provider of its own) need it before they are built; a
/// program or test that builds a reqwest client itself calls this first.
pub fn ensure_tls_provider() {
    // Fails only when one is installed already, which is as good.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Builds the provider the configuration names.
pub fn from_settings(settings: &EmailSettings) -> Result<Box<dyn Provider>, String> {
    let timeout = settings.timeout;
    match &settings.provider {
        EmailProvider::Smtp(server) => Ok(Box::new(Smtp::new(server, timeout)?)),
        EmailProvider::Http(api) => Ok(Box::new(Http::new(api, timeout)?)),
        EmailProvider::Outbox { dir } => Ok(Box::new(OutboxDir::new(dir.clone()))),
    }
}

/// The message as RFC 5322 bytes: multipart/alternative text and HTML, the extra headers,
/// a `Message-ID` from the idempotency key.
pub fn rfc5322(key: &str, email: &OutgoingEmail) -> Result<Vec<u8>, String> {
    let from: Mailbox = email
        .from
        .parse()
        .map_err(|e| format!("from {:?}: {e}", email.from))?;
    let to: Mailbox = email.to.parse().map_err(|e| format!("to address: {e}"))?;
    let domain = from.email.domain().to_string();
    let mut builder = lettre::Message::builder()
        .from(from)
        .to(to)
        .subject(email.subject.clone())
        .message_id(Some(format!("<{key}@{domain}>")));
    for (name, value) in &email.headers {
        let name = HeaderName::new_from_ascii(name.clone())
            .map_err(|e| format!("header {name:?}: {e}"))?;
        builder = builder.raw_header(HeaderValue::new(name, value.clone()));
    }
    let message = builder
        .multipart(MultiPart::alternative_plain_html(
            email.text.clone(),
            email.html.clone(),
        ))
        .map_err(|e| format!("building the message: {e}"))?;
    Ok(message.formatted())
}

/// `data/outbox/KEY.eml`: one file per e-mail, written whole (a temporary file renamed), so
/// writing the same e-mail again replaces it with itself.
pub struct OutboxDir {
    dir: PathBuf,
}

impl OutboxDir {
    pub fn new(dir: PathBuf) -> OutboxDir {
        OutboxDir { dir }
    }
}

#[async_trait]
impl Provider for OutboxDir {
    fn name(&self) -> &'static str {
        "outbox"
    }

    fn deduplicates(&self) -> bool {
        true
    }

    async fn send(&self, key: &str, email: &OutgoingEmail) -> Result<String, SendError> {
        let bytes = rfc5322(key, email).map_err(|detail| SendError::Permanent { detail })?;
        let dir = self.dir.clone();
        let key = key.to_string();
        let written = tokio::task::spawn_blocking(move || -> std::io::Result<PathBuf> {
            use std::io::Write;
            // The folder 0700 and the file 0600: an e-mail holds a name, an address and
            // coupon codes (see `store::files`).
            crate::files::create_private_dir(&dir)?;
            let tmp = dir.join(format!(".{key}.eml.tmp"));
            let target = dir.join(format!("{key}.eml"));
            // A file left by a crash keeps its mode when opened again: made anew, it is 0600.
            let _ = std::fs::remove_file(&tmp);
            crate::files::private_file()
                .write(true)
                .create(true)
                .truncate(true)
                .open(&tmp)?
                .write_all(&bytes)?;
            std::fs::rename(&tmp, &target)?;
            Ok(target)
        })
        .await
        .map_err(|e| SendError::Transient {
            detail: format!("writing the outbox file: {e}"),
            retry_after: None,
        })?;
        match written {
            Ok(path) => Ok(format!("written to {}", path.display())),
            Err(e) => Err(SendError::Transient {
                detail: format!("writing to {}: {e}", self.dir.display()),
                retry_after: None,
            }),
        }
    }
}

/// Removes a customer's e-mails from an outbox folder (`forget`): the files named by their
/// keys, and any other whose recipient's address hashes to one of `address_hashes` (e-mails of
/// jobs that retention has removed since). Returns the files removed. Unlinking takes a file
/// out of the folder; it does not overwrite the disk blocks it used (see the README).
pub fn erase_outbox_files(
    dir: &std::path::Path,
    keys: &[String],
    address_hashes: &[String],
) -> std::io::Result<u64> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e),
    };
    let mut removed = 0;
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(key) = name.strip_suffix(".eml").or_else(|| {
            name.strip_prefix('.')
                .and_then(|n| n.strip_suffix(".eml.tmp"))
        }) else {
            continue;
        };
        let path = entry.path();
        let theirs = keys.iter().any(|k| k == key)
            || (!address_hashes.is_empty()
                && recipient(&path).is_some_and(|to| {
                    address_hashes.contains(&crate::store::emails::address_hash(&to))
                }));
        if theirs {
            std::fs::remove_file(&path)?;
            removed += 1;
        }
    }
    if removed > 0 {
        // The removals themselves on disk, not only in the page cache.
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(removed)
}

/// The address in an `.eml` file's `To:` header (its last `<…>`, or the whole value).
fn recipient(path: &std::path::Path) -> Option<String> {
    use std::io::Read;
    // The header is at the start: a bounded read, whatever the file's size.
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .ok()?
        .take(64 * 1024)
        .read_to_end(&mut bytes)
        .ok()?;
    let text = String::from_utf8_lossy(&bytes).replace("\r\n", "\n");
    // The header ends at the first empty line; a folded line goes on with a space or a tab.
    let head = text
        .split("\n\n")
        .next()?
        .replace("\n ", " ")
        .replace("\n\t", " ");
    let value = head.lines().find_map(|line| {
        let (name, value) = line.split_once(':')?;
        name.eq_ignore_ascii_case("to")
            .then(|| value.trim().to_string())
    })?;
    let address = match value.rsplit_once('<') {
        Some((_, rest)) => rest.split('>').next().unwrap_or(rest).to_string(),
        None => value,
    };
    Some(address.trim().to_string())
}

/// An SMTP server through lettre's pooled transport.
pub struct Smtp {
    transport: lettre::AsyncSmtpTransport<lettre::Tokio1Executor>,
    server: String,
}

impl Smtp {
    pub fn new(server: &SmtpServer, timeout: Duration) -> Result<Smtp, String> {
        ensure_tls_provider();
        use lettre::transport::smtp::authentication::Credentials;
        let host = server.host.as_str();
        type T = lettre::AsyncSmtpTransport<lettre::Tokio1Executor>;
        let builder = match server.tls {
            SmtpTls::Tls => T::relay(host),
            SmtpTls::StartTls => T::starttls_relay(host),
            SmtpTls::None => Ok(T::builder_dangerous(host)),
        }
        .map_err(|e| format!("[email] smtp_host = {host:?}: {e}"))?;
        let mut builder = builder.port(server.port).timeout(Some(timeout));
        if let (Some(user), Some(password)) = (&server.username, &server.password) {
            builder = builder.credentials(Credentials::new(user.clone(), password.0.clone()));
        }
        Ok(Smtp {
            transport: builder.build(),
            server: format!("{host}:{}", server.port),
        })
    }
}

/// Whether an SMTP error happened before anything of the message could have been accepted:
/// the connection was refused or not made, or TLS failed to start.
fn smtp_not_sent(e: &lettre::transport::smtp::Error) -> bool {
    use std::error::Error as _;
    if e.is_tls() {
        return true;
    }
    let mut source = e.source();
    while let Some(err) = source {
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            return matches!(
                io.kind(),
                std::io::ErrorKind::ConnectionRefused
                    | std::io::ErrorKind::NotFound
                    | std::io::ErrorKind::AddrNotAvailable
                    | std::io::ErrorKind::HostUnreachable
                    | std::io::ErrorKind::NetworkUnreachable
            );
        }
        source = err.source();
    }
    false
}

#[async_trait]
impl Provider for Smtp {
    fn name(&self) -> &'static str {
        "smtp"
    }

    fn deduplicates(&self) -> bool {
        false
    }

    async fn send(&self, key: &str, email: &OutgoingEmail) -> Result<String, SendError> {
        use lettre::AsyncTransport;
        let message = {
            let bytes = rfc5322(key, email).map_err(|detail| SendError::Permanent { detail })?;
            let from: Mailbox = email.from.parse().map_err(|e| SendError::Permanent {
                detail: format!("from: {e}"),
            })?;
            let to: Mailbox = email.to.parse().map_err(|e| SendError::Permanent {
                detail: format!("to: {e}"),
            })?;
            let envelope = lettre::address::Envelope::new(Some(from.email), vec![to.email])
                .map_err(|e| SendError::Permanent {
                    detail: format!("envelope: {e}"),
                })?;
            (envelope, bytes)
        };
        match self.transport.send_raw(&message.0, &message.1).await {
            Ok(response) => Ok(format!(
                "accepted by {}: {} {}",
                self.server,
                response.code(),
                response.message().collect::<Vec<_>>().join(" ")
            )),
            Err(e) if e.is_permanent() => Err(SendError::Permanent {
                detail: format!("{} refused it: {e}", self.server),
            }),
            Err(e) if e.is_transient() || smtp_not_sent(&e) => Err(SendError::Transient {
                detail: format!("{}: {e}", self.server),
                retry_after: None,
            }),
            Err(e) => Err(SendError::Ambiguous {
                detail: format!("{}: {e}", self.server),
            }),
        }
    }
}

/// An HTTP provider: `POST` of the JSON body of docs/REFERENCE.md §5 with an `Idempotency-Key`.
pub struct Http {
    client: reqwest::Client,
    url: String,
    auth: Option<(reqwest::header::HeaderName, String)>,
}

impl Http {
    pub fn new(api: &HttpApi, timeout: Duration) -> Result<Http, String> {
        ensure_tls_provider();
        let url = api.url.clone();
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .build()
            .map_err(|e| format!("the HTTP client: {e}"))?;
        let auth = api
            .auth
            .clone()
            .map(|value| (api.auth_header.clone(), value.0));
        Ok(Http { client, url, auth })
    }
}

#[async_trait]
impl Provider for Http {
    fn name(&self) -> &'static str {
        "http"
    }

    fn deduplicates(&self) -> bool {
        true
    }

    async fn send(&self, key: &str, email: &OutgoingEmail) -> Result<String, SendError> {
        let mut request = self
            .client
            .post(&self.url)
            .header("Idempotency-Key", key)
            .json(email);
        if let Some((name, value)) = &self.auth {
            request = request.header(name.clone(), value.as_str());
        }
        let response = match request.send().await {
            Ok(r) => r,
            Err(e) => {
                let what = if e.is_timeout() {
                    "no answer in time"
                } else {
                    "cannot reach it"
                };
                return Err(SendError::Transient {
                    // The endpoint without its secrets: details are stored and shown.
                    detail: format!(
                        "{}: {what}: {}",
                        crate::config::mask_url_password(&self.url),
                        e.without_url()
                    ),
                    retry_after: None,
                });
            }
        };
        let status = response.status();
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| super::timing::parse_retry_after(v, chrono::Utc::now()));
        let body: String = match response.text().await {
            Ok(text) => text.chars().take(300).collect(),
            Err(_) => String::new(),
        };
        let detail = format!(
            "{} answered {status}: {}",
            crate::config::mask_url_password(&self.url),
            body.trim()
        );
        if status.is_success() {
            Ok(detail)
        } else if status.as_u16() == 429 || status.is_server_error() || status.as_u16() == 408 {
            Err(SendError::Transient {
                detail,
                retry_after,
            })
        } else {
            Err(SendError::Permanent { detail })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::emails::address_hash;

    #[test]
    fn forget_removes_the_files_named_by_key_or_addressed_to_them() {
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, to: &str| {
            let head =
                format!("From: shop@shop.example\r\nTo: {to}\r\nSubject: Hi\r\n\r\nbody\r\n");
            std::fs::write(dir.path().join(name), head).unwrap();
        };
        write("pw-1.eml", "\"Zoe Quill\" <zoe@mail.example>");
        write(".pw-2.eml.tmp", "zoe@mail.example");
        // A job retention removed: found by its recipient, folded onto a second line.
        write(
            "pw-3.eml",
            "\"Zoe Quill with a very long name indeed\"\r\n <Zoe@Mail.example>",
        );
        write("pw-4.eml", "\"Kees\" <kees@keep.example>");
        std::fs::write(dir.path().join("notes.txt"), "zoe@mail.example").unwrap();
        let keys = vec!["pw-1".to_string(), "pw-2".to_string()];
        let removed =
            erase_outbox_files(dir.path(), &keys, &[address_hash("zoe@mail.example")]).unwrap();
        assert_eq!(removed, 3);
        let mut left: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(left, ["notes.txt", "pw-4.eml"]);
        // No folder: nothing to remove.
        assert_eq!(
            erase_outbox_files(&dir.path().join("none"), &keys, &[]).unwrap(),
            0
        );
    }
}

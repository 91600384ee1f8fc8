//! `packwell forget` as an operator runs it after the service has had a customer for a while:
//! their order decided (a card greeting them by name), a thank-you e-mail written to the outbox
//! folder, a bad event of theirs set aside for the DLQ, their unsubscribe by link and a bounce
//! of their address told to the shop. Then every byte of every file under `data/` (the SQLite
//! file, its WAL and shared memory, the lock, the key, the e-mails) is searched for their name,
//! address, city and postcode.

mod service_support;

use chrono::{Duration as Days, Utc};
use serde_json::{Value, json};
use service_support::*;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

const TOKEN: &str = "email-events-token";

const EMAIL: &str = "zephyrine.quillfeather@erase.example";
const FIRST: &str = "Zephyrine";
const LAST: &str = "Quillfeather";
const CITY: &str = "Xylocastra";
const POSTCODE: &str = "QX 98765";

/// The example rules without quiet hours, so that what is due goes whatever the time of day,
/// and a configuration with the provider's token for bounces.
fn workdir() -> (Workdir, String) {
    let work = Workdir::without_quiet_hours();
    let config = work.path().join("packwell.toml");
    std::fs::write(
        &config,
        format!(
            "[http]\npublic_url = \"https://packwell.shop.example\"\n\
             [[http.tokens]]\nname = \"provider\"\ntoken = \"{TOKEN}\"\n\
             [email]\npoll_ms = 100\n"
        ),
    )
    .expect("config");
    let config = config.display().to_string();
    (work, config)
}

/// The example fragrance order for `customer`, placed `hours` ago, with the given person.
fn placed(customer: &str, order: &str, person: (&str, &str, &str, &str, &str)) -> Value {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(root.join("examples/orders/fragrance-new-york.json"))
        .expect("example order");
    let mut e: Value = serde_json::from_str(&text).expect("json");
    let at = Utc::now() - Days::hours(3);
    e["event_id"] = json!(format!("placed-{order}"));
    e["occurred_at"] = json!(at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true));
    e["order"]["id"] = json!(order);
    let (email, first, last, city, postcode) = person;
    e["order"]["customer"] = json!({"id": customer, "email": email, "first_name": first, "last_name": last,
            "locale": "en-US", "time_zone": "America/New_York"});
    e["order"]["shipping"] = json!({"country": "US", "city": city, "postcode": postcode});
    e
}

/// Every file under `dir`, with its bytes.
fn files_under(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut dirs = vec![dir.to_path_buf()];
    while let Some(d) = dirs.pop() {
        for entry in std::fs::read_dir(&d).expect("read_dir").flatten() {
            let path = entry.path();
            if path.is_dir() {
                dirs.push(path);
            } else {
                out.push((path.clone(), std::fs::read(&path).expect("read")));
            }
        }
    }
    out.sort();
    out
}

/// The files whose bytes hold `needle`, compared without regard to ASCII case.
fn holding(files: &[(PathBuf, Vec<u8>)], needle: &str) -> Vec<String> {
    let needle = needle.to_ascii_lowercase().into_bytes();
    files
        .iter()
        .filter(|(_, bytes)| {
            bytes
                .to_ascii_lowercase()
                .windows(needle.len())
                .any(|w| w == needle.as_slice())
        })
        .map(|(p, _)| p.display().to_string())
        .collect()
}

fn eml_files(outbox: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    if !outbox.exists() {
        return Vec::new();
    }
    files_under(outbox)
        .into_iter()
        .filter(|(p, _)| p.extension().is_some_and(|x| x == "eml"))
        .collect()
}

fn forget(work: &Workdir, config: &str, customer: &str) -> (i32, String, String) {
    let out = Command::new(BIN)
        .args(["forget", "--customer", customer, "--config", config])
        .current_dir(work.path())
        .output()
        .expect("packwell forget");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn forget_leaves_no_byte_of_the_customer_in_any_file() {
    let broker = TestBroker::start();
    let (work, config) = workdir();
    let mut service =
        ServiceProcess::start_with_args(work.path(), &broker.addr, &[], &["--config", &config]);
    let (zoe, kept) = ("C-ERASE", "C-KEEP");
    let person = (EMAIL, FIRST, LAST, CITY, POSTCODE);
    let other = (
        "kasimir.keepwell@keep.example",
        "Kasimir",
        "Keepwell",
        "Keepton",
        "KK 11111",
    );
    // A second order of hers that the service rejects (no items): its raw event, with her
    // name and address, is set aside for the DLQ.
    let mut bad = placed(zoe, "O-ERASE-BAD", person);
    bad["event_id"] = json!("placed-bad");
    bad["order"]["items"] = json!([]);
    let events = [
        placed(zoe, "O-ERASE-1", person),
        placed(kept, "O-KEEP-1", other),
        bad,
    ];
    let messages: Vec<(Option<String>, Vec<u8>)> = events
        .iter()
        .map(|e| (customer_key(e), serde_json::to_vec(e).expect("json")))
        .collect();
    produce(&broker.addr, &messages);

    let outbox = work.path().join("data/outbox");
    wait_for("both thank-you e-mails", Duration::from_secs(60), || {
        eml_files(&outbox).len() == 2
    });
    let dlq = read_topic(&broker.addr, "orders.dlq", Duration::from_secs(30), |m| {
        !m.is_empty()
    });
    assert_eq!(dlq.len(), 1, "{}", service.log());
    // She unsubscribes with the link in her e-mail, and the provider reports a bounce.
    let hers = eml_files(&outbox)
        .into_iter()
        .find(|(_, bytes)| !holding(&[(PathBuf::new(), bytes.clone())], EMAIL).is_empty())
        .expect("her e-mail");
    let text = String::from_utf8_lossy(&hers.1).into_owned();
    let token = text
        .split("https://packwell.shop.example/u/")
        .nth(1)
        .and_then(|rest| rest.split('>').next())
        .expect("an unsubscribe link")
        .to_string();
    let (status, _) = post(
        &service.http,
        &format!("/u/{token}"),
        None,
        "List-Unsubscribe=One-Click",
    );
    assert_eq!(status, 200);
    let bounce = json!({"type": "bounce", "email": EMAIL.to_uppercase(),
        "occurred_at": Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)});
    let (status, body) = post(
        &service.http,
        "/v1/email-events",
        Some(TOKEN),
        &bounce.to_string(),
    );
    assert_eq!(status, 200, "{body}");
    let prefs = read_topic(
        &broker.addr,
        "customer-preferences",
        Duration::from_secs(30),
        |m| m.len() >= 2,
    );
    assert_eq!(prefs.len(), 2, "{prefs:?}");
    let (code, took) = service.terminate();
    assert_eq!(code, Some(0), "stopped in {took:?}: {}", service.log());

    // Before: every value is somewhere under data/ (else the search below proves nothing).
    let data = work.path().join("data");
    let before = files_under(&data);
    for needle in [EMAIL, FIRST, LAST, CITY, POSTCODE, "Kasimir"] {
        assert!(
            !holding(&before, needle).is_empty(),
            "{needle} is in no file"
        );
    }

    let (code, out, err) = forget(&work, &config, zoe);
    assert_eq!(code, 0, "{out}{err}");
    for part in [
        "erased the personal data of customer C-ERASE: 1 profile",
        "1 decision",
        "1 e-mail job",
        "1 e-mail file",
        "outbox messages",
        "store: freed space overwritten (secure_delete), the WAL emptied",
    ] {
        assert!(out.contains(part), "{part:?} not in {out}");
    }

    let after = files_under(&data);
    for needle in [EMAIL, FIRST, LAST, CITY, POSTCODE] {
        let found = holding(&after, needle);
        assert!(found.is_empty(), "{needle} is still in {found:?}");
    }
    // The other customer is untouched: their e-mail and their data stay.
    assert_eq!(eml_files(&outbox).len(), 1);
    for needle in ["kasimir.keepwell@keep.example", "Keepwell"] {
        assert!(!holding(&after, needle).is_empty(), "{needle} went too");
    }
    assert!(after.iter().any(|(p, _)| p.ends_with("packwell.db")));

    // Forgetting again finds nothing more.
    let (code, out, err) = forget(&work, &config, zoe);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, "nothing stored for customer C-ERASE\n");
}

/// A plain HTTP/1.1 POST: the status and the body.
fn post(http: &str, path: &str, token: Option<&str>, body: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(http).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let (auth, kind) = match token {
        Some(t) => (format!("Authorization: Bearer {t}\r\n"), "application/json"),
        None => (String::new(), "application/x-www-form-urlencoded"),
    };
    write!(
        s,
        "POST {path} HTTP/1.1\r\nHost: {http}\r\n{auth}Content-Type: {kind}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut text = String::new();
    let _ = s.read_to_string(&mut text);
    status_and_body(&text)
}

//! Secrets of the configuration never shown: `packwell run --check-config` and the start
//! banner and log of `packwell run` mask the store URL's password and secret parameters
//! (`?password=`, `sslpassword=`), the HTTP provider's user part and key, the SMTP password,
//! the provider's authorization value and the stations' tokens, given in a file or in
//! `PACKWELL_*` variables.

mod service_support;

use service_support::{BIN, TestBroker, Workdir};
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// Every secret below holds this, so one search finds any of them.
const SECRET: &str = "Zq9-secret";

/// `packwell run ARGS` in `dir` with only the given `PACKWELL_*` variables.
fn packwell(dir: &std::path::Path, args: &[&str], env: &[(&str, String)]) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.args(args).current_dir(dir);
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("PACKWELL_") {
            cmd.env_remove(&name);
        }
    }
    for (name, value) in env {
        cmd.env(name, value);
    }
    cmd
}

fn assert_no_secret(what: &str, text: &str) {
    assert!(
        !text.contains(SECRET) && !text.contains("Zq9"),
        "{what} shows a secret:\n{text}"
    );
}

#[test]
fn check_config_masks_every_secret_given_in_a_file() {
    let work = tempfile::tempdir().expect("tempdir");
    let config = work.path().join("packwell.toml");
    std::fs::write(
        &config,
        format!(
            r#"[store]
url = "postgres://packwell:{SECRET}1@db.example/packwell?sslmode=require&password={SECRET}2&SSLPassword={SECRET}3"
[email]
provider = "http"
http_url = "https://mailer:{SECRET}4@api.example/send?api_key={SECRET}5"
http_auth = "Bearer {SECRET}6"
smtp_username = "mailer"
smtp_password = "{SECRET}7"
[http]
public_url = "https://ops:{SECRET}8@packwell.example"
[[http.tokens]]
name = "berlin-1"
token = "{SECRET}9"
"#
        ),
    )
    .expect("config");
    let out = packwell(
        work.path(),
        &["run", "--check-config", "--config", "packwell.toml"],
        &[],
    )
    .output()
    .expect("run --check-config");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert_no_secret("stdout", &stdout);
    assert_no_secret("stderr", &stderr);
    // What is not secret is still there to check.
    for shown in [
        "postgres://packwell:********@db.example/packwell?sslmode=require&password=********&SSLPassword=********",
        "https://********@api.example/send?api_key=********",
        "smtp_username = \"mailer\"",
        "name = \"berlin-1\"",
    ] {
        assert!(stdout.contains(shown), "{shown}:\n{stdout}");
    }
}

#[test]
fn check_config_masks_secrets_given_in_the_environment() {
    let work = tempfile::tempdir().expect("tempdir");
    let out = packwell(
        work.path(),
        &["run", "--check-config"],
        &[
            (
                "PACKWELL_STORE_URL",
                format!("postgres://u@h/db?password={SECRET}"),
            ),
            ("PACKWELL_EMAIL_PROVIDER", "smtp".into()),
            ("PACKWELL_EMAIL_SMTP_HOST", "mail.example".into()),
            ("PACKWELL_EMAIL_SMTP_PASSWORD", SECRET.into()),
        ],
    )
    .output()
    .expect("run --check-config");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert_no_secret("stdout", &stdout);
    assert_no_secret("stderr", &String::from_utf8_lossy(&out.stderr));
    assert!(
        stdout.contains("postgres://u@h/db?password=********"),
        "{stdout}"
    );
}

/// A configuration error about a URL names it masked.
#[test]
fn a_bad_url_is_named_masked() {
    let work = tempfile::tempdir().expect("tempdir");
    let out = packwell(
        work.path(),
        &["run", "--check-config"],
        &[
            ("PACKWELL_EMAIL_PROVIDER", "http".into()),
            (
                "PACKWELL_EMAIL_HTTP_URL",
                format!("ftp://u:{SECRET}@api.example/?token={SECRET}"),
            ),
        ],
    )
    .output()
    .expect("run --check-config");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("[email] http_url"), "{stderr}");
    assert_no_secret("stderr", &stderr);
}

/// A database of its own on the local PostgreSQL (trust authentication: the password in the
/// URL is sent and not needed), dropped when the test ends.
struct Database(String);

impl Database {
    fn create(name: &str) -> Database {
        let db = Database(name.to_string());
        service_support::psql(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"));
        service_support::psql(&format!("CREATE DATABASE {name}"));
        db
    }
}

impl Drop for Database {
    fn drop(&mut self) {
        service_support::psql(&format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.0));
    }
}

#[test]
fn the_banner_and_the_log_of_run_show_no_secret() {
    let broker = TestBroker::start();
    let work = Workdir::new();
    let db = Database::create(&format!("pw_secrets_{}", std::process::id()));
    let log = work.path().join("run.log");
    let mut child = packwell(
        work.path(),
        &["run"],
        &[
            (
                "PACKWELL_STORE_URL",
                format!(
                    "postgres://postgres:{SECRET}1@127.0.0.1:5432/{}?password={SECRET}2&sslpassword={SECRET}3",
                    db.0
                ),
            ),
            ("PACKWELL_KAFKA_BROKERS", broker.addr.clone()),
            ("PACKWELL_KAFKA_SESSION_TIMEOUT_MS", "2000".into()),
            ("PACKWELL_HTTP_LISTEN", "127.0.0.1:0".into()),
            (
                "PACKWELL_HTTP_PUBLIC_URL",
                format!("https://packwell.example/?token={SECRET}4"),
            ),
            ("PACKWELL_EMAIL_PROVIDER", "http".into()),
            (
                "PACKWELL_EMAIL_HTTP_URL",
                format!("https://mailer:{SECRET}5@127.0.0.1:9/send?key={SECRET}6"),
            ),
            ("PACKWELL_EMAIL_HTTP_AUTH", format!("Bearer {SECRET}7")),
            ("PACKWELL_LOG", "debug".into()),
        ],
    )
    .stdout(Stdio::piped())
    .stderr(std::fs::File::create(&log).expect("log"))
    .spawn()
    .expect("packwell run");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    // The banner, up to its last line.
    let mut banner = String::new();
    while let Ok(line) = rx.recv_timeout(Duration::from_secs(60)) {
        banner.push_str(&line);
        banner.push('\n');
        if line.contains("stop it with Ctrl-C") {
            break;
        }
    }
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let status = child.wait().expect("wait");
    let rest: Vec<String> = rx.try_iter().collect();
    let stderr = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        banner.contains("stop it with Ctrl-C"),
        "no banner:\n{banner}\n{stderr}"
    );
    assert_eq!(status.code(), Some(0), "{stderr}");
    assert_no_secret("the banner", &banner);
    assert_no_secret("stdout", &rest.join("\n"));
    assert_no_secret("the log", &stderr);
    for shown in [
        "store:  postgres://postgres:********@127.0.0.1:5432/",
        "?password=********&sslpassword=********",
        "e-mails: to https://********@127.0.0.1:9/send?key=********",
    ] {
        assert!(banner.contains(shown), "{shown}:\n{banner}");
    }
}

//! Follow-up e-mails through the running service, as a shop and its e-mail provider see them:
//! events in on Kafka, e-mails out to the outbox folder, a real local SMTP server (aiosmtpd)
//! or a real local HTTP provider; bounces in over HTTP and `customer.suppressed` out on
//! Kafka; the operators' `packwell email` commands; and a crash of the service between
//! handing an e-mail over and recording it sent: sent again under the same key to the HTTP
//! provider (which de-duplicates), `unknown` and never sent again over SMTP.

mod service_support;

use chrono::{Duration as Days, Utc};
use serde_json::{Value, json};
use service_support::*;
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const TOKEN: &str = "email-events-token";

/// The example rules without quiet hours, so that what is due goes whatever the time of day.
fn workdir() -> Workdir {
    Workdir::without_quiet_hours()
}

fn config(work: &Workdir, email: &str) -> String {
    let path = work.path().join("packwell.toml");
    std::fs::write(
        &path,
        format!(
            "[http]\npublic_url = \"https://packwell.shop.example\"\n\
             [[http.tokens]]\nname = \"provider\"\ntoken = \"{TOKEN}\"\n\
             [[http.tokens]]\nname = \"berlin\"\ntoken = \"berlin-token\"\nwarehouses = [\"WH-BER\"]\n\
             [email]\npoll_ms = 100\n{email}"
        ),
    )
    .expect("config");
    path.display().to_string()
}

fn start(work: &Workdir, broker: &TestBroker, config: &str) -> ServiceProcess {
    ServiceProcess::start_with_args(work.path(), &broker.addr, &[], &["--config", config])
}

fn rfc3339(t: chrono::DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// A customer id outside the example fragrance check-in's 10% holdout.
fn treated(prefix: &str) -> String {
    (0..)
        .map(|i| format!("{prefix}-{i}"))
        .find(|c| !packwell::engine::in_holdout(c, "fragrance-check-in", 1000))
        .expect("an id")
}

/// The example fragrance order, for another customer and order, placed at `at`.
fn placed(customer: &str, order: &str, at: chrono::DateTime<Utc>) -> Value {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(root.join("examples/orders/fragrance-new-york.json"))
        .expect("example order");
    let mut e: Value = serde_json::from_str(&text).expect("json");
    e["event_id"] = json!(format!("placed-{order}"));
    e["occurred_at"] = json!(rfc3339(at));
    e["order"]["id"] = json!(order);
    e["order"]["customer"]["id"] = json!(customer);
    e["order"]["customer"]["email"] = json!(format!("{}@mail.example", customer.to_lowercase()));
    e
}

fn about(kind: &str, customer: &str, order: &str, at: chrono::DateTime<Utc>) -> Value {
    let mut e = json!({"event_id": format!("{kind}-{order}"), "type": kind, "occurred_at": rfc3339(at),
        "order_id": order, "customer_id": customer});
    if kind == "order.delivered" {
        e["delivered_at"] = json!(rfc3339(at));
    }
    e
}

fn send(broker: &TestBroker, events: &[Value]) {
    let messages: Vec<(Option<String>, Vec<u8>)> = events
        .iter()
        .map(|e| (customer_key(e), serde_json::to_vec(e).expect("json")))
        .collect();
    produce(&broker.addr, &messages);
}

/// `packwell email ARGS…` in the workdir: exit code and standard output.
fn email_cli(work: &Workdir, config: &str, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(BIN)
        .arg("email")
        .args(args)
        .args(["--config", config])
        .current_dir(work.path())
        .output()
        .expect("packwell email");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The jobs of an order, by follow-up id, as `packwell email list --format json` shows them.
fn jobs(work: &Workdir, config: &str, order: &str) -> BTreeMap<String, Value> {
    let (code, out, err) = email_cli(
        work,
        config,
        &["list", "--order", order, "--format", "json"],
    );
    assert_eq!(code, 0, "{err}");
    let rows: Vec<Value> = serde_json::from_str(&out).expect("json list");
    rows.into_iter()
        .map(|r| (r["followup_id"].as_str().unwrap_or("").to_string(), r))
        .collect()
}

fn state_of(work: &Workdir, config: &str, order: &str, followup: &str) -> String {
    let jobs = jobs(work, config, order);
    match jobs.get(followup) {
        Some(j) => match j["reason"].as_str() {
            Some(r) => format!("{} {r}", j["state"].as_str().unwrap_or("")),
            None => j["state"].as_str().unwrap_or("").to_string(),
        },
        None => "none".into(),
    }
}

/// Each e-mail of a folder of `.eml` files: its To, Subject and List-Unsubscribe headers and
/// its text part.
fn mails(dir: &Path) -> Vec<BTreeMap<&'static str, String>> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut names: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "eml"))
        .collect();
    names.sort();
    names
        .iter()
        .filter_map(|p| std::fs::read(p).ok())
        .map(|raw| {
            let m = mail_parser::MessageParser::default()
                .parse(&raw)
                .expect("an e-mail");
            let header = |name: &str| {
                m.header_raw(name)
                    .map(|v| v.trim().to_string())
                    .unwrap_or_default()
            };
            BTreeMap::from([
                ("to", header("To")),
                ("subject", m.subject().unwrap_or("").to_string()),
                ("list-unsubscribe", header("List-Unsubscribe")),
                ("list-unsubscribe-post", header("List-Unsubscribe-Post")),
                ("message-id", header("Message-ID")),
                (
                    "text",
                    m.body_text(0).map(|t| t.to_string()).unwrap_or_default(),
                ),
            ])
        })
        .collect()
}

fn post_json(http: &str, path: &str, token: &str, body: &Value) -> (u16, Value) {
    packwell::email::provider::ensure_tls_provider();
    let client = reqwest::blocking::Client::new();
    let r = client
        .post(format!("http://{http}{path}"))
        .bearer_auth(token)
        .json(body)
        .send()
        .expect("request");
    let status = r.status().as_u16();
    (status, r.json().unwrap_or(Value::Null))
}

#[test]
fn followups_are_scheduled_sent_and_cancelled_through_kafka() {
    let broker = TestBroker::start();
    let work = workdir();
    let config = config(&work, "");
    let service = start(&work, &broker, &config);
    let now = Utc::now();
    let (a, b, c, d) = (treated("A"), treated("B"), treated("C"), treated("D"));
    send(
        &broker,
        &[
            // Placed 3 h ago: the thank-you was due an hour ago, and goes now.
            placed(&a, "O-A", now - Days::hours(3)),
            // Placed 5 days ago and delivered 4 days ago less a few seconds: the fragrance
            // check-in is due in seconds; the thank-you is past its 3 days and expires.
            placed(&b, "O-B", now - Days::days(5)),
            about(
                "order.delivered",
                &b,
                "O-B",
                now - Days::days(4) + Days::seconds(4),
            ),
            // The same for C, whose order then comes back: its check-in is cancelled.
            placed(&c, "O-C", now - Days::days(5)),
            about(
                "order.delivered",
                &c,
                "O-C",
                now - Days::days(4) + Days::seconds(6),
            ),
            about("order.returned", &c, "O-C", now),
            // Placed now: the thank-you is due in 2 h (an operator cancels it below).
            placed(&d, "O-D", now),
        ],
    );
    let outbox = work.path().join("data/outbox");
    wait_for(
        "the thank-you and the check-in",
        Duration::from_secs(60),
        || mails(&outbox).len() >= 2,
    );
    // C's check-in would be due 2 s after B's. Once it has ended (cancelled: a job that has
    // ended is never claimed again) the mails sent are all there will be; had it gone out
    // first, it would have ended `sent`.
    wait_for("C's check-in to end", Duration::from_secs(60), || {
        state_of(&work, &config, "O-C", "fragrance-check-in").starts_with("skipped")
            || state_of(&work, &config, "O-C", "fragrance-check-in") == "sent"
    });
    let sent = mails(&outbox);
    let subjects: Vec<(&str, &str)> = sent
        .iter()
        .map(|m| (m["to"].as_str(), m["subject"].as_str()))
        .collect();
    let to = |c: &str| format!("{}@mail.example", c.to_lowercase());
    assert_eq!(sent.len(), 2, "{subjects:?}\n{}", service.log());
    assert!(
        subjects
            .iter()
            .any(|(t, s)| t.contains(&to(&a)) && s.starts_with("Thank you for your order")),
        "{subjects:?}"
    );
    assert!(
        subjects
            .iter()
            .any(|(t, s)| t.contains(&to(&b)) && s.contains("how does your new fragrance wear")),
        "{subjects:?}"
    );
    for m in &sent {
        assert!(
            m["list-unsubscribe"].starts_with("<https://packwell.shop.example/u/"),
            "{m:?}"
        );
        assert_eq!(m["list-unsubscribe-post"], "List-Unsubscribe=One-Click");
        assert!(m["text"].contains("Unsubscribe"), "{m:?}");
    }
    assert_eq!(
        state_of(&work, &config, "O-A", "order-confirmation-thanks"),
        "sent"
    );
    assert_eq!(
        state_of(&work, &config, "O-B", "fragrance-check-in"),
        "sent"
    );
    assert_eq!(
        state_of(&work, &config, "O-B", "order-confirmation-thanks"),
        "skipped expired"
    );
    assert_eq!(
        state_of(&work, &config, "O-C", "fragrance-check-in"),
        "skipped cancelled"
    );
    assert_eq!(
        state_of(&work, &config, "O-D", "order-confirmation-thanks"),
        "pending"
    );
    let (_, metrics) = service.get("/metrics");
    assert_eq!(
        metric(&metrics, "packwell_emails_sent_total"),
        2.0,
        "{metrics}"
    );
    assert!(
        metric(&metrics, "packwell_emails_scheduled_total") >= 6.0,
        "{metrics}"
    );
    assert!(
        metrics.contains("packwell_emails_skipped_total{reason=\"expired\"}"),
        "{metrics}"
    );
    assert!(
        metric(&metrics, "packwell_email_send_seconds_count") >= 2.0,
        "{metrics}"
    );

    // Operators: cancel D's pending thank-you; a second cancel changes nothing (exit 1).
    let job_d = "O-D/order-confirmation-thanks";
    let (code, out, err) = email_cli(&work, &config, &["cancel", job_d]);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(
        state_of(&work, &config, "O-D", "order-confirmation-thanks"),
        "skipped cancelled"
    );
    let (code, _, err) = email_cli(&work, &config, &["cancel", job_d]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("nothing changed"), "{err}");
    let (code, _, err) = email_cli(
        &work,
        &config,
        &["cancel", "O-none/order-confirmation-thanks"],
    );
    assert_eq!(code, 2, "{err}");
    let (code, _, err) = email_cli(&work, &config, &["resend", "no-slash"]);
    assert_eq!(code, 2, "{err}");
    // Resend A's thank-you: it goes again, under a new key (a second file).
    let (code, out, err) = email_cli(&work, &config, &["resend", "O-A/order-confirmation-thanks"]);
    assert_eq!(code, 0, "{out}{err}");
    wait_for("the resent thank-you", Duration::from_secs(30), || {
        mails(&outbox).len() == 3
    });
    let ids: std::collections::BTreeSet<String> = mails(&outbox)
        .iter()
        .map(|m| m["message-id"].clone())
        .collect();
    assert_eq!(ids.len(), 3, "{ids:?}");
    let (code, out, _) = email_cli(&work, &config, &["list", "--customer", &a]);
    assert_eq!(code, 0);
    assert!(
        out.contains("O-A/order-confirmation-thanks") && out.contains("sent"),
        "{out}"
    );

    // The provider reports a hard bounce of A's address: suppressed, and the shop hears of it.
    let bounce = json!({"type": "bounce", "email": to(&a).to_uppercase(), "occurred_at": rfc3339(Utc::now())});
    let (status, body) = post_json(&service.http, "/v1/email-events", TOKEN, &bounce);
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body,
        json!({"suppressed": true, "new": true, "reason": "hard_bounce", "customers": 1})
    );
    let (status, body) = post_json(&service.http, "/v1/email-events", TOKEN, &bounce);
    assert_eq!((status, body["new"].clone()), (200, json!(false)), "{body}");
    let (status, body) = post_json(&service.http, "/v1/email-events", "berlin-token", &bounce);
    assert_eq!(status, 403, "{body}");
    let (status, body) = post_json(
        &service.http,
        "/v1/email-events",
        TOKEN,
        &json!({"type": "soft", "email": "x@y", "occurred_at": "now"}),
    );
    assert_eq!(
        (status, body["error"].as_str()),
        (422, Some("invalid_request")),
        "{body}"
    );
    let prefs = read_topic(
        &broker.addr,
        "customer-preferences",
        Duration::from_secs(20),
        |m| !m.is_empty(),
    );
    let suppressed: Vec<Value> = prefs.iter().map(Consumed::json).collect();
    assert_eq!(suppressed.len(), 1, "{suppressed:?}");
    assert_eq!(suppressed[0]["type"], "customer.suppressed");
    assert_eq!(suppressed[0]["customer_id"], json!(a));
    assert_eq!(suppressed[0]["reason"], "hard_bounce");
    assert_eq!(prefs[0].key.as_deref(), Some(a.as_str()));
}

/// A local e-mail provider over HTTP: records each request's idempotency key; with `crash`,
/// the first request kills the service (SIGKILL) before it is answered. It accepts each key
/// once and answers a repeat with 200 without counting it, as a de-duplicating provider does.
struct HttpProvider {
    url: String,
    seen: Arc<Mutex<Vec<String>>>,
    accepted: Arc<Mutex<BTreeMap<String, usize>>>,
    _runtime: tokio::runtime::Runtime,
}

fn http_provider(kill: Option<Arc<Mutex<Option<u32>>>>) -> HttpProvider {
    use axum::http::HeaderMap;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let seen: Arc<Mutex<Vec<String>>> = Arc::default();
    let accepted: Arc<Mutex<BTreeMap<String, usize>>> = Arc::default();
    let (s, a) = (seen.clone(), accepted.clone());
    let handler = move |headers: HeaderMap, _body: String| {
        let (seen, accepted, kill) = (s.clone(), a.clone(), kill.clone());
        async move {
            let key = headers
                .get("idempotency-key")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string();
            seen.lock().expect("seen").push(key.clone());
            let victim = kill.as_ref().and_then(|k| k.lock().expect("pid").take());
            if let Some(pid) = victim {
                let _ = Command::new("kill")
                    .args(["-KILL", &pid.to_string()])
                    .status();
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            let mut accepted = accepted.lock().expect("accepted");
            let n = accepted.entry(key).or_default();
            if *n == 0 {
                *n = 1;
            }
            "{\"id\":\"accepted\"}"
        }
    };
    let app = axum::Router::new().route("/send", axum::routing::post(handler));
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .expect("listen");
    let addr = listener.local_addr().expect("addr");
    runtime.spawn(async move { axum::serve(listener, app).await });
    HttpProvider {
        url: format!("http://{addr}/send"),
        seen,
        accepted,
        _runtime: runtime,
    }
}

#[test]
fn a_crash_mid_send_is_sent_again_under_the_same_key_to_an_http_provider() {
    let broker = TestBroker::start();
    let work = workdir();
    let pid: Arc<Mutex<Option<u32>>> = Arc::default();
    let provider = http_provider(Some(pid.clone()));
    let config = config(
        &work,
        &format!(
            "provider = \"http\"\nhttp_url = \"{}\"\ntimeout_ms = 1000\n",
            provider.url
        ),
    );
    let mut service = start(&work, &broker, &config);
    *pid.lock().expect("pid") = Some(service.child.id());
    let a = treated("A");
    send(&broker, &[placed(&a, "O-A", Utc::now() - Days::hours(3))]);
    wait_for("the crash", Duration::from_secs(60), || {
        matches!(service.child.try_wait(), Ok(Some(_)))
    });
    assert_eq!(provider.seen.lock().expect("seen").len(), 1);
    assert_eq!(
        state_of(&work, &config, "O-A", "order-confirmation-thanks"),
        "sending"
    );
    // Started again, the service finds the hand-over unfinished once its lease (2 × the
    // timeout + 3 s) has run out, and sends it again under the same key.
    service.kill();
    let service = start(&work, &broker, &config);
    wait_for("the second hand-over", Duration::from_secs(60), || {
        state_of(&work, &config, "O-A", "order-confirmation-thanks") == "sent"
    });
    let seen = provider.seen.lock().expect("seen").clone();
    assert_eq!(seen.len(), 2, "{seen:?}\n{}", service.log());
    assert_eq!(seen[0], seen[1], "the same idempotency key");
    assert_eq!(
        *provider.accepted.lock().expect("accepted"),
        BTreeMap::from([(seen[0].clone(), 1)]),
        "accepted once"
    );
}

/// The Python of the project's tools folder, with aiosmtpd (`scripts/test-tools.sh`).
fn smtp_python() -> Option<PathBuf> {
    test_tools_or_skip("aiosmtpd", |bin| {
        Command::new(bin.join("python"))
            .args(["-c", "import aiosmtpd"])
            .status()
            .is_ok_and(|s| s.success())
    })
    .map(|bin| bin.join("python"))
}

/// The SMTP server of `tests/support/smtp_sink.py`, stopped when dropped.
struct SmtpSink {
    child: Child,
    port: u16,
    spool: PathBuf,
}

impl SmtpSink {
    /// None when aiosmtpd is not installed (the test is skipped, see [`smtp_python`]).
    fn start(spool: &Path, kill_pid_file: Option<&Path>) -> Option<SmtpSink> {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/smtp_sink.py");
        let mut cmd = Command::new(smtp_python()?);
        cmd.arg(script).arg("--spool").arg(spool);
        if let Some(f) = kill_pid_file {
            cmd.arg("--kill-pid-file").arg(f);
        }
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("the SMTP server");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("its first line");
        let port = line
            .trim()
            .strip_prefix("listening ")
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("unexpected {line:?}"));
        Some(SmtpSink {
            child,
            port,
            spool: spool.to_path_buf(),
        })
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        if let Some(mut stdin) = self.child.stdin.take() {
            let _ = stdin.flush();
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn smtp_config(work: &Workdir, port: u16) -> String {
    config(
        work,
        &format!(
            "provider = \"smtp\"\nsmtp_host = \"127.0.0.1\"\nsmtp_port = {port}\nsmtp_tls = \"none\"\ntimeout_ms = 1000\n"
        ),
    )
}

#[test]
fn smtp_delivery_to_a_local_server() {
    let broker = TestBroker::start();
    let work = workdir();
    let Some(sink) = SmtpSink::start(&work.path().join("spool"), None) else {
        return;
    };
    let config = smtp_config(&work, sink.port);
    let service = start(&work, &broker, &config);
    let a = treated("A");
    send(&broker, &[placed(&a, "O-A", Utc::now() - Days::hours(3))]);
    wait_for(
        "the e-mail at the SMTP server",
        Duration::from_secs(60),
        || !mails(&sink.spool).is_empty(),
    );
    let got = mails(&sink.spool);
    assert_eq!(got.len(), 1, "{}", service.log());
    assert!(
        got[0]["to"].contains(&format!("{}@mail.example", a.to_lowercase())),
        "{got:?}"
    );
    assert!(
        got[0]["subject"].starts_with("Thank you for your order"),
        "{got:?}"
    );
    assert!(got[0]["list-unsubscribe"].starts_with("<https://packwell.shop.example/u/"));
    assert!(
        got[0]["text"].contains("Cedar & Fig Eau de Parfum"),
        "{got:?}"
    );
    wait_for("the job recorded sent", Duration::from_secs(10), || {
        state_of(&work, &config, "O-A", "order-confirmation-thanks") == "sent"
    });
}

#[test]
fn a_crash_mid_send_over_smtp_ends_unknown_and_is_not_sent_again() {
    let broker = TestBroker::start();
    let work = workdir();
    let pid_file = work.path().join("service.pid");
    let Some(sink) = SmtpSink::start(&work.path().join("spool"), Some(&pid_file)) else {
        return;
    };
    let config = smtp_config(&work, sink.port);
    let mut service = start(&work, &broker, &config);
    std::fs::write(&pid_file, service.child.id().to_string()).expect("pid file");
    let a = treated("A");
    send(&broker, &[placed(&a, "O-A", Utc::now() - Days::hours(3))]);
    wait_for("the crash", Duration::from_secs(60), || {
        matches!(service.child.try_wait(), Ok(Some(_)))
    });
    assert_eq!(mails(&sink.spool).len(), 1, "the server has the message");
    assert_eq!(
        state_of(&work, &config, "O-A", "order-confirmation-thanks"),
        "sending"
    );
    service.kill();
    let service = start(&work, &broker, &config);
    wait_for("the job to end unknown", Duration::from_secs(60), || {
        state_of(&work, &config, "O-A", "order-confirmation-thanks") == "unknown"
    });
    // Another customer's e-mail, due now, is sent after it: the sender has claimed due jobs
    // again since A's ended, and A's was not among them.
    let b = treated("B");
    send(&broker, &[placed(&b, "O-B", Utc::now() - Days::hours(3))]);
    wait_for("B's e-mail", Duration::from_secs(60), || {
        state_of(&work, &config, "O-B", "order-confirmation-thanks") == "sent"
    });
    let to_a = mails(&sink.spool)
        .iter()
        .filter(|m| m["to"].contains(&format!("{}@mail.example", a.to_lowercase())))
        .count();
    assert_eq!(to_a, 1, "never sent twice\n{}", service.log());
    let (_, metrics) = service.get("/metrics");
    assert_eq!(
        metric(&metrics, "packwell_emails_unknown_total"),
        1.0,
        "{metrics}"
    );
    let job = &jobs(&work, &config, "O-A")["order-confirmation-thanks"];
    assert!(
        job["detail"]
            .as_str()
            .unwrap_or("")
            .contains("not sent again"),
        "{job}"
    );
}

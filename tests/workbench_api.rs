//! The workbench's routes (CONTRACT §7) through `packwell run`, the binary, on the embedded
//! broker: token roles on every route; an edit validated with its finding at file:line:col;
//! tried on a kept order (the edited decision beside the current one, with the explain trace);
//! backtested in the background with figures equal to `packwell backtest --from-store` on the
//! same store; saved into a git work tree (a commit by the token's name with the message, the
//! service's rules version then the one answered); two saves of the same version racing (one
//! wins, the other gets 412); and "save as shadow".

mod service_support;

use reqwest::blocking::{Client, RequestBuilder};
use serde_json::{Value, json};
use service_support::*;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

const MARKETER: &str = "marketer-token";
const STATION: &str = "station-token";
const ADMIN: &str = "admin-token";
/// A marketer limited to one warehouse.
const BERLIN_MARKETER: &str = "berlin-marketer-token";
const RULES: &str = "rules/30-rules.toml";

fn config(dir: &Path) -> String {
    let path = dir.join("packwell.toml");
    std::fs::write(
        &path,
        format!(
            r#"
[[http.tokens]]
name = "ana-marketing"
token = "{MARKETER}"
role = "marketer"

[[http.tokens]]
name = "berlin-station"
token = "{STATION}"
warehouses = ["WH-BER"]

[[http.tokens]]
name = "ops"
token = "{ADMIN}"

[[http.tokens]]
name = "berlin-marketing"
token = "{BERLIN_MARKETER}"
role = "marketer"
warehouses = ["WH-BER"]
"#
        ),
    )
    .expect("config");
    path.display().to_string()
}

struct Api {
    client: Client,
    base: String,
}

impl Api {
    fn new(service: &ServiceProcess) -> Api {
        packwell::email::provider::ensure_tls_provider();
        Api {
            client: Client::builder()
                .timeout(Duration::from_secs(60))
                .build()
                .expect("client"),
            base: format!("http://{}", service.http),
        }
    }
    fn request(&self, method: &str, path: &str, token: Option<&str>) -> RequestBuilder {
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let r = self.client.request(method, format!("{}{path}", self.base));
        match token {
            Some(t) => r.bearer_auth(t),
            None => r,
        }
    }
    fn json(&self, method: &str, path: &str, body: &Value) -> (u16, Value) {
        let r = self
            .request(method, path, Some(MARKETER))
            .json(body)
            .send()
            .expect("send");
        let status = r.status().as_u16();
        (status, r.json().unwrap_or(Value::Null))
    }
    /// A file's text and its entity tag.
    fn file(&self, path: &str) -> (String, String) {
        let r = self
            .request("GET", &format!("/v1/rules/files/{path}"), Some(MARKETER))
            .send()
            .expect("send");
        assert_eq!(r.status().as_u16(), 200);
        let tag = r.headers()["etag"].to_str().expect("tag").to_string();
        (r.text().expect("text"), tag)
    }
    fn save(&self, path: &str, text: &str, tag: &str, message: &str, query: &str) -> (u16, Value) {
        let r = self
            .request(
                "PUT",
                &format!("/v1/rules/files/{path}{query}"),
                Some(MARKETER),
            )
            .header("If-Match", tag)
            .header("X-Packwell-Message", message)
            .body(text.to_string())
            .send()
            .expect("send");
        let status = r.status().as_u16();
        (status, r.json().unwrap_or(Value::Null))
    }
}

#[test]
fn a_station_token_gets_403_on_every_workbench_route_and_no_token_401() {
    let broker = TestBroker::start();
    let work = Workdir::new();
    let config = config(work.path());
    let service =
        ServiceProcess::start_with_args(work.path(), &broker.addr, &[], &["--config", &config]);
    let api = Api::new(&service);
    let routes = [
        ("GET", "/v1/rules/files"),
        ("GET", "/v1/rules/files/rules/30-rules.toml"),
        ("PUT", "/v1/rules/files/rules/30-rules.toml"),
        ("POST", "/v1/rules/validate"),
        ("GET", "/v1/rules/orders"),
        ("POST", "/v1/rules/try"),
        ("POST", "/v1/rules/backtests"),
        ("GET", "/v1/rules/backtests/bt-1"),
        ("GET", "/v1/report"),
    ];
    for (method, path) in routes {
        for (token, want) in [(Some(STATION), 403), (None, 401), (Some("wrong"), 401)] {
            let r = api
                .request(method, path, token)
                .json(&json!({ "files": {} }))
                .send()
                .expect("send");
            assert_eq!(r.status().as_u16(), want, "{method} {path} with {token:?}");
            let body: Value = r.json().expect("a JSON error");
            assert!(body["message"].is_string(), "{body}");
        }
    }
    // The marketer reads files and the report, but not the admins' e-mail events.
    for path in ["/v1/rules/files", "/v1/report"] {
        let r = api
            .request("GET", path, Some(MARKETER))
            .send()
            .expect("send");
        assert_eq!(r.status().as_u16(), 200, "{path}");
    }
    let r = api
        .request("POST", "/v1/email-events", Some(MARKETER))
        .json(&json!({"type": "bounce", "email": "a@b.example", "occurred_at": "2026-11-20T10:00:00Z"}))
        .send()
        .expect("send");
    assert_eq!(r.status().as_u16(), 403);
    let r = api
        .request("GET", "/v1/rules/files", Some(ADMIN))
        .send()
        .expect("send");
    assert_eq!(
        r.status().as_u16(),
        200,
        "a token without role or warehouses is an admin"
    );
    // The page and its editor are served without a token.
    let page = api.request("GET", "/workbench", None).send().expect("page");
    assert_eq!(page.status().as_u16(), 200);
    assert!(page.text().expect("html").contains("<html"));
    let js = api
        .request("GET", "/workbench/editor.js", None)
        .send()
        .expect("js");
    assert_eq!(js.status().as_u16(), 200);
    assert!(
        js.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/javascript")
    );
}

/// The 1-based line of the first occurrence of `needle` in `text`.
fn line_of(text: &str, needle: &str) -> usize {
    let at = text
        .find(needle)
        .unwrap_or_else(|| panic!("{needle:?} not found"));
    text[..at].matches('\n').count() + 1
}

fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .current_dir(dir)
        .args(args)
        .output()
        .expect("git");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn an_edit_is_validated_tried_backtested_like_the_cli_and_saved_into_git() {
    let broker = TestBroker::start();
    let work = Workdir::new();
    let dir = work.path();
    git(dir, &["init", "--quiet"]);
    git(dir, &["add", "rules", "templates"]);
    git(
        dir,
        &[
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@example.com",
            "commit",
            "--quiet",
            "-m",
            "the example rules",
        ],
    );
    let config = config(dir);
    let service = ServiceProcess::start_with_args(dir, &broker.addr, &[], &["--config", &config]);
    let api = Api::new(&service);

    // A month and a half of the example history, decided by the service and kept.
    let events: Vec<Value> = history().into_iter().take(6_000).collect();
    let keyed: Vec<(Option<String>, Vec<u8>)> = events
        .iter()
        .map(|e| (customer_key(e), serde_json::to_vec(e).expect("json")))
        .collect();
    produce(&broker.addr, &keyed);
    wait_for("every event consumed", Duration::from_secs(180), || {
        metric(&service.get("/metrics").1, "packwell_events_consumed_total") >= events.len() as f64
    });

    // An error is found at its line and column; the fix validates.
    let (text, tag) = api.file(RULES);
    let broken = text.replacen("give = [\"welcome-note\"", "give = [\"welcome-nte\"", 1);
    let (status, v) = api.json(
        "POST",
        "/v1/rules/validate",
        &json!({ "files": { RULES: broken } }),
    );
    assert_eq!(status, 200);
    assert_eq!(v["ok"], false, "{v}");
    let d = &v["diagnostics"][0];
    assert_eq!(d["file"], RULES);
    assert_eq!(d["line"], line_of(&broken, "welcome-nte"), "{d}");
    assert!(
        d["message"]
            .as_str()
            .unwrap()
            .contains("did you mean \"welcome-note\""),
        "{d}"
    );
    let segments = v["completions"]["segments"].as_array().expect("segments");
    assert!(
        !segments.is_empty()
            && v["completions"]["variables"]
                .as_array()
                .unwrap()
                .contains(&json!("order.total"))
    );

    // The edit: welcome holds out half its customers instead of a tenth.
    assert!(text.contains("holdout = \"10%\""));
    let edited = text.replacen("holdout = \"10%\"", "holdout = \"50%\"", 1);
    let files = json!({ RULES: edited });
    let (status, v) = api.json("POST", "/v1/rules/validate", &json!({ "files": files }));
    assert_eq!((status, &v["ok"]), (200, &json!(true)), "{v}");

    // The backtest, in the background, against the CLI on the same store.
    let (status, started) = api.json(
        "POST",
        "/v1/rules/backtests",
        &json!({ "files": files, "days": 30 }),
    );
    assert_eq!(status, 202, "{started}");
    let id = started["id"].as_str().expect("id").to_string();
    let mut result = Value::Null;
    wait_for("the backtest", Duration::from_secs(120), || {
        let (_, v) = api.json("GET", &format!("/v1/rules/backtests/{id}"), &Value::Null);
        assert_ne!(v["state"], "failed", "{v}");
        result = v["result"].clone();
        v["state"] == "done"
    });
    let cli = |rules: &Path| -> Value {
        let out = Command::new(BIN)
            .current_dir(dir)
            .args([
                "backtest",
                "--from-store",
                "--days",
                "30",
                "--format",
                "json",
                "--rules",
            ])
            .arg(rules)
            .args(["--templates", "templates", "--config", &config])
            .output()
            .expect("backtest");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).expect("json")
    };
    let before = cli(&dir.join("rules"));
    let edited_rules = dir.join("edited-rules");
    std::fs::create_dir_all(&edited_rules).expect("mkdir");
    for entry in std::fs::read_dir(dir.join("rules")).expect("rules") {
        let entry = entry.expect("entry");
        if entry.path().is_file() {
            std::fs::copy(entry.path(), edited_rules.join(entry.file_name())).expect("copy");
        }
    }
    std::fs::write(edited_rules.join("30-rules.toml"), &edited).expect("edited");
    let after = cli(&edited_rules);
    assert_eq!(result["orders"], before["orders"]);
    for (side, cli) in [(0, &before), (1, &after)] {
        for rule in cli["rules"].as_array().expect("rules") {
            let page = result["rules"]
                .as_array()
                .unwrap()
                .iter()
                .find(|r| r["id"] == rule["id"])
                .expect("every rule");
            assert_eq!(
                page["given"][side], rule["given"],
                "{} side {side}",
                rule["id"]
            );
            assert_eq!(
                page["held_out"][side], rule["held_out"],
                "{} side {side}",
                rule["id"]
            );
            for (currency, amount) in rule["cost"].as_object().unwrap() {
                assert_eq!(
                    &page["cost"][currency][side], amount,
                    "{} {currency}",
                    rule["id"]
                );
            }
        }
        for insert in cli["inserts"].as_array().expect("inserts") {
            let page = result["inserts"]
                .as_array()
                .unwrap()
                .iter()
                .find(|r| r["id"] == insert["id"])
                .expect("every insert");
            assert_eq!(page["given"][side], insert["given"], "{}", insert["id"]);
        }
    }
    let welcome = result["rules"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["id"] == "welcome")
        .unwrap();
    let (given, held_out) = (&welcome["given"], &welcome["held_out"]);
    assert!(given[1].as_u64() < given[0].as_u64(), "{welcome}");
    assert!(held_out[1].as_u64() > held_out[0].as_u64(), "{welcome}");
    let changed = result["changed_orders"].as_u64().expect("changed");
    assert!(changed > 0 && result["changed_customers"].as_u64().unwrap() > 0);
    let sample = result["sample"].as_array().expect("sample");
    assert_eq!(sample.len() as u64, changed.min(50));
    assert!(!result["daily"].as_array().unwrap().is_empty());

    // Try it on an order whose parcel the edit changes.
    let order_id = sample[0]["order_id"].as_str().expect("order id");
    let (status, tried) = api.json(
        "POST",
        "/v1/rules/try",
        &json!({ "files": files, "order_id": order_id }),
    );
    assert_eq!(status, 200, "{tried}");
    assert_eq!(tried["changed"], true, "{tried}");
    let rules_of = |side: &str| -> Vec<String> {
        tried[side]["decision"]["inserts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["rule_id"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(
        rules_of("current").contains(&"welcome".to_string()),
        !rules_of("edited").contains(&"welcome".to_string()),
        "{tried}"
    );
    let explain = &tried["edited"]["decision"]["explain"]["rules"];
    assert!(
        explain
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["id"] == "welcome"),
        "{tried}"
    );
    let (status, _) = api.json(
        "POST",
        "/v1/rules/try",
        &json!({ "files": {}, "order_id": "O-NOT-THERE" }),
    );
    assert_eq!(status, 404);
    let (status, v) = api.json(
        "POST",
        "/v1/rules/try",
        &json!({ "files": { RULES: broken }, "order_id": order_id }),
    );
    assert_eq!(status, 422);
    assert!(
        v["diagnostics"].as_array().is_some_and(|d| !d.is_empty()),
        "{v}"
    );

    // An invalid save is refused with the findings; the file on disk is unchanged.
    use std::os::unix::fs::PermissionsExt;
    let mode = |path: &Path| std::fs::metadata(path).expect("file").permissions().mode() & 0o777;
    let mode_before = mode(&dir.join(RULES));
    let (status, v) = api.save(RULES, &broken, &tag, "broken", "");
    assert_eq!(status, 422, "{v}");
    assert_eq!(api.file(RULES).0, text);

    // Two saves of the same version race: one wins, the other is told.
    let racing = edited.replacen("holdout = \"50%\"", "holdout = \"40%\"", 1);
    let answers: Vec<(u16, Value)> = std::thread::scope(|s| {
        let a = s.spawn(|| api.save(RULES, &edited, &tag, "Welcome: hold out half", ""));
        let b = s.spawn(|| api.save(RULES, &racing, &tag, "Welcome: hold out 40%", ""));
        vec![a.join().unwrap(), b.join().unwrap()]
    });
    let mut statuses: Vec<u16> = answers.iter().map(|a| a.0).collect();
    statuses.sort();
    assert_eq!(statuses, [200, 412], "{answers:?}");
    let (saved, refused) = if answers[0].0 == 200 {
        (&answers[0].1, &answers[1].1)
    } else {
        (&answers[1].1, &answers[0].1)
    };
    assert_eq!(refused["error"], "precondition_failed");
    assert_eq!(
        refused["etag"], saved["etag"],
        "the loser is told the version now"
    );
    assert_eq!(
        mode(&dir.join(RULES)),
        mode_before,
        "a save keeps the file's permissions"
    );
    let (on_disk, now_tag) = api.file(RULES);
    assert_eq!(json!(now_tag), saved["etag"]);
    assert!(on_disk == edited || on_disk == racing);

    // The commit: the token's name as author, the message as subject.
    assert_eq!(git(dir, &["log", "-1", "--format=%an"]), "ana-marketing");
    let subject = git(dir, &["log", "-1", "--format=%s"]);
    assert!(subject.starts_with("Welcome: hold out"), "{subject}");
    assert_eq!(saved["commit"], json!(git(dir, &["rev-parse", "HEAD"])));
    // The service reloads: its rules version becomes the one answered.
    let version = saved["rules_version"]
        .as_str()
        .expect("version")
        .to_string();
    wait_for(
        "the service's rules version",
        Duration::from_secs(30),
        || {
            let (_, body) = service.get("/readyz");
            serde_json::from_str::<Value>(&body)
                .is_ok_and(|v| v["rules"]["version"] == version.as_str())
        },
    );

    // Save as shadow: the rule the edit changes is recorded, not given.
    let (text, tag) = api.file(RULES);
    let shorter = text.replacen("cooldown = \"90d\"", "cooldown = \"61d\"", 1);
    let changed_rule = shorter[..shorter.find("cooldown = \"61d\"").unwrap()]
        .rsplit("id = \"")
        .next()
        .and_then(|r| r.split('"').next())
        .unwrap()
        .to_string();
    let (status, v) = api.save(
        RULES,
        &shorter,
        &tag,
        "Try a shorter cooldown",
        "?mode=shadow",
    );
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["shadowed"], json!([changed_rule]));
    let saved_text = std::fs::read_to_string(dir.join(RULES)).expect("saved");
    let table = saved_text
        .split("[[rule]]")
        .find(|t| t.contains(&format!("id = \"{changed_rule}\"")))
        .unwrap();
    assert!(table.contains("mode = \"shadow\""), "{table}");
    assert_eq!(
        saved_text.matches("mode = \"shadow\"").count(),
        text.matches("mode = \"shadow\"").count() + 1
    );
}

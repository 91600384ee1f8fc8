//! The marketers' page at `/workbench`, in a real browser: headless Chromium driven over the
//! DevTools protocol against `packwell run`, whose store holds a month of the example history
//! and whose rules folder is a git work tree. A marketer opens the rules, adds a rule with a
//! mistake and sees it underlined on the line `packwell validate` names, fixes it, tries it on
//! a kept order and sees the parcel change, backtests it and sees the same per-rule figures as
//! `packwell backtest --from-store` with the current and the edited rules, saves it and sees
//! the service's rules version change and the commit carry the token's name and the message;
//! a save racing another is told, and the file reloaded. Each step is left as a screenshot,
//! `target/test-artifacts/workbench-*.png`.
//!
//! Needs a Chromium: `PACKWELL_CHROMIUM`, else `chromium`, `chromium-browser` or
//! `google-chrome` on PATH. Without one the test says it was skipped, unless
//! `PACKWELL_REQUIRE_TOOLS=1` (as in CI), where a missing browser is a failure.

mod browser_support;
mod service_support;

use browser_support::*;
use headless_chrome::Tab;
use headless_chrome::browser::tab::ModifierKey;
use serde_json::Value;
use service_support::*;
use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

const TOKEN_NAME: &str = "maria";
const MARKETER_TOKEN: &str = "marketer-token";
const RULES_FILE: &str = "rules/30-rules.toml";
/// Days of history the test keeps in the store, and the backtest's window inside them (so
/// the window has history before it).
const STORE_DAYS: i64 = 31;
const BACKTEST_DAYS: u32 = 14;
const VIEWPORT: (u32, u32) = (1280, 900);

/// The rule the marketer adds, first with an insert id that does not exist (line 4 of it).
const NEW_RULE: [&str; 5] = [
    "[[rule]]",
    "id = \"candle-for-everyone\"",
    "when = \"true\"",
    "priority = 200",
    "give = [\"birthday-candle\"]",
];
const WRONG_TAIL: &str = "\"birthday-candle\"]";
const RIGHT_TAIL: &str = "\"birthday-gift\"]";
const MESSAGE: &str = "A candle in every parcel this month";
/// The order the marketer tries the edit on: decided by the service (the imported month
/// decided nothing), an hour after the month's last order, by the same customer.
const TRIED_ORDER: &str = "O-WORKBENCH-1";

#[test]
fn a_marketer_edits_tries_backtests_and_saves_a_rule() {
    let Some(chromium) = chromium_or_skip() else {
        return;
    };
    let work = Workdir::new();
    let original = std::fs::read_to_string(work.path().join(RULES_FILE)).expect("rules file");
    // The folder as it was, for the CLI's "current rules" backtest after the page saved.
    let current = tempfile::tempdir().expect("tempdir");
    copy_folder(work.path(), current.path());
    make_git_work_tree(work.path());
    let last_order = import_history(work.path());

    let config = work.path().join("packwell.toml");
    std::fs::write(
        &config,
        format!(
            "[[http.tokens]]\nname = \"{TOKEN_NAME}\"\ntoken = \"{MARKETER_TOKEN}\"\nrole = \"marketer\"\n"
        ),
    )
    .expect("write config");
    let broker = TestBroker::start();
    let service = ServiceProcess::start_with_args(
        work.path(),
        &broker.addr,
        &[],
        &["--config", config.to_str().expect("utf-8 path")],
    );
    let order = order_an_hour_later(&last_order);
    produce(
        &broker.addr,
        &[(customer_key(&order), order.to_string().into_bytes())],
    );
    wait_for("the order decided", Duration::from_secs(60), || {
        let (status, _) = authorized_get(&service, &format!("/v1/orders/{TRIED_ORDER}/inserts"));
        status == 200
    });
    let version_before = rules_version(&service);

    let (_browser, tab) = launch(chromium, VIEWPORT);
    // Waits go by the page's elements and state (see station_page.rs for why).
    tab.navigate_to(&format!("http://{}/workbench", service.http))
        .expect("open /workbench");
    wait_for_page(
        &tab,
        "the page listening",
        "document.body?.dataset.ready === 'true'",
    );
    type_into(&tab, "#token", MARKETER_TOKEN);
    tab.press_key("Enter").expect("Enter");
    let file_button = format!("#files button[data-path=\"{RULES_FILE}\"]");
    tab.wait_for_element(&file_button)
        .expect("the file list")
        .click()
        .expect("open the rules file");
    wait_for_page(
        &tab,
        "the file open and valid",
        &format!(
            "document.getElementById('open-path').textContent === '{RULES_FILE}' \
             && !!document.querySelector('#diagnostics li.ok')"
        ),
    );

    // The new rule, typed at the end of the file, names an insert that does not exist; the page
    // shows what `packwell validate` finds in that text, once the last keystroke is validated.
    // Each line is typed after an Enter at the end: the text gains no final line break.
    let wrong = format!("{original}\n{}", NEW_RULE.join("\n"));
    let (line, col, message) = first_cli_finding(work.path(), &wrong);
    add_lines_at_end(&tab, &NEW_RULE);
    assert_eq!(editor_text(&tab), wrong);
    wait_for_page(
        &tab,
        "the mistake listed",
        &format!(
            "document.getElementById('diagnostics').textContent.includes('{RULES_FILE}:{line}:{col} ')"
        ),
    );
    let listed = text_of(&tab, "#diagnostics");
    assert!(
        listed.contains(&format!("{RULES_FILE}:{line}:{col}")) && listed.contains(&message),
        "the page lists {listed:?}, packwell validate {RULES_FILE}:{line}:{col}: {message}"
    );
    assert_eq!(
        underlined_lines(&tab),
        vec![line],
        "the underline is on the line packwell validate names"
    );
    assert_eq!(eval(&tab, "document.getElementById('save').disabled"), true);
    screenshot(&tab, "workbench-1-mistake.png");

    // Fixed: the last line's insert id retyped.
    for _ in WRONG_TAIL.chars() {
        tab.press_key("Backspace").expect("Backspace");
    }
    tab.send_character(RIGHT_TAIL).expect("type");
    wait_for_page(
        &tab,
        "the findings cleared",
        "!document.querySelector('.cm-lintRange-error') && !!document.querySelector('#diagnostics li.ok') \
         && !document.getElementById('save').disabled",
    );
    let edited = format!("{original}\n{}", with_right_insert().join("\n"));
    assert_eq!(editor_text(&tab), edited);

    // Try it on a kept order: the new rule's candle is added to its parcel.
    tab.wait_for_element(&format!("#try-orders tr[data-order-id=\"{TRIED_ORDER}\"]"))
        .expect("the order among the recent ones")
        .click()
        .expect("try the order");
    wait_for_page(
        &tab,
        "the decision of both rules",
        "!!document.querySelector('#try-edited')",
    );
    assert_eq!(
        eval(
            &tab,
            "document.getElementById('try-result').dataset.changed"
        ),
        "true"
    );
    assert_eq!(
        eval(
            &tab,
            "document.querySelectorAll('#try-edited li[data-rule-id=\"candle-for-everyone\"][data-insert-id=\"birthday-gift\"][data-change=added]').length"
        ),
        1,
        "{}",
        text_of(&tab, "#try-result")
    );
    assert_eq!(
        eval(
            &tab,
            "document.querySelectorAll('#try-current li[data-rule-id=\"candle-for-everyone\"]').length"
        ),
        0
    );
    screenshot(&tab, "workbench-2-try.png");

    // The backtest over the last days of the store's month, before and after.
    eval(
        &tab,
        &format!("document.getElementById('bt-days').value = '{BACKTEST_DAYS}'"),
    );
    tab.find_element("#bt-run")
        .expect("backtest button")
        .click()
        .expect("run the backtest");
    wait_for_page_within(
        &tab,
        "the backtest's result",
        "!!document.querySelector('#bt-rules')",
        Duration::from_secs(180),
    );
    let page_given = given_on_page(&tab);
    screenshot(&tab, "workbench-3-backtest.png");

    // Saved with a message: the service reloads the new rules, and git has the commit.
    type_into(&tab, "#message", MESSAGE);
    tab.find_element("#save")
        .expect("save button")
        .click()
        .expect("save");
    wait_for_page(
        &tab,
        "the save confirmed",
        "document.getElementById('save-message').dataset.state === 'ok'",
    );
    screenshot(&tab, "workbench-4-saved.png");
    assert_eq!(
        std::fs::read_to_string(work.path().join(RULES_FILE)).expect("saved file"),
        edited
    );
    wait_for(
        "the service on the saved rules",
        Duration::from_secs(30),
        || {
            let version = rules_version(&service);
            version != version_before && readyz_version(&service) == version
        },
    );
    let version_after = rules_version(&service);
    assert!(text_of(&tab, "#save-message").contains(&version_after));
    wait_for_page(
        &tab,
        "the page showing the rules version in force",
        &format!("document.getElementById('version').dataset.rulesVersion === '{version_after}'"),
    );
    let commit = git(work.path(), &["log", "-1", "--format=%an%n%s"]);
    assert_eq!(commit.trim_end(), format!("{TOKEN_NAME}\n{MESSAGE}"));
    let head = git(work.path(), &["rev-parse", "HEAD"]);
    let shown = text_of(&tab, "#save-message");
    assert!(shown.contains(&head.trim()[..12]), "{shown:?} names {head}");

    // The page's figures are the CLI's, rule by rule, with the current and the edited rules.
    let before = cli_given(work.path(), &current.path().join("rules"));
    let after = cli_given(work.path(), &work.path().join("rules"));
    let ids: std::collections::BTreeSet<&String> = before.keys().chain(after.keys()).collect();
    for id in ids {
        let expected = (
            before.get(id).copied().unwrap_or(0),
            after.get(id).copied().unwrap_or(0),
        );
        assert_eq!(
            page_given.get(id),
            Some(&expected),
            "rule {id}: {page_given:?}"
        );
    }
    assert!(
        after.get("candle-for-everyone").is_some_and(|n| *n > 0),
        "{after:?}"
    );

    // Someone else saves the file meanwhile: this page's save is refused and says so.
    std::fs::write(
        work.path().join(RULES_FILE),
        format!("{edited}# tidied up elsewhere\n"),
    )
    .expect("write the file behind the page's back");
    add_lines_at_end(&tab, &["# and a second thought"]);
    type_into(&tab, "#message", "A second thought");
    wait_for_page(
        &tab,
        "save possible again",
        "!document.getElementById('save').disabled",
    );
    tab.find_element("#save")
        .expect("save button")
        .click()
        .expect("save");
    wait_for_page(
        &tab,
        "the conflict told",
        "document.getElementById('save-message').dataset.conflict === 'true'",
    );
    assert!(text_of(&tab, "#save-message").contains("Someone saved this file since you opened it"));
    screenshot(&tab, "workbench-5-conflict.png");
    tab.find_element("#reload-conflict")
        .expect("reload button")
        .click()
        .expect("reload");
    wait_for_page(
        &tab,
        "the newer file shown",
        "document.getElementById('editor').packwellEditor.getDoc().includes('# tidied up elsewhere')",
    );
}

fn with_right_insert() -> Vec<String> {
    NEW_RULE
        .iter()
        .map(|l| l.replace(WRONG_TAIL, RIGHT_TAIL))
        .collect()
}

/// Clicks into the editor, goes to the end of the text and types `lines`, each on a new line.
fn add_lines_at_end(tab: &Tab, lines: &[&str]) {
    tab.find_element(".cm-content")
        .expect("the editor")
        .click()
        .expect("click into the editor");
    tab.press_key_with_modifiers("End", Some(&[ModifierKey::Ctrl]))
        .expect("Ctrl+End");
    for line in lines {
        tab.press_key("Enter").expect("Enter");
        tab.send_character(line).expect("type a line");
    }
}

/// The whole text in the editor (it draws only the lines in view).
fn editor_text(tab: &Tab) -> String {
    match eval(
        tab,
        "document.getElementById('editor').packwellEditor.getDoc()",
    ) {
        Value::String(text) => text,
        other => panic!("no editor text: {other}"),
    }
}

/// The line numbers (1-based, in the whole text) of the drawn lines with an error underlined.
fn underlined_lines(tab: &Tab) -> Vec<usize> {
    // Arrays come back from the page as JSON text: only plain values are returned by value.
    let lines = eval(
        tab,
        "(() => { const view = document.getElementById('editor').packwellEditor.view; \
         return JSON.stringify([...document.querySelectorAll('.cm-line')] \
           .filter(l => l.querySelector('.cm-lintRange-error')) \
           .map(l => view.state.doc.lineAt(view.posAtDOM(l)).number)); })()",
    );
    serde_json::from_str(lines.as_str().expect("line numbers")).expect("line numbers")
}

/// Per rule id, given (before, after), as the page's backtest table shows it.
fn given_on_page(tab: &Tab) -> BTreeMap<String, (u64, u64)> {
    let rows = eval(
        tab,
        "JSON.stringify([...document.querySelectorAll('#bt-rules tbody tr')].map(r => \
           [r.dataset.id, Number(r.querySelector('.given-before').textContent), \
            Number(r.querySelector('.given-after').textContent)]))",
    );
    let rows: Vec<(String, u64, u64)> =
        serde_json::from_str(rows.as_str().expect("rows")).expect("rows json");
    rows.into_iter().map(|(id, b, a)| (id, (b, a))).collect()
}

/// The first finding `packwell validate` prints for the folder with `text` as the rules file:
/// (line, column, message).
fn first_cli_finding(folder: &Path, text: &str) -> (usize, usize, String) {
    let copy = tempfile::tempdir().expect("tempdir");
    copy_folder(folder, copy.path());
    std::fs::write(copy.path().join(RULES_FILE), text).expect("write");
    let out = packwell(copy.path(), &["validate", "--rules", "rules"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let stdout = String::from_utf8(out.stdout).expect("utf-8");
    let finding = stdout
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{RULES_FILE}:")))
        .unwrap_or_else(|| panic!("no finding in {RULES_FILE}: {stdout}"));
    let mut parts = finding.splitn(3, ':');
    let line = parts.next().and_then(|n| n.parse().ok()).expect("line");
    let col = parts.next().and_then(|n| n.parse().ok()).expect("column");
    (line, col, parts.next().expect("message").trim().to_string())
}

/// Per rule id, given, from `packwell backtest --from-store` on the service's store.
fn cli_given(store_dir: &Path, rules: &Path) -> BTreeMap<String, u64> {
    let days = BACKTEST_DAYS.to_string();
    let out = packwell(
        store_dir,
        &[
            "backtest",
            "--from-store",
            "--days",
            &days,
            "--format",
            "json",
            "--rules",
            rules.to_str().expect("utf-8 path"),
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let report: Value = serde_json::from_slice(&out.stdout).expect("backtest json");
    report["rules"]
        .as_array()
        .expect("rules")
        .iter()
        .map(|r| {
            (
                r["id"].as_str().expect("id").to_string(),
                r["given"].as_u64().expect("given"),
            )
        })
        .collect()
}

/// The example history's first month, imported into the folder's store (deciding nothing);
/// returns its last order.
fn import_history(folder: &Path) -> Value {
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/history.ndjson"),
    )
    .expect("examples/history.ndjson");
    let at = |line: &str| {
        let v: Value = serde_json::from_str(line).expect("a JSON line");
        chrono::DateTime::parse_from_rfc3339(v["occurred_at"].as_str().expect("occurred_at"))
            .expect("a time")
    };
    let first = at(text.lines().next().expect("a first line"));
    let month: Vec<&str> = text
        .lines()
        .take_while(|l| at(l) < first + chrono::Duration::days(STORE_DAYS))
        .collect();
    let file = folder.join("history.ndjson");
    std::fs::write(&file, month.join("\n") + "\n").expect("write the history");
    let out = packwell(folder, &["import", "--events", "history.ndjson"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    month
        .iter()
        .rev()
        .map(|l| serde_json::from_str::<Value>(l).expect("a JSON line"))
        .find(|e| e["type"] == "order.placed")
        .expect("an order in the month")
}

/// `order` again as a new order, an hour later.
fn order_an_hour_later(order: &Value) -> Value {
    let at = chrono::DateTime::parse_from_rfc3339(order["occurred_at"].as_str().expect("time"))
        .expect("a time")
        + chrono::Duration::hours(1);
    let mut later = order.clone();
    later["event_id"] = Value::from(format!("ev-{TRIED_ORDER}"));
    later["occurred_at"] = Value::from(at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true));
    later["order"]["id"] = Value::from(TRIED_ORDER);
    later
}

/// `packwell ARGS` in `dir`, with no PACKWELL_* setting of the test's environment.
fn packwell(dir: &Path, args: &[&str]) -> Output {
    let mut c = Command::new(BIN);
    c.current_dir(dir);
    for (k, _) in std::env::vars() {
        if k.starts_with("PACKWELL_") {
            c.env_remove(k);
        }
    }
    c.args(args).output().expect("run packwell")
}

/// The rules folder's parent as a git work tree with the rules committed; the store, the
/// history and the service's files are not the rules, so git ignores them.
fn make_git_work_tree(folder: &Path) {
    std::fs::write(
        folder.join(".gitignore"),
        "/data/\n/history.ndjson\n/packwell.toml\n*.log\n",
    )
    .expect("write .gitignore");
    git(folder, &["init", "-q"]);
    git(folder, &["add", "-A"]);
    git(
        folder,
        &[
            "-c",
            "user.name=setup",
            "-c",
            "user.email=setup@example.com",
            "commit",
            "-q",
            "-m",
            "the example rules",
        ],
    );
}

fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .current_dir(dir)
        .args(args)
        .output()
        .expect("run git");
    assert!(out.status.success(), "git {args:?}: {out:?}");
    String::from_utf8(out.stdout).expect("utf-8")
}

/// rules/ and templates/ of `from` copied into `to`.
fn copy_folder(from: &Path, to: &Path) {
    for part in ["rules", "templates"] {
        copy_tree(&from.join(part), &to.join(part));
    }
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read_dir") {
        let entry = entry.expect("entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("type").is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copy");
        }
    }
}

/// GET `path` with the marketer's token: status and body.
fn authorized_get(service: &ServiceProcess, path: &str) -> (u16, String) {
    packwell::email::provider::ensure_tls_provider();
    let response = reqwest::blocking::Client::new()
        .get(format!("http://{}{path}", service.http))
        .bearer_auth(MARKETER_TOKEN)
        .timeout(Duration::from_secs(10))
        .send()
        .unwrap_or_else(|e| panic!("GET {path}: {e}"));
    let status = response.status().as_u16();
    (status, response.text().expect("body"))
}

/// The service's rules version from `GET /v1/rules/files`.
fn rules_version(service: &ServiceProcess) -> String {
    let (status, body) = authorized_get(service, "/v1/rules/files");
    assert_eq!(status, 200, "{body}");
    let body: Value = serde_json::from_str(&body).expect("files json");
    body["rules_version"]
        .as_str()
        .expect("rules_version")
        .to_string()
}

/// The rules version `GET /readyz` reports.
fn readyz_version(service: &ServiceProcess) -> String {
    let (_, body) = service.get("/readyz");
    let body: Value = serde_json::from_str(&body).expect("readyz json");
    body["rules"]["version"].as_str().unwrap_or("").to_string()
}

fn screenshot(tab: &Tab, name: &str) {
    let path = artifacts_dir().join(name);
    std::fs::write(&path, whole_page_png(tab, VIEWPORT)).expect("write screenshot");
    eprintln!("screenshot: {}", path.display());
}

//! The first look, as a newcomer takes it: `packwell run --demo` decides its whole history
//! through the service, and `packwell report` then tells what worked. The history is made as
//! `examples/history.ndjson` is (examples/generate_history, a smaller one here), with effects
//! planted in it: `welcome`'s coupon and `welcome-back`'s bring customers back, the
//! `fragrance-check-in` e-mail keeps them away, the apology card does nothing; the report read
//! through the binary must find each. The shipped history itself is checked through the
//! store's own path, for what the README says of it.

#[path = "../examples/generate_history/main.rs"]
#[allow(dead_code)]
mod generate_history;
mod service_support;
#[allow(unused_macros)]
mod store_support;

use generate_history::{CHECK_IN, History, Options, WELCOME, WELCOME_BACK};
use packwell::report::{self, Report, ReportOptions, RuleEffect};
use serde_json::Value;
use service_support::{BIN, Workdir};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// `packwell ARGS` in `dir`, with no PACKWELL_* setting from the environment running the tests
/// (the demo must find `[decide] max_event_age` unset, as a newcomer's machine has it).
fn packwell(dir: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(BIN);
    c.current_dir(dir).args(args);
    for (k, _) in std::env::vars() {
        if k.starts_with("PACKWELL_") {
            c.env_remove(k);
        }
    }
    // Any free ports: tests run side by side.
    c.env("PACKWELL_KAFKA_EMBEDDED_LISTEN", "127.0.0.1:0")
        .env("PACKWELL_HTTP_LISTEN", "127.0.0.1:0");
    c
}

fn rule<'a>(r: &'a Report, id: &str) -> &'a RuleEffect {
    r.rules
        .iter()
        .find(|e| e.id == id)
        .unwrap_or_else(|| panic!("{id} is not in the report"))
}

/// The customers a rule first met in the history, in an arm, as the generator saw the engine
/// decide (0 when it met none).
fn exposed(h: &History, id: &str, arm: &str) -> u64 {
    h.exposed
        .get(&(id.to_string(), arm.to_string()))
        .copied()
        .unwrap_or(0) as u64
}

/// `packwell run --demo FILE`, its standard output read line by line.
struct Demo {
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Demo {
    fn start(dir: &Path, file: &str, env: &[(&str, &str)]) -> Demo {
        let mut child = packwell(dir, &["run", "--demo", file])
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("packwell run --demo");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Demo {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// Reads until a line contains `text`, and returns it.
    fn wait_for(&mut self, text: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if line.contains(text) {
                        return line;
                    }
                }
                Err(_) => panic!(
                    "no line with {text:?} within {timeout:?}; the demo printed:\n{}",
                    self.seen.join("\n")
                ),
            }
        }
    }

    fn terminate(&mut self) -> Option<i32> {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        None
    }
}

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn the_demo_decides_its_whole_history_and_the_report_finds_what_was_planted() {
    let work = Workdir::new();
    let rules = generate_history::load(&work.path().join("rules")).expect("the example rules");
    let options = Options {
        customers: 2000,
        months: 6,
        seed: 7,
        start: chrono::NaiveDate::from_ymd_opt(2026, 3, 1).expect("a date"),
    };
    let history = generate_history::generate(&options, &rules).expect("a history");
    std::fs::write(
        work.path().join("history.ndjson"),
        history.lines.join("\n") + "\n",
    )
    .expect("write the history");

    let mut demo = Demo::start(work.path(), "history.ndjson", &[]);
    // Not only the last week: the demo decides the months it sends.
    demo.wait_for("[decide] max_event_age = \"", Duration::from_secs(60));
    let done = demo.wait_for("the whole history is decided", Duration::from_secs(240));
    assert!(
        done.contains(&format!(
            "{} orders from {} events",
            history.orders,
            history.lines.len()
        )),
        "{done}"
    );

    // The report, from the store the demo is still running on, as the README shows it.
    let out = packwell(work.path(), &["report"]).output().expect("report");
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains(": brings customers back"), "{text}");
    assert!(text.contains(": no clear effect"), "{text}");

    let out = packwell(
        work.path(),
        &["report", "--window", "30d", "--format", "json"],
    )
    .output()
    .expect("report");
    assert_eq!(out.status.code(), Some(0));
    let r: Report = serde_json::from_slice(&out.stdout).expect("the report as JSON");
    let uplift = |id: &str| {
        let u = rule(&r, id).uplift.clone();
        u.unwrap_or_else(|| panic!("{id}: no uplift"))
    };
    // Every customer the generator saw a rule meet, the service met alike: it decided the
    // whole history, each customer's events in order, as the engine decided it there.
    for id in [WELCOME, WELCOME_BACK, CHECK_IN] {
        let e = rule(&r, id);
        assert_eq!(
            e.treated + e.held_out + e.in_window,
            exposed(&history, id, "treated") + exposed(&history, id, "held_out"),
            "{id}"
        );
    }
    // Green: the coupons bring customers back.
    for id in [WELCOME, WELCOME_BACK] {
        let u = uplift(id);
        assert!(u.low > 0.0, "{id}: {u:?}");
    }
    // Red: the check-in e-mail keeps them away.
    let u = uplift(CHECK_IN);
    assert!(u.high < 0.0, "{CHECK_IN}: {u:?}");
    // Grey: nothing was planted for the apology card; its interval holds zero. (Not the
    // sample, also grey: who gets its few vials depends on how the partitions race.)
    let u = uplift("detractor-apology");
    assert!(u.low < 0.0 && 0.0 < u.high, "detractor-apology: {u:?}");
    // The experiment: the report names the best of welcome's variants, note-and-coupon,
    // ahead of note (the generator planted the coupon's effect on that variant alone, by the
    // engine's own draw), and the card alone does no better than the held out.
    let welcome = rule(&r, WELCOME);
    assert_eq!(welcome.best_variant.as_deref(), Some("note-and-coupon"));
    let card = welcome
        .variants
        .iter()
        .find(|v| v.id == "note")
        .expect("note");
    let u = card.uplift.as_ref().expect("note against its held out");
    assert!(u.low < 0.0 && 0.0 < u.high, "note: {u:?}");
    let out = packwell(work.path(), &["report", "--window", "30d"])
        .output()
        .expect("report");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("note vs note-and-coupon: -"), "{text}");
    assert!(text.contains(": note-and-coupon is better"), "{text}");
    assert!(
        text.contains("best variant       note-and-coupon"),
        "{text}"
    );

    assert_eq!(demo.terminate(), Some(0));

    // Sent again, the same events would all be set aside as conflicting repeats: the demo
    // says so and starts nothing.
    let out = packwell(work.path(), &["run", "--demo", "history.ndjson"])
        .output()
        .expect("run --demo again");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("already holds decisions"), "{stderr}");
}

/// A configured `[decide] max_event_age` is the user's: the demo keeps it, says so, and only
/// the orders within it are decided.
#[test]
fn a_configured_max_event_age_is_kept_by_the_demo() {
    let work = Workdir::new();
    let order = |id: &str, customer: &str, at: &str| {
        format!(
            r#"{{"event_id":"e-{id}","type":"order.placed","occurred_at":"{at}","order":{{"id":"{id}","customer":{{"id":"{customer}","email":"{customer}@example.com","first_name":"Ana"}},"currency":"EUR","total":"20.00","items":[{{"sku":"B1","name":"Book","category":"books","quantity":1,"unit_price":"20.00"}}],"shipping":{{"country":"DE"}},"warehouse":"WH-BER"}}}}"#
        )
    };
    // Forty days apart: retimed, the first is forty days old, past the 7 days configured.
    let lines = [
        order("O-1", "C-1", "2026-01-01T10:00:00Z"),
        order("O-2", "C-2", "2026-02-10T10:00:00Z"),
    ];
    std::fs::write(work.path().join("two.ndjson"), lines.join("\n") + "\n").expect("write");
    let mut demo = Demo::start(
        work.path(),
        "two.ndjson",
        &[("PACKWELL_DECIDE_MAX_EVENT_AGE", "7d")],
    );
    let feed = demo.wait_for("feed it:", Duration::from_secs(60));
    assert!(
        feed.contains("(2 events over 41 days)")
            && feed.contains("orders older than [decide] max_event_age = \"7d\" (as configured)"),
        "{feed}"
    );
    let done = demo.wait_for("the whole history is decided", Duration::from_secs(60));
    assert!(done.contains(": 1 order from 2 events"), "{done}");
    assert_eq!(demo.terminate(), Some(0));
}

/// The shipped history, decided through the store's own path as the service decides it (each
/// customer's events in order): the effects the README says the demo's report shows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shipped_history_shows_what_the_readme_says() {
    use packwell::store::{DecideEnv, SqliteStore, Store};
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let rules = generate_history::load(&root.join("rules")).expect("the example rules");
    let env = DecideEnv {
        rules: std::sync::Arc::new(rules),
        key: packwell::coupon::CouponKey::from_bytes(vec![7; 32]),
        shop: Default::default(),
    };
    let text = std::fs::read_to_string(root.join("examples/history.ndjson")).expect("history");
    let events: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    let store = SqliteStore::open(":memory:").await.expect("a store");
    for chunk in events.chunks(1000) {
        let report = store
            .apply_batch(&store_support::batch(chunk), &env)
            .await
            .expect("applied");
        assert_eq!(report.rejected, 0);
    }
    for window_days in [90, 30] {
        let options = ReportOptions {
            window_days,
            ..Default::default()
        };
        let r = report::build(&store, Some(&env.rules), options)
            .await
            .expect("a report");
        let verdict = |id: &str| {
            let u = rule(&r, id).uplift.clone();
            let u = u.unwrap_or_else(|| panic!("{window_days}d {id}: no uplift"));
            if u.low > 0.0 {
                "green"
            } else if u.high < 0.0 {
                "red"
            } else {
                "grey"
            }
        };
        for (id, expected) in [
            (WELCOME, "green"),
            (WELCOME_BACK, "green"),
            (CHECK_IN, "red"),
            ("fragrance-sample", "grey"),
            ("detractor-apology", "grey"),
        ] {
            assert_eq!(verdict(id), expected, "{window_days}d {id}");
        }
        // Over 30 days, enough customers are compared in each group (100) for every planted
        // effect and the sample: no warning that they are too few. And the README quotes
        // what the report prints.
        if window_days == 30 {
            for id in [WELCOME, WELCOME_BACK, CHECK_IN, "fragrance-sample"] {
                let e = rule(&r, id);
                assert!(e.warning.is_none(), "{id}: {:?}", e.warning);
            }
            let text = report::text::render(&r);
            for line in readme_excerpt() {
                assert!(text.contains(&line), "README: {line:?} is not in\n{text}");
            }
        }
    }
}

/// The lines the README quotes from `packwell report --window 30d` on the demo.
fn readme_excerpt() -> Vec<String> {
    let readme = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md"))
        .expect("README.md");
    let after = readme
        .split_once("From `packwell report --window 30d`:")
        .expect("README: the demo's report excerpt")
        .1;
    let block = after.split("```").nth(1).expect("a fenced block");
    let lines: Vec<String> = block
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(str::to_string)
        .collect();
    assert!(lines.len() >= 9, "{lines:?}");
    lines
}

//! `packwell import` and `packwell forget` through the binary, on a SQLite store in a scratch
//! folder (issue 4, "Tests that must exist"): bad lines are reported and the rest is loaded;
//! an import killed midway and run again gives the same store as a clean one; importing again
//! changes nothing; `forget` leaves no e-mail address or name behind.

use packwell::profile::Profile;
use packwell::store::{self, Store};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_packwell");

fn rules_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("rules")
}

/// The first `n` lines of the example history.
fn example_lines(n: usize) -> Vec<String> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/history.ndjson");
    let text = std::fs::read_to_string(&path).expect("examples/history.ndjson");
    let lines: Vec<String> = text.lines().take(n).map(str::to_string).collect();
    assert_eq!(
        lines.len(),
        n,
        "the example history is shorter than {n} lines"
    );
    lines
}

/// A scratch working folder; every command runs in it.
struct Scratch {
    dir: tempfile::TempDir,
}

impl Scratch {
    fn new() -> Scratch {
        Scratch {
            dir: tempfile::tempdir().expect("a temporary folder"),
        }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    fn write_lines(&self, rel: &str, lines: &[String]) -> PathBuf {
        let p = self.path(rel);
        std::fs::write(&p, lines.join("\n") + "\n").expect("write the events file");
        p
    }

    /// The URL of a SQLite store file in the folder.
    fn store(&self, name: &str) -> String {
        self.path(name).display().to_string()
    }

    /// `packwell ARGS` with `PACKWELL_STORE_URL` = `store` and no other PACKWELL_* setting.
    fn command(&self, store: &str, args: &[&str]) -> Command {
        let mut c = Command::new(BIN);
        c.current_dir(self.dir.path());
        for (k, _) in std::env::vars() {
            if k.starts_with("PACKWELL_") {
                c.env_remove(k);
            }
        }
        c.env("PACKWELL_STORE_URL", store).args(args);
        c
    }

    fn import_command(&self, store: &str, events: &str, extra: &[&str]) -> Command {
        let rules = rules_dir();
        let mut args = vec![
            "import",
            "--events",
            events,
            "--rules",
            rules.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        self.command(store, &args)
    }

    fn import(&self, store: &str, events: &str, extra: &[&str]) -> Run {
        Run::from(
            self.import_command(store, events, extra)
                .output()
                .expect("run packwell import"),
        )
    }

    fn forget(&self, store: &str, customer: &str) -> Run {
        Run::from(
            self.command(store, &["forget", "--customer", customer])
                .output()
                .expect("run packwell forget"),
        )
    }
}

struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl From<Output> for Run {
    fn from(o: Output) -> Run {
        Run {
            code: o.status.code(),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }
}

impl Run {
    fn assert_ok(&self) -> &Self {
        assert_eq!(
            self.code,
            Some(0),
            "expected exit 0\n--- stdout\n{}\n--- stderr\n{}",
            self.stdout,
            self.stderr
        );
        assert!(!self.stderr.contains("panicked"), "{}", self.stderr);
        self
    }

    fn assert_stdout_contains(&self, needle: &str) -> &Self {
        assert!(
            self.stdout.contains(needle),
            "stdout lacks {needle:?}\n--- stdout\n{}\n--- stderr\n{}",
            self.stdout,
            self.stderr
        );
        self
    }
}

/// Runs `f` on the store at `url`, opened the way the binary opens it.
fn with_store<T>(url: &str, f: impl AsyncFnOnce(Arc<dyn Store>) -> T) -> T {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    rt.block_on(async {
        let store = store::open(url).await.expect("open the store");
        f(store).await
    })
}

fn profiles(url: &str, customers: &[String]) -> Vec<(String, Option<Profile>)> {
    with_store(url, async |s| {
        let mut out = Vec::new();
        for c in customers {
            out.push((c.clone(), s.profile(c).await.expect("read a profile")));
        }
        out
    })
}

fn dump(url: &str) -> String {
    with_store(url, async |s| s.dump_text().await.expect("dump the store"))
}

/// The dump's lines, sorted: the store's content without the order rows happen to be kept in.
fn sorted_lines(text: &str) -> Vec<String> {
    let mut v: Vec<String> = text.lines().map(str::to_string).collect();
    v.sort();
    v
}

fn position(url: &str, file: &Path) -> i64 {
    let source = std::fs::canonicalize(file)
        .expect("the events file")
        .display()
        .to_string();
    with_store(url, async |s| {
        s.import_position(&source).await.expect("import position")
    })
}

/// The customer ids named by the well-formed lines, each once, in first-seen order.
fn customers_of(lines: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for l in lines {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(l) else {
            continue;
        };
        let id = v
            .pointer("/order/customer/id")
            .or_else(|| v.get("customer_id"))
            .and_then(|c| c.as_str());
        if let Some(id) = id
            && !out.iter().any(|c| c == id)
        {
            out.push(id.to_string());
        }
    }
    out
}

fn placed(event: &str, order: &str, customer: (&str, &str, &str, &str), at: &str) -> String {
    let (id, email, first, last) = customer;
    json!({"event_id": event, "type": "order.placed", "occurred_at": at,
        "order": {"id": order,
            "customer": {"id": id, "email": email, "first_name": first, "last_name": last,
                "locale": "de-DE", "time_zone": "Europe/Berlin", "birthday": "1980-05-17"},
            "currency": "EUR", "total": "24.50",
            "items": [{"sku": "TE-0103", "name": "Sencha Uji, 50 g", "category": "tea",
                "quantity": 1, "unit_price": "24.50"}],
            "shipping": {"country": "DE", "city": "Berlin", "postcode": "10115"},
            "warehouse": "WH-BER", "channel": "web", "promised_delivery": "2026-07-04"}})
    .to_string()
}

fn shipped(event: &str, order: &str, customer: &str, at: &str) -> String {
    json!({"event_id": event, "type": "order.shipped", "occurred_at": at, "order_id": order,
        "customer_id": customer, "carrier": "DPD", "tracking": "1"})
    .to_string()
}

fn delivered(event: &str, order: &str, customer: &str, at: &str) -> String {
    json!({"event_id": event, "type": "order.delivered", "occurred_at": at, "order_id": order,
        "customer_id": customer, "delivered_at": at})
    .to_string()
}

const ANNA: (&str, &str, &str, &str) = ("C-A", "anna@example.com", "Anna", "Arndt");
const BORIS: (&str, &str, &str, &str) = ("C-B", "boris@example.com", "Boris", "Brandt");

// ---------------------------------------------------------------------------------------------

#[test]
fn bad_lines_are_reported_by_number_and_the_rest_is_loaded() {
    let s = Scratch::new();
    let lines = vec![
        placed("e1", "O-1", ANNA, "2026-07-01T10:00:00Z"),
        placed("e2", "O-2", BORIS, "2026-07-01T11:00:00Z"),
        // 3: cut short
        r#"{"event_id":"e3","type":"order.placed","order":{"id":"O-9""#.to_string(),
        placed("e4", "O-3", ANNA, "2026-07-02T10:00:00Z"),
        shipped("e5", "O-1", "C-A", "2026-07-02T12:00:00Z"),
        // 6: a total that is not an amount
        placed("e6", "O-8", BORIS, "2026-07-02T13:00:00Z").replace("\"24.50\",\"items\"", "\"lots\",\"items\""),
        placed("e7", "O-4", BORIS, "2026-07-03T10:00:00Z"),
        String::new(),
        // 9: a type nobody knows
        r#"{"event_id":"e9","type":"order.teleported","occurred_at":"2026-07-03T11:00:00Z","customer_id":"C-A"}"#.to_string(),
        delivered("e10", "O-1", "C-A", "2026-07-04T10:00:00Z"),
        placed("e11", "O-5", ANNA, "2026-07-05T10:00:00Z"),
    ];
    assert!(
        lines[5].contains("\"lots\""),
        "line 6 must be bad: {}",
        lines[5]
    );
    let file = s.write_lines("history.ndjson", &lines);
    let url = s.store("store.db");
    let run = s.import(&url, "history.ndjson", &["--batch", "4"]);
    run.assert_ok()
        .assert_stdout_contains("events imported:   7")
        .assert_stdout_contains("lines rejected:    3")
        .assert_stdout_contains("history.ndjson:3: ")
        .assert_stdout_contains("history.ndjson:6: ")
        .assert_stdout_contains("history.ndjson:9: ")
        .assert_stdout_contains("customers touched: 2")
        .assert_stdout_contains("set aside");
    for good in [1, 2, 4, 5, 7, 8, 10, 11] {
        assert!(
            !run.stdout.contains(&format!("history.ndjson:{good}:")),
            "line {good} is fine:\n{}",
            run.stdout
        );
    }
    let p = profiles(&url, &["C-A".into(), "C-B".into()]);
    let anna = p[0].1.as_ref().expect("C-A is stored");
    let boris = p[1].1.as_ref().expect("C-B is stored");
    assert_eq!(anna.orders_count, 3, "{anna:?}");
    assert_eq!(boris.orders_count, 2, "{boris:?}");
    assert_eq!(anna.email.as_deref(), Some("anna@example.com"));
    assert_eq!(position(&url, &file), lines.len() as i64);
    // History decides nothing and issues no coupon.
    with_store(&url, async |st| {
        for o in ["O-1", "O-2", "O-3", "O-4", "O-5"] {
            assert!(st.decision(o).await.unwrap().is_none(), "{o} was decided");
            assert!(
                st.coupons_of_order(o).await.unwrap().is_empty(),
                "{o} has coupons"
            );
        }
        assert!(st.stock_used().await.unwrap().is_empty());
        let dlq: Vec<_> = st
            .unsent_outbox(100)
            .await
            .unwrap()
            .into_iter()
            .filter(|r| r.topic == store::TOPIC_DLQ)
            .collect();
        assert_eq!(dlq.len(), 3, "each bad line set aside once: {dlq:?}");
        assert!(
            st.unsent_outbox(100)
                .await
                .unwrap()
                .iter()
                .all(|r| r.topic == store::TOPIC_DLQ),
            "an import emits nothing but set-aside lines"
        );
    });
}

#[test]
fn an_order_known_under_another_customer_is_reported_with_its_line() {
    let s = Scratch::new();
    let lines = vec![
        placed("e1", "O-1", ANNA, "2026-07-01T10:00:00Z"),
        placed("e2", "O-1", BORIS, "2026-07-01T11:00:00Z"),
        placed("e3", "O-2", BORIS, "2026-07-01T12:00:00Z"),
    ];
    s.write_lines("h.ndjson", &lines);
    let url = s.store("store.db");
    s.import(&url, "h.ndjson", &[])
        .assert_ok()
        .assert_stdout_contains("events imported:   2")
        .assert_stdout_contains("lines rejected:    1")
        .assert_stdout_contains("h.ndjson:2: order \"O-1\" is known under another customer");
}

#[test]
fn an_import_killed_midway_and_run_again_gives_the_same_store() {
    let s = Scratch::new();
    let mut lines = example_lines(1000);
    // A few bad lines, so that set-aside copies are compared too.
    lines[123] = "{\"event_id\": \"cut".to_string();
    lines[517] = "[1, 2, 3]".to_string();
    lines[888] = lines[888].replace("\"occurred_at\":\"", "\"occurred_at\":\"yesterday ");
    let file = s.write_lines("history.ndjson", &lines);
    let total = lines.len() as i64;
    let batch = 10;

    // The reference: one clean import, in batches of another size.
    let clean = s.store("clean.db");
    s.import(&clean, "history.ndjson", &["--batch", "64"])
        .assert_ok()
        .assert_stdout_contains("lines rejected:    3");
    assert_eq!(position(&clean, &file), total);

    // Killed (SIGKILL) midway: found by trying shorter or longer waits until a kill lands
    // between the first and the last batch.
    let mut wait = Duration::from_millis(300);
    let mut attempts = Vec::new();
    let (broken, stopped_at) = loop {
        assert!(
            attempts.len() < 12,
            "no kill landed midway; (wait, lines imported) per attempt: {attempts:?}"
        );
        let url = s.store(&format!("broken-{}.db", attempts.len()));
        let mut child = s
            .import_command(&url, "history.ndjson", &["--batch", &batch.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start packwell import");
        let started = Instant::now();
        while started.elapsed() < wait {
            if child.try_wait().expect("poll the import").is_some() {
                break;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        let _ = child.kill();
        let _ = child.wait();
        let at = if Path::new(&url).exists() {
            position(&url, &file)
        } else {
            0
        };
        attempts.push((wait, at));
        if at > 0 && at < total {
            break (url, at);
        }
        wait = if at == 0 { wait * 2 } else { wait / 3 };
    };
    eprintln!("(wait, lines imported) per attempt: {attempts:?}");
    assert_eq!(
        stopped_at % batch,
        0,
        "a batch is in the store whole or not at all, with its position"
    );
    let partial = profiles(&broken, &customers_of(&lines));
    assert_ne!(
        partial,
        profiles(&clean, &customers_of(&lines)),
        "the killed import had not finished"
    );

    let resumed = s.import(&broken, "history.ndjson", &["--batch", &batch.to_string()]);
    resumed.assert_ok();
    assert!(
        resumed
            .stderr
            .contains(&format!("resuming at line {}", stopped_at + 1)),
        "{}",
        resumed.stderr
    );
    assert_eq!(position(&broken, &file), total);
    let customers = customers_of(&lines);
    assert!(customers.len() > 100, "{} customers", customers.len());
    let (want, got) = (profiles(&clean, &customers), profiles(&broken, &customers));
    for ((c, w), (_, g)) in want.iter().zip(&got) {
        assert!(w.is_some(), "{c} is not in the clean store");
        assert_eq!(w, g, "customer {c}: clean import vs killed-and-resumed");
    }
    let (want, got) = (sorted_lines(&dump(&clean)), sorted_lines(&dump(&broken)));
    if want != got {
        let missing: Vec<_> = want.iter().filter(|l| !got.contains(l)).take(5).collect();
        let extra: Vec<_> = got.iter().filter(|l| !want.contains(l)).take(5).collect();
        panic!(
            "the stores differ ({} vs {} rows of text)\nonly in the clean one: {missing:#?}\nonly in the resumed one: {extra:#?}",
            want.len(),
            got.len()
        );
    }
}

#[test]
fn importing_a_file_again_changes_nothing() {
    let s = Scratch::new();
    let lines = example_lines(600);
    let file = s.write_lines("history.ndjson", &lines);
    let url = s.store("store.db");
    let first = s.import(&url, "history.ndjson", &["--batch", "100"]);
    first
        .assert_ok()
        .assert_stdout_contains(&format!("events imported:   {}", lines.len()));
    let customers = customers_of(&lines);
    let (profiles_before, dump_before) = (profiles(&url, &customers), dump(&url));

    // The same file: the store knows it is done.
    let again = s.import(&url, "history.ndjson", &["--batch", "100"]);
    again
        .assert_ok()
        .assert_stdout_contains("already imported")
        .assert_stdout_contains(&format!("all {} lines", lines.len()));
    assert_eq!(profiles(&url, &customers), profiles_before);
    assert_eq!(dump(&url), dump_before);
    assert_eq!(position(&url, &file), lines.len() as i64);

    // The same events under another name, read from the start: every event id is known.
    std::fs::copy(&file, s.path("copy.ndjson")).unwrap();
    let copy = s.import(&url, "copy.ndjson", &["--batch", "77"]);
    copy.assert_ok()
        .assert_stdout_contains("events imported:   0")
        .assert_stdout_contains(&format!("already in store:  {}", lines.len()))
        .assert_stdout_contains("customers touched: 0");
    assert_eq!(profiles(&url, &customers), profiles_before);
    // Only the record of the copy's own import is new.
    let copy_source = std::fs::canonicalize(s.path("copy.ndjson"))
        .unwrap()
        .display()
        .to_string();
    let mut after = sorted_lines(&dump(&url));
    after.retain(|l| *l != copy_source);
    assert_eq!(after, sorted_lines(&dump_before));
}

#[test]
fn forget_leaves_no_email_address_or_name_behind() {
    let s = Scratch::new();
    let zoe = (
        "C-FORGET",
        "zephyrine.quillfeather@forget.example",
        "Zephyrine",
        "Quillfeather",
    );
    let kept = (
        "C-KEEP",
        "kasimir.keepwell@keep.example",
        "Kasimir",
        "Keepwell",
    );
    let lines = vec![
        placed("f1", "O-F1", zoe, "2026-07-01T10:00:00Z"),
        placed("k1", "O-K1", kept, "2026-07-01T10:30:00Z"),
        shipped("f2", "O-F1", "C-FORGET", "2026-07-02T10:00:00Z"),
        delivered("f3", "O-F1", "C-FORGET", "2026-07-03T10:00:00Z"),
        placed("f4", "O-F2", zoe, "2026-07-10T10:00:00Z"),
        // Bad lines with their data are set aside in the store, and must go too.
        placed("f5", "O-F3", zoe, "yesterday"),
        placed("f6", "O-F4", zoe, "2026-07-11T10:00:00Z")[..150].to_string(),
    ];
    assert!(lines[6].contains("zephyrine"), "{}", lines[6]);
    s.write_lines("history.ndjson", &lines);
    let url = s.store("store.db");
    s.import(&url, "history.ndjson", &[])
        .assert_ok()
        .assert_stdout_contains("lines rejected:    2");
    let before = dump(&url).to_lowercase();
    for needle in ["zephyrine", "quillfeather", "forget.example"] {
        assert!(
            before.contains(needle),
            "the import stored {needle} (else this test proves nothing)"
        );
    }

    s.forget(&url, "C-FORGET")
        .assert_ok()
        .assert_stdout_contains("1 profile");
    let after = dump(&url).to_lowercase();
    for needle in [
        "zephyrine.quillfeather@forget.example",
        "forget.example",
        "zephyrine",
        "quillfeather",
    ] {
        let at = after
            .find(needle)
            .map(|i| &after[i.saturating_sub(200)..(i + 200).min(after.len())]);
        assert!(
            at.is_none(),
            "{needle:?} is still in the store: …{}…",
            at.unwrap_or("")
        );
    }
    // Anonymous counts stay; other customers are untouched.
    let p = profiles(&url, &["C-FORGET".into(), "C-KEEP".into()]);
    let forgotten = p[0].1.as_ref().expect("the anonymous profile stays");
    assert_eq!(forgotten.orders_count, 2);
    assert_eq!(forgotten.email, None);
    assert_eq!(
        p[1].1.as_ref().unwrap().email.as_deref(),
        Some("kasimir.keepwell@keep.example")
    );
    assert!(after.contains("kasimir"));

    // Forgetting again, or someone never stored: nothing to erase, still a success.
    s.forget(&url, "C-NOBODY")
        .assert_ok()
        .assert_stdout_contains("nothing stored for customer C-NOBODY");
    s.forget(&s.store("absent.db"), "C-FORGET")
        .assert_ok()
        .assert_stdout_contains("nothing stored for customer C-FORGET");
    assert!(!s.path("absent.db").exists(), "forget created a store");
}

#[test]
fn an_unreadable_file_is_exit_2() {
    let s = Scratch::new();
    let run = s.import(&s.store("store.db"), "missing.ndjson", &[]);
    assert_eq!(run.code, Some(2), "{}{}", run.stdout, run.stderr);
    assert!(run.stderr.contains("missing.ndjson"), "{}", run.stderr);
}

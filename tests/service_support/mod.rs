//! Shared by the service tests: an in-process embedded broker (so a test can take it down),
//! `packwell run` as a child process (so a test can kill it), a producer, and a reader of
//! whole topics.

#![allow(dead_code)]

use packwell::kafka::{EmbeddedBroker, fast_consumer_config, producer_config};
use rdkafka::Message;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Headers;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use serde_json::Value;
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_packwell");

/// A tokio runtime that owns the embedded broker for the test's length.
pub struct TestBroker {
    pub runtime: tokio::runtime::Runtime,
    pub broker: Option<EmbeddedBroker>,
    pub addr: String,
}

impl TestBroker {
    pub fn start() -> TestBroker {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        let broker = runtime
            .block_on(EmbeddedBroker::start("127.0.0.1:0".parse().expect("addr")))
            .expect("embedded broker");
        let addr = broker.bootstrap();
        TestBroker {
            runtime,
            broker: Some(broker),
            addr,
        }
    }

    pub fn set_available(&self, up: bool) {
        self.broker
            .as_ref()
            .expect("broker")
            .set_available(up)
            .expect("broker up/down");
    }
}

impl Drop for TestBroker {
    fn drop(&mut self) {
        if let Some(b) = self.broker.take() {
            self.runtime.block_on(b.shutdown());
        }
    }
}

/// A folder with the example rules and templates (or a copy to change), a coupon key and the
/// SQLite store, for one service.
pub struct Workdir {
    pub dir: tempfile::TempDir,
}

impl Workdir {
    pub fn new() -> Workdir {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        copy_dir(&root.join("rules"), &dir.path().join("rules"));
        copy_dir(&root.join("templates"), &dir.path().join("templates"));
        Workdir { dir }
    }

    /// As `new`, with the example rules' quiet hours taken out, so that an e-mail due goes
    /// whatever the time of day the test runs.
    pub fn without_quiet_hours() -> Workdir {
        let work = Workdir::new();
        let package = work.path().join("rules/00-package.toml");
        let text = std::fs::read_to_string(&package).expect("package rules");
        let text: String = text
            .lines()
            .filter(|l| !l.starts_with("quiet_hours"))
            .map(|l| format!("{l}\n"))
            .collect();
        std::fs::write(&package, text).expect("rules");
        work
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn sqlite_url(&self) -> String {
        self.path().join("data/packwell.db").display().to_string()
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read_dir") {
        let entry = entry.expect("entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("type").is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copy");
        }
    }
}

/// `packwell run` as a child process in `workdir`, killed when dropped.
pub struct ServiceProcess {
    pub child: Child,
    pub http: String,
    pub stderr_log: PathBuf,
}

impl ServiceProcess {
    pub fn start(workdir: &Path, brokers: &str, extra_env: &[(&str, &str)]) -> ServiceProcess {
        ServiceProcess::start_with_args(workdir, brokers, extra_env, &[])
    }

    /// As `start`, with more arguments for `packwell run` (such as `--config FILE`).
    pub fn start_with_args(
        workdir: &Path,
        brokers: &str,
        extra_env: &[(&str, &str)],
        args: &[&str],
    ) -> ServiceProcess {
        ServiceProcess::spawn(Command::new(BIN), workdir, brokers, extra_env, args)
    }

    /// As `start_with_args`, started by a shell that sets the process's umask first (such as
    /// `022`, which leaves new files readable by everyone unless a mode says otherwise).
    pub fn start_with_umask(
        workdir: &Path,
        brokers: &str,
        umask: &str,
        args: &[&str],
    ) -> ServiceProcess {
        let mut sh = Command::new("sh");
        sh.args(["-c", &format!("umask {umask} && exec \"$0\" \"$@\""), BIN]);
        ServiceProcess::spawn(sh, workdir, brokers, &[], args)
    }

    fn spawn(
        mut cmd: Command,
        workdir: &Path,
        brokers: &str,
        extra_env: &[(&str, &str)],
        args: &[&str],
    ) -> ServiceProcess {
        let log = workdir.join(format!("service-{:016x}.log", rand_u64()));
        cmd.arg("run")
            .args(args)
            .current_dir(workdir)
            .env("PACKWELL_KAFKA_BROKERS", brokers)
            .env("PACKWELL_KAFKA_SESSION_TIMEOUT_MS", "2000")
            .env("PACKWELL_KAFKA_BATCH_WAIT_MS", "20")
            .env("PACKWELL_HTTP_LISTEN", "127.0.0.1:0")
            .env("PACKWELL_DECIDE_MAX_EVENT_AGE", "3650d")
            .env("PACKWELL_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).expect("log file"));
        for (k, v) in extra_env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("start packwell run");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let first = rx
            .recv_timeout(Duration::from_secs(60))
            .unwrap_or_else(|_| {
                panic!(
                    "packwell run printed nothing within 60 s; its log:\n{}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                )
            });
        let http = first
            .strip_prefix("packwell run: serving on http://")
            .and_then(|r| r.split_whitespace().next())
            .unwrap_or_else(|| panic!("unexpected first line {first:?}"))
            .to_string();
        // Keep draining so the pipe stays open.
        std::thread::spawn(move || for _ in rx {});
        ServiceProcess {
            child,
            http,
            stderr_log: log,
        }
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, then waits for the exit; returns the exit code and how long it took.
    pub fn terminate(&mut self) -> (Option<i32>, Duration) {
        let started = Instant::now();
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return (status.code(), started.elapsed());
            }
            if Instant::now() > deadline {
                self.kill();
                return (None, started.elapsed());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.stderr_log).unwrap_or_default()
    }

    pub fn get(&self, path: &str) -> (u16, String) {
        http_get(&self.http, path)
    }
}

impl Drop for ServiceProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

fn rand_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(1);
    h.finish()
}

/// A plain HTTP/1.1 GET (no client library needed for two routes).
pub fn http_get(addr: &str, path: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect(addr) else {
        return (0, String::new());
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
    let _ = write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    );
    let mut text = String::new();
    let _ = s.read_to_string(&mut text);
    status_and_body(&text)
}

/// The status code and body of a raw HTTP/1.1 response (0 when there was none).
pub fn status_and_body(text: &str) -> (u16, String) {
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

/// Produces (key, value) pairs to `orders` and waits for every delivery.
pub fn produce(brokers: &str, messages: &[(Option<String>, Vec<u8>)]) {
    produce_to(brokers, "orders", messages);
}

/// As [`produce`], to `topic`.
pub fn produce_to(brokers: &str, topic: &str, messages: &[(Option<String>, Vec<u8>)]) {
    let producer: BaseProducer = producer_config(brokers)
        .set("message.max.bytes", "10000000")
        .create()
        .expect("producer");
    for (key, value) in messages {
        let mut record = BaseRecord::<str, [u8]>::to(topic).payload(value.as_slice());
        if let Some(k) = key {
            record = record.key(k.as_str());
        }
        let mut record = Some(record);
        while let Some(r) = record.take() {
            if let Err((e, r)) = producer.send(r) {
                assert!(
                    matches!(
                        e.rdkafka_error_code(),
                        Some(rdkafka::types::RDKafkaErrorCode::QueueFull)
                    ),
                    "{e}"
                );
                producer.poll(Duration::from_millis(50));
                record = Some(r);
            }
        }
        producer.poll(Duration::ZERO);
    }
    producer
        .flush(Duration::from_secs(60))
        .expect("every message delivered");
}

/// An event's key: the customer id the contract puts in it.
pub fn customer_key(event: &Value) -> Option<String> {
    event["order"]["customer"]["id"]
        .as_str()
        .or_else(|| event["customer_id"].as_str())
        .map(str::to_string)
}

/// One consumed message.
#[derive(Debug, Clone)]
pub struct Consumed {
    pub key: Option<String>,
    pub value: Vec<u8>,
    pub headers: BTreeMap<String, String>,
}

impl Consumed {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.value).expect("a JSON message")
    }
}

/// Reads `topic` from the start until `done` says so or `timeout` passes.
pub fn read_topic(
    brokers: &str,
    topic: &str,
    timeout: Duration,
    done: impl Fn(&[Consumed]) -> bool,
) -> Vec<Consumed> {
    let group = format!("reader-{topic}-{}", rand_u64());
    let consumer: BaseConsumer = fast_consumer_config(brokers, &group)
        .create()
        .expect("consumer");
    consumer.subscribe(&[topic]).expect("subscribe");
    let mut out = Vec::new();
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline && !done(&out) {
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(100)) {
            let mut headers = BTreeMap::new();
            if let Some(h) = m.headers() {
                for header in h.iter() {
                    headers.insert(
                        header.key.to_string(),
                        String::from_utf8_lossy(header.value.unwrap_or_default()).into_owned(),
                    );
                }
            }
            out.push(Consumed {
                key: m.key().map(|k| String::from_utf8_lossy(k).into_owned()),
                value: m.payload().unwrap_or_default().to_vec(),
                headers,
            });
        }
    }
    out
}

/// The folder of the Python tools some tests drive (`bin/` of `target/tools/venv`, or of
/// `PACKWELL_TOOLS_VENV`), when `ready` finds in it what the test needs. Tests never install
/// anything themselves (`scripts/test-tools.sh` does): when the tools are missing this says
/// the test is skipped and how to install them, and with `PACKWELL_REQUIRE_TOOLS=1` (CI) it
/// fails instead.
pub fn test_tools_or_skip(what: &str, ready: impl Fn(&Path) -> bool) -> Option<PathBuf> {
    let venv = std::env::var_os("PACKWELL_TOOLS_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target/tools/venv"));
    let bin = venv.join("bin");
    if ready(&bin) {
        return Some(bin);
    }
    let hint = format!(
        "{what} not found in {}: run scripts/test-tools.sh",
        bin.display()
    );
    assert!(
        std::env::var("PACKWELL_REQUIRE_TOOLS").as_deref() != Ok("1"),
        "{hint}"
    );
    eprintln!("skipped: {hint}");
    None
}

/// Waits until `check` holds, polling; panics with `what` after `timeout`.
pub fn wait_for(what: &str, timeout: Duration, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A metric's value from `/metrics` text (the sum over its label sets).
pub fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with([' ', '{']))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// The example history's lines (46 652 events of 5 000 customers over six months), as JSON
/// values.
pub fn history() -> Vec<Value> {
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/history.ndjson"),
    )
    .expect("history");
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).expect("json"))
        .collect()
}

/// Runs one SQL statement with `psql` on the local PostgreSQL's `test` database (for creating
/// and dropping a database of a test's own, which no pool connected to it can do).
pub fn psql(sql: &str) {
    let status = std::process::Command::new("psql")
        .args([
            "-h",
            "127.0.0.1",
            "-U",
            "postgres",
            "-d",
            "test",
            "-q",
            "-c",
            sql,
        ])
        .status()
        .expect("psql");
    assert!(status.success(), "{sql}");
}

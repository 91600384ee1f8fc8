//! The workbench's backtest end to end, not criterion: how long "what it would have done"
//! takes on the example history, as a marketer waits for it.
//!
//! The protocol: the example history (46 652 events, six months) is imported into a fresh
//! SQLite store (`packwell import`, which keeps the events as the service does); `packwell run`
//! (the release binary, a child process) serves the workbench on it. Then, `PW_BENCH_RUNS`
//! times (default 5), in turns:
//! - the baseline: `packwell backtest --from-store --days 30` (one side, the CLI), wall time;
//! - the workbench: `POST /v1/rules/backtests` with an edit (welcome holds out half instead of
//!   a tenth) and 30 days, then `GET` every 20 ms until it is done: the time from the POST to
//!   the first answer that is done. It reads the kept events from the store and replays them
//!   twice (the rules in force and the edited ones) on two threads, then compares.
//!
//! Printed: the median of each and their ratio, the figures of the last run (orders decided,
//! changed orders) so that the work is seen to be the same each time.
//!
//! Run: `cargo bench --bench workbench`.

#[path = "../tests/service_support/mod.rs"]
mod service_support;

use serde_json::{Value, json};
use service_support::{BIN, ServiceProcess, TestBroker, Workdir};
use std::process::Command;
use std::time::{Duration, Instant};

const TOKEN: &str = "bench-marketer";

fn main() {
    let runs: usize = std::env::var("PW_BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5);
    let work = Workdir::new();
    let dir = work.path();
    let config = dir.join("packwell.toml");
    std::fs::write(
        &config,
        format!("[[http.tokens]]\nname = \"bench\"\ntoken = \"{TOKEN}\"\nrole = \"marketer\"\n"),
    )
    .expect("config");
    let config = config.display().to_string();
    let history = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/history.ndjson");
    let imported = Command::new(BIN)
        .current_dir(dir)
        .args(["import", "--config", &config, "--events"])
        .arg(&history)
        .output()
        .expect("import");
    assert!(
        imported.status.success(),
        "{}",
        String::from_utf8_lossy(&imported.stderr)
    );

    let broker = TestBroker::start();
    let service = ServiceProcess::start_with_args(dir, &broker.addr, &[], &["--config", &config]);
    packwell::email::provider::ensure_tls_provider();
    let client = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(600))
        .build()
        .expect("client");
    let base = format!("http://{}", service.http);
    let rules = std::fs::read_to_string(dir.join("rules/30-rules.toml")).expect("rules");
    let edited = rules.replacen("holdout = \"10%\"", "holdout = \"50%\"", 1);
    assert_ne!(rules, edited, "the edit changes the rules");

    let (mut cli, mut workbench) = (Vec::new(), Vec::new());
    let mut last = Value::Null;
    for _ in 0..runs {
        let started = Instant::now();
        let out = Command::new(BIN)
            .current_dir(dir)
            .args([
                "backtest",
                "--from-store",
                "--days",
                "30",
                "--format",
                "json",
                "--config",
                &config,
            ])
            .output()
            .expect("backtest");
        cli.push(started.elapsed().as_secs_f64());
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );

        let started = Instant::now();
        let answer: Value = client
            .post(format!("{base}/v1/rules/backtests"))
            .bearer_auth(TOKEN)
            .json(&json!({ "files": { "rules/30-rules.toml": edited }, "days": 30 }))
            .send()
            .expect("start")
            .json()
            .expect("json");
        let id = answer["id"].as_str().expect("an id").to_string();
        loop {
            let view: Value = client
                .get(format!("{base}/v1/rules/backtests/{id}"))
                .bearer_auth(TOKEN)
                .send()
                .expect("poll")
                .json()
                .expect("json");
            match view["state"].as_str() {
                Some("running") => std::thread::sleep(Duration::from_millis(20)),
                Some("done") => {
                    last = view;
                    break;
                }
                _ => panic!("the backtest failed: {view}"),
            }
        }
        workbench.push(started.elapsed().as_secs_f64());
    }
    let result = &last["result"];
    let (cli_median, workbench_median) = (median(cli.clone()), median(workbench.clone()));
    println!(
        "workbench backtest, the example history ({} events; the last 30 days decided: {} orders; {} orders changed by the edit), {runs} runs",
        result["events"], result["orders"], result["changed_orders"]
    );
    println!(
        "  packwell backtest --from-store --days 30 (one side)  median {cli_median:>6.2} s  runs {cli:.2?}"
    );
    println!(
        "  workbench, edited against current (two sides)     median {workbench_median:>6.2} s  runs {workbench:.2?}"
    );
    println!(
        "  ratio workbench / one-side CLI: {:.2}",
        workbench_median / cli_median
    );
    drop(service);
    drop(broker);
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs.get(xs.len() / 2).copied().unwrap_or(f64::NAN)
}

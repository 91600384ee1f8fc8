//! The marketer's commands. `main.rs` parses the command line; everything here is callable
//! (and tested) without the binary. Exit codes: 0 success, 1 a finding, 2 usage or input error.

mod backtest;
mod broker;
mod coupon;
mod demo;
mod dlq;
mod email;
mod forget;
mod import;
mod ingest;
mod preview;
mod report;
pub use report::ReportFormat;
mod rule_tests;
mod run;
pub use run::DEMO_TOKEN;
mod send;
mod simulate;
mod stock;
mod validate;

pub use crate::backtest::{BacktestReport, backtest};
pub use import::ImportSummary;
pub use rule_tests::run_rule_tests;

use crate::config::Config;
use crate::coupon::CouponKey;
use crate::event::{Event, parse_event};
use crate::rules::{RuleSet, load_rules};
use clap::{Args, Parser, Subcommand, ValueEnum};
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

#[derive(Debug, Parser)]
#[command(
    name = "packwell",
    version,
    about = "Post-purchase personalization: what goes into the parcel, and the e-mails after it"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Args, Clone)]
pub struct Common {
    /// Configuration file (TOML); PACKWELL_* environment variables override it.
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
}

#[derive(Debug, Args, Clone)]
pub struct RulesArgs {
    /// The rules folder (every *.toml in it, in file-name order).
    #[arg(long, default_value = "rules", value_name = "DIR")]
    pub rules: PathBuf,
    /// The templates folder (default: `templates` beside the rules folder).
    #[arg(long, value_name = "DIR")]
    pub templates: Option<PathBuf>,
}

impl RulesArgs {
    pub fn templates_dir(&self) -> PathBuf {
        self.templates.clone().unwrap_or_else(|| {
            let parent = self
                .rules
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
                .unwrap_or(Path::new("."));
            parent.join("templates")
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check the rule files and templates; every problem as file:line:col.
    Validate(validate::ValidateArgs),
    /// Run the rule tests in rules/tests/*.toml.
    Test(rule_tests::TestArgs),
    /// Decide one order.placed event and print the decision; writes nothing.
    Simulate(simulate::SimulateArgs),
    /// Replay a history through the rules: what each rule would have given and cost. The
    /// history is an NDJSON file (--events) or the events the store keeps (--from-store).
    Backtest(backtest::BacktestArgs),
    /// Render a note or an e-mail for an order as the customer would see it (HTML).
    Preview(preview::PreviewArgs),
    /// Backfill purchase history from an NDJSON file into the store; decides nothing.
    /// Streaming and resumable: run it again after an interruption to go on where it stopped.
    Import(import::ImportArgs),
    /// The service: consume `orders`, decide, store, emit, serve HTTP, until SIGINT or SIGTERM.
    /// With no `[kafka] brokers` it starts the embedded broker on 127.0.0.1:9092.
    Run(run::RunArgs),
    /// Run only the embedded development broker (librdkafka's mock cluster, in memory) with
    /// Packwell's topics, until SIGINT or SIGTERM.
    Broker(broker::BrokerArgs),
    /// Produce the events of an NDJSON file to the `orders` topic, keyed by customer id. Lines
    /// that are not valid events are sent too (keyed by the customer id found in them, if any),
    /// for the service to put in `orders.dlq`.
    Send(send::SendArgs),
    /// Erase a customer's personal data from the store, keeping anonymous counts.
    Forget(forget::ForgetArgs),
    /// The effect of each rule and follow-up: treated against held-out customers, repeat
    /// purchases within a window, uplift with a 95% interval, cost per extra order.
    Report(report::ReportArgs),
    /// Operator control of stock counters, in the store the configuration names.
    Stock(stock::StockArgs),
    /// Operator control of issued coupons, in the store the configuration names.
    Coupon(coupon::CouponArgs),
    /// The dead-letter queue: events the service set aside in `orders.dlq`.
    Dlq(dlq::DlqArgs),
    /// Operator view and control of follow-up e-mails, in the store the configuration names.
    Email(email::EmailArgs),
    /// Only the shop webhook routes (Shopify, WooCommerce), for deployments that keep that edge
    /// apart; needs the PostgreSQL store. `ingest replay` maps a saved webhook body offline.
    Ingest(ingest::IngestArgs),
}

/// A command's failure: the exit code and what to say on stderr.
#[derive(Debug)]
pub struct Failure {
    pub code: u8,
    pub message: String,
}

impl Failure {
    pub fn finding(message: impl Into<String>) -> Self {
        Failure {
            code: 1,
            message: message.into(),
        }
    }
    pub fn usage(message: impl Into<String>) -> Self {
        Failure {
            code: 2,
            message: message.into(),
        }
    }
}

pub type CliResult = Result<(), Failure>;

pub fn run(cli: Cli) -> ExitCode {
    let result = match &cli.command {
        Command::Validate(args) => validate::run(args),
        Command::Test(args) => rule_tests::run(args),
        Command::Simulate(args) => simulate::run(args),
        Command::Backtest(args) => backtest::run(args),
        Command::Preview(args) => preview::run(args),
        Command::Import(args) => import::run(args),
        Command::Run(args) => run::run(args),
        Command::Broker(args) => broker::run(args),
        Command::Send(args) => send::run(args),
        Command::Forget(args) => forget::run(args),
        Command::Report(args) => report::run(args),
        Command::Stock(args) => stock::run(args),
        Command::Coupon(args) => coupon::run(args),
        Command::Dlq(args) => dlq::run(args),
        Command::Email(args) => email::run(args),
        Command::Ingest(args) => ingest::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            if !f.message.is_empty() {
                eprintln!("{}", f.message.trim_end());
            }
            ExitCode::from(f.code)
        }
    }
}

pub fn load_config(common: &Common) -> Result<Config, Failure> {
    Config::from_env(common.config.as_deref()).map_err(|e| Failure::usage(format!("error: {e}")))
}

/// Loads the rules for a command that decides: warnings go to stderr, errors stop it (exit 1).
pub fn load_valid_rules(args: &RulesArgs) -> Result<RuleSet, Failure> {
    let outcome = load_rules(&args.rules, &args.templates_dir());
    for w in outcome.warnings() {
        eprintln!("{w}");
    }
    match outcome.rules {
        Some(rules) => Ok(rules),
        None => {
            let errors: Vec<String> = outcome.errors().map(|e| e.to_string()).collect();
            Err(Failure::finding(format!(
                "{}\nerror: the rules are invalid ({} error{}); run `packwell validate`",
                errors.join("\n"),
                errors.len(),
                if errors.len() == 1 { "" } else { "s" }
            )))
        }
    }
}

/// A runtime for the commands that use the store (the commands themselves are synchronous).
pub fn runtime() -> Result<tokio::runtime::Runtime, Failure> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        // The e-mail sender and the station render templates on these threads, and rendering
        // recurses: its depth is bounded when templates load; this stack leaves room to spare.
        .thread_stack_size(crate::service::WORKER_STACK)
        .build()
        .map_err(|e| Failure::usage(format!("error: cannot start the async runtime: {e}")))
}

/// Who runs an operator control, for the operator log: `$USER`, else `operator`.
pub fn actor() -> String {
    std::env::var("USER")
        .ok()
        .map(|u| u.trim().to_string())
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| "operator".to_string())
}

/// Whether `url` names a SQLite file that does not exist (a PostgreSQL URL or an in-memory
/// database never does).
pub fn sqlite_file_missing(url: &str) -> bool {
    crate::store::sqlite_file(url)
        .is_some_and(|file| !file.contains(":memory:") && !Path::new(file).exists())
}

/// The store the configuration names, opened for an operator control. A SQLite file that does
/// not exist is an input error (exit 2): a control run in the wrong folder must not create an
/// empty store and change it.
pub struct ExistingStore {
    runtime: tokio::runtime::Runtime,
    store: Arc<dyn crate::store::Store>,
    shown: String,
}

impl ExistingStore {
    pub fn open(config: &Config) -> Result<Self, Failure> {
        let url = config.store_url();
        let shown = crate::config::mask_url_password(&url);
        if sqlite_file_missing(&url) {
            return Err(Failure::usage(format!(
                "error: there is no store at {shown}: run this where the service runs, or set [store] url (PACKWELL_STORE_URL)"
            )));
        }
        let runtime = runtime()?;
        let store = runtime
            .block_on(crate::store::open(&url))
            .map_err(|e| Failure::usage(format!("error: the store {shown}: {e}")))?;
        Ok(ExistingStore {
            runtime,
            store,
            shown,
        })
    }

    pub fn store(&self) -> &dyn crate::store::Store {
        &*self.store
    }

    /// The store's URL with any password masked, for messages.
    pub fn shown(&self) -> &str {
        &self.shown
    }

    pub fn runtime(&self) -> &tokio::runtime::Runtime {
        &self.runtime
    }

    /// Runs a store call; its error is exit 2 naming the store.
    pub fn block_on<T>(
        &self,
        f: impl std::future::Future<Output = Result<T, crate::store::StoreError>>,
    ) -> Result<T, Failure> {
        self.runtime
            .block_on(f)
            .map_err(|e| Failure::usage(format!("error: the store {}: {e}", self.shown)))
    }
}

/// The configured coupon key; read-only commands never create one.
pub fn read_only_key(config: &Config) -> Result<CouponKey, Failure> {
    match CouponKey::read(&config.coupons.key_file) {
        Ok(Some(k)) => Ok(k),
        Ok(None) => {
            eprintln!(
                "note: no coupon key at {}: codes are made with the fixed preview key and will differ from issued ones",
                config.coupons.key_file.display()
            );
            Ok(CouponKey::preview())
        }
        Err(e) => Err(Failure::usage(format!("error: {e}"))),
    }
}

/// Reads one event from a JSON file (exit 2 with the field on a bad one).
pub fn read_event_file(path: &Path) -> Result<Event, Failure> {
    let bytes = std::fs::read(path)
        .map_err(|e| Failure::usage(format!("error: cannot read {}: {e}", path.display())))?;
    parse_event(&bytes).map_err(|r| {
        Failure::usage(format!(
            "error: {}: {} ({})",
            path.display(),
            r.message,
            r.reason.as_str()
        ))
    })
}

/// The events of an optional `--history` file (none without one).
pub fn read_history(path: Option<&Path>) -> Result<Vec<Event>, Failure> {
    path.map(read_history_file)
        .transpose()
        .map(Option::unwrap_or_default)
}

/// Reads every event of an NDJSON file; a bad line stops with its number (exit 2).
pub fn read_history_file(path: &Path) -> Result<Vec<Event>, Failure> {
    let file = std::fs::File::open(path)
        .map_err(|e| Failure::usage(format!("error: cannot read {}: {e}", path.display())))?;
    let mut events = Vec::new();
    for (i, line) in std::io::BufReader::new(file).lines().enumerate() {
        let line =
            line.map_err(|e| Failure::usage(format!("error: {}:{}: {e}", path.display(), i + 1)))?;
        if line.trim().is_empty() {
            continue;
        }
        let event = parse_event(line.as_bytes()).map_err(|r| {
            Failure::usage(format!(
                "error: {}:{}: {} ({})",
                path.display(),
                i + 1,
                r.message,
                r.reason.as_str()
            ))
        })?;
        events.push(event);
    }
    Ok(events)
}

pub fn parse_time(s: &str) -> Result<chrono::DateTime<chrono::Utc>, Failure> {
    chrono::DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&chrono::Utc))
        .map_err(|_| {
            Failure::usage(format!(
                "error: --at {s:?}: expected an RFC 3339 time such as 2026-11-20T10:00:00Z"
            ))
        })
}

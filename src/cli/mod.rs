//! The marketer's commands. `main.rs` parses the command line; everything here is callable
//! (and tested) without the binary. Exit codes: 0 success, 1 a finding, 2 usage or input error.

mod backtest;
mod broker;
mod coupon;
mod dlq;
mod email;
mod forget;
mod import;
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

pub use backtest::{BacktestReport, backtest};
pub use import::ImportSummary;
pub use rule_tests::run_rule_tests;

use crate::config::Config;
use crate::coupon::CouponKey;
use crate::event::{Event, parse_event};
use crate::rules::{RuleSet, load_rules};
use clap::{Args, Parser, Subcommand, ValueEnum};
use std::io::BufRead;
use std::net::SocketAddr;
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
    Validate {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        rules: RulesArgs,
    },
    /// Run the rule tests in rules/tests/*.toml.
    Test {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        rules: RulesArgs,
    },
    /// Decide one order.placed event and print the decision; writes nothing.
    Simulate {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        rules: RulesArgs,
        /// An order.placed event (JSON).
        #[arg(long, value_name = "FILE")]
        order: PathBuf,
        /// Earlier events of that customer (NDJSON), replayed through the rules first.
        #[arg(long, value_name = "FILE")]
        history: Option<PathBuf>,
        /// The decision time (RFC 3339); default: the event's occurred_at.
        #[arg(long, value_name = "TIME")]
        at: Option<String>,
        #[arg(long, value_enum, default_value = "text")]
        format: Format,
        /// Also show why each segment and rule matched or not.
        #[arg(long)]
        explain: bool,
    },
    /// Replay a history through the rules: what each rule would have given and cost. The
    /// history is an NDJSON file (--events) or the events the store keeps (--from-store).
    #[command(group(clap::ArgGroup::new("history").required(true).args(["events", "from_store"])))]
    Backtest {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        rules: RulesArgs,
        /// The history (NDJSON, one event a line).
        #[arg(long, value_name = "FILE")]
        events: Option<PathBuf>,
        /// Replay the events the configured store keeps (for [store] retention) instead of a
        /// file, in the order the store applied them. The store is only read.
        #[arg(long)]
        from_store: bool,
        /// Decide only the last N days, counted back from the newest event replayed (its
        /// occurred_at); the events before them are folded into the history first, deciding
        /// nothing, as import does. Default with --from-store: 30; with --events the whole
        /// file is decided.
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=36_500))]
        days: Option<u32>,
        #[arg(long, value_enum, default_value = "text")]
        format: Format,
    },
    /// Render a note or an e-mail for an order as the customer would see it (HTML).
    Preview {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        rules: RulesArgs,
        /// A note (templates/notes/NAME.hbs) or e-mail (templates/emails/NAME/) template.
        #[arg(long, value_name = "NAME")]
        template: String,
        #[arg(long, value_name = "FILE")]
        order: PathBuf,
        #[arg(long, value_name = "FILE")]
        history: Option<PathBuf>,
        /// Where to write the HTML (default: standard output).
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
    /// Backfill purchase history from an NDJSON file into the store; decides nothing.
    /// Streaming and resumable: run it again after an interruption to go on where it stopped.
    Import {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        rules: RulesArgs,
        /// The history (NDJSON, one event a line).
        #[arg(long, value_name = "FILE")]
        events: PathBuf,
        /// Lines per transaction.
        #[arg(long, value_name = "N", default_value_t = 2000,
              value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
        batch: u32,
    },
    /// The service: consume `orders`, decide, store, emit, serve HTTP, until SIGINT or SIGTERM.
    /// With no `[kafka] brokers` it starts the embedded broker on 127.0.0.1:9092.
    Run {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        rules: RulesArgs,
        /// Print the effective configuration (secrets masked) and exit.
        #[arg(long)]
        check_config: bool,
        /// Once started, send the events of FILE (retimed so the newest happened now) and
        /// print each packing instruction as it appears: a first look, with nothing else to run.
        #[arg(long, value_name = "FILE", num_args = 0..=1, default_missing_value = "examples/history.ndjson")]
        demo: Option<PathBuf>,
    },
    /// Run only the embedded development broker (librdkafka's mock cluster, in memory) with
    /// Packwell's topics, until SIGINT or SIGTERM.
    Broker {
        #[command(flatten)]
        common: Common,
        /// The address to listen on and advertise to clients (port 0: any free port).
        #[arg(long, value_name = "ADDR", default_value = crate::kafka::DEFAULT_BROKER_ADDR)]
        listen: SocketAddr,
    },
    /// Produce the events of an NDJSON file to the `orders` topic, keyed by customer id. Lines
    /// that are not valid events are sent too (keyed by the customer id found in them, if any),
    /// for the service to put in `orders.dlq`.
    Send {
        #[command(flatten)]
        common: Common,
        /// The events (NDJSON, one event a line).
        #[arg(long, value_name = "FILE")]
        events: PathBuf,
        /// Kafka bootstrap servers (default: `[kafka] brokers`, else 127.0.0.1:9092).
        #[arg(long, value_name = "HOSTS")]
        brokers: Option<String>,
        /// Move every timestamp by the same amount so that the newest occurred_at is now.
        #[arg(long)]
        retime: bool,
    },
    /// Erase a customer's personal data from the store, keeping anonymous counts.
    Forget {
        #[command(flatten)]
        common: Common,
        /// The customer id.
        #[arg(long, value_name = "ID")]
        customer: String,
    },
    /// The effect of each rule and follow-up: treated against held-out customers, repeat
    /// purchases within a window, uplift with a 95% interval, cost per extra order.
    Report {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        rules: RulesArgs,
        /// Only customers first exposed on or after this date (YYYY-MM-DD, UTC).
        #[arg(long, value_name = "DATE")]
        since: Option<String>,
        /// How long after the exposure a repeat purchase counts (whole days: 90d, 12w).
        #[arg(long, value_name = "DURATION", default_value = "90d")]
        window: String,
        #[arg(long, value_enum, default_value = "text")]
        format: ReportFormat,
        /// Where to write the report (default: standard output).
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
    /// Operator control of stock counters, in the store the configuration names.
    Stock {
        #[command(subcommand)]
        command: StockCommand,
    },
    /// Operator control of issued coupons, in the store the configuration names.
    Coupon {
        #[command(subcommand)]
        command: CouponCommand,
    },
    /// The dead-letter queue: events the service set aside in `orders.dlq`.
    Dlq {
        #[command(subcommand)]
        command: DlqCommand,
    },
    /// Operator view and control of follow-up e-mails, in the store the configuration names.
    Email {
        #[command(subcommand)]
        command: EmailCommand,
    },
}

#[derive(Debug, Subcommand)]
pub enum EmailCommand {
    /// List e-mail jobs (newest first): id (ORDER_ID/FOLLOWUP_ID), state, due time, detail.
    List {
        #[command(flatten)]
        common: Common,
        /// Only this order's e-mails.
        #[arg(long, value_name = "ID")]
        order: Option<String>,
        /// Only this customer's e-mails.
        #[arg(long, value_name = "ID")]
        customer: Option<String>,
        /// At most this many.
        #[arg(long, value_name = "N", default_value_t = 50)]
        limit: u32,
        #[arg(long, value_enum, default_value = "text")]
        format: Format,
    },
    /// Cancel a pending or retrying e-mail: it ends skipped (`cancelled`) and is never sent.
    Cancel {
        #[command(flatten)]
        common: Common,
        /// The job: ORDER_ID/FOLLOWUP_ID.
        #[arg(value_name = "ID")]
        id: String,
    },
    /// Send a sent, failed, unknown or skipped e-mail again, now: it is checked anew
    /// (unsubscribes, suppressions, frequency cap, quiet hours) and goes under a new
    /// idempotency key; coupons it gave before stay the same.
    Resend {
        #[command(flatten)]
        common: Common,
        /// The job: ORDER_ID/FOLLOWUP_ID.
        #[arg(value_name = "ID")]
        id: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum StockCommand {
    /// Set how many of an insert remain to be given (in a warehouse, or its pool).
    ///
    /// Stock is an allocation, the insert's `stock` in the rules (read with --rules: use the
    /// rules the service runs), less what was given: setting N remaining counts
    /// `allocation - N` as given. N cannot be more than the allocation, since the service
    /// never gives more than that: to have more to give, raise `stock` in the rules (what was
    /// given stays counted). Written in one transaction with a row of the operator log.
    Set {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        rules: RulesArgs,
        /// The insert id (an `[[insert]]` with `stock` in the rules).
        #[arg(value_name = "INSERT")]
        insert: String,
        /// The warehouse, for stock counted per warehouse (`stock = { WH-BER = 300, … }`);
        /// leave it out for one pool (`stock = 500`).
        #[arg(long, value_name = "WH")]
        warehouse: Option<String>,
        /// How many remain to be given, from 0 to the allocation.
        #[arg(value_name = "N")]
        remaining: u32,
    },
}

#[derive(Debug, Subcommand)]
pub enum CouponCommand {
    /// Void an issued coupon: it can no longer be redeemed.
    ///
    /// The coupon's state becomes `voided` and its version grows by one; a `coupon.voided`
    /// message (reason `operator`) is written to the outbox in the same transaction, for the
    /// running service to send to `coupons`, with a row of the operator log. An unknown code is
    /// exit 2; a coupon already voided or redeemed is exit 1 and changes nothing.
    Void {
        #[command(flatten)]
        common: Common,
        /// The coupon code.
        #[arg(value_name = "CODE")]
        code: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum DlqCommand {
    /// Send the events set aside in `orders.dlq` back to `orders` (after a fix).
    ///
    /// Reads the DLQ rows kept in the store's outbox (sent to `orders.dlq` or not) and produces
    /// each value with its original key to `orders`, waiting for the cluster to acknowledge
    /// every one. Replaying is safe: the service skips event ids it processed before, and an
    /// event still invalid goes to `orders.dlq` again. Values cut at 512 KiB (header
    /// `packwell-truncated`) cannot be replayed and are listed by partition and offset; lines
    /// rejected by `packwell import` are listed too (import the fixed lines again). Rows
    /// removed by `[store] retention` are no longer in the store: it says so.
    Replay {
        #[command(flatten)]
        common: Common,
        /// Only events set aside at or after this time (RFC 3339, or a date: midnight UTC).
        #[arg(long, value_name = "TIME")]
        since: Option<String>,
        /// Kafka bootstrap servers (default: `[kafka] brokers`, else 127.0.0.1:9092).
        #[arg(long, value_name = "HOSTS")]
        brokers: Option<String>,
    },
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
    let result = match cli.command {
        Command::Validate { common, rules } => validate::run(&common, &rules),
        Command::Test { common, rules } => rule_tests::run(&common, &rules),
        Command::Simulate {
            common,
            rules,
            order,
            history,
            at,
            format,
            explain,
        } => simulate::run(
            &common,
            &rules,
            &order,
            history.as_deref(),
            at.as_deref(),
            format,
            explain,
        ),
        Command::Backtest {
            common,
            rules,
            events,
            from_store: _,
            days,
            format,
        } => {
            let source = match &events {
                Some(path) => backtest::Source::File(path),
                None => backtest::Source::Store,
            };
            backtest::run(&common, &rules, source, days, format)
        }
        Command::Preview {
            common,
            rules,
            template,
            order,
            history,
            out,
        } => preview::run(
            &common,
            &rules,
            &template,
            &order,
            history.as_deref(),
            out.as_deref(),
        ),
        Command::Import {
            common,
            rules,
            events,
            batch,
        } => import::run(&common, &rules, &events, batch as usize),
        Command::Forget { common, customer } => forget::run(&common, &customer),
        Command::Report {
            common,
            rules,
            since,
            window,
            format,
            out,
        } => report::run(
            &common,
            &rules,
            since.as_deref(),
            &window,
            format,
            out.as_deref(),
        ),
        Command::Run {
            common,
            rules,
            check_config,
            demo,
        } => run::run(&common, &rules, check_config, demo.as_deref()),
        // The broker reads no configuration: it is what an unconfigured `run` would start.
        Command::Broker { common: _, listen } => broker::run(listen),
        Command::Send {
            common,
            events,
            brokers,
            retime,
        } => send::run(&common, &events, brokers.as_deref(), retime),
        Command::Stock {
            command:
                StockCommand::Set {
                    common,
                    rules,
                    insert,
                    warehouse,
                    remaining,
                },
        } => stock::run(&common, &rules, &insert, warehouse.as_deref(), remaining),
        Command::Coupon {
            command: CouponCommand::Void { common, code },
        } => coupon::run(&common, &code),
        Command::Dlq {
            command:
                DlqCommand::Replay {
                    common,
                    since,
                    brokers,
                },
        } => dlq::run(&common, since.as_deref(), brokers.as_deref()),
        Command::Email { command } => match command {
            EmailCommand::List {
                common,
                order,
                customer,
                limit,
                format,
            } => email::list(
                &common,
                order.as_deref(),
                customer.as_deref(),
                limit,
                format,
            ),
            EmailCommand::Cancel { common, id } => email::cancel(&common, &id),
            EmailCommand::Resend { common, id } => email::resend(&common, &id),
        },
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

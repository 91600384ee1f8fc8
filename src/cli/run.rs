//! `packwell run`: the service, until SIGINT or SIGTERM. With no `[kafka] brokers` it starts
//! the embedded broker first and uses SQLite under `data/`.

use super::broker::StopSignals;
use super::demo::{Demo, prepare_demo, refuse_a_store_in_use, start_demo};
use super::{CliResult, Common, Failure, RulesArgs, load_config, runtime};
use crate::config::{Config, EmailProvider, mask_url_password};
use crate::kafka::EmbeddedBroker;
use crate::service::{self, Options};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;
use tokio_util::sync::CancellationToken;

/// The station token `run --demo` adds when the configuration has none.
pub const DEMO_TOKEN: &str = "demo";

#[derive(Debug, clap::Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub common: Common,
    #[command(flatten)]
    pub rules: RulesArgs,
    /// Print the effective configuration (secrets masked) and exit.
    #[arg(long)]
    pub check_config: bool,
    /// Once started, send the events of FILE (retimed so the newest happened now), decide all
    /// of it (`[decide] max_event_age` made to cover it, unless configured) and print what
    /// comes out: a first look, with nothing else to run; `packwell report` then tells what
    /// worked. Needs a store that holds no decisions yet.
    #[arg(long, value_name = "FILE", num_args = 0..=1, default_missing_value = "examples/history.ndjson")]
    pub demo: Option<PathBuf>,
}

pub fn run(args: &RunArgs) -> CliResult {
    let RunArgs {
        common,
        rules,
        check_config,
        demo,
    } = args;
    let (check_config, demo) = (*check_config, demo.as_deref());
    let mut config = load_config(common)?;
    let loopback = config.settings().http.listen.ip().is_loopback();
    if demo.is_some() && config.http.tokens.is_empty() && loopback {
        // The demo is tried on one's own machine: a known token opens the station page, on
        // a loopback address only (anyone who can reach the port would know it).
        config.http.tokens.push(crate::config::TokenConfig {
            name: "demo".into(),
            token: Some(DEMO_TOKEN.into()),
            token_sha256: None,
            warehouses: None,
            role: Some(crate::config::Role::Admin),
        });
    }
    let demo = match demo {
        Some(file) => Some(prepare_demo(file, &mut config)?),
        None => None,
    };
    if check_config {
        print!("{}", config.to_masked_toml());
        return Ok(());
    }
    for t in config.http.tokens.iter().filter(|t| t.token.is_some()) {
        if t.token.as_deref() != Some(DEMO_TOKEN) {
            tracing::warn!(
                "[[http.tokens]] {:?} is given in clear text: prefer token_sha256 = \"<hex SHA-256 of the token>\"",
                t.name
            );
        }
    }
    let begun = Instant::now();
    let shutdown_bound = config.settings().service.shutdown_timeout;
    let rt = runtime()?;
    let result = rt.block_on(async {
        let mut signals = StopSignals::install()?;
        secure_data_folder(&config);
        // One `run` per SQLite file; instances sharing PostgreSQL need no lock of their own.
        let _lock = match crate::store::sqlite_file(&config.store_url()) {
            Some(_) => Some(lock_data_dir(&data_dir(&config))?),
            None => None,
        };
        if demo.is_some() {
            refuse_a_store_in_use(&config).await?;
        }
        let (brokers, embedded) = match config.kafka.brokers.clone().filter(|b| !b.trim().is_empty()) {
            Some(b) => (b, None),
            None => {
                let listen = config.settings().kafka.embedded_listen;
                let broker = EmbeddedBroker::start(listen).await.map_err(|e| {
                    Failure::usage(format!(
                        "error: {e}\n  a broker already running there (`packwell broker`)? use it: PACKWELL_KAFKA_BROKERS={listen} packwell run"
                    ))
                })?;
                (broker.bootstrap(), Some(broker))
            }
        };
        let stop = CancellationToken::new();
        // However the service comes to stop (a signal, a failed worker), the exit is bounded.
        let stopped = stop.clone();
        tokio::spawn(async move {
            stopped.cancelled().await;
            exit_if_stuck(shutdown_bound);
        });
        let (tx, rx) = tokio::sync::oneshot::channel();
        let opts = Options {
            config: config.clone(),
            brokers: brokers.clone(),
            fast_group: embedded.is_some(),
            rules_dir: rules.rules.clone(),
            templates_dir: rules.templates_dir(),
        };
        let mut service = tokio::spawn(service::run(opts, stop.clone(), Some(tx)));
        let started = tokio::select! {
            s = rx => s.ok(),
            r = &mut service => {
                let message = match r {
                    Ok(Err(e)) => e,
                    Ok(Ok(())) => "the service stopped at start".into(),
                    Err(e) => e.to_string(),
                };
                if let Some(b) = embedded {
                    b.shutdown().await;
                }
                return Err(Failure::usage(format!("error: {message}")));
            }
        };
        if let Some(s) = &started {
            banner(&brokers, embedded.is_some(), s, begun, &config, demo.as_ref());
        }
        if let (Some(demo), Some(s)) = (&demo, &started) {
            let paced = embedded.is_some();
            start_demo(common.clone(), demo, brokers.clone(), s, paced, stop.clone());
        }
        let reason = tokio::select! {
            signal = signals.wait() => signal.to_string(),
            r = &mut service => {
                let message = match r {
                    Ok(Err(e)) => e,
                    Ok(Ok(())) => "stopped".into(),
                    Err(e) => e.to_string(),
                };
                if let Some(b) = embedded {
                    b.shutdown().await;
                }
                return Err(Failure::usage(format!("error: {message}")));
            }
        };
        let stopping = Instant::now();
        eprintln!("packwell run: {reason}, stopping (applying what was read, sending what is stored)");
        stop.cancel();
        let result = service.await;
        eprintln!("packwell run: stopped in {} ms", stopping.elapsed().as_millis());
        if let Some(b) = embedded {
            b.shutdown().await;
        }
        match result {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(Failure::usage(format!("error: {e}"))),
            Err(e) => Err(Failure::usage(format!("error: {e}"))),
        }
    });
    // Tasks still blocked somewhere (a Kafka client closing against a broker that is gone)
    // do not hold the exit.
    rt.shutdown_timeout(std::time::Duration::from_millis(500));
    result
}

/// What a newcomer needs: where everything is and how to feed it. The first line names the
/// HTTP address (tests read it from there).
fn banner(
    brokers: &str,
    embedded: bool,
    s: &service::Started,
    begun: Instant,
    config: &Config,
    demo: Option<&Demo>,
) {
    let kafka = if embedded {
        format!("{brokers} (embedded broker, in memory)")
    } else {
        brokers.to_string()
    };
    let feed = match demo {
        Some(demo) => demo.feed.clone(),
        None if embedded => {
            format!("packwell send --events examples/history.ndjson --retime --brokers {brokers}")
        }
        None => "packwell send --events examples/history.ndjson --retime".to_string(),
    };
    let e = &config.email;
    // Settings are shown masked: the banner goes to logs that many people read.
    let mask = |setting: &Option<String>| mask_url_password(setting.as_deref().unwrap_or(""));
    // The provider is told by its parsed form, its place as it was written.
    let emails = match &config.settings().email.provider {
        EmailProvider::Smtp(server) => format!(
            "by SMTP to {}:{} ({})",
            mask(&e.smtp_host),
            server.port,
            e.smtp_tls
        ),
        EmailProvider::Http(_) => format!("to {}", mask(&e.http_url)),
        EmailProvider::Outbox { dir } => format!("written to {}/ as .eml files", dir.display()),
    };
    let text = format!(
        "packwell run: serving on http://{http} (started in {ms} ms)\n\
         \x20 kafka:  {kafka}; reading `orders`, writing `packing-instructions`, `coupons`, `orders.dlq`\n\
         \x20 store:  {store}\n\
         \x20 rules:  {version}\n\
         \x20 e-mails: {emails}; `packwell email list` shows them\n\
         \x20 feed it:  {feed}\n\
         \x20 watch it: kcat -b {brokers} -C -t packing-instructions   or   curl http://{http}/metrics\n\
         \x20 stations: http://{http}/station ({stations}); the API: http://{http}/openapi.json\n\
         \x20 stop it with Ctrl-C or SIGTERM\n",
        stations = stations(config),
        http = s.http,
        ms = begun.elapsed().as_millis(),
        store = mask_url_password(&s.store),
        version = s.rules_version,
    );
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes());
    let _ = out.flush();
}

/// Which tokens the stations have, by name (never their values, except the demo's own).
fn stations(config: &Config) -> String {
    let tokens = &config.http.tokens;
    match tokens.as_slice() {
        [] => "no [http] tokens configured: every request is refused".into(),
        [only] if only.name == "demo" && only.token.as_deref() == Some(DEMO_TOKEN) => {
            format!("token {DEMO_TOKEN:?}")
        }
        _ => format!(
            "tokens: {}",
            tokens
                .iter()
                .map(|t| t.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// The data folder: where the SQLite file is, else where the coupon key is.
pub(super) fn data_dir(config: &Config) -> PathBuf {
    let url = config.store_url();
    let file = match crate::store::sqlite_file(&url) {
        Some(path) => PathBuf::from(path),
        None => config.coupons.key_file.clone(),
    };
    file.parent()
        .filter(|d| !d.as_os_str().is_empty())
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// The data folder and everything in it, the outbox folder and the coupon key: the service
/// user's alone (see `store::files`). Made so when missing; what is open to other users is
/// narrowed, and each path narrowed (or that cannot be) is named on standard error. A folder
/// that is not Packwell's own (the working folder, `/`, the home folder, a shared sticky folder
/// such as `/tmp`) is left as it is: only Packwell's files in it are narrowed.
fn secure_data_folder(config: &Config) {
    use crate::files::{create_private_dir, tighten, tighten_tree};
    let data = data_dir(config);
    let outbox = &config.email.outbox_dir;
    let mut found = Vec::new();
    if let Err(e) = create_private_dir(&data) {
        eprintln!(
            "packwell run: warning: cannot create {}: {e}",
            data.display()
        );
    }
    if dedicated(&data) {
        found.extend(tighten_tree(&data));
    } else {
        let url = config.store_url();
        if let Some(db) = crate::store::sqlite_file(&url) {
            for suffix in ["", "-wal", "-shm"] {
                found.extend(tighten(Path::new(&format!("{db}{suffix}"))));
            }
        }
        found.extend(tighten(&data.join("packwell.lock")));
    }
    if !(outbox.starts_with(&data) && dedicated(&data)) {
        if dedicated(outbox) {
            found.extend(tighten_tree(outbox));
        } else if let Ok(entries) = std::fs::read_dir(outbox) {
            for entry in entries.flatten() {
                if entry.path().extension().is_some_and(|e| e == "eml") {
                    found.extend(tighten(&entry.path()));
                }
            }
        }
    }
    if !(config.coupons.key_file.starts_with(&data) && dedicated(&data)) {
        found.extend(tighten(&config.coupons.key_file));
    }
    for f in found {
        tracing::warn!("{f}");
        eprintln!("packwell run: warning: {f}");
    }
}

/// Whether a folder is Packwell's own to narrow as a whole: not the working folder, the root,
/// the home folder or a sticky folder shared by users (`/tmp`).
fn dedicated(dir: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    let Ok(real) = std::fs::canonicalize(dir) else {
        return true; // not there yet: it is made 0700 when needed
    };
    let shared_place = real.parent().is_none()
        || std::env::current_dir()
            .is_ok_and(|cwd| std::fs::canonicalize(cwd).is_ok_and(|c| c == real))
        || std::env::var_os("HOME")
            .is_some_and(|h| std::fs::canonicalize(h).is_ok_and(|h| h == real));
    let sticky = std::fs::metadata(&real).is_ok_and(|m| m.permissions().mode() & 0o1000 != 0);
    !shared_place && !sticky
}

/// A lock file that stops a second `run` on the same data folder: two writers on one SQLite
/// file, or two relays sending the same outbox, would break the promises. The operating
/// system releases it when the process ends, however it ends.
fn lock_data_dir(dir: &Path) -> Result<std::fs::File, Failure> {
    crate::files::create_private_dir(dir)
        .map_err(|e| Failure::usage(format!("error: cannot create {}: {e}", dir.display())))?;
    let path = dir.join("packwell.lock");
    let mut file = crate::files::private_file()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(&path)
        .map_err(|e| Failure::usage(format!("error: cannot open {}: {e}", path.display())))?;
    match file.try_lock() {
        Ok(()) => {
            let _ = file.set_len(0);
            let _ = writeln!(file, "{}", std::process::id());
            Ok(file)
        }
        Err(std::fs::TryLockError::WouldBlock) => {
            let holder = std::fs::read_to_string(&path).unwrap_or_default();
            Err(Failure::usage(format!(
                "error: another `packwell run` (pid {}) is using the data folder {}; stop it first, or give this one its own folder",
                holder.trim(),
                dir.display()
            )))
        }
        Err(std::fs::TryLockError::Error(e)) => Err(Failure::usage(format!(
            "error: cannot lock {}: {e}",
            path.display()
        ))),
    }
}

/// The last guard of a bounded shutdown: every part of the service stops within
/// `[service] shutdown_timeout` on its own; should anything still hold the process a few
/// seconds past it, it exits non-zero (what was not sent is in the store for the next start).
fn exit_if_stuck(bound: std::time::Duration) {
    let _ = std::thread::Builder::new()
        .name("packwell-exit-guard".into())
        .spawn(move || {
            std::thread::sleep(bound + std::time::Duration::from_secs(5));
            eprintln!(
                "packwell run: not stopped within [service] shutdown_timeout ({} s); exiting, unsent messages stay in the store",
                bound.as_secs()
            );
            std::process::exit(1);
        });
}

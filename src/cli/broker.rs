//! `packwell broker`: only the embedded development broker, until SIGINT or SIGTERM.

use super::{CliResult, Common, Failure, runtime};
use crate::kafka::broker::TOPICS;
use crate::kafka::{BrokerError, DEFAULT_BROKER_ADDR, EmbeddedBroker};
use std::io::{ErrorKind, Write};
use std::net::SocketAddr;

#[derive(Debug, clap::Args)]
pub struct BrokerArgs {
    // Accepted like every command's, but unused: the broker reads no configuration, it is
    // what an unconfigured `run` would start.
    #[command(flatten)]
    pub common: Common,
    /// The address to listen on and advertise to clients (port 0: any free port).
    #[arg(long, value_name = "ADDR", default_value = crate::kafka::DEFAULT_BROKER_ADDR)]
    pub listen: SocketAddr,
}

pub fn run(args: &BrokerArgs) -> CliResult {
    let listen = args.listen;
    runtime()?.block_on(async {
        // Handlers first: a SIGTERM that arrives right after the address is printed must stop
        // the broker cleanly, not kill it with the default action.
        let mut stop = StopSignals::install()?;
        let broker = EmbeddedBroker::start(listen).await.map_err(|e| {
            let hint = match &e {
                BrokerError::Listen { source, .. } if source.kind() == ErrorKind::AddrInUse => {
                    "; choose another address with --listen"
                }
                _ => "",
            };
            Failure::usage(format!("error: {e}{hint}"))
        })?;
        print_banner(&broker.bootstrap());
        let signal = stop.wait().await;
        eprintln!("packwell broker: {signal}, stopping; its topics and messages are gone");
        broker.shutdown().await;
        Ok(())
    })
}

/// The first line is `packwell broker listening on ADDR` (scripts and tests read the address
/// from it, which matters with `--listen 127.0.0.1:0`); then how to use it.
fn print_banner(addr: &str) {
    let topics: Vec<String> = TOPICS
        .iter()
        .map(|(t, n)| match n {
            1 => t.to_string(),
            n => format!("{t} ({n} partitions)"),
        })
        .collect();
    let brokers_flag = if addr == DEFAULT_BROKER_ADDR {
        String::new()
    } else {
        format!(" --brokers {addr}")
    };
    let text = format!(
        "packwell broker listening on {addr}\n\
         \x20 librdkafka's mock cluster, in memory; topics: {topics}\n\
         \x20 feed it:  packwell send --events examples/history.ndjson --retime{brokers_flag}\n\
         \x20 use it:   PACKWELL_KAFKA_BROKERS={addr} packwell run\n\
         \x20 read it:  kcat -b {addr} -C -t orders -K '\\t'\n\
         \x20 stop it with Ctrl-C or SIGTERM; everything it holds is lost then\n",
        topics = topics.join(", ")
    );
    // Whoever started the broker may have closed our standard output; that is no reason to
    // stop serving (println! would panic).
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes());
    let _ = out.flush();
}

/// SIGINT and SIGTERM, registered when installed (tokio's `ctrl_c()` registers only once it is
/// first polled).
pub(super) struct StopSignals {
    #[cfg(unix)]
    interrupt: tokio::signal::unix::Signal,
    #[cfg(unix)]
    terminate: tokio::signal::unix::Signal,
}

impl StopSignals {
    #[cfg(unix)]
    pub(super) fn install() -> Result<Self, Failure> {
        use tokio::signal::unix::{SignalKind, signal};
        let install = |kind| {
            signal(kind)
                .map_err(|e| Failure::usage(format!("error: cannot install a signal handler: {e}")))
        };
        Ok(StopSignals {
            interrupt: install(SignalKind::interrupt())?,
            terminate: install(SignalKind::terminate())?,
        })
    }

    #[cfg(not(unix))]
    pub(super) fn install() -> Result<Self, Failure> {
        Ok(StopSignals {})
    }

    #[cfg(unix)]
    pub(super) async fn wait(&mut self) -> &'static str {
        tokio::select! {
            _ = self.interrupt.recv() => "SIGINT",
            _ = self.terminate.recv() => "SIGTERM",
        }
    }

    #[cfg(not(unix))]
    pub(super) async fn wait(&mut self) -> &'static str {
        let _ = tokio::signal::ctrl_c().await;
        "Ctrl-C"
    }
}

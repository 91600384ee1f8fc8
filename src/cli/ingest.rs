//! `packwell ingest`: only the shop webhook routes, for deployments that keep that edge apart
//! (docs/REFERENCE.md §8); and `packwell ingest replay`, which maps a saved webhook body
//! offline and prints the events it becomes, so that a shop can check its mapping before
//! going live.

use super::broker::StopSignals;
use super::{CliResult, Common, Failure, load_config, runtime};
use crate::config::{Config, Platform};
use crate::connector::{LookupError, Mapped, Mapper, OrderLookup, StoredOrders};
use async_trait::async_trait;
use std::net::SocketAddr;
use std::path::PathBuf;
use tokio_util::sync::CancellationToken;

#[derive(Debug, clap::Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct IngestArgs {
    #[command(subcommand)]
    pub command: Option<IngestCommand>,
    #[command(flatten)]
    pub common: Common,
    /// Where to listen (default: `[http] listen`).
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<SocketAddr>,
}

#[derive(Debug, clap::Subcommand)]
pub enum IngestCommand {
    /// Map a saved webhook body as the route would, and print the events it becomes (NDJSON
    /// on stdout, ready for `packwell send`); nothing is produced and no signature is checked.
    /// Fulfillments and refunds take the customer of the order stored in the configured store.
    /// Exit 1 when the body cannot be mapped or names an order not stored.
    Replay(ReplayArgs),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum PlatformArg {
    Shopify,
    Woocommerce,
}

impl From<PlatformArg> for Platform {
    fn from(p: PlatformArg) -> Platform {
        match p {
            PlatformArg::Shopify => Platform::Shopify,
            PlatformArg::Woocommerce => Platform::WooCommerce,
        }
    }
}

#[derive(Debug, clap::Args)]
pub struct ReplayArgs {
    /// The platform the body came from.
    #[arg(long, value_enum)]
    pub platform: PlatformArg,
    /// The webhook's topic, as in `X-Shopify-Topic` (`orders/create`) or `X-WC-Webhook-Topic`
    /// (`order.updated`).
    #[arg(long)]
    pub topic: String,
    /// The saved webhook body.
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
}

pub fn run(args: &IngestArgs) -> CliResult {
    match &args.command {
        Some(IngestCommand::Replay(replay)) => run_replay(&args.common, replay),
        None => serve(args),
    }
}

fn serve(args: &IngestArgs) -> CliResult {
    let config = load_config(&args.common)?;
    let Some(brokers) = config
        .kafka
        .brokers
        .clone()
        .filter(|b| !b.trim().is_empty())
    else {
        return Err(Failure::usage(
            "error: `packwell ingest` produces to the service's Kafka: set [kafka] brokers (PACKWELL_KAFKA_BROKERS)",
        ));
    };
    let listen = args.listen.unwrap_or(config.settings().http.listen);
    let rt = runtime()?;
    rt.block_on(async {
        let mut signals = StopSignals::install()?;
        let stop = CancellationToken::new();
        let (tx, rx) = tokio::sync::oneshot::channel();
        let edge = crate::service::run_edge(&config, &brokers, listen, stop.clone(), Some(tx));
        tokio::pin!(edge);
        tokio::select! {
            addr = rx => {
                if let Ok(addr) = addr {
                    // Like `run`'s banner: a reader that went away must not stop the edge.
                    use std::io::Write as _;
                    let mut out = std::io::stdout().lock();
                    let _ = writeln!(out, "packwell ingest listening on {addr}");
                    let _ = writeln!(out, "  webhooks: http://{addr}/v1/ingest/shopify, http://{addr}/v1/ingest/woocommerce; producing to {brokers}");
                    let _ = out.flush();
                }
            }
            r = &mut edge => return r.map_err(|e| Failure::usage(format!("error: {e}"))),
        }
        tokio::select! {
            signal = signals.wait() => {
                eprintln!("packwell ingest: {signal}, stopping");
                stop.cancel();
                edge.await.map_err(|e| Failure::usage(format!("error: {e}")))
            }
            r = &mut edge => r.map_err(|e| Failure::usage(format!("error: {e}"))),
        }
    })
}

/// No store to ask: every order is "not stored".
struct NoStore;

#[async_trait]
impl OrderLookup for NoStore {
    async fn customer_of_order(&self, _: &str) -> Result<Option<String>, LookupError> {
        Ok(None)
    }
}

fn run_replay(common: &Common, args: &ReplayArgs) -> CliResult {
    let config = load_config(common)?;
    let platform = Platform::from(args.platform);
    let body = std::fs::read(&args.file)
        .map_err(|e| Failure::usage(format!("error: cannot read {}: {e}", args.file.display())))?;
    let mapped = map_offline(&config, platform, &args.topic, &body)?;
    print_mapped(mapped)
}

/// Maps a body as the route would, with the configured store (when there is one) for stored
/// orders and the shop's API for categories.
pub fn map_offline(
    config: &Config,
    platform: Platform,
    topic: &str,
    body: &[u8],
) -> Result<Mapped, Failure> {
    let Some(shop) = config.settings().connectors.of(platform) else {
        return Err(Failure::usage(format!(
            "error: the {platform} connector is not configured: add [connectors.{platform}] to the configuration"
        )));
    };
    let mapper = Mapper::new(shop, crate::service::product_directory(shop))
        .map_err(|e| Failure::usage(format!("error: {e}")))?;
    let url = config.store_url();
    let rt = runtime()?;
    rt.block_on(async {
        let store = if super::sqlite_file_missing(&url) {
            None
        } else {
            Some(
                crate::store::events::open_read_only(&url)
                    .await
                    .map_err(|e| {
                        Failure::usage(format!(
                            "error: the store {}: {e}",
                            crate::config::mask_url_password(&url)
                        ))
                    })?,
            )
        };
        let mapped = match &store {
            Some(store) => mapper.map(topic, body, &StoredOrders(&**store)).await,
            None => mapper.map(topic, body, &NoStore).await,
        };
        mapped.map_err(|e| Failure::usage(format!("error: {e}")))
    })
}

fn print_mapped(mapped: Mapped) -> CliResult {
    match mapped {
        Mapped::Events(events) => {
            for e in &events {
                println!("{}", e.value);
            }
            eprintln!(
                "{} event{} (key: the customer id)",
                events.len(),
                if events.len() == 1 { "" } else { "s" }
            );
            Ok(())
        }
        Mapped::Nothing(why) => {
            eprintln!("no event: {why}");
            Ok(())
        }
        Mapped::OrderNotStored(order) => Err(Failure::finding(format!(
            "order {order} is not in the store: the route would answer 503 until the order's orders/create is applied"
        ))),
        Mapped::Unmappable(why) => Err(Failure::finding(format!(
            "unmappable: {why}\nthe route would set it aside in orders.dlq (reason unmappable)"
        ))),
    }
}

//! The `packwell` binary: parses the command line and hands over to the library.

use clap::Parser;
use std::process::ExitCode;

/// mimalloc: a batch allocates and frees many small strings and JSON values across the
/// runtime's threads, where glibc's allocator spends a quarter of the time.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let mut filter = tracing_subscriber::EnvFilter::try_from_env("PACKWELL_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("error"));
    // sqlx logs a store URL's parameters it does not know with their values, and
    // `sslpassword` is one of them: never shown, whatever the level asked for.
    if let Ok(quiet) = "sqlx_postgres::options::parse=error".parse() {
        filter = filter.add_directive(quiet);
    }
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    packwell::cli::run(packwell::cli::Cli::parse())
}

//! Writes a realistic order history as NDJSON (docs/REFERENCE.md §1), in time order, with
//! effects planted in it for the effect report to find: `packwell run --demo` sends it, and
//! `packwell report` then shows rules that bring customers back, one that keeps them away and
//! some that do nothing. `examples/history.ndjson` is made with
//!
//!     cargo run --example generate_history -- --customers 5000 --months 6 --seed 42 --out examples/history.ndjson
//!
//! Customers have a personal buying rhythm and a favourite category; orders are mostly in EUR
//! (warehouse WH-BER), some in USD (WH-NYC); parcels are shipped and delivered, some late against
//! `promised_delivery`; some orders are cancelled or returned; some customers answer the NPS
//! survey, a few unsubscribe, and now and then a regular goes quiet for a while and comes back.
//!
//! The history is made in time order, and each event is applied as it is made through
//! Packwell's own event path (`packwell::step`, every order decided with the rules of `--rules`),
//! so the generator knows whom each rule treated or held out, and when, exactly as the service
//! will when it decides the file. The customers then behave accordingly, from the first time a
//! rule meets them (which is when the report starts counting a customer):
//! - `welcome` (a first order): its treated customers of the variant `note-and-coupon` (the
//!   engine's own draw, [`packwell::engine::draw_variant`]) are brought back by the coupon: with
//!   a chance of [`PULL`] their next order comes 5 to 25 days later, if it was not coming sooner.
//!   The variant `note` and the held-out customers are left as they were.
//! - `welcome-back` (a lapsed regular): its coupon brings treated customers back the same way.
//! - `fragrance-check-in` (an e-mail after a fragrance arrived): it puts a treated customer off
//!   with a chance of [`PUT_OFF`]: they unsubscribe and order no more.
//! - Nothing is planted for the other rules (`detractor-apology`, `fragrance-sample`, ...).
//!
//! The output depends on the arguments and the rules only: a small inline PRNG (SplitMix64),
//! money in integer cents. `tests/demo_report.rs` makes a smaller history the same way and
//! checks that the report finds these effects through `packwell run --demo`.

use chrono::{DateTime, Months, TimeZone, Utc};
use packwell::rules::RuleSet;
use std::collections::BTreeMap;
use std::io::{BufWriter, Write};
use std::path::Path;

mod catalogue;
mod world;

/// The rule whose coupon variant brings first-time customers back.
pub const WELCOME: &str = "welcome";
/// `welcome`'s variants, as rules/30-rules.toml lists them (the draw's order).
pub const WELCOME_VARIANTS: [&str; 2] = ["note", "note-and-coupon"];
/// The variant of `welcome` that carries the coupon, and so brings customers back.
pub const COUPON_VARIANT: &str = "note-and-coupon";
pub const WELCOME_WEIGHTS: [u32; 2] = [50, 50];
/// The rule whose coupon brings lapsed regulars back.
pub const WELCOME_BACK: &str = "welcome-back";
/// The follow-up e-mail that puts some customers off.
pub const CHECK_IN: &str = "fragrance-check-in";
/// The chance that a coupon brings its customer's next order forward (5 to 25 days on).
pub const PULL: f64 = 0.45;
/// The chance that the check-in e-mail puts its customer off for good.
pub const PUT_OFF: f64 = 0.35;
/// The share of customers who order once and would not come back by themselves.
pub const ONE_TIME: f64 = 0.5;
/// The share of the others who go quiet once for a while and come back lapsed ...
pub const LAPSING: f64 = 0.7;
/// ... and the chance that, back, they drift away for good.
pub const DRIFT: f64 = 0.6;

/// What to generate.
pub struct Options {
    pub customers: usize,
    pub months: u32,
    pub seed: u64,
    pub start: chrono::NaiveDate,
}

/// The history made, and what the rules did in it.
pub struct History {
    /// NDJSON lines, in time order.
    pub lines: Vec<String>,
    pub orders: usize,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    /// Customers first met by a rule or follow-up, by (id, arm), as the report counts them;
    /// `welcome`'s treated customers also by variant (`welcome/note`).
    pub exposed: BTreeMap<(String, String), usize>,
}

/// Makes the history: customers, then everything they do, in time order, decided by `rules`.
pub fn generate(o: &Options, rules: &RuleSet) -> Result<History, String> {
    let start = Utc.from_utc_datetime(&o.start.and_hms_opt(0, 0, 0).ok_or("--start")?);
    let end = start
        .checked_add_months(Months::new(o.months))
        .ok_or("--months is too large")?;
    let history = History {
        lines: Vec::new(),
        orders: 0,
        start,
        end,
        exposed: BTreeMap::new(),
    };
    world::run(o, rules, history)
}

/// The rules of `dir`, with the templates beside it.
pub fn load(dir: &Path) -> Result<RuleSet, String> {
    let templates = dir.parent().unwrap_or(Path::new(".")).join("templates");
    let outcome = packwell::rules::load_rules(dir, &templates);
    let errors: Vec<String> = outcome.errors().map(|e| e.to_string()).collect();
    outcome.rules.ok_or_else(|| {
        format!(
            "{}: the rules are invalid:\n{}",
            dir.display(),
            errors.join("\n")
        )
    })
}

fn arg(args: &[String], name: &str, default: &str) -> String {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .cloned()
        .unwrap_or_else(|| default.to_string())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "-h" || a == "--help") {
        eprintln!(
            "usage: generate_history [--customers N] [--months M] [--seed S] [--start YYYY-MM-DD] [--rules DIR] [--out FILE]"
        );
        return Ok(());
    }
    let options = Options {
        customers: arg(&args, "--customers", "5000").parse()?,
        months: arg(&args, "--months", "6").parse()?,
        seed: arg(&args, "--seed", "42").parse()?,
        start: chrono::NaiveDate::parse_from_str(&arg(&args, "--start", "2026-06-01"), "%Y-%m-%d")?,
    };
    let rules_dir = arg(&args, "--rules", "rules");
    let out_path = arg(&args, "--out", "examples/history.ndjson");
    let rules = load(Path::new(&rules_dir))?;
    let history = generate(&options, &rules)?;
    let file = std::fs::File::create(&out_path).map_err(|e| format!("{out_path}: {e}"))?;
    let mut w = BufWriter::new(file);
    for line in &history.lines {
        w.write_all(line.as_bytes())?;
        w.write_all(b"\n")?;
    }
    w.flush()?;
    eprintln!(
        "{out_path}: {} events, {} orders, {} customers, {} to {}; first met by each rule:",
        history.lines.len(),
        history.orders,
        options.customers,
        history.start.format("%Y-%m-%d"),
        history.end.format("%Y-%m-%d")
    );
    for ((source, arm), n) in &history.exposed {
        eprintln!("  {source:<28} {arm:<9} {n}");
    }
    Ok(())
}

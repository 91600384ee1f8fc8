//! Running `wrk` for the station benchmark and reading its report.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

pub const WRK_THREADS: u32 = 2;
pub const WRK_CONNECTIONS: u32 = 64;

/// wrk's path, or how to install it.
pub fn find_wrk() -> Result<PathBuf, String> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join("wrk"))
        .find(|candidate| candidate.is_file())
        .ok_or_else(|| "wrk is not on PATH; install it with `apt-get install -y wrk`".to_string())
}

/// A wrk script sending `Authorization: Bearer <token>` to the path that the Lua expression
/// `lua_path` gives, evaluated per request. Every server of a comparison runs a script of
/// this one shape, so that wrk spends the same on both sides of the ratio. Each wrk thread
/// draws from a seed of its own, the same in every run.
pub fn write_script(folder: &Path, name: &str, token: &str, lua_path: &str) -> PathBuf {
    let script = format!(
        r#"wrk.headers["Authorization"] = "Bearer {token}"

local threads = 0
function setup(thread)
  threads = threads + 1
  thread:set("seed", threads)
end

function init(args)
  math.randomseed(seed)
end

function request()
  return wrk.format(nil, {lua_path})
end
"#
    );
    let file = folder.join(format!("{name}.lua"));
    std::fs::write(&file, script).expect("the wrk script");
    file
}

/// What one wrk run reported.
#[derive(Clone, Debug)]
pub struct WrkFigures {
    pub requests_per_second: f64,
    pub p50: Duration,
    pub p99: Duration,
    /// Responses with a status of 400 or more.
    pub error_responses: u64,
    /// Connect, read, write errors and timeouts.
    pub socket_errors: u64,
}

pub fn wrk_run(wrk: &Path, url: &str, script: &Path, seconds: usize) -> Result<WrkFigures, String> {
    let output = Command::new(wrk)
        .arg(format!("-t{WRK_THREADS}"))
        .arg(format!("-c{WRK_CONNECTIONS}"))
        .arg(format!("-d{seconds}s"))
        .arg("--latency")
        .arg("-s")
        .arg(script)
        .arg(url)
        .output()
        .map_err(|e| format!("cannot run {}: {e}", wrk.display()))?;
    let text = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        return Err(format!(
            "wrk failed ({}) against {url}:\n{text}{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    parse_wrk(&text).ok_or_else(|| format!("wrk's output was not as expected:\n{text}"))
}

/// Reads wrk's report. Its error lines are printed only when there were errors.
fn parse_wrk(text: &str) -> Option<WrkFigures> {
    let mut requests_per_second = None;
    let mut p50 = None;
    let mut p99 = None;
    let mut error_responses = 0;
    let mut socket_errors = 0;
    for line in text.lines().map(str::trim) {
        if let Some(rate) = line.strip_prefix("Requests/sec:") {
            requests_per_second = rate.trim().parse().ok();
        } else if let Some(latency) = line.strip_prefix("50%") {
            p50 = parse_wrk_duration(latency.trim());
        } else if let Some(latency) = line.strip_prefix("99%") {
            p99 = parse_wrk_duration(latency.trim());
        } else if let Some(count) = line.strip_prefix("Non-2xx or 3xx responses:") {
            error_responses = count.trim().parse().ok()?;
        } else if let Some(counts) = line.strip_prefix("Socket errors:") {
            // "connect 0, read 0, write 0, timeout 0"
            socket_errors = counts
                .split(',')
                .filter_map(|part| part.split_whitespace().nth(1)?.parse::<u64>().ok())
                .sum();
        }
    }
    Some(WrkFigures {
        requests_per_second: requests_per_second?,
        p50: p50?,
        p99: p99?,
        error_responses,
        socket_errors,
    })
}

/// wrk's latencies: "812.00us", "1.53ms", "2.01s", "1.00m".
fn parse_wrk_duration(text: &str) -> Option<Duration> {
    let split = text.find(|c: char| c.is_ascii_alphabetic())?;
    let (number, unit) = text.split_at(split);
    let number: f64 = number.parse().ok()?;
    let seconds = match unit {
        "us" => number / 1e6,
        "ms" => number / 1e3,
        "s" => number,
        "m" => number * 60.0,
        "h" => number * 3600.0,
        _ => return None,
    };
    Some(Duration::from_secs_f64(seconds))
}

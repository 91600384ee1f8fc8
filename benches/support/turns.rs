//! Same-run figures: cases measured in turns, round by round, so that the machine's other load
//! falls on each of them alike and a ratio of two of them holds even on a busy machine.

use std::time::{Duration, Instant};

/// `PW_FIGURE_ROUNDS` (default 15); 0 skips the figures.
pub fn rounds() -> usize {
    std::env::var("PW_FIGURE_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(15)
}

/// Rates per second of `cases`, measured in `rounds` rounds in which each case runs in turn
/// for about `round`: one rate per case and round.
pub fn take_turns(rounds: usize, round: Duration, cases: &mut [&mut dyn FnMut()]) -> Vec<Vec<f64>> {
    // Iterations that fill a round, from a short calibration of each case.
    let iterations: Vec<u64> = cases
        .iter_mut()
        .map(|case| {
            let start = Instant::now();
            let mut n = 0u64;
            while start.elapsed() < round / 10 {
                case();
                n += 1;
            }
            (n * 10).max(1)
        })
        .collect();
    let mut rates = vec![Vec::with_capacity(rounds); cases.len()];
    for _ in 0..rounds {
        for (i, case) in cases.iter_mut().enumerate() {
            let start = Instant::now();
            for _ in 0..iterations[i] {
                case();
            }
            rates[i].push(iterations[i] as f64 / start.elapsed().as_secs_f64());
        }
    }
    rates
}

pub fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs.get(xs.len() / 2).copied().unwrap_or(f64::NAN)
}

/// Per round, the time of case `a` over the time of case `b` (the inverse ratio of rates).
pub fn time_ratio(rates: &[Vec<f64>], a: usize, b: usize) -> f64 {
    median(
        rates[b]
            .iter()
            .zip(&rates[a])
            .map(|(rb, ra)| rb / ra)
            .collect(),
    )
}

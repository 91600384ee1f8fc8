//! Faults on purpose, for the tests that prove a failure is handled: `PACKWELL_FAULT` names a
//! step and the event id it fails on. Only debug builds (what the tests run) read it; in a
//! release build a check does nothing, so no setting can crash a deployment.
//!
//! - `decide-panic:<event_id>`: the per-event step panics on that event (it is tried again,
//!   then set aside with reason `internal_error`).
//! - `consumer-panic:<event_id>`: the consumer thread panics when it reads that event, outside
//!   the per-event guard (the service turns unready and exits non-zero).
//! - `write-panic:<event_id>`: writing a batch that holds that event panics, every time (the
//!   batch is retried, and `/readyz` reports the consumer stuck).
//! - `sync-crash:<code>`: the coupon sync worker ends the process at once (as `kill -9` would)
//!   right after the shop answered the create of that code, before the outcome is recorded;
//!   `*` for any code.

use std::sync::OnceLock;

/// Where a fault can be injected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Point {
    Decide,
    Consumer,
    Write,
    SyncCreated,
}

fn configured() -> &'static Option<(Point, String)> {
    static FAULT: OnceLock<Option<(Point, String)>> = OnceLock::new();
    FAULT.get_or_init(|| {
        let text = std::env::var("PACKWELL_FAULT").ok()?;
        let (point, event_id) = text.split_once(':')?;
        let point = match point {
            "decide-panic" => Point::Decide,
            "consumer-panic" => Point::Consumer,
            "write-panic" => Point::Write,
            "sync-crash" => Point::SyncCreated,
            _ => return None,
        };
        Some((point, event_id.to_string()))
    })
}

/// Panics when the fault configured is `point` on `event_id` (debug builds only).
pub fn check(point: Point, event_id: &str) {
    if cfg!(debug_assertions)
        && let Some((p, id)) = configured()
        && *p == point
        && id == event_id
    {
        panic!("fault injected by PACKWELL_FAULT at {point:?} on event {event_id}");
    }
}

/// Ends the process at once when the fault configured is `point` on `id` (or `*`) (debug
/// builds only): a crash that no unwinding or shutdown path sees.
pub fn crash(point: Point, id: &str) {
    if cfg!(debug_assertions)
        && let Some((p, at)) = configured()
        && *p == point
        && (at == id || at == "*")
    {
        eprintln!("fault injected by PACKWELL_FAULT at {point:?} on {id}: the process ends");
        std::process::abort();
    }
}

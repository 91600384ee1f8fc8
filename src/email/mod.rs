//! Follow-up e-mails (docs/REFERENCE.md §5, §6, §7; docs/ARCHITECTURE.md "E-mail jobs"). The
//! consumer schedules jobs in the store; this module sends them.
//!
//! - [`timing`]: quiet hours in the customer's time zone, expiry, back-off (pure).
//! - [`check`]: a due job checked again at send time (pure).
//! - [`compose`]: the e-mail rendered for one customer, its headers and idempotency key (pure).
//! - [`token`]: signed unsubscribe links.
//! - [`provider`]: the outbox folder, SMTP and an HTTP provider API.
//! - [`worker`]: claims due jobs, hands them over with bounded concurrency, records the end.
//!
//! Its HTTP routes (the unsubscribe page and one-click POST, bounces and complaints) are in
//! `crate::http`.

pub mod check;
pub mod compose;
pub mod provider;
pub mod timing;
pub mod token;
pub mod worker;

pub use compose::{OutgoingEmail, idempotency_key};
pub use provider::Provider;
pub use worker::{Clock, ManualClock, RulesInForce, SystemClock, Worker, WorkerSettings};

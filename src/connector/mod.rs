//! Shop connectors (docs/REFERENCE.md §8): Shopify's and WooCommerce's webhooks turned into
//! Packwell's own events on `orders`, and the codes Packwell issues created in the shop's
//! checkout.
//!
//! - [`signature`]: a webhook is verified against the platform's HMAC before anything else.
//! - [`mapping`]: what a verified webhook becomes ([`Mapped`]), and what mapping may ask of the
//!   store and of the shop's API.
//! - [`api`]: the shops' APIs (Shopify Admin GraphQL, WooCommerce REST), paced and sorted into
//!   retry or refusal; product look-ups for mapping and the coupon calls.
//! - [`sync`]: the worker that creates issued codes in the shop and disables voided ones.

pub mod api;
pub mod mapping;
pub mod signature;
pub mod sync;

pub use crate::config::Platform;
pub use mapping::{LookupError, Mapped, MappedEvent, OrderLookup, ProductDirectory, ProductInfo};

//! Shop connectors (docs/REFERENCE.md §8): Shopify's and WooCommerce's webhooks turned into
//! Packwell's own events on `orders`, and the codes Packwell issues created in the shop's
//! checkout.
//!
//! - [`signature`]: a webhook is verified against the platform's HMAC before anything else.
//! - [`mapping`]: what a verified webhook becomes ([`Mapped`]), and what mapping may ask of the
//!   store and of the shop's API.
//! - [`mapper`]: [`Mapper`], one connector's mapping, dispatching to `shopify` and
//!   `woocommerce`, which read the platforms' bodies (through `payload`) and find each item's
//!   category through [`category`].
//! - [`webhooks`]: a webhook from its raw request to its answer: verified, de-duplicated,
//!   mapped, produced and acknowledged, or set aside.
//! - [`api`]: the shops' APIs (Shopify Admin GraphQL, WooCommerce REST), paced and sorted into
//!   retry or refusal; product look-ups for mapping and the coupon calls.
//! - [`sync`]: the worker that creates issued codes in the shop and disables voided ones.

pub mod api;
pub mod category;
pub mod mapper;
pub mod mapping;
mod payload;
mod recorder;
mod shopify;
pub mod signature;
pub mod sync;
pub mod webhooks;
mod woocommerce;

pub use crate::config::Platform;
pub use mapper::Mapper;
pub use mapping::{LookupError, Mapped, MappedEvent, OrderLookup, ProductDirectory, ProductInfo};
pub use webhooks::{Delivery, Received, Refused, StoredOrders, Webhooks};

//! Shop connectors (docs/REFERENCE.md §8): Shopify's and WooCommerce's webhooks turned into
//! Packwell's own events on `orders`, and the codes Packwell issues created in the shop's
//! checkout.
//!
//! - [`signature`]: a webhook is verified against the platform's HMAC before anything else.
//! - [`mapping`]: what a verified webhook becomes ([`Mapped`]), and what mapping may ask of the
//!   store and of the shop's API.
//! - [`webhooks`]: a webhook from its raw request to its answer: verified, de-duplicated,
//!   mapped, produced and acknowledged, or set aside.

pub mod mapper;
pub mod mapping;
pub mod signature;
pub mod webhooks;

pub use crate::config::Platform;
pub use mapper::Mapper;
pub use mapping::{LookupError, Mapped, MappedEvent, OrderLookup, ProductDirectory, ProductInfo};
pub use webhooks::{Delivery, Received, Refused, StoredOrders, Webhooks};

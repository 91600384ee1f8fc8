//! The packing stations' side of Packwell (docs/REFERENCE.md §7): the insert-list cache the station
//! routes answer from, the printable card of a parcel, and the packer's page. The routes
//! themselves (tokens limited to some warehouses, the confirmation of what went in) are in
//! `crate::http`.

mod cache;
mod card;

pub use cache::{Cached, InsertListCache};
pub use card::render as render_card;

/// The packer's page, one self-contained file (no build step). Served at `GET /station`.
pub const PAGE: &str = include_str!("page.html");

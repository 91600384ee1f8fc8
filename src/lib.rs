//! Packwell.
pub mod event;
pub mod money;
pub mod rules;
pub mod render;
pub mod profile;

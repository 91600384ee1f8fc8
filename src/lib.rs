//! Packwell.
pub mod cli;
pub mod config;
pub mod coupon;
pub mod engine;
pub mod event;
pub mod money;
pub mod profile;
pub mod render;
pub mod replay;
pub mod rules;

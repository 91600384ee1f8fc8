//! Fuzz target `request_bodies`: see `harness::request_bodies`.

#![no_main]

#[path = "../harness/mod.rs"]
mod harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| harness::request_bodies(data));

//! Fuzz target `event_path`: see `harness::event_path`.

#![no_main]

#[path = "../harness/mod.rs"]
mod harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| harness::event_path(data));

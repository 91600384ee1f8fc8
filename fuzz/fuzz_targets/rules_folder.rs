//! Fuzz target `rules_folder`: see `harness::rules_folder`.

#![no_main]

#[path = "../harness/mod.rs"]
mod harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| harness::rules_folder(data));

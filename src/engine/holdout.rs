//! Holdouts: which customers a rule or follow-up leaves out, the same way on every run, so
//! that the effect report can compare them with the treated ones.

use sha2::{Digest, Sha256};

/// The deterministic holdout bucket 0..10000 of a customer for a rule or follow-up.
pub fn holdout_bucket(customer_id: &str, rule_id: &str) -> u16 {
    let mut h = Sha256::new();
    for field in [customer_id.as_bytes(), rule_id.as_bytes()] {
        h.update((field.len() as u64).to_be_bytes());
        h.update(field);
    }
    let d = h.finalize();
    (u64::from_be_bytes([d[0], d[1], d[2], d[3], d[4], d[5], d[6], d[7]]) % 10_000) as u16
}

pub fn in_holdout(customer_id: &str, rule_id: &str, holdout_bp: u16) -> bool {
    holdout_bp > 0 && holdout_bucket(customer_id, rule_id) < holdout_bp
}

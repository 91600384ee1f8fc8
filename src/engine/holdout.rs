//! Who is in which group, the same way on every run and in every process: the customers a rule
//! or follow-up holds out (so that the effect report can compare them with the treated ones),
//! and the variant a treated customer is drawn into. Both are hashes of (customer, rule); the
//! variant's hash has one more field, so that it is independent of the holdout.

use crate::profile::Profile;
use crate::rules::{Variant, variant_weights};
use sha2::{Digest, Sha256};

/// The first 8 bytes of SHA-256 over the length-prefixed fields, as a number.
fn hash_fields(fields: &[&[u8]]) -> u64 {
    let mut h = Sha256::new();
    for field in fields {
        h.update((field.len() as u64).to_be_bytes());
        h.update(field);
    }
    let d = h.finalize();
    u64::from_be_bytes([d[0], d[1], d[2], d[3], d[4], d[5], d[6], d[7]])
}

/// The deterministic holdout bucket 0..10000 of a customer for a rule or follow-up.
pub fn holdout_bucket(customer_id: &str, rule_id: &str) -> u16 {
    (hash_fields(&[customer_id.as_bytes(), rule_id.as_bytes()]) % 10_000) as u16
}

pub fn in_holdout(customer_id: &str, rule_id: &str, holdout_bp: u16) -> bool {
    holdout_bp > 0 && holdout_bucket(customer_id, rule_id) < holdout_bp
}

/// The variant (an index into `weights`) a customer is drawn into for a rule or follow-up, in
/// proportion to the weights. `None` when there is nothing to draw from (no weights, or all 0).
/// A customer's first draw is stored and kept by the caller: this is only the draw.
pub fn draw_variant(customer_id: &str, rule_id: &str, weights: &[u32]) -> Option<usize> {
    let total: u64 = weights.iter().map(|w| u64::from(*w)).sum();
    if total == 0 {
        return None;
    }
    // Modulo a total of at most 10^7 (the loader allows 10 variants of weight 10^6 at most),
    // the bias is below 2^-40: far under any split the sample-ratio check could see.
    let mut point = hash_fields(&[customer_id.as_bytes(), rule_id.as_bytes(), b"variant"]) % total;
    for (i, w) in weights.iter().enumerate() {
        let w = u64::from(*w);
        if point < w {
            return Some(i);
        }
        point -= w;
    }
    None
}

/// The variant a customer is in for a rule or follow-up with variants: the one stored at their
/// first exposure while it still exists, so that changing the weights moves nobody already
/// exposed; else a fresh draw. `None` for a rule without variants.
pub fn assigned_variant<'v>(
    profile: &Profile,
    rule_id: &str,
    variants: &'v [Variant],
) -> Option<&'v Variant> {
    if variants.is_empty() {
        return None;
    }
    if let Some(kept) = profile.variant(rule_id)
        && let Some(v) = variants.iter().find(|v| v.id == kept)
    {
        return Some(v);
    }
    draw_variant(&profile.customer_id, rule_id, &variant_weights(variants)).map(|i| &variants[i])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_are_pinned_to_a_second_implementation() {
        // Values computed with Python's hashlib over the same length-prefixed fields: a change
        // here would move every customer between arms and variants.
        assert_eq!(holdout_bucket("C-1", "welcome-back"), 423);
        assert_eq!(holdout_bucket("C-42", "welcome-back"), 3666);
        // Weights 62 + 38: the points 62 and 15 fall into the second and the first variant.
        assert_eq!(draw_variant("C-1", "welcome-back", &[62, 38]), Some(1));
        assert_eq!(draw_variant("C-1", "welcome-back", &[63, 37]), Some(0));
        assert_eq!(draw_variant("C-42", "welcome-back", &[15, 85]), Some(1));
        assert_eq!(draw_variant("C-42", "welcome-back", &[16, 84]), Some(0));
    }

    #[test]
    fn weights_of_zero_are_never_drawn_and_nothing_to_draw_is_none() {
        assert_eq!(draw_variant("C-1", "r", &[]), None);
        assert_eq!(draw_variant("C-1", "r", &[0, 0]), None);
        for i in 0..200 {
            assert_eq!(draw_variant(&format!("C-{i}"), "r", &[0, 7, 0]), Some(1));
        }
    }
}

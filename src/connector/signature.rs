//! Webhook signatures: Shopify's `X-Shopify-Hmac-Sha256` and WooCommerce's
//! `X-WC-Webhook-Signature` are both the base64 of HMAC-SHA256 over the raw body, keyed with
//! the webhook secret. Checked against each configured secret (two while rotating), in
//! constant time.

use crate::config::Secret;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// The signature a platform sends for `body` under `secret`.
pub fn sign(secret: &[u8], body: &[u8]) -> String {
    let mut mac = HmacSha256::new_from_slice(secret).expect("HMAC takes keys of any length");
    mac.update(body);
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// Whether `header` (the signature as sent, base64) is the body's under one of `secrets`.
/// A header that is not base64 of 32 bytes is no signature.
pub fn verify(secrets: &[Secret], body: &[u8], header: &str) -> bool {
    let Ok(given) = base64::engine::general_purpose::STANDARD.decode(header.trim()) else {
        return false;
    };
    if given.len() != 32 {
        return false;
    }
    // Every secret is tried, so the time taken does not say which one matched.
    secrets.iter().fold(false, |matched, secret| {
        let mut mac =
            HmacSha256::new_from_slice(secret.0.as_bytes()).expect("HMAC takes keys of any length");
        mac.update(body);
        // `verify_slice` compares in constant time.
        mac.verify_slice(&given).is_ok() | matched
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secrets(s: &[&str]) -> Vec<Secret> {
        s.iter().map(|s| Secret(s.to_string())).collect()
    }

    #[test]
    fn a_known_signature_verifies() {
        // HMAC-SHA256("key", "The quick brown fox jumps over the lazy dog"), RFC 4231-style
        // vector as published for HMAC-SHA256, in base64.
        let body = b"The quick brown fox jumps over the lazy dog";
        assert_eq!(
            sign(b"key", body),
            "97yD9DBThCSxMpjmqm+xQ+9NWaFJRhdZl0edvC0aPNg="
        );
        assert!(verify(
            &secrets(&["key"]),
            body,
            "97yD9DBThCSxMpjmqm+xQ+9NWaFJRhdZl0edvC0aPNg="
        ));
    }

    #[test]
    fn either_of_two_secrets_verifies_while_rotating() {
        let body = br#"{"id":1}"#;
        let both = secrets(&["old", "new"]);
        assert!(verify(&both, body, &sign(b"old", body)));
        assert!(verify(&both, body, &sign(b"new", body)));
        assert!(!verify(&both, body, &sign(b"other", body)));
    }

    #[test]
    fn a_changed_body_or_a_malformed_header_fails() {
        let s = secrets(&["k"]);
        let sig = sign(b"k", b"{\"total\":\"10.00\"}");
        assert!(!verify(&s, b"{\"total\":\"99.00\"}", &sig));
        for bad in ["", "not base64!", "AAAA", &sig[..20]] {
            assert!(!verify(&s, b"{}", bad), "{bad:?}");
        }
    }
}

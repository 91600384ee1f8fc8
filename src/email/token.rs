//! Unsubscribe links: `/u/{token}`, where the token is the customer id and a tag keyed with
//! the service's secret key. The token is the proof (docs/REFERENCE.md §7): nobody without the key
//! can make one for another customer, and no state is kept to check it.

use crate::coupon::CouponKey;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// Bytes of the tag kept in the token (128 bits).
const TAG_LEN: usize = 16;
const LABEL: &str = "packwell unsubscribe v1";

fn tag(key: &CouponKey, customer_id: &str) -> [u8; TAG_LEN] {
    let full = key.mac(LABEL, &[customer_id.as_bytes()]);
    let mut tag = [0u8; TAG_LEN];
    tag.copy_from_slice(&full[..TAG_LEN]);
    tag
}

/// The token of a customer's unsubscribe link: URL-safe, no padding.
pub fn unsubscribe_token(key: &CouponKey, customer_id: &str) -> String {
    format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(customer_id.as_bytes()),
        URL_SAFE_NO_PAD.encode(tag(key, customer_id))
    )
}

/// The customer a token was made for, if it was made with this key.
pub fn verify_unsubscribe_token(key: &CouponKey, token: &str) -> Option<String> {
    use subtle::ConstantTimeEq;
    let (id, given) = token.split_once('.')?;
    let id = String::from_utf8(URL_SAFE_NO_PAD.decode(id).ok()?).ok()?;
    let given = URL_SAFE_NO_PAD.decode(given).ok()?;
    if id.is_empty() || given.len() != TAG_LEN {
        return None;
    }
    bool::from(tag(key, &id).ct_eq(&given)).then_some(id)
}

/// The link itself, under `base` (`[http] public_url`).
pub fn unsubscribe_url(base: &str, key: &CouponKey, customer_id: &str) -> String {
    format!(
        "{}/u/{}",
        base.trim_end_matches('/'),
        unsubscribe_token(key, customer_id)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_verify_under_their_key_only() {
        let key = CouponKey::from_bytes(vec![3; 32]);
        let token = unsubscribe_token(&key, "C-42/ä");
        assert_eq!(
            verify_unsubscribe_token(&key, &token).as_deref(),
            Some("C-42/ä")
        );
        assert!(
            token
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        );
        let other = CouponKey::from_bytes(vec![4; 32]);
        assert_eq!(verify_unsubscribe_token(&other, &token), None);
    }

    #[test]
    fn tampered_tokens_are_refused() {
        let key = CouponKey::from_bytes(vec![3; 32]);
        let token = unsubscribe_token(&key, "C-42");
        let (_, tag) = token.split_once('.').unwrap();
        let forged = format!("{}.{tag}", URL_SAFE_NO_PAD.encode("C-43"));
        assert_eq!(verify_unsubscribe_token(&key, &forged), None);
        for bad in [
            "",
            ".",
            "abc",
            "Qy00Mg.",
            "Qy00Mg.AAAA",
            "!!.!!",
            &token[..token.len() - 1],
        ] {
            assert_eq!(verify_unsubscribe_token(&key, bad), None, "{bad:?}");
        }
    }

    #[test]
    fn urls_join_the_public_base() {
        let key = CouponKey::from_bytes(vec![3; 32]);
        let url = unsubscribe_url("https://shop.example/", &key, "C-1");
        assert!(url.starts_with("https://shop.example/u/"), "{url}");
    }
}

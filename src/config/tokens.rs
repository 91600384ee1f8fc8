//! Bearer tokens of the packing stations and dashboards, from `[http] tokens`, parsed into the
//! table requests are checked against. Only SHA-256 digests are kept in memory; a presented
//! token is hashed and compared with every digest in constant time. Tokens are never logged.
//! The HTTP layer turns a request's `Authorization` header into a [`Caller`] with this table
//! (`crate::http::caller`).

use super::{Role, TokenConfig};
use sha2::{Digest, Sha256};
use std::collections::BTreeSet;
use std::sync::Arc;
use subtle::ConstantTimeEq;

/// Who is calling: a configured token's name, its role and the warehouses it may see. Shared
/// with the configured entry, so that a request copies two pointers rather than the names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub name: Arc<str>,
    pub role: Role,
    /// `None`: every warehouse.
    pub warehouses: Option<Arc<BTreeSet<String>>>,
}

impl Caller {
    /// Whether the token's role includes `role`'s routes.
    pub fn may(&self, role: Role) -> bool {
        self.role >= role
    }

    pub fn may_see(&self, warehouse: &str) -> bool {
        self.warehouses
            .as_ref()
            .is_none_or(|allowed| allowed.contains(warehouse))
    }
}

struct Entry {
    digest: [u8; 32],
    caller: Caller,
}

/// The configured tokens.
pub struct Tokens {
    entries: Vec<Entry>,
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.entries.iter().map(|e| &*e.caller.name).collect();
        f.debug_struct("Tokens").field("names", &names).finish()
    }
}

impl Tokens {
    /// Reads `[http] tokens`; an entry that is not usable is an error naming it.
    pub fn from_config(tokens: &[TokenConfig]) -> Result<Tokens, String> {
        let mut entries: Vec<Entry> = Vec::with_capacity(tokens.len());
        for (i, t) in tokens.iter().enumerate() {
            let name = t.name.trim();
            let at = format!("[[http.tokens]] #{} (name = {:?})", i + 1, t.name);
            if name.is_empty() {
                return Err(format!("{at}: the name is empty"));
            }
            if entries.iter().any(|e| &*e.caller.name == name) {
                return Err(format!("{at}: another token has this name"));
            }
            let digest = match (&t.token, &t.token_sha256) {
                (Some(token), None) if !token.is_empty() => sha256(token),
                (None, Some(hex_digest)) => {
                    let digest = parse_digest(hex_digest).ok_or_else(|| {
                        format!("{at}: token_sha256 is not 64 hexadecimal digits")
                    })?;
                    if digest == sha256("") {
                        return Err(format!(
                            "{at}: token_sha256 is the digest of an empty token"
                        ));
                    }
                    digest
                }
                (Some(_), Some(_)) => {
                    return Err(format!("{at}: give token or token_sha256, not both"));
                }
                _ => return Err(format!("{at}: give token or token_sha256")),
            };
            let warehouses = match &t.warehouses {
                None => None,
                Some(list) if list.is_empty() => {
                    return Err(format!(
                        "{at}: warehouses is empty; leave it out for every warehouse"
                    ));
                }
                Some(list) => Some(Arc::new(list.iter().cloned().collect())),
            };
            // Before roles, a token limited to warehouses was a station's and one without a
            // limit could call everything: configurations written then keep their meaning.
            let role = t.role.unwrap_or(if warehouses.is_some() {
                Role::Station
            } else {
                Role::Admin
            });
            entries.push(Entry {
                digest,
                caller: Caller {
                    name: name.into(),
                    role,
                    warehouses,
                },
            });
        }
        Ok(Tokens { entries })
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The caller a presented token belongs to. Every digest is compared, in constant time,
    /// so the time taken says nothing about how much of a token was right.
    pub fn check(&self, presented: &str) -> Option<Caller> {
        let digest = sha256(presented);
        let mut found = None;
        for entry in &self.entries {
            if bool::from(entry.digest.ct_eq(&digest)) {
                found = Some(&entry.caller);
            }
        }
        found.cloned()
    }
}

fn sha256(text: &str) -> [u8; 32] {
    Sha256::digest(text.as_bytes()).into()
}

fn parse_digest(text: &str) -> Option<[u8; 32]> {
    let bytes = hex::decode(text.trim()).ok()?;
    bytes.try_into().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(name: &str, token: Option<&str>, digest: Option<&str>) -> TokenConfig {
        TokenConfig {
            name: name.into(),
            token: token.map(Into::into),
            token_sha256: digest.map(Into::into),
            warehouses: None,
            role: None,
        }
    }

    #[test]
    fn a_role_left_out_follows_the_warehouse_limit() {
        let mut ber = token("ber", Some("b"), None);
        ber.warehouses = Some(vec!["WH-BER".into()]);
        let mut marketing = token("marketing", Some("m"), None);
        marketing.role = Some(Role::Marketer);
        let tokens = Tokens::from_config(&[ber, marketing, token("office", Some("o"), None)])
            .expect("valid tokens");
        let role = |t: &str| tokens.check(t).expect(t).role;
        assert_eq!(role("b"), Role::Station);
        assert_eq!(role("m"), Role::Marketer);
        assert_eq!(role("o"), Role::Admin);
        let marketer = tokens.check("m").expect("m");
        assert!(marketer.may(Role::Station) && marketer.may(Role::Marketer));
        assert!(!marketer.may(Role::Admin));
    }

    #[test]
    fn a_token_is_found_by_its_value_or_its_digest() {
        let digest = hex::encode(sha256("s3cret-nyc"));
        let mut ber = token("ber", Some("s3cret-ber"), None);
        ber.warehouses = Some(vec!["WH-BER".into()]);
        let tokens =
            Tokens::from_config(&[ber, token("nyc", None, Some(&digest))]).expect("valid tokens");
        let caller = tokens.check("s3cret-ber").expect("ber");
        assert_eq!(&*caller.name, "ber");
        assert!(caller.may_see("WH-BER") && !caller.may_see("WH-NYC"));
        let caller = tokens.check("s3cret-nyc").expect("nyc");
        assert!(caller.may_see("WH-NYC") && caller.may_see("WH-BER"));
        assert_eq!(tokens.check("s3cret-be"), None);
        assert_eq!(tokens.check(""), None);
    }

    #[test]
    fn unusable_entries_are_errors_naming_them() {
        for (entries, says) in [
            (vec![token("", Some("x"), None)], "name is empty"),
            (vec![token("a", None, None)], "give token or token_sha256"),
            (vec![token("a", Some("x"), Some("y"))], "not both"),
            (vec![token("a", None, Some("abc"))], "64 hexadecimal"),
            (
                vec![token("a", None, Some(&hex::encode(sha256(""))))],
                "empty token",
            ),
            (
                vec![token("a", Some(""), None)],
                "give token or token_sha256",
            ),
            (
                vec![token("a", Some("x"), None), token("a", Some("y"), None)],
                "another token has this name",
            ),
        ] {
            let err = Tokens::from_config(&entries).expect_err(says);
            assert!(err.contains(says), "{err}");
        }
        let mut empty = token("a", Some("x"), None);
        empty.warehouses = Some(vec![]);
        assert!(
            Tokens::from_config(&[empty])
                .expect_err("empty list")
                .contains("warehouses is empty")
        );
    }

    #[test]
    fn the_debug_form_shows_names_only() {
        let tokens = Tokens::from_config(&[token("ber", Some("s3cret-ber"), None)]).unwrap();
        let text = format!("{tokens:?}");
        assert!(text.contains("ber") && !text.contains("s3cret"), "{text}");
    }
}

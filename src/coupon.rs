//! Coupon codes: HMAC-SHA256 under a secret key over length-prefixed (order id, rule or
//! follow-up id, insert id, attempt), shown as a prefix, a dash and 12 Crockford base32
//! characters (60 bits). Nobody without the key can guess a code; the same input always
//! gives the same code, so a replayed decision re-issues the very same one.

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use std::path::Path;

const CROCKFORD: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";

/// A code as a regular expression (JSON Schema `pattern`): the prefix `code_prefix` allows (1 to
/// 16 upper-case letters or digits), a dash, 12 characters of [`CROCKFORD`].
pub const CODE_PATTERN: &str = "^[A-Z0-9]{1,16}-[0-9A-HJKMNP-TV-Z]{12}$";

/// The key codes are derived with. Never printed; identified by its fingerprint.
#[derive(Clone)]
pub struct CouponKey {
    bytes: Vec<u8>,
    /// The HMAC keyed once; each code clones it (cheaper than keying per code).
    keyed: Hmac<Sha256>,
    /// True for the fixed key the read-only commands use when none is configured.
    pub preview: bool,
}

/// HMAC takes keys of any length, so keying cannot fail; an empty key stands in if it did.
fn keyed(bytes: &[u8]) -> Hmac<Sha256> {
    Hmac::<Sha256>::new_from_slice(bytes)
        .unwrap_or_else(|_| <Hmac<Sha256> as hmac::digest::KeyInit>::new(&Default::default()))
}

impl std::fmt::Debug for CouponKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CouponKey({})", self.fingerprint())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("cannot read the coupon key {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("the coupon key {path} must hold at least 32 bytes as hex (64 hex digits)")]
    Malformed { path: String },
}

impl CouponKey {
    pub fn from_bytes(bytes: Vec<u8>) -> Self {
        CouponKey {
            keyed: keyed(&bytes),
            bytes,
            preview: false,
        }
    }

    /// The fixed, public key of previews: codes made with it are never issued.
    pub fn preview() -> Self {
        let bytes = b"packwell preview key: not for issuing coupons".to_vec();
        CouponKey {
            keyed: keyed(&bytes),
            bytes,
            preview: true,
        }
    }

    /// Reads a key file (hex text). `Ok(None)` when the file does not exist.
    pub fn read(path: &Path) -> Result<Option<Self>, KeyError> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(KeyError::Read {
                    path: path.display().to_string(),
                    source,
                });
            }
        };
        let bytes = hex::decode(text.trim()).map_err(|_| KeyError::Malformed {
            path: path.display().to_string(),
        })?;
        if bytes.len() < 32 {
            return Err(KeyError::Malformed {
                path: path.display().to_string(),
            });
        }
        Ok(Some(CouponKey::from_bytes(bytes)))
    }

    /// A short public identifier of the key (not enough to derive codes).
    /// Reads the key at `path`, creating a new random one there when none exists
    /// (docs/REFERENCE.md §3: `run` makes the key on first start). The file is readable by its
    /// owner only.
    pub fn read_or_create(path: &Path) -> Result<Self, KeyError> {
        if let Some(key) = CouponKey::read(path)? {
            return Ok(key);
        }
        let failed = |source: std::io::Error| KeyError::Read {
            path: path.display().to_string(),
            source,
        };
        let mut bytes = vec![0u8; 32];
        {
            use std::io::Read;
            std::fs::File::open("/dev/urandom")
                .and_then(|mut f| f.read_exact(&mut bytes))
                .map_err(failed)?;
        }
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            crate::files::create_private_dir(dir).map_err(failed)?;
        }
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        match options.open(path) {
            Ok(mut f) => {
                use std::io::Write;
                f.write_all(format!("{}\n", hex::encode(&bytes)).as_bytes())
                    .and_then(|_| f.sync_all())
                    .map_err(failed)?;
                Ok(CouponKey::from_bytes(bytes))
            }
            // Another process made it first: use theirs.
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => CouponKey::read(path)?
                .ok_or_else(|| KeyError::Malformed {
                    path: path.display().to_string(),
                }),
            Err(e) => Err(failed(e)),
        }
    }

    pub fn fingerprint(&self) -> String {
        let digest =
            Sha256::digest([b"packwell key fingerprint\0".as_slice(), &self.bytes].concat());
        format!("sha256:{}", hex::encode(&digest[..8]))
    }

    /// A keyed digest of length-prefixed `fields` under a purpose `label`, for other secrets
    /// derived from the same key (unsubscribe links): never equal to a code's digest, whose
    /// fields are not labelled.
    pub fn mac(&self, label: &str, fields: &[&[u8]]) -> [u8; 32] {
        let mut mac = self.keyed.clone();
        for field in std::iter::once(label.as_bytes()).chain(fields.iter().copied()) {
            mac.update(&(field.len() as u64).to_be_bytes());
            mac.update(field);
        }
        mac.finalize().into_bytes().into()
    }

    /// The code for one insert of one order; `attempt` moves on after a collision.
    pub fn code(
        &self,
        prefix: &str,
        order_id: &str,
        source_id: &str,
        insert_id: &str,
        attempt: u32,
    ) -> String {
        let mut mac = self.keyed.clone();
        for field in [
            order_id.as_bytes(),
            source_id.as_bytes(),
            insert_id.as_bytes(),
        ] {
            mac.update(&(field.len() as u64).to_be_bytes());
            mac.update(field);
        }
        mac.update(&8u64.to_be_bytes());
        mac.update(&u64::from(attempt).to_be_bytes());
        let digest = mac.finalize().into_bytes();
        let mut bits = u64::from_be_bytes([
            digest[0], digest[1], digest[2], digest[3], digest[4], digest[5], digest[6], digest[7],
        ]) >> 4;
        let mut body = [0u8; 12];
        for slot in body.iter_mut().rev() {
            *slot = CROCKFORD[(bits & 31) as usize];
            bits >>= 5;
        }
        format!("{prefix}-{}", String::from_utf8_lossy(&body))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_missing_key_is_created_once_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("data/coupon.key");
        let made = super::CouponKey::read_or_create(&path).unwrap();
        let again = super::CouponKey::read_or_create(&path).unwrap();
        assert_eq!(made.fingerprint(), again.fingerprint());
        assert_eq!(std::fs::read_to_string(&path).unwrap().trim().len(), 64);
    }

    use super::*;

    #[test]
    fn codes_are_deterministic_and_well_formed() {
        let k = CouponKey::from_bytes(vec![7; 32]);
        let a = k.code("THANKS", "O-1", "welcome", "coupon-10", 0);
        assert_eq!(a, k.code("THANKS", "O-1", "welcome", "coupon-10", 0));
        let body = a.strip_prefix("THANKS-").unwrap();
        assert_eq!(body.len(), 12);
        assert!(body.bytes().all(|b| CROCKFORD.contains(&b)));
        assert!(!body.contains(['I', 'L', 'O', 'U']));
    }

    #[test]
    fn codes_match_the_published_pattern() {
        let pattern = regex::Regex::new(CODE_PATTERN).unwrap();
        let k = CouponKey::from_bytes(vec![7; 32]);
        for (prefix, order) in [
            ("THANKS", "O-1"),
            ("PW", "O-2"),
            ("A1B2C3D4E5F6G7H8", "O-3"),
        ] {
            let code = k.code(prefix, order, "r", "i", 0);
            assert!(pattern.is_match(&code), "{code}");
        }
        // Every character of the alphabet, and none of I, L, O, U.
        let alphabet = String::from_utf8_lossy(CROCKFORD);
        for ch in 'A'..='Z' {
            let code = format!("P-{}", ch.to_string().repeat(12));
            assert_eq!(pattern.is_match(&code), alphabet.contains(ch), "{code}");
        }
        assert!(!pattern.is_match("thanks-7KQ2M9XW4PJR"));
        assert!(!pattern.is_match("THANKS-7KQ2M9XW4PJ"));
    }

    #[test]
    fn every_input_changes_the_code() {
        let k = CouponKey::from_bytes(vec![7; 32]);
        let base = k.code("P", "O-1", "r", "i", 0);
        assert_ne!(base, k.code("P", "O-1", "r2", "i", 0));
        assert_ne!(base, k.code("P", "O-1", "r", "i", 1));
        assert_ne!(base, k.code("P", "O-2", "r", "i", 0));
        // Length prefixes keep ("ab", "c") apart from ("a", "bc").
        assert_ne!(
            k.code("P", "ab", "c", "i", 0),
            k.code("P", "a", "bc", "i", 0)
        );
        assert_ne!(
            base,
            CouponKey::from_bytes(vec![8; 32]).code("P", "O-1", "r", "i", 0)
        );
    }

    #[test]
    fn key_files() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("k");
        assert!(CouponKey::read(&p).unwrap().is_none());
        std::fs::write(&p, "abcd").unwrap();
        assert!(CouponKey::read(&p).is_err());
        std::fs::write(&p, hex::encode([1u8; 32])).unwrap();
        let k = CouponKey::read(&p).unwrap().unwrap();
        assert!(!k.preview);
        assert_ne!(k.fingerprint(), CouponKey::preview().fingerprint());
    }
}

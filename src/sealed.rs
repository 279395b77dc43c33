//! Authenticated encryption with the cookie block key (AES-256-GCM): the pending-login cookie
//! of the OIDC round trip and IdP refresh tokens at rest. Output: base64url(nonce ‖ ciphertext
//! ‖ tag). The `purpose` is bound as associated data so one sealed value cannot be replayed
//! as another.

use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE_NO_PAD};
use base64::Engine;

pub struct Sealer {
    key: LessSafeKey,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sealer([redacted])")
    }
}

impl Sealer {
    /// From Flyte's `cookie_block_key` secret: base64 (padded or not) of 32 bytes.
    pub fn from_secret(secret: &[u8]) -> Result<Self, String> {
        let text = String::from_utf8_lossy(secret);
        let text = text.trim();
        let raw = STANDARD_NO_PAD
            .decode(text.trim_end_matches('='))
            .or_else(|_| STANDARD.decode(text))
            .map_err(|_| "cookie block key must be base64".to_string())?;
        if raw.len() != 32 {
            return Err(format!(
                "cookie block key must be 32 bytes, found {}",
                raw.len()
            ));
        }
        let key = UnboundKey::new(&AES_256_GCM, &raw).map_err(|_| "invalid key".to_string())?;
        Ok(Self {
            key: LessSafeKey::new(key),
        })
    }

    pub fn seal(&self, purpose: &str, plaintext: &[u8]) -> String {
        let nonce_bytes: [u8; NONCE_LEN] = crate::keys::random_bytes(NONCE_LEN)
            .try_into()
            .expect("nonce length");
        let mut buf = plaintext.to_vec();
        self.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce_bytes),
                Aad::from(purpose.as_bytes()),
                &mut buf,
            )
            .expect("AES-GCM sealing does not fail");
        let mut out = nonce_bytes.to_vec();
        out.extend_from_slice(&buf);
        URL_SAFE_NO_PAD.encode(out)
    }

    pub fn open(&self, purpose: &str, sealed: &str) -> Option<Vec<u8>> {
        let raw = URL_SAFE_NO_PAD.decode(sealed).ok()?;
        if raw.len() < NONCE_LEN + 16 {
            return None;
        }
        let (nonce, ct) = raw.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
        let mut buf = ct.to_vec();
        let plain = self
            .key
            .open_in_place(nonce, Aad::from(purpose.as_bytes()), &mut buf)
            .ok()?;
        Some(plain.to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_and_tamper() {
        let key = crate::keys::random_b64_secret(32);
        let s = Sealer::from_secret(key.as_bytes()).unwrap();
        let sealed = s.seal("login", b"hello");
        assert_eq!(s.open("login", &sealed).unwrap(), b"hello");
        assert!(s.open("other-purpose", &sealed).is_none());
        let mut bad = sealed.into_bytes();
        let i = bad.len() / 2;
        bad[i] = if bad[i] == b'A' { b'B' } else { b'A' };
        assert!(s
            .open("login", std::str::from_utf8(&bad).unwrap())
            .is_none());
        assert!(Sealer::from_secret(b"c2hvcnQ").is_err());
    }
}

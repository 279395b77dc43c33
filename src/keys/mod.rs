//! Signing keys of the built-in authorization server and the public keys that verify its
//! tokens: PEM parsing (PKCS#1 and PKCS#8), RFC 7638 thumbprints as key ids, the JWKS
//! document, JWT signing with a key parsed once, and key generation for `secret init`.

mod der;

use std::fmt;
use std::str::FromStr;

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{self, KeyPair};
use base64::engine::general_purpose::{STANDARD_NO_PAD, URL_SAFE_NO_PAD};
use base64::Engine;
use jsonwebtoken::Algorithm;
use serde_json::json;
use sha2::{Digest, Sha256};

/// The algorithms the built-in AS can sign with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SigningAlg {
    RS256,
    ES256,
    EdDSA,
}

impl FromStr for SigningAlg {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "RS256" => Ok(Self::RS256),
            "ES256" => Ok(Self::ES256),
            "EdDSA" => Ok(Self::EdDSA),
            other => Err(format!(
                "unsupported algorithm {other:?}; use RS256, ES256 or EdDSA"
            )),
        }
    }
}

impl SigningAlg {
    pub fn name(self) -> &'static str {
        match self {
            Self::RS256 => "RS256",
            Self::ES256 => "ES256",
            Self::EdDSA => "EdDSA",
        }
    }
    /// Whether a signature is short enough for an async worker: tens of microseconds for
    /// ECDSA P-256 and Ed25519, against ~0.2 ms for RSA-2048.
    pub fn signs_quickly(self) -> bool {
        !matches!(self, Self::RS256)
    }
    pub fn jwt_algorithm(self) -> Algorithm {
        match self {
            Self::RS256 => Algorithm::RS256,
            Self::ES256 => Algorithm::ES256,
            Self::EdDSA => Algorithm::EdDSA,
        }
    }
}

/// A key that failed to load.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("not a PEM document")]
    NotPem,
    #[error("unsupported PEM block {0:?}")]
    UnsupportedPem(String),
    #[error("the key was rejected: {0}")]
    Rejected(String),
    #[error("key generation failed")]
    Generation,
}

enum Private {
    Rsa(signature::RsaKeyPair),
    Ec(signature::EcdsaKeyPair),
    Ed(signature::Ed25519KeyPair),
}

/// A parsed private key, ready to sign (parsed once: signing never re-reads the PEM).
pub struct SigningKey {
    alg: SigningAlg,
    kid: String,
    private: Private,
    public: PublicKey,
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey")
            .field("alg", &self.alg)
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

/// The public half: its JWK and the verification key, parsed once (verifying a signature
/// never re-reads the key material).
#[derive(Clone)]
pub struct PublicKey {
    /// The one algorithm this key verifies.
    pub algorithm: Algorithm,
    pub kid: String,
    pub jwk: serde_json::Value,
    parsed: signature::ParsedPublicKey,
}

impl PublicKey {
    /// `key` is the key in aws-lc-rs's input form for `algorithm`: a PKCS#1 `RSAPublicKey`,
    /// an uncompressed EC point, or the 32 Ed25519 bytes. `None` if it does not parse or the
    /// algorithm is not an allowed asymmetric one.
    fn new(algorithm: Algorithm, kid: String, jwk: serde_json::Value, key: &[u8]) -> Option<Self> {
        let parsed =
            signature::ParsedPublicKey::new(verification_algorithm(algorithm)?, key).ok()?;
        Some(Self {
            algorithm,
            kid,
            jwk,
            parsed,
        })
    }

    /// Checks a JWS signature (already base64url-decoded) over its signing input
    /// (`header.payload`) with this key's one algorithm.
    pub fn verify_signature(&self, signing_input: &[u8], signature: &[u8]) -> bool {
        self.parsed.verify_sig(signing_input, signature).is_ok()
    }
}

/// Whether tokens signed with `alg` can be verified at all (the verifier's allow-list).
pub(crate) fn verifiable(alg: Algorithm) -> bool {
    verification_algorithm(alg).is_some()
}

/// The aws-lc-rs verification algorithm of a JWS `alg` (RFC 7518 §3); `None` for HMAC and
/// anything else that is not an asymmetric signature.
fn verification_algorithm(alg: Algorithm) -> Option<&'static dyn signature::VerificationAlgorithm> {
    Some(match alg {
        Algorithm::RS256 => &signature::RSA_PKCS1_2048_8192_SHA256,
        Algorithm::RS384 => &signature::RSA_PKCS1_2048_8192_SHA384,
        Algorithm::RS512 => &signature::RSA_PKCS1_2048_8192_SHA512,
        Algorithm::PS256 => &signature::RSA_PSS_2048_8192_SHA256,
        Algorithm::PS384 => &signature::RSA_PSS_2048_8192_SHA384,
        Algorithm::PS512 => &signature::RSA_PSS_2048_8192_SHA512,
        Algorithm::ES256 => &signature::ECDSA_P256_SHA256_FIXED,
        Algorithm::ES384 => &signature::ECDSA_P384_SHA384_FIXED,
        Algorithm::EdDSA => &signature::ED25519,
        _ => return None,
    })
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PublicKey")
            .field("algorithm", &self.algorithm)
            .field("kid", &self.kid)
            .finish()
    }
}

fn b64u(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// RFC 7638: SHA-256 over the required members in lexicographic order, no whitespace.
fn thumbprint(canonical: &str) -> String {
    b64u(&Sha256::digest(canonical.as_bytes()))
}

impl SigningKey {
    /// Loads a PEM private key: `RSA PRIVATE KEY` (PKCS#1, Flyte's format) or `PRIVATE KEY`
    /// (PKCS#8: RSA, P-256 or Ed25519, chosen by `alg`).
    pub fn from_pem(pem_bytes: &[u8], alg: SigningAlg) -> Result<Self, KeyError> {
        let doc = pem::parse(pem_bytes).map_err(|_| KeyError::NotPem)?;
        let der = doc.contents();
        let rejected = |e: &dyn fmt::Display| KeyError::Rejected(e.to_string());
        match (doc.tag(), alg) {
            ("RSA PRIVATE KEY", SigningAlg::RS256) => {
                Self::from_rsa(signature::RsaKeyPair::from_der(der).map_err(|e| rejected(&e))?)
            }
            ("PRIVATE KEY", SigningAlg::RS256) => {
                Self::from_rsa(signature::RsaKeyPair::from_pkcs8(der).map_err(|e| rejected(&e))?)
            }
            ("PRIVATE KEY", SigningAlg::ES256) => {
                let kp = signature::EcdsaKeyPair::from_pkcs8(
                    &signature::ECDSA_P256_SHA256_FIXED_SIGNING,
                    der,
                )
                .map_err(|e| rejected(&e))?;
                Self::from_ec(kp)
            }
            ("PRIVATE KEY", SigningAlg::EdDSA) => {
                let kp = signature::Ed25519KeyPair::from_pkcs8_maybe_unchecked(der)
                    .map_err(|e| rejected(&e))?;
                Self::from_ed(kp)
            }
            (tag, _) => Err(KeyError::UnsupportedPem(format!(
                "{tag} for {}",
                alg.name()
            ))),
        }
    }

    fn from_rsa(kp: signature::RsaKeyPair) -> Result<Self, KeyError> {
        let (n, e) = der::rsa_public_components(kp.public_key().as_ref())
            .ok_or_else(|| KeyError::Rejected("unreadable RSA public key".into()))?;
        let (n64, e64) = (b64u(&n), b64u(&e));
        let kid = thumbprint(&format!(r#"{{"e":"{e64}","kty":"RSA","n":"{n64}"}}"#));
        let jwk =
            json!({"kty": "RSA", "alg": "RS256", "use": "sig", "kid": kid, "n": n64, "e": e64});
        let public = PublicKey::new(Algorithm::RS256, kid.clone(), jwk, kp.public_key().as_ref())
            .ok_or_else(|| KeyError::Rejected("unusable RSA public key".into()))?;
        Ok(Self {
            alg: SigningAlg::RS256,
            kid,
            private: Private::Rsa(kp),
            public,
        })
    }

    fn from_ec(kp: signature::EcdsaKeyPair) -> Result<Self, KeyError> {
        let point = kp.public_key().as_ref();
        if point.len() != 65 || point[0] != 4 {
            return Err(KeyError::Rejected("unexpected P-256 point encoding".into()));
        }
        let (x, y) = (b64u(&point[1..33]), b64u(&point[33..]));
        let kid = thumbprint(&format!(
            r#"{{"crv":"P-256","kty":"EC","x":"{x}","y":"{y}"}}"#
        ));
        let jwk = json!({"kty": "EC", "crv": "P-256", "alg": "ES256", "use": "sig", "kid": kid, "x": x, "y": y});
        let public = PublicKey::new(Algorithm::ES256, kid.clone(), jwk, point)
            .ok_or_else(|| KeyError::Rejected("unusable P-256 public key".into()))?;
        Ok(Self {
            alg: SigningAlg::ES256,
            kid,
            private: Private::Ec(kp),
            public,
        })
    }

    fn from_ed(kp: signature::Ed25519KeyPair) -> Result<Self, KeyError> {
        let x = b64u(kp.public_key().as_ref());
        let kid = thumbprint(&format!(r#"{{"crv":"Ed25519","kty":"OKP","x":"{x}"}}"#));
        let jwk = json!({"kty": "OKP", "crv": "Ed25519", "alg": "EdDSA", "use": "sig", "kid": kid, "x": x});
        let public = PublicKey::new(Algorithm::EdDSA, kid.clone(), jwk, kp.public_key().as_ref())
            .ok_or_else(|| KeyError::Rejected("unusable Ed25519 public key".into()))?;
        Ok(Self {
            alg: SigningAlg::EdDSA,
            kid,
            private: Private::Ed(kp),
            public,
        })
    }

    pub fn alg(&self) -> SigningAlg {
        self.alg
    }
    pub fn kid(&self) -> &str {
        &self.kid
    }
    pub fn public(&self) -> &PublicKey {
        &self.public
    }

    /// Signs a JWT with header `{alg, typ, kid, key_id}` (`key_id` is Flyte's header name).
    pub fn sign_jwt<C: serde::Serialize + ?Sized>(&self, typ: &str, claims: &C) -> String {
        // Neither the header nor claims has a map with non-string keys, the one thing that
        // makes serde_json fail.
        let claims = serde_json::to_vec(claims).expect("JWT claims serialize");
        self.sign_jwt_payload(typ, &claims)
    }

    /// As [`Self::sign_jwt`], with the claims already serialized (a JSON object).
    pub fn sign_jwt_payload(&self, typ: &str, claims: &[u8]) -> String {
        #[derive(serde::Serialize)]
        struct Header<'a> {
            alg: &'a str,
            typ: &'a str,
            kid: &'a str,
            key_id: &'a str,
        }
        let header = Header {
            alg: self.alg.name(),
            typ,
            kid: &self.kid,
            key_id: &self.kid,
        };
        let header = serde_json::to_vec(&header).expect("a JWS header serializes");
        let mut out = String::with_capacity(1024);
        URL_SAFE_NO_PAD.encode_string(header, &mut out);
        out.push('.');
        URL_SAFE_NO_PAD.encode_string(claims, &mut out);
        let sig = self.sign(out.as_bytes());
        out.push('.');
        out.push_str(&b64u(&sig));
        out
    }

    #[allow(clippy::disallowed_methods)] // keys/ is where the system RNG is drawn
    fn sign(&self, msg: &[u8]) -> Vec<u8> {
        let rng = SystemRandom::new();
        match &self.private {
            Private::Rsa(kp) => {
                let mut sig = vec![0u8; kp.public_modulus_len()];
                kp.sign(&signature::RSA_PKCS1_SHA256, &rng, msg, &mut sig)
                    .expect("RSA signing with a validated key cannot fail");
                sig
            }
            Private::Ec(kp) => kp
                .sign(&rng, msg)
                .expect("ECDSA signing with a validated key cannot fail")
                .as_ref()
                .to_vec(),
            Private::Ed(kp) => kp.sign(msg).as_ref().to_vec(),
        }
    }
}

/// The keys of the built-in AS: the current one signs, both verify.
#[derive(Debug)]
pub struct KeySet {
    pub current: SigningKey,
    pub old: Option<PublicKey>,
}

impl KeySet {
    /// Public keys that verify tokens, current first.
    pub fn verification_keys(&self) -> Vec<PublicKey> {
        std::iter::once(self.current.public.clone())
            .chain(self.old.clone())
            .collect()
    }

    /// The JWKS document: the current key, then the old one.
    pub fn jwks(&self) -> serde_json::Value {
        let keys: Vec<_> = self
            .verification_keys()
            .into_iter()
            .map(|k| k.jwk)
            .collect();
        json!({ "keys": keys })
    }
}

/// A new RSA-2048 private key as PKCS#1 PEM (`RSA PRIVATE KEY`), as Flyte's `secret init`.
pub fn generate_rsa_pem() -> Result<String, KeyError> {
    let kp = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048)
        .map_err(|_| KeyError::Generation)?;
    let pkcs8 = kp.as_der().map_err(|_| KeyError::Generation)?;
    let pkcs1 = der::pkcs8_to_pkcs1(pkcs8.as_ref()).ok_or(KeyError::Generation)?;
    Ok(pem::encode(&pem::Pem::new("RSA PRIVATE KEY", pkcs1)))
}

/// A new private key for `alg` as PKCS#8 PEM (RSA keys use PKCS#1, see [`generate_rsa_pem`]).
#[allow(clippy::disallowed_methods)] // keys/ is where the system RNG is drawn
pub fn generate_pem(alg: SigningAlg) -> Result<String, KeyError> {
    let rng = SystemRandom::new();
    let der = match alg {
        SigningAlg::RS256 => return generate_rsa_pem(),
        SigningAlg::ES256 => signature::EcdsaKeyPair::generate_pkcs8(
            &signature::ECDSA_P256_SHA256_FIXED_SIGNING,
            &rng,
        )
        .map_err(|_| KeyError::Generation)?
        .as_ref()
        .to_vec(),
        SigningAlg::EdDSA => signature::Ed25519KeyPair::generate()
            .and_then(|kp| kp.to_pkcs8())
            .map_err(|_| KeyError::Generation)?
            .as_ref()
            .to_vec(),
    };
    Ok(pem::encode(&pem::Pem::new("PRIVATE KEY", der)))
}

/// `n` random bytes encoded as Flyte's `secret init` does (base64 std, no padding).
pub(crate) fn random_b64_secret(n: usize) -> String {
    STANDARD_NO_PAD.encode(random_bytes(n))
}

/// Cryptographically random bytes.
#[allow(clippy::disallowed_methods)] // keys/ is where the system RNG is drawn
pub fn random_bytes(n: usize) -> Vec<u8> {
    let mut buf = vec![0u8; n];
    aws_lc_rs::rand::fill(&mut buf).expect("the system RNG does not fail");
    buf
}

/// A 256-bit random opaque token, base64url (codes, refresh tokens, session ids).
pub fn random_token() -> String {
    b64u(&random_bytes(32))
}

/// A verification key from a JWKS entry (external authorization servers). The algorithm is the
/// JWK's `alg`, else the usual one for its type; keys meant for encryption are skipped.
pub fn public_key_from_jwk(jwk: &serde_json::Value) -> Option<PublicKey> {
    if jwk
        .get("use")
        .and_then(|u| u.as_str())
        .is_some_and(|u| u != "sig")
    {
        return None;
    }
    let algorithm = match jwk.get("alg").and_then(|a| a.as_str()) {
        Some(a) => a.parse::<Algorithm>().ok()?,
        None => match (
            jwk.get("kty").and_then(|k| k.as_str()),
            jwk.get("crv").and_then(|c| c.as_str()),
        ) {
            (Some("RSA"), _) => Algorithm::RS256,
            (Some("EC"), Some("P-256")) => Algorithm::ES256,
            (Some("EC"), Some("P-384")) => Algorithm::ES384,
            (Some("OKP"), Some("Ed25519")) => Algorithm::EdDSA,
            _ => return None,
        },
    };
    if matches!(
        algorithm,
        Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512
    ) {
        return None;
    }
    let kid = jwk
        .get("kid")
        .and_then(|k| k.as_str())
        .unwrap_or_default()
        .to_owned();
    let key = jwk_key_bytes(jwk, algorithm)?;
    PublicKey::new(algorithm, kid, jwk.clone(), &key)
}

/// The key material of a JWK in aws-lc-rs's input form for `algorithm` (see
/// [`PublicKey::new`]); `None` when the key type or curve does not fit the algorithm.
fn jwk_key_bytes(jwk: &serde_json::Value, algorithm: Algorithm) -> Option<Vec<u8>> {
    let text = |name: &str| jwk.get(name).and_then(|v| v.as_str());
    let bytes = |name: &str| {
        URL_SAFE_NO_PAD
            .decode(text(name)?.trim_end_matches('='))
            .ok()
    };
    let ec_point = |len: usize| {
        let (x, y) = (bytes("x")?, bytes("y")?);
        (x.len() == len && y.len() == len).then(|| [&[4u8][..], &x, &y].concat())
    };
    match (text("kty")?, text("crv"), algorithm) {
        (
            "RSA",
            _,
            Algorithm::RS256
            | Algorithm::RS384
            | Algorithm::RS512
            | Algorithm::PS256
            | Algorithm::PS384
            | Algorithm::PS512,
        ) => Some(der::rsa_public_key(&bytes("n")?, &bytes("e")?)),
        ("EC", Some("P-256"), Algorithm::ES256) => ec_point(32),
        ("EC", Some("P-384"), Algorithm::ES384) => ec_point(48),
        ("OKP", Some("Ed25519"), Algorithm::EdDSA) => bytes("x").filter(|x| x.len() == 32),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rsa_pkcs1_and_pkcs8_give_the_same_kid() {
        let pem1 = generate_rsa_pem().unwrap();
        assert!(pem1.contains("BEGIN RSA PRIVATE KEY"));
        let k1 = SigningKey::from_pem(pem1.as_bytes(), SigningAlg::RS256).unwrap();
        let doc = pem::parse(pem1.as_bytes()).unwrap();
        let kp = signature::RsaKeyPair::from_der(doc.contents()).unwrap();
        let pkcs8 =
            aws_lc_rs::encoding::AsDer::<aws_lc_rs::encoding::Pkcs8V1Der>::as_der(&kp).unwrap();
        let pem8 = pem::encode(&pem::Pem::new("PRIVATE KEY", pkcs8.as_ref().to_vec()));
        let k8 = SigningKey::from_pem(pem8.as_bytes(), SigningAlg::RS256).unwrap();
        assert_eq!(k1.kid(), k8.kid());
        assert_eq!(k1.kid().len(), 43);
    }

    #[test]
    fn every_algorithm_signs_what_jsonwebtoken_verifies() {
        for alg in [SigningAlg::RS256, SigningAlg::ES256, SigningAlg::EdDSA] {
            let pem = generate_pem(alg).unwrap();
            let key = SigningKey::from_pem(pem.as_bytes(), alg).unwrap();
            let jwt = key.sign_jwt("at+jwt", &json!({"sub": "x", "exp": 4_000_000_000u64}));
            let mut v = jsonwebtoken::Validation::new(alg.jwt_algorithm());
            v.validate_aud = false;
            // An independent implementation checks our signatures (and our JWK).
            let jwk: jsonwebtoken::jwk::Jwk =
                serde_json::from_value(key.public().jwk.clone()).unwrap();
            let decoding = jsonwebtoken::DecodingKey::from_jwk(&jwk).unwrap();
            let data = jsonwebtoken::decode::<serde_json::Value>(&jwt, &decoding, &v)
                .unwrap_or_else(|e| panic!("{alg:?}: {e}"));
            assert_eq!(data.claims["sub"], "x");
            assert_eq!(data.header.kid.as_deref(), Some(key.kid()));
            assert_eq!(
                data.header.extras.get("key_id").map(String::as_str),
                Some(key.kid())
            );
        }
    }

    #[test]
    fn garbage_is_rejected() {
        assert!(matches!(
            SigningKey::from_pem(b"nope", SigningAlg::RS256),
            Err(KeyError::NotPem)
        ));
    }
}

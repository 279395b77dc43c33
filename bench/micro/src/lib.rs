//! Fixtures for the verification micro-benchmarks (`benches/verify.rs`): a key generated in
//! process, an access token shaped like the built-in AS's client-credentials tokens, a
//! [`TokenVerifier`] that accepts it, and the raw pieces (signing input, signature, public key
//! bytes) that let aws-lc-rs be measured on its own.
//!
//! Only flyteauth's public API is used; the public key bytes come from the key's JWK.

use std::sync::Arc;

use aws_lc_rs::signature::{self, ParsedPublicKey, UnparsedPublicKey, VerificationAlgorithm};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use flyteauth::testing::KeySource;
use flyteauth::testing::DEFAULT_LEEWAY_SECS;
use flyteauth::testing::{TokenVerifier, VerifierSettings};
use flyteauth::testing::{Clock, SharedClock, SystemClock};
use flyteauth::testing::{generate_pem, random_token, SigningAlg, SigningKey};
use serde_json::{json, Value};

/// The deployment's public URL: issuer and audience of the token.
pub const PUBLIC_URL: &str = "https://flyte.example.com";

/// The algorithms the built-in AS signs with.
pub const ALGS: [SigningAlg; 3] = [SigningAlg::RS256, SigningAlg::ES256, SigningAlg::EdDSA];

/// A key, a token it signed, and what is needed to verify that token.
pub struct Fixture {
    pub alg: SigningAlg,
    pub key: SigningKey,
    pub token: String,
}

/// The claims `authz_server::issue` puts in a client-credentials access token (the static
/// `flytepropeller` client, default scopes, one-hour lifetime).
pub fn client_credentials_claims(now: i64) -> Value {
    let client = "flytepropeller";
    json!({
        "iss": PUBLIC_URL,
        "aud": [PUBLIC_URL],
        "sub": client,
        "client_id": client,
        "scp": ["all"],
        "iat": now,
        "nbf": now,
        "exp": now + 3600,
        "jti": random_token(),
        "auth_time": now,
    })
}

impl Fixture {
    /// Generates a key for `alg` (RSA: 2048 bits) and signs a client-credentials token.
    pub fn new(alg: SigningAlg) -> Self {
        let pem = generate_pem(alg).expect("key generation");
        let key = SigningKey::from_pem(pem.as_bytes(), alg).expect("generated key loads");
        let token = key.sign_jwt("at+jwt", &client_credentials_claims(SystemClock.now()));
        Self { alg, key, token }
    }

    /// A verifier that trusts this key, with the settings the service uses by default
    /// (`requiredScopes: [all]`, 60 s leeway) and `cache_entries` cached tokens (0: no cache).
    pub fn verifier(&self, cache_entries: usize) -> TokenVerifier {
        let clock: SharedClock = Arc::new(SystemClock);
        TokenVerifier::new(
            VerifierSettings {
                keys: KeySource::Static(vec![self.key.public().clone()]),
                issuers: vec![PUBLIC_URL.into()],
                audiences: vec![PUBLIC_URL.into()],
                required_scopes: vec!["all".into()],
                cache_entries,
                leeway_secs: DEFAULT_LEEWAY_SECS,
            },
            clock,
        )
    }

    /// `header.payload`: the bytes the signature covers.
    pub fn signing_input(&self) -> &[u8] {
        let dot = self.token.rfind('.').expect("JWS compact serialization");
        &self.token.as_bytes()[..dot]
    }

    /// The signature, base64url-decoded.
    pub fn signature(&self) -> Vec<u8> {
        let dot = self.token.rfind('.').expect("JWS compact serialization");
        URL_SAFE_NO_PAD
            .decode(&self.token[dot + 1..])
            .expect("base64url signature")
    }

    /// aws-lc-rs's verification algorithm for this key.
    pub fn verification_alg(&self) -> &'static dyn VerificationAlgorithm {
        match self.alg {
            SigningAlg::RS256 => &signature::RSA_PKCS1_2048_8192_SHA256,
            SigningAlg::ES256 => &signature::ECDSA_P256_SHA256_FIXED,
            SigningAlg::EdDSA => &signature::ED25519,
        }
    }

    /// The public key in the form aws-lc-rs takes, from the JWK: RSA as a PKCS#1
    /// `RSAPublicKey` DER, P-256 as the uncompressed point `04 || x || y`, Ed25519 as `x`.
    pub fn public_key_bytes(&self) -> Vec<u8> {
        let jwk = &self.key.public().jwk;
        let field = |name: &str| -> Vec<u8> {
            let v = jwk[name]
                .as_str()
                .unwrap_or_else(|| panic!("JWK has no {name}"));
            URL_SAFE_NO_PAD.decode(v).expect("base64url JWK member")
        };
        match self.alg {
            SigningAlg::RS256 => rsa_public_key_der(&field("n"), &field("e")),
            SigningAlg::ES256 => {
                let mut point = vec![0x04];
                point.extend(field("x"));
                point.extend(field("y"));
                point
            }
            SigningAlg::EdDSA => field("x"),
        }
    }

    /// The public key parsed once.
    pub fn parsed_public_key(&self) -> ParsedPublicKey {
        ParsedPublicKey::new(self.verification_alg(), self.public_key_bytes())
            .expect("aws-lc-rs accepts the public key")
    }

    /// The public key, to be parsed on every verification.
    pub fn unparsed_public_key(&self) -> UnparsedPublicKey<Vec<u8>> {
        UnparsedPublicKey::new(self.verification_alg(), self.public_key_bytes())
    }
}

/// DER `RSAPublicKey ::= SEQUENCE { modulus INTEGER, publicExponent INTEGER }` (RFC 8017).
pub fn rsa_public_key_der(n: &[u8], e: &[u8]) -> Vec<u8> {
    let mut body = der_integer(n);
    body.extend(der_integer(e));
    der_tlv(0x30, &body)
}

/// A DER INTEGER from unsigned big-endian bytes.
fn der_integer(unsigned: &[u8]) -> Vec<u8> {
    let start = unsigned
        .iter()
        .position(|&b| b != 0)
        .unwrap_or(unsigned.len().saturating_sub(1));
    let digits = &unsigned[start..];
    let mut value = Vec::with_capacity(digits.len() + 1);
    if digits.first().is_none_or(|&b| b & 0x80 != 0) {
        value.push(0); // positive, or zero
    }
    value.extend_from_slice(digits);
    der_tlv(0x02, &value)
}

fn der_tlv(tag: u8, value: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let len = value.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes: Vec<u8> = len
            .to_be_bytes()
            .into_iter()
            .skip_while(|&b| b == 0)
            .collect();
        out.push(0x80 | bytes.len() as u8);
        out.extend(bytes);
    }
    out.extend_from_slice(value);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The fixtures are right: the verifier accepts the token, and aws-lc-rs accepts the raw
    /// signature both ways (so the benchmarks measure the success path).
    #[test]
    fn every_fixture_verifies() {
        for alg in ALGS {
            let f = Fixture::new(alg);
            let id = f.verifier(0).verify(&f.token).expect("token verifies");
            assert_eq!(id.subject, "flytepropeller");
            assert!(
                (550..=950).contains(&f.token.len()),
                "{alg:?}: {} bytes",
                f.token.len()
            );
            let sig = f.signature();
            f.parsed_public_key()
                .verify_sig(f.signing_input(), &sig)
                .expect("parsed key verifies");
            f.unparsed_public_key()
                .verify(f.signing_input(), &sig)
                .expect("unparsed key verifies");
            let mut bad = sig.clone();
            bad[0] ^= 1;
            assert!(f
                .parsed_public_key()
                .verify_sig(f.signing_input(), &bad)
                .is_err());
        }
    }

    #[test]
    fn der_integers() {
        assert_eq!(der_integer(&[0x01, 0x00, 0x01]), [2, 3, 1, 0, 1]);
        assert_eq!(der_integer(&[0x80]), [2, 2, 0, 0x80]);
        assert_eq!(der_integer(&[0, 0, 5]), [2, 1, 5]);
        assert_eq!(der_integer(&[0]), [2, 1, 0]);
        assert_eq!(der_tlv(0x30, &[0; 300])[..4], [0x30, 0x82, 0x01, 0x2c]);
    }
}

/// Fixtures for `benches/authz.rs`: an [`Authorizer`](flyteauth::testing::Authorizer)
/// with many bindings, a user in a few groups, and encoded requests.
pub mod authz {
    use flyteauth::testing::{compile, BindingFile};
    use flyteauth::testing::{Authorizer, Table};
    use flyteauth::testing::{Credential, Identity, UserInfo};
    use prost::Message;
    use prost_reflect::{DynamicMessage, Value};

    pub const CREATE_EXECUTION: &str = "/flyteidl.service.AdminService/CreateExecution";

    /// `n` bindings: group `team-<i>` is contributor on project `p-<i>` (development,
    /// staging), plus `everyone` viewer everywhere.
    pub fn authorizer(n: usize) -> Authorizer {
        let mut files: Vec<BindingFile> = (0..n - 1)
            .map(|i| BindingFile {
                role: "contributor".into(),
                groups: vec![format!("team-{i}")],
                projects: vec![format!("p-{i}")],
                domains: vec!["development".into(), "staging".into()],
                ..Default::default()
            })
            .collect();
        files.push(BindingFile {
            role: "viewer".into(),
            groups: vec!["everyone".into()],
            projects: vec!["*".into()],
            domains: vec!["*".into()],
            ..Default::default()
        });
        let bindings = compile(&files, &Default::default()).expect("valid bindings");
        Authorizer::new(Table::shared(), bindings, "groups".into(), None)
    }

    pub fn user(groups: &[&str]) -> Identity {
        let mut claims = serde_json::Map::new();
        claims.insert("groups".into(), serde_json::json!(groups));
        Identity {
            subject: "alice".into(),
            client_id: Some("flytectl".into()),
            scopes: vec!["all".into()],
            user_info: UserInfo::default(),
            claims,
            expires_at: i64::MAX,
            token_id: None,
            credential: Credential::Bearer,
        }
    }

    /// An `ExecutionCreateRequest` for `project`/`domain` with a launch plan reference.
    pub fn create_execution(project: &str, domain: &str) -> Vec<u8> {
        let table = Table::shared();
        let entry = table
            .get(CREATE_EXECUTION.trim_start_matches('/'))
            .expect("mapped");
        let mut m = DynamicMessage::new(entry.input.clone());
        m.set_field_by_name("project", Value::String(project.into()));
        m.set_field_by_name("domain", Value::String(domain.into()));
        m.set_field_by_name("name", Value::String("f6a8e1c2b3d4".into()));
        m.encode_to_vec()
    }
}

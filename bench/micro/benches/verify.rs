//! Access-token verification, per algorithm (see ../README.md):
//!
//! - `verify_cold/<alg>`: `TokenVerifier::verify` with the token cache off: header, key
//!   lookup, signature, claims, identity.
//! - `raw_signature/<alg>`: aws-lc-rs `ParsedPublicKey::verify_sig` on the same token (key
//!   parsed once): the floor for the signature step.
//! - `raw_signature_unparsed/<alg>`: `UnparsedPublicKey::verify`, which parses the key on
//!   every call.
//! - `cache_hit`: `verify` of a token that is already in the cache (RS256).

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use flyteauth_micro_bench::{Fixture, ALGS};

fn bench_verify(c: &mut Criterion) {
    let fixtures: Vec<Fixture> = ALGS.into_iter().map(Fixture::new).collect();
    for f in &fixtures {
        eprintln!("{} token: {} bytes", f.alg.name(), f.token.len());
    }

    let mut cold = c.benchmark_group("verify_cold");
    for f in &fixtures {
        let verifier = f.verifier(0);
        verifier.verify(&f.token).expect("token verifies");
        cold.bench_function(f.alg.name(), |b| {
            b.iter(|| verifier.verify(black_box(&f.token)).unwrap())
        });
    }
    cold.finish();

    let mut raw = c.benchmark_group("raw_signature");
    for f in &fixtures {
        let key = f.parsed_public_key();
        let (input, sig) = (f.signing_input(), f.signature());
        raw.bench_function(f.alg.name(), |b| {
            b.iter(|| key.verify_sig(black_box(input), black_box(&sig)).unwrap())
        });
    }
    raw.finish();

    let mut unparsed = c.benchmark_group("raw_signature_unparsed");
    for f in &fixtures {
        let key = f.unparsed_public_key();
        let (input, sig) = (f.signing_input(), f.signature());
        unparsed.bench_function(f.alg.name(), |b| {
            b.iter(|| key.verify(black_box(input), black_box(&sig)).unwrap())
        });
    }
    unparsed.finish();

    let f = &fixtures[0];
    let verifier = f.verifier(1024);
    verifier.verify(&f.token).expect("token verifies");
    assert_eq!(verifier.cache().len(), 1, "the token is cached");
    c.bench_function("cache_hit", |b| {
        b.iter(|| verifier.verify(black_box(&f.token)).unwrap())
    });
}

criterion_group!(benches, bench_verify);
criterion_main!(benches);

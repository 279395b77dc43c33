//! `make bench` phases 1 and 4: the signing limit, measured with the library flyteauth signs
//! with. `THREADS` threads (default 1) each sign a token-sized JWT with one fresh `ALG` key
//! (default RS256, RSA-2048; flyteauth's own `SigningKey::sign_jwt_payload`: SHA-256, the
//! signature, base64url) for `SECONDS` (default 3) after a short warm-up. Prints one JSON
//! line: `signatures` (all threads), `per_second` (all threads: the machine's limit when
//! `THREADS` = its cores) and `seconds_per_signature` (one thread's time for one signature).
//!
//! Usage: `sign_speed [SECONDS] [THREADS] [RS256|ES256|EdDSA]`

use std::time::{Duration, Instant};

use flyteauth::testing::{generate_pem, SigningAlg, SigningKey};

fn main() {
    let mut args = std::env::args().skip(1);
    let seconds: f64 = args
        .next()
        .map(|s| s.parse().expect("SECONDS is a number"))
        .unwrap_or(3.0);
    let threads: usize = args
        .next()
        .map(|s| s.parse().expect("THREADS is a number"))
        .unwrap_or(1);
    let alg: SigningAlg = args
        .next()
        .map(|s| s.parse().expect("ALG is RS256, ES256 or EdDSA"))
        .unwrap_or(SigningAlg::RS256);
    let pem = generate_pem(alg).expect("a key");
    let key = SigningKey::from_pem(pem.as_bytes(), alg).expect("the key loads");
    // About the size of a client token's claims.
    let claims = format!(
        r#"{{"iss":"http://127.0.0.1:18480","aud":["http://127.0.0.1:18480"],"sub":"flytepropeller","client_id":"flytepropeller","scp":["all"],"iat":1764400000,"nbf":1764400000,"exp":1764401800,"jti":"{}","auth_time":1764400000}}"#,
        "j".repeat(43)
    );
    let run = |limit: Duration| {
        let start = Instant::now();
        let mut n = 0u64;
        while start.elapsed() < limit {
            std::hint::black_box(key.sign_jwt_payload("at+jwt", claims.as_bytes()));
            n += 1;
        }
        (n, start.elapsed().as_secs_f64())
    };
    let results: Vec<(u64, f64)> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                s.spawn(|| {
                    run(Duration::from_millis(300));
                    run(Duration::from_secs_f64(seconds))
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|w| w.join().expect("a signing thread"))
            .collect()
    });
    let signatures: u64 = results.iter().map(|(n, _)| n).sum();
    let per_second: f64 = results.iter().map(|(n, t)| *n as f64 / t).sum();
    let per_signature = threads as f64 / per_second;
    println!(
        "{{\"threads\": {threads}, \"signatures\": {signatures}, \"per_second\": {per_second:.1}, \"seconds_per_signature\": {per_signature:.7}}}"
    );
}

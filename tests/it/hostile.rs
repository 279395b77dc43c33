//! Hostile networks (DESIGN.md §14, issue 21): each test fails when its rule is removed.

use std::net::IpAddr;
use std::time::Duration;

use reqwest::redirect::Policy;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::authz::{
    browser, challenge, code_for, location, login_and_authorize, query, redeem_form, token, ALICE,
    VERIFIER,
};
use crate::support::{form_field, localhost_tls, page, TestServer};

/// A cookie-keeping client whose connections come from `addr` (any 127/8 address works on
/// Linux loopback).
fn browser_from(addr: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(Policy::none())
        .cookie_store(true)
        .local_address(addr.parse::<IpAddr>().unwrap())
        .build()
        .unwrap()
}

/// The login form's CSRF token (and its cookie, kept by `b`).
async fn login_csrf(s: &TestServer, b: &reqwest::Client) -> String {
    let page = page(b, &format!("{}/login", s.url)).await;
    form_field(&page, "csrf_token").expect("login form")
}

async fn login_status(s: &TestServer, b: &reqwest::Client, user: &str, password: &str) -> u16 {
    let csrf = login_csrf(s, b).await;
    b.post(format!("{}/login", s.url))
        .form(&[
            ("username", user),
            ("password", password),
            ("csrf_token", &csrf),
        ])
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

fn alice_password(s: &TestServer) -> String {
    std::fs::read_to_string(s.dir.path().join("secrets/alice_pw"))
        .unwrap()
        .trim()
        .to_owned()
}

fn propeller_secret(s: &TestServer) -> String {
    std::fs::read_to_string(s.dir.path().join("secrets/flytepropeller_client_secret"))
        .unwrap()
        .trim()
        .to_owned()
}

async fn client_credentials(s: &TestServer, from: &str, secret: &str) -> (u16, Value) {
    let r = reqwest::Client::builder()
        .local_address(from.parse::<IpAddr>().unwrap())
        .build()
        .unwrap()
        .post(format!("{}/oauth2/token", s.url))
        .basic_auth("flytepropeller", Some(secret))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

fn count(statuses: &[u16], status: u16) -> usize {
    statuses.iter().filter(|s| **s == status).count()
}

// ------------------------------------------------------------------ 5: atomic failure limits

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_burst_of_wrong_passwords_cannot_exceed_the_limit() {
    let s = TestServer::start_with(ALICE).await;
    let b = browser();
    let csrf = login_csrf(&s, &b).await;
    let mut burst = tokio::task::JoinSet::new();
    for _ in 0..40 {
        let (b, url, csrf) = (b.clone(), format!("{}/login", s.url), csrf.clone());
        burst.spawn(async move {
            b.post(url)
                .form(&[
                    ("username", "alice"),
                    ("password", "wrong"),
                    ("csrf_token", csrf.as_str()),
                ])
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        });
    }
    let statuses: Vec<u16> = burst.join_all().await;
    assert_eq!(
        (count(&statuses, 401), count(&statuses, 429)),
        (10, 30),
        "exactly the 10 allowed attempts are checked: {statuses:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_burst_of_wrong_client_secrets_cannot_exceed_the_limit() {
    let s = TestServer::start().await;
    let mut burst = tokio::task::JoinSet::new();
    for _ in 0..60 {
        let url = format!("{}/oauth2/token", s.url);
        burst.spawn(async move {
            reqwest::Client::new()
                .post(url)
                .basic_auth("flytepropeller", Some("guess"))
                .form(&[("grant_type", "client_credentials")])
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        });
    }
    let statuses: Vec<u16> = burst.join_all().await;
    assert_eq!(
        (count(&statuses, 401), count(&statuses, 429)),
        (20, 40),
        "{statuses:?}"
    );
}

// ------------------------------------------------------------ 6: no lock-out of the caller

#[tokio::test]
async fn wrong_passwords_from_one_address_do_not_lock_the_user_out_elsewhere() {
    let s = TestServer::start_with(ALICE).await;
    let attacker = browser_from("127.0.0.2");
    for _ in 0..10 {
        assert_eq!(login_status(&s, &attacker, "alice", "wrong").await, 401);
    }
    let password = alice_password(&s);
    assert_eq!(
        login_status(&s, &attacker, "alice", &password).await,
        429,
        "the failing address is locked, even with the right password"
    );
    assert_eq!(
        login_status(&s, &browser_from("127.0.0.3"), "alice", &password).await,
        303,
        "the user signs in from another address"
    );
}

#[tokio::test]
async fn wrong_secrets_from_elsewhere_never_stop_propeller() {
    let s = TestServer::start().await;
    for _ in 0..20 {
        assert_eq!(client_credentials(&s, "127.0.0.2", "guess").await.0, 401);
    }
    let secret = propeller_secret(&s);
    assert_eq!(client_credentials(&s, "127.0.0.2", &secret).await.0, 429);
    let (status, body) = client_credentials(&s, "127.0.0.3", &secret).await;
    assert_eq!(status, 200, "propeller at its own address: {body}");
}

// ---------------------------------------------------------- 15: server.trustedProxies

#[tokio::test]
async fn the_client_address_comes_from_trusted_proxies_only() {
    let login_via = |s: &TestServer, b: reqwest::Client, xff: &'static str, password: String| {
        let url = s.url.clone();
        async move {
            let page = b
                .get(format!("{url}/login"))
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap();
            let marker = "name=\"csrf_token\" value=\"";
            let start = page.find(marker).unwrap() + marker.len();
            let csrf = page[start..start + page[start..].find('"').unwrap()].to_owned();
            b.post(format!("{url}/login"))
                .header("x-forwarded-for", xff)
                .form(&[
                    ("username", "alice"),
                    ("password", password.as_str()),
                    ("csrf_token", csrf.as_str()),
                ])
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    // Behind a trusted ingress, the forwarded address is the one that is limited.
    let s = TestServer::start_with(&format!(
        "server:\n  httpPort: 0\n  trustedProxies: [127.0.0.0/8]\n{ALICE}"
    ))
    .await;
    for _ in 0..10 {
        let st = login_via(&s, browser(), "203.0.113.7", "wrong".into()).await;
        assert_eq!(st, 401);
    }
    let password = alice_password(&s);
    assert_eq!(
        login_via(&s, browser(), "203.0.113.7", password.clone()).await,
        429
    );
    assert_eq!(
        login_via(&s, browser(), "6.6.6.6, 203.0.113.8", password).await,
        303,
        "another client behind the same ingress (a forged left-most hop is ignored)"
    );

    // Nothing is trusted by default: the header changes nothing.
    let s = TestServer::start_with(ALICE).await;
    for _ in 0..10 {
        let st = login_via(&s, browser(), "203.0.113.7", "wrong".into()).await;
        assert_eq!(st, 401);
    }
    let password = alice_password(&s);
    assert_eq!(
        login_via(&s, browser(), "203.0.113.8", password).await,
        429,
        "an untrusted peer cannot pick its address"
    );
}

// ------------------------------------------------------------- 7, 8: PKCE, grant types

fn clients_yaml() -> String {
    format!(
        "{ALICE}  appAuth:\n    selfAuthServer:\n      staticClients:\n{}{}{}",
        "        web: { id: web, client_secret_secret_name: web_secret, redirect_uris: ['https://app.example/cb'], grant_types: [authorization_code, refresh_token], response_types: [code], scopes: [all, offline], require_pkce: false }\n",
        "        strict: { id: strict, client_secret_secret_name: strict_secret, redirect_uris: ['https://app.example/cb'], grant_types: [authorization_code], response_types: [code], scopes: [all] }\n",
        "        machine: { id: machine, client_secret_secret_name: machine_secret, redirect_uris: ['https://app.example/cb'], grant_types: [client_credentials], response_types: [code], scopes: [all] }\n",
    )
}

fn web_authorize(s: &TestServer, client: &str, extra: &str) -> String {
    format!(
        "{}/oauth2/authorize?response_type=code&client_id={client}&redirect_uri=https%3A%2F%2Fapp.example%2Fcb&scope=all&state=st-1{extra}",
        s.url
    )
}

fn secret_of(s: &TestServer, name: &str) -> String {
    std::fs::read_to_string(s.dir.path().join("secrets").join(name))
        .unwrap()
        .trim()
        .to_owned()
}

#[tokio::test]
async fn pkce_downgrade_and_confidential_clients_without_pkce() {
    let dir = std::sync::Arc::new(tempfile::tempdir().unwrap());
    std::fs::create_dir_all(dir.path().join("secrets")).unwrap();
    for name in ["web_secret", "strict_secret", "machine_secret"] {
        std::fs::write(
            dir.path().join("secrets").join(name),
            flyteauth::testing::random_token(),
        )
        .unwrap();
    }
    let s = TestServer::start_in(dir, &clients_yaml()).await;
    let b = browser();
    let web_secret = secret_of(&s, "web_secret");
    let redeem = |code: String, verifier: Option<&'static str>| {
        let mut form = vec![
            ("grant_type", "authorization_code".to_owned()),
            ("code", code),
            ("redirect_uri", "https://app.example/cb".to_owned()),
        ];
        if let Some(v) = verifier {
            form.push(("code_verifier", v.to_owned()));
        }
        let url = format!("{}/oauth2/token", s.url);
        let secret = web_secret.clone();
        async move {
            let r = reqwest::Client::new()
                .post(url)
                .basic_auth("web", Some(secret))
                .form(&form)
                .send()
                .await
                .unwrap();
            (r.status().as_u16(), r.json::<Value>().await.unwrap())
        }
    };

    // RFC 9700 §4.8.2: a code issued without a challenge, redeemed with a verifier: refused.
    let redirect = login_and_authorize(&s, &b, &web_authorize(&s, "web", "")).await;
    let code = query(&redirect, "code").expect("web may skip PKCE (require_pkce: false)");
    let (status, body) = redeem(code, Some(VERIFIER)).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant")),
        "{body}"
    );
    // The same client without a verifier is fine (it is configured so).
    let redirect = login_and_authorize(&s, &b, &web_authorize(&s, "web", "")).await;
    let (status, body) = redeem(query(&redirect, "code").unwrap(), None).await;
    assert_eq!(status, 200, "{body}");

    // A confidential client needs PKCE unless configured otherwise.
    let redirect = login_and_authorize(&s, &b, &web_authorize(&s, "strict", "")).await;
    assert!(
        redirect.starts_with("https://app.example/cb?"),
        "{redirect}"
    );
    assert_eq!(
        query(&redirect, "error").as_deref(),
        Some("invalid_request")
    );
    assert!(query(&redirect, "code").is_none());
    let redirect = login_and_authorize(
        &s,
        &b,
        &web_authorize(
            &s,
            "strict",
            &format!(
                "&code_challenge={}&code_challenge_method=S256",
                challenge(VERIFIER)
            ),
        ),
    )
    .await;
    assert!(query(&redirect, "code").is_some(), "{redirect}");

    // 8: no code for a client without the authorization_code grant.
    let redirect = login_and_authorize(
        &s,
        &b,
        &web_authorize(
            &s,
            "machine",
            &format!(
                "&code_challenge={}&code_challenge_method=S256",
                challenge(VERIFIER)
            ),
        ),
    )
    .await;
    assert_eq!(
        query(&redirect, "error").as_deref(),
        Some("unauthorized_client"),
        "{redirect}"
    );
    assert!(query(&redirect, "code").is_none(), "{redirect}");
}

// --------------------------------------------------- 9: one client authentication method

#[tokio::test]
async fn basic_and_a_form_secret_together_are_refused() {
    let s = TestServer::start().await;
    let secret = propeller_secret(&s);
    let (status, body) = token(
        &s,
        &[
            ("grant_type", "client_credentials"),
            ("client_secret", &secret),
        ],
        Some(("flytepropeller", &secret)),
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_request")),
        "{body}"
    );
}

// ------------------------------------------------------------------ 3: oversized forms

/// Sends a request head announcing a huge body, then only `sent` bytes of it, and reads the
/// answer's status line: the server must answer without waiting for the rest.
async fn status_of_oversized_post(s: &TestServer, path: &str, sent: usize) -> String {
    let mut c = TcpStream::connect(s.addr).await.unwrap();
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 100000000\r\n\r\n",
        s.addr
    );
    c.write_all(head.as_bytes()).await.unwrap();
    let _ = c.write_all(&vec![b'a'; sent]).await;
    let mut buf = vec![0u8; 1024];
    let n = tokio::time::timeout(Duration::from_secs(20), c.read(&mut buf))
        .await
        .expect("the server answers before the body ends")
        .unwrap_or(0);
    String::from_utf8_lossy(&buf[..n])
        .lines()
        .next()
        .unwrap_or("")
        .to_owned()
}

#[tokio::test]
async fn oversized_forms_are_413_without_reading_past_the_limit() {
    let s = TestServer::start_with(&format!(
        "server:\n  httpPort: 0\n  maxRequestBytes: 4096\n{ALICE}"
    ))
    .await;
    for path in ["/login", "/oauth2/device", "/oauth2/token", "/logout"] {
        let line = status_of_oversized_post(&s, path, 5000).await;
        assert!(line.starts_with("HTTP/1.1 413"), "{path}: {line}");
    }
    // Under the limit a bad form is still 403 (no CSRF), not 413.
    let r = browser()
        .post(format!("{}/login", s.url))
        .form(&[("username", "alice"), ("password", "x")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
}

// ------------------------------------------------------------------ 10: x-request-id

#[tokio::test]
async fn request_ids_that_could_forge_a_log_line_are_replaced() {
    let s = TestServer::start().await;
    let get = |id: &'static str| {
        let url = format!("{}/healthcheck", s.url);
        async move {
            let r = reqwest::Client::new()
                .get(url)
                .header("x-request-id", id)
                .send()
                .await
                .unwrap();
            r.headers()["x-request-id"].to_str().unwrap().to_owned()
        }
    };
    assert_eq!(
        get("0f8fad5b-d9cb-469f-a165-70867728950e").await,
        "0f8fad5b-d9cb-469f-a165-70867728950e"
    );
    assert_eq!(get("trace:1.2_3").await, "trace:1.2_3");
    for forged in [
        "x outcome=allow subject=admin",
        "x\"}{\"target\":\"flyteauth::audit\"",
        "a\tb",
        "ünïcode",
    ] {
        let got = get(forged).await;
        assert_ne!(got, forged);
        assert!(
            got.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b)),
            "{got}"
        );
    }
    let long: &'static str = Box::leak("a".repeat(129).into_boxed_str());
    assert_ne!(get(long).await, long);
}

// ------------------------------------------------------- 4: no user enumeration by timing

async fn metric_value(s: &TestServer, series: &str) -> Option<u64> {
    let text = reqwest::get(format!("{}/metrics", s.url))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
}

#[tokio::test]
async fn an_unknown_user_costs_the_same_password_check_as_a_known_one() {
    let hash = bcrypt::hash("bobs-password", 4).unwrap();
    let s = TestServer::start_with(&format!(
        "auth:\n  userAuth:\n    localUsers:\n      - {{ username: bob, passwordHash: '{hash}' }}\n"
    ))
    .await;
    let series = "flyteauth_password_checks_total{scheme=\"bcrypt\",cost=\"04\"}";
    assert_eq!(login_status(&s, &browser(), "bob", "wrong").await, 401);
    assert_eq!(metric_value(&s, series).await, Some(1));
    assert_eq!(login_status(&s, &browser(), "nobody", "wrong").await, 401);
    assert_eq!(
        metric_value(&s, series).await,
        Some(2),
        "the unknown user was checked against a bcrypt hash of the same cost"
    );
    assert_eq!(
        login_status(&s, &browser(), "bob", "bobs-password").await,
        303
    );
    assert_eq!(metric_value(&s, series).await, Some(3));

    // With plain-secret users only, an unknown user costs a constant-time comparison, as they
    // do (not a bcrypt: that would take far longer than a known user's check).
    let s = TestServer::start_with(ALICE).await;
    assert_eq!(login_status(&s, &browser(), "nobody", "wrong").await, 401);
    assert_eq!(
        metric_value(
            &s,
            "flyteauth_password_checks_total{scheme=\"plain\",cost=\"0\"}"
        )
        .await,
        Some(1)
    );
    assert_eq!(
        metric_value(&s, "flyteauth_password_checks_total{scheme=\"bcrypt\"").await,
        None
    );
}

// ----------------------------------------------------------- 14: refresh grace period

async fn refresh(s: &TestServer, rt: &str) -> (u16, Value) {
    token(
        s,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", rt),
            ("client_id", "flytectl"),
        ],
        None,
    )
    .await
}

#[tokio::test]
async fn a_just_rotated_refresh_token_is_redeemed_again_within_the_grace_period() {
    let clock = flyteauth::testing::ManualClock::new(crate::support::now());
    let s = TestServer::start_with_clock(ALICE, clock.clone()).await;
    let code = code_for(&s, &browser()).await;
    let (_, t0) = token(&s, &redeem_form(&code, VERIFIER), None).await;
    let rt0 = t0["refresh_token"].as_str().unwrap().to_owned();
    let (status, t1) = refresh(&s, &rt0).await;
    assert_eq!(status, 200, "{t1}");
    // A second process of the same user, with the same token a moment later.
    clock.advance(2);
    let (status, t2) = refresh(&s, &rt0).await;
    assert_eq!(status, 200, "within the grace period: {t2}");
    let rt1 = t1["refresh_token"].as_str().unwrap();
    let rt2 = t2["refresh_token"].as_str().unwrap();
    assert_ne!(rt1, rt2);
    let (status, t3) = refresh(&s, rt1).await;
    assert_eq!(status, 200, "nothing was revoked: {t3}");
    // After the grace period, a reuse revokes the family.
    clock.advance(10);
    let (status, body) = refresh(&s, &rt0).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant"))
    );
    for rt in [rt2, t3["refresh_token"].as_str().unwrap()] {
        let (status, _) = refresh(&s, rt).await;
        assert_eq!(status, 400, "the family is revoked");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_refreshes_with_one_token_all_succeed() {
    let s = TestServer::start_with(ALICE).await;
    let code = code_for(&s, &browser()).await;
    let (_, t0) = token(&s, &redeem_form(&code, VERIFIER), None).await;
    let mut rt = t0["refresh_token"].as_str().unwrap().to_owned();
    for _ in 0..5 {
        let mut both = tokio::task::JoinSet::new();
        for _ in 0..2 {
            let (url, rt) = (s.url.clone(), rt.clone());
            both.spawn(async move {
                let r = reqwest::Client::new()
                    .post(format!("{url}/oauth2/token"))
                    .form(&[
                        ("grant_type", "refresh_token"),
                        ("refresh_token", rt.as_str()),
                        ("client_id", "flytectl"),
                    ])
                    .send()
                    .await
                    .unwrap();
                (r.status().as_u16(), r.json::<Value>().await.unwrap())
            });
        }
        let results: Vec<(u16, Value)> = both.join_all().await;
        for (status, body) in &results {
            assert_eq!(*status, 200, "{body}");
        }
        rt = results[0].1["refresh_token"].as_str().unwrap().to_owned();
    }
}

#[tokio::test]
async fn replicas_on_postgres_agree_on_the_grace_period_and_share_failure_counters() {
    let Some(url) = crate::projects::postgres_database().await else {
        return;
    };
    let extra = format!("database:\n  url: {url}\n{ALICE}");
    let dir = std::sync::Arc::new(tempfile::tempdir().unwrap());
    let a = TestServer::start_in(dir.clone(), &extra).await;
    let b = TestServer::start_in(dir, &extra).await;

    // 14: rotated at A, redeemed again at B within the grace period.
    let code = code_for(&a, &browser()).await;
    let (_, t0) = token(&a, &redeem_form(&code, VERIFIER), None).await;
    let rt0 = t0["refresh_token"].as_str().unwrap().to_owned();
    assert_eq!(refresh(&a, &rt0).await.0, 200);
    let (status, body) = refresh(&b, &rt0).await;
    assert_eq!(status, 200, "{body}");

    // 16: failures at A and B add up (10 allowed in all, not 10 per replica).
    let mut statuses = Vec::new();
    for i in 0..14 {
        let s = if i % 2 == 0 { &a } else { &b };
        statuses.push(login_status(s, &browser(), "alice", "wrong").await);
    }
    assert_eq!(
        (count(&statuses, 401), count(&statuses, 429)),
        (10, 4),
        "{statuses:?}"
    );
    let password = alice_password(&a);
    assert_eq!(login_status(&b, &browser(), "alice", &password).await, 429);
    // Client secrets too.
    let mut statuses = Vec::new();
    for i in 0..24 {
        let s = if i % 2 == 0 { &a } else { &b };
        statuses.push(client_credentials(s, "127.0.0.1", "guess").await.0);
    }
    assert_eq!((count(&statuses, 401), count(&statuses, 429)), (20, 4));
}

// --------------------------------------------------------------- 11: logout CSRF

#[tokio::test]
async fn a_cross_site_logout_changes_nothing_until_confirmed() {
    let s = TestServer::start_with(ALICE).await;
    let b = browser();
    assert_eq!(
        login_status(&s, &b, "alice", &alice_password(&s)).await,
        303
    );
    let me = |b: &reqwest::Client| {
        let url = format!("{}/me", s.url);
        let b = b.clone();
        async move { b.get(url).send().await.unwrap().status().as_u16() }
    };
    assert_eq!(me(&b).await, 200);
    // A link on another site: a confirmation page, the session lives on.
    let r = b
        .get(format!("{}/logout", s.url))
        .header("sec-fetch-site", "cross-site")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let page = r.text().await.unwrap();
    assert!(
        page.contains("method=\"post\"") && page.contains("csrf_token"),
        "{page}"
    );
    assert_eq!(me(&b).await, 200, "a cross-site GET ended the session");
    // Older browsers: a foreign Referer is cross-site too.
    let r = b
        .get(format!("{}/logout", s.url))
        .header("referer", "https://evil.example/page")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(me(&b).await, 200);
    // A cross-site POST without the token changes nothing either.
    let r = b
        .post(format!("{}/logout", s.url))
        .header("sec-fetch-site", "cross-site")
        .form(&[("csrf_token", "guess")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(me(&b).await, 200);
    // The confirmation form (it carries the session's CSRF token) signs out.
    let marker = "name=\"csrf_token\" value=\"";
    let start = page.find(marker).unwrap() + marker.len();
    let csrf = &page[start..start + page[start..].find('"').unwrap()];
    let r = b
        .post(format!("{}/logout", s.url))
        .header("sec-fetch-site", "cross-site")
        .form(&[("csrf_token", csrf)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(me(&b).await, 401, "signed out");

    // Flyte's same-site GET /logout still works.
    let b = browser();
    assert_eq!(
        login_status(&s, &b, "alice", &alice_password(&s)).await,
        303
    );
    let r = b
        .get(format!("{}/logout?redirect_url=/console", s.url))
        .header("sec-fetch-site", "same-origin")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    assert_eq!(location(&r), "/console");
    assert_eq!(me(&b).await, 401);
}

#[tokio::test]
async fn a_login_form_posted_from_another_site_is_refused() {
    let s = TestServer::start_with(ALICE).await;
    let b = browser();
    let csrf = login_csrf(&s, &b).await;
    let r = b
        .post(format!("{}/login", s.url))
        .header("origin", "https://evil.example")
        .form(&[
            ("username", "alice"),
            ("password", alice_password(&s).as_str()),
            ("csrf_token", csrf.as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
}

// --------------------------------------------------------------------- metrics.port

#[tokio::test]
async fn metrics_move_to_their_own_port() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let s = TestServer::start_with(&format!(
        "server:\n  httpPort: 0\nmetrics:\n  port: {port}\n"
    ))
    .await;
    let r = reqwest::get(format!("{}/metrics", s.url)).await.unwrap();
    assert_eq!(r.status(), 404, "not on the public port");
    let mut text = None;
    for _ in 0..50 {
        if let Ok(r) = reqwest::get(format!("http://127.0.0.1:{port}/metrics")).await {
            text = Some((r.status().as_u16(), r.text().await.unwrap()));
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (status, text) = text.expect("the metrics listener answers");
    assert_eq!(status, 200);
    assert!(text.contains("flyteauth_store_up"), "{text}");
}

// ------------------------------------------------------- 1: connection caps, deadlines

async fn closed_by_server(c: &mut TcpStream, within: Duration) -> bool {
    let mut buf = [0u8; 512];
    loop {
        match tokio::time::timeout(within, c.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => continue,
            Err(_) => return false,
        }
    }
}

async fn connect_from(s: &TestServer, from: &str) -> TcpStream {
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.bind(format!("{from}:0").parse().unwrap()).unwrap();
    sock.connect(s.addr).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn idle_and_half_sent_connections_cannot_starve_the_server() {
    let s = TestServer::start_with(
        "server:\n  httpPort: 0\n  maxConnections: 64\n  maxConnectionsPerAddress: 16\n  timeouts: { handshake: 2s, requestHead: 2s, body: 2s }\n",
    )
    .await;
    // Sockets that never send a byte, heads that never end, bodies that never end — from
    // three addresses, up to the per-address cap.
    let mut idle = Vec::new();
    for _ in 0..16 {
        idle.push(connect_from(&s, "127.0.0.2").await);
    }
    let mut heads = Vec::new();
    for _ in 0..16 {
        let mut c = connect_from(&s, "127.0.0.3").await;
        c.write_all(b"GET /healthcheck HTTP/1.1\r\nHost: x\r\n")
            .await
            .unwrap();
        heads.push(c);
    }
    let mut bodies = Vec::new();
    for _ in 0..16 {
        let mut c = connect_from(&s, "127.0.0.4").await;
        c.write_all(
            b"POST /oauth2/token HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 100\r\n\r\ngrant_type=",
        )
        .await
        .unwrap();
        bodies.push(c);
    }
    // Over the per-address cap: closed at once.
    let mut extra = connect_from(&s, "127.0.0.2").await;
    assert!(closed_by_server(&mut extra, Duration::from_secs(1)).await);
    // Meanwhile health checks and token requests from elsewhere answer.
    let r = reqwest::get(format!("{}/healthcheck", s.url))
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let secret = propeller_secret(&s);
    assert_eq!(client_credentials(&s, "127.0.0.5", &secret).await.0, 200);
    // The deadlines free every one of them.
    for c in idle.iter_mut().chain(heads.iter_mut()) {
        assert!(closed_by_server(c, Duration::from_secs(10)).await);
    }
    for c in bodies.iter_mut() {
        let mut buf = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(10), c.read_to_end(&mut buf)).await;
        let text = String::from_utf8_lossy(&buf);
        assert!(
            text.starts_with("HTTP/1.1 4") || buf.is_empty(),
            "a body that never ends gets an error or a close: {text}"
        );
        assert!(closed_by_server(c, Duration::from_secs(10)).await);
    }
    // And the address may connect again.
    let mut again = connect_from(&s, "127.0.0.2").await;
    again
        .write_all(b"GET /healthcheck HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut buf = Vec::new();
    again.read_to_end(&mut buf).await.unwrap();
    assert!(String::from_utf8_lossy(&buf).starts_with("HTTP/1.1 200"));
}

// ------------------------------------------- 2: a refused streamed gRPC-web request

#[tokio::test]
async fn a_refused_chunked_grpc_web_call_gets_its_status_on_a_live_connection() {
    let s = TestServer::start().await;
    let mut c = TcpStream::connect(s.addr).await.unwrap();
    let head = format!(
        "POST /flyteidl.service.IdentityService/UserInfo HTTP/1.1\r\nHost: {}\r\nContent-Type: application/grpc-web+proto\r\nX-Grpc-Web: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
        s.addr
    );
    c.write_all(head.as_bytes()).await.unwrap();
    // An empty UserInfoRequest frame, streamed in two chunks with a pause between them.
    c.write_all(b"3\r\n\x00\x00\x00\r\n").await.unwrap();
    c.flush().await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    c.write_all(b"2\r\n\x00\x00\r\n0\r\n\r\n").await.unwrap();
    let first = read_response(&mut c).await;
    assert!(first.starts_with("HTTP/1.1 200"), "{first}");
    assert!(
        first.to_ascii_lowercase().contains("grpc-status: 16"),
        "{first}"
    );
    // The connection is still usable: no reset under the client.
    c.write_all(format!("GET /healthcheck HTTP/1.1\r\nHost: {}\r\n\r\n", s.addr).as_bytes())
        .await
        .unwrap();
    let second = read_response(&mut c).await;
    assert!(second.starts_with("HTTP/1.1 200"), "{second}");
}

/// One HTTP/1.1 response's head (and whatever arrived with it).
async fn read_response(c: &mut TcpStream) -> String {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = tokio::time::timeout(Duration::from_secs(10), c.read(&mut chunk))
            .await
            .expect("an answer")
            .unwrap_or(0);
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
        if buf.windows(4).any(|w| w == b"\r\n\r\n") {
            // Give the rest of a small response a moment to arrive.
            if let Ok(Ok(n)) =
                tokio::time::timeout(Duration::from_millis(200), c.read(&mut chunk)).await
            {
                buf.extend_from_slice(&chunk[..n]);
            }
            break;
        }
    }
    String::from_utf8_lossy(&buf).into_owned()
}

// ---------------------------------------------------------- 12: __Host- cookies over TLS

#[tokio::test]
async fn cookies_carry_the_host_prefix_over_tls() {
    let dir = std::sync::Arc::new(tempfile::tempdir().unwrap());
    let tls = localhost_tls(dir.path());
    let (cert_path, key_path) = (&tls.cert_path, &tls.key_path);
    let extra = format!(
        "server:\n  httpPort: 0\n  security:\n    secure: true\n    ssl: {{ certificateFile: {}, keyFile: {} }}\n{ALICE}",
        cert_path.display(),
        key_path.display()
    );
    let s = TestServer::start_in(dir, &extra).await;
    let b = reqwest::Client::builder()
        .redirect(Policy::none())
        .add_root_certificate(reqwest::Certificate::from_pem(tls.ca_pem.as_bytes()).unwrap())
        .resolve("localhost", s.addr)
        .build()
        .unwrap();
    let url = format!("https://localhost:{}", s.addr.port());
    let r = b.get(format!("{url}/login")).send().await.unwrap();
    let set: Vec<String> = r
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect();
    assert!(
        set.iter().any(|c| c.starts_with("__Host-flyte_login_csrf=")
            && c.contains("Secure")
            && c.contains("Path=/")),
        "{set:?}"
    );
    let page = r.text().await.unwrap();
    let marker = "name=\"csrf_token\" value=\"";
    let start = page.find(marker).unwrap() + marker.len();
    let csrf = page[start..start + page[start..].find('"').unwrap()].to_owned();
    // A planted cookie without the prefix (another subdomain, plain http) does not count.
    let r = b
        .post(format!("{url}/login"))
        .header("cookie", format!("flyte_login_csrf={csrf}"))
        .form(&[
            ("username", "alice"),
            ("password", alice_password(&s).as_str()),
            ("csrf_token", csrf.as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let r = b
        .post(format!("{url}/login"))
        .header("cookie", format!("__Host-flyte_login_csrf={csrf}"))
        .form(&[
            ("username", "alice"),
            ("password", alice_password(&s).as_str()),
            ("csrf_token", csrf.as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    let set: Vec<String> = r
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect();
    assert!(
        set.iter().any(|c| c.starts_with("__Host-flyte_session=")),
        "{set:?}"
    );
    assert!(
        set.iter().any(|c| c.starts_with("__Host-flyte_csrf=")),
        "{set:?}"
    );
}

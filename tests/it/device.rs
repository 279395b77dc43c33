//! RFC 8628 against the built-in AS: the device endpoint, the user-code page behind a
//! session, polling answers (`authorization_pending`, `slow_down`, `expired_token`,
//! `access_denied`), and tokens at the end. Time is moved, never slept.

use std::sync::Arc;

use flyteauth::testing::ManualClock;
use reqwest::redirect::Policy;
use serde_json::Value;

use crate::support::{form_field, log_in_alice, now, TestServer};

const ALICE: &str = "auth:\n  userAuth:\n    localUsers:\n      - { username: alice, passwordSecretName: alice_pw, name: Alice Example }\n";
const GRANT: &str = "urn:ietf:params:oauth:grant-type:device_code";

async fn post(s: &TestServer, path: &str, form: &[(&str, &str)]) -> (u16, Value) {
    let r = reqwest::Client::new()
        .post(format!("{}{path}", s.url))
        .form(form)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

/// Signs alice in and answers the device page for `user_code` with `action`.
async fn answer(s: &TestServer, user_code: &str, action: &str) -> u16 {
    let b = reqwest::Client::builder()
        .redirect(Policy::none())
        .cookie_store(true)
        .build()
        .unwrap();
    let r = b
        .get(format!("{}/oauth2/device?user_code={user_code}", s.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303, "a session is required");
    let login = r.headers()["location"].to_str().unwrap().to_owned();
    let r = log_in_alice(s, &b, &login).await;
    assert_eq!(r.status(), 303);
    let back = r.headers()["location"].to_str().unwrap().to_owned();
    let page = b
        .get(format!("{}{back}", s.url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        page.contains(&format!("value=\"{user_code}\"")),
        "verification_uri_complete pre-fills the code"
    );
    let csrf = form_field(&page, "csrf_token").unwrap();
    let confirm = b
        .post(format!("{}/oauth2/device", s.url))
        .form(&[("user_code", user_code), ("csrf_token", &csrf)])
        .send()
        .await
        .unwrap();
    assert_eq!(confirm.status(), 200);
    let page = confirm.text().await.unwrap();
    assert!(
        page.contains("flytectl"),
        "the confirmation names the client"
    );
    let r = b
        .post(format!("{}/oauth2/device", s.url))
        .form(&[
            ("user_code", user_code),
            ("csrf_token", &csrf),
            ("action", action),
        ])
        .send()
        .await
        .unwrap();
    r.status().as_u16()
}

#[tokio::test]
async fn device_flow_end_to_end() {
    let clock = ManualClock::new(now());
    let s = TestServer::start_with_clock(ALICE, clock.clone()).await;
    let (status, d) = post(
        &s,
        "/oauth2/device_authorization",
        &[("client_id", "flytectl"), ("scope", "all offline")],
    )
    .await;
    assert_eq!(status, 200, "{d}");
    assert_eq!(d["interval"], 5, "interval is always sent");
    assert!(d["verification_uri"]
        .as_str()
        .unwrap()
        .ends_with("/oauth2/device"));
    let device_code = d["device_code"].as_str().unwrap().to_owned();
    let user_code = d["user_code"].as_str().unwrap().to_owned();
    let poll = |dc: String| {
        let s = &s;
        async move {
            post(
                s,
                "/oauth2/token",
                &[
                    ("grant_type", GRANT),
                    ("device_code", &dc),
                    ("client_id", "flytectl"),
                ],
            )
            .await
        }
    };
    let (_, r) = poll(device_code.clone()).await;
    assert_eq!(r["error"], "authorization_pending");
    let (_, r) = poll(device_code.clone()).await;
    assert_eq!(r["error"], "slow_down", "polled again at once");
    assert_eq!(answer(&s, &user_code, "approve").await, 200);
    clock.advance(20);
    let (status, r) = poll(device_code.clone()).await;
    assert_eq!(status, 200, "{r}");
    assert!(r["refresh_token"].is_string());
    let (_, r) = poll(device_code).await;
    assert_eq!(r["error"], "invalid_grant", "a device code is used once");

    let md: Value = reqwest::get(format!("{}/.well-known/oauth-authorization-server", s.url))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(md["device_authorization_endpoint"]
        .as_str()
        .unwrap()
        .ends_with("/oauth2/device_authorization"));
}

#[tokio::test]
async fn denied_and_expired_device_codes() {
    let clock = ManualClock::new(now());
    let s = TestServer::start_with_clock(ALICE, clock.clone()).await;
    let (_, d) = post(
        &s,
        "/oauth2/device_authorization",
        &[("client_id", "flytectl")],
    )
    .await;
    assert_eq!(
        answer(&s, d["user_code"].as_str().unwrap(), "deny").await,
        200
    );
    let (_, r) = post(
        &s,
        "/oauth2/token",
        &[
            ("grant_type", GRANT),
            ("device_code", d["device_code"].as_str().unwrap()),
            ("client_id", "flytectl"),
        ],
    )
    .await;
    assert_eq!(r["error"], "access_denied");

    let (_, d) = post(
        &s,
        "/oauth2/device_authorization",
        &[("client_id", "flytectl")],
    )
    .await;
    clock.advance(601);
    let (_, r) = post(
        &s,
        "/oauth2/token",
        &[
            ("grant_type", GRANT),
            ("device_code", d["device_code"].as_str().unwrap()),
            ("client_id", "flytectl"),
        ],
    )
    .await;
    assert_eq!(r["error"], "expired_token");
    let _ = Arc::clone(&s.dir);
}

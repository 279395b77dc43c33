//! FlyteAdmin keys flyteauth honours (issue 18): `allowedOrigins: ["*"]` (CORS for anyone,
//! credentials only for listed origins), `cookieSetting`, `grpc.maxMessageSizeBytes`,
//! `readHeaderTimeoutSeconds`, `deviceCodeLifespan`, and `ListProjects` without a limit cap.

use std::collections::BTreeMap;

use flyteauth::pb::flyteidl::admin as pb;
use flyteauth::testing::ProjectRecord;
use tonic::Code;

use crate::support::{browser, sign_in_alice, with_token, TestServer};

const ALICE: &str = "  userAuth:\n    localUsers:\n      - { username: alice, passwordSecretName: alice_pw, name: Alice }\n";

#[tokio::test]
async fn star_origin_gets_cors_without_credentials_and_cookies_only_from_listed_origins() {
    let s = TestServer::start_with(&format!(
        "server:\n  httpPort: 0\n  grpc: {{ port: 0 }}\n  security:\n    allowedOrigins: ['*', 'https://console.example']\nauth:\n{ALICE}"
    ))
    .await;
    assert!(s.state.config.server.allow_any_origin);
    assert!(s
        .state
        .config
        .notices
        .warnings
        .iter()
        .any(|w| w.contains("allowedOrigins") && w.contains("without credentials")));
    let preflight = |origin: &'static str| {
        reqwest::Client::new()
            .request(
                reqwest::Method::OPTIONS,
                format!("{}/api/v1/projects", s.url),
            )
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header(
                "access-control-request-headers",
                "content-type,x-csrf-token",
            )
            .send()
    };
    // Any origin: CORS, but no credentials.
    let r = preflight("https://anyone.example").await.unwrap();
    assert!(r.status().is_success(), "{}", r.status());
    assert_eq!(
        r.headers()["access-control-allow-origin"],
        "https://anyone.example"
    );
    assert!(
        r.headers()
            .get("access-control-allow-credentials")
            .is_none(),
        "credentials offered to an unlisted origin"
    );
    // A listed origin: CORS with credentials.
    let r = preflight("https://console.example").await.unwrap();
    assert_eq!(
        r.headers()["access-control-allow-origin"],
        "https://console.example"
    );
    assert_eq!(r.headers()["access-control-allow-credentials"], "true");
    // A simple (non-credentialed) GET from anywhere gets the CORS header too.
    let r = reqwest::Client::new()
        .get(format!("{}/healthcheck", s.url))
        .header("origin", "https://anyone.example")
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.headers()["access-control-allow-origin"],
        "https://anyone.example"
    );

    // The session cookie: refused from the unlisted origin, honoured from the listed one.
    let b = browser();
    let csrf = sign_in_alice(&s, &b).await;
    let register = |origin: &'static str, id: &'static str| {
        b.post(format!("{}/api/v1/projects", s.url))
            .json(&serde_json::json!({"project": {"id": id, "name": id}}))
            .header("x-csrf-token", csrf.clone())
            .header("origin", origin)
            .send()
    };
    assert_eq!(
        register("https://anyone.example", "evil")
            .await
            .unwrap()
            .status(),
        401,
        "a cookie call from an origin only `*` covers"
    );
    assert_eq!(
        register("https://console.example", "good")
            .await
            .unwrap()
            .status(),
        200
    );
}

#[tokio::test]
async fn cookie_setting_is_honoured() {
    let s = TestServer::start_with(&format!(
        "auth:\n{ALICE}    cookieSetting: {{ sameSitePolicy: StrictMode, domain: flyte.example.com }}\n"
    ))
    .await;
    let r = browser()
        .get(format!("{}/login", s.url))
        .send()
        .await
        .unwrap();
    let set: Vec<String> = r
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect();
    assert!(!set.is_empty());
    for c in &set {
        assert!(
            c.contains("SameSite=Strict") && c.contains("Domain=flyte.example.com"),
            "{c}"
        );
    }
    // Default: Lax, host-only.
    let s = TestServer::start_with(&format!("auth:\n{ALICE}")).await;
    let r = browser()
        .get(format!("{}/login", s.url))
        .send()
        .await
        .unwrap();
    for c in r.headers().get_all("set-cookie") {
        let c = c.to_str().unwrap();
        assert!(c.contains("SameSite=Lax") && !c.contains("Domain="), "{c}");
    }
}

fn big_project(id: &str, bytes: usize) -> pb::ProjectRegisterRequest {
    pb::ProjectRegisterRequest {
        project: Some(pb::Project {
            id: id.into(),
            name: id.into(),
            labels: Some(pb::Labels {
                values: [("big".to_string(), "x".repeat(bytes))].into(),
            }),
            ..Default::default()
        }),
    }
}

#[tokio::test]
async fn grpc_max_message_size_bytes_is_honoured() {
    let s = TestServer::start_with(
        "server:\n  httpPort: 0\n  grpc: { port: 0, maxMessageSizeBytes: 2048 }\n",
    )
    .await;
    let e = s
        .admin()
        .await
        .register_project(with_token(
            big_project("big", 4096),
            "authorization",
            &s.token(),
        ))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::ResourceExhausted, "{e:?}");
    // Under the limit: decoded and validated (a label this long is INVALID_ARGUMENT, not a
    // size refusal).
    let e = s
        .admin()
        .await
        .register_project(with_token(
            big_project("small", 1000),
            "authorization",
            &s.token(),
        ))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
    // Without the key the same 4 KiB message is decoded (maxRequestBytes, 1 MiB).
    let s = TestServer::start().await;
    let e = s
        .admin()
        .await
        .register_project(with_token(
            big_project("big", 4096),
            "authorization",
            &s.token(),
        ))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
}

#[tokio::test]
async fn read_header_timeout_seconds_is_honoured() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let s = TestServer::start_with(
        "server:\n  httpPort: 0\n  grpc: { port: 0 }\n  readHeaderTimeoutSeconds: 1\n",
    )
    .await;
    let mut c = tokio::net::TcpStream::connect(s.addr).await.unwrap();
    c.write_all(b"GET /healthcheck HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let started = std::time::Instant::now();
    let mut buf = Vec::new();
    let read =
        tokio::time::timeout(std::time::Duration::from_secs(10), c.read_to_end(&mut buf)).await;
    assert!(read.is_ok(), "connection still open after 10 s");
    let took = started.elapsed();
    assert!(
        took >= std::time::Duration::from_millis(900) && took < std::time::Duration::from_secs(5),
        "closed after {took:?}"
    );
}

#[tokio::test]
async fn device_code_lifespan_is_configurable() {
    let expires_in = |s: &TestServer| {
        let url = format!("{}/oauth2/device_authorization", s.url);
        async move {
            let v: serde_json::Value = reqwest::Client::new()
                .post(url)
                .form(&[("client_id", "flytectl"), ("scope", "all")])
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            v["expires_in"].as_i64().unwrap()
        }
    };
    let s = TestServer::start().await;
    assert_eq!(expires_in(&s).await, 600, "Flyte's default, 10m");
    let s = TestServer::start_with(
        "auth:\n  appAuth:\n    selfAuthServer:\n      deviceCodeLifespan: 2m\n",
    )
    .await;
    assert_eq!(expires_in(&s).await, 120);
}

#[tokio::test]
async fn list_projects_serves_limits_above_1000_with_its_paging_token() {
    let s = TestServer::start().await;
    for i in 0..1005 {
        s.state
            .store
            .create_project(&ProjectRecord {
                id: format!("p{i:04}"),
                org: String::new(),
                name: format!("p{i}"),
                description: String::new(),
                labels: BTreeMap::new(),
                state: 0,
            })
            .await
            .unwrap();
    }
    let list = |limit: u32, token: String| {
        let s = &s;
        async move {
            s.admin()
                .await
                .list_projects(with_token(
                    pb::ProjectListRequest {
                        limit,
                        token,
                        ..Default::default()
                    },
                    "authorization",
                    &s.token(),
                ))
                .await
                .unwrap()
                .into_inner()
        }
    };
    let page = list(1002, String::new()).await;
    assert_eq!(page.projects.len(), 1002);
    assert_eq!(page.token, "1002");
    let rest = list(5000, page.token).await;
    // 1005 registered here plus any the store starts with.
    assert!(rest.projects.len() >= 3, "{}", rest.projects.len());
    assert_eq!(rest.token, "");
    let all = list(u32::MAX, String::new()).await;
    assert_eq!(
        all.projects.len(),
        page.projects.len() + rest.projects.len()
    );
}

/// `server.grpc.maxConcurrentStreams` is the HTTP/2 SETTINGS_MAX_CONCURRENT_STREAMS the server
/// announces (h2's client reads it from the server's SETTINGS frame).
#[tokio::test]
async fn grpc_max_concurrent_streams_is_announced() {
    async fn announced(s: &TestServer) -> usize {
        let tcp = tokio::net::TcpStream::connect(s.addr).await.unwrap();
        let (mut client, mut conn) = h2::client::handshake(tcp).await.unwrap();
        // Drive the connection until the server's SETTINGS arrived (a request round trip).
        let req = http::Request::get(format!("{}/healthcheck", s.url))
            .body(())
            .unwrap();
        let (resp, _) = client.send_request(req, true).unwrap();
        let resp = tokio::select! {
            r = resp => r.unwrap(),
            _ = &mut conn => panic!("connection closed"),
        };
        assert_eq!(resp.status(), 200);
        conn.max_concurrent_send_streams()
    }
    let s = TestServer::start_with(
        "server:\n  httpPort: 0\n  grpc: { port: 0, maxConcurrentStreams: 7 }\n",
    )
    .await;
    assert_eq!(announced(&s).await, 7);
    let s = TestServer::start().await;
    assert_ne!(announced(&s).await, 7, "the default is the transport's");
}

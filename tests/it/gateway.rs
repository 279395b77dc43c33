//! The gateway (DESIGN.md §11) against an upstream stand-in: a tonic AdminService (the
//! project RPCs, as FlyteAdmin serves them) plus a REST catch-all under `/api/v1/`, both
//! recording what reached them. Every refused call is checked to never reach the upstream.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use flyteauth::pb::flyteidl::admin as pb;
use flyteauth::pb::flyteidl::service as v1;
use tonic::{Request, Response, Status};

use crate::support::{browser, localhost_tls, sign_in_alice, with_token, TestServer};

/// What reached the upstream: (path, headers).
pub(crate) type Seen = Arc<Mutex<Vec<(String, http::HeaderMap)>>>;

#[derive(Clone)]
struct Upstream {
    seen: Seen,
}

impl Upstream {
    fn record(&self, path: &str, h: http::HeaderMap) {
        self.seen.lock().unwrap().push((path.to_owned(), h));
    }
}

#[tonic::async_trait]
impl v1::admin_service_server::AdminService for Upstream {
    async fn register_project(
        &self,
        req: Request<pb::ProjectRegisterRequest>,
    ) -> Result<Response<pb::ProjectRegisterResponse>, Status> {
        self.record("RegisterProject", req.metadata().clone().into_headers());
        Ok(Response::new(pb::ProjectRegisterResponse {}))
    }
    async fn update_project(
        &self,
        req: Request<pb::Project>,
    ) -> Result<Response<pb::ProjectUpdateResponse>, Status> {
        self.record("UpdateProject", req.metadata().clone().into_headers());
        Err(Status::failed_precondition("upstream says no"))
    }
    async fn get_project(
        &self,
        req: Request<pb::ProjectGetRequest>,
    ) -> Result<Response<pb::Project>, Status> {
        self.record("GetProject", req.metadata().clone().into_headers());
        // Slow: the deadline and cancellation tests' RPC. Dropped before it finishes (its
        // caller went away), it records "GetProject cancelled".
        struct Guard(Option<Upstream>);
        impl Drop for Guard {
            fn drop(&mut self) {
                if let Some(up) = self.0.take() {
                    up.record("GetProject cancelled", http::HeaderMap::new());
                }
            }
        }
        let mut guard = Guard(Some(self.clone()));
        tokio::time::sleep(Duration::from_secs(5)).await;
        guard.0 = None;
        Ok(Response::new(pb::Project::default()))
    }
    async fn list_projects(
        &self,
        req: Request<pb::ProjectListRequest>,
    ) -> Result<Response<pb::Projects>, Status> {
        self.record("ListProjects", req.metadata().clone().into_headers());
        Ok(Response::new(pb::Projects {
            projects: vec![pb::Project {
                id: "from-upstream".into(),
                name: "from-upstream".into(),
                ..Default::default()
            }],
            ..Default::default()
        }))
    }
    async fn get_domains(
        &self,
        req: Request<pb::GetDomainRequest>,
    ) -> Result<Response<pb::GetDomainsResponse>, Status> {
        self.record("GetDomains", req.metadata().clone().into_headers());
        Ok(Response::new(pb::GetDomainsResponse::default()))
    }
}

/// Starts the stand-in on `listener` (h2c gRPC and HTTP/1.1 REST on one port).
fn serve_upstream(listener: tokio::net::TcpListener, seen: Seen) -> tokio::task::JoinHandle<()> {
    let up = Upstream { seen: seen.clone() };
    let mut routes = tonic::service::Routes::builder();
    routes.add_service(v1::admin_service_server::AdminServiceServer::new(up));
    let rest = move |req: axum::extract::Request| {
        let seen = seen.clone();
        async move {
            let path = req.uri().path().to_owned();
            let (parts, body) = req.into_parts();
            let body = axum::body::to_bytes(body, 1 << 20).await.unwrap();
            seen.lock().unwrap().push((path, parts.headers));
            (
                [
                    ("content-type", "application/octet-stream"),
                    ("x-upstream", "1"),
                ],
                body,
            )
        }
    };
    let router = routes
        .routes()
        .into_axum_router()
        .route("/api/v1/{*rest}", axum::routing::any(rest));
    tokio::spawn(async move {
        axum::serve(listener, router).await.unwrap();
    })
}

pub(crate) async fn upstream() -> (String, Seen, tokio::task::JoinHandle<()>) {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", l.local_addr().unwrap());
    let seen: Seen = Arc::default();
    let task = serve_upstream(l, seen.clone());
    (url, seen, task)
}

pub(crate) fn gateway_yaml(url: &str, extra: &str) -> String {
    format!(
        "gateway:\n  upstreams:\n    - name: flyteadmin\n      url: {url}\n      services: [flyteidl.service.AdminService]\n      httpPrefixes: [/api/v1/]\n{extra}"
    )
}

const ALICE: &str = "auth:\n  userAuth:\n    localUsers:\n      - { username: alice, passwordSecretName: alice_pw, name: Alice Example, email: alice@example.com, groups: [dev, ops] }\n";

async fn admin(
    s: &TestServer,
) -> v1::admin_service_client::AdminServiceClient<tonic::transport::Channel> {
    s.admin().await
}

fn header<'a>(h: &'a http::HeaderMap, k: &str) -> Option<&'a str> {
    h.get(k).and_then(|v| v.to_str().ok())
}

/// Verifies an `X-Flyte-Identity` JWT against the server's `/oauth2/jwks`; returns its claims.
async fn verify_identity_jwt(s: &TestServer, jwt: &str) -> serde_json::Value {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let jwks: serde_json::Value = reqwest::get(format!("{}/oauth2/jwks", s.url))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mut parts = jwt.split('.');
    let (h, c, sig) = (
        parts.next().unwrap(),
        parts.next().unwrap(),
        parts.next().unwrap(),
    );
    let header: serde_json::Value = serde_json::from_slice(&b64.decode(h).unwrap()).unwrap();
    let jwk = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["kid"] == header["kid"])
        .expect("the JWT's kid is in /oauth2/jwks");
    let key = flyteauth::testing::public_key_from_jwk(jwk).unwrap();
    assert!(key.verify_signature(format!("{h}.{c}").as_bytes(), &b64.decode(sig).unwrap()));
    serde_json::from_slice(&b64.decode(c).unwrap()).unwrap()
}

#[tokio::test]
async fn forwarded_grpc_carries_the_verified_identity_never_a_forged_one() {
    let (url, seen, _up) = upstream().await;
    let s = TestServer::start_with(&gateway_yaml(&url, "")).await;
    let token = s.token();
    let mut req = with_token(
        pb::ProjectListRequest::default(),
        "flyte-authorization",
        &token,
    );
    for (k, v) in [
        ("x-auth-request-user", "admin"),
        ("x-auth-request-email", "admin@evil.example"),
        ("x-auth-request-groups", "admins"),
        ("x-auth-request-preferred-username", "admin"),
        ("x-amzn-oidc-identity", "admin"),
        ("x-flyte-identity", "forged"),
    ] {
        req.metadata_mut().insert(k, v.parse().unwrap());
    }
    let projects = admin(&s)
        .await
        .list_projects(req)
        .await
        .unwrap()
        .into_inner();
    // The upstream answered (flyteauth's own project RPCs are no longer served).
    assert_eq!(projects.projects[0].id, "from-upstream");
    let (path, h) = seen.lock().unwrap()[0].clone();
    assert_eq!(path, "ListProjects");
    assert_eq!(header(&h, "x-auth-request-user"), Some("alice"));
    assert_eq!(
        header(&h, "x-auth-request-email"),
        Some("alice@example.com")
    );
    assert_eq!(
        header(&h, "x-auth-request-preferred-username"),
        Some("alice")
    );
    assert_eq!(
        header(&h, "x-auth-request-groups"),
        None,
        "the token has no groups"
    );
    assert!(h.get("x-amzn-oidc-identity").is_none());
    assert_eq!(
        header(&h, "flyte-authorization"),
        Some(format!("Bearer {token}").as_str()),
        "the token is forwarded unchanged"
    );
    let claims = verify_identity_jwt(&s, header(&h, "x-flyte-identity").unwrap()).await;
    assert_eq!(claims["sub"], "alice");
    assert_eq!(claims["aud"], "flyteauth-gateway:flyteadmin");
    assert_eq!(claims["iss"], s.state.issuer);
    let life = claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap();
    assert!((60..=120).contains(&life), "{life}");
    // The upstream's own error status passes through unchanged.
    let e = admin(&s)
        .await
        .update_project(with_token(pb::Project::default(), "authorization", &token))
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::FailedPrecondition);
    assert_eq!(e.message(), "upstream says no");
}

#[tokio::test]
async fn refused_calls_never_reach_the_upstream() {
    let (url, seen, _up) = upstream().await;
    let rules = "auth:\n  authorization:\n    rules:\n      - methods: [flyteidl.service.AdminService/RegisterProject]\n        allowSubjects: [root]\n";
    let s = TestServer::start_with(&format!(
        "{}server:\n  httpPort: 0\n  grpc: {{ port: 0 }}\n  maxRequestBytes: 2048\n{rules}",
        gateway_yaml(&url, "")
    ))
    .await;
    let mut c = admin(&s).await;
    // No token.
    let e = c
        .list_projects(pb::ProjectListRequest::default())
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::Unauthenticated, "{e:?}");
    // Expired / wrongly signed tokens.
    let mut claims = s.claims();
    claims["exp"] = serde_json::json!(crate::support::now() - 3600);
    let e = c
        .list_projects(with_token(
            pb::ProjectListRequest::default(),
            "authorization",
            &s.mint(&claims),
        ))
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::Unauthenticated);
    assert_eq!(e.message(), "token expired");
    let other = flyteauth::testing::SigningKey::from_pem(
        flyteauth::testing::generate_rsa_pem().unwrap().as_bytes(),
        flyteauth::testing::SigningAlg::RS256,
    )
    .unwrap()
    .sign_jwt("at+jwt", &s.claims());
    let e = c
        .list_projects(with_token(
            pb::ProjectListRequest::default(),
            "authorization",
            &other,
        ))
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::Unauthenticated);
    // A rule that denies an authenticated caller.
    let e = c
        .register_project(with_token(
            pb::ProjectRegisterRequest::default(),
            "authorization",
            &s.token(),
        ))
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::PermissionDenied, "{e:?}");
    // A message over server.maxRequestBytes.
    let big = pb::ProjectListRequest {
        filters: "x".repeat(4096),
        ..Default::default()
    };
    let e = c
        .list_projects(with_token(big, "authorization", &s.token()))
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::ResourceExhausted, "{e:?}");
    assert!(
        seen.lock().unwrap().is_empty(),
        "a refused call reached the upstream"
    );
    // An allowed call does reach it.
    c.list_projects(with_token(
        pb::ProjectListRequest::default(),
        "authorization",
        &s.token(),
    ))
    .await
    .unwrap();
    assert_eq!(seen.lock().unwrap().len(), 1);
    let metrics = reqwest::get(format!("{}/metrics", s.url))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(metrics.contains("flyteauth_gateway_calls_total{upstream=\"flyteadmin\",protocol=\"grpc\",code=\"refused\"} 5"), "{metrics}");
    assert!(
        metrics.contains(
            "flyteauth_gateway_calls_total{upstream=\"flyteadmin\",protocol=\"grpc\",code=\"0\"} 1"
        ),
        "{metrics}"
    );
    assert!(
        metrics.contains(
            "flyteauth_request_duration_seconds_count{route=\"flyteadmin\",kind=\"upstream\"} 1"
        ),
        "{metrics}"
    );
}

#[tokio::test]
async fn own_services_stay_own_and_health_needs_no_upstream() {
    // The upstream is down; flyteauth still starts and still serves what is its own.
    let s = TestServer::start_with(&gateway_yaml("http://127.0.0.1:9", "")).await;
    let info = s
        .identity()
        .await
        .user_info(with_token(
            v1::UserInfoRequest {},
            "authorization",
            &s.token(),
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(info.subject, "alice");
    let e = admin(&s)
        .await
        .list_projects(with_token(
            pb::ProjectListRequest::default(),
            "authorization",
            &s.token(),
        ))
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::Unavailable, "{e:?}");
    assert!(e.message().contains("flyteadmin"), "{}", e.message());
    // REST under the prefix: 503 naming the upstream.
    let r = reqwest::Client::new()
        .get(format!("{}/api/v1/projects", s.url))
        .bearer_auth(s.token())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    assert!(r.text().await.unwrap().contains("flyteadmin"));
}

#[tokio::test]
async fn the_upstream_deadline_is_deadline_exceeded_and_a_restart_recovers() {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let seen: Seen = Arc::default();
    let up = serve_upstream(l, seen.clone());
    let s = TestServer::start_with(&gateway_yaml(&format!("http://{addr}"), "")).await;
    // A raw HTTP/2 call (a tonic client would enforce the deadline itself, first): the
    // gateway's own DEADLINE_EXCEEDED, while the upstream still works on the call.
    let (status, message) = raw_grpc(
        &s,
        "/flyteidl.service.AdminService/GetProject",
        &[
            ("grpc-timeout", "300m"),
            ("authorization", &format!("Bearer {}", s.token())),
        ],
    )
    .await;
    assert_eq!(status, "4", "{message}");
    assert!(message.contains("flyteadmin"), "{message}");
    // Stopped: UNAVAILABLE; started again on the same address: calls succeed.
    up.abort();
    let _ = up.await;
    let mut c = admin(&s).await;
    let call = || {
        with_token(
            pb::ProjectListRequest::default(),
            "authorization",
            &s.token(),
        )
    };
    let mut last = None;
    for _ in 0..50 {
        match c.list_projects(call()).await {
            Err(e) if e.code() == tonic::Code::Unavailable => {
                last = Some(e);
                break;
            }
            _ => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
    let e = last.expect("UNAVAILABLE once the upstream is gone");
    assert!(e.message().contains("flyteadmin"));
    let l = tokio::net::TcpListener::bind(addr).await.unwrap();
    let _up = serve_upstream(l, seen.clone());
    let p = c.list_projects(call()).await.unwrap().into_inner();
    assert_eq!(p.projects[0].id, "from-upstream");
}

/// A unary gRPC call (empty message) over a plain HTTP/2 client; returns the grpc-status and
/// grpc-message (from the headers of a trailers-only response, else from the trailers).
async fn raw_grpc(s: &TestServer, path: &str, headers: &[(&str, &str)]) -> (String, String) {
    use http_body_util::BodyExt;
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .http2_only(true)
        .build_http::<http_body_util::Full<bytes::Bytes>>();
    let mut req = http::Request::post(format!("{}{path}", s.url))
        .header("content-type", "application/grpc")
        .header("te", "trailers");
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let req = req
        .body(http_body_util::Full::new(bytes::Bytes::from_static(&[
            0, 0, 0, 0, 0,
        ])))
        .unwrap();
    let resp = client.request(req).await.unwrap();
    let (parts, body) = resp.into_parts();
    let trailers = body
        .collect()
        .await
        .unwrap()
        .trailers()
        .cloned()
        .unwrap_or_default();
    let get = |k: &str| {
        parts
            .headers
            .get(k)
            .or_else(|| trailers.get(k))
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default()
    };
    (get("grpc-status"), get("grpc-message"))
}

#[tokio::test]
async fn console_rest_calls_with_the_cookie_need_no_csrf_header_only_when_not_cors_simple() {
    let (url, seen, _up) = upstream().await;
    let console = "https://console.example";
    let s = TestServer::start_with(&format!(
        "{}{ALICE}server:\n  httpPort: 0\n  grpc: {{ port: 0 }}\n  security: {{ allowCors: true, allowedOrigins: ['{console}'] }}\n",
        gateway_yaml(&url, "")
    ))
    .await;
    let b = browser();
    let csrf = sign_in_alice(&s, &b).await;
    let post =
        |ct: Option<&str>, origin: Option<&str>, referer: Option<&str>, csrf: Option<&str>| {
            let mut r = b
                .post(format!("{}/api/v1/executions", s.url))
                .body(vec![0x0a, 0x03, b'a', b'b', b'c']);
            if let Some(ct) = ct {
                r = r.header("content-type", ct);
            }
            if let Some(o) = origin {
                r = r.header("origin", o);
            }
            if let Some(o) = referer {
                r = r.header("referer", o);
            }
            if let Some(c) = csrf {
                r = r.header("x-csrf-token", c);
            }
            r.send()
        };
    let octet = Some("application/octet-stream");
    // The console's kind of call: protobuf body, allowed Origin, no CSRF header: forwarded.
    let r = post(octet, Some(console), None, None).await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers()["x-upstream"],
        "1",
        "upstream response headers pass through"
    );
    assert_eq!(r.headers()["access-control-allow-origin"], console);
    assert_eq!(
        r.bytes().await.unwrap().as_ref(),
        &[0x0a, 0x03, b'a', b'b', b'c']
    );
    {
        let seen = seen.lock().unwrap();
        let (path, h) = &seen[0];
        assert_eq!(path, "/api/v1/executions");
        assert_eq!(header(h, "x-auth-request-user"), Some("alice"));
        assert_eq!(header(h, "x-auth-request-groups"), Some("dev,ops"));
        assert!(h.get("x-flyte-identity").is_some());
        let cookie = header(h, "cookie").unwrap_or("");
        assert!(
            !cookie.contains("flyte_session") && !cookie.contains("flyte_csrf"),
            "{cookie}"
        );
    }
    // No Origin, an allowed Referer: forwarded too.
    let r = post(
        octet,
        None,
        Some("https://console.example/console/projects"),
        None,
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(seen.lock().unwrap().len(), 2);
    // Refused, never reaching the upstream: a foreign Origin (even with the CSRF header), a
    // foreign Referer, neither, and CORS-simple content types without the CSRF header.
    for (ct, origin, referer, with_csrf) in [
        (octet, Some("https://evil.example"), None, false),
        (octet, Some("https://evil.example"), None, true),
        (octet, None, Some("https://evil.example/x"), false),
        (octet, None, None, false),
        (Some("text/plain"), Some(console), None, false),
        (
            Some("application/x-www-form-urlencoded"),
            Some(console),
            None,
            false,
        ),
        (
            Some("multipart/form-data; boundary=x"),
            Some(console),
            None,
            false,
        ),
        (None, Some(console), None, false),
    ] {
        let r = post(ct, origin, referer, with_csrf.then_some(csrf.as_str()))
            .await
            .unwrap();
        assert_eq!(r.status(), 401, "{ct:?} {origin:?} {referer:?}");
        assert!(r.headers().contains_key("www-authenticate"));
    }
    assert_eq!(
        seen.lock().unwrap().len(),
        2,
        "a refused call reached the upstream"
    );
    // A CORS-simple call with the CSRF header is fine.
    let r = post(Some("text/plain"), Some(console), None, Some(&csrf))
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // Logged out: 401 (the console then sends the user to /login?redirect_url=…).
    b.post(format!("{}/logout", s.url))
        .header("x-csrf-token", &csrf)
        .header("origin", console)
        .send()
        .await
        .unwrap();
    let r = post(octet, Some(console), None, None).await.unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(seen.lock().unwrap().len(), 3);
}

#[tokio::test]
async fn a_client_that_goes_away_cancels_the_upstream_call() {
    let (url, seen, _up) = upstream().await;
    let s = TestServer::start_with(&gateway_yaml(&url, "")).await;
    let mut req = with_token(
        pb::ProjectGetRequest::default(),
        "authorization",
        &s.token(),
    );
    // The client gives up after 300 ms (tonic resets its HTTP/2 stream).
    req.set_timeout(Duration::from_millis(300));
    let e = admin(&s).await.get_project(req).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::Cancelled, "{e:?}");
    let cancelled = || {
        seen.lock()
            .unwrap()
            .iter()
            .any(|(p, _)| p == "GetProject cancelled")
    };
    for _ in 0..100 {
        if cancelled() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        cancelled(),
        "the upstream call ran on after its client went away"
    );
}

#[tokio::test]
async fn a_tls_upstream_is_reached_with_its_own_ca_and_refused_without_it() {
    // The upstream: a flyteauth on TLS with auth off (it serves GetDomains itself).
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let tls = localhost_tls(dir.path());
    let (cert, key, ca_file) = (&tls.cert_path, &tls.key_path, &tls.ca_path);
    let up = TestServer::start_in(
        dir.clone(),
        &format!(
            "server:\n  httpPort: 0\n  grpc: {{ port: 0 }}\n  security:\n    secure: true\n    useAuth: false\n    ssl: {{ certificateFile: {}, keyFile: {} }}\n",
            cert.display(),
            key.display()
        ),
    )
    .await;
    let url = format!("https://localhost:{}", up.addr.port());
    let with_ca = format!(
        "gateway:\n  upstreams:\n    - name: tls-admin\n      url: {url}\n      caCertFile: {}\n      services: [flyteidl.service.AdminService]\n",
        ca_file.display()
    );
    let s = TestServer::start_with(&with_ca).await;
    let domains = admin(&s)
        .await
        .get_domains(with_token(
            pb::GetDomainRequest {},
            "authorization",
            &s.token(),
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(domains.domains.len(), 3);
    // Without the CA the upstream's certificate is not trusted: UNAVAILABLE naming it.
    let s = TestServer::start_with(&format!(
        "gateway:\n  upstreams:\n    - name: tls-admin\n      url: {url}\n      services: [flyteidl.service.AdminService]\n"
    ))
    .await;
    let e = admin(&s)
        .await
        .get_domains(with_token(
            pb::GetDomainRequest {},
            "authorization",
            &s.token(),
        ))
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::Unavailable, "{e:?}");
    assert!(e.message().contains("tls-admin"));
}

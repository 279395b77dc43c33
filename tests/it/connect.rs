//! The Connect protocol on flyteauth's own services: JSON and binary protobuf, HTTP/1.1
//! (reqwest, raw chunked requests) and HTTP/2 (a tonic channel used as a plain HTTP/2
//! client), TLS, gzip, the same authentication as gRPC, and Connect error bodies with their
//! HTTP statuses. Also `GET /me` with a gRPC content type (nginx `auth_request`).

use std::io::Write;

use flyteauth::pb::flyteidl::admin as pb;
use flyteauth::pb::flyteidl::service as v1;
use flyteauth::pb::flyteidl2::auth as v2;
use prost::Message;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tower::ServiceExt;

use crate::support::{localhost_tls, sign_in_alice, TestServer};

const DOMAINS: &str = "/flyteidl.service.AdminService/GetDomains";
const USER_INFO_V2: &str = "/flyteidl2.auth.IdentityService/UserInfo";

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// A Connect JSON call over HTTP/1.1: (status, content-type, body).
async fn call_json(
    s: &TestServer,
    path: &str,
    body: Value,
    headers: &[(&str, &str)],
) -> (u16, String, Value) {
    let mut req = client()
        .post(format!("{}{path}", s.url))
        .header("content-type", "application/json")
        .header("connect-protocol-version", "1")
        .body(body.to_string());
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    let ct = r.headers()["content-type"].to_str().unwrap().to_owned();
    let text = r.text().await.unwrap();
    let v = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, ct, v)
}

/// A Connect binary call over HTTP/1.1 with a raw body: (status, content-type, body).
async fn call_raw(
    s: &TestServer,
    path: &str,
    ct: &str,
    body: Vec<u8>,
    headers: &[(&str, &str)],
) -> (u16, String, bytes::Bytes) {
    let mut req = client()
        .post(format!("{}{path}", s.url))
        .header("content-type", ct)
        .body(body);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    let ct = r
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    (status, ct, r.bytes().await.unwrap())
}

fn error_of(body: &bytes::Bytes) -> Value {
    serde_json::from_slice(body).unwrap_or_else(|_| panic!("not JSON: {body:?}"))
}

fn bearer(s: &TestServer) -> String {
    format!("Bearer {}", s.token())
}

#[tokio::test]
async fn unary_json_and_proto_on_every_own_service() {
    let s = TestServer::start().await;
    let auth = bearer(&s);
    let with_token = [("authorization", auth.as_str())];

    // Anonymous: both metadata services, v1 and v2, JSON and proto.
    for svc in [
        "flyteidl.service.AuthMetadataService",
        "flyteidl2.auth.AuthMetadataService",
    ] {
        let (st, ct, m) = call_json(&s, &format!("/{svc}/GetOAuth2Metadata"), json!({}), &[]).await;
        assert_eq!((st, ct.as_str()), (200, "application/json"), "{m}");
        assert_eq!(m["issuer"], s.url);
        assert_eq!(m["tokenEndpoint"], format!("{}/oauth2/token", s.url));
        let (st, _, c) =
            call_json(&s, &format!("/{svc}/GetPublicClientConfig"), json!({}), &[]).await;
        assert_eq!(st, 200);
        assert_eq!(c["clientId"], "flytectl");
        assert_eq!(c["authorizationMetadataKey"], "flyte-authorization");
    }
    let (st, ct, body) = call_raw(
        &s,
        "/flyteidl2.auth.AuthMetadataService/GetPublicClientConfig",
        "application/proto",
        vec![],
        &[],
    )
    .await;
    assert_eq!((st, ct.as_str()), (200, "application/proto"));
    let cfg = v2::GetPublicClientConfigResponse::decode(body).unwrap();
    assert_eq!(cfg.redirect_uri, "http://localhost:53593/callback");

    // Protected: UserInfo v1 and v2 with a bearer token.
    let (st, _, info) = call_json(&s, USER_INFO_V2, json!({}), &with_token).await;
    assert_eq!(st, 200, "{info}");
    assert_eq!(info["subject"], "alice");
    assert_eq!(info["email"], "alice@example.com");
    assert_eq!(info["additionalClaims"]["client_id"], "flytectl");
    let (st, _, body) = call_raw(
        &s,
        "/flyteidl.service.IdentityService/UserInfo",
        "application/proto",
        v1::UserInfoRequest {}.encode_to_vec(),
        &with_token,
    )
    .await;
    assert_eq!(st, 200);
    assert_eq!(v1::UserInfoResponse::decode(body).unwrap().subject, "alice");

    // The project RPCs, JSON and proto.
    let (st, _, _) = call_json(
        &s,
        "/flyteidl.service.AdminService/RegisterProject",
        json!({"project": {"id": "connect-p", "name": "Connect P", "description": "over Connect",
                           "labels": {"values": {"team": "a"}}}}),
        &with_token,
    )
    .await;
    assert_eq!(st, 200);
    let (st, _, p) = call_json(
        &s,
        "/flyteidl.service.AdminService/GetProject",
        json!({"id": "connect-p"}),
        &with_token,
    )
    .await;
    assert_eq!(st, 200, "{p}");
    assert_eq!(p["name"], "Connect P");
    assert_eq!(p["labels"]["values"]["team"], "a");
    assert_eq!(p["domains"].as_array().unwrap().len(), 3);
    let (st, _, p) = call_json(
        &s,
        "/flyteidl.service.AdminService/UpdateProject",
        json!({"id": "connect-p", "name": "Renamed", "state": "ACTIVE"}),
        &with_token,
    )
    .await;
    assert_eq!(st, 200, "{p}");
    let (st, _, body) = call_raw(
        &s,
        "/flyteidl.service.AdminService/ListProjects",
        "application/proto",
        pb::ProjectListRequest {
            limit: 10,
            ..Default::default()
        }
        .encode_to_vec(),
        &with_token,
    )
    .await;
    assert_eq!(st, 200);
    let list = pb::Projects::decode(body).unwrap();
    let p = list.projects.iter().find(|p| p.id == "connect-p").unwrap();
    assert_eq!(p.name, "Renamed");
    // Enums by name in JSON, both ways.
    let (st, _, _) = call_json(
        &s,
        "/flyteidl.service.AdminService/UpdateProject",
        json!({"id": "connect-p", "name": "Renamed", "state": "ARCHIVED"}),
        &with_token,
    )
    .await;
    assert_eq!(st, 200);
    let (_, _, p) = call_json(
        &s,
        "/flyteidl.service.AdminService/GetProject",
        json!({"id": "connect-p"}),
        &with_token,
    )
    .await;
    assert_eq!(p["state"], "ARCHIVED", "{p}");
    let (st, _, d) = call_json(&s, DOMAINS, json!({}), &with_token).await;
    assert_eq!(st, 200);
    assert_eq!(
        d["domains"][0],
        json!({"id": "development", "name": "development"})
    );

    // An existing project again: the service's own code, in Connect terms.
    let (st, _, e) = call_json(
        &s,
        "/flyteidl.service.AdminService/RegisterProject",
        json!({"project": {"id": "connect-p", "name": "again"}}),
        &with_token,
    )
    .await;
    assert_eq!(
        (st, e["code"].as_str()),
        (409, Some("already_exists")),
        "{e}"
    );
    let (st, _, e) = call_json(
        &s,
        "/flyteidl.service.AdminService/GetProject",
        json!({"id": "nope"}),
        &with_token,
    )
    .await;
    assert_eq!((st, e["code"].as_str()), (404, Some("not_found")), "{e}");

    // Health over Connect too.
    let (st, _, h) = call_json(&s, "/grpc.health.v1.Health/Check", json!({}), &[]).await;
    assert_eq!((st, h["status"].as_str()), (200, Some("SERVING")));
}

#[tokio::test]
async fn refused_calls_get_connect_errors_with_the_grpc_reasons() {
    let s = TestServer::start().await;
    // No token: the same reason as gRPC.
    let (st, ct, e) = call_json(&s, USER_INFO_V2, json!({}), &[]).await;
    assert_eq!((st, ct.as_str()), (401, "application/json"));
    assert_eq!(
        e,
        json!({"code": "unauthenticated", "message": "missing access token"})
    );
    // Expired, wrong audience, wrong scheme, in either header.
    let mut expired = s.claims();
    expired["exp"] = json!(crate::support::now() - 3600);
    let expired = format!("Bearer {}", s.mint(&expired));
    let (st, _, e) = call_json(&s, DOMAINS, json!({}), &[("flyte-authorization", &expired)]).await;
    assert_eq!(st, 401);
    assert_eq!(e["code"], "unauthenticated");
    assert_eq!(e["message"], "token expired");
    let mut aud = s.claims();
    aud["aud"] = json!("https://elsewhere.example");
    let aud = format!("Bearer {}", s.mint(&aud));
    let (st, _, e) = call_json(&s, DOMAINS, json!({}), &[("authorization", &aud)]).await;
    assert_eq!(st, 401);
    assert!(
        e["message"]
            .as_str()
            .unwrap()
            .starts_with("audience mismatch"),
        "{e}"
    );
    let basic = "Basic Zm9vOmJhcg==";
    let (st, _, e) = call_json(&s, DOMAINS, json!({}), &[("authorization", basic)]).await;
    assert_eq!((st, e["code"].as_str()), (401, Some("unauthenticated")));
    // The custom key wins over `authorization` (as for gRPC).
    let good = bearer(&s);
    let (st, _, _) = call_json(
        &s,
        DOMAINS,
        json!({}),
        &[("authorization", &good), ("flyte-authorization", &expired)],
    )
    .await;
    assert_eq!(st, 401);
    // Forged signature.
    // Change a character in the middle of the signature: the last one may carry only
    // padding bits, which a lenient base64 decoder ignores.
    let token = s.token();
    let at = token.rfind('.').unwrap() + 10;
    let swap = if &token[at..=at] == "A" { "B" } else { "A" };
    let forged = format!("{}{swap}{}", &token[..at], &token[at + 1..]);
    let (st, _, e) = call_json(
        &s,
        DOMAINS,
        json!({}),
        &[("authorization", &format!("Bearer {forged}"))],
    )
    .await;
    assert_eq!(
        (st, e["code"].as_str()),
        (401, Some("unauthenticated")),
        "{e}"
    );
    // Authentication comes before the message is decoded: malformed protobuf from a caller
    // without credentials is unauthenticated, as over gRPC.
    let (st, _, b) = call_raw(
        &s,
        DOMAINS,
        "application/proto",
        vec![0x0a, 0xff, 0x01],
        &[],
    )
    .await;
    assert_eq!(
        (st, error_of(&b)["code"].as_str()),
        (401, Some("unauthenticated"))
    );
}

#[tokio::test]
async fn protocol_errors() {
    let s = TestServer::start_with(
        "server:\n  httpPort: 0\n  grpc: { port: 0 }\n  maxRequestBytes: 4096\n",
    )
    .await;
    let auth = bearer(&s);
    let t = [("authorization", auth.as_str())];
    let code = |b: &bytes::Bytes| error_of(b)["code"].as_str().unwrap().to_owned();

    // Unknown method of a served service, unknown service: unimplemented in a 404.
    for path in [
        "/flyteidl.service.AdminService/CreateTask",
        "/flyteidl.service.DataProxyService/CreateUploadLocation",
    ] {
        let (st, ct, b) = call_raw(&s, path, "application/proto", vec![], &t).await;
        assert_eq!((st, ct.as_str()), (404, "application/json"), "{path}");
        assert_eq!(code(&b), "unimplemented");
    }
    // Streaming methods are not served over Connect.
    let (st, _, b) = call_raw(
        &s,
        "/grpc.health.v1.Health/Watch",
        "application/proto",
        vec![],
        &[],
    )
    .await;
    assert_eq!((st, code(&b).as_str()), (501, "unimplemented"));
    let (st, _, b) = call_raw(&s, DOMAINS, "application/connect+proto", vec![], &t).await;
    assert_eq!((st, code(&b).as_str()), (501, "unimplemented"));

    // Bad JSON, an unknown field, a wrong type, malformed protobuf: invalid_argument.
    for body in [&b"{"[..], br#"{"nope": 1}"#, br#"{"limit": "x"}"#, b""] {
        let (st, _, b) = call_raw(
            &s,
            "/flyteidl.service.AdminService/ListProjects",
            "application/json",
            body.to_vec(),
            &t,
        )
        .await;
        assert_eq!(
            (st, code(&b).as_str()),
            (400, "invalid_argument"),
            "{body:?}"
        );
    }
    let (st, _, b) = call_raw(
        &s,
        "/flyteidl.service.AdminService/ListProjects",
        "application/proto",
        vec![0x0a, 0xff, 0x01],
        &t,
    )
    .await;
    assert_eq!((st, code(&b).as_str()), (400, "invalid_argument"));
    // JSON must be UTF-8.
    let (st, _, b) = call_raw(
        &s,
        DOMAINS,
        "application/json; charset=iso-8859-1",
        b"{}".to_vec(),
        &t,
    )
    .await;
    assert_eq!((st, code(&b).as_str()), (400, "invalid_argument"));

    // Protocol version other than 1; malformed timeouts.
    let (st, _, b) = call_raw(
        &s,
        DOMAINS,
        "application/proto",
        vec![],
        &[t[0], ("connect-protocol-version", "2")],
    )
    .await;
    assert_eq!((st, code(&b).as_str()), (400, "invalid_argument"));
    for bad in ["-5", "soon", "12345678901"] {
        let (st, _, b) = call_raw(
            &s,
            DOMAINS,
            "application/proto",
            vec![],
            &[t[0], ("connect-timeout-ms", bad)],
        )
        .await;
        assert_eq!((st, code(&b).as_str()), (400, "invalid_argument"), "{bad}");
    }
    let (st, _, _) = call_raw(
        &s,
        DOMAINS,
        "application/proto",
        vec![],
        &[t[0], ("connect-timeout-ms", "5000")],
    )
    .await;
    assert_eq!(st, 200);

    // Compression: gzip works, an unknown encoding is unimplemented, broken gzip is invalid.
    let gz = |data: &[u8]| {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    };
    let (st, _, b) = call_raw(
        &s,
        "/flyteidl.service.AdminService/ListProjects",
        "application/json",
        gz(br#"{"limit": 3}"#),
        &[t[0], ("content-encoding", "gzip")],
    )
    .await;
    assert_eq!(st, 200, "{b:?}");
    let (st, _, b) = call_raw(
        &s,
        DOMAINS,
        "application/proto",
        vec![1, 2, 3],
        &[t[0], ("content-encoding", "br")],
    )
    .await;
    assert_eq!((st, code(&b).as_str()), (501, "unimplemented"));
    let (st, _, b) = call_raw(
        &s,
        DOMAINS,
        "application/proto",
        b"not gzip".to_vec(),
        &[t[0], ("content-encoding", "gzip")],
    )
    .await;
    assert_eq!((st, code(&b).as_str()), (400, "invalid_argument"));

    // Oversized: the body itself, and a small gzip body that inflates past the limit.
    let big = pb::ProjectRegisterRequest {
        project: Some(pb::Project {
            id: "big".into(),
            name: "x".repeat(10_000),
            ..Default::default()
        }),
    }
    .encode_to_vec();
    let (st, _, b) = call_raw(
        &s,
        "/flyteidl.service.AdminService/RegisterProject",
        "application/proto",
        big.clone(),
        &t,
    )
    .await;
    assert_eq!((st, code(&b).as_str()), (429, "resource_exhausted"));
    let (st, _, b) = call_raw(
        &s,
        "/flyteidl.service.AdminService/RegisterProject",
        "application/proto",
        gz(&big),
        &[t[0], ("content-encoding", "gzip")],
    )
    .await;
    assert_eq!((st, code(&b).as_str()), (429, "resource_exhausted"));
    // Nothing was registered by the refused calls.
    let (st, _, b) = call_raw(
        &s,
        "/flyteidl.service.AdminService/GetProject",
        "application/json",
        br#"{"id": "big"}"#.to_vec(),
        &t,
    )
    .await;
    assert_eq!((st, code(&b).as_str()), (404, "not_found"));
}

#[tokio::test]
async fn authorization_rules_answer_permission_denied() {
    let s = TestServer::start_with(
        "auth:\n  authorization:\n    rules:\n      - methods: [\"flyteidl.service.AdminService/RegisterProject\"]\n        allowGroups: [admins]\n",
    )
    .await;
    let mut bob = s.claims();
    bob["sub"] = json!("bob");
    bob["groups"] = json!(["dev"]);
    let bob = format!("Bearer {}", s.mint(&bob));
    let (st, _, e) = call_json(
        &s,
        "/flyteidl.service.AdminService/RegisterProject",
        json!({"project": {"id": "by-bob", "name": "b"}}),
        &[("authorization", &bob)],
    )
    .await;
    assert_eq!(
        (st, e["code"].as_str()),
        (403, Some("permission_denied")),
        "{e}"
    );
    assert!(
        e["message"]
            .as_str()
            .unwrap()
            .contains("auth.authorization.rules[0]"),
        "{e}"
    );
    let mut alice = s.claims();
    alice["groups"] = json!(["admins"]);
    let alice = format!("Bearer {}", s.mint(&alice));
    let (st, _, e) = call_json(
        &s,
        "/flyteidl.service.AdminService/RegisterProject",
        json!({"project": {"id": "by-alice", "name": "a"}}),
        &[("authorization", &alice)],
    )
    .await;
    assert_eq!(st, 200, "{e}");
}

/// An HTTP/2 POST through a tonic channel (prior knowledge h2c, or h2 over TLS).
async fn h2_post(
    ch: tonic::transport::Channel,
    authority: &str,
    path: &str,
    ct: &str,
    body: Vec<u8>,
    headers: &[(&str, &str)],
) -> (u16, String, bytes::Bytes) {
    use http_body_util::BodyExt;
    let mut req = http::Request::builder()
        .method("POST")
        .uri(format!("{authority}{path}"))
        .header("content-type", ct);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let req = req
        .body(tonic::body::Body::new(http_body_util::Full::new(
            bytes::Bytes::from(body),
        )))
        .unwrap();
    let resp = ch.oneshot(req).await.unwrap();
    let status = resp.status().as_u16();
    let ct = resp
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (status, ct, body)
}

#[tokio::test]
async fn connect_over_http2() {
    let s = TestServer::start().await;
    let ch = s.channel().await;
    let auth = bearer(&s);
    let (st, ct, b) = h2_post(
        ch.clone(),
        &s.url,
        DOMAINS,
        "application/proto",
        vec![],
        &[("authorization", &auth)],
    )
    .await;
    assert_eq!((st, ct.as_str()), (200, "application/proto"));
    assert_eq!(pb::GetDomainsResponse::decode(b).unwrap().domains.len(), 3);
    let (st, _, b) = h2_post(
        ch,
        &s.url,
        USER_INFO_V2,
        "application/json",
        b"{}".to_vec(),
        &[],
    )
    .await;
    assert_eq!(st, 401);
    assert_eq!(error_of(&b)["code"], "unauthenticated");
}

#[tokio::test]
async fn connect_over_tls_http1_and_http2() {
    let dir = std::sync::Arc::new(tempfile::tempdir().unwrap());
    let tls = localhost_tls(dir.path());
    let (cert_path, key_path) = (&tls.cert_path, &tls.key_path);
    let extra = format!(
        "server:\n  httpPort: 0\n  grpc: {{ port: 0 }}\n  security:\n    secure: true\n    ssl: {{ certificateFile: {}, keyFile: {} }}\n",
        cert_path.display(),
        key_path.display()
    );
    let s = TestServer::start_in(dir, &extra).await;
    let origin = format!("https://localhost:{}", s.addr.port());
    let mut claims = s.claims();
    claims["iss"] = json!(origin);
    claims["aud"] = json!(origin);
    let auth = format!("Bearer {}", s.mint(&claims));

    // HTTP/1.1 over TLS (reqwest offers only http/1.1 in ALPN here).
    let http = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(tls.ca_pem.as_bytes()).unwrap())
        .build()
        .unwrap();
    let r = http
        .post(format!("{origin}{USER_INFO_V2}"))
        .header("content-type", "application/json")
        .header("authorization", &auth)
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.version(), reqwest::Version::HTTP_11);
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["subject"], "alice");
    let r = http
        .post(format!(
            "{origin}/flyteidl2.auth.AuthMetadataService/GetOAuth2Metadata"
        ))
        .header("content-type", "application/json")
        .body("{}")
        .send()
        .await
        .unwrap();
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["tokenEndpoint"], format!("{origin}/oauth2/token"));

    // HTTP/2 over TLS.
    let tls = tonic::transport::ClientTlsConfig::new()
        .ca_certificate(tonic::transport::Certificate::from_pem(&tls.ca_pem))
        .domain_name("localhost");
    let ch = tonic::transport::Channel::from_shared(origin.clone())
        .unwrap()
        .tls_config(tls)
        .unwrap()
        .connect()
        .await
        .unwrap();
    let (st, _, b) = h2_post(
        ch.clone(),
        &origin,
        USER_INFO_V2,
        "application/proto",
        vec![],
        &[("authorization", &auth)],
    )
    .await;
    assert_eq!(st, 200);
    assert_eq!(v2::UserInfoResponse::decode(b).unwrap().subject, "alice");
    let (st, _, b) = h2_post(ch, &origin, USER_INFO_V2, "application/proto", vec![], &[]).await;
    assert_eq!(
        (st, error_of(&b)["code"].as_str()),
        (401, Some("unauthenticated"))
    );
}

/// Writes an HTTP/1.1 request with a chunked body: the head, then `chunks` chunks of
/// `chunk` bytes each; reads the whole answer. Returns (status line, head, body).
async fn chunked_call(
    s: &TestServer,
    path: &str,
    headers: &[(&str, &str)],
    chunk: usize,
    chunks: usize,
) -> (String, String, String) {
    let mut tcp = tokio::net::TcpStream::connect(s.addr).await.unwrap();
    let mut head = format!(
        "POST {path} HTTP/1.1\r\nhost: 127.0.0.1:{}\r\ncontent-type: application/proto\r\ntransfer-encoding: chunked\r\nconnection: close\r\n",
        s.addr.port()
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    tcp.write_all(head.as_bytes()).await.unwrap();
    // A valid protobuf: field 15 (unknown to the request) as one bytes value spanning the
    // chunks; harmless to the service when it is read.
    let total = chunk * chunks;
    let mut payload = vec![0x7a];
    let mut n = total - 1 - varint_len(total);
    while n >= 0x80 {
        payload.push((n as u8) | 0x80);
        n >>= 7;
    }
    payload.push(n as u8);
    payload.resize(total, b'a');
    let (mut rx_half, tx_half) = tcp.into_split();
    // The write half is handed back, not dropped: a FIN from the client would make hyper
    // close the connection (no half-close), which no real client does.
    let writer = tokio::spawn(async move {
        let mut tx = tx_half;
        for part in payload.chunks(chunk) {
            let frame = [
                format!("{:x}\r\n", part.len()).into_bytes(),
                part.to_vec(),
                b"\r\n".to_vec(),
            ]
            .concat();
            if tx.write_all(&frame).await.is_err() {
                return tx;
            }
            tokio::task::yield_now().await;
        }
        let _ = tx.write_all(b"0\r\n\r\n").await;
        tx
    });
    let mut out = Vec::new();
    let read = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        rx_half.read_to_end(&mut out),
    )
    .await
    .expect("the answer comes");
    let _ = writer.await;
    read.expect("no reset");
    let text = String::from_utf8_lossy(&out).into_owned();
    let (head, body) = text
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no HTTP answer: {text:?}"));
    let status = head.lines().next().unwrap().to_owned();
    (status, head.to_owned(), body.to_owned())
}

fn varint_len(mut n: usize) -> usize {
    let mut len = 1;
    while n >= 0x80 {
        n >>= 7;
        len += 1;
    }
    len
}

#[tokio::test]
async fn a_refused_streamed_body_still_gets_its_connect_error() {
    let s = TestServer::start_with(
        "server:\n  httpPort: 0\n  grpc: { port: 0 }\n  maxRequestBytes: 262144\n",
    )
    .await;
    // No token, a 200 KB chunked body: the Connect error, not a reset.
    let (status, head, body) = chunked_call(
        &s,
        "/flyteidl.service.AdminService/RegisterProject",
        &[],
        16 * 1024,
        12,
    )
    .await;
    assert!(status.starts_with("HTTP/1.1 401"), "{status}");
    assert!(head
        .to_ascii_lowercase()
        .contains("content-type: application/json"));
    let json_start = body.find('{').unwrap();
    let json_end = body.rfind('}').unwrap();
    let e: Value = serde_json::from_str(&body[json_start..=json_end]).unwrap();
    assert_eq!(e["code"], "unauthenticated");
    // Over the limit (512 KB streamed against 256 KB): resource_exhausted, not a reset.
    let auth = bearer(&s);
    let (status, _, body) = chunked_call(
        &s,
        "/flyteidl.service.AdminService/RegisterProject",
        &[("authorization", &auth)],
        32 * 1024,
        16,
    )
    .await;
    assert!(status.starts_with("HTTP/1.1 429"), "{status}");
    assert!(body.contains("resource_exhausted"), "{body}");
}

#[tokio::test]
async fn cookie_calls_need_csrf_and_an_allowed_origin() {
    let s = TestServer::start_with(
        "auth:\n  userAuth:\n    localUsers:\n      - { username: alice, passwordSecretName: alice_pw, name: Alice Example, email: alice@example.com }\n",
    )
    .await;
    let b = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .cookie_store(true)
        .build()
        .unwrap();
    let csrf = sign_in_alice(&s, &b).await;
    let own = format!("http://127.0.0.1:{}", s.addr.port());
    let call = |csrf: Option<&str>, origin: Option<&str>| {
        let mut req = b
            .post(format!("{}{USER_INFO_V2}", s.url))
            .header("content-type", "application/json")
            .body("{}");
        if let Some(c) = csrf {
            req = req.header("x-csrf-token", c);
        }
        if let Some(o) = origin {
            req = req.header("origin", o);
        }
        async move {
            let r = req.send().await.unwrap();
            let st = r.status().as_u16();
            (st, r.json::<Value>().await.unwrap())
        }
    };
    // Without an Origin (or Referer) the CSRF header is required.
    let (st, e) = call(None, None).await;
    assert_eq!((st, e["code"].as_str()), (401, Some("unauthenticated")));
    assert_eq!(e["message"], "missing or wrong CSRF token");
    // A Connect body is never CORS-simple (application/json): from an allowed Origin the
    // cookie alone is enough (DESIGN.md §6, the console behind the gateway) ...
    let (st, v) = call(None, Some(&own)).await;
    assert_eq!((st, v["subject"].as_str()), (200, Some("alice")), "{v}");
    // ... and from a foreign one it is refused.
    let (st, e) = call(None, Some("https://evil.example")).await;
    assert_eq!((st, e["code"].as_str()), (401, Some("unauthenticated")));
    let (st, e) = call(Some("wrong"), Some(&own)).await;
    assert_eq!(
        (st, e["message"].as_str()),
        (401, Some("missing or wrong CSRF token"))
    );
    let (st, e) = call(Some(&csrf), Some("https://evil.example")).await;
    assert_eq!(
        (st, e["message"].as_str()),
        (401, Some("origin not allowed"))
    );
    let (st, v) = call(Some(&csrf), Some(&own)).await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["subject"], "alice");
    // After logout the cookie is dead for Connect too.
    let r = b
        .post(format!("{}/logout", s.url))
        .header("origin", &own)
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success() || r.status().is_redirection());
    let (st, e) = call(Some(&csrf), Some(&own)).await;
    assert_eq!(
        (st, e["code"].as_str()),
        (401, Some("unauthenticated")),
        "{e}"
    );
}

#[tokio::test]
async fn get_me_with_a_grpc_content_type_is_http() {
    let s = TestServer::start().await;
    // nginx auth_request copies the gRPC call's content type onto its GET subrequest.
    let r = client()
        .get(format!("{}/me", s.url))
        .header("content-type", "application/grpc")
        .header("authorization", bearer(&s))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-user-subject"], "alice");
    let r = client()
        .get(format!("{}/me", s.url))
        .header("content-type", "application/grpc+proto")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    // A POST with that content type is still gRPC (and gRPC-web still works).
    let r = client()
        .post(format!("{}/grpc.health.v1.Health/Check", s.url))
        .header("content-type", "application/grpc-web+proto")
        .body(vec![0u8, 0, 0, 0, 0])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("application/grpc-web"));
}

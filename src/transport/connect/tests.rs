//! Tests of the Connect translation.

use super::*;

fn req(method: &str, path: &str, ct: Option<&str>) -> Request<()> {
    let mut b = Request::builder().method(method).uri(path);
    if let Some(ct) = ct {
        b = b.header("content-type", ct);
    }
    b.body(()).unwrap()
}

#[test]
fn connect_requests_are_recognised() {
    let p = "/flyteidl2.auth.IdentityService/UserInfo";
    assert!(is_connect(&req("POST", p, Some("application/proto"))));
    assert!(is_connect(&req(
        "POST",
        p,
        Some("application/json; charset=utf-8")
    )));
    assert!(is_connect(&req(
        "POST",
        p,
        Some("application/connect+proto")
    )));
    assert!(is_connect(&req("POST", "/x.Y/Z", Some("application/json"))));
    // Not Connect: gRPC, REST, GET, other paths.
    assert!(!is_connect(&req("POST", p, Some("application/grpc"))));
    assert!(!is_connect(&req("POST", p, None)));
    assert!(!is_connect(&req("GET", p, Some("application/json"))));
    assert!(!is_connect(&req(
        "POST",
        "/api/v1/projects",
        Some("application/json")
    )));
    assert!(!is_connect(&req(
        "POST",
        "/.well-known/openid-configuration",
        Some("application/json")
    )));
    assert!(!is_connect(&req(
        "POST",
        "/a.B/C/D",
        Some("application/json")
    )));
    assert!(!is_connect(&req("POST", "/a.B/", Some("application/json"))));
}

#[test]
fn timeouts_are_parsed_strictly() {
    let v = |s: &str| HeaderValue::from_str(s).unwrap();
    assert_eq!(
        parse_timeout(Some(&v("1500"))).ok().flatten(),
        Some(Duration::from_millis(1500))
    );
    assert!(parse_timeout(None).ok().unwrap().is_none());
    for bad in ["", "-1", "1.5", "12345678901", "10s"] {
        assert!(parse_timeout(Some(&v(bad))).is_err(), "{bad}");
    }
}

/// A stand-in for a gRPC service (the real ones are driven in tests/it/connect.rs): it
/// records the translated request and answers after `delay` with one empty message and
/// a trailer.
#[derive(Clone)]
struct Recorder {
    delay: Duration,
    seen: Arc<std::sync::Mutex<Option<HeaderMap>>>,
}

impl tonic::server::NamedService for Recorder {
    const NAME: &'static str = "grpc.health.v1.Health";
}

impl Service<Request<tonic::body::Body>> for Recorder {
    type Response = Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<tonic::body::Body>) -> Self::Future {
        *self.seen.lock().unwrap() = Some(req.headers().clone());
        let delay = self.delay;
        Box::pin(async move {
            tokio::time::sleep(delay).await;
            let mut trailers = HeaderMap::new();
            trailers.insert("grpc-status", HeaderValue::from_static("0"));
            trailers.insert("x-trailer", HeaderValue::from_static("t"));
            let frames = vec![
                Ok::<_, tonic::Status>(http_body::Frame::data(Bytes::from_static(&[
                    0, 0, 0, 0, 0,
                ]))),
                Ok(http_body::Frame::trailers(trailers)),
            ];
            let body = http_body_util::StreamBody::new(futures_util::stream::iter(frames));
            let mut resp = Response::new(tonic::body::Body::new(body));
            resp.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/grpc"),
            );
            resp.headers_mut()
                .insert("x-leading", HeaderValue::from_static("l"));
            Ok(resp)
        })
    }
}

fn recorder(delay: Duration) -> (ConnectService, Arc<std::sync::Mutex<Option<HeaderMap>>>) {
    let seen = Arc::new(std::sync::Mutex::new(None));
    let svc = ConnectService::new(
        tonic::service::Routes::new(Recorder {
            delay,
            seen: seen.clone(),
        }),
        1024,
    );
    (svc, seen)
}

#[tokio::test]
async fn the_grpc_call_carries_the_callers_headers_and_the_answer_its_metadata() {
    let (svc, seen) = recorder(Duration::ZERO);
    let req = Request::post("/grpc.health.v1.Health/Check")
        .header("content-type", "application/json")
        .header("connect-protocol-version", "1")
        .header("connect-timeout-ms", "3000")
        .header("authorization", "Bearer x")
        .header("cookie", "flyte_session=s")
        .header("origin", "https://console.example")
        .header("x-csrf-token", "c")
        .header("grpc-status", "0")
        .body(Body::from("{}"))
        .unwrap();
    let resp = svc.oneshot(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()["content-type"], "application/json");
    assert_eq!(resp.headers()["x-leading"], "l");
    assert_eq!(resp.headers()["trailer-x-trailer"], "t");
    assert!(!resp.headers().contains_key("grpc-status"));
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(&body[..], b"{}");
    let h = seen.lock().unwrap().clone().unwrap();
    assert_eq!(h["content-type"], "application/grpc");
    assert_eq!(h["te"], "trailers");
    assert_eq!(h["grpc-timeout"], "3000m");
    for kept in ["authorization", "cookie", "origin", "x-csrf-token"] {
        assert!(h.contains_key(kept), "{kept}");
    }
    // The caller cannot speak gRPC's own headers into the call.
    assert!(!h.contains_key("connect-protocol-version"));
    assert!(!h.contains_key("connect-timeout-ms"));
    assert!(!h.contains_key("grpc-status"));
}

#[tokio::test]
async fn the_callers_deadline_ends_the_call_with_deadline_exceeded() {
    let (svc, _) = recorder(Duration::from_secs(30));
    let req = Request::post("/grpc.health.v1.Health/Check")
        .header("content-type", "application/proto")
        .header("connect-timeout-ms", "50")
        .body(Body::empty())
        .unwrap();
    let started = std::time::Instant::now();
    let resp = svc.oneshot(req).await.unwrap();
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(resp.status(), StatusCode::GATEWAY_TIMEOUT);
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["code"], "deadline_exceeded");
}

#[test]
fn gzip_is_bounded() {
    use std::io::Write;
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(&[7u8; 1000]).unwrap();
    let gz = enc.finish().unwrap();
    assert_eq!(gunzip(&gz, 1000).ok().unwrap().len(), 1000);
    assert_eq!(
        gunzip(&gz, 999).err().unwrap().error.code,
        tonic::Code::ResourceExhausted
    );
    assert_eq!(
        gunzip(b"not gzip", 1000).err().unwrap().error.code,
        tonic::Code::InvalidArgument
    );
}

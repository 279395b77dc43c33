//! TLS on the one port: a tonic client with the test CA reaches gRPC and HTTPS works; plain
//! h2c on that port is refused.

use flyteauth::pb::flyteidl::service as v1;
use tonic::transport::{Certificate, Channel, ClientTlsConfig};

use crate::support::{localhost_tls, TestServer};

#[tokio::test]
async fn grpc_and_https_over_tls_on_one_port() {
    let dir = std::sync::Arc::new(tempfile::tempdir().unwrap());
    let tls = localhost_tls(dir.path());
    let (cert_path, key_path) = (&tls.cert_path, &tls.key_path);
    let extra = format!(
        "server:\n  httpPort: 0\n  grpc: {{ port: 0 }}\n  security:\n    secure: true\n    ssl: {{ certificateFile: {}, keyFile: {} }}\n",
        cert_path.display(),
        key_path.display()
    );
    let s = TestServer::start_in(dir, &extra).await;
    let port = s.addr.port();

    let client_tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(&tls.ca_pem))
        .domain_name("localhost");
    let ch = Channel::from_shared(format!("https://localhost:{port}"))
        .unwrap()
        .tls_config(client_tls)
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut c = v1::auth_metadata_service_client::AuthMetadataServiceClient::new(ch.clone());
    let m = c
        .get_o_auth2_metadata(v1::OAuth2MetadataRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        m.token_endpoint,
        format!("https://localhost:{port}/oauth2/token")
    );
    let mut id = v1::identity_service_client::IdentityServiceClient::new(ch);
    let mut req = tonic::Request::new(v1::UserInfoRequest {});
    let mut claims = s.claims();
    claims["iss"] = format!("https://localhost:{port}").into();
    claims["aud"] = format!("https://localhost:{port}").into();
    req.metadata_mut().insert(
        "authorization",
        format!("Bearer {}", s.mint(&claims)).parse().unwrap(),
    );
    assert_eq!(
        id.user_info(req).await.unwrap().into_inner().subject,
        "alice"
    );

    // HTTPS for the HTTP routes on the same port.
    let http = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(tls.ca_pem.as_bytes()).unwrap())
        .build()
        .unwrap();
    let r = http
        .get(format!("https://localhost:{port}/healthcheck"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    // Plain h2c and plain HTTP/1.1 on the TLS port fail.
    let plain = Channel::from_shared(format!("http://127.0.0.1:{port}"))
        .unwrap()
        .connect()
        .await;
    if let Ok(ch) = plain {
        let mut c = v1::auth_metadata_service_client::AuthMetadataServiceClient::new(ch);
        let err = c.get_o_auth2_metadata(v1::OAuth2MetadataRequest {}).await;
        assert!(err.is_err(), "h2c must not be served on the TLS port");
    }
    assert!(reqwest::get(format!("http://127.0.0.1:{port}/healthcheck"))
        .await
        .is_err());
}

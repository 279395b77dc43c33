//! Starting a server for a test and minting tokens with its keys.

use std::net::SocketAddr;
use std::sync::Arc;

use flyteauth::pb::flyteidl::service as v1;
use flyteauth::testing::{
    AppState, Config, Listeners, SigningAlg, SigningKey, StartOptions, SystemClock,
};
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tonic::transport::Channel;

pub struct TestServer {
    pub addr: SocketAddr,
    /// `http://127.0.0.1:PORT` (also an accepted audience and issuer).
    pub url: String,
    pub dir: Arc<tempfile::TempDir>,
    pub state: Arc<AppState>,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

/// The YAML every test server starts from; `extra` is appended (top-level sections).
pub fn base_yaml(dir: &std::path::Path, extra: &str) -> String {
    format!(
        r#"
{server}
secrets:
  secrets-prefix: {dir}/secrets
{db}
{extra}
"#,
        dir = dir.display(),
        server = if extra.contains("server:") {
            ""
        } else {
            "server:\n  httpPort: 0\n  grpc: { port: 0 }"
        },
        db = if extra.contains("database:") {
            String::new()
        } else {
            format!(
                "database:\n  sqlite: {{ file: {}/flyteauth.db }}",
                dir.display()
            )
        },
    )
}

impl TestServer {
    pub async fn start() -> Self {
        Self::start_with("").await
    }

    pub async fn start_with(extra: &str) -> Self {
        let dir = Arc::new(tempfile::tempdir().unwrap());
        Self::start_in(dir, extra).await
    }

    /// Starts on an existing directory (restart tests).
    pub async fn start_in(dir: Arc<tempfile::TempDir>, extra: &str) -> Self {
        Self::start_full(dir, extra, Arc::new(SystemClock)).await
    }

    /// Starts with an injected clock (tests that move time instead of sleeping).
    pub async fn start_with_clock(extra: &str, clock: flyteauth::testing::SharedClock) -> Self {
        Self::start_full(Arc::new(tempfile::tempdir().unwrap()), extra, clock).await
    }

    async fn start_full(
        dir: Arc<tempfile::TempDir>,
        extra: &str,
        clock: flyteauth::testing::SharedClock,
    ) -> Self {
        let yaml = base_yaml(dir.path(), extra);
        let config = Config::from_yaml(&yaml, dir.path()).expect("test config");
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = AppState::build(
            config,
            StartOptions {
                env: vec![],
                clock,
                http_addr: addr,
            },
        )
        .await
        .expect("server starts");
        let (tx, rx) = oneshot::channel();
        let task = tokio::spawn(flyteauth::testing::run(
            state.clone(),
            Listeners {
                http: listener,
                grpc: None,
            },
            async {
                let _ = rx.await;
            },
        ));
        let scheme = if state.tls { "https" } else { "http" };
        TestServer {
            addr,
            url: format!("{scheme}://127.0.0.1:{}", addr.port()),
            dir,
            state,
            shutdown: Some(tx),
            task: Some(task),
        }
    }

    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.task.take() {
            t.await.unwrap().unwrap();
        }
    }

    pub async fn channel(&self) -> Channel {
        Channel::from_shared(format!("http://{}", self.addr))
            .unwrap()
            .connect()
            .await
            .unwrap()
    }

    pub async fn admin(&self) -> v1::admin_service_client::AdminServiceClient<Channel> {
        v1::admin_service_client::AdminServiceClient::new(self.channel().await)
    }

    pub async fn identity(&self) -> v1::identity_service_client::IdentityServiceClient<Channel> {
        v1::identity_service_client::IdentityServiceClient::new(self.channel().await)
    }

    pub fn signing_key(&self) -> SigningKey {
        let pem = std::fs::read(self.dir.path().join("secrets/token_rsa_key.pem")).unwrap();
        SigningKey::from_pem(&pem, SigningAlg::RS256).unwrap()
    }

    /// Claims of a valid token for this server; tests change what they need.
    pub fn claims(&self) -> Value {
        let now = now();
        json!({
            "iss": self.url, "aud": [self.url], "sub": "alice", "client_id": "flytectl",
            "scp": ["all", "offline"], "iat": now, "exp": now + 600, "jti": "t-1",
            "user_info": {"name": "Alice Example", "email": "alice@example.com", "preferred_username": "alice"},
        })
    }

    pub fn mint(&self, claims: &Value) -> String {
        self.signing_key().sign_jwt("at+jwt", claims)
    }

    pub fn token(&self) -> String {
        self.mint(&self.claims())
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

#[allow(clippy::disallowed_methods)]
pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// A tonic request carrying `Bearer <token>` in `key`.
pub fn with_token<T>(msg: T, key: &'static str, token: &str) -> tonic::Request<T> {
    let mut req = tonic::Request::new(msg);
    req.metadata_mut()
        .insert(key, format!("Bearer {token}").parse().unwrap());
    req
}

/// A test CA and a `localhost` certificate it signed, written into a test's directory as
/// `tls.crt`, `tls.key` and `ca.pem` (the rustls crypto provider installed).
pub struct LocalhostTls {
    pub ca_pem: String,
    pub cert_path: std::path::PathBuf,
    pub key_path: std::path::PathBuf,
    pub ca_path: std::path::PathBuf,
}

pub fn localhost_tls(dir: &std::path::Path) -> LocalhostTls {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let leaf_key = rcgen::KeyPair::generate().unwrap();
    let leaf = rcgen::CertificateParams::new(vec!["localhost".to_string()])
        .unwrap()
        .signed_by(&leaf_key, &ca, &ca_key)
        .unwrap();
    let tls = LocalhostTls {
        ca_pem: ca.pem(),
        cert_path: dir.join("tls.crt"),
        key_path: dir.join("tls.key"),
        ca_path: dir.join("ca.pem"),
    };
    std::fs::write(&tls.cert_path, leaf.pem()).unwrap();
    std::fs::write(&tls.key_path, leaf_key.serialize_pem()).unwrap();
    std::fs::write(&tls.ca_path, &tls.ca_pem).unwrap();
    tls
}

/// A browser-like client: a cookie jar, redirects not followed.
pub fn browser() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .cookie_store(true)
        .build()
        .unwrap()
}

/// The value a response sets for cookie `name`.
pub fn cookie_value(r: &reqwest::Response, name: &str) -> Option<String> {
    r.headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|c| {
            c.strip_prefix(&format!("{name}="))
                .map(|rest| rest.split(';').next().unwrap().to_owned())
        })
}

/// The body of the page at `url`.
pub async fn page(b: &reqwest::Client, url: &str) -> String {
    b.get(url).send().await.unwrap().text().await.unwrap()
}

/// The value of the form field `name` in `page` (`&amp;` unescaped), if there is one.
pub fn form_field(page: &str, name: &str) -> Option<String> {
    let marker = format!("name=\"{name}\" value=\"");
    let start = page.find(&marker)? + marker.len();
    let end = start + page[start..].find('"')?;
    Some(page[start..end].replace("&amp;", "&"))
}

/// Signs the local user alice in through the login form at `login` (a path: `/login`, or
/// where a protected page sent the browser), her password from the test's secrets, keeping
/// the form's `redirect_url`. The login's response: 303 on success.
pub async fn log_in_alice(s: &TestServer, b: &reqwest::Client, login: &str) -> reqwest::Response {
    let page = page(b, &format!("{}{login}", s.url)).await;
    let password = std::fs::read_to_string(s.dir.path().join("secrets/alice_pw")).unwrap();
    let mut form = vec![
        ("username", "alice".to_owned()),
        ("password", password.trim().to_owned()),
        (
            "csrf_token",
            form_field(&page, "csrf_token").expect("login form"),
        ),
    ];
    if let Some(redirect) = form_field(&page, "redirect_url") {
        form.push(("redirect_url", redirect));
    }
    b.post(format!("{}/login", s.url))
        .form(&form)
        .send()
        .await
        .unwrap()
}

/// Signs alice in through `/login`; returns the session's CSRF token.
pub async fn sign_in_alice(s: &TestServer, b: &reqwest::Client) -> String {
    let r = log_in_alice(s, b, "/login").await;
    assert_eq!(r.status(), 303);
    cookie_value(&r, "flyte_csrf").unwrap()
}

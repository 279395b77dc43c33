//! The binary: bad config, unknown keys and missing secrets fail with one line naming the
//! key and exit code 64; `secret init` writes Flyte's secrets; `hash-secret` is Flyte's form.

use std::io::Write;
use std::process::{Command, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_flyteauth");

fn run_with_config(yaml: &str) -> (i32, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.yaml");
    std::fs::write(&path, yaml).unwrap();
    let out = Command::new(BIN)
        .args(["serve", "--config"])
        .arg(&path)
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn base(dir_extra: &str) -> String {
    format!("server: {{ httpPort: 0, grpc: {{ port: 0 }} }}\nsecrets: {{ secrets-prefix: ./secrets }}\ndatabase: {{ sqlite: {{ file: ./db.sqlite }} }}\n{dir_extra}")
}

#[test]
fn config_errors_name_the_key_and_exit_64() {
    let cases = [
        (base("auth: { userAuth: { openId: { clientIdd: x } } }"), "auth.userAuth.openId.clientIdd", "unknown field"),
        (base("auth: { appAuth: { authServerType: Other } }"), "auth.appAuth.authServerType", "Other"),
        ("server: { httpPort: many }".to_string(), "server.httpPort", "invalid"),
        (base("auth: { appAuth: { selfAuthServer: { signingAlgorithm: HS256 } } }"), "signingAlgorithm", "HS256"),
        (
            base("gateway: { upstreams: [{ name: flyteadmin, url: 'flyteadmin:8089', services: [flyteidl.service.AdminService] }] }"),
            "gateway.upstreams[0].url",
            "not http or https",
        ),
        (base("gateway: { upstream: [] }"), "gateway.upstream", "unknown field"),
        (
            base("auth: { userAuth: { openId: { clientId: flyte, baseUrl: 'https://idp.example' } } }"),
            "auth.userAuth.openId.clientSecretName",
            "FLYTE_SECRET_oidc_client_secret",
        ),
    ];
    for (yaml, key, detail) in cases {
        let (code, stderr) = run_with_config(&yaml);
        assert_eq!(code, 64, "{yaml}\n{stderr}");
        let line = stderr.trim();
        assert_eq!(line.lines().count(), 1, "one line: {line}");
        assert!(line.contains(key) && line.contains(detail), "{line}");
    }
}

#[test]
fn secret_init_writes_flytes_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(BIN)
        .args(["secret", "init", "--dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(out.status.success());
    let pem = std::fs::read_to_string(dir.path().join("token_rsa_key.pem")).unwrap();
    assert!(pem.starts_with("-----BEGIN RSA PRIVATE KEY-----"));
    for (name, len) in [
        ("claim_symmetric_key", 32),
        ("cookie_hash_key", 64),
        ("cookie_block_key", 32),
    ] {
        use base64::Engine;
        let text = std::fs::read_to_string(dir.path().join(name)).unwrap();
        let raw = base64::engine::general_purpose::STANDARD_NO_PAD
            .decode(text.trim())
            .unwrap();
        assert_eq!(raw.len(), len, "{name}");
    }
    // A second run keeps what exists.
    let out = Command::new(BIN)
        .args(["secret", "init", "--dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("kept"));
    assert_eq!(
        std::fs::read_to_string(dir.path().join("token_rsa_key.pem")).unwrap(),
        pem
    );
}

#[test]
fn hash_secret_prints_flytes_base64_bcrypt() {
    use base64::Engine;
    let mut child = Command::new(BIN)
        .args(["hash-secret", "--cost", "4"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"s3cret\n").unwrap();
    let out = child.wait_with_output().unwrap();
    let b64 = String::from_utf8(out.stdout).unwrap();
    let hash = base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .unwrap();
    assert!(bcrypt::verify("s3cret", std::str::from_utf8(&hash).unwrap()).unwrap());
}

#[test]
fn check_config_accepts_the_repository_config() {
    let root = env!("CARGO_MANIFEST_DIR");
    let out = Command::new(BIN)
        .args(["check-config", "--config"])
        .arg(format!("{root}/config.yaml"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn token_and_whoami_commands() {
    let s = crate::support::TestServer::start().await;
    let secret_file = s.dir.path().join("secrets/flytepropeller_client_secret");
    let endpoint = s.url.clone();
    let (token, who) = tokio::task::spawn_blocking(move || {
        let args = |cmd: &str| {
            let mut c = Command::new(BIN);
            c.args([
                cmd,
                "--endpoint",
                &endpoint,
                "--client-id",
                "flytepropeller",
                "--client-secret-file",
            ])
            .arg(&secret_file);
            c.output().unwrap()
        };
        (args("token"), args("whoami"))
    })
    .await
    .unwrap();
    assert!(
        token.status.success(),
        "{}",
        String::from_utf8_lossy(&token.stderr)
    );
    let jwt = String::from_utf8(token.stdout).unwrap();
    assert_eq!(jwt.trim().split('.').count(), 3);
    assert!(token.stderr.is_empty(), "the token goes to stdout only");
    assert!(
        who.status.success(),
        "{}",
        String::from_utf8_lossy(&who.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&who.stdout).unwrap();
    assert_eq!(v["subject"], "flytepropeller");
}

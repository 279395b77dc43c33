use super::*;

fn load(yaml: &str) -> Result<Config, ConfigError> {
    Config::from_yaml(yaml, Path::new("/cfg"))
}

#[test]
fn empty_config_has_flyte_defaults() {
    let c = load("").unwrap();
    assert_eq!(c.server.http_port, 8088);
    assert_eq!(c.server.grpc_port, Some(8089));
    assert_eq!(c.auth.grpc_authorization_header, "flyte-authorization");
    assert_eq!(c.auth.flyte_client.client_id, "flytectl");
    assert_eq!(c.auth.required_scopes, vec!["all"]);
    assert_eq!(c.domains.len(), 3);
    assert_eq!(c.secrets_dir, PathBuf::from("/etc/secrets"));
}

#[test]
fn unknown_key_names_its_path() {
    let e = load("auth:\n  userAuth:\n    openId:\n      clientIdd: x\n").unwrap_err();
    assert_eq!(e.path, "auth.userAuth.openId.clientIdd", "{e}");
    assert!(e.message.starts_with("unknown field `clientIdd`"), "{e}");
    assert!(e.message.contains("clientIdd"), "{e}");
}

#[test]
fn bad_value_names_its_path() {
    let e = load("auth:\n  appAuth:\n    authServerType: Foo\n").unwrap_err();
    assert_eq!(e.path, "auth.appAuth.authServerType", "{e}");
    let e = load("auth:\n  appAuth:\n    selfAuthServer:\n      accessTokenLifespan: soon\n")
        .unwrap_err();
    assert_eq!(
        e.path, "auth.appAuth.selfAuthServer.accessTokenLifespan",
        "{e}"
    );
    let e = load("server:\n  httpPort: 99999\n").unwrap_err();
    assert_eq!(e.path, "server.httpPort", "{e}");
    let e = load("auth:\n  authorizedUris: ['not a url']\n").unwrap_err();
    assert_eq!(e.path, "auth.authorizedUris[0]", "{e}");
    let e =
        load("auth:\n  userAuth:\n    openId:\n      clientId: ''\n      baseUrl: https://idp\n")
            .unwrap_err();
    assert_eq!(e.path, "auth.userAuth.openId.clientId", "{e}");
    let e = load("server:\n  security:\n    allowedOrigins: ['*', 'not an origin']\n").unwrap_err();
    assert_eq!(e.path, "server.security.allowedOrigins[1]", "{e}");
}

#[test]
fn flyte_shapes_load() {
    let yaml = r#"
server:
  httpPort: 8088
  grpc: { port: 0 }
  security: { secure: false, useAuth: true, allowCors: true, allowedOrigins: ["http://localhost:8088"], allowedHeaders: [Content-Type, flyte-authorization] }
auth:
  authorizedUris: [https://flyte.example.com, http://flyteadmin:80]
  appAuth:
    authServerType: Self
    selfAuthServer:
      accessTokenLifespan: 1h0m0s
      staticClients:
        flytepropeller:
          id: flytepropeller
          client_secret: JDJhJDA2JGQ2UFFuMlFBRlUzY0w1VjhNRGtldXVrNjN4dWJxVXhOeGp0ZlB3LkZjOU1VbEFDb0pZZG1hUw==
          redirect_uris: [http://localhost:3846/callback]
          grant_types: [refresh_token, client_credentials]
          response_types: [token]
          scopes: [all, offline, access_token]
          public: false
    externalAuthServer: { allowedAudience: "a,b", retryDelay: 1s }
    thirdPartyConfig: { flyteClient: { clientId: flytectl, redirectUri: "http://localhost:53593/callback", scopes: [all, offline] } }
secrets: { secrets-prefix: ./secrets }
database:
  postgres: { host: db, port: 5433, dbname: flyte, username: flyte, options: "sslmode=disable" }
"#;
    let c = load(yaml).unwrap();
    assert_eq!(c.server.grpc_port, None);
    assert_eq!(c.auth.authorized_uris.len(), 2);
    assert_eq!(c.auth.extra_audiences, vec!["a", "b"]);
    assert_eq!(c.secrets_dir, PathBuf::from("/cfg/./secrets"));
    match c.database {
        DatabaseTarget::Postgres { url } => {
            assert_eq!(url, "postgres://flyte@db:5433/flyte?sslmode=disable")
        }
        other => panic!("{other:?}"),
    }
}

//! Loading a Flyte operator's configuration as it is deployed: several files and folders
//! (`--config a.yaml --config /etc/flyte/config.d`), every `*.yaml`/`*.yml` of a folder in
//! name order, later files deep-merging over earlier ones (maps merge key by key; lists and
//! scalars replace), as Flyte's config loader (viper) does. A relative path in a file is
//! relative to that file's directory.
//!
//! Before the merged document is validated ([`crate::config::parse_file`]):
//! - the top-level sections of other Flyte components ([`OTHER_COMPONENT_SECTIONS`]) and the
//!   admin-client keys under `admin:` ([`ADMIN_CLIENT_KEYS`]) are removed and named in one
//!   start-up line;
//! - Flyte's top-level `domains:` becomes `admin.domains`; flytestdlib's deprecated
//!   `database.{host,port,…}` become `database.postgres.*`;
//! - the FlyteAdmin keys flyteauth accepts but does not act on ([`IGNORED_FLYTE_KEYS`]) are
//!   removed with one warning each.
//!
//! Anything else that neither Flyte nor flyteauth has is left for the strict parser, which
//! refuses it naming its path.

use std::path::{Path, PathBuf};

use serde_norway::{Mapping, Value};

use crate::config::{Config, ConfigError};

/// Top-level sections other Flyte components read from the same files (flytepropeller,
/// datacatalog, the scheduler, storage, logging, plugins, cluster resources, …).
pub(crate) const OTHER_COMPONENT_SECTIONS: &[&str] = &[
    "application",
    "catalog-cache",
    "cloudEvents",
    "cloudevents",
    "cluster_resources",
    "clusterpools",
    "clusters",
    "connector-service",
    "agent-service",
    "datacatalog",
    "event",
    "externalEvents",
    "externalevents",
    "flyteadmin",
    "k8s",
    "logger",
    "manager",
    "namespace_mapping",
    "notifications",
    "otel",
    "plugins",
    "propeller",
    "qualityOfService",
    "qualityofservice",
    "queues",
    "registration",
    "remoteData",
    "remotedata",
    "resourcemanager",
    "scheduler",
    "storage",
    "task_resources",
    "task_type_whitelist",
    "tasks",
    "webhook",
];

/// Flyte's `admin:` section is the admin *client* config of propeller and the scheduler
/// (flyteidl `clients/go/admin` config); flyteauth's own `admin:` holds only `domains`.
pub(crate) const ADMIN_CLIENT_KEYS: &[&str] = &[
    "endpoint",
    "insecure",
    "insecureSkipVerify",
    "caCertFilePath",
    "maxBackoffDelay",
    "perRetryTimeout",
    "maxRetries",
    "maxMessageSizeBytes",
    "authType",
    "tokenRefreshWindow",
    "useAuth",
    "clientId",
    "clientSecretLocation",
    "clientSecretEnvVar",
    "scopes",
    "useAudienceFromAdmin",
    "audience",
    "authorizationServerUrl",
    "tokenUrl",
    "authorizationHeader",
    "pkceConfig",
    "deviceFlowConfig",
    "command",
    "proxyCommand",
    "defaultServiceConfig",
    "httpProxyURL",
];

/// FlyteAdmin keys inside flyteauth's sections that are accepted and not acted on, each with
/// why (printed in the start-up warning).
pub(crate) const IGNORED_FLYTE_KEYS: &[(&str, &str)] = &[
    (
        "server.kube-config",
        "flyteauth does not talk to Kubernetes",
    ),
    ("server.master", "flyteauth does not talk to Kubernetes"),
    (
        "server.kubeClientConfig",
        "flyteauth does not talk to Kubernetes",
    ),
    (
        "server.dataProxy",
        "the data proxy is FlyteAdmin's, not flyteauth's",
    ),
    (
        "server.grpcServerReflection",
        "deprecated in Flyte; use server.grpc.serverReflection",
    ),
    (
        "server.thirdPartyConfig",
        "deprecated in Flyte; use auth.appAuth.thirdPartyConfig",
    ),
    (
        "server.grpc.enable-grpc-latency-metrics",
        "latency histograms are always on (/metrics)",
    ),
    (
        "server.security.auditAccess",
        "flyteauth always logs authentication decisions",
    ),
    (
        "database.enableForeignKeyConstraintWhenMigrating",
        "flyteauth's migrations are its own",
    ),
    (
        "database.maxIdleConnections",
        "the pool closes connections idle for 10 minutes instead",
    ),
    (
        "database.connectionPool.maxIdleConnections",
        "the pool closes connections idle for 10 minutes instead",
    ),
    (
        "database.postgres.readReplicaHost",
        "flyteauth reads from the primary",
    ),
];

/// flytestdlib's deprecated PostgreSQL keys directly under `database:`.
const LEGACY_DATABASE_KEYS: &[&str] = &[
    "host",
    "port",
    "dbname",
    "username",
    "password",
    "passwordPath",
    "options",
    "debug",
];

/// Keys holding a file or directory path, made relative to the directory of the file that
/// sets them.
const PATH_KEYS: &[&[&str]] = &[
    &["server", "security", "ssl", "certificateFile"],
    &["server", "security", "ssl", "keyFile"],
    &["secrets", "secrets-prefix"],
    &["database", "sqlite", "file"],
    &["database", "postgres", "passwordPath"],
    &["database", "passwordPath"],
    &["auth", "userAuth", "openId", "clientSecretFile"],
    // (and `auth.appAuth.selfAuthServer.trustedIssuers[].jwksFile`, see absolutize_paths)
];

/// The config files the given paths stand for: a file as is, a folder as its `*.yaml` and
/// `*.yml` files in name order (hidden entries such as Kubernetes' `..data` skipped).
pub(crate) fn expand(paths: &[PathBuf]) -> Result<Vec<PathBuf>, ConfigError> {
    let mut files = Vec::new();
    for p in paths {
        let meta = std::fs::metadata(p)
            .map_err(|e| ConfigError::new("<file>", format!("cannot read {}: {e}", p.display())))?;
        if !meta.is_dir() {
            files.push(p.clone());
            continue;
        }
        let mut found: Vec<PathBuf> = std::fs::read_dir(p)
            .map_err(|e| ConfigError::new("<file>", format!("cannot read {}: {e}", p.display())))?
            .filter_map(|e| e.ok())
            .map(|e| e.path())
            .filter(|f| {
                let name = f.file_name().and_then(|n| n.to_str()).unwrap_or("");
                !name.starts_with('.')
                    && (name.ends_with(".yaml") || name.ends_with(".yml"))
                    && f.is_file()
            })
            .collect();
        if found.is_empty() {
            return Err(ConfigError::new(
                "<file>",
                format!("{}: no *.yaml or *.yml files in this folder", p.display()),
            ));
        }
        found.sort();
        files.extend(found);
    }
    Ok(files)
}

/// Reads, merges, triages and validates the config at `paths`.
pub(crate) fn load(paths: &[PathBuf]) -> Result<Config, ConfigError> {
    let files = expand(paths)?;
    let mut merged = Value::Mapping(Mapping::new());
    for f in &files {
        let text = std::fs::read_to_string(f)
            .map_err(|e| ConfigError::new("<file>", format!("cannot read {}: {e}", f.display())))?;
        let mut doc = parse_document(&text, f)?;
        absolutize_paths(&mut doc, &abs_dir(f));
        merge(&mut merged, doc);
    }
    let base = files.first().map(|f| abs_dir(f)).unwrap_or_default();
    finish(merged, &base)
}

/// One YAML text (relative paths against `base`): [`Config::from_yaml`].
pub(crate) fn from_text(text: &str, base: &Path) -> Result<Config, ConfigError> {
    finish(parse_document(text, Path::new("<config>"))?, base)
}

/// Triage, then the strict parse and validation.
fn finish(mut doc: Value, base: &Path) -> Result<Config, ConfigError> {
    let mut notices = crate::config::Notices::default();
    triage(&mut doc, &mut notices)?;
    let empty = doc.as_mapping().is_some_and(Mapping::is_empty);
    let file = if empty {
        crate::config::FileConfig::default()
    } else {
        let yaml =
            serde_norway::to_string(&doc).map_err(|e| ConfigError::new("<root>", e.to_string()))?;
        crate::config::parse_file(&yaml)?
    };
    let mut config = Config::from_file(file, base)?;
    notices.warnings.append(&mut config.notices.warnings);
    notices.info.append(&mut config.notices.info);
    config.notices = notices;
    Ok(config)
}

fn abs_dir(file: &Path) -> PathBuf {
    let dir = file
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."));
    let dir = if dir.as_os_str().is_empty() {
        PathBuf::from(".")
    } else {
        dir
    };
    std::path::absolute(&dir).unwrap_or(dir)
}

fn parse_document(text: &str, file: &Path) -> Result<Value, ConfigError> {
    if text.trim().is_empty() {
        return Ok(Value::Mapping(Mapping::new()));
    }
    let v: Value = serde_norway::from_str(text).map_err(|e| {
        ConfigError::new("<file>", format!("{}: not valid YAML: {e}", file.display()))
    })?;
    match v {
        Value::Null => Ok(Value::Mapping(Mapping::new())),
        Value::Mapping(_) => Ok(v),
        _ => Err(ConfigError::new(
            "<root>",
            format!("{}: the document must be a map of sections", file.display()),
        )),
    }
}

fn absolutize_paths(doc: &mut Value, dir: &Path) {
    for keys in PATH_KEYS {
        if let Some(Value::String(s)) = get_mut(doc, keys) {
            if !s.is_empty() && Path::new(s.as_str()).is_relative() {
                let joined: PathBuf = dir.join(s.as_str()).components().collect();
                *s = joined.to_string_lossy().into_owned();
            }
        }
    }
    // Paths inside lists: `auth.appAuth.selfAuthServer.trustedIssuers[].jwksFile`.
    if let Some(Value::Sequence(list)) = get_mut(
        doc,
        &["auth", "appAuth", "selfAuthServer", "trustedIssuers"],
    ) {
        for item in list {
            if let Some(Value::String(s)) = get_mut(item, &["jwksFile"]) {
                if !s.is_empty() && Path::new(s.as_str()).is_relative() {
                    let joined: PathBuf = dir.join(s.as_str()).components().collect();
                    *s = joined.to_string_lossy().into_owned();
                }
            }
        }
    }
    if let Some(Value::String(s)) = get_mut(doc, &["database", "url"]) {
        if let Some(rest) = s.strip_prefix("sqlite://") {
            if !rest.is_empty() && Path::new(rest).is_relative() {
                let joined: PathBuf = dir.join(rest).components().collect();
                *s = format!("sqlite://{}", joined.display());
            }
        }
    }
}

fn get_mut<'a>(v: &'a mut Value, keys: &[&str]) -> Option<&'a mut Value> {
    let mut cur = v;
    for k in keys {
        cur = cur.as_mapping_mut()?.get_mut(*k)?;
    }
    Some(cur)
}

/// Deep merge: maps key by key, everything else replaced; a `null` does not erase.
pub(crate) fn merge(into: &mut Value, from: Value) {
    match (into, from) {
        (Value::Mapping(a), Value::Mapping(b)) => {
            for (k, v) in b {
                match a.get_mut(&k) {
                    Some(existing) => merge(existing, v),
                    None => {
                        a.insert(k, v);
                    }
                }
            }
        }
        (_, Value::Null) => {}
        (slot, v) => *slot = v,
    }
}

fn section<'a>(doc: &'a mut Mapping, key: &str) -> Option<&'a mut Mapping> {
    doc.get_mut(key).and_then(Value::as_mapping_mut)
}

/// Removes what belongs to other Flyte components, maps Flyte's spellings onto flyteauth's,
/// and records the notices. Errors name the key's path.
pub(crate) fn triage(
    doc: &mut Value,
    notices: &mut crate::config::Notices,
) -> Result<(), ConfigError> {
    let Some(root) = doc.as_mapping_mut() else {
        return Ok(());
    };
    let mut skipped: Vec<String> = Vec::new();
    for name in OTHER_COMPONENT_SECTIONS {
        if root.remove(*name).is_some() {
            skipped.push((*name).to_owned());
        }
    }
    if let Some(admin) = section(root, "admin") {
        for key in ADMIN_CLIENT_KEYS {
            if admin.remove(*key).is_some() {
                skipped.push(format!("admin.{key}"));
            }
        }
    }
    if !skipped.is_empty() {
        skipped.sort();
        notices.info.push(format!(
            "skipped the settings of other Flyte components: {}",
            skipped.join(", ")
        ));
    }
    // Flyte's top-level `domains:` is flyteauth's `admin.domains`.
    if let Some(domains) = root.remove("domains") {
        let admin = root
            .entry(Value::String("admin".into()))
            .or_insert_with(|| Value::Mapping(Mapping::new()));
        let Some(admin) = admin.as_mapping_mut() else {
            return Err(ConfigError::new("admin", "must be a map"));
        };
        if admin.contains_key("domains") {
            return Err(ConfigError::new(
                "domains",
                "set the domains either in Flyte's top-level `domains` or in `admin.domains`, not both",
            ));
        }
        admin.insert(Value::String("domains".into()), domains);
    }
    if let Some(db) = section(root, "database") {
        let legacy: Vec<&str> = LEGACY_DATABASE_KEYS
            .iter()
            .copied()
            .filter(|k| db.contains_key(*k))
            .collect();
        if !legacy.is_empty() {
            if db.contains_key("postgres") {
                for k in &legacy {
                    db.remove(*k);
                    notices.warnings.push(format!(
                        "database.{k} is ignored: database.postgres is set (Flyte's deprecated \
                         spelling loses to it, as in Flyte)"
                    ));
                }
            } else {
                let mut pg = Mapping::new();
                for k in legacy {
                    if let Some(v) = db.remove(k) {
                        pg.insert(Value::String(k.into()), v);
                    }
                }
                db.insert(Value::String("postgres".into()), Value::Mapping(pg));
            }
        }
    }
    for (path, why) in IGNORED_FLYTE_KEYS {
        let keys: Vec<&str> = path.split('.').collect();
        let (last, parents) = keys.split_last().expect("non-empty path");
        if let Some(Value::Mapping(m)) = get_mut(doc, parents) {
            if m.remove(*last).is_some() {
                notices
                    .warnings
                    .push(format!("{path} is accepted but ignored: {why}"));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn yaml(s: &str) -> Value {
        serde_norway::from_str(s).unwrap()
    }

    #[test]
    fn merge_is_deep_and_later_wins() {
        let mut a = yaml("auth: { appAuth: { selfAuthServer: { staticClients: { flytepropeller: { id: flytepropeller, public: false } } } } }\nserver: { httpPort: 1 }");
        merge(
            &mut a,
            yaml("auth: { appAuth: { selfAuthServer: { staticClients: { flytepropeller: { client_secret: abc } } } } }\nserver: { httpPort: 2 }\nlist: [1]"),
        );
        let c = &a["auth"]["appAuth"]["selfAuthServer"]["staticClients"]["flytepropeller"];
        assert_eq!(c["id"], Value::String("flytepropeller".into()));
        assert_eq!(c["client_secret"], Value::String("abc".into()));
        assert_eq!(a["server"]["httpPort"], Value::Number(2.into()));
        merge(&mut a, yaml("list: [2, 3]\nserver: ~"));
        assert_eq!(a["list"], yaml("[2, 3]"));
        assert_eq!(a["server"]["httpPort"], Value::Number(2.into()));
    }

    #[test]
    fn triage_skips_other_components_and_warns_per_ignored_key() {
        let mut d = yaml(
            "propeller: { workers: 4 }\nstorage: { type: s3 }\nlogger: { level: 4 }\n\
             admin: { endpoint: 'dns:///localhost:8089', insecure: true }\n\
             domains: [{ id: dev, name: dev }]\n\
             server: { kube-config: /x, grpc: { enable-grpc-latency-metrics: true } }\n\
             database: { host: db, port: 5432, dbname: flyte, maxIdleConnections: 3 }",
        );
        let mut n = crate::config::Notices::default();
        triage(&mut d, &mut n).unwrap();
        assert_eq!(n.info.len(), 1, "{n:?}");
        for s in [
            "propeller",
            "storage",
            "logger",
            "admin.endpoint",
            "admin.insecure",
        ] {
            assert!(n.info[0].contains(s), "{n:?}");
        }
        assert!(d.get("propeller").is_none());
        assert_eq!(d["admin"]["domains"][0]["id"], Value::String("dev".into()));
        assert_eq!(
            d["database"]["postgres"]["host"],
            Value::String("db".into())
        );
        let w = n.warnings.join("\n");
        for k in [
            "server.kube-config",
            "server.grpc.enable-grpc-latency-metrics",
            "database.maxIdleConnections",
        ] {
            assert!(w.contains(k), "{w}");
        }
        assert_eq!(n.warnings.len(), 3, "{w}");
    }

    #[test]
    fn both_domains_spellings_is_an_error() {
        let mut d = yaml("domains: [{ id: a, name: a }]\nadmin: { domains: [{ id: b, name: b }] }");
        let e = triage(&mut d, &mut Default::default()).unwrap_err();
        assert_eq!(e.path, "domains");
    }

    #[test]
    fn relative_paths_follow_their_file() {
        let mut d = yaml("secrets: { secrets-prefix: s }\ndatabase: { url: 'sqlite://db/x.db' }\nserver: { security: { ssl: { keyFile: /abs/k } } }\nauth: { appAuth: { selfAuthServer: { trustedIssuers: [{ jwksFile: ./j.json }] } } }");
        absolutize_paths(&mut d, Path::new("/etc/flyte/config.d"));
        assert_eq!(
            d["secrets"]["secrets-prefix"],
            Value::String("/etc/flyte/config.d/s".into())
        );
        assert_eq!(
            d["database"]["url"],
            Value::String("sqlite:///etc/flyte/config.d/db/x.db".into())
        );
        assert_eq!(
            d["server"]["security"]["ssl"]["keyFile"],
            Value::String("/abs/k".into())
        );
        assert_eq!(
            d["auth"]["appAuth"]["selfAuthServer"]["trustedIssuers"][0]["jwksFile"],
            Value::String("/etc/flyte/config.d/j.json".into())
        );
    }
}

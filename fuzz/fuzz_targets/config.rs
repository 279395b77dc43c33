//! `config`: arbitrary bytes as the YAML config file. `Config::from_yaml` must return `Ok` or a
//! `ConfigError`, never panic, and never take unbounded time or memory (libFuzzer's
//! `-timeout` / `-rss_limit_mb` catch those).
//!
//! The one side effect of loading a config is reading `database.postgres.passwordPath`. So
//! that the fuzzer cannot make the loader read `/dev/zero` or block on `/dev/stdin` (operator
//! input, not an attack surface), a document that sets it is loaded as `parse_file` +
//! `Config::from_file` (exactly what `from_yaml` does) with the path pointed at a fixture
//! file; every other document goes through `Config::from_yaml` itself.
//!
//! The input is also fed to `config::parse_duration` (Go durations).
#![no_main]

use std::path::PathBuf;
use std::sync::LazyLock;

use flyteauth::testing::{parse_duration, parse_file, Config};
use libfuzzer_sys::fuzz_target;

static BASE: LazyLock<PathBuf> = LazyLock::new(|| {
    let dir = std::env::temp_dir().join(format!("flyteauth-fuzz-config-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("fixture dir");
    std::fs::write(dir.join("pgpass"), "s3cret\n").expect("fixture file");
    dir
});

fuzz_target!(|data: &[u8]| {
    let Ok(yaml) = std::str::from_utf8(data) else {
        return;
    };
    let _ = parse_duration(yaml);

    let base = BASE.as_path();
    let result = match parse_file(yaml) {
        Ok(mut file)
            if file
                .database
                .postgres
                .as_ref()
                .is_some_and(|p| !p.password_path.is_empty()) =>
        {
            file.database.postgres.as_mut().unwrap().password_path = "pgpass".into();
            Config::from_file(file, base)
        }
        _ => Config::from_yaml(yaml, base),
    };
    match result {
        Ok(c) => {
            // Validated invariants the rest of the service relies on.
            assert!(!c.auth.required_scopes.is_empty());
            assert!(!c.domains.is_empty());
            assert!(c.server.max_request_bytes >= 1024);
            assert!(!c.server.allowed_origins.iter().any(|o| o == "*"));
            for u in &c.auth.authorized_uris {
                assert!(matches!(u.scheme(), "http" | "https") && u.host_str().is_some());
            }
            // Debug must not panic either (it is logged at start-up).
            let _ = format!("{c:?}");
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
});

//! Secrets: a type that cannot print, and Flyte's secret lookup (environment variable
//! `<env-prefix><name>`, then the file `<secrets-prefix>/<name>`).

use std::fmt;
use std::path::{Path, PathBuf};

use subtle::ConstantTimeEq;

/// A value that must never reach a log line, an error message or a panic.
/// `Debug` and `Display` print `[redacted]`; read it with [`Secret::expose`].
#[derive(Clone, Default)]
pub struct Secret<T>(T);

impl<T> Secret<T> {
    pub fn new(value: T) -> Self {
        Self(value)
    }
    /// The raw value. Call sites are easy to grep for.
    pub fn expose(&self) -> &T {
        &self.0
    }
}

impl<T: AsRef<[u8]>> Secret<T> {
    /// Constant-time equality against another byte string.
    pub fn ct_eq(&self, other: &[u8]) -> bool {
        self.0.as_ref().ct_eq(other).into()
    }
}

impl<T> fmt::Debug for Secret<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl<T> fmt::Display for Secret<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// Serde for a [`Secret<String>`] on the wire (`#[serde(with = "crate::secret::text")]`): an
/// answer or a sealed cookie carries the plain text, which `Debug` never shows.
pub(crate) mod text {
    use serde::{Deserialize, Deserializer, Serializer};

    use crate::secret::Secret;

    pub(crate) fn serialize<S: Serializer>(v: &Secret<String>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(v.expose())
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Secret<String>, D::Error> {
        String::deserialize(d).map(Secret::new)
    }
}

/// [`text`] for an optional secret (`skip_serializing_if = "Option::is_none"` beside it).
pub(crate) mod text_opt {
    use serde::Serializer;

    use crate::secret::Secret;

    pub(crate) fn serialize<S: Serializer>(
        v: &Option<Secret<String>>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        match v {
            Some(v) => s.serialize_some(v.expose()),
            None => s.serialize_none(),
        }
    }
}

/// Where secrets come from.
#[derive(Debug, Clone)]
pub struct SecretStore {
    pub dir: PathBuf,
    pub env_prefix: String,
    /// Environment snapshot taken at start-up (tests pass their own; nothing reads the
    /// process environment later).
    env: Vec<(String, String)>,
}

/// A secret that could not be found or read.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("secret `{name}` not found (env {env_var} or file {})", path.display())]
    Missing {
        name: String,
        env_var: String,
        path: PathBuf,
    },
    #[error("secret `{name}`: cannot read {}: {source}", path.display())]
    Io {
        name: String,
        path: PathBuf,
        source: std::io::Error,
    },
}

impl SecretStore {
    pub fn new(dir: PathBuf, env_prefix: String, env: Vec<(String, String)>) -> Self {
        Self {
            dir,
            env_prefix,
            env,
        }
    }

    pub fn path_of(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// Looks a secret up as Flyte does: env `<prefix><name>` first, then `<dir>/<name>`.
    pub fn get(&self, name: &str) -> Result<Secret<Vec<u8>>, SecretError> {
        let env_var = format!("{}{}", self.env_prefix, name);
        if let Some((_, v)) = self.env.iter().find(|(k, _)| *k == env_var) {
            return Ok(Secret::new(v.as_bytes().to_vec()));
        }
        let path = self.path_of(name);
        match std::fs::read(&path) {
            Ok(bytes) => Ok(Secret::new(bytes)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(SecretError::Missing {
                name: name.to_owned(),
                env_var,
                path,
            }),
            Err(source) => Err(SecretError::Io {
                name: name.to_owned(),
                path,
                source,
            }),
        }
    }

    /// Like [`get`](Self::get) but `None` when the secret is simply absent.
    pub fn get_optional(&self, name: &str) -> Result<Option<Secret<Vec<u8>>>, SecretError> {
        match self.get(name) {
            Ok(s) => Ok(Some(s)),
            Err(SecretError::Missing { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// A secret as trimmed UTF-8 text (trailing newline removed, as Flyte does for the OIDC secret).
    pub fn get_text(&self, name: &str) -> Result<Secret<String>, SecretError> {
        let raw = self.get(name)?;
        let text = String::from_utf8_lossy(raw.expose()).trim_end().to_owned();
        Ok(Secret::new(text))
    }

    /// Makes `name` resolvable without writing it anywhere (as if set in the environment):
    /// `check-config` stands in the secrets `serve` would generate.
    pub fn insert_in_memory(&mut self, name: &str, value: String) {
        self.env
            .push((format!("{}{}", self.env_prefix, name), value));
    }

    pub fn exists(&self, name: &str) -> bool {
        let env_var = format!("{}{}", self.env_prefix, name);
        self.env.iter().any(|(k, _)| *k == env_var) || self.path_of(name).exists()
    }
}

/// Writes a secret file readable only by its owner, refusing to overwrite one that exists.
pub(crate) fn write_new_secret(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    #[cfg(unix)]
    use std::os::unix::fs::OpenOptionsExt;
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    opts.mode(0o600);
    let mut f = opts.open(path)?;
    f.write_all(contents)?;
    f.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_never_prints() {
        let s = Secret::new("hunter2".to_string());
        assert_eq!(format!("{s:?}"), "[redacted]");
        assert_eq!(format!("{s}"), "[redacted]");
        assert!(!format!("{:?}", Some(&s)).contains("hunter2"));
        assert!(s.ct_eq(b"hunter2"));
        assert!(!s.ct_eq(b"hunter3"));
    }

    #[test]
    fn env_wins_over_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("k"), b"from-file").unwrap();
        let env = vec![("FLYTE_SECRET_k".to_string(), "from-env".to_string())];
        let store = SecretStore::new(dir.path().into(), "FLYTE_SECRET_".into(), env);
        assert_eq!(store.get("k").unwrap().expose(), b"from-env");
        let store = SecretStore::new(dir.path().into(), "FLYTE_SECRET_".into(), vec![]);
        assert_eq!(store.get("k").unwrap().expose(), b"from-file");
        let err = store.get("nope").unwrap_err().to_string();
        assert!(err.contains("FLYTE_SECRET_nope"), "{err}");
    }
}

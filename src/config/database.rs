//! `database:` → where the data lives ([`DatabaseTarget`]) and the pool's settings.

use std::path::PathBuf;
use std::time::Duration;

use url::Url;

use super::{ConfigError, DatabaseFile};

/// Where the data lives. Its `Debug` prints only where a PostgreSQL URL
/// points: the URL may carry a password.
#[derive(Clone)]
pub enum DatabaseTarget {
    /// An SQLite file; it and its parent directory are created if missing.
    Sqlite {
        /// Path of the database file.
        path: PathBuf,
    },
    /// A PostgreSQL server, `postgres://user[:password]@host[:port]/dbname[?options]`.
    Postgres {
        /// Connection URL (plain TCP or a Unix socket; no TLS is compiled in).
        url: String,
    },
}

impl std::fmt::Debug for DatabaseTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DatabaseTarget::Sqlite { path } => write!(f, "Sqlite({})", path.display()),
            // The URL may carry a password: print only where it points.
            DatabaseTarget::Postgres { url } => match Url::parse(url) {
                Ok(u) => write!(
                    f,
                    "Postgres({}:{}{})",
                    u.host_str().unwrap_or(""),
                    u.port().unwrap_or(5432),
                    u.path()
                ),
                Err(_) => f.write_str("Postgres(<unparsable url>)"),
            },
        }
    }
}

pub(super) fn database_target(
    d: &DatabaseFile,
    resolve: &dyn Fn(&str) -> PathBuf,
) -> Result<DatabaseTarget, ConfigError> {
    let set = [!d.url.is_empty(), d.sqlite.is_some(), d.postgres.is_some()];
    if set.iter().filter(|b| **b).count() > 1 {
        return Err(ConfigError::new(
            "database",
            "set only one of database.url, database.sqlite, database.postgres",
        ));
    }
    if !d.url.is_empty() {
        if let Some(rest) = d.url.strip_prefix("sqlite://") {
            return Ok(DatabaseTarget::Sqlite {
                path: resolve(rest),
            });
        }
        if d.url.starts_with("postgres://") || d.url.starts_with("postgresql://") {
            Url::parse(&d.url).map_err(|e| ConfigError::new("database.url", e.to_string()))?;
            return Ok(DatabaseTarget::Postgres { url: d.url.clone() });
        }
        return Err(ConfigError::new(
            "database.url",
            "must start with sqlite:// or postgres://",
        ));
    }
    if let Some(pg) = &d.postgres {
        let mut url = Url::parse("postgres://localhost").expect("static url");
        url.set_host(Some(&pg.host))
            .map_err(|e| ConfigError::new("database.postgres.host", e.to_string()))?;
        let _ = url.set_port(Some(pg.port));
        let _ = url.set_username(&pg.username);
        let password = if !pg.password_path.is_empty() {
            std::fs::read_to_string(resolve(&pg.password_path))
                .map_err(|e| ConfigError::new("database.postgres.passwordPath", e.to_string()))?
                .trim_end()
                .to_owned()
        } else {
            pg.password.clone()
        };
        if !password.is_empty() {
            let _ = url.set_password(Some(&password));
        }
        url.set_path(&pg.dbname);
        // Flyte's `options` is a libpq keyword string such as "sslmode=disable".
        for kv in pg.options.split_whitespace() {
            let (k, v) = kv.split_once('=').ok_or_else(|| {
                ConfigError::new("database.postgres.options", "expected key=value pairs")
            })?;
            url.query_pairs_mut().append_pair(k, v);
        }
        return Ok(DatabaseTarget::Postgres { url: url.into() });
    }
    let file = d
        .sqlite
        .as_ref()
        .map(|s| s.file.clone())
        .filter(|f| !f.is_empty())
        .unwrap_or_else(|| "data/flyteauth.db".into());
    Ok(DatabaseTarget::Sqlite {
        path: resolve(&file),
    })
}

/// The connection pool's settings (`database.connectionPool.*`, or flytestdlib's keys at the
/// `database:` level, which win).
#[derive(Debug, Clone)]
pub struct DatabasePool {
    pub max_open_connections: u32,
    pub conn_max_life_time: Duration,
}

pub(super) fn database_pool(d: &DatabaseFile) -> Result<DatabasePool, ConfigError> {
    let pool = DatabasePool {
        max_open_connections: d
            .max_open_connections
            .unwrap_or(d.connection_pool.max_open_connections),
        conn_max_life_time: d
            .conn_max_life_time
            .unwrap_or(d.connection_pool.conn_max_life_time),
    };
    if pool.max_open_connections == 0 {
        return Err(ConfigError::new(
            "database.maxOpenConnections",
            "must be at least 1",
        ));
    }
    Ok(pool)
}

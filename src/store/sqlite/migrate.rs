//! The SQLite schema's migrations, applied on rusqlite exactly as sqlx's migrator applied them
//! before this backend stopped using sqlx, so existing database files keep their history.
//!
//! `sqlx::migrate!` still embeds `migrations/sqlite` and computes each file's SHA-384 checksum
//! (it needs no database driver): the same versions, descriptions and checksums as every
//! earlier release recorded in `_sqlx_migrations`. The runner follows sqlx 0.8's
//! `Migrator::run` on SQLite step by step: create the table if missing, refuse a database with
//! a failed (dirty) migration, refuse one that lists a migration this binary does not know
//! (a newer release's) or whose checksum differs from the file's (an edited migration), then
//! apply the missing ones in order, each with its row in one transaction.

use std::time::Instant;

use rusqlite::{params, Connection, TransactionBehavior};

use crate::store::StoreError;

/// sqlx's table, created as sqlx creates it.
const TABLE_SQL: &str = "CREATE TABLE IF NOT EXISTS _sqlx_migrations (
    version BIGINT PRIMARY KEY,
    description TEXT NOT NULL,
    installed_on TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP,
    success BOOLEAN NOT NULL,
    checksum BLOB NOT NULL,
    execution_time BIGINT NOT NULL
)";

/// Brings the database on `conn` up to the embedded schema.
pub(super) fn run(conn: &mut Connection) -> Result<(), StoreError> {
    let migrator = sqlx::migrate!("./migrations/sqlite");
    conn.execute_batch(TABLE_SQL)?;
    let dirty: Option<i64> = conn
        .query_row(
            "SELECT version FROM _sqlx_migrations WHERE success = false ORDER BY version LIMIT 1",
            [],
            |r| r.get(0),
        )
        .or_else(none_if_no_rows)?;
    if let Some(version) = dirty {
        return Err(refused(format!(
            "migration {version} failed part-way earlier; repair the database by hand"
        )));
    }
    let applied: Vec<(i64, Vec<u8>)> = conn
        .prepare("SELECT version, checksum FROM _sqlx_migrations ORDER BY version")?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<Result<_, _>>()?;
    let known = |version: i64| migrator.iter().find(|m| m.version == version);
    for (version, checksum) in &applied {
        match known(*version) {
            None => {
                return Err(refused(format!(
                    "migration {version} was applied by a newer flyteauth"
                )))
            }
            Some(m) if *m.checksum != checksum[..] => {
                return Err(refused(format!(
                    "migration {version} differs from the one applied to this database"
                )))
            }
            Some(_) => {}
        }
    }
    for m in migrator.iter() {
        if m.migration_type.is_down_migration() || applied.iter().any(|(v, _)| *v == m.version) {
            continue;
        }
        let started = Instant::now();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        tx.execute_batch(&m.sql)?;
        tx.execute(
            "INSERT INTO _sqlx_migrations (version, description, success, checksum, \
             execution_time) VALUES (?1, ?2, TRUE, ?3, -1)",
            params![m.version, &*m.description, &*m.checksum],
        )?;
        tx.commit()?;
        let nanos = i64::try_from(started.elapsed().as_nanos()).unwrap_or(i64::MAX);
        conn.execute(
            "UPDATE _sqlx_migrations SET execution_time = ?1 WHERE version = ?2",
            params![nanos, m.version],
        )?;
    }
    Ok(())
}

fn none_if_no_rows<T>(e: rusqlite::Error) -> rusqlite::Result<Option<T>> {
    match e {
        rusqlite::Error::QueryReturnedNoRows => Ok(None),
        e => Err(e),
    }
}

fn refused(why: String) -> StoreError {
    StoreError::Internal(format!("cannot migrate the SQLite database: {why}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn versions(conn: &Connection) -> Vec<(i64, String, bool)> {
        conn.prepare("SELECT version, description, success FROM _sqlx_migrations ORDER BY 1")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    }

    #[test]
    fn applies_every_migration_once() {
        let mut conn = Connection::open_in_memory().unwrap();
        run(&mut conn).unwrap();
        let first = versions(&conn);
        assert_eq!(
            first.len(),
            sqlx::migrate!("./migrations/sqlite").iter().count()
        );
        assert_eq!(first[0], (1, "init".to_owned(), true));
        run(&mut conn).unwrap();
        assert_eq!(versions(&conn), first);
        let nanos: i64 = conn
            .query_row(
                "SELECT min(execution_time) FROM _sqlx_migrations",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert!(nanos >= 0, "execution_time recorded after the commit");
    }

    /// A file migrated by sqlx 0.8.6's own migrator on its SQLite driver, as every release
    /// before this one migrated, with one project (`tests/fixtures/README.md`): it opens,
    /// keeps its rows, and gets no migration twice.
    #[test]
    fn a_database_migrated_by_sqlx_opens_unchanged() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("flyteauth.db");
        std::fs::copy("tests/fixtures/sqlx-migrated.db", &path).unwrap();
        let mut conn = Connection::open(&path).unwrap();
        let before = versions(&conn);
        assert_eq!(before.len(), 5, "the fixture holds migrations 1-5");
        run(&mut conn).unwrap();
        assert_eq!(versions(&conn)[..5], before[..]);
        let projects: i64 = conn
            .query_row("SELECT count(*) FROM projects", [], |r| r.get(0))
            .unwrap();
        assert_eq!(projects, 1);
    }

    #[test]
    fn an_edited_migration_is_refused_and_nothing_is_applied() {
        let mut conn = Connection::open_in_memory().unwrap();
        run(&mut conn).unwrap();
        conn.execute(
            "UPDATE _sqlx_migrations SET checksum = x'00' WHERE version = 2",
            [],
        )
        .unwrap();
        conn.execute("DELETE FROM _sqlx_migrations WHERE version = 5", [])
            .unwrap();
        let err = run(&mut conn).unwrap_err().to_string();
        assert!(err.contains("migration 2 differs"), "{err}");
        assert!(versions(&conn).iter().all(|(v, ..)| *v != 5));
    }

    #[test]
    fn a_newer_or_dirty_database_is_refused() {
        let mut conn = Connection::open_in_memory().unwrap();
        run(&mut conn).unwrap();
        conn.execute(
            "INSERT INTO _sqlx_migrations (version, description, success, checksum, \
             execution_time) VALUES (999, 'future', TRUE, x'00', 1)",
            [],
        )
        .unwrap();
        let err = run(&mut conn).unwrap_err().to_string();
        assert!(
            err.contains("migration 999 was applied by a newer"),
            "{err}"
        );
        conn.execute(
            "UPDATE _sqlx_migrations SET success = FALSE, version = 6 WHERE version = 999",
            [],
        )
        .unwrap();
        let err = run(&mut conn).unwrap_err().to_string();
        assert!(err.contains("migration 6 failed part-way"), "{err}");
    }
}

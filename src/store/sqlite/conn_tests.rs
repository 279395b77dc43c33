//! The connections, the checkpointer and lock handling.
use super::*;
use rusqlite::TransactionBehavior;

fn wal_file(dir: &tempfile::TempDir) -> std::path::PathBuf {
    let path = dir.path().join("flyteauth.db");
    let conn = Connection::open(&path).unwrap();
    let mode: String = conn
        .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
    path
}

#[test]
fn both_connections_apply_the_pragmas() {
    let dir = tempfile::tempdir().unwrap();
    let direct = Connections::open(&wal_file(&dir), 1, Duration::from_millis(1234)).unwrap();
    for conn in [&direct.readers[0], &direct.writer] {
        let conn = conn.lock().unwrap();
        let get = |pragma: &str| -> i64 {
            conn.query_row(&format!("PRAGMA {pragma}"), [], |r| r.get(0))
                .unwrap()
        };
        assert_eq!(get("synchronous"), 1, "NORMAL");
        assert_eq!(get("foreign_keys"), 1);
        assert_eq!(get("busy_timeout"), 1234);
        assert_eq!(get("wal_autocheckpoint"), 0, "the checkpointer's job");
        assert_eq!(get("journal_size_limit"), WAL_SIZE_LIMIT);
        let mode: String = conn
            .query_row("PRAGMA journal_mode", [], |r| r.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
    }
}

#[test]
fn never_creates_a_database_the_migrations_did_not_run_on() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.db");
    assert!(matches!(
        Connections::open(&missing, 1, Duration::from_secs(1)),
        Err(StoreError::Unavailable(_))
    ));
    assert!(!missing.exists());
}

/// A commit past SQLite's automatic checkpoint size (1,000 pages) leaves the copying to
/// the checkpointer thread, which does it soon after.
#[test]
fn checkpoints_run_beside_the_commits() {
    let dir = tempfile::tempdir().unwrap();
    let path = wal_file(&dir);
    let direct = Connections::open(&path, 1, Duration::from_secs(1)).unwrap();
    let size = || std::fs::metadata(&path).unwrap().len();
    {
        let conn = direct.writer.lock().unwrap();
        conn.execute_batch(
            "BEGIN; CREATE TABLE t (x BLOB); \
             WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 1000) \
             INSERT INTO t SELECT randomblob(8000) FROM n; COMMIT;",
        )
        .unwrap();
    }
    assert!(
        size() < 1 << 20,
        "the commit checkpointed: {} bytes",
        size()
    );
    // Liveness, not speed: the checkpointer runs every 250 ms.
    let copied = (0..400).any(|_| {
        std::thread::sleep(Duration::from_millis(50));
        size() > 4 << 20
    });
    assert!(copied, "no checkpoint in 20 s: {} bytes", size());
}

/// Under steady writes the WAL is still started over now and then, so it stops growing:
/// with `journal_size_limit` 0 its file shrinks each time.
#[test]
fn the_wal_is_started_over_under_steady_writes() {
    let dir = tempfile::tempdir().unwrap();
    let path = wal_file(&dir);
    let wal = dir.path().join("flyteauth.db-wal");
    let direct = Connections::open(&path, 1, Duration::from_secs(1)).unwrap();
    {
        let conn = direct.writer.lock().unwrap();
        conn.execute_batch("PRAGMA journal_size_limit = 0; CREATE TABLE t (x BLOB);")
            .unwrap();
    }
    let stop = std::sync::atomic::AtomicBool::new(false);
    let shrank = std::thread::scope(|s| {
        s.spawn(|| {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let conn = direct.writer.lock().unwrap();
                conn.execute("INSERT INTO t VALUES (randomblob(3000))", [])
                    .unwrap();
            }
        });
        let size = || std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0);
        let mut last = size();
        // Liveness, not speed: up to 80 checkpoint rounds.
        let shrank = (0..400).any(|_| {
            std::thread::sleep(Duration::from_millis(50));
            let now = size();
            let shrank = now < last;
            last = now;
            shrank
        });
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        shrank
    });
    assert!(shrank, "the WAL only grew under steady writes");
}

/// A read takes the writer's connection when it is free, else the reader's, else none (it
/// then goes to a blocking thread); it runs with no busy handler and leaves the
/// connection's busy timeout as it was.
#[test]
fn reads_on_the_calling_thread_never_wait() {
    let dir = tempfile::tempdir().unwrap();
    let direct = Connections::open(&wal_file(&dir), 1, Duration::from_millis(1234)).unwrap();
    let busy_timeout = |conn: &Connection| -> Result<i64, StoreError> {
        Ok(conn.query_row("PRAGMA busy_timeout", [], |r| r.get(0))?)
    };
    assert_eq!(direct.read_now(busy_timeout).unwrap().unwrap(), 0);
    {
        let _writer = direct.writer.lock().unwrap();
        assert_eq!(direct.read_now(busy_timeout).unwrap().unwrap(), 0);
        let _reader = direct.readers[0].lock().unwrap();
        assert!(direct.read_now(busy_timeout).is_none());
    }
    for conn in [&direct.readers[0], &direct.writer] {
        assert_eq!(busy_timeout(&conn.lock().unwrap()).unwrap(), 1234);
    }
}

/// A write on the calling thread never runs SQLite's busy handler either, and one that
/// finds the write lock taken writes nothing (the caller then writes on a blocking thread).
#[test]
fn writes_on_the_calling_thread_never_wait() {
    let dir = tempfile::tempdir().unwrap();
    let path = wal_file(&dir);
    let direct = Connections::open(&path, 1, Duration::from_millis(1234)).unwrap();
    let busy_timeout = |conn: &mut Connection| -> Result<i64, StoreError> {
        Ok(conn.query_row("PRAGMA busy_timeout", [], |r| r.get(0))?)
    };
    assert_eq!(direct.write_now(busy_timeout).unwrap().unwrap(), 0);
    {
        let _taken = direct.writer.lock().unwrap();
        assert!(direct.write_now(busy_timeout).is_none());
    }
    let other = Connection::open(&path).unwrap();
    other
        .execute_batch("CREATE TABLE t (x); BEGIN IMMEDIATE;")
        .unwrap();
    let insert = |conn: &mut Connection| -> Result<(), StoreError> {
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        tx.execute("INSERT INTO t VALUES (1)", [])?;
        tx.commit()?;
        Ok(())
    };
    assert!(direct.write_now(insert).is_none());
    other.execute_batch("COMMIT").unwrap();
    let rows = |conn: &mut Connection| -> Result<i64, StoreError> {
        Ok(conn.query_row("SELECT count(*) FROM t", [], |r| r.get(0))?)
    };
    assert_eq!(direct.write_now(rows).unwrap().unwrap(), 0);
    assert!(matches!(direct.write_now(insert), Some(Ok(()))));
    assert_eq!(direct.write_now(rows).unwrap().unwrap(), 1);
    assert_eq!(
        busy_timeout(&mut direct.writer.lock().unwrap()).unwrap(),
        1234
    );
}

/// A read that SQLite refuses for a lock is left to a blocking thread (which may wait);
/// any other outcome is the read's.
#[test]
fn a_read_that_would_wait_is_left_to_a_blocking_thread() {
    let dir = tempfile::tempdir().unwrap();
    let direct = Connections::open(&wal_file(&dir), 1, Duration::from_secs(1)).unwrap();
    let busy = || {
        rusqlite::Error::SqliteFailure(rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_BUSY), None)
    };
    assert!(direct
        .read_now(|_| -> Result<(), _> { Err(busy().into()) })
        .is_none());
    assert!(matches!(
        direct.read_now(|_| -> Result<(), _> { Err(StoreError::NotFound) }),
        Some(Err(StoreError::NotFound))
    ));
}

/// Another process holding the write lock past the busy timeout: a clear, retryable
/// error, and nothing half-done.
#[tokio::test]
async fn a_locked_database_is_unavailable() {
    let dir = tempfile::tempdir().unwrap();
    let path = wal_file(&dir);
    let other = Connection::open(&path).unwrap();
    other
        .execute_batch("CREATE TABLE t (x); BEGIN IMMEDIATE; INSERT INTO t VALUES (1);")
        .unwrap();
    let direct = Connections::open(&path, 1, Duration::from_millis(50)).unwrap();
    let err = direct
        .run(true, |conn| {
            conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            Ok(())
        })
        .await;
    assert!(matches!(err, Err(StoreError::Unavailable(_))), "{err:?}");
    other.execute_batch("COMMIT").unwrap();
    let rows: i64 = direct
        .run(false, |conn| {
            Ok(conn.query_row("SELECT count(*) FROM t", [], |r| r.get(0))?)
        })
        .await
        .unwrap();
    assert_eq!(rows, 1);
}

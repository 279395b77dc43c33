//! Every case runs on both backends: SQLite in a temporary directory, and PostgreSQL in a
//! fresh database `flyteauth_t_<hex>` made through `DATABASE_URL` and dropped afterwards.
//! Without `DATABASE_URL` the PostgreSQL runs are skipped, except under `CI`, where they fail.

use super::*;
use std::future::Future;
use std::hash::{BuildHasher, RandomState};

const TIMEOUT: Duration = Duration::from_secs(10);

pub(super) async fn open_store(t: &DatabaseTarget) -> Arc<dyn Store> {
    open(t, 4, TIMEOUT, None).await.expect("open store")
}

pub(super) async fn run_sqlite<F: Future<Output = ()>>(case: impl FnOnce(DatabaseTarget) -> F) {
    let dir = tempfile::tempdir().unwrap();
    // A missing parent directory: `open` must create it.
    let path = dir.path().join("data/flyteauth.db");
    case(DatabaseTarget::Sqlite { path }).await;
}

pub(super) async fn run_postgres<F>(case: impl FnOnce(DatabaseTarget) -> F)
where
    F: Future<Output = ()> + Send + 'static,
{
    let admin = match std::env::var("DATABASE_URL") {
        Ok(url) if !url.is_empty() => url,
        _ if std::env::var_os("CI").is_some() => {
            panic!("DATABASE_URL is not set: the PostgreSQL store tests must run in CI")
        }
        _ => return eprintln!("skipping PostgreSQL store test: DATABASE_URL is not set"),
    };
    let name = format!("flyteauth_t_{:016x}", RandomState::new().hash_one(0u8));
    let admin_pool = sqlx::PgPool::connect(&admin)
        .await
        .expect("connect DATABASE_URL");
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&admin_pool)
        .await
        .unwrap();
    let mut url = url::Url::parse(&admin).expect("DATABASE_URL is a URL");
    url.set_path(&name);
    // Run the case as a task so a failing assertion still lets us drop the database.
    let outcome = tokio::spawn(case(DatabaseTarget::Postgres { url: url.into() })).await;
    sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .execute(&admin_pool)
        .await
        .unwrap();
    admin_pool.close().await;
    if let Err(e) = outcome {
        std::panic::resume_unwind(e.into_panic());
    }
}

/// Seeding with no production caller: rows a grant's transaction would write, put there
/// with the backend's own SQL on a pool of its own beside the store under test (open the
/// store first: it creates and migrates the database).
pub(super) enum Behind {
    Sqlite(std::sync::Mutex<rusqlite::Connection>),
    Postgres(sqlx::PgPool),
}

impl Behind {
    pub(super) async fn open(t: &DatabaseTarget) -> Self {
        match t {
            DatabaseTarget::Sqlite { path } => {
                let conn = rusqlite::Connection::open(path).unwrap();
                conn.busy_timeout(Duration::from_secs(5)).unwrap();
                Behind::Sqlite(std::sync::Mutex::new(conn))
            }
            DatabaseTarget::Postgres { url } => {
                Behind::Postgres(sqlx::PgPool::connect(url).await.unwrap())
            }
        }
    }

    /// Stores a refresh token; `AlreadyExists` if its hash exists. A token stored into a
    /// revoked family is stored (and found with `family_revoked`).
    pub(super) async fn insert_refresh_token(
        &self,
        r: &RefreshTokenRecord,
    ) -> Result<(), StoreError> {
        match self {
            Behind::Sqlite(c) => super::sqlite::insert_refresh_token(&c.lock().unwrap(), r),
            Behind::Postgres(p) => super::postgres::insert_refresh_token(p, r).await,
        }
    }

    /// Records access token `jti` into `family_id` (idempotent); listed as revoked at once if
    /// the family is, stamped with the later of its revocation and the database's clock.
    pub(super) async fn record_access_token(
        &self,
        family_id: &str,
        jti: &str,
        expires_at: i64,
    ) -> Result<(), StoreError> {
        match self {
            Behind::Sqlite(c) => super::sqlite::record_access_token(
                &mut c.lock().unwrap(),
                family_id,
                jti,
                expires_at,
            ),
            Behind::Postgres(p) => {
                super::postgres::record_access_token(p, family_id, jti, expires_at).await
            }
        }
    }
}

/// `#[tokio::test]`s `sqlite::<case>` and `postgres::<case>` for each case function.
macro_rules! on_both_backends {
    ($($case:ident),* $(,)?) => {
        mod sqlite { $(#[tokio::test] async fn $case() { super::run_sqlite(super::$case).await })* }
        mod postgres { $(#[tokio::test] async fn $case() { super::run_postgres(super::$case).await })* }
    };
}

pub(super) use on_both_backends;

on_both_backends!(
    roundtrip_with_labels,
    duplicate_is_already_exists,
    update_and_update_missing,
    pagination_is_stable,
    sorts_by_name_and_created_at,
    filters_select_rows,
    survives_restart,
    instances_share_state,
    closed_store_is_unavailable,
);

fn project(id: &str, name: &str, state: i32) -> ProjectRecord {
    ProjectRecord {
        id: id.into(),
        org: String::new(),
        name: name.into(),
        description: format!("about {name}"),
        labels: BTreeMap::new(),
        state,
    }
}

fn query(filters: &str) -> ProjectQuery {
    ProjectQuery {
        org: String::new(),
        filters: parse_filters(filters).unwrap(),
        sort_key: SortKey::Identifier,
        ascending: true,
        limit: 100,
        offset: 0,
    }
}

/// Reads a project's `created_at` behind the store's back, first setting it if `set` is given.
async fn created_at(t: &DatabaseTarget, id: &str, set: Option<i64>) -> i64 {
    const SQL: &str = "UPDATE projects SET created_at = COALESCE($1, created_at) \
                       WHERE identifier = $2 RETURNING created_at";
    match t {
        DatabaseTarget::Sqlite { path } => rusqlite::Connection::open(path)
            .unwrap()
            .query_row(SQL, rusqlite::params![set, id], |r| r.get(0))
            .unwrap(),
        DatabaseTarget::Postgres { url } => {
            let pool = sqlx::PgPool::connect(url).await.unwrap();
            sqlx::query_scalar(SQL)
                .bind(set)
                .bind(id)
                .fetch_one(&pool)
                .await
                .unwrap()
        }
    }
}

#[allow(clippy::disallowed_methods)] // the test's own clock, compared with the database's
fn unix_now() -> i64 {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
    now.unwrap().as_secs() as i64
}

fn sorted(sort_key: SortKey, ascending: bool) -> ProjectQuery {
    ProjectQuery {
        sort_key,
        ascending,
        ..query("")
    }
}

pub(super) async fn add(store: &Arc<dyn Store>, id: &str, name: &str, state: i32) {
    store
        .create_project(&project(id, name, state))
        .await
        .unwrap();
}

async fn ids(store: &Arc<dyn Store>, q: &ProjectQuery) -> Vec<String> {
    let page = store.list_projects(q).await.unwrap();
    page.into_iter().map(|p| p.id).collect()
}

async fn roundtrip_with_labels(t: DatabaseTarget) {
    let store = open_store(&t).await;
    let mut p = project("flytesnacks", "Flyte Snacks", 0);
    p.labels = BTreeMap::from([
        ("team".into(), "ml".into()),
        ("tier".into(), "\"0\"".into()),
    ]);
    store.create_project(&p).await.unwrap();
    assert_eq!(store.get_project("", "flytesnacks").await.unwrap(), p);

    // Same id in another org is a different project.
    let other = ProjectRecord {
        org: "acme".into(),
        labels: BTreeMap::new(),
        ..p.clone()
    };
    store.create_project(&other).await.unwrap();
    assert_eq!(
        store.get_project("acme", "flytesnacks").await.unwrap(),
        other
    );
    assert_eq!(store.get_project("", "flytesnacks").await.unwrap(), p);
    let missing = [("nope", "flytesnacks"), ("", "missing")];
    for (org, id) in missing {
        assert_eq!(store.get_project(org, id).await, Err(StoreError::NotFound));
    }
    store.ping().await.unwrap();
    store.close().await;
}

async fn duplicate_is_already_exists(t: DatabaseTarget) {
    let store = open_store(&t).await;
    add(&store, "p1", "one", 0).await;
    let again = store.create_project(&project("p1", "other name", 1)).await;
    assert_eq!(again, Err(StoreError::AlreadyExists));
    assert_eq!(store.get_project("", "p1").await.unwrap().name, "one");
    store.close().await;
}

async fn update_and_update_missing(t: DatabaseTarget) {
    let store = open_store(&t).await;
    add(&store, "p1", "one", 0).await;
    let mut p = project("p1", "renamed", 1);
    p.description = "new".into();
    p.labels.insert("k".into(), "v".into());
    store.update_project(&p).await.unwrap();
    assert_eq!(store.get_project("", "p1").await.unwrap(), p);

    let missing = store.update_project(&project("p2", "two", 0)).await;
    assert_eq!(missing, Err(StoreError::NotFound));
    let wrong_org = ProjectRecord {
        org: "acme".into(),
        ..p
    };
    assert_eq!(
        store.update_project(&wrong_org).await,
        Err(StoreError::NotFound)
    );
    store.close().await;
}

async fn pagination_is_stable(t: DatabaseTarget) {
    let store = open_store(&t).await;
    // Inserted out of order, all with the same name so only the tie-break orders them.
    for id in ["p5", "p2", "p7", "p1", "p6", "p3", "p4"] {
        add(&store, id, "same", 0).await;
        created_at(&t, id, Some(1_000)).await;
    }
    for sort_key in [SortKey::Identifier, SortKey::Name, SortKey::CreatedAt] {
        let mut seen = Vec::new();
        let mut q = ProjectQuery {
            limit: 3,
            ..sorted(sort_key, true)
        };
        loop {
            let page = ids(&store, &q).await;
            seen.extend(page.iter().cloned());
            if page.len() < 3 {
                break;
            }
            q.offset += 3;
        }
        assert_eq!(
            seen,
            ["p1", "p2", "p3", "p4", "p5", "p6", "p7"],
            "{sort_key:?}"
        );
    }
    let past_end = ProjectQuery {
        offset: 50,
        ..query("")
    };
    assert!(ids(&store, &past_end).await.is_empty());
    let descending = ProjectQuery {
        limit: 2,
        ..sorted(SortKey::Identifier, false)
    };
    assert_eq!(ids(&store, &descending).await, ["p7", "p6"]);
    store.close().await;
}

async fn sorts_by_name_and_created_at(t: DatabaseTarget) {
    let store = open_store(&t).await;
    let before = unix_now() - 5;
    // Inserted against identifier order, so a missing tie-break shows.
    for (id, name) in [
        ("d", "alpha"),
        ("c", "charlie"),
        ("b", "Alpha"),
        ("a", "delta"),
    ] {
        add(&store, id, name, 0).await;
    }
    // create_project stamps the database's clock.
    let stamped = created_at(&t, "a", None).await;
    assert!(
        (before..before + 60).contains(&stamped),
        "{before} {stamped}"
    );
    // Byte order on both backends: upper case before lower case.
    let by_name = |asc| sorted(SortKey::Name, asc);
    assert_eq!(ids(&store, &by_name(true)).await, ["b", "d", "c", "a"]);
    assert_eq!(ids(&store, &by_name(false)).await, ["a", "c", "d", "b"]);
    for (id, secs) in [("a", 300), ("b", 100), ("c", 200), ("d", 100)] {
        created_at(&t, id, Some(secs)).await;
    }
    // Ties (b, d) fall back to identifier ascending in both directions.
    let by_created = |asc| sorted(SortKey::CreatedAt, asc);
    assert_eq!(ids(&store, &by_created(true)).await, ["b", "d", "c", "a"]);
    assert_eq!(ids(&store, &by_created(false)).await, ["a", "c", "b", "d"]);
    store.close().await;
}

async fn filters_select_rows(t: DatabaseTarget) {
    let store = open_store(&t).await;
    for (id, name, state) in [
        ("flytesnacks", "Flyte Snacks", 0),
        ("flyteexamples", "flyte examples", 1),
        ("sale", "50%_off", 0),
        ("sale2", "50 percent off", 2),
    ] {
        add(&store, id, name, state).await;
    }
    let acme = ProjectRecord {
        org: "acme".into(),
        ..project("acme1", "Flyte", 0)
    };
    store.create_project(&acme).await.unwrap();

    let cases: &[(&str, &[&str])] = &[
        ("eq(state,0)", &["flytesnacks", "sale"]),
        ("ne(state,0)", &["flyteexamples", "sale2"]),
        ("gte(state,1)+lt(state,2)", &["flyteexamples"]),
        ("value_in(state,1;2)", &["flyteexamples", "sale2"]),
        ("value_not_in(state,1;2)", &["flytesnacks", "sale"]),
        ("eq(name,flyte examples)", &["flyteexamples"]),
        ("ne(name,flyte examples)", &["flytesnacks", "sale", "sale2"]),
        ("contains(name,Flyte)", &["flytesnacks"]), // case-sensitive
        ("contains(name,lyte)", &["flyteexamples", "flytesnacks"]),
        ("contains(name,%_)", &["sale"]), // LIKE wildcards are literal
        ("contains(name,_)", &["sale"]),
        ("contains(id,sale)+ne(state,2)", &["sale"]),
        ("contains(description,snack)", &[]),
        ("eq(project.identifier,sale2)", &["sale2"]),
    ];
    for (filters, want) in cases {
        assert_eq!(ids(&store, &query(filters)).await, *want, "{filters}");
    }
    let acme_q = ProjectQuery {
        org: "acme".into(),
        ..query("contains(name,Flyte)")
    };
    assert_eq!(ids(&store, &acme_q).await, ["acme1"]);
    store.close().await;
}

async fn survives_restart(t: DatabaseTarget) {
    let store = open_store(&t).await;
    let p = project("kept", "Kept", 0);
    store.create_project(&p).await.unwrap();
    store.close().await;
    // Reopening re-runs the migrator: already-applied migrations must be a no-op.
    for _ in 0..2 {
        let store = open_store(&t).await;
        assert_eq!(store.get_project("", "kept").await.unwrap(), p);
        store.close().await;
    }
}

async fn instances_share_state(t: DatabaseTarget) {
    let (a, b) = (open_store(&t).await, open_store(&t).await);
    add(&a, "shared", "Shared", 0).await;
    assert_eq!(b.get_project("", "shared").await.unwrap().name, "Shared");
    // The same registration racing on two instances: exactly one wins.
    let race = project("raced", "Raced", 0);
    let (ra, rb) = tokio::join!(a.create_project(&race), b.create_project(&race));
    let mut outcomes = [ra, rb];
    outcomes.sort_by_key(Result::is_ok);
    assert_eq!(outcomes, [Err(StoreError::AlreadyExists), Ok(())]);
    a.close().await;
    b.close().await;
}

async fn closed_store_is_unavailable(t: DatabaseTarget) {
    let store = open_store(&t).await;
    store.close().await;
    assert!(matches!(
        store.ping().await,
        Err(StoreError::Unavailable(_))
    ));
}

#[test]
fn sort_keys_parse() {
    for (key, want) in [("identifier", SortKey::Identifier), ("name", SortKey::Name)] {
        assert_eq!(key.parse::<SortKey>().unwrap(), want);
    }
    assert_eq!("created_at".parse::<SortKey>().unwrap(), SortKey::CreatedAt);
    assert!(matches!(
        "owner".parse::<SortKey>(),
        Err(StoreError::Invalid(_))
    ));
}

#[tokio::test]
async fn zero_connections_is_invalid() {
    let path = "unused.db".into();
    let t = DatabaseTarget::Sqlite { path };
    assert!(matches!(
        open(&t, 0, TIMEOUT, None).await,
        Err(StoreError::Invalid(_))
    ));
}

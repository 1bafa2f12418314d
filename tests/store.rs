//! The store's promises: group commit, one write's failure never undoes another, a database
//! newer than the binary is refused untouched.

use std::sync::atomic::Ordering;

use standin::config::DatabaseConfig;
use standin::store::{Store, StoreError};

async fn open(dir: &tempfile::TempDir) -> Store {
    let store = Store::open(&dir.path().join("standin.db"), &DatabaseConfig::default()).unwrap();
    store
        .write(|c| {
            c.execute_batch("CREATE TABLE IF NOT EXISTS scratch (n INTEGER PRIMARY KEY)")
                .map_err(StoreError::from)
        })
        .await
        .unwrap();
    store
}

fn count(store: &Store) -> i64 {
    let c = rusqlite::Connection::open(store.path()).unwrap();
    c.query_row("SELECT count(*) FROM scratch", [], |r| r.get(0))
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writes_share_commits_and_all_land() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir).await;
    let before = store.writer_stats().commits.load(Ordering::Relaxed);
    let tasks: Vec<_> = (0..400i64)
        .map(|n| {
            let s = store.clone();
            tokio::spawn(async move {
                s.write(move |c| {
                    c.execute("INSERT INTO scratch (n) VALUES (?1)", [n])
                        .map_err(StoreError::from)
                })
                .await
            })
        })
        .collect();
    for t in tasks {
        assert_eq!(t.await.unwrap().unwrap(), 1);
    }
    let commits = store.writer_stats().commits.load(Ordering::Relaxed) - before;
    assert_eq!(count(&store), 400);
    assert!(
        commits < 400,
        "400 concurrent writes took {commits} commits: no grouping"
    );
    assert!(store.writer_stats().largest_group.load(Ordering::Relaxed) > 1);
    store.close().await;
}

#[derive(Debug)]
enum WriteError {
    Store(String),
    Refused,
}

impl From<StoreError> for WriteError {
    fn from(e: StoreError) -> Self {
        Self::Store(e.to_string())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_or_panicking_write_undoes_only_itself() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir).await;
    let tasks: Vec<_> = (0..60i64)
        .map(|n| {
            let s = store.clone();
            tokio::spawn(async move {
                s.write(move |c| {
                    c.execute("INSERT INTO scratch (n) VALUES (?1)", [n])
                        .map_err(StoreError::from)?;
                    match n % 6 {
                        0 => Err(WriteError::Refused),
                        3 => panic!("bug in write {n}"),
                        _ => Ok(n),
                    }
                })
                .await
            })
        })
        .collect();
    let mut ok = 0;
    for (n, t) in tasks.into_iter().enumerate() {
        match (n % 6, t.await.unwrap()) {
            (0, Err(WriteError::Refused)) => {}
            (3, Err(WriteError::Store(m))) => assert!(m.contains("panicked"), "{m}"),
            (_, Ok(_)) => ok += 1,
            (k, other) => panic!("write {n} (kind {k}) answered {other:?}"),
        }
    }
    assert_eq!(ok, 40);
    assert_eq!(
        count(&store),
        40,
        "exactly the acknowledged writes are stored"
    );
    let c = rusqlite::Connection::open(store.path()).unwrap();
    let stray: i64 = c
        .query_row(
            "SELECT count(*) FROM scratch WHERE n % 6 IN (0, 3)",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(stray, 0);
    // The writer survived the panics.
    store
        .write(|c| {
            c.execute("INSERT INTO scratch (n) VALUES (1000)", [])
                .map_err(StoreError::from)
        })
        .await
        .unwrap();
    store.close().await;
}

#[tokio::test]
async fn writes_after_close_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir).await;
    store.close().await;
    let r = store
        .write(|c| {
            c.execute("INSERT INTO scratch (n) VALUES (1)", [])
                .map_err(StoreError::from)
        })
        .await;
    assert!(matches!(r, Err(StoreError::Closed)), "{r:?}");
}

#[tokio::test]
async fn readers_cannot_write() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir).await;
    let r = store
        .read(|c| {
            c.execute("INSERT INTO scratch (n) VALUES (1)", [])
                .map_err(StoreError::from)
        })
        .await;
    assert!(r.is_err());
    assert_eq!(count(&store), 0);
    store.close().await;
}

#[test]
fn a_database_newer_than_the_binary_is_refused_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("standin.db");
    {
        let c = rusqlite::Connection::open(&path).unwrap();
        c.execute_batch("CREATE TABLE future (x); PRAGMA user_version = 99;")
            .unwrap();
    }
    let e = Store::open(&path, &DatabaseConfig::default())
        .err()
        .expect("refused");
    assert!(matches!(e, StoreError::TooNew { found: 99, .. }), "{e}");
    assert!(e.to_string().contains("newer"), "{e}");
    let c = rusqlite::Connection::open(&path).unwrap();
    let tables: i64 = c
        .query_row(
            "SELECT count(*) FROM sqlite_schema WHERE type='table'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(tables, 1, "nothing was migrated");
}

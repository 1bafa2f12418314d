//! The `standin` binary itself: kill -9 during a snapshot load, backups under write load,
//! `check` finding damage, config errors that name the key, SIGTERM.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::binary::{BIN, Served, serve, standin};
use common::{delta, receipts, snapshot_part};
use serde_json::Value;

async fn push(
    client: &reqwest::Client,
    s: &Served,
    feed: &str,
    body: &Value,
) -> Result<(u16, Value), reqwest::Error> {
    let res = client
        .post(format!("{}/sync/v1/feeds/{feed}/batches", s.url))
        .bearer_auth(&s.token)
        .json(body)
        .send()
        .await?;
    let status = res.status().as_u16();
    Ok((status, res.json().await?))
}

fn receipt_prefixes(dir: &Path) -> (i64, i64, i64) {
    let c = rusqlite::Connection::open(dir.join("standin.db")).unwrap();
    let q = |sql: &str| c.query_row(sql, [], |r| r.get::<_, i64>(0)).unwrap();
    (
        q("SELECT count(*) FROM receipts WHERE receipt_id LIKE 'A%'"),
        q("SELECT count(*) FROM receipts WHERE receipt_id LIKE 'B%'"),
        q("SELECT count(*) FROM receipt_cards WHERE receipt_id LIKE 'A%'"),
    )
}

/// kill -9 at several moments of a large snapshot load: after a restart the store holds the
/// old snapshot or the new one, never a mix; an acknowledged last part means the new one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_a_snapshot_load_leaves_old_or_new_never_a_mix() {
    const PART: usize = 2500;
    const PARTS: u32 = 4;
    let client = reqwest::Client::new();
    // Kill moments: while part 2 is in flight, right after the last part is sent, and
    // after the last part was acknowledged.
    for (round, kill_at) in [
        (0, "part 2 in flight"),
        (1, "last part in flight"),
        (2, "last part acknowledged"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let token = standin::access::token::generate();
        let mut s = serve(dir.path(), &token, "").await;
        let (st, _) = push(
            &client,
            &s,
            "receipts",
            &snapshot_part(1, "A", 1, 1, receipts("A", 0..3000)),
        )
        .await
        .unwrap();
        assert_eq!(st, 200);

        let mut acked_last = false;
        for part in 1..=PARTS {
            let body = snapshot_part(
                1 + u64::from(part),
                "B",
                part,
                PARTS,
                receipts("B", (part as usize - 1) * PART..part as usize * PART),
            );
            let in_flight = (round == 0 && part == 2) || (round == 1 && part == PARTS);
            if in_flight {
                let (c, url, tok) = (client.clone(), s.url.clone(), s.token.clone());
                let send = tokio::spawn(async move {
                    c.post(format!("{url}/sync/v1/feeds/receipts/batches"))
                        .bearer_auth(tok)
                        .json(&body)
                        .send()
                        .await
                });
                tokio::time::sleep(Duration::from_millis(if round == 0 { 30 } else { 60 })).await;
                s.child.kill().unwrap();
                let _ = send.await;
                break;
            }
            let (st, b) = push(&client, &s, "receipts", &body).await.unwrap();
            assert_eq!(st, 200, "{b}");
            acked_last = part == PARTS;
        }
        if round == 2 {
            s.child.kill().unwrap();
        }
        s.child.wait().unwrap();

        let (a, b, a_cards) = receipt_prefixes(dir.path());
        assert!(
            (a == 3000 && b == 0) || (a == 0 && b == (PART * PARTS as usize) as i64),
            "{kill_at}: a mix after kill -9: {a} old, {b} new receipts"
        );
        if acked_last {
            assert_eq!(
                b,
                (PART * PARTS as usize) as i64,
                "{kill_at}: the acknowledged snapshot was lost"
            );
        }
        if b > 0 {
            assert_eq!(
                a_cards, 0,
                "{kill_at}: old card index rows survived the switch"
            );
        }
        let (code, out) = standin(&["check"], dir.path());
        assert_eq!(
            code, 0,
            "{kill_at}: standin check failed after kill -9: {out}"
        );

        // It restarts and carries on from where the database says it is.
        let mut s2 = serve(dir.path(), &token, "").await;
        let status = s2.status().await.unwrap();
        assert_eq!(
            status["feeds"]["receipts"]["records"].as_i64(),
            Some(a + b),
            "{kill_at}"
        );
        s2.child.kill().unwrap();
        s2.child.wait().unwrap();
        let _ = s2.dir;
    }
}

/// A backup taken while batches are being written is a consistent, checkable database.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_under_write_load_restores_to_a_database_that_checks() {
    let dir = tempfile::tempdir().unwrap();
    let token = standin::access::token::generate();
    let mut s = serve(dir.path(), &token, "").await;
    let (url, tok) = (s.url.clone(), token.clone());
    let writer = tokio::spawn(async move {
        let client = reqwest::Client::new();
        for n in 1..=60u64 {
            let body = delta(n, receipts(&format!("D{n:03}-"), 0..200));
            let res = client
                .post(format!("{url}/sync/v1/feeds/receipts/batches"))
                .bearer_auth(&tok)
                .json(&body)
                .send()
                .await
                .unwrap();
            assert!(res.status().is_success());
        }
    });
    tokio::time::sleep(Duration::from_millis(150)).await;
    let backup_dir = tempfile::tempdir().unwrap();
    let backup = backup_dir.path().join("standin.db");
    let out = Command::new(BIN)
        .args(["backup"])
        .arg(&backup)
        .arg("--data-dir")
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    writer.await.unwrap();

    // Restore = the backup file as the database of a data directory.
    let (code, report) = standin(&["check"], backup_dir.path());
    assert_eq!(code, 0, "{report}");
    let c = rusqlite::Connection::open(&backup).unwrap();
    let (last_batch, records): (i64, i64) = c
        .query_row(
            "SELECT last_batch, records FROM feed_state WHERE feed='receipts'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!(
        records,
        last_batch * 200,
        "the backup is the database as of one commit"
    );
    assert!(
        !backup_dir.path().join("standin.db-wal").exists()
            || std::fs::metadata(backup_dir.path().join("standin.db-wal"))
                .unwrap()
                .len()
                == 0
    );
    s.child.kill().unwrap();
    s.child.wait().unwrap();
}

#[test]
fn check_finds_damage_and_exits_non_zero() {
    let dir = tempfile::tempdir().unwrap();
    let (code, out) = standin(&["migrate"], dir.path());
    assert_eq!(code, 0, "{out}");
    let (code, out) = standin(&["check"], dir.path());
    assert_eq!(code, 0, "{out}");

    // Bookkeeping that disagrees with the data.
    let db = dir.path().join("standin.db");
    {
        let c = rusqlite::Connection::open(&db).unwrap();
        c.execute("UPDATE feed_state SET records = 7 WHERE feed = 'staff'", [])
            .unwrap();
    }
    let (code, out) = standin(&["check"], dir.path());
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("staff"), "{out}");

    // Pages overwritten on disk.
    {
        let c = rusqlite::Connection::open(&db).unwrap();
        c.execute("UPDATE feed_state SET records = 0 WHERE feed = 'staff'", [])
            .unwrap();
        c.execute_batch("PRAGMA journal_mode=DELETE; CREATE TABLE filler (x); WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM n WHERE i < 2000) INSERT INTO filler SELECT randomblob(200) FROM n; CREATE INDEX filler_x ON filler(x);").unwrap();
    }
    let mut bytes = std::fs::read(&db).unwrap();
    let page = 4096;
    let n = bytes.len() / page;
    for p in [n / 2, n / 2 + 1, n - 2] {
        for b in &mut bytes[p * page + 16..p * page + 600] {
            *b = 0x5a;
        }
    }
    std::fs::write(&db, bytes).unwrap();
    let (code, out) = standin(&["check"], dir.path());
    assert_ne!(code, 0, "damage went unnoticed: {out}");
}

#[test]
fn a_bad_config_names_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("bad.toml");
    std::fs::write(&cfg, "[central]\nurl = \"http://c\"\ntimeout = 5\n").unwrap();
    let out = Command::new(BIN)
        .args(["serve", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2));
    assert!(err.contains("timeout"), "{err}");

    let out = Command::new(BIN)
        .args(["serve", "--data-dir"])
        .arg(dir.path())
        .env("STANDIN_LISTEN", "nowhere")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2));
    assert!(err.contains("STANDIN_LISTEN"), "{err}");
    assert!(
        !dir.path().join("standin.db").exists(),
        "a refused config touches nothing"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_cleanly_and_promptly() {
    let dir = tempfile::tempdir().unwrap();
    let token = standin::access::token::generate();
    let mut s = serve(dir.path(), &token, "").await;
    let client = reqwest::Client::new();
    let (st, _) = push(&client, &s, "receipts", &delta(1, receipts("R", 0..100)))
        .await
        .unwrap();
    assert_eq!(st, 200);
    let started = Instant::now();
    Command::new("kill")
        .args(["-TERM", &s.child.id().to_string()])
        .status()
        .unwrap();
    let status = loop {
        if let Some(st) = s.child.try_wait().unwrap() {
            break st;
        }
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "still running 15 s after SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(status.success(), "{status:?}");
    // A clean stop checkpoints the WAL into the database file.
    let wal = dir.path().join("standin.db-wal");
    assert!(!wal.exists() || std::fs::metadata(&wal).unwrap().len() == 0);
    let c = rusqlite::Connection::open(dir.path().join("standin.db")).unwrap();
    let kept: i64 = c
        .query_row(
            "SELECT count(*) FROM receipts WHERE receipt_id LIKE 'R%'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(kept, 100, "the acknowledged batch survived the stop");
    drop(c);
    let (code, out) = standin(&["check"], dir.path());
    assert_eq!(code, 0, "{out}");
}

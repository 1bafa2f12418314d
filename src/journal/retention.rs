//! Retention: delivered entries older than `journal.retention_days` are pruned, oldest first,
//! as one unbroken prefix of the chain, and the last pruned hash becomes the chain's anchor.
//! Nothing undelivered is ever pruned: the prefix stops at the first pending entry (and a
//! trigger refuses the delete even if this code were wrong). Nor is anything set aside
//! (`rejected`, `conflict`): those are what reconciliation shows a person, what marks a
//! pickup as needing attention, and what tells the returns rule that central never counted a
//! return; there is no "resolved" action yet, so they stay, and the prefix stops at the
//! first of them. The price: while one stays unresolved, the journal after it is kept too
//! (`standin_journal_set_aside` and its alert say so).

use rusqlite::{Connection, params};

/// Prunes; returns how many entries went.
pub fn prune(conn: &Connection, cutoff: &str, now: &str) -> rusqlite::Result<usize> {
    // The prefix ends before the first entry that is pending, set aside or too young.
    let end: Option<i64> = conn.query_row(
        "SELECT CASE
            WHEN (SELECT min(seq) FROM journal WHERE outcome IS NULL OR outcome IN ('rejected', 'conflict') OR delivered_at >= ?1 OR occurred_at >= ?1) IS NULL
            THEN (SELECT max(seq) FROM journal)
            ELSE (SELECT min(seq) FROM journal WHERE outcome IS NULL OR outcome IN ('rejected', 'conflict') OR delivered_at >= ?1 OR occurred_at >= ?1) - 1
         END",
        [cutoff],
        |r| r.get(0),
    )?;
    let Some(end) = end else { return Ok(0) };
    let last: Option<(i64, String)> = conn
        .query_row(
            "SELECT seq, hash FROM journal WHERE seq <= ?1 ORDER BY seq DESC LIMIT 1",
            [end],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .ok();
    let Some((seq, hash)) = last else {
        return Ok(0);
    };
    let n = conn.execute("DELETE FROM journal WHERE seq <= ?1", [seq])?;
    conn.execute(
        "INSERT INTO journal_anchor (id, seq, hash, pruned_at) VALUES (1, ?1, ?2, ?3)
         ON CONFLICT (id) DO UPDATE SET seq = excluded.seq, hash = excluded.hash, pruned_at = excluded.pruned_at",
        params![seq, hash, now],
    )?;
    Ok(n)
}

/// Runs retention once an hour until shutdown.
pub async fn run(state: crate::state::AppState, mut shutdown: tokio::sync::watch::Receiver<bool>) {
    let days = i64::from(state.config.journal.retention_days);
    loop {
        let now = state.clock.now();
        let cutoff = (now - chrono::Duration::days(days))
            .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        let now_s = state.clock.now_rfc3339();
        match state
            .store
            .write(move |c| prune(c, &cutoff, &now_s).map_err(crate::store::StoreError::from))
            .await
        {
            Ok(0) => {}
            Ok(n) => tracing::info!(
                pruned = n,
                days,
                "journal retention pruned delivered entries"
            ),
            Err(e) => tracing::warn!(error = %e, "journal retention failed"),
        }
        tokio::select! {
            _ = tokio::time::sleep(std::time::Duration::from_secs(3600)) => {}
            _ = shutdown.changed() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::{Lane, NewEntry, append, chain};

    fn store() -> Connection {
        let mut c = Connection::open_in_memory().unwrap();
        crate::store::migrate(&mut c).unwrap();
        c
    }

    fn add(c: &Connection, n: usize) -> Vec<crate::journal::Entry> {
        (0..n)
            .map(|i| {
                let e = NewEntry {
                    lane: Lane::Audit,
                    kind: "test.entry".into(),
                    actor: None,
                    device: None,
                    body: serde_json::json!({ "n": i }),
                };
                append(c, "store-0001", "2020-01-01T00:00:00.000Z", e).unwrap()
            })
            .collect()
    }

    fn deliver_all(c: &Connection) {
        c.execute(
            "UPDATE journal SET outcome = 'accepted', delivered_at = '2020-01-02T00:00:00.000Z'
             WHERE outcome IS NULL",
            [],
        )
        .unwrap();
    }

    /// `seq` is not AUTOINCREMENT (migration 0016): once retention has pruned every entry,
    /// including the newest, the next entry still gets a number never handed out, chained to
    /// the last pruned hash, and it survives a second prune of everything.
    #[test]
    fn seq_is_never_reused_after_pruning_everything_delivered() {
        let c = store();
        let first = add(&c, 3);
        assert_eq!(first.iter().map(|e| e.seq).collect::<Vec<_>>(), [1, 2, 3]);
        deliver_all(&c);
        let later = "2999-01-01T00:00:00.000Z";
        assert_eq!(prune(&c, later, later).unwrap(), 3);
        let left: i64 = c
            .query_row("SELECT count(*) FROM journal", [], |r| r.get(0))
            .unwrap();
        assert_eq!(left, 0, "every delivered entry pruned, the newest too");

        let next = add(&c, 1);
        assert_eq!(next[0].seq, 4, "not 1: the pruned numbers stay used");
        assert_eq!(next[0].prev_hash, first[2].hash);
        assert_eq!(chain::verify(&c).unwrap(), None);

        deliver_all(&c);
        assert_eq!(prune(&c, later, later).unwrap(), 1);
        assert_eq!(add(&c, 2).iter().map(|e| e.seq).collect::<Vec<_>>(), [5, 6]);
        assert_eq!(chain::verify(&c).unwrap(), None);
        // Nothing keeps a per-commit counter any more.
        let sequences: i64 = c
            .query_row("SELECT count(*) FROM sqlite_sequence", [], |r| r.get(0))
            .unwrap();
        assert_eq!(sequences, 0);
    }
}

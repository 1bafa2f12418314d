//! Model-based test of delivery: thousands of journal entries are written while the simulated
//! central fails in every way it can (down, 500, 429/503 with Retry-After, hang,
//! apply-then-drop, partial acceptance, latency) and `standin serve` is killed with SIGKILL
//! and restarted at random moments. At the end central holds every entry exactly once, each
//! lane in seq order, the entries it rejected are exactly the ones set aside for
//! reconciliation, and `standin check` passes.
//!
//! The seed is printed; `MODEL_SEED=N` replays a run.

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use common::binary::{serve, standin};
use common::sim::{admin, fault, received_journal, simulator};
use common::*;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};
use standin::journal::{Entry, Lane};

const ENTRIES: usize = 3000;
const MAX_KILLS: usize = 6;

fn random_fault(rng: &mut impl Rng) -> Value {
    match rng.random_range(0..9) {
        0 => json!({"mode": "down"}),
        1 => json!({"mode": "error", "status": 500}),
        2 => json!({"mode": "retry_after", "status": 503, "retry_after_s": 1}),
        3 => json!({"mode": "retry_after", "status": 429, "retry_after_s": 1}),
        4 => json!({"mode": "hang"}),
        5 => json!({"mode": "drop_response"}),
        6 => json!({"mode": "partial", "accept_ratio": rng.random_range(0.1..0.9)}),
        7 => json!({"mode": "latency", "latency_ms": rng.random_range(10..300)}),
        _ => json!({"mode": "ok"}),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_entry_reaches_central_exactly_once_through_faults_and_kill_9() {
    let seed: u64 = std::env::var("MODEL_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random);
    println!("journal model: seed {seed} (MODEL_SEED={seed} replays)");
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);

    let sim = simulator(20, 5).await;
    admin(
        &sim,
        reqwest::Method::PUT,
        "/admin/central/reject",
        json!({"ids": [], "kinds": ["model.poison"]}),
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let token = standin::access::token::generate();
    let extra = format!(
        "[central]\nurl = \"{}\"\ntimeout_ms = 400\nhealth_interval_secs = 1\n\n[journal]\nbatch_size = 50\nretry_base_ms = 20\nretry_cap_ms = 400\nidle_poll_ms = 50\n",
        sim.central_url()
    );
    let mut served = serve(dir.path(), &token, &extra).await;
    let db = dir.path().join("standin.db");

    let mut written: Vec<Entry> = Vec::new();
    let (mut kills, mut faults) = (0, 0);
    while written.len() < ENTRIES {
        let lane = Lane::BY_PRIORITY[rng.random_range(0..4)];
        let (kind, n) = if rng.random_bool(0.02) {
            ("model.poison", 1)
        } else {
            ("model.action", rng.random_range(1..60))
        };
        let db2 = db.clone();
        written.extend(
            tokio::task::spawn_blocking(move || append_entries(&db2, lane, kind, n))
                .await
                .unwrap(),
        );
        match rng.random_range(0..12) {
            0..=3 => {
                fault(&sim, "central", random_fault(&mut rng)).await;
                faults += 1;
            }
            4 if kills < MAX_KILLS => {
                served.kill_9();
                kills += 1;
                if rng.random_bool(0.5) {
                    // Sometimes the store stays dead a while, as after a power cut.
                    tokio::time::sleep(Duration::from_millis(rng.random_range(0..300))).await;
                }
                served = serve(dir.path(), &token, &extra).await;
            }
            _ => {}
        }
        tokio::time::sleep(Duration::from_millis(rng.random_range(5..80))).await;
    }
    println!(
        "journal model: {} entries, {faults} faults, {kills} kills",
        written.len()
    );

    // Central recovers; everything drains.
    fault(&sim, "central", json!({"mode": "ok"})).await;
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        if let Some(s) = served.status().await
            && s["journal"]["lanes"]
                .as_object()
                .is_some_and(|l| l.values().all(|l| l["pending"] == 0))
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the journal did not drain: {:?}",
            served.status().await
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let received = received_journal(&sim).await;
    assert_exactly_once_in_order(&received, &written);

    let rejected: BTreeSet<String> = received
        .iter()
        .filter(|r| r["outcome"] == "rejected")
        .map(|r| r["id"].as_str().unwrap().to_string())
        .collect();
    let poison: BTreeSet<String> = written
        .iter()
        .filter(|e| e.kind == "model.poison")
        .map(|e| e.id.clone())
        .collect();
    let conn = rusqlite::Connection::open(&db).unwrap();
    let set_aside: BTreeSet<String> = column::<String>(
        &conn,
        "SELECT id FROM journal WHERE outcome IN ('rejected', 'conflict')",
    )
    .into_iter()
    .collect();
    assert_eq!(
        rejected, poison,
        "central rejected exactly the poison entries"
    );
    assert_eq!(
        set_aside, rejected,
        "reconciliation holds exactly what central rejected"
    );
    drop(conn);

    served.kill_9();
    let (code, out) = standin(&["check"], dir.path());
    assert_eq!(code, 0, "standin check after the run: {out}");
    sim.shutdown().await;
}

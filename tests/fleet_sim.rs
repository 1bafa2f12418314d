//! The fleet simulator's correctness claim, in CI: 20 virtual stores over two real hub
//! processes (`standin hub serve`) on a real PostgreSQL, through an outage and its drain,
//! then a second outage whose drain takes one hub SIGKILL and one PostgreSQL restart; every store's entries read back from PostgreSQL,
//! each exactly once, every chain re-verified. No timing is asserted; the breaker is scaled
//! down (seconds, not tens of seconds) only so the test is short.

use std::time::Duration;

use standin::hub::fleet_sim::{Plan, run};
use standin::upstream::BreakerConfig;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_stores_land_every_entry_exactly_once_through_an_outage_a_kill_and_a_restart() {
    if standin::hub::cluster::find_or_install_bin().is_err() && std::env::var_os("CI").is_none() {
        eprintln!("skipped: no PostgreSQL");
        return;
    }
    let dir = tempfile::Builder::new()
        .prefix("standin-fleet-sim")
        .tempdir()
        .unwrap();
    let mut plan = Plan::new(
        20,
        env!("CARGO_BIN_EXE_standin").into(),
        dir.path().to_path_buf(),
    );
    plan.entries_per_store = 25;
    plan.outage = Duration::from_secs(4);
    plan.second_outage = Some(Duration::from_secs(3));
    plan.second_entries_per_store = 25;
    plan.warmup = Duration::from_secs(1);
    plan.intake_at_once = 2;
    plan.ceiling = false;
    plan.quiet = true;
    plan.policy.batch_size = 5;
    plan.policy.breaker = BreakerConfig {
        open_base: Duration::from_millis(500),
        open_cap: Duration::from_secs(2),
        open_spread_min: Duration::from_millis(500),
        ..BreakerConfig::default()
    };
    plan.policy.retry_cap = Duration::from_secs(2);
    let report = run(plan).await.expect("the run itself");
    report.print();
    assert_eq!(report.generated, 2 * 20 * 25);
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    assert_eq!(report.stores_verified, 20);
    assert_eq!(
        report.entries_verified,
        2 * 20 * 25,
        "every entry landed once"
    );
    let faulted = report.faulted.as_ref().expect("the second outage's drain");
    assert_eq!(faulted.landed + report.landed_after_return, 2 * 20 * 25);
    assert!(report.exactly_once());
    // The disruptions happened (mid-drain or not: the count is what the claim rests on).
    assert!(report.hub_killed_at.is_some());
    assert!(report.postgres_restarted_at.is_some());
    // Feeds were pulled with cursors: one policy record and each store's order.
    // Feeds pulled with `after=n` cursors: each store got the policy record and its own
    // order once (a replayed batch would count twice).
    assert_eq!(report.feed_records_received, 40);
    // The hub takes heartbeats (`POST /v1/stores/{store}/status`): every store's last one.
    assert!(!report.heartbeat_unsupported);
    assert!(
        report.heartbeats_accepted >= 20,
        "{}",
        report.heartbeats_accepted
    );
}

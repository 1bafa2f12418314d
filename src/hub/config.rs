//! The hub's configuration: a TOML file (`--config`, also `STANDIN_HUB_CONFIG`) plus
//! `STANDIN_HUB__KEY` environment overrides (`STANDIN_HUB__DATABASE_URL`), then flags.
//! Kept apart from the store's `Config`: a hub and a store share no key.

use std::fmt;
use std::net::SocketAddr;
use std::path::Path;

use serde::Deserialize;

use crate::config::Secret;

#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HubConfig {
    /// `postgres://user:password@host:port/db` or key=value form; a secret (it may hold a
    /// password), so it never shows in Debug output.
    pub database_url: Secret,
    pub listen: SocketAddr,
    /// Connections each hub process keeps to PostgreSQL, in all: `intake_at_once` + 1 are
    /// the intake's own (journal batches and the heartbeat writer), the rest serve feed
    /// pulls, the fleet view and token lookups. At least `intake_at_once` + 2.
    pub pool_size: usize,
    /// Journal batches landing at once per hub process; beyond it the hub answers 503 with
    /// a `Retry-After` spread per store rather than queueing on PostgreSQL.
    pub intake_at_once: usize,
    /// Journal batches that may wait for one of those slots, per process (within
    /// `intake_deadline_ms`); beyond it a batch is answered 503 `busy` at once. A burst
    /// then waits tens of milliseconds instead of going away for `Retry-After` seconds:
    /// with no queue, a fleet returning after an outage was refused 2,600–4,500 times and
    /// its last stores drained a minute after the rest (`cargo bench --bench fleet`,
    /// 2026-12-06).
    pub intake_queue: usize,
    /// Journal request bodies a process holds at once (MiB), being read, waiting or landing:
    /// a batch that would go past it is answered 503 `busy` without the rest of its body
    /// being read. With the admitted count it bounds what a fleet pushing at once costs a
    /// hub in memory. At least the largest body (32 MiB).
    pub intake_memory_mib: usize,
    /// A journal batch not landed within this is answered 503 `busy`: one still waiting for
    /// its turn never starts; one landing (waiting for a connection, a lock, or PostgreSQL
    /// itself) finishes in the background and its resend is answered `duplicate`. Kept under the stores'
    /// own `central.timeout_ms` (5,000): a store that gives up on a push sends the same
    /// entries again, so a batch the hub lands after its store stopped waiting is work done
    /// twice (`cargo bench --bench fleet` with 2,000,000 entries on a loaded machine: intake
    /// p99 5 s, 766,600 entries answered `duplicate`).
    pub intake_deadline_ms: u64,
    /// Retry-After = min + a per-store share of spread (from the store id's hash) + jitter
    /// (up to a fifth of spread); the store's breaker spreads it further (at least 10 s). For
    /// `busy`, spread is at most this, following the refusals ([`super::pace`]). At
    /// 2 + 20 the few stores told `busy` while a fleet drained came back up to 50 s later,
    /// and were the last 40 s of the drain (`cargo bench --bench fleet`, 2026-12-06).
    pub retry_after_min_secs: u64,
    pub retry_after_spread_secs: u64,
    /// Most records and bytes (of records) in one feed batch or snapshot part.
    pub batch_records: usize,
    pub batch_bytes: usize,
    /// Most journal entries in one intake request.
    pub max_entries_per_request: usize,
    pub log_filter: String,
    /// The stores' central health interval (their `central.health_interval_secs`), for
    /// stores whose heartbeat does not say its own (`interval_secs`).
    pub health_interval_secs: u64,
    /// A store is `silent` in the fleet view after this many health intervals without any
    /// contact (heartbeat or journal): N = 3 by default, 15 s at the stores' default 5 s.
    pub silent_after_intervals: u64,
    /// Open client connections per process at most (lowered to fit the open-file limit). At
    /// the cap the oldest idle connection is closed for a newcomer; only when every one in
    /// the way is busy is the newcomer answered 503 (`crate::http::conn`).
    pub max_connections: usize,
    /// Open connections from one client address at most. As many as `max_connections` by
    /// default: stores behind one NAT or a load balancer share an address. Set it lower
    /// where stores reach the hub directly, so one address cannot hold every socket.
    pub max_connections_per_client: usize,
    /// A request's head must arrive within this of the connection opening or of the previous
    /// answer: idle keep-alive connections and slow heads are closed after it. Above the
    /// stores' own idle pool timeout (30 s), so a store, not the hub, closes an idle one.
    pub idle_timeout_secs: u64,
    /// A request not answered within this is answered 503 and dropped (a journal batch
    /// already landing finishes first: [`super::journal`]).
    pub request_timeout_secs: u64,
    /// Each process reloads every store's token from PostgreSQL this often, so a rotated
    /// token (`standin hub store rotate`) stops working within it.
    pub token_refresh_secs: u64,
    /// Rejected entries kept per store at most (rows in `journal_entries`, conflicts
    /// included in the count). Past it a rejected entry is answered as ever but not written,
    /// and counted (`set_aside_not_kept` in the fleet view): one store's token cannot grow
    /// HQ's database without bound with entries it knows will be rejected. A store that
    /// follows the contract sets a few aside in its life.
    pub set_aside_kept_per_store: i64,
    /// A fleet read (`GET /v1/fleet`, `/fleet`'s data, `/metrics`) this recent is shared by
    /// the requests that come while it is fresh, and one read runs at a time per process:
    /// the fleet view needs no credential, and each read holds a shared connection for a
    /// scan of every store, so readers never hold more than one of the connections the
    /// fleet's feed pulls need. 0: every request reads afresh (still one at a time).
    pub fleet_view_max_age_ms: u64,
    /// Heartbeats one store may send to a process in a burst; past it, two a second
    /// (`hub::share::HEARTBEAT_REFILL`), the rest answered 429 before their body is read.
    /// Standin sends at most one a second (on its interval, and on a change of state it
    /// looks for every second); one store's token sending 200 KB heartbeats as fast as it
    /// could kept about 1.2 cores of two hub processes busy (a hostile round, 2026-12-07).
    /// At least 1.
    pub heartbeat_burst: u32,
}

impl Default for HubConfig {
    fn default() -> Self {
        Self {
            database_url: Secret::default(),
            listen: SocketAddr::from(([127, 0, 0, 1], 8090)),
            pool_size: 16,
            intake_at_once: 8,
            intake_queue: 256,
            intake_memory_mib: 256,
            intake_deadline_ms: 3_000,
            retry_after_min_secs: 1,
            retry_after_spread_secs: 10,
            batch_records: 500,
            batch_bytes: 1024 * 1024,
            max_entries_per_request: 5_000,
            log_filter: "info".into(),
            health_interval_secs: 5,
            silent_after_intervals: 3,
            max_connections: 16_384,
            max_connections_per_client: 16_384,
            idle_timeout_secs: 45,
            request_timeout_secs: 60,
            token_refresh_secs: 15,
            set_aside_kept_per_store: 10_000,
            fleet_view_max_age_ms: 1_000,
            heartbeat_burst: 20,
        }
    }
}

impl fmt::Debug for HubConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HubConfig")
            .field("database_url", &self.database_url)
            .field("listen", &self.listen)
            .field("pool_size", &self.pool_size)
            .field("intake_at_once", &self.intake_at_once)
            .field("intake_queue", &self.intake_queue)
            .field("intake_memory_mib", &self.intake_memory_mib)
            .field("intake_deadline_ms", &self.intake_deadline_ms)
            .field("batch_records", &self.batch_records)
            .field("batch_bytes", &self.batch_bytes)
            .field("max_connections", &self.max_connections)
            .field(
                "max_connections_per_client",
                &self.max_connections_per_client,
            )
            .field("idle_timeout_secs", &self.idle_timeout_secs)
            .field("request_timeout_secs", &self.request_timeout_secs)
            .field("set_aside_kept_per_store", &self.set_aside_kept_per_store)
            .field("heartbeat_burst", &self.heartbeat_burst)
            .finish_non_exhaustive()
    }
}

impl HubConfig {
    /// Connections kept for the intake: one per batch landing at once, one for heartbeats.
    pub fn intake_pool_size(&self) -> usize {
        self.intake_at_once.max(1) + 1
    }

    /// Connections for everything else (feed pulls, the fleet view, token lookups).
    pub fn shared_pool_size(&self) -> usize {
        self.pool_size
            .saturating_sub(self.intake_pool_size())
            .max(1)
    }

    /// Settings that cannot work together, named by key.
    pub fn check(&self) -> anyhow::Result<()> {
        if self.pool_size < self.intake_pool_size() + 1 {
            anyhow::bail!(
                "hub config key `pool_size`: {} is too small for intake_at_once = {}: the intake keeps {} connections of its own (one per batch landing at once, one for heartbeats) and feed pulls need at least one more; set pool_size to at least {}",
                self.pool_size,
                self.intake_at_once,
                self.intake_pool_size(),
                self.intake_pool_size() + 1
            );
        }
        if self.request_timeout_secs.saturating_mul(1000) <= self.intake_deadline_ms {
            anyhow::bail!(
                "hub config key `request_timeout_secs`: {} s does not leave a journal batch its `intake_deadline_ms` ({} ms)",
                self.request_timeout_secs,
                self.intake_deadline_ms
            );
        }
        if self.heartbeat_burst == 0 {
            anyhow::bail!(
                "hub config key `heartbeat_burst`: 0 would refuse every heartbeat; at least 1"
            );
        }
        let largest_mib = super::MAX_BODY_BYTES.div_ceil(1024 * 1024);
        if self.intake_memory_mib < largest_mib {
            anyhow::bail!(
                "hub config key `intake_memory_mib`: {} is less than the largest journal request ({largest_mib} MiB), which could then never be taken",
                self.intake_memory_mib
            );
        }
        Ok(())
    }

    /// `intake_deadline_ms` as a duration (at least 1 ms): how long a store's write may
    /// take, from its arrival to its answer.
    pub fn intake_deadline(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.intake_deadline_ms.max(1))
    }

    /// Journal batches a process holds at once, landing or waiting for a turn.
    pub fn intake_admitted(&self) -> usize {
        self.intake_at_once.max(1) + self.intake_queue
    }

    /// Loads `file` (if any), then `STANDIN_HUB__…` overrides from `env`. Errors name the key.
    pub fn load(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> anyhow::Result<Self> {
        let mut table = match file {
            Some(p) => {
                let text = std::fs::read_to_string(p)
                    .map_err(|e| anyhow::anyhow!("cannot read hub config {}: {e}", p.display()))?;
                toml::from_str::<toml::Table>(&text).map_err(|e| {
                    anyhow::anyhow!("hub config {} is not valid TOML: {e}", p.display())
                })?
            }
            None => toml::Table::new(),
        };
        for (name, value) in env {
            let Some(key) = name.strip_prefix("STANDIN_HUB__") else {
                continue;
            };
            // A number or boolean as TOML would write it; anything else is a string.
            let v = toml::from_str::<toml::Table>(&format!("v = {value}"))
                .ok()
                .and_then(|mut t| t.remove("v"))
                .filter(|v| !v.is_str() && !v.is_table() && !v.is_array())
                .unwrap_or(toml::Value::String(value));
            table.insert(key.to_ascii_lowercase(), v);
        }
        let config = serde_path_to_error::deserialize::<_, HubConfig>(toml::Value::Table(table))
            .map_err(|e| anyhow::anyhow!("hub config key `{}`: {}", e.path(), e.inner()))?;
        config.check()?;
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn environment_overrides_file_and_types_follow_the_key() {
        let env = [
            ("STANDIN_HUB__DATABASE_URL".into(), "postgres://h/db".into()),
            ("STANDIN_HUB__INTAKE_AT_ONCE".into(), "3".into()),
            ("STANDIN_OTHER".into(), "x".into()),
        ];
        let c = HubConfig::load(None, env).unwrap();
        assert_eq!(c.database_url.expose(), "postgres://h/db");
        assert_eq!(c.intake_at_once, 3);
        assert!(!format!("{c:?}").contains("postgres://h/db"));
    }

    #[test]
    fn a_pool_too_small_for_the_intake_is_named() {
        let env = [("STANDIN_HUB__INTAKE_AT_ONCE".into(), "16".into())];
        let e = HubConfig::load(None, env).unwrap_err().to_string();
        assert!(
            e.contains("`pool_size`") && e.contains("at least 18"),
            "{e}"
        );
        let c = HubConfig::default();
        assert_eq!((c.intake_pool_size(), c.shared_pool_size()), (9, 7));
        let env = [("STANDIN_HUB__INTAKE_MEMORY_MIB".into(), "8".into())];
        let e = HubConfig::load(None, env).unwrap_err().to_string();
        assert!(e.contains("`intake_memory_mib`"), "{e}");
    }

    #[test]
    fn a_request_timeout_inside_the_intake_deadline_is_named() {
        let env = [("STANDIN_HUB__REQUEST_TIMEOUT_SECS".into(), "3".into())];
        let e = HubConfig::load(None, env).unwrap_err().to_string();
        assert!(e.contains("`request_timeout_secs`"), "{e}");
        let env = [("STANDIN_HUB__REQUEST_TIMEOUT_SECS".into(), "4".into())];
        assert_eq!(HubConfig::load(None, env).unwrap().request_timeout_secs, 4);
    }

    #[test]
    fn an_unknown_key_is_named() {
        let env = [("STANDIN_HUB__POOL".into(), "3".into())];
        let e = HubConfig::load(None, env).unwrap_err().to_string();
        assert!(e.contains("pool"), "{e}");
    }
}

//! One virtual store: its hash-chained journal (sealed by [`crate::journal::seal`], as
//! `journal::append` seals a real store's), its feed cursors, its heartbeat, and the four
//! loops a real Standin runs against central (uplink, health probe, feed pull, heartbeat),
//! all through one shared [`Upstreams`] (Standin's breaker) with Standin's [`Backoff`] and
//! the uplink's own sleep rule ([`uplink::next_wait`]).

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Deserialize;
use serde_json::{Value, json};

use super::Stats;
use crate::feeds::Feed;
use crate::journal::chain::GENESIS;
use crate::journal::delivery::Outcome;
use crate::journal::uplink::{self, Round};
use crate::journal::{Entry, Lane, NewEntry};
use crate::status::heartbeat::Heartbeat;
use crate::upstream::{
    Backoff, BreakerConfig, Failure, Upstream, Upstreams, describe_reqwest, retry_after,
};

const C: Upstream = Upstream::Central;

/// Standin's intervals (its config defaults) unless a plan says otherwise.
#[derive(Debug, Clone)]
pub struct Policy {
    pub breaker: BreakerConfig,
    pub batch_size: usize,
    pub retry_base: Duration,
    pub retry_cap: Duration,
    pub idle_poll: Duration,
    pub health_interval: Duration,
    pub pull_interval: Duration,
    pub pull_page: usize,
    pub timeout: Duration,
}

impl Default for Policy {
    fn default() -> Self {
        let c = crate::config::Config::default();
        Self {
            breaker: BreakerConfig::default(),
            batch_size: c.journal.batch_size,
            retry_base: Duration::from_millis(c.journal.retry_base_ms),
            retry_cap: Duration::from_millis(c.journal.retry_cap_ms),
            idle_poll: Duration::from_millis(c.journal.idle_poll_ms),
            health_interval: Duration::from_secs(c.central.health_interval_secs),
            pull_interval: Duration::from_secs(c.feeds.pull_interval_secs),
            pull_page: c.feeds.pull_page,
            timeout: Duration::from_millis(c.central.timeout_ms),
        }
    }
}

#[derive(Default)]
struct Journal {
    entries: Vec<Entry>,
    /// Per entry: the hub's first answer.
    settled: Vec<Option<Outcome>>,
}

/// The batches a store with `entries` all pending sends, in order, by the uplink's rule
/// ([`Journal::pending`]): the highest-priority lane first, `seq` order within it, the lower
/// lanes in the room left, `batch_size` entries at first and twice as many after each full
/// push answered ([`uplink::BatchGrowth`]). The fleet bench's fair PostgreSQL peer commits
/// the same transactions.
pub fn delivery_batches(entries: &[Entry], batch_size: usize) -> Vec<Vec<Entry>> {
    let mut j = Journal {
        entries: entries.to_vec(),
        settled: vec![None; entries.len()],
    };
    let mut size = uplink::BatchGrowth::new(batch_size);
    let mut out = Vec::new();
    loop {
        let batch: Vec<Entry> = j.pending(size.limit()).into_iter().cloned().collect();
        if batch.is_empty() {
            return out;
        }
        for e in &batch {
            j.settled[(e.seq - 1) as usize] = Some(Outcome::Accepted);
        }
        size.answered(batch.len());
        out.push(batch);
    }
}

impl Journal {
    /// The next push, as Standin's uplink makes it ([`Lane::fill`]): the highest lane's
    /// pending first, the lower lanes in the room left, each in `seq` order. Borrowed: a
    /// push serialises it under the journal's lock rather than cloning every entry (cloning
    /// 100 entries a push was the simulator's largest cost, enough to delay its own runtime
    /// by seconds at 400 entries a store).
    fn pending(&self, limit: usize) -> Vec<&Entry> {
        let mut batch = Vec::new();
        let _ = Lane::fill(limit, |lane, room| {
            let before = batch.len();
            batch.extend(
                self.entries
                    .iter()
                    .zip(&self.settled)
                    .filter(|(e, s)| e.lane == lane && s.is_none())
                    .map(|(e, _)| e)
                    .take(room),
            );
            Ok::<_, std::convert::Infallible>(batch.len() - before)
        });
        batch
    }

    fn backlog(&self) -> usize {
        self.settled.iter().filter(|s| s.is_none()).count()
    }
}

/// The store's card processor as it sees it, and the payments it approved offline and has
/// not yet forwarded: what its heartbeat reports (the bench's stores stay up, with none).
#[derive(Debug, Clone, Default)]
pub struct Till {
    pub processor_down: bool,
    /// When `processor_down` last changed (none: never; reported as now).
    pub processor_since: Option<chrono::DateTime<chrono::Utc>>,
    pub offline_count: i64,
    pub offline_total_minor: i64,
    /// The earliest forwarding deadline among them (RFC 3339).
    pub tightest_deadline: Option<String>,
}

pub struct VStore {
    pub id: String,
    pub token: String,
    pub base: String,
    pub upstreams: Upstreams,
    journal: Mutex<Journal>,
    cursors: Mutex<[i64; 5]>,
    pub feed_records: AtomicU64,
    hb_seq: AtomicU64,
    /// Set when a heartbeat was answered 404: the hub has no such path yet.
    pub heartbeat_unsupported: AtomicBool,
    pub heartbeats_accepted: AtomicU64,
    appended: tokio::sync::Notify,
    last_second: AtomicI64,
    last_retry_second: AtomicI64,
    /// All entries generated (the generator is done).
    pub generated_all: AtomicBool,
    /// Every feed pulled to its end at least once.
    pulled: AtomicBool,
    pub set_aside: AtomicU64,
    pub till: Mutex<Till>,
    /// Sent as the heartbeat's `interval_secs` (the hub's silence threshold for this store).
    interval_secs: Option<u64>,
}

impl VStore {
    pub fn new(id: String, token: String, base: String, policy: &Policy, seed: u64) -> Self {
        Self {
            upstreams: Upstreams::with_breaker(
                |u| u == C,
                policy.breaker,
                seed,
                chrono::Utc::now(),
            ),
            id,
            token,
            base,
            journal: Mutex::default(),
            cursors: Mutex::new([0; 5]),
            feed_records: AtomicU64::new(0),
            hb_seq: AtomicU64::new(0),
            heartbeat_unsupported: AtomicBool::new(false),
            heartbeats_accepted: AtomicU64::new(0),
            appended: tokio::sync::Notify::new(),
            last_second: AtomicI64::new(-1),
            last_retry_second: AtomicI64::new(-1),
            generated_all: AtomicBool::new(false),
            pulled: AtomicBool::new(false),
            set_aside: AtomicU64::new(0),
            till: Mutex::default(),
            interval_secs: None,
        }
    }

    /// Reports `secs` as its health interval in every heartbeat.
    pub fn reporting_interval(mut self, secs: u64) -> Self {
        self.interval_secs = Some(secs);
        self
    }

    /// Appends one entry to the store's chain, sealed as `journal::append` seals it.
    pub fn append(&self, n: u64) -> Entry {
        let (lane, kind, body) = match n % 4 {
            0 => (
                Lane::Payments,
                "payment.approved_offline",
                json!({ "payment_id": format!("p{n}"), "amount_minor": 1000 + n, "currency": "EUR", "tender": "card" }),
            ),
            1 => (
                Lane::Returns,
                "return.accepted",
                json!({ "return_id": format!("r{n}"), "refund_minor": 500 + n }),
            ),
            2 => (
                Lane::Pickups,
                "pickup.handed_over",
                json!({ "order_id": format!("sim-{n}"), "code_checked": true }),
            ),
            _ => (Lane::Audit, "audit.note", json!({ "n": n })),
        };
        self.append_entry(NewEntry {
            lane,
            kind: kind.into(),
            actor: Some("kiosk-1".into()),
            device: Some("kiosk-1".into()),
            body,
        })
    }

    /// Appends `entry` to the store's chain, sealed as `journal::append` seals it.
    pub fn append_entry(&self, entry: NewEntry) -> Entry {
        let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        let mut j = self.journal.lock().expect("journal lock");
        let prev = j
            .entries
            .last()
            .map_or_else(|| GENESIS.to_string(), |e| e.hash.clone());
        let seq = j.entries.len() as i64 + 1;
        let e = crate::journal::seal(seq, prev, &self.id, &now, entry);
        j.entries.push(e.clone());
        j.settled.push(None);
        drop(j);
        self.appended.notify_one();
        e
    }

    pub fn entries(&self) -> Vec<Entry> {
        self.journal.lock().expect("journal lock").entries.clone()
    }

    pub fn backlog(&self) -> usize {
        self.journal.lock().expect("journal lock").backlog()
    }

    /// Past its start: every feed pulled to the end once, and a heartbeat taken (or the hub
    /// takes none). A fleet in this state sends only its routine traffic.
    pub fn settled(&self) -> bool {
        self.pulled.load(Ordering::Relaxed)
            && (self.heartbeats_accepted.load(Ordering::Relaxed) > 0
                || self.heartbeat_unsupported.load(Ordering::Relaxed))
    }

    /// Counts this store as sending in the current second (once per second), as
    /// `tests/fleet_politeness.rs` counts: until its backlog has landed after the outage
    /// (a drained store's routine probes and pulls are not the reconnecting fleet). Counted
    /// apart too when it is sending again after central failed it (its breaker not closed,
    /// or a failure since the last success): a retry or a half-open probe.
    fn sending(&self, stats: &Stats) {
        if self.generated_all.load(Ordering::Relaxed) && self.backlog() == 0 {
            return;
        }
        let s = stats.second();
        if self.last_second.swap(s, Ordering::Relaxed) != s {
            stats.count_sender(s);
        }
        let retrying = self.upstreams.get(C).is_some_and(|h| {
            h.consecutive_failures > 0 || h.breaker != crate::upstream::BreakerState::Closed
        });
        if retrying && self.last_retry_second.swap(s, Ordering::Relaxed) != s {
            stats.count_retrying(s);
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}/v1/stores/{}/{path}", self.base, self.id)
    }

    /// The store's four loops against central (uplink, health probe, feed pull, heartbeat),
    /// each to be spawned as its own task, as a running Standin has them; each ends when
    /// `stop` fires.
    pub fn loops(
        self: &Arc<Self>,
        client: &reqwest::Client,
        policy: &Arc<Policy>,
        stats: &Arc<Stats>,
        stop: &tokio::sync::watch::Receiver<bool>,
    ) -> Vec<Pin<Box<dyn Future<Output = ()> + Send + 'static>>> {
        (0..4u8)
            .map(|which| {
                let (s, client, policy, stats, stop) = (
                    self.clone(),
                    client.clone(),
                    policy.clone(),
                    stats.clone(),
                    stop.clone(),
                );
                Box::pin(async move {
                    // A real fleet's stores were not all started in the same second: the
                    // pull and the heartbeat each start at a random moment of the first
                    // health interval. (Started together, 5,000 stores kept heartbeating in
                    // step, and the outage's second second counted a third of the fleet's
                    // ordinary traffic as if it were retries.)
                    if which >= 2 {
                        let offset = policy.health_interval.mul_f64(rand::random::<f64>());
                        let mut stop = stop.clone();
                        tokio::select! {
                            _ = tokio::time::sleep(offset) => {}
                            _ = stop.changed() => return,
                        }
                    }
                    match which {
                        0 => s.uplink(&client, &policy, &stats, &stop).await,
                        1 => s.probe(&client, &policy, &stats, &stop).await,
                        2 => s.pull(&client, &policy, &stats, &stop).await,
                        _ => s.heartbeat_loop(&client, &policy, &stats, &stop).await,
                    }
                }) as Pin<Box<dyn Future<Output = ()> + Send>>
            })
            .collect()
    }

    /// The uplink: Standin's `journal::uplink::run` loop over this store's journal.
    pub async fn uplink(
        &self,
        client: &reqwest::Client,
        policy: &Policy,
        stats: &Stats,
        stop: &tokio::sync::watch::Receiver<bool>,
    ) {
        let mut stop = stop.clone();
        let mut backoff = Backoff::new(policy.retry_base, policy.retry_cap);
        let mut size = uplink::BatchGrowth::new(policy.batch_size);
        loop {
            if *stop.borrow() {
                return;
            }
            let round = self.push_round(client, policy, stats, &mut size).await;
            let mut eased = std::pin::pin!(self.upstreams.eased(C));
            eased.as_mut().enable();
            let Some((wait, wake_on_append)) = uplink::next_wait(
                &self.upstreams,
                &mut backoff,
                round,
                chrono::Utc::now(),
                policy.idle_poll,
            ) else {
                continue;
            };
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = self.appended.notified(), if wake_on_append => {}
                _ = eased, if !wake_on_append => {}
                _ = stop.changed() => return,
            }
        }
    }

    /// One push of at most `size`'s limit, grown and reset by the uplink's own rule.
    async fn push_round(
        &self,
        client: &reqwest::Client,
        policy: &Policy,
        stats: &Stats,
        size: &mut uplink::BatchGrowth,
    ) -> Round {
        let round = self.push_once(client, policy, stats, size.limit()).await;
        match round {
            (Round::Delivered, Some(sent)) => size.answered(sent),
            _ => size.reset(),
        }
        round.0
    }

    /// One push of at most `limit` entries; with the number sent when central answered for
    /// every one of them.
    async fn push_once(
        &self,
        client: &reqwest::Client,
        policy: &Policy,
        stats: &Stats,
        limit: usize,
    ) -> (Round, Option<usize>) {
        // The request's body and the batch's (id → seq) map, read under the lock.
        let (body, sent_ids) = {
            let j = self.journal.lock().expect("journal lock");
            let entries = j.pending(limit.max(1));
            if entries.is_empty() {
                return (Round::Idle, None);
            }
            #[derive(serde::Serialize)]
            struct Body<'a> {
                entries: &'a [&'a Entry],
            }
            let body = serde_json::to_vec(&Body { entries: &entries })
                .expect("a journal entry serialises");
            let ids: std::collections::HashMap<String, i64> =
                entries.iter().map(|e| (e.id.clone(), e.seq)).collect();
            (body, ids)
        };
        if !self.upstreams.permit(C, chrono::Utc::now()) {
            return (Round::Held, None);
        }
        self.sending(stats);
        let started = Instant::now();
        let sent = client
            .post(self.url("journal"))
            .bearer_auth(&self.token)
            .timeout(policy.timeout)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body)
            .send()
            .await;
        let now = chrono::Utc::now();
        let res = match sent {
            Ok(r) => r,
            Err(e) => {
                let failure = Failure::transport(&e);
                if stats.hub_up.load(Ordering::Relaxed) {
                    stats.push_failed.fetch_add(1, Ordering::Relaxed);
                    if failure.unreachable {
                        stats.push_refused.fetch_add(1, Ordering::Relaxed);
                    } else if e.is_timeout() {
                        stats.push_timed_out.fetch_add(1, Ordering::Relaxed);
                    }
                }
                self.upstreams.report_failure(C, failure, now);
                return (Round::Failed(None), None);
            }
        };
        let status = res.status();
        if !status.is_success() {
            let ra = retry_after(res.headers());
            if stats.hub_up.load(Ordering::Relaxed) {
                let counter = if status.as_u16() == 503 {
                    &stats.push_503
                } else {
                    &stats.push_failed
                };
                counter.fetch_add(1, Ordering::Relaxed);
            }
            let code = res
                .json::<Value>()
                .await
                .ok()
                .and_then(|b| b["error"]["code"].as_str().map(str::to_owned));
            if code.as_deref() == Some("database_unavailable") {
                stats.push_503_db.fetch_add(1, Ordering::Relaxed);
            }
            self.upstreams.report_failure_retry_after(
                C,
                format!("journal push answered HTTP {status}"),
                ra,
                now,
            );
            return (Round::Failed(ra), None);
        }
        #[derive(Deserialize)]
        struct Answer {
            results: Vec<Res>,
        }
        #[derive(Deserialize)]
        struct Res {
            id: String,
            outcome: Outcome,
        }
        let answer: Answer = match res.json().await {
            Ok(a) => a,
            Err(e) => {
                self.upstreams.report_failure_retry_after(
                    C,
                    format!("unreadable journal answer: {}", describe_reqwest(&e)),
                    None,
                    now,
                );
                return (Round::Failed(None), None);
            }
        };
        stats.intake_latency(started.elapsed());
        self.upstreams.report(C, Ok(()), now);
        let mut answered = 0;
        let mut j = self.journal.lock().expect("journal lock");
        for r in answer.results {
            // Only entries we sent, first answer wins (as delivery::record_outcomes).
            let Some(&seq) = sent_ids.get(&r.id) else {
                continue;
            };
            let slot = &mut j.settled[(seq - 1) as usize];
            if slot.is_none() {
                *slot = Some(r.outcome);
                answered += 1;
                match r.outcome {
                    Outcome::Accepted => stats.landed(1),
                    Outcome::Duplicate => {
                        stats.duplicates.fetch_add(1, Ordering::Relaxed);
                        stats.landed(1);
                    }
                    Outcome::Rejected | Outcome::Conflict => {
                        self.set_aside.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }
        if answered == 0 {
            return (Round::Failed(None), None);
        }
        let all = answered == sent_ids.len();
        (Round::Delivered, all.then_some(sent_ids.len()))
    }

    /// The health probe: Standin's `upstream::probe` loop.
    pub async fn probe(
        &self,
        client: &reqwest::Client,
        policy: &Policy,
        stats: &Stats,
        stop: &tokio::sync::watch::Receiver<bool>,
    ) {
        let mut stop = stop.clone();
        let url = format!("{}/v1/health", self.base);
        loop {
            let heard = crate::upstream::recently_heard(
                &self.upstreams,
                C,
                chrono::Utc::now(),
                policy.health_interval,
            );
            if heard.is_none() && self.upstreams.permit(C, chrono::Utc::now()) {
                self.sending(stats);
                let sent = client
                    .get(&url)
                    .bearer_auth(&self.token)
                    .timeout(policy.timeout)
                    .send()
                    .await;
                crate::upstream::record_probe(&self.upstreams, C, sent, chrono::Utc::now());
            }
            let wait = heard
                .unwrap_or_else(|| {
                    self.upstreams
                        .next_permit_in(C, chrono::Utc::now(), policy.health_interval)
                })
                .max(Duration::from_millis(20));
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = stop.changed() => return,
            }
        }
    }

    /// The feed pull: Standin's `feeds::pull` loop, cursors kept here (`after=n`).
    pub async fn pull(
        &self,
        client: &reqwest::Client,
        policy: &Policy,
        stats: &Stats,
        stop: &tokio::sync::watch::Receiver<bool>,
    ) {
        let mut stop = stop.clone();
        let mut backoff = Backoff::new(crate::feeds::pull::RETRY_BASE, policy.pull_interval * 4);
        loop {
            let now = chrono::Utc::now();
            let delay = match self.pull_all(client, policy, stats).await {
                Ok(()) => {
                    backoff.reset();
                    self.pulled.store(true, Ordering::Relaxed);
                    policy.pull_interval
                }
                Err(None) => self.upstreams.next_permit_in(C, now, policy.pull_interval),
                Err(Some(ra)) => {
                    self.upstreams
                        .next_permit_in(C, now, backoff.next_delay(Some(ra)))
                }
            };
            tokio::select! {
                _ = tokio::time::sleep(delay.max(Duration::from_millis(20))) => {}
                _ = stop.changed() => return,
            }
        }
    }

    /// `Err(None)`: held by the breaker; `Err(Some(ra))`: failed (ra zero when none given).
    pub async fn pull_all(
        &self,
        client: &reqwest::Client,
        policy: &Policy,
        stats: &Stats,
    ) -> Result<(), Option<Duration>> {
        for (i, feed) in Feed::ALL.into_iter().enumerate() {
            loop {
                let after = self.cursors.lock().expect("cursors")[i];
                if !self.upstreams.permit(C, chrono::Utc::now()) {
                    return Err(None);
                }
                self.sending(stats);
                let res = client
                    .get(self.url(&format!("feeds/{feed}/batches")))
                    .bearer_auth(&self.token)
                    .query(&[
                        ("after", after.to_string()),
                        ("limit", policy.pull_page.to_string()),
                    ])
                    .timeout(policy.timeout)
                    .send()
                    .await;
                let now = chrono::Utc::now();
                let res = match res {
                    Ok(r) => r,
                    Err(e) => {
                        self.upstreams
                            .report_failure(C, Failure::transport(&e), now);
                        return Err(Some(Duration::ZERO));
                    }
                };
                if !res.status().is_success() {
                    let ra = retry_after(res.headers());
                    self.upstreams.report_failure_retry_after(
                        C,
                        format!("feed pull answered HTTP {}", res.status()),
                        ra,
                        now,
                    );
                    return Err(Some(ra.unwrap_or_default()));
                }
                let page: Value = match res.json().await {
                    Ok(p) => p,
                    Err(e) => {
                        self.upstreams.report(C, Err(describe_reqwest(&e)), now);
                        return Err(Some(Duration::ZERO));
                    }
                };
                self.upstreams.report(C, Ok(()), now);
                let batches = page["batches"].as_array().cloned().unwrap_or_default();
                if batches.is_empty() {
                    break;
                }
                let mut last = after;
                for b in &batches {
                    last = last.max(b["batch"].as_i64().unwrap_or(last));
                    let n = b["upserts"].as_array().map_or(0, Vec::len)
                        + b["deletes"].as_array().map_or(0, Vec::len);
                    self.feed_records.fetch_add(n as u64, Ordering::Relaxed);
                }
                if last == after {
                    break;
                }
                self.cursors.lock().expect("cursors")[i] = last;
            }
        }
        Ok(())
    }

    /// The heartbeat every health interval, through the same breaker; a 404 means the hub
    /// does not take heartbeats yet: noted, and the store goes on without.
    pub async fn heartbeat_loop(
        &self,
        client: &reqwest::Client,
        policy: &Policy,
        stats: &Stats,
        stop: &tokio::sync::watch::Receiver<bool>,
    ) {
        let mut stop = stop.clone();
        loop {
            if !self.heartbeat_unsupported.load(Ordering::Relaxed) {
                self.heartbeat(client, policy, stats).await;
            }
            let wait = self
                .upstreams
                .next_permit_in(C, chrono::Utc::now(), policy.health_interval)
                .max(Duration::from_millis(20));
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = stop.changed() => return,
            }
        }
    }

    /// Sends one heartbeat (`POST /v1/stores/{store}/status`) if the breaker allows.
    pub async fn heartbeat(&self, client: &reqwest::Client, policy: &Policy, stats: &Stats) {
        if !self.upstreams.permit(C, chrono::Utc::now()) {
            return;
        }
        self.sending(stats);
        let body = heartbeat_body(self);
        let sent = client
            .post(self.url("status"))
            .bearer_auth(&self.token)
            .timeout(policy.timeout)
            .json(&body)
            .send()
            .await;
        let now = chrono::Utc::now();
        match sent {
            Ok(r) if r.status().as_u16() == 404 => {
                self.heartbeat_unsupported.store(true, Ordering::Relaxed);
                self.upstreams.report(C, Ok(()), now);
            }
            Ok(r) if r.status().is_success() => {
                self.heartbeats_accepted.fetch_add(1, Ordering::Relaxed);
                self.upstreams.report(C, Ok(()), now);
            }
            Ok(r) => self.upstreams.report_failure_retry_after(
                C,
                format!("heartbeat answered HTTP {}", r.status()),
                retry_after(r.headers()),
                now,
            ),
            Err(e) => {
                self.upstreams
                    .report_failure(C, Failure::transport(&e).during("heartbeat"), now)
            }
        }
    }
}

/// The heartbeat body: Standin's own [`Heartbeat`] struct (what `standin serve` sends),
/// filled from this virtual store. The one place that builds it.
pub fn heartbeat_body(s: &VStore) -> Heartbeat {
    let rfc =
        |t: chrono::DateTime<chrono::Utc>| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let now = chrono::Utc::now();
    let central = s.upstreams.get(C);
    let state = central.as_ref().map_or("up", |h| match h.state {
        crate::upstream::HealthState::Down => "down",
        crate::upstream::HealthState::Degraded => "degraded",
        _ => "up",
    });
    let j = s.journal.lock().expect("journal lock");
    let mut lanes = serde_json::Map::new();
    let mut oldest_all: Option<String> = None;
    for lane in Lane::BY_PRIORITY {
        let pend: Vec<&Entry> = j
            .entries
            .iter()
            .zip(&j.settled)
            .filter(|(e, st)| e.lane == lane && st.is_none())
            .map(|(e, _)| e)
            .collect();
        let oldest = pend.first().map(|e| e.occurred_at.clone());
        if let Some(o) = &oldest
            && oldest_all.as_ref().is_none_or(|a| o < a)
        {
            oldest_all = Some(o.clone());
        }
        lanes.insert(
            lane.as_str().into(),
            json!({ "pending": pend.len(), "oldest_pending_at": oldest }),
        );
    }
    let cursors = *s.cursors.lock().expect("cursors");
    let feeds: serde_json::Map<String, Value> = Feed::ALL
        .into_iter()
        .zip(cursors)
        .map(|(f, c)| {
            (
                f.to_string(),
                json!({ "last_batch": c, "age_secs": Value::Null }),
            )
        })
        .collect();
    let till = s.till.lock().expect("till").clone();
    let payments_since = till.processor_since.unwrap_or(now);
    let set_aside = j
        .settled
        .iter()
        .filter(|o| o.is_some_and(Outcome::needs_a_person))
        .count();
    let beat = json!({
        "store_id": s.id,
        "sent_at": rfc(now),
        "version": env!("CARGO_PKG_VERSION"),
        "seq": s.hb_seq.fetch_add(1, Ordering::Relaxed) + 1,
        "interval_secs": s.interval_secs,
        "upstreams": {
            "central": { "state": state, "since": central.map(|h| rfc(h.since)) },
            "payments": {
                "state": if till.processor_down { "down" } else { "up" },
                "since": rfc(payments_since),
            },
        },
        "journal": { "pending": j.backlog(), "oldest_pending_at": oldest_all, "lanes": lanes,
                     "set_aside": set_aside, "last_seq": j.entries.len() },
        "payments": { "offline_count": till.offline_count, "offline_total_minor": till.offline_total_minor,
                      "currency": "EUR", "tightest_deadline": till.tightest_deadline },
        "refunds": { "queued": 0, "queued_total_minor": 0 },
        "feeds": feeds,
    });
    serde_json::from_value(beat).expect("the heartbeat's own shape")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stores_backlog_goes_in_growing_pushes_by_lane_priority() {
        let store = VStore::new(
            "s1".into(),
            "t".into(),
            "http://127.0.0.1:9".into(),
            &Policy::default(),
            1,
        );
        // 100 entries in each lane, appended round robin.
        let entries: Vec<Entry> = (0..400).map(|n| store.append(n)).collect();
        let pushes = delivery_batches(&entries, 100);
        let sizes: Vec<usize> = pushes.iter().map(Vec::len).collect();
        assert_eq!(
            sizes,
            [100, 200, 100],
            "100, then twice as many after a full push"
        );
        let lanes: Vec<Lane> = pushes.iter().flatten().map(|e| e.lane).collect();
        let mut by_priority = lanes.clone();
        by_priority.sort_by_key(|l| Lane::BY_PRIORITY.iter().position(|p| p == l));
        assert_eq!(lanes, by_priority, "each lane before the ones below it");
        let mut seqs: Vec<i64> = pushes.iter().flatten().map(|e| e.seq).collect();
        seqs.sort_unstable();
        assert_eq!(seqs, (1..=400).collect::<Vec<_>>(), "every entry once");
    }
}

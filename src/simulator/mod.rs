//! A simulator of central (the retailer's commerce API) and the payment processor.
//!
//! It speaks API.md's contract over real HTTP, each upstream on its own listener, and can be
//! told to fail the ways real upstreams do (`PUT /admin/faults/{upstream}` on the admin
//! listener). Its data is seeded and realistic for a supercenter; what it receives lives in
//! memory for the life of the process, so Standin can be killed and restarted against it.

mod admin;
mod catalog;
mod central;
mod generate;
mod payments;
mod receipts;
mod samples;
pub use receipts::Receipts;
mod state;
mod upstream;

#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::{Value, json};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use state::{Fault, Shared, State, Upstream};
use upstream::UpstreamHandle;

pub struct SimConfig {
    /// The admin listener: the "simulator_url".
    pub listen: SocketAddr,
    /// Port 0 picks an ephemeral port.
    pub central_listen: SocketAddr,
    /// Port 0 picks an ephemeral port.
    pub payments_listen: SocketAddr,
    pub store_id: String,
    pub receipts: usize,
    pub pickup_orders: usize,
    pub seed: u64,
    /// Staff PIN verifiers are keyed with it.
    pub pepper: Vec<u8>,
    /// Records per snapshot part (batch).
    pub part_size: usize,
}

#[derive(Clone, Debug, Serialize)]
pub struct DemoCredentials {
    pub staff: Vec<StaffCredential>,
    pub kiosks: Vec<KioskCredential>,
}

#[derive(Clone, Debug, Serialize)]
pub struct StaffCredential {
    pub employee_id: String,
    pub pin: String,
    pub role: String,
}

#[derive(Clone, Debug, Serialize)]
pub struct KioskCredential {
    pub device_id: String,
    pub token: String,
    pub lane: String,
}

pub struct Simulator {
    admin_addr: SocketAddr,
    central: UpstreamHandle,
    payments: UpstreamHandle,
    credentials: DemoCredentials,
    admin_stop: oneshot::Sender<()>,
    admin_task: JoinHandle<()>,
}

/// Every feed's initial snapshot, central's view of orders, and the credentials behind them.
pub(crate) struct Seeded {
    pub feeds: BTreeMap<&'static str, Vec<Arc<str>>>,
    pub orders: HashMap<String, Value>,
    pub credentials: DemoCredentials,
}

/// Generates the seeded data as of `now`; staff verifiers are hashed in parallel.
pub(crate) async fn seed_data(cfg: &SimConfig, now: DateTime<Utc>) -> anyhow::Result<Seeded> {
    let staff = generate::staff(cfg.seed);
    // Argon2id takes ~50 ms and 19 MiB per PIN: a few workers, not one thread per PIN.
    const WORKERS: usize = 4;
    let hashing: Vec<_> = (0..WORKERS)
        .map(|w| {
            let mine: Vec<_> = staff.iter().skip(w).step_by(WORKERS).cloned().collect();
            let pepper = cfg.pepper.clone();
            tokio::task::spawn_blocking(move || {
                mine.iter()
                    .map(|s| crate::access::pin::make_verifier(&s.pin, &pepper, s.salt))
                    .collect::<anyhow::Result<Vec<String>>>()
            })
        })
        .collect();
    let (seed, part, n_receipts, n_orders) =
        (cfg.seed, cfg.part_size, cfg.receipts, cfg.pickup_orders);
    let bulk = tokio::task::spawn_blocking(move || {
        let orders = generate::pickup_orders(seed, n_orders, now);
        let order_parts = generate::snapshot(
            "pickup_orders",
            seed,
            orders.len(),
            part,
            orders.iter().cloned(),
        );
        let mut sales = receipts::Receipts::new(seed, n_receipts, now);
        let receipt_parts = generate::snapshot(
            "receipts",
            seed,
            n_receipts,
            part,
            (0..n_receipts).map(|_| sales.next_receipt()),
        );
        (orders, order_parts, receipt_parts)
    });
    let mut verifiers = vec![String::new(); staff.len()];
    for (w, worker) in hashing.into_iter().enumerate() {
        for (i, v) in worker.await??.into_iter().enumerate() {
            verifiers[w + i * WORKERS] = v;
        }
    }
    let staff_records: Vec<Value> = staff
        .iter()
        .zip(&verifiers)
        .map(|(s, v)| generate::staff_record(s, v))
        .collect();
    let (orders, order_parts, receipt_parts) = bulk.await?;
    let devices = generate::devices(cfg.seed);
    let policy = generate::policy();
    let snap = |feed: &str, records: Vec<Value>| {
        generate::snapshot(feed, seed, records.len(), part, records.into_iter())
    };
    let mut feeds = BTreeMap::new();
    let mut put = |feed: &'static str, parts: Vec<String>| {
        feeds.insert(feed, parts.into_iter().map(Arc::from).collect::<Vec<_>>());
    };
    put("pickup_orders", order_parts);
    put("receipts", receipt_parts);
    put("staff", snap("staff", staff_records));
    put(
        "devices",
        snap("devices", devices.iter().map(|d| d.3.clone()).collect()),
    );
    put("policy", snap("policy", policy));
    let credentials = DemoCredentials {
        staff: staff
            .iter()
            .filter(|s| s.active)
            .map(|s| StaffCredential {
                employee_id: s.employee_id.clone(),
                pin: s.pin.clone(),
                role: s.role.to_owned(),
            })
            .collect(),
        kiosks: devices
            .into_iter()
            .map(|(device_id, lane, token, _)| KioskCredential {
                device_id,
                token,
                lane,
            })
            .collect(),
    };
    let orders = orders
        .into_iter()
        .map(|o| (o["order_id"].as_str().unwrap_or_default().to_owned(), o))
        .collect();
    Ok(Seeded {
        feeds,
        orders,
        credentials,
    })
}

fn url(addr: SocketAddr) -> String {
    format!("http://{addr}")
}

impl Simulator {
    /// Generates the data and binds all three listeners before returning.
    pub async fn start(cfg: SimConfig) -> anyhow::Result<Simulator> {
        let seeded = seed_data(&cfg, Utc::now()).await?;
        let state: Shared = Arc::new(Mutex::new(State {
            store_id: cfg.store_id.clone(),
            feeds: seeded.feeds,
            orders: seeded.orders,
            journal: Vec::new(),
            journal_index: HashMap::new(),
            journal_pushes: 0,
            reject_ids: HashSet::new(),
            reject_kinds: HashSet::new(),
            authorizations: Default::default(),
            refunds: Default::default(),
            central_fault: Fault::OK,
            payments_fault: Fault::OK,
            rng: generate::rng_for(cfg.seed, 6),
            feeds_stalled: None,
            heartbeats: BTreeMap::new(),
        }));
        let central = UpstreamHandle::start(
            Upstream::Central,
            cfg.central_listen,
            central::router(state.clone()),
            state.clone(),
        )
        .await?;
        let payments = UpstreamHandle::start(
            Upstream::Payments,
            cfg.payments_listen,
            payments::router(state.clone()),
            state.clone(),
        )
        .await?;
        let listener = tokio::net::TcpListener::bind(cfg.listen).await?;
        let admin_addr = listener.local_addr()?;
        let info = json!({
            "store_id": cfg.store_id,
            "central_url": url(central.addr),
            "payments_url": url(payments.addr),
            "credentials": seeded.credentials,
        });
        let app = admin::router(admin::AdminCtx {
            state,
            central: central.controller(),
            payments: payments.controller(),
            info: Arc::new(info),
        });
        let (admin_stop, stop) = oneshot::channel::<()>();
        let admin_task = tokio::spawn(async move {
            let serve = axum::serve(listener, app).with_graceful_shutdown(async {
                let _ = stop.await;
            });
            if let Err(e) = serve.await {
                tracing::error!(error = %e, "simulator admin listener failed");
            }
        });
        Ok(Simulator {
            admin_addr,
            central,
            payments,
            credentials: seeded.credentials,
            admin_stop,
            admin_task,
        })
    }

    pub fn admin_url(&self) -> String {
        url(self.admin_addr)
    }

    pub fn central_url(&self) -> String {
        url(self.central.addr)
    }

    pub fn payments_url(&self) -> String {
        url(self.payments.addr)
    }

    pub fn credentials(&self) -> &DemoCredentials {
        &self.credentials
    }

    /// Stops all three listeners and every connection.
    pub async fn shutdown(self) {
        let _ = self.admin_stop.send(());
        self.central.shutdown().await;
        self.payments.shutdown().await;
        let mut admin = self.admin_task;
        // Idle keep-alive clients can hold a graceful shutdown open: give it a moment only.
        if tokio::time::timeout(Duration::from_secs(2), &mut admin)
            .await
            .is_err()
        {
            admin.abort();
        }
    }
}

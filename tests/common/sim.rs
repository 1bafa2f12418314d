//! The simulator of central and the processor, in the test process, and its admin API.

use std::net::SocketAddr;

use serde_json::Value;
use standin::simulator::{SimConfig, Simulator};

pub async fn simulator(receipts: usize, orders: usize) -> Simulator {
    let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
    Simulator::start(SimConfig {
        listen: any,
        central_listen: any,
        payments_listen: any,
        store_id: "store-0001".into(),
        receipts,
        pickup_orders: orders,
        seed: 7,
        pepper: super::PEPPER.as_bytes().to_vec(),
        part_size: 100,
    })
    .await
    .unwrap()
}

/// Calls the simulator's admin API; panics unless it answers 2xx.
pub async fn admin(sim: &Simulator, method: reqwest::Method, path: &str, body: Value) -> Value {
    let res = reqwest::Client::new()
        .request(method, format!("{}{path}", sim.admin_url()))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert!(res.status().is_success(), "{path}: {}", res.status());
    res.json().await.unwrap_or(Value::Null)
}

pub async fn fault(sim: &Simulator, upstream: &str, fault: Value) {
    admin(
        sim,
        reqwest::Method::PUT,
        &format!("/admin/faults/{upstream}"),
        fault,
    )
    .await;
}

/// What central has received: journal records in first-arrival order.
pub async fn received_journal(sim: &Simulator) -> Vec<Value> {
    let r = reqwest::Client::new()
        .get(format!("{}/admin/received", sim.admin_url()))
        .send()
        .await
        .unwrap();
    let v: Value = r.json().await.unwrap();
    v["journal"].as_array().cloned().unwrap_or_default()
}

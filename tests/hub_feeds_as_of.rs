//! The hub's feed `as_of` (API.md): the feed's last import, an empty one included. It does
//! not move with the clock, so a store whose HQ stops importing sees its data age and, past
//! ten minutes, says HQ's updates have stopped; a feed never imported carries none (the
//! store then falls back to when central last answered).

mod common;

use std::time::Duration;

use common::hub::{TestHub, order};
use serde_json::Value;

const STORE: &str = "store-0001";

async fn page(hub: &TestHub, token: &str, feed: &str, after: u64) -> Value {
    let res = hub
        .client
        .get(format!(
            "{}/v1/stores/{STORE}/feeds/{feed}/batches?after={after}&limit=100",
            hub.url
        ))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert!(res.status().is_success(), "{}", res.status());
    res.json().await.unwrap()
}

fn as_of(page: &Value) -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::parse_from_rfc3339(page["as_of"].as_str().expect("as_of"))
        .unwrap()
        .to_utc()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn as_of_is_the_feeds_last_import_and_only_an_import_moves_it() {
    let Some(hub) = TestHub::start().await else {
        return;
    };
    let token = hub.add_store(STORE).await;
    let staff = page(&hub, &token, "staff", 0).await;
    assert!(staff.get("as_of").is_none(), "never imported: {staff}");

    hub.import("pickup_orders", &[order(STORE, "o1", "ready")])
        .await;
    let first = page(&hub, &token, "pickup_orders", 0).await;
    assert_eq!(first["batches"].as_array().unwrap().len(), 1);
    let imported = as_of(&first);
    let age = chrono::Utc::now() - imported;
    assert!(age.num_seconds() < 60, "{imported}");

    // Whole seconds on the wire: wait past the next one.
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    let later = page(&hub, &token, "pickup_orders", 1).await;
    assert_eq!(as_of(&later), imported, "as_of moved with the clock");
    assert!(page(&hub, &token, "staff", 0).await.get("as_of").is_none());

    // HQ's export ran and nothing changed: no new batch, but HQ's data is current again.
    assert_eq!(hub.import("pickup_orders", &[]).await, 0);
    let touched = page(&hub, &token, "pickup_orders", 1).await;
    assert_eq!(touched["batches"], serde_json::json!([]));
    assert!(as_of(&touched) > imported, "{touched}");
    hub.stop().await;
}

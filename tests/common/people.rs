//! Staff and kiosks for access tests, loaded through the feeds like HQ would.

use reqwest::StatusCode;
use serde_json::{Value, json};

use super::{PEPPER, TestStore, delta};

pub struct Person {
    pub id: &'static str,
    pub pin: &'static str,
    pub role: &'static str,
}

pub const ASSOCIATE: Person = Person {
    id: "E100",
    pin: "739184",
    role: "associate",
};
pub const LEAD: Person = Person {
    id: "E200",
    pin: "582047",
    role: "lead",
};
pub const MANAGER: Person = Person {
    id: "E300",
    pin: "916253",
    role: "manager",
};
pub const LEAVER: Person = Person {
    id: "E400",
    pin: "604718",
    role: "associate",
};
pub const KIOSK_1: (&str, &str) = ("sco-01", "kiosk-token-one-0123456789abcdef0123456789abcdef");
pub const KIOSK_2: (&str, &str) = ("sco-02", "kiosk-token-two-0123456789abcdef0123456789abcdef");

pub fn staff_record(p: &Person, active: bool) -> Value {
    let verifier =
        standin::access::pin::make_verifier(p.pin, PEPPER.as_bytes(), [p.id.len() as u8; 16])
            .unwrap();
    json!({"employee_id": p.id, "name": format!("Person {}", p.id), "role": p.role, "pin_verifier": verifier, "active": active})
}

pub fn device_record(d: (&str, &str), active: bool) -> Value {
    json!({"device_id": d.0, "kind": "kiosk", "lane": format!("lane-{}", d.0),
           "token_sha256": standin::access::token::sha256_hex(d.1), "active": active})
}

/// Loads the four people and two kiosks as batch 1 of their feeds.
pub async fn load_people(t: &TestStore) {
    let staff: Vec<Value> = [&ASSOCIATE, &LEAD, &MANAGER, &LEAVER]
        .iter()
        .map(|p| staff_record(p, true))
        .collect();
    assert_eq!(t.push("staff", &delta(1, staff)).await.0, StatusCode::OK);
    let devices = vec![device_record(KIOSK_1, true), device_record(KIOSK_2, true)];
    assert_eq!(
        t.push("devices", &delta(1, devices)).await.0,
        StatusCode::OK
    );
}

/// A signed-in browser: its cookie and CSRF token.
#[derive(Clone, Debug)]
pub struct Browser {
    pub cookie: String,
    pub csrf: String,
}

pub async fn sign_in(t: &TestStore, id: &str, pin: &str) -> (StatusCode, Value, Option<Browser>) {
    let res = t
        .client
        .post(format!("{}/api/v1/session", t.url))
        .json(&json!({"employee_id": id, "pin": pin}))
        .send()
        .await
        .unwrap();
    let status = res.status();
    let cookie = res
        .headers()
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .map(|v| v.split(';').next().unwrap().to_string());
    let body: Value = res.json().await.unwrap_or(Value::Null);
    let browser = cookie.map(|cookie| Browser {
        cookie,
        csrf: body["csrf_token"].as_str().unwrap_or("").to_string(),
    });
    (status, body, browser)
}

pub async fn browser(t: &TestStore, p: &Person) -> Browser {
    let (s, b, br) = sign_in(t, p.id, p.pin).await;
    assert_eq!(s, StatusCode::OK, "{} could not sign in: {b}", p.id);
    br.unwrap()
}

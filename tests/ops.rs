//! Operations endpoints, the OpenAPI document, the UI shell, and errors in the one JSON shape.

mod common;

use common::*;
use reqwest::StatusCode;
use serde_json::Value;

#[tokio::test]
async fn health_and_readiness() {
    let t = TestStore::start().await;
    assert_eq!(t.get("/healthz").await.0, StatusCode::OK);
    let (s, b) = t.get("/readyz").await;
    assert_eq!((s, b["status"].as_str()), (StatusCode::OK, Some("ready")));
    t.stop().await;
}

#[tokio::test]
async fn status_lists_all_five_feeds_and_both_upstreams() {
    let t = TestStore::start().await;
    t.push("receipts", &delta(1, receipts("R", 0..3))).await;
    let s = t.status().await;
    assert_eq!(s["store_id"], "store-0001");
    for feed in ["pickup_orders", "receipts", "staff", "devices", "policy"] {
        assert!(s["feeds"][feed]["last_batch"].is_u64(), "{feed}: {s}");
    }
    assert_eq!(s["feeds"]["receipts"]["records"], 3);
    assert!(s["feeds"]["receipts"]["applied_at"].is_string());
    assert!(s["feeds"]["staff"]["applied_at"].is_null());
    for u in ["central", "payments"] {
        assert_eq!(
            s["upstreams"][u]["configured"], false,
            "{u} is not configured in this test"
        );
    }
    t.stop().await;
}

/// Every route the router serves is in the OpenAPI document with its method, and the
/// document names no route the router lacks.
#[tokio::test]
async fn openapi_describes_exactly_the_routes_served() {
    let t = TestStore::start().await;
    let (s, doc) = t.get("/api/openapi.json").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(doc["openapi"], "3.1.0");
    let paths = doc["paths"].as_object().unwrap();
    let mut served = std::collections::BTreeSet::new();
    for route in standin::app::routes() {
        let path = route.path.replace("{*", "{");
        let method = route.method.as_str().to_ascii_lowercase();
        assert!(
            paths.get(&path).and_then(|p| p.get(&method)).is_some(),
            "{method} {path} is not in openapi.json"
        );
        served.insert((path, method));
    }
    for (path, ops) in paths {
        for method in ops.as_object().unwrap().keys() {
            assert!(
                served.contains(&(path.clone(), method.clone())),
                "openapi.json lists {method} {path}, which is not served"
            );
        }
    }
    t.stop().await;
}

#[tokio::test]
async fn unknown_routes_and_methods_answer_json_errors() {
    let t = TestStore::start().await;
    let (s, b) = t.get("/api/v1/nothing-here").await;
    assert_eq!(
        (s, b["error"]["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("not_found"))
    );
    let res = t
        .client
        .delete(format!("{}/api/v1/status", t.url))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::METHOD_NOT_ALLOWED);
    let b: Value = res.json().await.unwrap();
    assert_eq!(b["error"]["code"], "method_not_allowed");
    t.stop().await;
}

#[tokio::test]
async fn the_ui_is_embedded_with_types_and_etags() {
    let t = TestStore::start().await;
    for (path, ty) in [
        ("/", "text/html"),
        ("/status", "text/html"),
        ("/ui/status.js", "text/javascript"),
        ("/ui/style.css", "text/css"),
    ] {
        let res = t
            .client
            .get(format!("{}{path}", t.url))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::OK, "{path}");
        let ct = res.headers()["content-type"].to_str().unwrap().to_string();
        assert!(ct.starts_with(ty), "{path}: {ct}");
        let csp = res.headers()["content-security-policy"]
            .to_str()
            .unwrap()
            .to_string();
        assert!(
            csp.contains("default-src 'self'") && !csp.contains("127.0.0.1"),
            "outside the demo nothing leaves 'self': {csp}"
        );
        let etag = res.headers()["etag"].clone();
        let again = t
            .client
            .get(format!("{}{path}", t.url))
            .header("if-none-match", etag)
            .send()
            .await
            .unwrap();
        assert_eq!(again.status(), StatusCode::NOT_MODIFIED, "{path}");
    }
    let (s, _) = t.get("/ui/../Cargo.toml").await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, _) = t.get("/ui/nope.js").await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    t.stop().await;
}

/// The served document states, for every route of the table, its body limit and every answer
/// the guards and the server can give on any route (and 401/403 where a credential is needed).
#[tokio::test]
async fn openapi_states_every_routes_limit_and_the_answers_any_route_can_give() {
    let t = TestStore::start().await;
    let (s, doc) = t.get("/api/openapi.json").await;
    assert_eq!(s, StatusCode::OK);
    for route in standin::app::routes() {
        let method = route.method.as_str().to_ascii_lowercase();
        let op = &doc["paths"][standin::app::openapi::doc_path(route.path)][&method];
        assert_eq!(
            op["x-body-limit-bytes"].as_u64(),
            Some(route.body_limit.bytes(t.state.config.http.body_limit_bytes) as u64),
            "{method} {}",
            route.path
        );
        let mut statuses = standin::app::openapi::ANY_ROUTE.to_vec();
        if !matches!(route.access, standin::http::Access::Public) {
            statuses.push(403);
        }
        for status in statuses {
            assert!(
                op["responses"][status.to_string()].is_object(),
                "{method} {} does not document {status}",
                route.path
            );
        }
    }
    t.stop().await;
}

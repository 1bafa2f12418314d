//! `GET /api/openapi.json`: the service's own description (OpenAPI 3.1). The hand-written part
//! (`openapi.json`: each operation's bodies and answers) is kept beside the code and checked
//! against the route table by the tests; what holds for every route by construction is added
//! from the route table when the document is served, so it cannot drift:
//!
//! - each operation's body limit (`x-body-limit-bytes`, and `maxLength`-style wording in the
//!   request body's description);
//! - `additionalProperties: false` on every object of a request body that does not say
//!   otherwise: every route refuses unknown fields;
//! - the answers the route kit's guards and the server give on any route: 400 (a query, path
//!   or body that cannot be read), 408 (a body too slow), 413 (over the route's limit), 414 and
//!   431 (a target or headers too long), 422 (card data refused), 429, 503 (a request over its
//!   deadline, or no room for the connection), and 401/403 where the route needs a credential.

use axum::extract::State;
use axum::http::{HeaderValue, Method, header};
use axum::response::IntoResponse;
use axum::routing::get;
use serde_json::{Value, json};

use crate::http::{Access, Route};
use crate::state::AppState;

pub const DOCUMENT: &str = include_str!("openapi.json");

/// What any route can answer, whatever its handler does.
pub const ANY_ROUTE: [u16; 8] = [400, 408, 413, 414, 422, 429, 431, 503];

pub fn routes() -> Vec<Route<AppState>> {
    vec![Route::new(
        Method::GET,
        "/api/openapi.json",
        Access::Public,
        get(|State(state): State<AppState>| async move {
            (
                [(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                )],
                document(state.config.http.body_limit_bytes).to_string(),
            )
                .into_response()
        }),
    )]
}

/// The served document: `openapi.json` completed from the route table.
pub fn document(feed_batch_limit: usize) -> Value {
    let mut doc: Value = serde_json::from_str(DOCUMENT).unwrap_or_else(|_| json!({}));
    // Components a request body refers to (`#/components/schemas/...`), closed below.
    let mut refs = Vec::new();
    for route in super::routes() {
        let method = route.method.as_str().to_ascii_lowercase();
        let Some(op) = doc
            .pointer_mut(&format!(
                "/paths/{}/{method}",
                doc_path(route.path).replace('~', "~0").replace('/', "~1")
            ))
            .and_then(Value::as_object_mut)
        else {
            continue;
        };
        let limit = route.body_limit.bytes(feed_batch_limit);
        op.insert("x-body-limit-bytes".into(), json!(limit));
        if let Some(schema) = op
            .get_mut("requestBody")
            .and_then(|b| b.pointer_mut("/content/application~1json/schema"))
        {
            refuse_unknown_fields(schema, &mut refs);
        }
        if let Some(body) = op.get_mut("requestBody").and_then(Value::as_object_mut) {
            let said = body
                .get("description")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string();
            body.insert(
                "description".into(),
                json!(format!(
                    "{said}{}At most {limit} bytes (413 beyond).",
                    if said.is_empty() { "" } else { " " }
                )),
            );
        }
        let responses = op
            .entry("responses")
            .or_insert_with(|| json!({}))
            .as_object_mut();
        let Some(responses) = responses else { continue };
        let mut statuses: Vec<u16> = ANY_ROUTE.to_vec();
        match route.access {
            Access::Public => {}
            Access::SameOrigin => statuses.push(403),
            Access::Staff(_) | Access::Kiosk | Access::Sync => statuses.extend([401, 403]),
        }
        for s in statuses {
            responses
                .entry(s.to_string())
                .or_insert_with(|| json!({"$ref": "#/components/responses/Error"}));
        }
    }
    let mut closed = std::collections::BTreeSet::new();
    while let Some(name) = refs.pop() {
        if !closed.insert(name.clone()) {
            continue;
        }
        if let Some(schema) = doc.pointer_mut(&format!("/components/schemas/{name}")) {
            refuse_unknown_fields(schema, &mut refs);
        }
    }
    doc
}

/// Every route refuses a field it does not take (422 `unknown_field`: the route kit's
/// `ApiJson` and `deny_unknown_fields` on every request type), so every object of a request
/// body that names its properties is closed (`additionalProperties: false`) unless the
/// document says otherwise where the server takes more (a feed record, a sale's line). The
/// object's own properties and array items are walked; `oneOf`/`anyOf`/`allOf` branches are
/// not (a branch names only some properties). Components referred to are collected in
/// `refs` and closed by the caller, once.
fn refuse_unknown_fields(schema: &mut Value, refs: &mut Vec<String>) {
    let Some(obj) = schema.as_object_mut() else {
        return;
    };
    if let Some(name) = obj
        .get("$ref")
        .and_then(Value::as_str)
        .and_then(|r| r.strip_prefix("#/components/schemas/"))
    {
        refs.push(name.to_string());
        return;
    }
    if let Some(props) = obj.get_mut("properties").and_then(Value::as_object_mut) {
        for p in props.values_mut() {
            refuse_unknown_fields(p, refs);
        }
        obj.entry("additionalProperties").or_insert(json!(false));
    }
    if let Some(items) = obj.get_mut("items") {
        refuse_unknown_fields(items, refs);
    }
}

/// A route's path as OpenAPI writes it: a wildcard `{*path}` is a plain `{path}` there.
pub fn doc_path(route_path: &str) -> String {
    route_path.replace("{*", "{")
}

//! `GET /api/openapi.json`: the service's own description (OpenAPI 3.1), kept beside the code
//! in `openapi.json` and checked against the route table by the tests.

use axum::http::{HeaderValue, Method, header};
use axum::response::IntoResponse;
use axum::routing::get;

use crate::http::{Access, Route};
use crate::state::AppState;

pub const DOCUMENT: &str = include_str!("openapi.json");

pub fn routes() -> Vec<Route<AppState>> {
    vec![Route::new(
        Method::GET,
        "/api/openapi.json",
        Access::Public,
        get(|| async {
            (
                [(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                )],
                DOCUMENT,
            )
                .into_response()
        }),
    )]
}

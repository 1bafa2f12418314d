//! The route kit, below every concern: how a route is declared ([`Route`]: path, method, who
//! may call it, how large a body it takes), and the extractors and guards every request passes
//! through. Concerns import this module; it imports no concern. The app's assembly
//! (`crate::app`) sits above both and builds the router from every concern's routes.

mod card_data;
pub mod conn;
mod errors;
mod extract;
mod guard;
mod route;

pub use card_data::{Found, find as find_card_data, holds_card_number};
pub use errors::{MAX_HEADER_BYTES, MAX_URI_BYTES, body_for as error_body, edge};
pub use extract::{
    ApiJson, ApiPath, ApiQuery, ClientAddr, RawBody, describe_json_error, from_json,
    integral_numbers, is_short_text, json_body_error, whole_number,
};
pub use guard::{CARD_DATA_MESSAGE, request_guard};
pub use route::{Access, BodyLimit, CSRF_HEADER, Permission, Route};

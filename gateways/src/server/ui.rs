//! The node's browser UI, from assets compiled into the binary (served by
//! [`web::assets`](crate::web::assets)).

use warp::filters::BoxedFilter;
use warp::reply::Response;

use crate::asset;
use crate::web::assets::{self, Asset};

static UI: &[Asset] = &[
    asset!("app.js", "text/javascript; charset=utf-8", "ui/app.js"),
    asset!("app.css", "text/css; charset=utf-8", "ui/app.css"),
    asset!(
        "vendor/marked.min.js",
        "text/javascript; charset=utf-8",
        "vendor/marked.min.js"
    ),
    asset!(
        "vendor/purify.min.js",
        "text/javascript; charset=utf-8",
        "vendor/purify.min.js"
    ),
    asset!(
        "vendor/highlight.min.js",
        "text/javascript; charset=utf-8",
        "vendor/highlight.min.js"
    ),
    asset!(
        "vendor/highlight.css",
        "text/css; charset=utf-8",
        "vendor/highlight.css"
    ),
];

static TABLES: &[&[Asset]] = &[UI];

const INDEX: &str = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/assets/ui/index.html"));

/// `/`, `/static/…` and `/docs`.
pub fn routes() -> BoxedFilter<(Response,)> {
    assets::routes(INDEX, TABLES)
}

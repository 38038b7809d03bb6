//! The dashboard, from assets compiled into the binary, and the two files the proxy injects
//! into a node's page (its banner's style and the URL-prefix script).

use warp::filters::BoxedFilter;
use warp::reply::Response;

use crate::asset;
use crate::web::assets::{self, Asset};

static UI: &[Asset] = &[
    asset!(
        "console.js",
        "text/javascript; charset=utf-8",
        "console/console.js"
    ),
    asset!(
        "admin.js",
        "text/javascript; charset=utf-8",
        "console/admin.js"
    ),
    asset!(
        "console.css",
        "text/css; charset=utf-8",
        "console/console.css"
    ),
    asset!(
        "node-shim.js",
        "text/javascript; charset=utf-8",
        "console/node-shim.js"
    ),
    asset!(
        "node-banner.css",
        "text/css; charset=utf-8",
        "console/node-banner.css"
    ),
];

static TABLES: &[&[Asset]] = &[UI];

const INDEX: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/assets/console/index.html"
));

/// `/`, `/static/…` and `/docs`.
pub fn routes() -> BoxedFilter<(Response,)> {
    assets::routes(INDEX, TABLES)
}

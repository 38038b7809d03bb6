//! The browser UI and the API docs, served from assets compiled into the binary. Paths are
//! looked up in a fixed table — nothing is read from disk, so no path can escape it.

use warp::Filter;
use warp::filters::BoxedFilter;
use warp::http::StatusCode;
use warp::reply::{Reply, Response};

use super::error::ApiError;

/// An embedded file.
struct Asset {
    path: &'static str,
    content_type: &'static str,
    body: &'static [u8],
}

macro_rules! asset {
    ($path:literal, $type:literal, $file:literal) => {
        Asset {
            path: $path,
            content_type: $type,
            body: include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/assets/", $file)),
        }
    };
}

static ASSETS: &[Asset] = &[
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
    asset!(
        "swagger/swagger-ui-bundle.js",
        "text/javascript; charset=utf-8",
        "swagger/swagger-ui-bundle.js"
    ),
    asset!(
        "swagger/swagger-ui.css",
        "text/css; charset=utf-8",
        "swagger/swagger-ui.css"
    ),
    asset!(
        "swagger/init.js",
        "text/javascript; charset=utf-8",
        "swagger/init.js"
    ),
];

const INDEX: &str = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/assets/ui/index.html"));
const DOCS: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/assets/swagger/index.html"
));

/// Only our own scripts and styles; nothing inline, nothing from elsewhere.
const CSP: &str = "default-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; \
                   frame-ancestors 'none'; form-action 'self'";

fn page(html: &'static str) -> Response {
    let mut r = warp::reply::html(html).into_response();
    harden(&mut r);
    r
}

fn harden(r: &mut Response) {
    let h = r.headers_mut();
    h.insert(
        "content-security-policy",
        warp::http::HeaderValue::from_static(CSP),
    );
    h.insert(
        "x-content-type-options",
        warp::http::HeaderValue::from_static("nosniff"),
    );
    h.insert(
        "referrer-policy",
        warp::http::HeaderValue::from_static("same-origin"),
    );
    h.insert(
        "cache-control",
        warp::http::HeaderValue::from_static("no-cache"),
    );
}

fn asset(tail: &str) -> Result<Response, warp::Rejection> {
    let found = ASSETS
        .iter()
        .find(|a| a.path == tail)
        .ok_or_else(|| warp::reject::custom(ApiError::new(StatusCode::NOT_FOUND, "Not found")))?;
    let mut r = Response::new(found.body.into());
    r.headers_mut().insert(
        "content-type",
        warp::http::HeaderValue::from_static(found.content_type),
    );
    harden(&mut r);
    Ok(r)
}

/// `/`, `/static/…` and `/docs`.
pub fn routes() -> BoxedFilter<(Response,)> {
    let index = warp::get().and(warp::path::end()).map(|| page(INDEX));
    let statics = warp::get()
        .and(warp::path("static"))
        .and(warp::path::tail())
        .and_then(|tail: warp::path::Tail| async move { asset(tail.as_str()) });
    let docs = warp::get()
        .and(warp::path("docs"))
        .and(warp::path::end())
        .map(|| page(DOCS));
    index.or(statics).unify().or(docs).unify().boxed()
}

//! Static files compiled into the binary and served from fixed tables — nothing is read from
//! disk, so no path can escape them — with the hardening headers every page gets, plus the
//! sign-in script and the Swagger UI at `/docs` that every service shares.

use warp::Filter;
use warp::filters::BoxedFilter;
use warp::http::StatusCode;
use warp::reply::Response;

use super::error::ApiError;

/// An embedded file.
#[derive(Debug)]
pub struct Asset {
    /// Its path under `/static/`.
    pub path: &'static str,
    /// Its content type.
    pub content_type: &'static str,
    /// Its bytes.
    pub body: &'static [u8],
}

/// An [`Asset`] from a file under `gateways/assets/`.
#[macro_export]
macro_rules! asset {
    ($path:literal, $type:literal, $file:literal) => {
        $crate::web::assets::Asset {
            path: $path,
            content_type: $type,
            body: include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/assets/", $file)),
        }
    };
}

/// The files every service serves: the sign-in script its pages share, the Swagger UI.
pub static COMMON: &[Asset] = &[
    asset!(
        "signin.js",
        "text/javascript; charset=utf-8",
        "shared/signin.js"
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

const DOCS: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/assets/swagger/index.html"
));

/// Only our own scripts and styles; nothing inline, nothing from elsewhere.
pub const CSP: &str = "default-src 'self'; img-src 'self' data:; object-src 'none'; \
                       base-uri 'none'; frame-ancestors 'none'; form-action 'self'";

/// An HTML page with the hardening headers.
pub fn page(html: impl Into<warp::hyper::body::Bytes>) -> Response {
    let mut r = Response::new(html.into().into());
    r.headers_mut().insert(
        "content-type",
        warp::http::HeaderValue::from_static("text/html; charset=utf-8"),
    );
    harden(&mut r);
    r
}

/// Content-Security-Policy, no sniffing, same-origin referrers, revalidation.
pub fn harden(r: &mut Response) {
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

/// The file at `tail` in the first table that has it, or 404.
pub fn serve(tables: &[&'static [Asset]], tail: &str) -> Result<Response, warp::Rejection> {
    let found = tables
        .iter()
        .flat_map(|t| t.iter())
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

/// `/`, `/static/…` from `tables` (and [`COMMON`]) and `/docs`.
pub fn routes(
    index: &'static str,
    tables: &'static [&'static [Asset]],
) -> BoxedFilter<(Response,)> {
    let home = warp::get().and(warp::path::end()).map(move || page(index));
    let statics = warp::get()
        .and(warp::path("static"))
        .and(warp::path::tail())
        .and_then(move |tail: warp::path::Tail| async move {
            serve(tables, tail.as_str()).or_else(|_| serve(&[COMMON], tail.as_str()))
        });
    let docs = warp::get()
        .and(warp::path("docs"))
        .and(warp::path::end())
        .map(|| page(DOCS));
    home.or(statics).unify().or(docs).unify().boxed()
}

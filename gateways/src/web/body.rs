//! JSON request bodies: bounded in size, with 400 "Invalid JSON body" for what is not JSON and
//! a precise 400 for JSON of the wrong shape.

use serde::de::DeserializeOwned;
use warp::Filter;

use super::MAX_BODY;
use super::error::ApiError;

/// Parses the body as `T`.
pub fn json<T: DeserializeOwned + Send>()
-> impl Filter<Extract = (T,), Error = warp::Rejection> + Clone {
    warp::body::content_length_limit(MAX_BODY)
        .and(warp::body::bytes())
        .and_then(|bytes: warp::hyper::body::Bytes| async move {
            parse::<T>(&bytes).map_err(warp::reject::custom)
        })
}

/// Parses bytes as `T` with Turnstone's error texts.
pub fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let value: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|_| ApiError::bad_request("Invalid JSON body"))?;
    if !value.is_object() {
        return Err(ApiError::bad_request(
            "Invalid JSON body: expected an object",
        ));
    }
    serde_json::from_value(value)
        .map_err(|e| ApiError::bad_request(format!("Invalid request: {e}")))
}

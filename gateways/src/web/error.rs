//! Errors as Turnstone answers them: a status and `{"error": "…"}`, for handlers and for
//! every warp rejection (bad JSON, oversized bodies, unknown routes, wrong methods).

use std::convert::Infallible;

use serde_json::json;
use warp::http::StatusCode;
use warp::reply::{Reply, Response};

/// An error answer.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[error("{status}: {message}")]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// The `error` text.
    pub message: String,
    /// Seconds to wait, for 429 answers.
    pub retry_after: Option<f64>,
}

impl ApiError {
    /// An error with this status.
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
            retry_after: None,
        }
    }

    /// 400.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    /// 404 for a workstream id the node does not have.
    pub fn unknown_workstream() -> Self {
        Self::new(StatusCode::NOT_FOUND, "Unknown workstream")
    }

    /// 500.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, message)
    }
}

impl warp::reject::Reject for ApiError {}

impl Reply for ApiError {
    fn into_response(self) -> Response {
        let mut body = json!({"error": self.message});
        if let Some(wait) = self.retry_after {
            body["retry_after"] = json!((wait * 10.0).ceil() / 10.0);
        }
        let mut response =
            warp::reply::with_status(warp::reply::json(&body), self.status).into_response();
        if let Some(wait) = self.retry_after {
            // Whole seconds, rounded up past the wait (as 0.4.1: int(r) + 1).
            let header = format!("{}", wait.trunc() as u64 + 1);
            if let Ok(value) = warp::http::HeaderValue::from_str(&header) {
                response.headers_mut().insert("retry-after", value);
            }
        }
        response
    }
}

/// Turns any rejection into a JSON error answer.
pub async fn recover(rejection: warp::Rejection) -> Result<Response, Infallible> {
    let error = if let Some(e) = rejection.find::<ApiError>() {
        e.clone()
    } else if rejection.is_not_found() {
        ApiError::new(StatusCode::NOT_FOUND, "Not found")
    } else if rejection.find::<warp::reject::PayloadTooLarge>().is_some() {
        ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "Request body too large")
    } else if rejection.find::<warp::reject::LengthRequired>().is_some() {
        ApiError::new(StatusCode::LENGTH_REQUIRED, "Content-Length required")
    } else if rejection.find::<warp::reject::MethodNotAllowed>().is_some() {
        ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "Method not allowed")
    } else if let Some(e) = rejection.find::<warp::reject::InvalidQuery>() {
        ApiError::bad_request(format!("Invalid query: {e}"))
    } else if let Some(e) = rejection.find::<warp::reject::InvalidHeader>() {
        ApiError::bad_request(e.to_string())
    } else if let Some(e) = rejection.find::<warp::reject::MissingHeader>() {
        ApiError::bad_request(e.to_string())
    } else {
        tracing::warn!(?rejection, "unhandled rejection");
        ApiError::internal("Internal error")
    };
    Ok(error.into_response())
}

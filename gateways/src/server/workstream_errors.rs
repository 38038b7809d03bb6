//! The workstream manager's and workstreams' errors as the API's answers (400, 404, 409,
//! 500), shared by the JSON routes, the SSE routes and the cluster port.

use turnstone_actors::workstream::{ManagerError, WorkstreamError};

use super::error::ApiError;

/// Manager and workstream errors as API errors.
pub fn manager_error(e: ManagerError) -> ApiError {
    match e {
        ManagerError::Unknown => ApiError::unknown_workstream(),
        ManagerError::AllActive(_) | ManagerError::LastWorkstream => {
            ApiError::bad_request(e.to_string())
        }
        ManagerError::Workstream(WorkstreamError::Empty) => ApiError::bad_request("Empty message"),
        ManagerError::Workstream(WorkstreamError::UnknownModel(_)) => {
            ApiError::internal(e.to_string())
        }
        ManagerError::Workstream(WorkstreamError::NothingPending(_)) => {
            ApiError::new(warp::http::StatusCode::CONFLICT, e.to_string())
        }
        ManagerError::Storage(_) => ApiError::bad_request(e.to_string()),
        other => ApiError::internal(other.to_string()),
    }
}

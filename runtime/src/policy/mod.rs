//! Supervision policies as small typed state machines.
//!
//! Each policy is pure: it takes the current time as an argument (a [`tokio::time::Instant`], so
//! tests run on paused time) and returns a decision; the supervisor or actor that owns it acts on
//! the decision and records it through an [`Observer`](crate::supervise::Observer).
//!
//! | policy | question it answers | typical owner |
//! |---|---|---|
//! | [`Capacity`] | a new child wants a slot: admit, evict whom, or refuse? | workstream manager |
//! | [`IdleTimeout`] | which children have been idle too long? | workstream manager |
//! | [`CircuitBreaker`] | may this request go to the backend now? | provider actor |
//! | [`Backoff`] | how long to wait before attempt *n*? | supervisor restarts, retries |
//! | [`Placement`] | which node should handle this key? | cluster router |

mod activity;
mod backoff;
mod breaker;
mod capacity;
mod idle;
mod placement;

pub use activity::{Activity, ActivityTable};
pub use backoff::Backoff;
pub use breaker::{BreakerOpen, BreakerState, BreakerTransition, CircuitBreaker};
pub use capacity::{Admission, Capacity, CapacityError};
pub use idle::IdleTimeout;
pub use placement::{
    NodeLoad, Placed, Placement, PlacementError, PlacementRequest, PlacementRule, rendezvous,
};

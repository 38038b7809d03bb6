//! OTP-style supervision over ractor's links.
//!
//! A [`Supervisor`] starts its children from [`ChildSpec`]s, links them, and when one exits
//! applies its [`Strategy`] (one-for-one, one-for-all, rest-for-one) and each child's
//! [`Restart`] kind (permanent, transient, temporary). Restarts are spaced by a
//! [`Backoff`](crate::policy::Backoff) and limited by an [`Intensity`]: more restarts than allowed
//! within the period, and the supervisor stops its children and fails, escalating to its own
//! parent. Optional [`Capacity`](crate::policy::Capacity) and
//! [`IdleTimeout`](crate::policy::IdleTimeout) policies evict idle dynamic children.
//!
//! Every decision is a [`SupervisionRecord`] with its cause chain, sent through the
//! [`Observer`]: to tracing, to the `turnstone_supervision_decisions` metric, and to subscribers.

mod child_ref;
mod intensity;
mod record;
mod spec;
mod supervisor;

pub use child_ref::ChildRef;
pub use intensity::{Intensity, RestartIntensity};
pub use record::{
    Decision, DecisionKind, EvictReason, ExitReason, Observer, SupervisionRecord, cause_chain,
};
pub use spec::{ChildContext, ChildSpec, Restart, Strategy, SupervisorSpec};
pub use supervisor::{ChildInfo, Supervisor, SupervisorError, SupervisorHandle, SupervisorMsg};

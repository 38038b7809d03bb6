#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Workstreams end to end against the scripted LLM server: turns, tool rounds with approval,
//! denial, "always", plan review, crashing and hanging tools, cancellation mid-turn, malformed
//! model output, backend errors, the manager's capacity policy, persistence, and the built-in
//! tools and agents. One test binary; each file holds one area.

mod agents;
mod approvals;
mod capacity;
mod persistence;
mod support;
mod turns;

//! # turnstone-sim
//!
//! The actor-level cluster simulator: the project's real node actors with simulated LLM and tool
//! actors, over Redis or the in-memory transport. Arrives with the simulator issue.

#![forbid(unsafe_code)]

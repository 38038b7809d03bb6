//! # turnstone-gateways
//!
//! The ways into Turnstone, as thin layers over `turnstone-actors`. Today: the terminal REPL
//! (`turnstone`). The node HTTP/SSE API and browser UI, the console and the channel gateways
//! follow.

#![forbid(unsafe_code)]

pub mod admin;
pub mod bridge;
pub mod channel;
pub mod console;
pub mod eval;
pub mod repl;
pub mod server;
pub mod telemetry;
pub mod web;

//! # turnstone-gateways
//!
//! The ways into Turnstone, as thin layers over `turnstone-actors`: the terminal REPL
//! (`repl`), the node's HTTP/SSE API and browser UI (`server`), the cluster bridge, the
//! console with its admin API and scheduler, the chat gateway (`channel`), user admin and the
//! evaluator. `programs` holds each command's `main`, and the multi-call dispatch that lets
//! one `turnstone` binary run them all.

#![forbid(unsafe_code)]

pub mod admin;
pub mod bridge;
pub mod channel;
pub mod console;
pub mod eval;
pub mod programs;
pub mod repl;
pub mod server;
pub mod telemetry;
pub mod web;

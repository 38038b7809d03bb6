//! # turnstone-gateways
//!
//! The ways into Turnstone — the node HTTP/SSE API and browser UI (`turnstone-server`), the
//! cluster console, channel gateways and the terminal REPL — as thin layers over
//! `turnstone-actors`. Arrives with the node-server, console, channel and REPL issues.

#![forbid(unsafe_code)]

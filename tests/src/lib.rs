//! Test support shared by the cross-crate integration tests: where the real services started by
//! `scripts/test` listen, and the scripted LLM server (the one sanctioned stand-in).

#![forbid(unsafe_code)]

pub mod discord;
pub mod llm;
pub mod matrix;
pub mod otlp;
pub mod services;
pub mod slack;

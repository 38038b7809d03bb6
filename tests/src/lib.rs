//! Test support shared by the cross-crate integration tests: where the real services started by
//! `scripts/test` listen. Later: the scripted LLM server and the browser driver.

#![forbid(unsafe_code)]

pub mod services;

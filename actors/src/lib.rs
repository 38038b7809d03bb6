//! # turnstone-actors
//!
//! The Turnstone agent domain on top of `turnstone-runtime`. So far: the configuration schema
//! (`~/.config/turnstone/config.toml`, environment variables and flags of Turnstone 0.4.1).
//! Workstreams, providers, tools, storage and the MQ protocol follow.

#![forbid(unsafe_code)]

pub mod accounts;
pub mod auth;
pub mod config;
pub mod mcp;
pub mod mq;
pub mod node;
pub mod provider;
pub mod storage;
pub mod text;
pub mod tools;
pub mod workstream;

//! mcp-gateway: an MCP-aware gateway.
//!
//! One pipeline per inbound JSON-RPC message (see DESIGN.md):
//! frontend → auth → classify (`mcp`) → policy → limits → audit → session/router → backend.

#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod admin;
pub mod audit;
pub mod auth;
pub mod backend;
pub mod bench;
pub mod config;
pub mod demo;
pub mod frontend;
pub mod limits;
pub mod mcp;
pub mod policy;
pub mod record;
pub mod replay;
pub mod router;
pub mod session;
pub mod state;
pub mod telemetry;
pub mod trace;

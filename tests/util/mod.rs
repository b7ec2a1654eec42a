//! Test harness shared by the integration tests (one test binary,
//! `tests/integration.rs`). Every process it starts is killed on drop, every
//! wait is bounded, and panics carry the processes' output.
//!
//! - `gateway`: `Gateway::start(toml)` runs `mcp-gateway serve` on ephemeral
//!   ports (`url()`, `server_url(backend)`, `admin_url()`, `logs()`).
//! - `servers`: backends — `DemoServer` (ours), `Everything`
//!   (server-everything), `PyDemoServer` (Python SDK, 2026-07-28 capable);
//!   HTTP via `start_http()`, stdio via `stdio_argv()` / `stdio_target()`.
//! - `drivers`: third-party clients — `py_client`, `ts_client`,
//!   `py_ws_client` (SDK 1.30, WebSocket) (JSON per scenario, comparable
//!   direct vs gateway), `inspector`, `conformance`.
//! - `http`: raw requests, SSE reading, `McpSession` (handshake era) and
//!   `modern_request` (2026-07-28) for protocol-level tests.
//! - `front`: clients for the legacy SSE (`SseClient`) and WebSocket
//!   (`WsClient`) front doors, with raw frames and close codes.
//! - `surfaces`: what each backend of the front-door matrices offers.
//!
//! - `auth`: signing keys, `token mint`, the header-echo backend, the admin
//!   revocation API, the `oidc-provider` fixture.
//!
//! Third-party dependencies come from `scripts/install-test-deps.sh`.
#![allow(dead_code, unused_imports)]

pub mod auth;
pub mod drivers;
pub mod front;
pub mod gateway;
pub mod http;
pub mod process;
pub mod redis;
pub mod servers;
pub mod surfaces;

pub use drivers::{
    conformance, inspector, py_client, py_client_run, py_ws_client, py_ws_client_run, ts_client,
    ts_client_run,
};
pub use gateway::Gateway;
pub use process::TestDir;
pub use servers::{DemoServer, Everything, PyDemoServer};

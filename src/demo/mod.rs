//! demo: the built-in demo MCP server behind `mcp-gateway demo-server [--http ADDR]`.
//!
//! In: JSON-RPC from one stdio client or many Streamable HTTP clients (`/mcp`), in
//! either era — the `initialize` handshake (2024-11-05 … 2025-11-25) or stateless
//! 2026-07-28 (per-request `_meta`, MRTR, `subscriptions/listen`). Out: spec-shaped
//! results and notifications. One shared core ([`core::handle_request`]) serves both
//! transports, so they behave identically.
//!
//! It is an independent implementation for quickstarts and interop tests: it never
//! uses the gateway's modules, and its state (the `extra_tool` toggle, the counter)
//! is per process, shared by every client.

mod core;
mod http;
mod stdio;

#[cfg(test)]
mod tests;

/// Serves one client on stdin/stdout (newline-delimited JSON-RPC) until stdin closes.
/// Logs go to stderr through `tracing`.
pub async fn run_stdio() -> std::io::Result<()> {
    stdio::serve(core::Demo::new(), tokio::io::stdin(), tokio::io::stdout()).await
}

/// Serves Streamable HTTP at `/mcp` on `listener` until the process ends. Prints
/// nothing: the caller announces `demo-server listening on http://<addr>/mcp`.
pub async fn run_http(listener: tokio::net::TcpListener) -> std::io::Result<()> {
    axum::serve(listener, http::router(core::Demo::new())).await
}

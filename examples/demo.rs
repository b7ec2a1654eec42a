//! Runs the demo MCP server by hand: `cargo run --example demo -- [--http 127.0.0.1:8765]`.
//! Mirrors what `mcp-gateway demo-server` does (stdio by default).

use std::io;

#[tokio::main]
async fn main() -> io::Result<()> {
    tracing_subscriber::fmt()
        .with_writer(io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .init();
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.as_slice() {
        [] => mcp_gateway::demo::run_stdio().await,
        [flag, addr] if flag == "--http" => {
            let listener = tokio::net::TcpListener::bind(addr.as_str()).await?;
            eprintln!("demo-server listening on http://{}/mcp", listener.local_addr()?);
            mcp_gateway::demo::run_http(listener).await
        }
        _ => {
            eprintln!("usage: demo [--http ADDR]");
            std::process::exit(2);
        }
    }
}

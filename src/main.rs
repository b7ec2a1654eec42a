//! The `mcp-gateway` command line.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Parser, Subcommand, ValueEnum};
use tokio_util::sync::CancellationToken;

use mcp_gateway::config::{self, Config};
use mcp_gateway::session::Gateway;
use mcp_gateway::telemetry::{self, LogFormat};
use mcp_gateway::{admin, auth, bench, demo, frontend, policy};

mod token;

#[derive(Parser)]
#[command(name = "mcp-gateway", version, about = "An MCP-aware gateway")]
struct Cli {
    /// Log format on stderr (`auto`: human on a terminal, JSON otherwise).
    #[arg(long, value_enum, default_value_t = LogFormatArg::Auto, global = true)]
    log_format: LogFormatArg,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormatArg {
    Auto,
    Human,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway.
    Serve {
        /// Config file; default ./mcp-gateway.toml, else the embedded quickstart.
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Load and validate a config, print a summary; exit 1 on any problem.
    Check {
        #[arg(long)]
        config: PathBuf,
    },
    /// The built-in MCP server (stdio; --http ADDR for Streamable HTTP).
    DemoServer {
        #[arg(long)]
        http: Option<SocketAddr>,
    },
    /// MCP-aware load generator: N sessions calling a tool for a fixed time.
    Bench(bench::BenchArgs),
    /// Development helpers for tokens and keys.
    #[command(subcommand)]
    Token(Box<TokenCommand>),
    /// Authorization policies.
    #[command(subcommand)]
    Policy(PolicyCommand),
}

#[derive(Subcommand)]
enum PolicyCommand {
    /// Decide a table of cases against a config's policies; print expected
    /// vs actual and exit 1 on any mismatch.
    Test {
        #[arg(long)]
        config: PathBuf,
        /// The cases file (TOML: [principals.NAME] and [[cases]]).
        cases: PathBuf,
    },
    /// Time decisions of one `tools/call` against a config's policies.
    Bench {
        #[arg(long)]
        config: PathBuf,
        #[arg(long, default_value = "demo")]
        backend: String,
        #[arg(long, default_value = "echo")]
        tool: String,
        #[arg(long)]
        tenant: Option<String>,
        /// A scope of the principal, repeatable.
        #[arg(long = "scope")]
        scopes: Vec<String>,
        #[arg(long, default_value_t = 20_000)]
        iterations: usize,
    },
}

#[derive(Subcommand)]
enum TokenCommand {
    /// Mint a JWT (HS256 secret or PEM private key) and print it.
    Mint(Box<token::MintArgs>),
    /// Print the public JWKS of PEM private keys (for `auth.jwks_file`, or
    /// to check a `mint_token` key).
    Jwks(token::JwksArgs),
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let format = match cli.log_format {
        LogFormatArg::Auto => LogFormat::Auto,
        LogFormatArg::Human => LogFormat::Human,
        LogFormatArg::Json => LogFormat::Json,
    };
    telemetry::init_logging(format);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    match cli.command {
        Command::Serve { config } => runtime.block_on(serve(config)),
        Command::Check { config } => check(&config),
        Command::DemoServer { http } => runtime.block_on(async move {
            match http {
                None => demo::run_stdio().await.context("demo server"),
                Some(addr) => {
                    let listener = tokio::net::TcpListener::bind(addr).await?;
                    eprintln!(
                        "demo-server listening on http://{}/mcp",
                        listener.local_addr()?
                    );
                    demo::run_http(listener).await.context("demo server")
                }
            }
        }),
        Command::Bench(args) => runtime.block_on(bench::run(args)),
        Command::Policy(PolicyCommand::Test { config, cases }) => policy_test(&config, &cases),
        Command::Policy(PolicyCommand::Bench {
            config,
            backend,
            tool,
            tenant,
            scopes,
            iterations,
        }) => {
            let cfg = config::load_file(&config).map_err(|e| anyhow::anyhow!("{e}"))?;
            let snapshot = policy::Snapshot::load(&cfg).map_err(|e| anyhow::anyhow!("{e}"))?;
            let t = policy::bench::time_decisions(
                snapshot,
                &backend,
                &tool,
                tenant.as_deref(),
                &scopes,
                iterations,
            );
            println!(
                "policies: {}, decisions: {} ({} allowed), median: {:.1} µs, p99: {:.1} µs",
                t.policies,
                t.decisions,
                t.allowed,
                t.median_ns as f64 / 1000.0,
                t.p99_ns as f64 / 1000.0
            );
            Ok(())
        }
        Command::Token(command) => match *command {
            TokenCommand::Mint(args) => token::mint(&args),
            TokenCommand::Jwks(args) => token::jwks(&args),
        },
    }
}

fn check(path: &std::path::Path) -> anyhow::Result<()> {
    match config::load_file(path) {
        Ok(cfg) => match policy::Snapshot::load(&cfg) {
            Ok(snapshot) => {
                print!("{}", config::summary(&cfg));
                println!("{}", snapshot.summary());
                Ok(())
            }
            Err(errors) => {
                eprintln!("{errors}");
                std::process::exit(1);
            }
        },
        Err(errors) => {
            eprintln!("{errors}");
            std::process::exit(1);
        }
    }
}

fn policy_test(config_path: &std::path::Path, cases: &std::path::Path) -> anyhow::Result<()> {
    let cfg = config::load_file(config_path).unwrap_or_else(|errors| {
        eprintln!("{errors}");
        std::process::exit(1);
    });
    let snapshot = policy::Snapshot::load(&cfg).unwrap_or_else(|errors| {
        eprintln!("{errors}");
        std::process::exit(1);
    });
    match policy::cases::run(snapshot, cases) {
        Ok(outcomes) => {
            print!("{}", policy::cases::table(&outcomes));
            if outcomes.iter().all(policy::cases::Outcome::passed) {
                Ok(())
            } else {
                std::process::exit(1);
            }
        }
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(1);
        }
    }
}

fn load_config(path: Option<PathBuf>) -> anyhow::Result<Config> {
    let path = path.or_else(|| {
        let default = PathBuf::from("mcp-gateway.toml");
        default.exists().then_some(default)
    });
    match path {
        Some(path) => {
            config::load_file(&path).map_err(|e| anyhow::anyhow!("invalid configuration:\n{e}"))
        }
        None => {
            let exe =
                std::env::current_exe().context("locating this executable for the quickstart")?;
            tracing::warn!(
                "no config given and no ./mcp-gateway.toml: running the embedded QUICKSTART \
                 (auth OFF, allow-all policy, the built-in demo server). For local use only, \
                 never expose it to a network."
            );
            eprintln!(
                "\n  *** mcp-gateway QUICKSTART: authentication is OFF and every call is allowed. ***\n  \
                 *** For local use only. Pass --config FILE for anything else.                 ***\n"
            );
            Ok(config::quickstart(&exe.to_string_lossy()))
        }
    }
}

async fn serve(path: Option<PathBuf>) -> anyhow::Result<()> {
    let config = Arc::new(load_config(path)?);
    let policies =
        policy::Snapshot::load(&config).map_err(|e| anyhow::anyhow!("invalid policies:\n{e}"))?;
    if !policies.configured {
        tracing::warn!(
            "no [policy] section in the configuration: every request is DENIED (fail closed); \
             add [policy] files = [...] (examples/policies/allow-all.cedar allows everything)"
        );
    }
    let listener = tokio::net::TcpListener::bind(config.listen.addr)
        .await
        .with_context(|| format!("binding {}", config.listen.addr))?;
    let admin_listener = tokio::net::TcpListener::bind(config.listen.admin_addr)
        .await
        .with_context(|| format!("binding the admin listener {}", config.listen.admin_addr))?;
    let addr = listener.local_addr()?;
    let admin_addr = admin_listener.local_addr()?;

    let shutdown = CancellationToken::new();
    let gw = Gateway::new(config.clone(), shutdown.clone());
    if let Some(error) = gw.auth.startup_error() {
        // Serving without the revocation list would forget revocations.
        anyhow::bail!("cannot load the revocation list: {error}");
    }
    tracing::info!(policies = %policies.summary(), "policies loaded");
    gw.policy.replace(policies);
    tokio::spawn(policy::reload::on_sighup(gw.clone()));
    gw.auth.spawn_background(shutdown.clone());
    tokio::spawn(auth::watcher::run(gw.clone()));
    tokio::spawn(gw.clone().reap_idle());
    // Readiness: reach every backend once in the background.
    for backend in gw.router.backends().to_vec() {
        tokio::spawn(async move {
            for attempt in 0..5u32 {
                match backend.probe().await {
                    Ok(_) => return,
                    Err(e) => {
                        tracing::warn!(backend = backend.name(), error = %e, attempt, "backend not reachable yet");
                        tokio::time::sleep(Duration::from_millis(500u64 << attempt)).await;
                    }
                }
            }
        });
    }

    let app = frontend::router(gw.clone(), addr);
    let admin_app = admin::router(gw.clone());
    tracing::info!(addr = %addr, admin_addr = %admin_addr, backends = config.backends.len(), "listening");

    let stop = CancellationToken::new();
    let server = {
        let stop = stop.clone();
        tokio::spawn(async move {
            // The peer address feeds policy context (`remote_addr`).
            axum::serve(
                listener,
                app.into_make_service_with_connect_info::<SocketAddr>(),
            )
            .with_graceful_shutdown(stop.cancelled_owned())
            .await
        })
    };
    let admin_server = {
        let stop = stop.clone();
        tokio::spawn(async move {
            axum::serve(admin_listener, admin_app)
                .with_graceful_shutdown(stop.cancelled_owned())
                .await
        })
    };

    wait_for_signal().await;
    tracing::info!(
        drain_s = config.listen.drain.as_secs(),
        "shutting down: draining in-flight requests"
    );
    // Stop accepting, end GET streams, let in-flight requests finish.
    stop.cancel();
    gw.closing.cancel();
    gw.tracker.close();
    if tokio::time::timeout(config.listen.drain, gw.tracker.wait())
        .await
        .is_err()
    {
        tracing::warn!("drain timeout: abandoning the requests still in flight");
    }
    gw.close_all().await;
    shutdown.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        let _ = server.await;
        let _ = admin_server.await;
    })
    .await;
    // Give stdio children their kill.
    tokio::time::sleep(Duration::from_millis(100)).await;
    tracing::info!("stopped");
    Ok(())
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = match signal(SignalKind::terminate()) {
            Ok(s) => s,
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
                return;
            }
        };
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

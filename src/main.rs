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
use mcp_gateway::{admin, auth, bench, demo, frontend, policy, replay};

mod audit_cli;
mod token;

// The request path allocates and frees many small buffers from both runtime
// threads; glibc's allocator spent ~12% of the gateway's CPU there
// (BENCHMARKS.md). mimalloc's per-thread free lists make that cheaper.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
        /// Record every session as a fixture in DIR (overrides `[record] dir`).
        #[arg(long, value_name = "DIR")]
        record: Option<PathBuf>,
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
    /// Replay recorded fixtures through the gateway against fixture-driven
    /// backends; exit 0 when all match, 1 on a difference, 2 on an unusable fixture.
    Replay {
        #[arg(long)]
        config: PathBuf,
        /// Play the client side against the real backends (detects drift).
        #[arg(long)]
        live: bool,
        #[arg(long, value_enum, default_value_t = ReplayFormat::Text)]
        format: ReplayFormat,
        #[arg(required = true)]
        fixtures: Vec<PathBuf>,
    },
    /// Serve the backend side of a fixture as an MCP server (stdio; --http
    /// ADDR for Streamable HTTP at /mcp and /{backend}/mcp).
    FixtureServer {
        fixture: PathBuf,
        /// Which recorded backend to serve (default: the first).
        #[arg(long)]
        backend: Option<String>,
        #[arg(long)]
        http: Option<SocketAddr>,
    },
    /// MCP-aware load generator: N sessions calling a tool for a fixed time.
    Bench(bench::BenchArgs),
    /// Development helpers for tokens and keys.
    #[command(subcommand)]
    Token(Box<TokenCommand>),
    /// Audit log tools.
    #[command(subcommand)]
    Audit(audit_cli::AuditCommand),
    /// Authorization policies.
    #[command(subcommand)]
    Policy(PolicyCommand),
}

#[derive(Clone, Copy, ValueEnum)]
enum ReplayFormat {
    Text,
    Json,
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
        Command::Serve { config, record } => runtime.block_on(serve(config, record)),
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
        Command::Replay {
            config,
            live,
            format,
            fixtures,
        } => {
            let cfg = match config::load_file(&config) {
                Ok(c) => c,
                Err(errors) => {
                    eprintln!("{errors}");
                    std::process::exit(2);
                }
            };
            let outcomes = runtime.block_on(replay::run(&cfg, &fixtures, live));
            match format {
                ReplayFormat::Text => print!("{}", replay::render_text(&outcomes)),
                ReplayFormat::Json => println!("{}", replay::render_json(&outcomes)),
            }
            std::process::exit(replay::exit_code(&outcomes));
        }
        Command::FixtureServer {
            fixture,
            backend,
            http,
        } => runtime.block_on(fixture_server(fixture, backend, http)),
        Command::Bench(args) => runtime.block_on(bench::run(args)),
        Command::Audit(command) => audit_cli::run(&command),
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

async fn fixture_server(
    path: PathBuf,
    backend: Option<String>,
    http: Option<SocketAddr>,
) -> anyhow::Result<()> {
    let fixture = match replay::fixture::load(&path) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(2);
        }
    };
    let scripted = Arc::new(replay::backend::Scripted::from_fixture(&fixture));
    let names = scripted.names();
    let backend = match backend {
        Some(b) if names.contains(&b) => b,
        Some(b) => anyhow::bail!("the fixture has no backend {b:?} (it has {names:?})"),
        None => fixture
            .header
            .backends
            .first()
            .map(|b| b.name.clone())
            .or_else(|| names.first().cloned())
            .context("the fixture records no backend")?,
    };
    match http {
        None => replay::backend::serve_stdio(scripted, backend)
            .await
            .context("fixture server"),
        Some(addr) => {
            let listener = tokio::net::TcpListener::bind(addr).await?;
            eprintln!(
                "fixture-server listening on http://{}/mcp (backend {backend:?})",
                listener.local_addr()?
            );
            axum::serve(listener, replay::backend::router(scripted, Some(backend)))
                .await
                .context("fixture server")
        }
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

async fn serve(path: Option<PathBuf>, record: Option<PathBuf>) -> anyhow::Result<()> {
    let mut config = load_config(path)?;
    if let Some(dir) = record {
        config.record.dir = Some(dir);
    }
    // One name for this replica everywhere: audit records, sealed session
    // ids and the replica registry.
    let replica = mcp_gateway::audit::replica_id(config.state.replica_id.as_deref());
    config.state.replica_id = Some(replica.clone());
    let config = Arc::new(config);
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
    tracing::info!(replica = %replica, "replica id");
    let audit = mcp_gateway::audit::AuditSink::start(&config.audit, &replica)?;
    let gw = Gateway::with_audit(config.clone(), shutdown.clone(), audit);
    gw.limits
        .spawn_eviction(Duration::from_secs(5), shutdown.clone());
    if let Some(error) = gw.auth.startup_error() {
        // Serving without the revocation list would forget revocations.
        anyhow::bail!("cannot load the revocation list: {error}");
    }
    tracing::info!(policies = %policies.summary(), "policies loaded");
    gw.policy.replace(policies);
    tokio::spawn(policy::reload::on_sighup(gw.clone()));
    if let Some(state) = &gw.state {
        state.set_listen_addr(addr);
    }
    mcp_gateway::state::start(&gw).context("[state]")?;
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
    // Closing the sessions aborted what the drain left; those requests
    // queue their `cancelled` records as they drop. Then write everything.
    let _ = tokio::time::timeout(Duration::from_secs(1), gw.tracker.wait()).await;
    if tokio::time::timeout(Duration::from_secs(30), gw.audit.flush())
        .await
        .is_err()
    {
        tracing::error!("the audit log could not be flushed within 30 s");
    }
    let _ = tokio::time::timeout(Duration::from_secs(5), gw.tracer.flush()).await;
    if let Some(recorder) = &gw.recorder {
        recorder.flush().await;
    }
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

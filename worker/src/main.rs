//! `fedsearch-worker`: the organisation-run aggregation service (HTTP API,
//! round state machine, SQLite persistence) plus the `token create` admin
//! command.

mod config;
mod db;
mod engine;
mod error;
mod http;
mod metrics;
mod secure;
mod server;

use clap::{Args, Parser, Subcommand};
use config::Config;
use error::{Result, WorkerError};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

#[derive(Parser)]
#[command(name = "fedsearch-worker", version, about = "fedsearch federated aggregation worker")]
#[command(args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    serve: ServeArgs,
}

#[derive(Args)]
struct ServeArgs {
    /// Address to listen on, e.g. 127.0.0.1:8080 (overrides the config).
    #[arg(long)]
    listen: Option<String>,
    /// SQLite database file (overrides the config).
    #[arg(long)]
    db: Option<PathBuf>,
    /// TOML config; without it a demo federation "demo" is served.
    #[arg(long)]
    config: Option<PathBuf>,
}

#[derive(Subcommand)]
enum Command {
    /// Enrolment tokens.
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
}

#[derive(Subcommand)]
enum TokenCommand {
    /// Create an enrolment token and print it (it is stored only hashed).
    Create {
        #[arg(long)]
        db: PathBuf,
        #[arg(long)]
        federation: String,
        /// How many clients may enrol with this token.
        #[arg(long, default_value_t = 1)]
        uses: u64,
    },
}

fn main() {
    limit_allocator_retention();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        Some(Command::Token { command: TokenCommand::Create { db, federation, uses } }) => {
            token_create(&db, &federation, uses)
        }
        None => serve(cli.serve),
    };
    if let Err(e) = result {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

/// glibc raises its mmap threshold dynamically after large frees, after which
/// multi-MB upload buffers come from per-thread arenas that fragment and
/// never shrink: peak RSS then grows with the number of clients. A fixed
/// threshold keeps large buffers in their own mappings, returned on free.
fn limit_allocator_retention() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator tuning; called once at start-up
    // before any other thread exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 256 * 1024);
    }
}

fn token_create(db_path: &std::path::Path, federation: &str, uses: u64) -> Result<()> {
    if uses == 0 {
        return Err(WorkerError::Config("--uses must be at least 1".into()));
    }
    let conn = db::open(db_path)?;
    if !db::federation_exists(&conn, federation)? {
        eprintln!(
            "warning: federation {federation:?} is not in {} yet; the token works once a worker serving it has started",
            db_path.display()
        );
    }
    println!("{}", db::create_token(&conn, federation, uses)?);
    Ok(())
}

fn serve(args: ServeArgs) -> Result<()> {
    let mut cfg = match &args.config {
        Some(p) => Config::load(p)?,
        None => Config::demo(),
    };
    if let Some(l) = args.listen {
        cfg.listen = Some(l);
    }
    if let Some(d) = args.db {
        cfg.db = Some(d);
    }
    let listen = cfg
        .listen
        .clone()
        .ok_or_else(|| WorkerError::Config("no listen address: pass --listen or set `listen` in the config".into()))?;
    let db_path =
        cfg.db.clone().ok_or_else(|| WorkerError::Config("no database: pass --db or set `db` in the config".into()))?;

    let metrics = Arc::new(metrics::Metrics::default());
    let conn = db::open(&db_path)?;
    let opened = engine::Engine::open(conn, &cfg, metrics.clone())?;
    let (tx, rx) = tokio::sync::mpsc::channel(1024);
    let engine = opened.engine;
    let engine_thread = std::thread::Builder::new().name("fedsearch-engine".into()).spawn(move || engine.run(rx))?;

    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async move {
        let state = http::AppState {
            feds: Arc::new(opened.feds),
            jobs: tx.clone(),
            creds: opened.creds,
            metrics,
            upload_permits: Arc::new(tokio::sync::Semaphore::new(cfg.max_concurrent_uploads)),
            upload_body_deadline: Duration::from_secs(cfg.upload_body_secs),
            uploading: Default::default(),
            request_deadline: Duration::from_secs(cfg.request_secs),
        };
        let app = http::router(state, cfg.allowed_origin.as_deref())?;
        let listener = tokio::net::TcpListener::bind(&listen)
            .await
            .map_err(|e| WorkerError::Config(format!("cannot listen on {listen}: {e}")))?;
        let addr = listener.local_addr()?;
        tracing::info!(%addr, db = %db_path.display(), federations = cfg.federations.len(), "fedsearch-worker listening");
        // Machine-readable line for supervisors/tests (port 0 → real port).
        println!("listening on {addr}");

        let tick = tx.clone();
        let tick_every = Duration::from_millis(cfg.tick_ms.max(50));
        tokio::spawn(async move {
            let mut iv = tokio::time::interval(tick_every);
            iv.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                iv.tick().await;
                if tick.send(engine::Job::Tick).await.is_err() {
                    break;
                }
            }
        });
        drop(tx);
        server::serve(listener, app, shutdown_signal(), server::Limits::default()).await;
        tracing::info!("shutting down");
        Ok::<(), WorkerError>(())
    })?;
    drop(runtime); // drops the tick task → engine channel closes
    let _ = engine_thread.join();
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}

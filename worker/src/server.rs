//! HTTP/1 accept loop (hyper-util) with bounded connections, shared by the worker and
//! `fedsearch-www` (which includes this file as its own module): a cap on open connections, a
//! deadline for each request head, and a small per-connection read buffer.
//!
//! hyper reads request bodies ahead of the handler (its read buffer grows up
//! to ~400 KiB per connection, plus one queued chunk). With hundreds of
//! clients uploading at once, and handlers deliberately waiting for an upload
//! permit before reading, that read-ahead would make memory grow with the
//! number of connected clients. Capping the buffer keeps idle-waiting
//! connections at ~2 × READ_BUF_BYTES each. The connection cap keeps a flood of
//! (slow or idle) connections from using up file descriptors: past it, new
//! connections wait in the kernel's backlog until the head deadline frees a slot.

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

/// hyper's read buffer cap per connection.
const READ_BUF_BYTES: usize = 64 * 1024;
/// How long in-flight requests may finish after a shutdown signal.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// Connection limits of [`serve`].
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Connections open at once (a process usually may hold 1,024 file descriptors).
    pub max_connections: usize,
    /// Time a client has to send each request head.
    pub header_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self { max_connections: 512, header_timeout: Duration::from_secs(30) }
    }
}

pub async fn serve(listener: TcpListener, app: Router, shutdown: impl Future<Output = ()>, limits: Limits) {
    let graceful = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    loop {
        // A free connection slot first: at the cap, new connections wait in the backlog.
        let slot = tokio::select! {
            permit = slots.clone().acquire_owned() => match permit {
                Ok(p) => p,
                Err(_) => break,
            },
            _ = &mut shutdown => break,
        };
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        // e.g. EMFILE: back off instead of spinning
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let conn = http1::Builder::new()
                    .max_buf_size(READ_BUF_BYTES)
                    .timer(TokioTimer::new())
                    .header_read_timeout(limits.header_timeout)
                    .serve_connection(TokioIo::new(stream), TowerToHyperService::new(app.clone()));
                let conn = graceful.watch(conn);
                tokio::spawn(async move {
                    if let Err(e) = conn.await {
                        tracing::debug!(%peer, error = %e, "connection ended with an error");
                    }
                    drop(slot);
                });
            }
            _ = &mut shutdown => break,
        }
    }
    drop(listener);
    tokio::select! {
        _ = graceful.shutdown() => {}
        _ = tokio::time::sleep(DRAIN_TIMEOUT) => {
            tracing::warn!("in-flight connections did not finish in time");
        }
    }
}

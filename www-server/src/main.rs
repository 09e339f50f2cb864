//! fedsearch-www: serves the fedsearch page (`web/`), the wasm package (`pkg/`) and model
//! folders (`/models/<name>/config.json` ...) from one origin, with the headers a WebGPU +
//! wasm page needs: `application/wasm`, cross-origin isolation (COOP/COEP/CORP), ETags
//! with `If-None-Match` → 304, `Cache-Control: no-cache` (always revalidate, so a new
//! deployment is picked up while unchanged files cost one 304), gzip/brotli. With
//! `--worker-url`, `/v1/*` is proxied to the aggregation worker so the page has a single
//! origin (no CORS). The proxy is the page's only door to the worker and assumes hostile
//! callers: a bounded number of requests in flight, each body streamed to the worker as it
//! arrives (never held whole) within a size limit and a deadline, connect and total timeouts
//! toward the worker, dot segments refused before forwarding, the worker's status and JSON
//! passed through, and its address never shown. Files are served only from inside their roots:
//! no dotfiles, no symlinks that lead out.

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use clap::Parser;
use hyper::body::{Body as HttpBody, Frame, SizeHint};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::sync::Semaphore;
use tower_http::compression::CompressionLayer;
use tower_http::compression::predicate::{DefaultPredicate, NotForContentType, Predicate};
use tower_http::services::ServeDir;

/// The worker's bounded accept loop (connection cap, request-head deadline).
#[path = "../../worker/src/server.rs"]
mod server;

#[derive(Parser, Debug)]
#[command(name = "fedsearch-www", about = "Serves the fedsearch web page, its wasm package and model files")]
struct Args {
    /// Address to listen on (port 0: any free port; the first stdout line says which).
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// The page (index.html, app.js, sw.js, ...), served at /.
    #[arg(long, default_value = "web")]
    web: PathBuf,
    /// The wasm-bindgen output (fedsearch_client.js, fedsearch_client_bg.wasm), served at /pkg/.
    #[arg(long, default_value = "pkg")]
    pkg: PathBuf,
    /// Model folders, served at /models/.
    #[arg(long, default_value = "models")]
    models: PathBuf,
    /// Aggregation worker to proxy /v1/* to (e.g. http://127.0.0.1:8787).
    #[arg(long)]
    worker_url: Option<String>,
    /// Largest request body forwarded to the worker; set it to the worker's own limit (its
    /// `/v1/federations/{id}` says `max_update_bytes`) so that the page sees one 413.
    #[arg(long, default_value_t = 32 * 1024 * 1024)]
    max_body_bytes: usize,
    /// Proxied requests in flight at once; the others wait (up to --proxy-queue-secs) before
    /// their body is read. Bodies are streamed to the worker, never held whole: memory is this
    /// many requests' transfer buffers (well under 1 MiB each).
    #[arg(long, default_value_t = 8)]
    max_proxied: usize,
    /// Seconds a proxied request may wait for a free slot before it is answered 503 `busy`.
    #[arg(long, default_value_t = 10)]
    proxy_queue_secs: u64,
    /// Seconds a proxied request may keep the proxy waiting for its body's bytes, in all (then
    /// 408 `timeout`); time the worker takes to read them does not count.
    #[arg(long, default_value_t = 30)]
    proxy_body_secs: u64,
    /// Connections open at once; past it, new ones wait until a slot frees.
    #[arg(long, default_value_t = 512)]
    max_connections: usize,
    /// Seconds a client has to send each request head before its connection is closed.
    #[arg(long, default_value_t = 30)]
    header_timeout_secs: u64,
}

#[derive(Clone)]
struct Proxy {
    base: String,
    client: reqwest::Client,
    slots: Arc<Semaphore>,
    max_body: usize,
    queue_wait: Duration,
    body_deadline: Duration,
}

/// Seconds to open a connection to the worker, and for its whole answer.
const WORKER_CONNECT_SECS: u64 = 5;
const WORKER_TOTAL_SECS: u64 = 120;

/// The error JSON the worker documents (`{"error", "message"}`), from the proxy itself.
fn json_error(status: StatusCode, code: &str, message: &str) -> Response {
    let body =
        format!("{{\"error\":\"{code}\",\"message\":\"{}\"}}", message.replace('\\', "\\\\").replace('"', "\\\""));
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

fn app(args: &Args) -> Router {
    let mut router = Router::new()
        .nest_service("/pkg", ServeDir::new(&args.pkg))
        .nest_service("/models", ServeDir::new(&args.models));
    if let Some(url) = &args.worker_url {
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(WORKER_CONNECT_SECS))
            .timeout(Duration::from_secs(WORKER_TOTAL_SECS))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap_or_default();
        let proxy = Proxy {
            base: url.trim_end_matches('/').to_string(),
            client,
            slots: Arc::new(Semaphore::new(args.max_proxied.max(1))),
            max_body: args.max_body_bytes,
            queue_wait: Duration::from_secs(args.proxy_queue_secs.max(1)),
            body_deadline: Duration::from_secs(args.proxy_body_secs.max(1)),
        };
        router = router.route("/v1/{*rest}", axum::routing::any(proxy_handler).with_state(proxy));
    }
    let roots = Arc::new(Roots::new(args));
    router
        .fallback_service(ServeDir::new(&args.web).append_index_html_on_directories(true))
        .layer(middleware::from_fn_with_state(roots, inside_roots))
        .layer(middleware::from_fn(etag))
        // Model weights (`application/octet-stream`) are sent as they are: floats do not
        // shrink, and a compressed response loses its Content-Length, which the page's
        // download progress needs.
        .layer(
            CompressionLayer::new()
                .compress_when(DefaultPredicate::new().and(NotForContentType::const_new("application/octet-stream"))),
        )
        .layer(middleware::from_fn(isolation_headers))
        .layer(tower_http::trace::TraceLayer::new_for_http())
}

/// The canonical folders files are served from, by URL prefix.
struct Roots {
    web: Option<PathBuf>,
    pkg: Option<PathBuf>,
    models: Option<PathBuf>,
}

impl Roots {
    fn new(args: &Args) -> Self {
        let canon = |p: &Path| std::fs::canonicalize(p).ok();
        Self { web: canon(&args.web), pkg: canon(&args.pkg), models: canon(&args.models) }
    }

    /// The root and the path inside it that a request path names (`None` for /v1/).
    fn split<'a>(&'a self, path: &'a str) -> Option<(Option<&'a Path>, &'a str)> {
        if path.starts_with("/v1/") {
            return None;
        }
        for (prefix, root) in [("/pkg/", &self.pkg), ("/models/", &self.models)] {
            if let Some(rest) = path.strip_prefix(prefix) {
                return Some((root.as_deref(), rest));
            }
        }
        Some((self.web.as_deref(), path.trim_start_matches('/')))
    }
}

/// Refuses (404) any file path with a segment that starts with a dot (dotfiles, `.git/`, and
/// `..`, raw or percent-encoded), and any file whose real location, symlinks followed, is outside
/// its root.
async fn inside_roots(State(roots): State<Arc<Roots>>, req: Request, next: Next) -> Response {
    let raw = req.uri().path().to_string();
    let Some((root, inner)) = roots.split(&raw) else { return next.run(req).await };
    let decoded = percent_decode(inner);
    let not_found = || json_error(StatusCode::NOT_FOUND, "not_found", "no such file");
    if decoded.split(['/', '\\']).any(|seg| seg.starts_with('.')) || decoded.contains('\0') {
        return not_found();
    }
    if let Some(root) = root {
        let target = root.join(&decoded);
        // Only what exists can be a symlink; a missing file is ServeDir's 404.
        if std::fs::symlink_metadata(&target).is_ok() {
            match std::fs::canonicalize(&target) {
                Ok(real) if real.starts_with(root) => {}
                _ => return not_found(),
            }
        }
    }
    next.run(req).await
}

/// `%XX` escapes decoded; bytes that are not UTF-8 become U+FFFD.
fn percent_decode(s: &str) -> String {
    percent_encoding::percent_decode_str(s).decode_utf8_lossy().into_owned()
}

/// Cross-origin isolation and cache headers on every response.
async fn isolation_headers(req: Request, next: Next) -> Response {
    let is_api = req.uri().path().starts_with("/v1/");
    let mut resp = next.run(req).await;
    let h = resp.headers_mut();
    h.insert("cross-origin-opener-policy", HeaderValue::from_static("same-origin"));
    h.insert("cross-origin-embedder-policy", HeaderValue::from_static("require-corp"));
    h.insert("cross-origin-resource-policy", HeaderValue::from_static("same-origin"));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    if !is_api && !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    }
    resp
}

/// A weak ETag from the file's size and modification time (what ServeDir reports), and
/// `If-None-Match` answered with 304.
async fn etag(req: Request, next: Next) -> Response {
    if req.uri().path().starts_with("/v1/") || !matches!(*req.method(), Method::GET | Method::HEAD) {
        return next.run(req).await;
    }
    let if_none_match = req.headers().get(header::IF_NONE_MATCH).cloned();
    let mut resp = next.run(req).await;
    if resp.status() != StatusCode::OK {
        return resp;
    }
    let h = resp.headers();
    let (Some(len), Some(modified)) = (h.get(header::CONTENT_LENGTH), h.get(header::LAST_MODIFIED)) else {
        return resp;
    };
    let mtime = modified.to_str().unwrap_or("").replace([' ', ',', ':'], "");
    let tag = format!("W/\"{}-{}\"", len.to_str().unwrap_or("0"), mtime);
    let Ok(tag_value) = HeaderValue::from_str(&tag) else { return resp };
    let matches = if_none_match
        .as_ref()
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == tag || t.trim() == "*"));
    if matches {
        let mut not_modified = StatusCode::NOT_MODIFIED.into_response();
        not_modified.headers_mut().insert(header::ETAG, tag_value);
        if let Some(lm) = resp.headers().get(header::LAST_MODIFIED) {
            not_modified.headers_mut().insert(header::LAST_MODIFIED, lm.clone());
        }
        return not_modified;
    }
    resp.headers_mut().insert(header::ETAG, tag_value);
    resp
}

/// Headers that describe one hop, not the message (RFC 9110 §7.6.1), plus Host.
fn hop_by_hop(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "connection"
            | "keep-alive"
            | "proxy-authenticate"
            | "proxy-authorization"
            | "te"
            | "trailer"
            | "transfer-encoding"
            | "upgrade"
            | "host"
            | "content-length"
    )
}

async fn proxy_handler(State(proxy): State<Proxy>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let path_q = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    // The worker's URL parser would resolve `..` (and `%2e%2e`), so `/v1/../metrics` would reach
    // a route outside /v1/: such paths are refused here.
    if percent_decode(parts.uri.path()).split(['/', '\\']).any(|seg| seg == "." || seg == "..") {
        return json_error(StatusCode::BAD_REQUEST, "bad_request", "dot segments are not allowed in API paths");
    }
    if let Some(len) = parts.headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
        && len > proxy.max_body as u64
    {
        return too_large(proxy.max_body);
    }
    // A slot before the body is read: at most `max_proxied` bodies in transit at once.
    let _slot = match tokio::time::timeout(proxy.queue_wait, proxy.slots.clone().acquire_owned()).await {
        Ok(Ok(permit)) => permit,
        _ => return json_error(StatusCode::SERVICE_UNAVAILABLE, "busy", "too many requests in flight; try again"),
    };
    // The body goes on to the worker as it arrives, with its length (from the size hint).
    let cut = Arc::new(AtomicU8::new(NOT_CUT));
    let body = if body.size_hint().exact() == Some(0) {
        reqwest::Body::from(Bytes::new())
    } else {
        reqwest::Body::wrap(Forwarded::new(body, proxy.max_body, proxy.body_deadline, cut.clone()))
    };
    let mut headers = HeaderMap::new();
    for (k, v) in &parts.headers {
        if !hop_by_hop(k) {
            headers.append(k.clone(), v.clone());
        }
    }
    let method = reqwest::Method::from_bytes(parts.method.as_str().as_bytes()).unwrap_or(reqwest::Method::GET);
    let url = format!("{}{}", proxy.base, path_q);
    let upstream = proxy.client.request(method, &url).headers(headers).body(body).send().await;
    let unreachable = |e: reqwest::Error| {
        // The worker's address stays in the log, never in the answer.
        tracing::warn!(%url, error = %e, "worker unreachable");
        json_error(StatusCode::BAD_GATEWAY, "worker_unreachable", "the aggregation worker does not answer")
    };
    let upstream = match upstream {
        Ok(r) => r,
        Err(e) => {
            return match cut.load(Ordering::Relaxed) {
                CUT_TOO_LARGE => too_large(proxy.max_body),
                CUT_TIMEOUT => {
                    json_error(StatusCode::REQUEST_TIMEOUT, "timeout", "the request body did not arrive in time")
                }
                _ => unreachable(e),
            };
        }
    };
    let status = StatusCode::from_u16(upstream.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
    let mut out = HeaderMap::new();
    for (k, v) in upstream.headers() {
        if !hop_by_hop(k) {
            out.append(k.clone(), v.clone());
        }
    }
    // The worker's answers are small JSON or one model (a few MB), so they are read whole.
    let bytes = match upstream.bytes().await {
        Ok(b) => b,
        Err(e) => return unreachable(e),
    };
    let mut resp = Response::new(Body::from(bytes));
    *resp.status_mut() = status;
    *resp.headers_mut() = out;
    resp
}

/// Why a forwarded body ended early ([`ForwardState::cut`]).
const NOT_CUT: u8 = 0;
const CUT_TOO_LARGE: u8 = 1;
const CUT_TIMEOUT: u8 = 2;

/// A request body on its way to the worker, passed on frame by frame as it arrives (never
/// collected), so a proxied request holds only its transfer buffers. It ends in an error, which
/// fails the forwarded request, past `limit` bytes (a chunked body; a declared length over it is
/// refused before) or once the proxy has waited `budget` in all for the client's next bytes; the
/// time the worker takes to read them does not count. `cut` says which, for the answer.
struct Forwarded {
    /// A lock only because reqwest wants a `Sync` body; polling takes `&mut` and never locks.
    state: std::sync::Mutex<ForwardState>,
    hint: SizeHint,
}

struct ForwardState {
    body: Body,
    read: usize,
    limit: usize,
    budget: Duration,
    /// Since when the client's next bytes are awaited (the last poll was `Pending`).
    waiting_since: Option<tokio::time::Instant>,
    timer: Pin<Box<tokio::time::Sleep>>,
    cut: Arc<AtomicU8>,
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl Forwarded {
    fn new(body: Body, limit: usize, budget: Duration, cut: Arc<AtomicU8>) -> Self {
        let hint = body.size_hint();
        let timer = Box::pin(tokio::time::sleep(budget));
        Self {
            state: std::sync::Mutex::new(ForwardState {
                body,
                read: 0,
                limit,
                budget,
                waiting_since: None,
                timer,
                cut,
            }),
            hint,
        }
    }
}

impl ForwardState {
    fn cut(&self, why: u8, message: &'static str) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        self.cut.store(why, Ordering::Relaxed);
        Poll::Ready(Some(Err(message.into())))
    }
}

impl HttpBody for Forwarded {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let st = self.get_mut().state.get_mut().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(since) = st.waiting_since.take() {
            st.budget = st.budget.saturating_sub(since.elapsed());
        }
        match Pin::new(&mut st.body).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                st.read = st.read.saturating_add(frame.data_ref().map_or(0, Bytes::len));
                if st.read > st.limit {
                    return st.cut(CUT_TOO_LARGE, "request body over the limit");
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e.into()))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => {
                let now = tokio::time::Instant::now();
                st.timer.as_mut().reset(now + st.budget);
                if st.budget.is_zero() || st.timer.as_mut().poll(cx).is_ready() {
                    return st.cut(CUT_TIMEOUT, "request body too slow");
                }
                st.waiting_since = Some(now);
                Poll::Pending
            }
        }
    }

    fn size_hint(&self) -> SizeHint {
        self.hint
    }
}

fn too_large(limit: usize) -> Response {
    json_error(StatusCode::PAYLOAD_TOO_LARGE, "body_too_large", &format!("request bodies are limited to {limit} bytes"))
}

#[tokio::main]
async fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    for (what, dir) in [("--web", &args.web), ("--pkg", &args.pkg), ("--models", &args.models)] {
        if !dir.is_dir() {
            tracing::warn!("{what} {} is not a directory: its files will answer 404", dir.display());
        }
    }
    let listener = match tokio::net::TcpListener::bind(args.listen).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("error: cannot listen on {}: {e}", args.listen);
            std::process::exit(1);
        }
    };
    let addr = listener.local_addr().expect("bound address");
    println!("listening on {addr}");
    tracing::info!(%addr, web = %args.web.display(), pkg = %args.pkg.display(), models = %args.models.display(), worker = ?args.worker_url, "fedsearch-www listening");
    let shutdown = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let limits = server::Limits {
        max_connections: args.max_connections,
        header_timeout: std::time::Duration::from_secs(args.header_timeout_secs.max(1)),
    };
    server::serve(listener, app(&args), shutdown, limits).await;
}

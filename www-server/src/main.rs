//! fedsearch-www: serves the fedsearch page (`web/`), the wasm package (`pkg/`) and model
//! folders (`/models/<name>/config.json` ...) from one origin, with the headers a WebGPU +
//! wasm page needs: `application/wasm`, cross-origin isolation (COOP/COEP/CORP), ETags
//! with `If-None-Match` → 304, `Cache-Control: no-cache` (always revalidate, so a new
//! deployment is picked up while unchanged files cost one 304), gzip/brotli. With
//! `--worker-url`, `/v1/*` is proxied to the aggregation worker so the page has a single
//! origin (no CORS).

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use clap::Parser;
use std::net::SocketAddr;
use std::path::PathBuf;
use tower_http::compression::CompressionLayer;
use tower_http::compression::predicate::{DefaultPredicate, NotForContentType, Predicate};
use tower_http::services::ServeDir;

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
}

#[derive(Clone)]
struct Proxy {
    base: String,
    client: reqwest::Client,
}

/// Largest request body forwarded to the worker (updates are a few MB).
const MAX_PROXY_BODY: usize = 64 * 1024 * 1024;

fn app(args: &Args) -> Router {
    let mut router = Router::new()
        .nest_service("/pkg", ServeDir::new(&args.pkg))
        .nest_service("/models", ServeDir::new(&args.models));
    if let Some(url) = &args.worker_url {
        let proxy = Proxy { base: url.trim_end_matches('/').to_string(), client: reqwest::Client::new() };
        router = router.route("/v1/{*rest}", axum::routing::any(proxy_handler).with_state(proxy));
    }
    router
        .fallback_service(ServeDir::new(&args.web).append_index_html_on_directories(true))
        .layer(middleware::from_fn(etag))
        // Model weights (`application/octet-stream`) are sent as they are: floats do not
        // shrink, and a compressed response loses its Content-Length, which the page's
        // download progress needs.
        .layer(CompressionLayer::new().compress_when(
            DefaultPredicate::new().and(NotForContentType::const_new("application/octet-stream")),
        ))
        .layer(middleware::from_fn(isolation_headers))
        .layer(tower_http::trace::TraceLayer::new_for_http())
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
        "connection" | "keep-alive" | "proxy-authenticate" | "proxy-authorization" | "te" | "trailer"
            | "transfer-encoding" | "upgrade" | "host" | "content-length"
    )
}

async fn proxy_handler(State(proxy): State<Proxy>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let path_q = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let url = format!("{}{}", proxy.base, path_q);
    let body = match axum::body::to_bytes(body, MAX_PROXY_BODY).await {
        Ok(b) => b,
        Err(_) => return (StatusCode::PAYLOAD_TOO_LARGE, "request body too large").into_response(),
    };
    let mut headers = HeaderMap::new();
    for (k, v) in &parts.headers {
        if !hop_by_hop(k) {
            headers.append(k.clone(), v.clone());
        }
    }
    let method = reqwest::Method::from_bytes(parts.method.as_str().as_bytes()).unwrap_or(reqwest::Method::GET);
    let upstream = proxy.client.request(method, &url).headers(headers).body(body).send().await;
    let upstream = match upstream {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(%url, error = %e, "worker unreachable");
            let msg = format!("{{\"error\":\"worker_unreachable\",\"message\":\"the aggregation worker at {} does not answer\"}}", proxy.base);
            return (StatusCode::BAD_GATEWAY, [(header::CONTENT_TYPE, "application/json")], msg).into_response();
        }
    };
    let status = StatusCode::from_u16(upstream.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
    let mut out = HeaderMap::new();
    for (k, v) in upstream.headers() {
        if !hop_by_hop(k) {
            out.append(k.clone(), v.clone());
        }
    }
    let bytes = match upstream.bytes().await {
        Ok(b) => b,
        Err(e) => return (StatusCode::BAD_GATEWAY, format!("reading the worker's reply failed: {e}")).into_response(),
    };
    let mut resp = Response::new(Body::from(bytes));
    *resp.status_mut() = status;
    *resp.headers_mut() = out;
    resp
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
    if let Err(e) = axum::serve(listener, app(&args)).with_graceful_shutdown(shutdown).await {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}


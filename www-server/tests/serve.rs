//! Runs the real `fedsearch-www` binary on loopback and checks what a browser relies on:
//! MIME types (wasm!), cross-origin isolation headers, ETag/304, compression, 404s, and the
//! /v1 proxy to a (fake) worker.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

struct Server {
    child: Child,
    base: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(root: &Path, worker: Option<&str>) -> Server {
    start_with(root, worker, &[])
}

fn start_with(root: &Path, worker: Option<&str>, extra: &[&str]) -> Server {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_fedsearch-www"));
    cmd.args(extra);
    cmd.args(["--listen", "127.0.0.1:0"])
        .arg("--web")
        .arg(root.join("web"))
        .arg("--pkg")
        .arg(root.join("pkg"))
        .arg("--models")
        .arg(root.join("models"))
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    if let Some(w) = worker {
        cmd.args(["--worker-url", w]);
    }
    let mut child = cmd.spawn().expect("start fedsearch-www");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let addr = line.trim().strip_prefix("listening on ").expect("first line: listening on ADDR").to_string();
    Server { child, base: format!("http://{addr}") }
}

fn fixture(name: &str) -> std::path::PathBuf {
    let root = std::env::temp_dir().join(format!("fedsearch-www-test-{}-{name}", std::process::id()));
    for d in ["web", "pkg", "models/tiny"] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    std::fs::write(root.join("web/index.html"), "<!doctype html><title>fedsearch</title>".repeat(40)).unwrap();
    std::fs::write(root.join("web/app.js"), "export const x = 1;\n".repeat(100)).unwrap();
    std::fs::write(root.join("pkg/fedsearch_client_bg.wasm"), b"\0asm\x01\0\0\0").unwrap();
    std::fs::write(root.join("pkg/fedsearch_client.js"), "export default function init() {}\n").unwrap();
    std::fs::write(root.join("models/tiny/config.json"), "{\"hidden_size\": 32}").unwrap();
    std::fs::write(root.join("models/tiny/model.safetensors"), vec![7u8; 4096]).unwrap();
    root
}

fn client() -> reqwest::Client {
    reqwest::Client::builder().no_gzip().no_brotli().build().unwrap()
}

#[tokio::test]
async fn serves_files_with_the_right_types_and_headers() {
    let root = fixture("files");
    let s = start(&root, None);
    let c = client();

    let r = c.get(format!("{}/pkg/fedsearch_client_bg.wasm", s.base)).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/wasm");
    assert_eq!(r.headers()["cross-origin-opener-policy"], "same-origin");
    assert_eq!(r.headers()["cross-origin-embedder-policy"], "require-corp");
    assert_eq!(r.headers()["cross-origin-resource-policy"], "same-origin");
    assert_eq!(r.headers()["cache-control"], "no-cache");
    let etag = r.headers()["etag"].to_str().unwrap().to_string();
    assert!(etag.starts_with("W/\""), "{etag}");
    assert_eq!(r.bytes().await.unwrap().as_ref(), b"\0asm\x01\0\0\0");

    let r =
        c.get(format!("{}/pkg/fedsearch_client_bg.wasm", s.base)).header("if-none-match", &etag).send().await.unwrap();
    assert_eq!(r.status(), 304);
    assert_eq!(r.headers()["etag"], etag.as_str());

    let r = c.get(format!("{}/", s.base)).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers()["content-type"].to_str().unwrap().starts_with("text/html"));
    let r = c.get(format!("{}/app.js", s.base)).send().await.unwrap();
    assert!(r.headers()["content-type"].to_str().unwrap().contains("javascript"));
    let r = c.get(format!("{}/pkg/fedsearch_client.js", s.base)).send().await.unwrap();
    assert!(r.headers()["content-type"].to_str().unwrap().contains("javascript"));
    let r = c.get(format!("{}/models/tiny/config.json", s.base)).send().await.unwrap();
    assert_eq!(r.headers()["content-type"], "application/json");
    let r = c.get(format!("{}/models/tiny/model.safetensors", s.base)).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.bytes().await.unwrap().len(), 4096);

    for missing in ["/nope.html", "/pkg/nope.wasm", "/models/tiny/missing.json", "/v1/health"] {
        let r = c.get(format!("{}{missing}", s.base)).send().await.unwrap();
        assert_eq!(r.status(), 404, "{missing}");
        assert_eq!(r.headers()["cross-origin-embedder-policy"], "require-corp");
    }

    // Compression for clients that ask for it.
    for (enc, name) in [("br", "br"), ("gzip", "gzip")] {
        let r = c.get(format!("{}/app.js", s.base)).header("accept-encoding", enc).send().await.unwrap();
        assert_eq!(r.headers()["content-encoding"], name);
    }
    let r = reqwest::Client::new().get(format!("{}/app.js", s.base)).send().await.unwrap();
    assert_eq!(r.text().await.unwrap(), "export const x = 1;\n".repeat(100));
    // Model weights are not compressed (floats do not shrink), so a browser that asks for
    // compression still gets their Content-Length and can show true download progress.
    let r = c
        .get(format!("{}/models/tiny/model.safetensors", s.base))
        .header("accept-encoding", "gzip, br")
        .send()
        .await
        .unwrap();
    assert!(r.headers().get("content-encoding").is_none(), "{:?}", r.headers());
    assert_eq!(r.headers()["content-length"], "4096");
    let _ = std::fs::remove_dir_all(root);
}

/// The `Content-Length` of a request head (0 when absent or unreadable), for the fake workers.
fn content_length(head: &str) -> usize {
    head.lines()
        .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().parse().unwrap_or(0)))
        .unwrap_or(0)
}

/// A one-route fake worker: echoes method, path, query, authorization and body length, with
/// status 409.
async fn fake_worker() -> String {
    fake_worker_answering("409 Conflict").await
}

/// The fake worker with another status line (e.g. "413 Payload Too Large").
async fn fake_worker_answering(status: &'static str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = listener.accept().await else { return };
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut tmp = [0u8; 8192];
                loop {
                    let n = sock.read(&mut tmp).await.unwrap_or(0);
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&tmp[..n]);
                    let text = String::from_utf8_lossy(&buf).to_string();
                    if let Some(end) = text.find("\r\n\r\n") {
                        let head = &text[..end];
                        let len = content_length(head);
                        if buf.len() < end + 4 + len {
                            continue;
                        }
                        let first = head.lines().next().unwrap_or("");
                        let auth = head
                            .lines()
                            .find_map(|l| {
                                l.to_ascii_lowercase().starts_with("authorization:").then(|| l[14..].trim().to_string())
                            })
                            .unwrap_or_default();
                        let body = format!("{{\"line\":\"{first}\",\"auth\":\"{auth}\",\"len\":{len}}}");
                        let resp = format!(
                            "HTTP/1.1 {status}\r\ncontent-type: application/json\r\nx-model-version: 3\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                            body.len()
                        );
                        let _ = sock.write_all(resp.as_bytes()).await;
                        return;
                    }
                }
            });
        }
    });
    format!("http://{addr}")
}

#[tokio::test]
async fn proxies_v1_to_the_worker() {
    let root = fixture("proxy");
    let worker = fake_worker().await;
    let s = start(&root, Some(&worker));
    let c = client();
    let r = c
        .post(format!("{}/v1/federations/demo/updates?x=1", s.base))
        .header("authorization", "Bearer abc")
        .body(vec![1u8; 1000])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 409);
    assert_eq!(r.headers()["x-model-version"], "3");
    assert_eq!(r.headers()["cross-origin-resource-policy"], "same-origin");
    let v = r.text().await.unwrap();
    assert!(v.contains("POST /v1/federations/demo/updates?x=1 HTTP/1.1"), "{v}");
    assert!(v.contains("\"auth\":\"Bearer abc\""), "{v}");
    assert!(v.contains("\"len\":1000"), "{v}");
    // Static files still work next to the proxy.
    assert_eq!(c.get(format!("{}/", s.base)).send().await.unwrap().status(), 200);
    drop(s);

    // A dead worker: a JSON 502 the page can show.
    let s = start(&root, Some("http://127.0.0.1:9"));
    let r = c.get(format!("{}/v1/health", s.base)).send().await.unwrap();
    assert_eq!(r.status(), 502);
    let text = r.text().await.unwrap();
    assert!(text.contains("worker_unreachable"), "{text}");
    assert!(!text.contains("127.0.0.1:9"), "the worker's address must not leak: {text}");
    let _ = std::fs::remove_dir_all(root);
}

/// Sends `request` as raw bytes (no client-side path normalisation) and returns the status code
/// and the whole answer.
async fn raw_request(base: &str, request: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut sock = tokio::net::TcpStream::connect(base.trim_start_matches("http://")).await.unwrap();
    sock.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    let _ = sock.read_to_end(&mut answer).await;
    let text = String::from_utf8_lossy(&answer).to_string();
    let status = text.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    (status, text)
}

#[tokio::test]
async fn files_stay_inside_their_roots() {
    let root = fixture("roots");
    std::fs::write(root.join("web/.env"), "SECRET=1").unwrap();
    std::fs::create_dir_all(root.join("web/.git")).unwrap();
    std::fs::write(root.join("web/.git/config"), "[core]").unwrap();
    std::fs::write(root.join("outside.txt"), "not for the web").unwrap();
    std::os::unix::fs::symlink(root.join("outside.txt"), root.join("web/leak.txt")).unwrap();
    std::os::unix::fs::symlink(root.join("web/app.js"), root.join("web/alias.js")).unwrap();
    std::os::unix::fs::symlink(root.join("outside.txt"), root.join("models/tiny/leak.json")).unwrap();
    let s = start(&root, None);
    let c = client();
    for path in ["/.env", "/.git/config", "/%2eenv", "/leak.txt", "/models/tiny/leak.json"] {
        let r = c.get(format!("{}{path}", s.base)).send().await.unwrap();
        assert_eq!(r.status(), 404, "{path}");
        let body = r.text().await.unwrap();
        assert!(!body.contains("SECRET") && !body.contains("not for the web"), "{path}: {body}");
    }
    // The checks refuse only what they should: a symlink inside the root and real files serve.
    for path in ["/alias.js", "/app.js", "/models/tiny/config.json"] {
        assert_eq!(c.get(format!("{}{path}", s.base)).send().await.unwrap().status(), 200, "{path}");
    }
    let _ = std::fs::remove_dir_all(root);
}

#[tokio::test]
async fn the_proxy_refuses_dot_segments_bounds_bodies_and_passes_the_workers_status() {
    let root = fixture("proxy-hostile");
    let worker = fake_worker().await;
    let s = start_with(&root, Some(&worker), &["--max-body-bytes", "1000"]);
    // `/v1/../metrics` would be resolved by the forwarding URL parser into `/metrics`.
    for path in ["/v1/../metrics", "/v1/%2e%2e/metrics", "/v1/%2E./metrics", "/v1/federations/./demo"] {
        let (status, text) =
            raw_request(&s.base, &format!("GET {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")).await;
        assert!(status == 400 || status == 404, "{path}: {text}");
        assert!(!text.contains("\"line\""), "{path} reached the worker: {text}");
    }
    let c = client();
    let r = c.post(format!("{}/v1/federations/demo/updates", s.base)).body(vec![0u8; 2000]).send().await.unwrap();
    assert_eq!(r.status(), 413);
    assert!(r.text().await.unwrap().contains("\"error\":\"body_too_large\""));
    let r = c.post(format!("{}/v1/federations/demo/updates", s.base)).body(vec![0u8; 900]).send().await.unwrap();
    assert_eq!(r.status(), 409, "under the limit the worker answers");
    drop(s);

    // The worker's own 413 (and its JSON) reaches the page unchanged.
    let worker = fake_worker_answering("413 Payload Too Large").await;
    let s = start(&root, Some(&worker));
    let r = c.post(format!("{}/v1/federations/demo/updates", s.base)).body(vec![0u8; 100]).send().await.unwrap();
    assert_eq!(r.status(), 413);
    assert!(r.text().await.unwrap().contains("\"len\":100"));
    drop(s);

    // Bodies stream to the worker (one that waits 2 s before reading anything here): a chunked
    // one (no length to refuse up front) is cut off with the same 413 once it passes the limit ...
    let worker = slow_sink_worker(std::time::Duration::from_secs(2)).await;
    let s = start_with(&root, Some(&worker), &["--max-body-bytes", "1000"]);
    let chunk = "x".repeat(600);
    let (status, text) = raw_request(
        &s.base,
        &format!(
            "POST /v1/federations/demo/updates HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\
             connection: close\r\n\r\n258\r\n{chunk}\r\n258\r\n{chunk}\r\n0\r\n\r\n"
        ),
    )
    .await;
    assert_eq!(status, 413, "{text}");
    assert!(text.contains("\"error\":\"body_too_large\""), "{text}");
    drop(s);
    // ... and the time the worker takes to read does not count against the client's body
    // deadline (1 s): a 16 MB body, more than the sockets between them hold, gets through.
    let s = start_with(&root, Some(&worker), &["--proxy-body-secs", "1"]);
    let r = c.post(format!("{}/v1/federations/demo/updates", s.base)).body(vec![1u8; 16 << 20]).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), format!("{{\"len\":{}}}", 16 << 20));
    drop(s);

    // One slot: a request whose body never comes holds it until its body deadline (3 s, then
    // 408); a second one meanwhile waits its queue time (1 s) and is turned away (503).
    let worker = fake_worker().await;
    let s =
        start_with(&root, Some(&worker), &["--max-proxied", "1", "--proxy-queue-secs", "1", "--proxy-body-secs", "3"]);
    let slow = {
        let base = s.base.clone();
        tokio::spawn(async move {
            raw_request(&base, "POST /v1/federations/demo/updates HTTP/1.1\r\nhost: x\r\ncontent-length: 100\r\n\r\n")
                .await
        })
    };
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let r = c.get(format!("{}/v1/health", s.base)).send().await.unwrap();
    assert_eq!(r.status(), 503);
    assert!(r.text().await.unwrap().contains("\"error\":\"busy\""));
    let (status, text) = slow.await.unwrap();
    assert_eq!(status, 408, "{text}");
    // The slot is free again.
    assert_eq!(c.get(format!("{}/v1/health", s.base)).send().await.unwrap().status(), 409);
    let _ = std::fs::remove_dir_all(root);
}

/// A `kB` field of `/proc/<pid>/status` (Linux), e.g. `VmHWM:` (peak resident set size).
fn proc_status_kb(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
}

/// A worker that is slow to read: it waits `delay` after each request head before it drains
/// the body (into one small buffer), then answers 200 `{"len": <bytes read>}`.
async fn slow_sink_worker(delay: std::time::Duration) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = listener.accept().await else { return };
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = vec![0u8; 64 * 1024];
                let end = loop {
                    let n = sock.read(&mut buf).await.unwrap_or(0);
                    if n == 0 {
                        return;
                    }
                    head.extend_from_slice(&buf[..n]);
                    if let Some(end) = head.windows(4).position(|w| w == b"\r\n\r\n") {
                        break end + 4;
                    }
                };
                let len = content_length(&String::from_utf8_lossy(&head[..end]));
                tokio::time::sleep(delay).await;
                let mut read = head.len() - end;
                while read < len {
                    match sock.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => read += n,
                    }
                }
                let body = format!("{{\"len\":{read}}}");
                let resp = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = sock.write_all(resp.as_bytes()).await;
            });
        }
    });
    format!("http://{addr}")
}

/// 20 concurrent 24 MiB POSTs (the default `--max-body-bytes` is 32 MiB) through the proxy to a
/// worker that waits 1 s before reading each body. The proxy streams a body to the worker as it
/// arrives: what it holds per request is one `--max-proxied` slot's buffers — hyper's read buffer
/// toward the client (64 KiB, plus one chunk) and the worker connection's write buffer (≤ 400 KiB)
/// — about 0.5 MiB × 8 slots, plus ~128 KiB per waiting connection: a few MiB in all. So its RSS
/// grows by less than ONE body while 20 are in flight (a proxy that collects each body before
/// forwarding grows by 8 slots × 24 MiB at least; the unbounded one of issue 15 by 20 bodies),
/// and every body still reaches the worker whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_proxy_streams_large_bodies_in_bounded_memory() {
    const BODY: usize = 24 << 20;
    const REQUESTS: usize = 20;
    let root = fixture("proxy-memory");
    let worker = slow_sink_worker(std::time::Duration::from_secs(1)).await;
    // Long queue and body deadlines: every request gets through, however loaded the machine.
    let s = start_with(&root, Some(&worker), &["--proxy-queue-secs", "60", "--proxy-body-secs", "60"]);
    let pid = s.child.id();
    let c = reqwest::Client::builder().timeout(std::time::Duration::from_secs(120)).build().unwrap();
    assert_eq!(c.get(format!("{}/app.js", s.base)).send().await.unwrap().status(), 200);
    let idle_kb = proc_status_kb(pid, "VmRSS:");
    let body = axum::body::Bytes::from(vec![7u8; BODY]);
    let started = std::time::Instant::now();
    let posts: Vec<_> = (0..REQUESTS)
        .map(|_| {
            let (c, url, body) = (c.clone(), format!("{}/v1/federations/demo/updates", s.base), body.clone());
            tokio::spawn(async move {
                let r = c.post(url).body(body).send().await.unwrap();
                (r.status().as_u16(), r.text().await.unwrap())
            })
        })
        .collect();
    for p in posts {
        let (status, text) = p.await.unwrap();
        assert_eq!(status, 200, "{text}");
        assert_eq!(text, format!("{{\"len\":{BODY}}}"), "the worker got the whole body");
    }
    let peak_kb = proc_status_kb(pid, "VmHWM:");
    eprintln!(
        "proxy: {REQUESTS} × {} MiB in {:.1} s, RSS idle {:.1} MB, peak {:.1} MB",
        BODY >> 20,
        started.elapsed().as_secs_f64(),
        idle_kb as f64 / 1024.0,
        peak_kb as f64 / 1024.0
    );
    assert!(
        peak_kb - idle_kb < (BODY / 1024) as u64,
        "the proxy grew by {} KiB, more than one {} KiB body",
        peak_kb - idle_kb,
        BODY / 1024
    );
    let _ = std::fs::remove_dir_all(root);
}

/// A flood of connections that never finish their request head cannot lock the page out: past
/// `--max-connections` new connections wait, and each idle one is closed at the head deadline,
/// after which a real request is answered.
#[tokio::test]
async fn idle_connections_are_capped_and_closed_at_the_head_deadline() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let root = fixture("flood");
    let s = start_with(&root, None, &["--max-connections", "2", "--header-timeout-secs", "1"]);
    let addr = s.base.trim_start_matches("http://").to_string();
    let mut idle = Vec::new();
    for _ in 0..2 {
        let mut sock = tokio::net::TcpStream::connect(&addr).await.unwrap();
        sock.write_all(b"GET / HTTP/1.1\r\nhost: x\r\n").await.unwrap();
        idle.push(sock);
    }
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    let c = client();
    let url = format!("{}/app.js", s.base);
    // Both slots are held: the request waits (it is not answered while they are open) ...
    let waiting = tokio::time::timeout(std::time::Duration::from_millis(300), c.get(&url).send()).await;
    assert!(waiting.is_err(), "a third connection was served past the cap of 2");
    // ... the server closes the idle connections at the deadline ...
    for mut sock in idle {
        let mut buf = Vec::new();
        let read = tokio::time::timeout(std::time::Duration::from_secs(10), sock.read_to_end(&mut buf)).await;
        assert!(read.is_ok(), "an idle connection was kept open past the head deadline");
    }
    // ... and the page answers again.
    let r = tokio::time::timeout(std::time::Duration::from_secs(10), c.get(&url).send()).await.unwrap().unwrap();
    assert_eq!(r.status(), 200);
    let _ = std::fs::remove_dir_all(root);
}

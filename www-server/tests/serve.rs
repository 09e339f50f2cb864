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
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_fedsearch-www"));
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

    let r = c
        .get(format!("{}/pkg/fedsearch_client_bg.wasm", s.base))
        .header("if-none-match", &etag)
        .send()
        .await
        .unwrap();
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

/// A one-route fake worker: echoes method, path, query, authorization and body length.
async fn fake_worker() -> String {
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
                        let len: usize = head
                            .lines()
                            .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().parse().unwrap_or(0)))
                            .unwrap_or(0);
                        if buf.len() < end + 4 + len {
                            continue;
                        }
                        let first = head.lines().next().unwrap_or("");
                        let auth = head
                            .lines()
                            .find_map(|l| l.to_ascii_lowercase().starts_with("authorization:").then(|| l[14..].trim().to_string()))
                            .unwrap_or_default();
                        let body = format!("{{\"line\":\"{first}\",\"auth\":\"{auth}\",\"len\":{len}}}");
                        let resp = format!(
                            "HTTP/1.1 409 Conflict\r\ncontent-type: application/json\r\nx-model-version: 3\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
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
    assert!(r.text().await.unwrap().contains("worker_unreachable"));
    let _ = std::fs::remove_dir_all(root);
}

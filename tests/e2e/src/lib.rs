//! A minimal W3C WebDriver client (just what the end-to-end test needs) over plain HTTP to a
//! local chromedriver, and helpers to start and stop the real servers.

use base64::Engine as _;
use serde_json::{Value, json};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A child process killed (and reaped) on drop.
pub struct Proc {
    pub child: Child,
    pub name: &'static str,
}

impl Proc {
    /// Stops it now.
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Starts `cmd`, waits for its first stdout line `listening on ADDR`, returns it and the address.
pub fn start_listening(name: &'static str, mut cmd: Command) -> (Proc, String) {
    cmd.stdout(Stdio::piped()).stderr(Stdio::inherit());
    let mut child = cmd.spawn().unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let addr = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("{name} did not print `listening on ADDR` (got {line:?})"))
        .to_string();
    (Proc { child, name }, addr)
}

/// The `fedsearch-www` command serving `web`, `pkg` and `models` on a free loopback port (add
/// `--worker-url` and the like to it), for [`start_listening`].
pub fn www_command(www_bin: &Path, web: &Path, pkg: &Path, models: &Path) -> Command {
    let mut cmd = Command::new(www_bin);
    cmd.args(["--listen", "127.0.0.1:0"]).arg("--web").arg(web).arg("--pkg").arg(pkg).arg("--models").arg(models);
    cmd
}

/// The first of `names` found on PATH (or the value of env var `env`).
pub fn find_program(env: &str, names: &[&str]) -> Option<PathBuf> {
    if let Ok(p) = std::env::var(env) {
        let p = PathBuf::from(p);
        return p.is_file().then_some(p);
    }
    let path = std::env::var_os("PATH")?;
    for dir in std::env::split_paths(&path) {
        for n in names {
            let p = dir.join(n);
            if p.is_file() {
                return Some(p);
            }
        }
    }
    None
}

/// A free loopback port (bound then released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Headless Chromium arguments (WebGPU on, window 1200×1600) with its own profile folder
/// (a separate profile is a separate device: its own IndexedDB and caches).
pub fn chrome_args(profile: &Path) -> Vec<String> {
    let mut a: Vec<String> = [
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--enable-unsafe-webgpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--window-size=1200,1600",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    a.push(format!("--user-data-dir={}", profile.display()));
    a
}

/// Starts `driver` (chromedriver) on a free port; returns it and its URL once it answers.
pub async fn start_chromedriver(driver: &Path) -> (Proc, String) {
    let port = free_port();
    let child = Command::new(driver)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", driver.display()));
    let url = format!("http://127.0.0.1:{port}");
    for _ in 0..100 {
        if reqwest::get(format!("{url}/status")).await.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    (Proc { child, name: "chromedriver" }, url)
}

/// One WebDriver session.
pub struct Session {
    http: reqwest::Client,
    base: String,
    id: String,
    pub shots: PathBuf,
    pub label: String,
    shot_no: std::cell::Cell<u32>,
}

/// The W3C element reference key.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

impl Session {
    /// A new Chromium session with `args`.
    pub async fn new(driver: &str, chrome: &Path, args: &[String], shots: &Path, label: &str) -> Self {
        let http = reqwest::Client::new();
        let caps = json!({
            "capabilities": { "alwaysMatch": {
                "browserName": "chrome",
                "goog:chromeOptions": { "binary": chrome, "args": args },
                "goog:loggingPrefs": { "browser": "ALL" },
                "timeouts": { "script": 600_000, "pageLoad": 120_000 }
            }}
        });
        let v = post(&http, &format!("{driver}/session"), &caps).await;
        let id = v["sessionId"].as_str().unwrap_or_else(|| panic!("no session: {v}")).to_string();
        std::fs::create_dir_all(shots).unwrap();
        Self {
            http,
            base: format!("{driver}/session/{id}"),
            id,
            shots: shots.to_path_buf(),
            label: label.into(),
            shot_no: 0.into(),
        }
    }

    async fn cmd(&self, path: &str, body: Value) -> Value {
        post(&self.http, &format!("{}{path}", self.base), &body).await
    }

    /// Navigates (waits for the load event).
    pub async fn goto(&self, url: &str) {
        self.cmd("/url", json!({ "url": url })).await;
    }

    /// Runs synchronous JS (`arguments` available) and returns its value.
    pub async fn js(&self, script: &str, args: Value) -> Value {
        self.cmd("/execute/sync", json!({ "script": script, "args": args })).await
    }

    /// Runs async JS: the script calls `arguments[arguments.length - 1](value)`.
    pub async fn js_async(&self, script: &str, args: Value) -> Value {
        self.cmd("/execute/async", json!({ "script": script, "args": args })).await
    }

    /// Finds an element by CSS selector.
    pub async fn find(&self, css: &str) -> String {
        let v = self.cmd("/element", json!({ "using": "css selector", "value": css })).await;
        v[ELEMENT].as_str().unwrap_or_else(|| panic!("[{}] no element {css}: {v}", self.label)).to_string()
    }

    /// Clicks an element.
    pub async fn click(&self, css: &str) {
        let e = self.find(css).await;
        self.cmd(&format!("/element/{e}/click"), json!({})).await;
    }

    /// Types into an element (after clearing it).
    pub async fn type_into(&self, css: &str, text: &str) {
        let e = self.find(css).await;
        self.cmd(&format!("/element/{e}/clear"), json!({})).await;
        self.cmd(&format!("/element/{e}/value"), json!({ "text": text })).await;
    }

    /// Polls `expr` (a JS expression) until it is truthy; panics with `what` and a screenshot after
    /// `timeout`. Returns its value.
    pub async fn wait_for(&self, what: &str, expr: &str, timeout: Duration) -> Value {
        let start = Instant::now();
        loop {
            let v = self.js(&format!("return ({expr});"), json!([])).await;
            if !(v.is_null() || v == json!(false) || v == json!("") || v == json!(0)) {
                return v;
            }
            if start.elapsed() > timeout {
                let err = self.js("return window.fedsearch && window.fedsearch.lastError || document.getElementById('error')?.textContent || ''", json!([])).await;
                self.screenshot(&format!("timeout-{}", what.replace(' ', "-"))).await;
                panic!("[{}] timed out after {timeout:?} waiting for {what} ({expr}); page error: {err}", self.label);
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Resizes the browser window (CSS pixels), e.g. to a phone's width.
    pub async fn set_window_size(&self, width: u32, height: u32) {
        self.cmd("/window/rect", json!({ "width": width, "height": height })).await;
    }

    /// Saves a PNG screenshot as `<shots>/<label>-NN-<name>.png`.
    pub async fn screenshot(&self, name: &str) -> PathBuf {
        let resp = self.http.get(format!("{}/screenshot", self.base)).send().await.unwrap();
        let v: Value = serde_json::from_slice(&resp.bytes().await.unwrap()).unwrap();
        let png =
            base64::engine::general_purpose::STANDARD.decode(v["value"].as_str().unwrap_or("")).unwrap_or_default();
        let n = self.shot_no.get() + 1;
        self.shot_no.set(n);
        let p = self.shots.join(format!("{}-{n:02}-{name}.png", self.label));
        std::fs::write(&p, png).unwrap();
        p
    }

    /// Browser console messages at level SEVERE since the last call (chromedriver's log API).
    pub async fn console_errors(&self) -> Vec<String> {
        let v = self.cmd("/se/log", json!({ "type": "browser" })).await;
        v.as_array()
            .map(|a| {
                a.iter()
                    .filter(|e| e["level"] == "SEVERE")
                    .map(|e| e["message"].as_str().unwrap_or("").to_string())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Ends the session (closes the browser).
    pub async fn quit(&self) {
        let _ = self.http.delete(&self.base).send().await;
        let _ = &self.id;
    }
}

async fn post(http: &reqwest::Client, url: &str, body: &Value) -> Value {
    let resp = http
        .post(url)
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .unwrap_or_else(|e| panic!("webdriver {url}: {e}"));
    let status = resp.status();
    let v: Value = serde_json::from_slice(&resp.bytes().await.unwrap()).unwrap_or(Value::Null);
    if !status.is_success() {
        panic!("webdriver {url} failed ({status}): {}", v["value"]);
    }
    v["value"].clone()
}

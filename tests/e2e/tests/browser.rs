//! End to end: the real aggregation worker and www server on loopback with the TINY model,
//! two headless Chromium sessions (separate profiles = separate devices) that each add the
//! demo corpus, train, and contribute; the worker must publish a version from both; then
//! search gives the expected document first, and after the servers stop, a reload still
//! searches offline (service worker + Cache Storage + IndexedDB). On the way, the benchmark
//! page runs the shared throughput workload on WebGPU and the CPU in the browser, next to the
//! native figure measured by this test in the same run.
//!
//! Needs: chromium + chromedriver (PATH, or CHROME_BIN / CHROMEDRIVER), the wasm package in
//! `pkg/` (or FEDSEARCH_PKG_DIR), and the `fedsearch-worker` and `fedsearch-www` binaries
//! built into the same target dir (or FEDSEARCH_WORKER_BIN / FEDSEARCH_WWW_BIN). Without
//! Chromium or pkg/ the test is SKIPPED with a loud message, unless FEDSEARCH_E2E_REQUIRED=1
//! (CI), which turns a skip into a failure.
//! Screenshots of every step: `target/e2e-screenshots/` (or FEDSEARCH_E2E_SHOTS).

use burn::prelude::Device;
use fedsearch_core::bench::{NATIVE_BENCH_FILE, ThroughputConfig, throughput};
use fedsearch_core::model::{DEFAULT_MAX_LEN, SentenceEncoder};
use fedsearch_core::tiny::{TinyBertSpec, tiny_bert_files};
use fedsearch_e2e::{Session, chrome_args, find_program, start_chromedriver, start_listening, www_command};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().unwrap()
}

/// `target/<profile>/` of this test binary (`target/<profile>/deps/browser-HASH`).
fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    exe.parent().and_then(Path::parent).unwrap().to_path_buf()
}

fn binary(env: &str, name: &str) -> PathBuf {
    let p = std::env::var(env).map(PathBuf::from).unwrap_or_else(|_| bin_dir().join(name));
    assert!(
        p.is_file(),
        "{} not found: build it first (`cargo build -p {name}` with the same CARGO_TARGET_DIR) or set {env}",
        p.display()
    );
    p
}

fn skip(why: &str) {
    let msg = format!(
        "\n\n!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!\n\
         !!! fedsearch-e2e SKIPPED: {why}\n\
         !!! to run it: apt-get install chromium chromium-driver; build pkg/ (crates/client/README.md)\n\
         !!! CI sets FEDSEARCH_E2E_REQUIRED=1 so that this can never skip there\n\
         !!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!\n"
    );
    if std::env::var("FEDSEARCH_E2E_REQUIRED").is_ok_and(|v| v == "1") {
        panic!("{msg}(FEDSEARCH_E2E_REQUIRED=1)");
    }
    eprintln!("{msg}");
}

/// The real all-MiniLM-L6-v2 folder (FEDSEARCH_MODEL_DIR, else models/all-MiniLM-L6-v2), or
/// `None` after a loud note; FEDSEARCH_REQUIRE_MODEL=1 (CI) turns its absence into a failure.
fn real_model_dir() -> Option<PathBuf> {
    let dir = std::env::var_os("FEDSEARCH_MODEL_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("models/all-MiniLM-L6-v2"));
    if dir.join("model.safetensors").is_file() {
        return Some(dir);
    }
    if std::env::var("FEDSEARCH_REQUIRE_MODEL").is_ok_and(|v| v == "1") {
        panic!("FEDSEARCH_REQUIRE_MODEL=1 but the real model is not at {}", dir.display());
    }
    eprintln!(
        "!!! fedsearch-e2e: the real-model device is SKIPPED: no model at {} (fedsearch fetch-model)",
        dir.display()
    );
    None
}

const LONG: Duration = Duration::from_secs(600);

async fn device_round(s: &Session, page: &str) {
    s.goto(page).await;
    s.wait_for("the client to load", "document.body.dataset.state === 'ready'", LONG).await;
    s.screenshot("loaded").await;
    // Every file arrived whole, and the download bar knew the weights' size from their first
    // chunk (Content-Length; the small JSON files may come compressed, without a length, which
    // the page shows as an indeterminate bar); the federation's C, σ and δ are shown before
    // anything is contributed.
    let downloads = s.js("return window.fedsearch.downloads", json!([])).await;
    for f in ["config.json", "tokenizer.json", "model.safetensors"] {
        let d = &downloads[f];
        assert!(d["total"].as_f64().unwrap_or(0.0) > 0.0 && d["loaded"] == d["total"], "[{}] {f}: {d}", s.label);
    }
    let weights = &downloads["model.safetensors"];
    assert_eq!(weights["firstTotal"], weights["total"], "[{}] the weights' size from the start: {weights}", s.label);
    // While some file's size is unknown the bar is indeterminate (no value), never full; once all
    // sizes are known it shows a fraction, and the last report before loading is complete.
    let log = s.js("return window.fedsearch.progressLog", json!([])).await;
    let log = log.as_array().cloned().unwrap_or_default();
    assert!(!log.is_empty(), "[{}] no download progress was reported", s.label);
    for entry in &log {
        match (entry["sizeUnknown"].as_bool(), entry["value"].as_f64()) {
            (Some(true), v) => {
                assert!(v.is_none(), "[{}] a bar with a value while a size was unknown: {entry}", s.label)
            }
            (Some(false), Some(v)) => assert!((0.0..=1.0).contains(&v), "[{}] {entry}", s.label),
            _ => panic!("[{}] a progress entry without a bar state: {entry}", s.label),
        }
    }
    s.wait_for(
        "the federation's DP parameters",
        "document.getElementById('p-dp').textContent !== '–' && document.getElementById('p-delta').textContent !== '–'",
        Duration::from_secs(60),
    )
    .await;
    // From here on the model embeds and trains; the page's main thread must stay free for it.
    let work_started = s.js("return performance.now()", json!([])).await;
    s.click("#add-demo").await;
    s.wait_for("30 documents", "document.getElementById('doc-count').textContent === '30'", LONG).await;
    s.screenshot("documents").await;
    let docs_status = s.js("return document.getElementById('docs-status').textContent", json!([])).await;
    assert_eq!(docs_status, json!("Added 30 passages; 30 passages on this device."), "[{}]", s.label);
    // Indexing says what it is doing: what it embeds, how far it is (the bar's value moving
    // from 0 to 1 with the count of texts), then what was added.
    let log = s.js("return window.fedsearch.indexLog", json!([])).await;
    let log = log.as_array().cloned().unwrap_or_default();
    assert!(log.len() >= 3, "[{}] indexing statuses: {log:?}", s.label);
    assert_eq!(log[0], json!({ "text": "Embedding 30 documents…", "value": 0 }), "[{}]", s.label);
    assert_eq!(log.last().unwrap()["text"], docs_status, "[{}]", s.label);
    let steps = &log[1..log.len() - 1];
    let mut last = 0.0;
    for entry in steps {
        let (text, value) = (entry["text"].as_str().unwrap_or_default(), entry["value"].as_f64().unwrap_or(-1.0));
        assert!(
            text.starts_with("Embedding 30 documents: ")
                && text.contains(" of ")
                && text.ends_with("(passages and their category questions)…"),
            "[{}] {entry}",
            s.label
        );
        assert!((last..=1.0).contains(&value), "[{}] the bar went back or past full: {entry}", s.label);
        last = value;
    }
    assert_eq!(last, 1.0, "[{}] the last progress report is complete: {steps:?}", s.label);
    // The list gives each document's size and the day it was added.
    let first_item = s.js("return document.querySelector('#doc-list li').textContent", json!([])).await;
    let year = s.js("return String(new Date().getFullYear())", json!([])).await;
    let first_item = first_item.as_str().unwrap_or_default();
    assert!(
        first_item.contains(" words, added ") && first_item.contains(year.as_str().unwrap_or("?")),
        "[{}] document list entry: {first_item:?}",
        s.label
    );
    // Junk files are refused by name, and nothing of that batch is added.
    s.js(
        "window.fedsearch.addFiles([new File([new Uint8Array([0x89, 0x50, 0x4e, 0x47, 0, 0, 0, 13, 0xff, 0xfe])], 'picture.png'), new File([''], 'empty.txt'), new File(['A good note about rivers.'], 'note.txt')])",
        json!([]),
    )
    .await;
    s.wait_for("the refusal", "/picture/.test(document.getElementById('error').textContent)", Duration::from_secs(60))
        .await;
    let refusal = s.js("return document.getElementById('error').textContent", json!([])).await;
    let refusal = refusal.as_str().unwrap_or_default().to_string();
    assert!(refusal.contains("nothing was added") && refusal.contains("\"empty\" is empty"), "[{}] {refusal}", s.label);
    s.screenshot("junk-refused").await;
    let count = s.js("return document.getElementById('doc-count').textContent", json!([])).await;
    assert_eq!(count, json!("30"), "[{}] a refused batch adds nothing", s.label);
    s.type_into("#epochs", "30").await;
    s.click("#train-btn").await;
    s.wait_for("training to finish", "document.body.dataset.trained === 'yes'", LONG).await;
    s.screenshot("trained").await;
    assert_responsive(s, &work_started, "embedding and training").await;
    // The summary says what happened, in words that agree with the numbers.
    let stats = s.js("return document.getElementById('train-stats').textContent", json!([])).await;
    let stats = stats.as_str().unwrap_or_default().to_string();
    assert!(stats.starts_with("Done: "), "[{}] {stats}", s.label);
    assert!(!stats.contains(" 1 steps") && !stats.contains(" 1 epochs"), "[{}] plural: {stats}", s.label);
    // It says which model early stopping kept: a trained epoch, or the one it started from.
    assert!(stats.contains(" Kept epoch ") || stats.contains("kept unchanged"), "[{}] {stats}", s.label);
    eprintln!("[{}] {stats}", s.label);
    s.click("#consent").await;
    // The cost is shown before it is paid, and it is what is then paid.
    let preview = ready_to_contribute(s).await;
    let dp = s.js("return document.getElementById('p-dp').textContent", json!([])).await;
    assert_ne!(dp, json!("–"), "[{}] the federation's C / σ are shown before contributing", s.label);
    s.click("#contribute-btn").await;
    s.wait_for("the contribution", "document.body.dataset.contributed !== undefined", LONG).await;
    s.screenshot("contributed").await;
    let eps = s.js("return document.getElementById('p-epsilon').textContent", json!([])).await;
    assert_ne!(eps, json!("0.000"), "[{}] ε must be spent after contributing", s.label);
    assert_eq!(eps, preview, "[{}] the previewed ε is the ε spent", s.label);
}

/// Loads a secure federation's page on a device, adds the demo corpus, trains briefly and
/// consents, up to the contribute button; checks that the page says the worker decodes only
/// sums. Returns the ε preview.
async fn secure_device_prepare(s: &Session, page: &str) -> serde_json::Value {
    s.goto(page).await;
    s.wait_for("the client to load", "document.body.dataset.state === 'ready'", LONG).await;
    s.wait_for("the federation", "document.body.dataset.secure === 'yes'", Duration::from_secs(60)).await;
    let status = s.js("return document.getElementById('fed-status').textContent", json!([])).await;
    assert!(status.as_str().unwrap_or_default().contains("never yours alone"), "[{}] {status}", s.label);
    s.click("#add-demo").await;
    s.wait_for("30 documents", "document.getElementById('doc-count').textContent === '30'", LONG).await;
    s.type_into("#epochs", "3").await;
    s.click("#train-btn").await;
    s.wait_for("training to finish", "document.body.dataset.trained === 'yes'", LONG).await;
    if s.js("return document.getElementById('consent').checked", json!([])).await != json!(true) {
        s.click("#consent").await;
    }
    let preview = ready_to_contribute(s).await;
    s.screenshot("secure-ready").await;
    preview
}

/// Waits, after consent, for the contribute button and the ε preview; returns the preview.
async fn ready_to_contribute(s: &Session) -> serde_json::Value {
    s.wait_for("the contribute button", "!document.getElementById('contribute-btn').disabled", Duration::from_secs(30))
        .await;
    s.wait_for(
        "the ε preview",
        "document.getElementById('eps-preview').dataset.after !== undefined",
        Duration::from_secs(60),
    )
    .await;
    s.js("return document.getElementById('eps-preview').dataset.after", json!([])).await
}

/// The real model (all-MiniLM-L6-v2, 90 MB) through the page's worker-hosted client on the CPU
/// backend: four documents, head training, adapter + head training, a contribution to a
/// personal-mode federation and a search, with no long task on the main thread and no console
/// error. Small on purpose: the test build of the wasm client is unoptimised.
async fn real_model_round(s: &Session, page: &str, docs: &serde_json::Value) {
    s.goto(page).await;
    s.wait_for("the real model to load", "document.body.dataset.state === 'ready'", LONG).await;
    let width = s.js("return document.getElementById('status').textContent", json!([])).await;
    assert!(width.as_str().unwrap_or_default().contains("model width 384"), "[{}] ready says: {width}", s.label);
    let work_started = s.js("return performance.now()", json!([])).await;
    s.js("window.fedsearch.addFiles([new File([JSON.stringify(arguments[0])], 'four.json')])", json!([docs])).await;
    s.wait_for("4 documents", "document.getElementById('doc-count').textContent === '4'", LONG).await;
    for mode in ["head", "adapter+head"] {
        s.js(
            "document.getElementById('train-mode').value = arguments[0]; delete document.body.dataset.trained",
            json!([mode]),
        )
        .await;
        s.type_into("#epochs", "1").await;
        s.click("#train-btn").await;
        s.wait_for(&format!("{mode} training"), "document.body.dataset.trained === 'yes'", LONG).await;
        let stats = s.js("return document.getElementById('train-stats').textContent", json!([])).await;
        let stats = stats.as_str().unwrap_or_default().to_string();
        eprintln!("[{}] {mode}: {stats}", s.label);
        assert!(stats.starts_with("Done: ") && stats.contains("1 epoch"), "[{}] {mode}: {stats}", s.label);
    }
    s.screenshot("real-model-trained").await;
    // Cancel reaches a training run in the worker between two steps (a CPU run never returns to
    // the worker's event loop, so the page's flag in shared memory is what stops it).
    s.js("document.getElementById('train-mode').value = 'adapter+head'", json!([])).await;
    s.type_into("#epochs", "50").await;
    s.click("#train-btn").await;
    s.wait_for("a first step", "/^step /.test(document.getElementById('train-stats').textContent)", LONG).await;
    s.click("#cancel-btn").await;
    s.wait_for("the cancellation", "!window.fedsearch.training", LONG).await;
    let stats = s.js("return document.getElementById('train-stats').textContent", json!([])).await;
    assert_eq!(stats, json!("Training cancelled; the previous model is kept."), "[{}]", s.label);
    s.click("#consent").await;
    s.wait_for("the contribute button", "!document.getElementById('contribute-btn').disabled", Duration::from_secs(60))
        .await;
    s.click("#contribute-btn").await;
    s.wait_for("the contribution", "document.body.dataset.contributed !== undefined", LONG).await;
    let first = search_first(s, "the capital of Italy").await;
    s.screenshot("real-model-search").await;
    assert_eq!(first, "rome", "[{}] the real model must find Rome", s.label);
    // The trained model alone (CaR: no BM25 in the mix) ranks it for a query without a word of
    // its title ("Rome").
    s.js("document.getElementById('search-method').value = 'car'", json!([])).await;
    let first = search_first(s, "the capital of Italy").await;
    assert_eq!(first, "rome", "[{}] the trained CaR must find Rome", s.label);
    assert_responsive(s, &work_started, "the real model's embedding, training, contribution and search").await;
    let errors = s.console_errors().await;
    assert!(errors.is_empty(), "console errors on device {}: {errors:#?}", s.label);
}

/// The longest task the page's main thread ran since `since` (performance.now() ms) is at most
/// 200 ms: the client works in its own worker, and the page only draws.
/// The real model trains on WebGPU: three adapter + head steps from the same start give finite
/// losses equal to the CPU backend's within 1e-3 relative (`web/bench.html?check=1`; measured
/// 1e-7 on SwiftShader; before `gelu_exact` the loss was NaN from the second step).
async fn real_model_webgpu_check(s: &Session, base: &str) {
    s.goto(&format!("{base}/bench.html?check=1&model=models/real&sentences=4&steps=3&backends=webgpu,cpu")).await;
    s.wait_for("the WebGPU training check", "document.body.dataset.state === 'done'", LONG).await;
    s.screenshot("webgpu-training-check").await;
    let rows = s.js("return window.fedsearchCheck", json!([])).await;
    eprintln!("[{}] training check rows: {rows}", s.label);
    let rows = rows.as_array().cloned().unwrap_or_default();
    let losses = |backend: &str| -> Vec<f64> {
        let row = rows.iter().find(|r| r["backend"] == backend).unwrap_or_else(|| panic!("no {backend} row: {rows:?}"));
        let losses = row["losses"].as_array().unwrap_or_else(|| panic!("{backend}: {row}"));
        losses.iter().map(|l| l.as_f64().unwrap_or(f64::NAN)).collect()
    };
    let (gpu, cpu) = (losses("webgpu"), losses("cpu"));
    assert_eq!(gpu.len(), 3, "{gpu:?}");
    assert!(cpu[2] < cpu[0], "the CPU's loss must fall: {cpu:?}");
    for (g, c) in gpu.iter().zip(&cpu) {
        assert!(g.is_finite() && (g - c).abs() <= 1e-3 * c.abs().max(1.0), "WebGPU {gpu:?} vs CPU {cpu:?}");
    }
    let errors = s.console_errors().await;
    assert!(errors.is_empty(), "console errors during the training check: {errors:#?}");
}

async fn assert_responsive(s: &Session, since: &serde_json::Value, during: &str) {
    let longest = s
        .js(
            "const l = window.fedsearch.longTasks; return [l.supported, l.longest(arguments[0]), l.tasks.length]",
            json!([since]),
        )
        .await;
    assert_eq!(longest[0], json!(true), "[{}] this Chromium must report long tasks: {longest}", s.label);
    let ms = longest[1].as_f64().unwrap_or(f64::INFINITY);
    eprintln!("[{}] longest main-thread task during {during}: {ms:.0} ms ({longest})", s.label);
    assert!(ms <= 200.0, "[{}] the main thread was blocked {ms:.0} ms during {during}", s.label);
}

async fn search_first(s: &Session, query: &str) -> String {
    s.type_into("#search-input", query).await;
    s.js("document.body.dataset.results = ''", json!([])).await;
    s.click("#search-btn").await;
    s.wait_for("results", "document.body.dataset.results", Duration::from_secs(120)).await;
    // The search said it was running and then how long it took.
    let status = s.js("return [document.getElementById('search-status').textContent, document.getElementById('results').getAttribute('aria-busy')]", json!([])).await;
    let text = status[0].as_str().unwrap_or_default();
    assert!(text.contains(" result") && text.contains(" s ("), "[{}] search status: {status}", s.label);
    assert!(status[1].is_null(), "[{}] results still marked busy: {status}", s.label);
    let first = s.js("return document.querySelector('#results li')?.dataset.id || ''", json!([])).await;
    first.as_str().unwrap_or("").to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_browsers_train_contribute_and_search_offline() {
    let (Some(chrome), Some(driver)) = (
        find_program("CHROME_BIN", &["chromium", "chromium-browser", "google-chrome"]),
        find_program("CHROMEDRIVER", &["chromedriver"]),
    ) else {
        skip("chromium and/or chromedriver are not installed");
        return;
    };
    let root = repo_root();
    let pkg = std::env::var("FEDSEARCH_PKG_DIR").map(PathBuf::from).unwrap_or_else(|_| root.join("pkg"));
    if !pkg.join("fedsearch_client_bg.wasm").is_file() {
        skip(&format!(
            "{}/fedsearch_client_bg.wasm is missing: build the wasm package first (crates/client/README.md, \"Build\")",
            pkg.display()
        ));
        return;
    }
    let worker_bin = binary("FEDSEARCH_WORKER_BIN", "fedsearch-worker");
    let www_bin = binary("FEDSEARCH_WWW_BIN", "fedsearch-www");
    let shots = std::env::var("FEDSEARCH_E2E_SHOTS")
        .map(PathBuf::from)
        .unwrap_or_else(|_| bin_dir().join("../e2e-screenshots"));
    let _ = std::fs::remove_dir_all(&shots);

    // The tiny model, served under /models/tiny/.
    let tmp = std::env::temp_dir().join(format!("fedsearch-e2e-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    let model_dir = tmp.join("models/tiny");
    std::fs::create_dir_all(&model_dir).unwrap();
    let files = tiny_bert_files(&TinyBertSpec::default()).unwrap();
    std::fs::write(model_dir.join("config.json"), &files.config_json).unwrap();
    std::fs::write(model_dir.join("model.safetensors"), &files.safetensors).unwrap();
    std::fs::write(model_dir.join("tokenizer.json"), &files.tokenizer_json).unwrap();
    let dim = 32;

    // A shared-mode federation over the demo corpus, published when 2 clients have sent. The
    // noise is tiny (σ = 0.001) so that two clients' average carries signal: this checks the
    // plumbing, not a realistic privacy level.
    let corpus: serde_json::Value =
        serde_json::from_slice(&std::fs::read(root.join("web/demo-corpus.json")).unwrap()).unwrap();
    let ids: Vec<String> = corpus.as_array().unwrap().iter().map(|d| d["id"].as_str().unwrap().to_string()).collect();
    let db = tmp.join("worker.db");
    let cfg = format!(
        "listen = \"127.0.0.1:0\"\ndb = {db:?}\ntick_ms = 200\n\n[[federations]]\nid = \"e2e\"\nmode = \"shared\"\ndim = {dim}\n\
         n_docs = {}\ndoc_ids = {:?}\nmin_clients = 2\ntarget_clients = 2\nround_deadline_s = 3600\n\n[federations.dp]\n\
         clip = 1.0\nnoise_multiplier = 0.001\ndelta = 1e-5\n\n[federations.optimizer]\nkind = \"fed_avg\"\nlr = 1.0\n\n\
         [[federations]]\nid = \"e2e-real\"\nmode = \"personal\"\ndim = 384\nn_docs = 0\nmin_clients = 1\n\
         target_clients = 1\nround_deadline_s = 3600\n\n[federations.dp]\nclip = 1.0\nnoise_multiplier = 1.0\n\
         delta = 1e-5\n\n[federations.optimizer]\nkind = \"fed_avg\"\nlr = 1.0\n\n\
         [[federations]]\nid = \"e2e-secure\"\nmode = \"shared\"\ndim = {dim}\nn_docs = {}\ndoc_ids = {:?}\n\
         min_clients = 2\ntarget_clients = 2\nround_deadline_s = 3600\n\n[federations.dp]\nclip = 1.0\n\
         noise_multiplier = 1.0\ndelta = 1e-5\n\n[federations.optimizer]\nkind = \"fed_avg\"\nlr = 1.0\n\n\
         [federations.secure]\nneighbours = 1\nplanned_rounds = 2\nphase_secs = 120\ntarget_epsilon = 8.0\n",
        ids.len(),
        ids,
        ids.len(),
        ids
    );
    std::fs::write(tmp.join("worker.toml"), cfg).unwrap();
    let mut cmd = Command::new(&worker_bin);
    cmd.arg("--config").arg(tmp.join("worker.toml"));
    let (mut worker, worker_addr) = start_listening("fedsearch-worker", cmd);
    let create_token = |federation: &str, uses: &str| {
        let out = Command::new(&worker_bin)
            .args(["token", "create", "--federation", federation, "--uses", uses, "--db"])
            .arg(&db)
            .output()
            .unwrap();
        assert!(out.status.success(), "token create: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    };
    let token = create_token("e2e", "2");
    let secure_token = create_token("e2e-secure", "2");
    // The real model, when installed, is served under /models/real/ (copies: the www server
    // refuses symlinks out of its roots) for a third device on its own federation, with f16
    // weights as the page ships it (`fedsearch fetch-model --f16`).
    let real = real_model_dir();
    let real_token = real.as_ref().map(|dir| {
        let dest = tmp.join("models/real");
        std::fs::create_dir_all(&dest).unwrap();
        for f in ["config.json", "tokenizer.json"] {
            std::fs::copy(dir.join(f), dest.join(f)).unwrap_or_else(|e| panic!("copy {f} from {}: {e}", dir.display()));
        }
        let weights = std::fs::read(dir.join("model.safetensors")).unwrap();
        let half = fedsearch_core::loader::to_f16_safetensors(&weights).unwrap();
        std::fs::write(dest.join("model.safetensors"), half).unwrap();
        create_token("e2e-real", "1")
    });

    let mut cmd = www_command(&www_bin, &root.join("web"), &pkg, &tmp.join("models"));
    cmd.args(["--worker-url", &format!("http://{worker_addr}")]);
    let (mut www, www_addr) = start_listening("fedsearch-www", cmd);

    let (mut chromedriver, driver_url) = start_chromedriver(&driver).await;

    let page = format!("http://{www_addr}/?model=models/tiny&federation=e2e&token={token}&backend=cpu");
    let a = Session::new(&driver_url, &chrome, &chrome_args(&tmp.join("profile-a")), &shots, "a").await;
    let b = Session::new(&driver_url, &chrome, &chrome_args(&tmp.join("profile-b")), &shots, "b").await;
    device_round(&a, &page).await;
    // Device B lets the page pick its backend (WebGPU when the browser has it).
    device_round(&b, &page.replace("backend=cpu", "backend=auto")).await;

    // Both updates are in: round 0 closed and version 1 was published.
    let http = reqwest::Client::new();
    let round_of = |fed: &'static str| {
        let (http, url) = (http.clone(), format!("http://{worker_addr}/v1/federations/{fed}/round"));
        async move {
            let body = http.get(url).send().await.unwrap().bytes().await.unwrap();
            serde_json::from_slice::<serde_json::Value>(&body).unwrap()
        }
    };
    let round = round_of("e2e").await;
    assert_eq!(round["current_version"], 1, "the worker must publish version 1 from both updates: {round}");
    let metrics = http.get(format!("http://{worker_addr}/metrics")).send().await.unwrap().text().await.unwrap();
    eprintln!("worker metrics:\n{}", metrics.lines().filter(|l| !l.starts_with('#')).collect::<Vec<_>>().join("\n"));

    // Device B removes a document from its list: the count, the list and search lose it.
    b.js("document.getElementById('doc-details').open = true", json!([])).await;
    b.click("#doc-list button[data-id='everest']").await;
    b.wait_for("the removal", "document.getElementById('doc-count').textContent === '29'", Duration::from_secs(60))
        .await;
    b.screenshot("document-removed").await;
    let removed = b.js("return document.getElementById('docs-status').textContent", json!([])).await;
    assert_eq!(removed, json!("Removed “Mount Everest” (1 passage); 29 passages on this device."));
    let listed =
        b.js("return [...document.querySelectorAll('#doc-list button')].map((e) => e.dataset.id)", json!([])).await;
    let listed: Vec<String> = serde_json::from_value(listed).unwrap();
    assert_eq!(listed.len(), 29);
    assert!(!listed.contains(&"everest".to_string()), "{listed:?}");
    let first = search_first(&b, "Mount Everest").await;
    assert_ne!(first, "everest", "a removed document is not found");
    // A document added after training: the page says the model needs training again for it.
    b.js(
        "window.fedsearch.addFiles([new File(['Lake Baikal, in Siberia, is the deepest lake in the world.'], 'baikal.txt')])",
        json!([]),
    )
    .await;
    b.wait_for("the added file", "document.getElementById('doc-count').textContent === '30'", Duration::from_secs(120))
        .await;
    let added = b.js("return document.getElementById('docs-status').textContent", json!([])).await;
    assert!(added.as_str().unwrap_or_default().contains("Train again"), "the retraining notice: {added}");
    b.js("document.getElementById('docs-status').scrollIntoView({ block: 'center' })", json!([])).await;
    b.screenshot("needs-training").await;
    b.js("window.scrollTo(0, 0)", json!([])).await;
    // A query that shares no word with any document: BM25 says so instead of listing zeros.
    b.js("document.getElementById('search-method').value = 'bm25'", json!([])).await;
    let first = search_first(&b, "zyzzyva qwxvt").await;
    assert_eq!(first, "", "BM25 must list nothing for a query without a shared word");
    let empty = b.js("return document.querySelector('#results li')?.textContent || ''", json!([])).await;
    assert!(empty.as_str().unwrap_or_default().starts_with("No match"), "the empty state: {empty}");
    b.screenshot("no-match").await;

    // Device C: the real model, through the same worker-hosted client.
    if let Some(real_token) = &real_token {
        let c = Session::new(&driver_url, &chrome, &chrome_args(&tmp.join("profile-c")), &shots, "c").await;
        let page = format!("http://{www_addr}/?model=models/real&federation=e2e-real&token={real_token}&backend=cpu");
        let four = serde_json::Value::Array(corpus.as_array().unwrap()[..4].to_vec());
        real_model_round(&c, &page, &four).await;
        real_model_webgpu_check(&c, &format!("http://{www_addr}")).await;
        c.quit().await;
    }

    // Device A applies the new global model and searches.
    a.click("#sync-btn").await;
    a.wait_for(
        "version 1",
        "/version 1/.test(document.getElementById('fed-status').textContent)",
        Duration::from_secs(120),
    )
    .await;
    let first = search_first(&a, "Mount Everest").await;
    a.screenshot("search").await;
    assert_eq!(first, "everest", "the expected document must rank first");
    a.click("#results li a").await;
    a.wait_for(
        "the click to be stored",
        "document.getElementById('p-clicks').textContent === '1'",
        Duration::from_secs(30),
    )
    .await;
    let errors = a.console_errors().await;
    assert!(errors.is_empty(), "console errors on device A: {errors:#?}");

    // The page at a phone's width.
    a.set_window_size(390, 1400).await;
    a.screenshot("phone-width").await;
    a.set_window_size(1200, 1600).await;

    // The benchmark page, with the native figure of this machine measured now (same workload).
    let bench_cfg = ThroughputConfig { sentences: 16, head_steps: 5, adapter_steps: 2, ..Default::default() };
    let native_enc = SentenceEncoder::load(&files, &Device::flex(), DEFAULT_MAX_LEN).unwrap();
    let native = throughput(&native_enc, &bench_cfg, &mut |_| {}).await.unwrap();
    std::fs::write(model_dir.join(NATIVE_BENCH_FILE), native.to_json("native").to_string()).unwrap();
    b.goto(&format!("http://{www_addr}/bench.html?model=models/tiny&sentences=16&headSteps=5&adapterSteps=2")).await;
    b.wait_for("the benchmark", "document.body.dataset.state === 'done'", LONG).await;
    b.screenshot("benchmark").await;
    let rows = b.js("return window.fedsearchBench", json!([])).await;
    eprintln!("benchmark rows (native, then the browser): {rows:#}");
    let rows = rows.as_array().cloned().unwrap_or_default();
    for backend in ["native", "webgpu", "cpu"] {
        let row = rows.iter().find(|r| r["backend"] == backend).unwrap_or_else(|| panic!("no {backend} row: {rows:?}"));
        for k in ["encodeSentencesPerS", "headExamplesPerS", "adapterExamplesPerS"] {
            let v = row[k].as_f64().unwrap_or_else(|| panic!("{backend} has no {k}: {row}"));
            assert!(v.is_finite() && v > 0.0, "{backend} {k} = {v}");
        }
        if backend != "native" {
            // Each backend ran in the page's client worker: the page's main thread stayed free.
            let ms = row["longestTaskMs"].as_f64().unwrap_or_else(|| panic!("{backend} has no longestTaskMs: {row}"));
            assert!(ms <= 200.0, "the benchmark page's main thread was blocked {ms:.0} ms during {backend}");
        }
    }

    // A secure round with two browsers: both join, seal shares for each other, send masked
    // updates and unmask; the worker publishes version 1 from the sum and never sees either
    // update. The page says what the worker can see, and the ε it showed is the ε spent.
    let secure_page =
        format!("http://{www_addr}/?model=models/tiny&federation=e2e-secure&token={secure_token}&backend=cpu");
    let preview_a = secure_device_prepare(&a, &secure_page).await;
    let preview_b = secure_device_prepare(&b, &secure_page).await;
    a.click("#contribute-btn").await;
    b.click("#contribute-btn").await;
    for (s, preview) in [(&a, &preview_a), (&b, &preview_b)] {
        s.wait_for("the secure contribution", "document.body.dataset.contributed !== undefined", LONG).await;
        s.screenshot("secure-contributed").await;
        let eps = s.js("return document.getElementById('p-epsilon').textContent", json!([])).await;
        assert_eq!(&eps, preview, "[{}] the previewed ε is the ε spent in the secure round", s.label);
        let result = s.js("return document.getElementById('contribute-result').textContent", json!([])).await;
        assert!(result.as_str().unwrap_or_default().contains("decoded only the sum"), "[{}] {result}", s.label);
    }
    let secure_round = round_of("e2e-secure").await;
    assert_eq!(secure_round["current_version"], 1, "the secure round must publish version 1: {secure_round}");

    // Offline: stop both servers, reload, search again.
    www.stop();
    worker.stop();
    a.goto(&page).await;
    a.wait_for("the client to load offline", "document.body.dataset.state === 'ready'", LONG).await;
    let first = search_first(&a, "Mount Everest").await;
    a.screenshot("offline-search").await;
    assert_eq!(first, "everest", "offline search must still rank the expected document first");
    let count = a.js("return document.getElementById('doc-count').textContent", json!([])).await;
    assert_eq!(count, json!("30"));
    // Consent is remembered with its date.
    let consent = a
        .js(
            "return [document.getElementById('consent').checked, document.getElementById('consent-date').textContent]",
            json!([]),
        )
        .await;
    assert_eq!(consent[0], json!(true), "consent after a reload: {consent}");
    assert!(consent[1].as_str().unwrap_or_default().starts_with("(given "), "{consent}");
    // The Train card says the trained model survived the reload.
    let stats = a.js("return document.getElementById('train-stats').textContent", json!([])).await;
    assert!(stats.as_str().unwrap_or_default().starts_with("The model on this device has trained "), "{stats}");

    a.quit().await;
    b.quit().await;
    chromedriver.stop();
    eprintln!("screenshots in {}", shots.display());
    let _ = std::fs::remove_dir_all(&tmp);
}

//! `cargo run -p fedsearch-e2e --bin bench-browser -- [MODEL_DIR] [SENTENCES] [HEAD_STEPS] [ADAPTER_STEPS] [BACKENDS]`
//! (BACKENDS: `webgpu,cpu` by default):
//! the throughput benchmark in headless Chromium (web/bench.html: WebGPU and CPU) next to the
//! native figure measured in this process on the same workload (`fedsearch_core::bench`).
//! `bench-browser --check [MODEL_DIR] [SENTENCES] [STEPS] [BACKENDS]`: the training check
//! instead (`bench.html?check=1`: the loss of a few adapter + head steps per backend, next to
//! the native losses computed here).
//! With `FEDSEARCH_ORT_WEB_DIR` (made by scripts/bench-vs-ort-web.sh: onnxruntime-web, the same
//! model as ONNX and the same sentences' token ids), onnxruntime-web's encoder runs in the same
//! browser at batch 1 and at the tab's batch, before and after the benchmark page, and the ratio
//! of the tab's CPU encoder to the peer's better batch size is printed.
//! Needs pkg/ (scripts/build-wasm.sh; or FEDSEARCH_PKG_DIR), chromium + chromedriver and the fedsearch-www binary
//! (`cargo build -p fedsearch-www`). Prints one line per backend and the ratios to native.

use burn::prelude::Device;
use fedsearch_core::bench::{LossCheckConfig, NATIVE_BENCH_FILE, ThroughputConfig, throughput, training_losses};
use fedsearch_core::model::{DEFAULT_MAX_LEN, ModelFiles, SentenceEncoder};
use fedsearch_e2e::{Session, chrome_args, find_program, start_chromedriver, start_listening, www_command};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::time::Duration;

fn fail(msg: String) -> ! {
    eprintln!("bench-browser: {msg}");
    std::process::exit(2)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().is_some_and(|a| a == "--secagg") {
        return secagg(&args[1..]).await;
    }
    let check = args.first().is_some_and(|a| a == "--check");
    if check {
        args.remove(0);
    }
    let arg = |i: usize, default: &str| args.get(i).cloned().unwrap_or_else(|| default.to_string());
    let model = PathBuf::from(arg(0, "models/all-MiniLM-L6-v2"));
    let num = |i: usize, default: &str| {
        arg(i, default).parse::<usize>().unwrap_or_else(|e| fail(format!("argument {}: {e}", i + 1)))
    };
    let cfg = if check {
        ThroughputConfig::default()
    } else {
        ThroughputConfig {
            sentences: num(1, "16"),
            head_steps: num(2, "5"),
            adapter_steps: num(3, "2"),
            ..Default::default()
        }
    };
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let pkg = std::env::var("FEDSEARCH_PKG_DIR").map(PathBuf::from).unwrap_or_else(|_| root.join("pkg"));
    if !pkg.join("fedsearch_client_bg.wasm").is_file() {
        fail("pkg/ is missing: run scripts/build-wasm.sh".into());
    }
    let exe = std::env::current_exe().unwrap();
    let www_bin = exe.parent().unwrap().join("fedsearch-www");
    if !www_bin.is_file() {
        fail(format!("{} is missing: cargo build -p fedsearch-www", www_bin.display()));
    }
    let (Some(chrome), Some(driver)) = (
        find_program("CHROME_BIN", &["chromium", "chromium-browser", "google-chrome"]),
        find_program("CHROMEDRIVER", &["chromedriver"]),
    ) else {
        fail("chromium and chromedriver are needed (scripts/setup.sh installs them)".into())
    };

    // Native first, in this process.
    let files = ModelFiles::read_dir(&model).unwrap_or_else(|e| fail(e.to_string()));
    let enc = SentenceEncoder::load(&files, &Device::flex(), DEFAULT_MAX_LEN).unwrap_or_else(|e| fail(e.to_string()));
    let check_cfg = LossCheckConfig { sentences: num(1, "4"), steps: num(2, "3") };
    if check {
        let native = training_losses(&enc, &check_cfg).await.unwrap_or_else(|e| fail(e.to_string()));
        println!("native (flex CPU)             {native:?}");
    }
    eprintln!("native (flex CPU)…");
    let native = if check {
        Default::default()
    } else {
        throughput(&enc, &cfg, &mut |s| eprintln!("  {s}")).await.unwrap_or_else(|e| fail(e.to_string()))
    };
    drop(enc);

    // The model folder as /models/m/, with the native figure next to it.
    let tmp = std::env::temp_dir().join(format!("fedsearch-bench-{}", std::process::id()));
    let served = tmp.join("models/m");
    std::fs::create_dir_all(&served).unwrap();
    std::fs::write(served.join("config.json"), &files.config_json).unwrap();
    std::fs::write(served.join("tokenizer.json"), &files.tokenizer_json).unwrap();
    std::fs::write(served.join("model.safetensors"), &files.safetensors).unwrap();
    std::fs::write(served.join(NATIVE_BENCH_FILE), native.to_json("native").to_string()).unwrap();

    let ort_web = std::env::var_os("FEDSEARCH_ORT_WEB_DIR").map(PathBuf::from);
    if let Some(dir) = &ort_web {
        let dest = tmp.join("models/ort");
        std::fs::create_dir_all(&dest).unwrap();
        for entry in std::fs::read_dir(dir).unwrap_or_else(|e| fail(format!("{}: {e}", dir.display()))) {
            let path = entry.unwrap().path();
            if path.is_file() {
                std::fs::copy(&path, dest.join(path.file_name().unwrap())).unwrap();
            }
        }
    }
    let cmd = www_command(&www_bin, &root.join("web"), &pkg, &tmp.join("models"));
    let (_www, addr) = start_listening("fedsearch-www", cmd);
    let (_driver, driver_url) = start_chromedriver(&driver).await;
    let s = Session::new(&driver_url, &chrome, &chrome_args(&tmp.join("profile")), &tmp.join("shots"), "bench").await;
    if check {
        s.goto(&format!(
            "http://{addr}/bench.html?check=1&model=models/m&sentences={}&steps={}&backends={}",
            check_cfg.sentences,
            check_cfg.steps,
            arg(3, "webgpu,cpu")
        ))
        .await;
        s.wait_for("the training check", "document.body.dataset.state === 'done'", Duration::from_secs(3600)).await;
        let rows = s.js("return window.fedsearchCheck", json!([])).await;
        s.quit().await;
        let _ = std::fs::remove_dir_all(&tmp);
        for r in rows.as_array().cloned().unwrap_or_default() {
            let label = r["label"].as_str().unwrap_or("?");
            match r["error"].as_str() {
                Some(e) => println!("{label:<29} {e}"),
                None => println!(
                    "{label:<29} {} (max relative difference to the CPU: {})",
                    r["losses"], r["maxRelativeDifference"]
                ),
            }
        }
        return;
    }
    // onnxruntime-web at batch 1 and at the tab's batch, so each engine is at its best batch size.
    let ort_batches = [1, cfg.encode_batch.max(1)];
    let ort_rates = async |label: &str, batch: usize| -> Vec<f64> {
        s.goto(&format!("http://{addr}/models/ort/index.html?threads=1&rounds=3&batch={batch}")).await;
        eprintln!("onnxruntime-web ({label}, batch {batch})…");
        s.wait_for("onnxruntime-web", "document.body.dataset.state === 'done'", Duration::from_secs(1800)).await;
        let r = s.js("return window.ortResult", json!([])).await;
        if let Some(e) = r["error"].as_str() {
            fail(format!("onnxruntime-web: {e}"));
        }
        println!("onnxruntime-web ({label}): {r}");
        r["sentencesPerS"].as_array().map(|a| a.iter().filter_map(Value::as_f64).collect()).unwrap_or_default()
    };
    let mut ort: Vec<Vec<f64>> = vec![Vec::new(); ort_batches.len()];
    if ort_web.is_some() {
        for (rates, &batch) in ort.iter_mut().zip(&ort_batches) {
            rates.extend(ort_rates("before", batch).await);
        }
    }
    s.goto(&format!(
        "http://{addr}/bench.html?model=models/m&sentences={}&headSteps={}&adapterSteps={}&backends={}",
        cfg.sentences,
        cfg.head_steps,
        cfg.adapter_steps,
        arg(4, "webgpu,cpu")
    ))
    .await;
    eprintln!("browser ({})…", arg(4, "webgpu,cpu"));
    s.wait_for("the benchmark", "document.body.dataset.state === 'done'", Duration::from_secs(3600)).await;
    let rows = s.js("return window.fedsearchBench", json!([])).await;
    if ort_web.is_some() {
        for (rates, &batch) in ort.iter_mut().zip(&ort_batches) {
            rates.extend(ort_rates("after", batch).await);
        }
    }
    s.quit().await;
    let _ = std::fs::remove_dir_all(&tmp);

    let rows = rows.as_array().cloned().unwrap_or_default();
    let get = |r: &Value, k: &str| r[k].as_f64();
    println!("{} sentences, max_len {}, model {}", native.sentences, native.max_len, model.display());
    println!("{:<28} {:>14} {:>16} {:>18}", "where", "sentences/s", "head ex/s", "adapter+head ex/s");
    for r in &rows {
        let label = r["label"].as_str().unwrap_or("?");
        if let Some(e) = r["error"].as_str() {
            println!("{label:<28} {e}");
            continue;
        }
        let cell = |k: &str, base: f64| match get(r, k) {
            Some(v) if r["backend"] != "native" => format!("{v:.1} ({:.3}×)", v / base),
            Some(v) => format!("{v:.1}"),
            None => "–".into(),
        };
        println!(
            "{label:<28} {:>14} {:>16} {:>18}",
            cell("encodeSentencesPerS", native.encode_sentences_per_s),
            cell("headExamplesPerS", native.head_examples_per_s),
            cell("adapterExamplesPerS", native.adapter_examples_per_s)
        );
    }
    if ort.iter().any(|r| !r.is_empty()) {
        let mut best: f64 = 0.0;
        for (rates, batch) in ort.iter_mut().zip(ort_batches) {
            if rates.is_empty() {
                continue;
            }
            rates.sort_by(f64::total_cmp);
            let median = rates[rates.len() / 2];
            best = best.max(median);
            println!(
                "onnxruntime-web (wasm, 1 thread, batch {batch}) median {median:.1} sentences/s over {} rounds (range {:.1}–{:.1})",
                rates.len(),
                rates[0],
                rates[rates.len() - 1]
            );
        }
        let tab = rows.iter().find(|r| r["backend"] == "cpu").and_then(|r| r["encodeSentencesPerS"].as_f64());
        if let Some(tab) = tab {
            println!(
                "tab CPU encoder (batch {}) / onnxruntime-web at its best batch: {:.2}×",
                cfg.encode_batch,
                tab / best
            );
        }
    }
}

/// `bench-browser --secagg [DIM] [K]`: one client's part of a secure round natively (this
/// process) and in headless Chromium (`bench.html?secagg=DIM,K`, the dev or release wasm package
/// in FEDSEARCH_PKG_DIR), printed side by side.
async fn secagg(args: &[String]) {
    let num = |i: usize, default: usize| {
        args.get(i)
            .map_or(Ok(default), |a| a.parse::<usize>())
            .unwrap_or_else(|e| fail(format!("argument {}: {e}", i + 1)))
    };
    let (dim, k) = (num(0, 532_840), num(1, 100));
    let start = std::time::Instant::now();
    let native = fedsearch_protocol::secagg::client_cost(dim, k, &|| start.elapsed().as_secs_f64() * 1e3)
        .unwrap_or_else(|e| fail(e.to_string()));
    let native = serde_json::to_value(&native).unwrap();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let pkg = std::env::var("FEDSEARCH_PKG_DIR").map(PathBuf::from).unwrap_or_else(|_| root.join("pkg"));
    let www_bin = std::env::current_exe().unwrap().parent().unwrap().join("fedsearch-www");
    let (Some(chrome), Some(driver)) = (
        find_program("CHROME_BIN", &["chromium", "chromium-browser", "google-chrome"]),
        find_program("CHROMEDRIVER", &["chromedriver"]),
    ) else {
        fail("chromium and chromedriver are needed (scripts/setup.sh installs them)".into())
    };
    let tmp = std::env::temp_dir().join(format!("fedsearch-bench-secagg-{}", std::process::id()));
    std::fs::create_dir_all(tmp.join("models")).unwrap();
    let cmd = www_command(&www_bin, &root.join("web"), &pkg, &tmp.join("models"));
    let (_www, addr) = start_listening("fedsearch-www", cmd);
    let (_driver, driver_url) = start_chromedriver(&driver).await;
    let s = Session::new(&driver_url, &chrome, &chrome_args(&tmp.join("profile")), &tmp.join("shots"), "secagg").await;
    s.goto(&format!("http://{addr}/bench.html?secagg={dim},{k}")).await;
    s.wait_for("the measurement", "document.body.dataset.state === 'done'", Duration::from_secs(3600)).await;
    let tab = s.js("return window.fedsearchSecagg", json!([])).await;
    s.quit().await;
    let _ = std::fs::remove_dir_all(&tmp);
    println!("secure aggregation, one client: {dim} values, {k} neighbours");
    println!(
        "{:<10} {:>9} {:>9} {:>9} {:>9} {:>9} {:>12} {:>12} {:>8}",
        "where", "keys ms", "shares ms", "mask ms", "unmask ms", "total ms", "bytes up", "bytes down", "traffic"
    );
    for (label, r) in [("native*", &native), ("tab", &tab)] {
        let f = |k: &str| r[k].as_f64().unwrap_or(f64::NAN);
        println!(
            "{label:<10} {:>9.0} {:>9.0} {:>9.0} {:>9.0} {:>9.0} {:>12.0} {:>12.0} {:>7.2}×",
            f("keysMs"),
            f("sharesMs"),
            f("maskMs"),
            f("unmaskMs"),
            f("totalMs"),
            f("bytesUp"),
            f("bytesDown"),
            f("trafficRatio")
        );
    }
    let ratio = tab["totalMs"].as_f64().unwrap_or(f64::NAN) / native["totalMs"].as_f64().unwrap_or(f64::NAN);
    println!(
        "tab / native* total time: {ratio:.2}× (* this binary's build profile: compare with `fedsearch bench secagg` from a release build)"
    );
}

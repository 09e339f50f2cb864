//! Runs the real `fedsearch simulate` binary on a tiny random BERT and an 8-document corpus.

mod common;

use common::setup;
use serde_json::Value;
use std::path::Path;
use std::process::{Command, Output};

fn simulate(dir: &Path, extra: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_fedsearch"))
        .arg("simulate")
        .arg("--model")
        .arg(dir.join("model"))
        .arg("--corpus")
        .arg(dir.join("corpus.jsonl"))
        .arg("--queries")
        .arg(dir.join("queries.jsonl"))
        .args(extra)
        .output()
        .expect("the fedsearch binary runs")
}

/// Runs a simulation that must succeed and returns its JSON report.
fn report(dir: &Path, name: &str, extra: &[&str]) -> Value {
    let out_path = dir.join(name);
    let mut args: Vec<&str> = vec!["--clients", "2", "--rounds", "2", "--local-steps", "3", "--batch-size", "8"];
    args.extend(extra);
    let p = out_path.to_str().unwrap().to_string();
    args.extend(["--json", &p]);
    let out = simulate(dir, &args);
    assert!(
        out.status.success(),
        "simulate {extra:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("top1") && stdout.contains("parallel_s"), "{stdout}");
    serde_json::from_str(&std::fs::read_to_string(out_path).unwrap()).unwrap()
}

fn rounds(r: &Value) -> &Vec<Value> {
    r["rounds"].as_array().expect("rounds is an array")
}

fn check_common(r: &Value) {
    let rs = rounds(r);
    assert_eq!(rs.len(), 2, "{r}");
    for (i, row) in rs.iter().enumerate() {
        assert_eq!(row["round"].as_u64(), Some(i as u64 + 1));
        for key in ["top1", "mrr10"] {
            let v = row[key].as_f64().unwrap_or(f64::NAN);
            assert!(v.is_finite() && (0.0..=1.0).contains(&v), "{key} = {v} in {row}");
        }
        assert!(row["bytes_per_client"].as_f64().unwrap() > 0.0);
        assert!(row["wall_s"].as_f64().unwrap() >= 0.0);
        assert!(row["parallel_s"].as_f64().unwrap() <= row["wall_s"].as_f64().unwrap() + 1e-6);
        assert!(row["eval_queries"].as_u64().unwrap() > 0);
    }
    assert_eq!(r["config"]["clients"].as_u64(), Some(2));
    assert_eq!(r["config"]["examples_per_client"].as_array().unwrap().len(), 2);
}

fn epsilon(row: &Value) -> Option<f64> {
    row.get("epsilon").and_then(Value::as_f64)
}

#[test]
fn simulate_head_adapter_dp_and_personal() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    setup(dir);

    // Head-only, shared, no DP.
    let plain = report(dir, "plain.json", &["--train", "head"]);
    check_common(&plain);
    assert!(rounds(&plain).iter().all(|r| epsilon(r).is_none() && r.get("epsilon").is_none_or(Value::is_null)));

    // Head-only, shared, DP: ε reported and growing; same wire size as without DP.
    let dp = report(dir, "dp.json", &["--train", "head", "--dp-sigma", "1.0", "--clip", "0.5", "--split", "non-iid"]);
    check_common(&dp);
    let eps: Vec<f64> = rounds(&dp).iter().map(|r| epsilon(r).expect("epsilon with DP")).collect();
    assert!(eps[0] > 0.0 && eps[0].is_finite() && eps[1] > eps[0], "{eps:?}");
    assert_eq!(rounds(&dp)[0]["bytes_per_client"], rounds(&plain)[0]["bytes_per_client"]);

    // Adapter + head, personal mode: only the adapter travels, so updates are smaller than the
    // shared-mode updates (adapter + head).
    let personal = report(dir, "personal.json", &["--train", "adapter", "--mode", "personal"]);
    check_common(&personal);
    let shared_bytes = rounds(&plain)[0]["bytes_per_client"].as_f64().unwrap();
    let personal_bytes = rounds(&personal)[0]["bytes_per_client"].as_f64().unwrap();
    assert!(personal_bytes < shared_bytes, "personal {personal_bytes} vs shared {shared_bytes}");
    assert_eq!(personal["config"]["mode"], "personal");
}

#[test]
fn centralised_baseline_runs() {
    let tmp = tempfile::tempdir().unwrap();
    setup(tmp.path());
    let out = simulate(tmp.path(), &["--clients", "1", "--rounds", "3", "--local-steps", "5"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(stdout.lines().filter(|l| l.trim_start().starts_with(char::is_numeric)).count(), 3, "{stdout}");
}

#[test]
fn bad_flags_exit_with_code_2() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    setup(dir);
    for extra in [
        &["--clients", "0"][..],
        &["--rounds", "0"],
        &["--clip", "0"],
        &["--clip=-1"],
        &["--dp-sigma", "0", "--clip", "1"],
        &["--dp-sigma=-2", "--clip", "1"],
        &["--dp-sigma", "NaN", "--clip", "1"],
        &["--local-steps", "0"],
        &["--dp-sigma", "1"],
        &["--clients", "9", "--split", "non-iid"],
        &["--mode", "personal", "--train", "head"],
    ] {
        let out = simulate(dir, extra);
        assert_eq!(out.status.code(), Some(2), "{extra:?}: {}", String::from_utf8_lossy(&out.stderr));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("error"), "{extra:?}: {err}");
    }
}

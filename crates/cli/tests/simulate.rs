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
    let mut args: Vec<&str> = vec!["--clients", "2", "--rounds", "2", "--local-steps", "3", "--batch-size", "8"];
    args.extend(extra);
    report_exactly(dir, name, &args)
}

/// Runs a simulation with exactly these arguments (and `--json`); it must succeed.
fn report_exactly(dir: &Path, name: &str, extra: &[&str]) -> Value {
    let out_path = dir.join(name);
    let mut args = extra.to_vec();
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
    // The start, evaluated before round 1 on the same queries.
    let start = &r["start"];
    for key in ["top1", "mrr10", "top10"] {
        let v = start[key].as_f64().unwrap_or(f64::NAN);
        assert!(v.is_finite() && (0.0..=1.0).contains(&v), "start {key} = {v} in {r}");
    }
    assert_eq!(start["eval_queries"], rs[0]["eval_queries"], "{r}");
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

    // A run that cannot move (learning rates of 1e-12) ends where it started: the start row is
    // the same measurement as a round's.
    let frozen = report(dir, "frozen.json", &["--train", "head", "--head-lr", "1e-12"]);
    for row in rounds(&frozen) {
        assert_eq!(row["top1"], frozen["start"]["top1"], "{frozen}");
        assert_eq!(row["mrr10"], frozen["start"]["mrr10"], "{frozen}");
    }
}

#[test]
fn centralised_baseline_runs() {
    let tmp = tempfile::tempdir().unwrap();
    setup(tmp.path());
    let out = simulate(tmp.path(), &["--clients", "1", "--rounds", "3", "--local-steps", "5"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8_lossy(&out.stdout);
    // The start's row (round 0), then one row per round.
    let rows: Vec<&str> = stdout.lines().filter(|l| l.trim_start().starts_with(char::is_numeric)).collect();
    assert_eq!(rows.len(), 4, "{stdout}");
    assert!(rows[0].trim_start().starts_with("0 ") && rows[0].contains("the start"), "{stdout}");
}

#[test]
fn bad_flags_exit_with_code_2() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    setup(dir);
    // Each bad flag exits 2 with a message that names what is wrong.
    for (extra, needle) in [
        (&["--clients", "0"][..], "--clients"),
        (&["--rounds", "0"], "--rounds"),
        (&["--clip", "0"], "--clip"),
        (&["--clip=-1"], "--clip"),
        (&["--dp-sigma", "0", "--clip", "1"], "--dp-sigma"),
        (&["--dp-sigma=-2", "--clip", "1"], "--dp-sigma"),
        (&["--dp-sigma", "NaN", "--clip", "1"], "--dp-sigma"),
        (&["--local-steps", "0"], "--local-steps"),
        (&["--dp-sigma", "1"], "needs --clip"),
        (&["--clients", "9", "--split", "non-iid"], "at least one document per client"),
        (&["--mode", "personal", "--train", "head"], "use --train adapter"),
        (&["--server-lr", "0"], "--server-lr"),
        (&["--head-pull=-1"], "--head-pull"),
        (&["--train-pairs", "missing-clicks.jsonl"], "missing-clicks.jsonl"),
        (&["--secure-aggregation"], "needs --clip"),
        (&["--secure-aggregation", "--clip", "1", "--dp-sigma", "1"], "not --dp-sigma"),
        (&["--secure-aggregation", "--clip", "1", "--clients", "1"], "at least 2 clients"),
        (&["--secure-aggregation", "--clip", "1", "--secagg-neighbours", "300"], "--secagg-neighbours"),
        (&["--dropout", "1"], "--dropout"),
        (&["--min-survivors", "0"], "--min-survivors"),
        (&["--target-epsilon", "8"], "needs --clip"),
        (&["--target-epsilon", "0", "--clip", "1"], "--target-epsilon"),
        (&["--target-epsilon", "8", "--clip", "1", "--dp-sigma", "1"], "drop --dp-sigma"),
    ] {
        let out = simulate(dir, extra);
        assert_eq!(out.status.code(), Some(2), "{extra:?}: {}", String::from_utf8_lossy(&out.stderr));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(needle), "{extra:?}: expected {needle:?} in {err}");
    }
}

/// Clicks are training pairs that stay on their client; federated training on them reaches the
/// global model. The clicks here relabel a near-copy of every test query to another document (a
/// rotation, against the pseudo-queries, which share the query's words with the original
/// document; each clicked five times), and the test set asks for that document: the tiny random
/// model finds it only with the clicks. A clicks file that shares a query with the test set is
/// refused.
#[test]
fn click_pairs_train_the_federated_model_and_may_not_leak_the_test_set() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    setup(dir);
    let lines: Vec<(String, String)> = std::fs::read_to_string(dir.join("queries.jsonl"))
        .unwrap()
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            (v["query"].as_str().unwrap().to_string(), v["doc_id"].as_str().unwrap().to_string())
        })
        .collect();
    let rotated = |i: usize| lines[(i + 3) % lines.len()].1.clone();
    let write = |name: &str, repeat: usize, f: &dyn Fn(usize, &str) -> String| {
        let once: String = lines
            .iter()
            .enumerate()
            .map(|(i, (q, _))| serde_json::json!({"query": f(i, q), "doc_id": rotated(i)}).to_string() + "\n")
            .collect();
        let text = once.repeat(repeat);
        std::fs::write(dir.join(name), text).unwrap();
        dir.join(name).to_str().unwrap().to_string()
    };
    // The test set is the rotated queries (simulate reads dir/queries.jsonl).
    let test = write("queries.jsonl", 1, &|_, q| q.to_string());
    let clicks = write("clicks.jsonl", 5, &|_, q| format!("the {q} please"));
    let run = |name: &str, extra: &[&str]| -> Value {
        let json = dir.join(name);
        let mut args = vec!["--clients", "2", "--rounds", "3", "--local-steps", "30", "--batch-size", "16"];
        args.extend(extra);
        args.extend(["--json", json.to_str().unwrap()]);
        let out = simulate(dir, &args);
        assert!(out.status.success(), "{extra:?}: {}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_str(&std::fs::read_to_string(json).unwrap()).unwrap()
    };
    let without = run("no-clicks.json", &[]);
    let with = run("clicks.json", &["--train-pairs", clicks.as_str()]);
    assert_eq!(with["config"]["click_pairs"].as_u64(), Some(40), "{}", with["config"]);
    assert_eq!(without["config"]["click_pairs"].as_u64(), Some(0));
    let last = |r: &Value, k: &str| rounds(r).last().unwrap()[k].as_f64().unwrap();
    let (m_with, m_without) = (last(&with, "mrr10"), last(&without, "mrr10"));
    assert!(m_with >= m_without + 0.2, "MRR@10 with clicks {m_with} vs without {m_without}");
    assert!(last(&with, "top1") > last(&without, "top1"), "top-1 with clicks must be higher");

    let out = simulate(dir, &["--train-pairs", test.as_str()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("shares the query"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Secure aggregation without noise publishes the same mean as plain FedAvg of the clipped
/// updates (to the rounding of 1/scale), so every round ranks the same; with distributed DP and
/// dropouts the run meets its ε target and reports the protocol's cost.
#[test]
fn secure_aggregation_matches_plain_fedavg_and_meets_its_epsilon() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    setup(dir);
    let base = ["--clients", "3", "--rounds", "2", "--clip", "0.5", "--local-steps", "3", "--batch-size", "8"];
    let plain = report_exactly(dir, "clip.json", &base);
    let secure = report_exactly(dir, "secure.json", &[&base[..], &["--secure-aggregation"]].concat());
    for (p, s) in rounds(&plain).iter().zip(rounds(&secure)) {
        for key in ["top1", "mrr10", "top10", "mean_update_norm"] {
            let (a, b) = (p[key].as_f64().unwrap(), s[key].as_f64().unwrap());
            assert!((a - b).abs() < 1e-6 * a.abs().max(1.0), "{key}: plain {a} vs secure {b}");
        }
        assert_eq!(s["survivors"].as_u64(), Some(3));
        assert!(s["secagg_bytes_per_client"].as_f64().unwrap() > 0.0);
        assert!(s["unmask_s"].as_f64().unwrap() > 0.0);
    }
    assert!(secure.get("epsilon").is_none_or(Value::is_null), "no noise, no epsilon: {}", secure["epsilon"]);

    // Distributed DP over 8 clients (a complete graph: any 3 may fail), 30 % dropping out at random
    // phases, 2 rounds, ε = 8 for the whole run.
    let dp = report_exactly(
        dir,
        "secure-dp.json",
        &[
            "--rounds",
            "2",
            "--batch-size",
            "8",
            "--clients",
            "8",
            "--clip",
            "0.5",
            "--secure-aggregation",
            "--secagg-neighbours",
            "7",
            "--dropout",
            "0.3",
            "--min-survivors",
            "0.25",
            "--target-epsilon",
            "8",
        ],
    );
    let eps = dp["epsilon"].as_f64().expect("the run's epsilon");
    let published = rounds(&dp).iter().filter(|r| r["published"] == true).count();
    assert_eq!(dp["published_rounds"].as_u64(), Some(published as u64));
    assert!(published >= 1, "{dp}");
    // The target holds for the whole run; it is spent in full when every round is published.
    assert!(eps <= 8.0 + 1e-9 && (published < 2 || eps > 7.9), "{eps} after {published} rounds");
    assert!(dp["config"]["skellam"]["mu"].as_f64().unwrap() > 0.0);
    assert_eq!(dp["final_top1"], rounds(&dp).last().unwrap()["top1"]);
    let survivors: Vec<u64> = rounds(&dp).iter().map(|r| r["survivors"].as_u64().unwrap()).collect();
    assert!(survivors.iter().all(|&n| (2..=8).contains(&n)), "{survivors:?}");

    // Local DP with a target: σ is chosen so that the whole run spends the target.
    let local = report(dir, "local-dp.json", &["--clip", "0.5", "--target-epsilon", "4"]);
    let eps = local["epsilon"].as_f64().unwrap();
    assert!(eps > 3.99 && eps <= 4.0 + 1e-9, "{eps}");
    assert!(local["config"]["noise_multiplier"].as_f64().unwrap() > 0.0);
}

/// Simulated clients train side by side (one per core, `FEDSEARCH_THREADS`), and the result does
/// not depend on how many: plain rounds with DP noise and secure rounds give the same report
/// on one thread and on three.
#[test]
fn the_result_does_not_depend_on_the_number_of_threads() {
    let dir = tempfile::tempdir().unwrap();
    setup(dir.path());
    let run = |threads: &str, name: &str, extra: &[&str]| -> Value {
        let out_path = dir.path().join(name);
        let mut args = vec!["--clients", "5", "--rounds", "2", "--local-steps", "3", "--batch-size", "8"];
        args.extend(extra);
        let p = out_path.to_str().unwrap().to_string();
        args.extend(["--json", &p]);
        let out = Command::new(env!("CARGO_BIN_EXE_fedsearch"))
            .env("FEDSEARCH_THREADS", threads)
            .arg("simulate")
            .arg("--model")
            .arg(dir.path().join("model"))
            .arg("--corpus")
            .arg(dir.path().join("corpus.jsonl"))
            .arg("--queries")
            .arg(dir.path().join("queries.jsonl"))
            .args(&args)
            .output()
            .expect("the fedsearch binary runs");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_str(&std::fs::read_to_string(out_path).unwrap()).unwrap()
    };
    let same = |r: &Value| -> Vec<String> {
        rounds(r)
            .iter()
            .map(|row| {
                format!(
                    "{} {} {} {} {}",
                    row["top1"], row["mrr10"], row["mean_update_norm"], row["mean_loss"], row["survivors"]
                )
            })
            .collect()
    };
    for (name, extra) in [
        ("dp", vec!["--clip", "1", "--dp-sigma", "0.5"]),
        ("secure", vec!["--clip", "1", "--secure-aggregation", "--secagg-neighbours", "2", "--dropout", "0.2"]),
    ] {
        let one = run("1", &format!("{name}-1.json"), &extra);
        let three = run("3", &format!("{name}-3.json"), &extra);
        assert_eq!(same(&one), same(&three), "{name}: one thread vs three");
        assert_eq!(one["final_top1"], three["final_top1"], "{name}");
    }
}

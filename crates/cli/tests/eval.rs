//! Runs the real `fedsearch eval` binary: the JSON report's shape on a tiny model, and exit code
//! 2 with a clear message for each kind of bad input.

mod common;

use common::setup;
use serde_json::Value;
use std::path::Path;
use std::process::{Command, Output};

fn eval(model: &Path, corpus: &Path, queries: &Path, extra: &[&str]) -> Output {
    // Short runs: 5 head epochs unless the test names its own.
    let head_epochs: &[&str] = if extra.contains(&"--head-epochs") { &[] } else { &["--head-epochs", "5"] };
    Command::new(env!("CARGO_BIN_EXE_fedsearch"))
        .args(["eval", "--max-len", "64", "--adapter-steps", "3"])
        .args(head_epochs)
        .arg("--model")
        .arg(model)
        .arg("--corpus")
        .arg(corpus)
        .arg("--queries")
        .arg(queries)
        .args(extra)
        .output()
        .expect("the fedsearch binary runs")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).to_string()
}

#[test]
fn eval_all_methods_writes_the_json_report() {
    let dir = tempfile::tempdir().unwrap();
    setup(dir.path());
    let out = dir.path().join("report.json");
    let o = eval(
        &dir.path().join("model"),
        &dir.path().join("corpus.jsonl"),
        &dir.path().join("queries.jsonl"),
        &["--method", "all", "--json", out.to_str().unwrap()],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let report: Value = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
    for m in ["mips", "bm25", "car", "car-adapter", "hybrid"] {
        let r = &report["methods"][m];
        for k in ["top1", "top5", "top10", "mrr10", "train_s", "pq_top1"] {
            let v = r[k].as_f64().unwrap_or_else(|| panic!("{m}.{k} missing in {report}"));
            assert!(v.is_finite() && v >= 0.0);
        }
        if m.starts_with("car") {
            // Each check's held-out top-1 and steps, the kept one among them (0: the start).
            let by_check = r["val_top1_by_check"].as_array().unwrap_or_else(|| panic!("{m}: {r}"));
            let steps: Vec<u64> = r["check_steps"].as_array().unwrap().iter().map(|s| s.as_u64().unwrap()).collect();
            assert!(!by_check.is_empty() && by_check.len() == steps.len(), "{m}: {r}");
            assert!(steps.windows(2).all(|w| w[0] < w[1]) && *steps.last().unwrap() <= r["steps"].as_u64().unwrap());
            let kept_step = r["kept_step"].as_u64().unwrap();
            assert!(kept_step == 0 || steps.contains(&kept_step), "{m}: {r}");
            let kept = r["kept_epoch"].as_u64().unwrap();
            assert_eq!(kept == 0, kept_step == 0, "{m}: {r}");
            let start = r["start_val_top1"].as_f64().unwrap_or_else(|| panic!("{m}: {r}"));
            assert!((0.0..=1.0).contains(&start), "{m}: {r}");
        }
        assert!(r["top1"].as_f64().unwrap() <= r["top5"].as_f64().unwrap());
        assert!(r["top5"].as_f64().unwrap() <= r["top10"].as_f64().unwrap());
    }
    // The hybrid's weights: the tab's (`HybridWeights::default()`), whatever the adapter did.
    let weights = |r: &Value| ["car", "mips", "bm25"].map(|k| r["hybrid_weights"][k].as_f64().unwrap());
    assert_eq!(weights(&report), [1.0, 0.25, 0.25], "{report}");
    // BM25 on these word-overlap queries must find most gold documents first.
    assert!(report["methods"]["bm25"]["top1"].as_f64().unwrap() >= 0.75, "{report}");
    // The trained methods against baselines computed here: chance (top-1 = 1/n) on the
    // held-out pseudo-queries, and the untrained start (`--head-epochs 0`: the keys alone) —
    // a CaR that ranks at random, in corpus order or that training made worse fails.
    let n_docs = std::fs::read_to_string(dir.path().join("corpus.jsonl")).unwrap().lines().count() as f64;
    // (The tiny random model's embeddings are nearly parallel, so its rankings are fragile: the
    // adapter's few steps are held to chance only.)
    for (m, times_chance) in [("car", 3.0), ("car-adapter", 1.0)] {
        let pq = report["methods"][m]["pq_top1"].as_f64().unwrap();
        assert!(
            pq >= times_chance / n_docs,
            "{m}: held-out pseudo-query top-1 {pq} vs chance {}: {report}",
            1.0 / n_docs
        );
    }
    let untrained_out = dir.path().join("untrained.json");
    let pairs_out = dir.path().join("pairs.jsonl");
    let scores_out = dir.path().join("scores.jsonl");
    let o_start = eval(
        &dir.path().join("model"),
        &dir.path().join("corpus.jsonl"),
        &dir.path().join("queries.jsonl"),
        &[
            "--method",
            "car",
            "--head-epochs",
            "0",
            "--json",
            untrained_out.to_str().unwrap(),
            "--pairs-out",
            pairs_out.to_str().unwrap(),
            "--scores-out",
            scores_out.to_str().unwrap(),
        ],
    );
    assert!(o_start.status.success(), "{}", stderr(&o_start));
    let untrained: Value = serde_json::from_slice(&std::fs::read(&untrained_out).unwrap()).unwrap();
    // `--pairs-out`: the texts the run trained and keyed on, as many as the report counts, every
    // one naming a document of the corpus.
    let corpus_ids: Vec<String> = std::fs::read_to_string(dir.path().join("corpus.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap()["id"].as_str().unwrap().to_string())
        .collect();
    let pairs: Vec<Value> =
        std::fs::read_to_string(&pairs_out).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let count = |kind: &str| pairs.iter().filter(|p| p["kind"] == kind).count() as u64;
    assert_eq!(count("heldout"), untrained["heldout_pseudo_queries"].as_u64().unwrap(), "{untrained}");
    assert_eq!(count("train"), untrained["training_pairs"].as_u64().unwrap(), "{untrained}");
    assert_eq!(count("train") + count("heldout") + count("question"), pairs.len() as u64, "no other kind");
    for p in &pairs {
        assert!(!p["query"].as_str().unwrap().is_empty(), "{p}");
        assert!(corpus_ids.iter().any(|id| id == p["doc_id"].as_str().unwrap()), "{p}");
    }
    // `--scores-out`: one line per test and held-out query, a score per document for every
    // method run (and MIPS, BM25), gold named by id; its CaR rows rank as the report says.
    let lines: Vec<Value> =
        std::fs::read_to_string(&scores_out).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let of_set = |set: &str| lines.iter().filter(|l| l["set"] == set).collect::<Vec<_>>();
    let (test, held) = (of_set("test"), of_set("heldout"));
    assert_eq!(test.len() as u64, untrained["queries"].as_u64().unwrap(), "{untrained}");
    assert_eq!(held.len() as u64, untrained["heldout_pseudo_queries"].as_u64().unwrap());
    assert_eq!(test.len() + held.len(), lines.len(), "no other set");
    let top1 = |rows: &[&Value], method: &str| {
        let hits = rows.iter().filter(|l| {
            let s: Vec<f64> = l[method].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
            assert_eq!(s.len() as f64, n_docs, "{method}: one score per document");
            let best = (0..s.len()).fold(0, |b, i| if s[i] > s[b] { i } else { b });
            l["gold"].as_array().unwrap().iter().any(|g| g.as_str().unwrap() == corpus_ids[best])
        });
        hits.count() as f64 / rows.len() as f64
    };
    for (rows, key) in [(&test, "top1"), (&held, "pq_top1")] {
        let reported = untrained["methods"]["car"][key].as_f64().unwrap();
        assert!((top1(rows, "car") - reported).abs() < 1e-3, "{key}: {} vs {reported}", top1(rows, "car"));
        for method in ["mips", "bm25"] {
            assert!((0.0..=1.0).contains(&top1(rows, method)));
        }
    }
    assert!(test.iter().all(|l| l.get("car_adapter").is_none()), "only the methods run");
    let (trained, start) = (
        report["methods"]["car"]["pq_top1"].as_f64().unwrap(),
        untrained["methods"]["car"]["pq_top1"].as_f64().unwrap(),
    );
    assert!(trained >= start, "training lowered the in-distribution top-1: {start} → {trained}");
    assert!(report["heldout_pseudo_queries"].as_u64().unwrap() > 0, "{report}");
    // `--hybrid-weights` overrides them; a run without the hybrid reports none.
    let chosen_out = dir.path().join("chosen.json");
    let o_chosen = eval(
        &dir.path().join("model"),
        &dir.path().join("corpus.jsonl"),
        &dir.path().join("queries.jsonl"),
        &["--method", "hybrid", "--hybrid-weights", "2,0,1", "--json", chosen_out.to_str().unwrap()],
    );
    assert!(o_chosen.status.success(), "{}", stderr(&o_chosen));
    let chosen: Value = serde_json::from_slice(&std::fs::read(&chosen_out).unwrap()).unwrap();
    assert_eq!(weights(&chosen), [2.0, 0.0, 1.0], "{chosen}");
    assert!(untrained.get("hybrid_weights").is_none(), "{untrained}");
    let table = String::from_utf8_lossy(&o.stdout);
    assert!(table.contains("car-adapter") && table.contains("mrr10") && table.contains("pq_top1"), "{table}");
}

#[test]
fn queries_with_several_gold_documents_count_a_hit_on_any_of_them() {
    let dir = tempfile::tempdir().unwrap();
    setup(dir.path());
    let run = |name: &str, lines: &str| -> Value {
        let q = dir.path().join(format!("{name}.jsonl"));
        std::fs::write(&q, lines).unwrap();
        let out = dir.path().join(format!("{name}.json"));
        let o = eval(
            &dir.path().join("model"),
            &dir.path().join("corpus.jsonl"),
            &q,
            &["--method", "bm25", "--json", out.to_str().unwrap()],
        );
        assert!(o.status.success(), "{}", stderr(&o));
        serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap()
    };
    // BM25 ranks "paris" first for this query; with "moon" alone as gold it misses at 1, with
    // "moon" or "paris" as gold it hits.
    let single = run("single", "{\"query\": \"capital of france\", \"doc_id\": \"moon\"}\n");
    let multi = run("multi", "{\"query\": \"capital of france\", \"doc_ids\": [\"moon\", \"paris\"]}\n");
    assert_eq!(single["methods"]["bm25"]["top1"].as_f64(), Some(0.0), "{single}");
    assert_eq!(multi["methods"]["bm25"]["top1"].as_f64(), Some(1.0), "{multi}");
    assert_eq!(multi["queries"].as_u64(), Some(1));
}

#[test]
fn bad_input_exits_with_code_2_and_a_message() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    setup(root);
    let (model, corpus, queries) = (root.join("model"), root.join("corpus.jsonl"), root.join("queries.jsonl"));
    let expect_2 = |o: Output, needle: &str| {
        assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
        assert!(stderr(&o).contains(needle), "expected {needle:?} in {}", stderr(&o));
    };

    // A missing model file.
    let missing = root.join("missing-model");
    std::fs::create_dir_all(&missing).unwrap();
    std::fs::copy(model.join("config.json"), missing.join("config.json")).unwrap();
    expect_2(eval(&missing, &corpus, &queries, &[]), "model.safetensors");

    // A corrupt safetensors file.
    let corrupt = root.join("corrupt-model");
    std::fs::create_dir_all(&corrupt).unwrap();
    for f in ["config.json", "tokenizer.json"] {
        std::fs::copy(model.join(f), corrupt.join(f)).unwrap();
    }
    let bytes = std::fs::read(model.join("model.safetensors")).unwrap();
    std::fs::write(corrupt.join("model.safetensors"), &bytes[..bytes.len() / 3]).unwrap();
    expect_2(eval(&corrupt, &corpus, &queries, &[]), "safetensors");

    // A tokenizer.json of another model (a vocabulary far larger than the model's).
    let other = root.join("other-tokenizer");
    std::fs::create_dir_all(&other).unwrap();
    for f in ["config.json", "model.safetensors"] {
        std::fs::copy(model.join(f), other.join(f)).unwrap();
    }
    let mut tok: Value = serde_json::from_slice(&std::fs::read(model.join("tokenizer.json")).unwrap()).unwrap();
    let vocab = tok["model"]["vocab"].as_object_mut().unwrap();
    for i in 0..500 {
        let n = vocab.len();
        vocab.insert(format!("extra{i}"), Value::from(n));
    }
    std::fs::write(other.join("tokenizer.json"), tok.to_string()).unwrap();
    expect_2(eval(&other, &corpus, &queries, &[]), "another model");

    // An empty corpus.
    let empty = root.join("empty.jsonl");
    std::fs::write(&empty, "\n").unwrap();
    expect_2(eval(&model, &empty, &queries, &[]), "no documents");

    // A query whose doc_id is not in the corpus.
    let bad_q = root.join("bad-queries.jsonl");
    std::fs::write(&bad_q, "{\"query\": \"capital of france\", \"doc_id\": \"nowhere\"}\n").unwrap();
    expect_2(eval(&model, &corpus, &bad_q, &[]), "\"nowhere\" is not in the corpus");

    // Several gold documents: an empty list, an unknown title, both fields at once.
    let cases = [
        ("{\"query\": \"capital of france\", \"doc_ids\": []}\n", "doc_ids is empty"),
        (
            "{\"query\": \"capital of france\", \"doc_ids\": [\"paris\", \"atlantis\"]}\n",
            "\"atlantis\" is not in the corpus",
        ),
        ("{\"query\": \"x\", \"doc_id\": \"paris\", \"doc_ids\": [\"rome\"]}\n", "not both"),
        ("{\"query\": \"x\"}\n", "no doc_id or doc_ids"),
        ("\n", "no queries"),
    ];
    for (i, (line, needle)) in cases.into_iter().enumerate() {
        let f = root.join(format!("bad-gold-{i}.jsonl"));
        std::fs::write(&f, line).unwrap();
        expect_2(eval(&model, &corpus, &f, &[]), needle);
    }

    // A malformed line names its line number.
    let broken = root.join("broken.jsonl");
    std::fs::write(&broken, "{\"id\": \"a\", \"text\": \"x\"}\nnot json\n").unwrap();
    expect_2(eval(&model, &broken, &queries, &[]), "corpus line 2");

    // An unknown method.
    expect_2(eval(&model, &corpus, &queries, &["--method", "magic"]), "unknown method");
    for w in ["1,1", "-1,1,1", "NaN,1,1", "0,0,0"] {
        expect_2(eval(&model, &corpus, &queries, &["--hybrid-weights", w]), "--hybrid-weights takes three numbers");
    }
}

/// `fedsearch data wiki --include-gold`: a subset that holds every gold article of a query file.
#[test]
fn data_wiki_subset_includes_every_gold_article() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let mut summaries = serde_json::Map::new();
    for i in 0..40 {
        summaries.insert(
            format!("Article {i}"),
            serde_json::json!({"extract": format!("Article {i} is a test article number {i}."), "description": format!("test article {i}")}),
        );
    }
    let source = root.join("summaries.json");
    std::fs::write(&source, Value::Object(summaries).to_string()).unwrap();
    let gold = root.join("gold.jsonl");
    std::fs::write(
        &gold,
        "{\"query\": \"which articles?\", \"doc_ids\": [\"Article 3\", \"Article 17\"]}\n{\"query\": \"q\", \"doc_id\": \"Article 31\"}\n",
    )
    .unwrap();
    let wiki = |out: &str, docs: &str, gold: &Path| {
        Command::new(env!("CARGO_BIN_EXE_fedsearch"))
            .args(["data", "wiki", "--docs", docs, "--out"])
            .arg(root.join(out))
            .arg("--source")
            .arg(&source)
            .arg("--include-gold")
            .arg(gold)
            .output()
            .unwrap()
    };
    for seed_dir in ["a", "b"] {
        let o = wiki(seed_dir, "10", &gold);
        assert!(o.status.success(), "{}", stderr(&o));
        let corpus = std::fs::read_to_string(root.join(seed_dir).join("corpus.jsonl")).unwrap();
        let ids: Vec<String> = corpus
            .lines()
            .map(|l| serde_json::from_str::<Value>(l).unwrap()["id"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(ids.len(), 10);
        for g in ["Article 3", "Article 17", "Article 31"] {
            assert!(ids.iter().any(|i| i == g), "{g} missing from {ids:?}");
        }
        // The descriptions file follows the subset.
        let queries = std::fs::read_to_string(root.join(seed_dir).join("queries.jsonl")).unwrap();
        assert_eq!(queries.lines().count(), 10);
    }
    // Too few documents for the gold articles, and a gold title that is not in the summaries.
    let o = wiki("c", "2", &gold);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("at least 3 documents"), "{}", stderr(&o));
    let unknown = root.join("unknown.jsonl");
    std::fs::write(&unknown, "{\"query\": \"q\", \"doc_ids\": [\"Atlantis\"]}\n").unwrap();
    let o = wiki("d", "10", &unknown);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("\"Atlantis\" is not in the wiki summaries"), "{}", stderr(&o));
}

#[test]
fn data_split_writes_disjoint_seeded_parts_and_refuses_bad_input() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    setup(root);
    let split = |queries: &Path, out: &str, extra: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_fedsearch"))
            .args(["data", "split", "--queries"])
            .arg(queries)
            .arg("--out")
            .arg(root.join(out))
            .args(extra)
            .output()
            .unwrap()
    };
    let queries = root.join("queries.jsonl");
    let o = split(&queries, "a", &["--test-fraction", "0.25", "--seed", "3"]);
    assert!(o.status.success(), "{}", stderr(&o));
    // Each line as (query, doc_id): the written key order may differ from the input's.
    let read = |p: &str| {
        std::fs::read_to_string(root.join(p))
            .unwrap()
            .lines()
            .map(|l| {
                let v: Value = serde_json::from_str(l).unwrap();
                (v["query"].to_string(), v["doc_id"].to_string())
            })
            .collect::<Vec<_>>()
    };
    let (train, test) = (read("a/train.jsonl"), read("a/test.jsonl"));
    assert_eq!((train.len(), test.len()), (6, 2));
    let mut all: Vec<(String, String)> = train.iter().chain(&test).cloned().collect();
    all.sort();
    let mut want = read("queries.jsonl");
    want.sort();
    assert_eq!(all, want, "the parts are the whole file");
    assert!(split(&queries, "b", &["--test-fraction", "0.25", "--seed", "3"]).status.success());
    assert_eq!(read("b/test.jsonl"), test, "seeded");

    for extra in [&["--test-fraction", "0"][..], &["--test-fraction", "1.5"]] {
        let o = split(&queries, "c", extra);
        assert_eq!(o.status.code(), Some(2), "{extra:?}");
        assert!(stderr(&o).contains("fraction"), "{}", stderr(&o));
    }
    let bad = root.join("bad.jsonl");
    std::fs::write(&bad, "{\"query\": \"a\", \"doc_id\": \"paris\"}\n{\"query\": \"b\", \"doc_ids\": []}\n").unwrap();
    let o = split(&bad, "d", &[]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("line 2") && stderr(&o).contains("doc_ids is empty"), "{}", stderr(&o));
}

/// Clicks (`--train-pairs`) are one pair per gold document, each counted `--click-weight` times
/// (3 by default, as in the tab).
#[test]
fn train_pairs_count_click_weight_times_per_gold_document() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    setup(root);
    let clicks = root.join("clicks.jsonl");
    std::fs::write(&clicks, "{\"query\": \"where kings lived\", \"doc_ids\": [\"rome\", \"book\"]}\n{\"query\": \"a sea battle\", \"doc_id\": \"ship\"}\n").unwrap();
    let pairs = |name: &str, extra: &[&str]| -> u64 {
        let out = root.join(name);
        let mut args = vec!["--method", "car", "--json", out.to_str().unwrap()];
        args.extend(extra);
        let o = eval(&root.join("model"), &root.join("corpus.jsonl"), &root.join("queries.jsonl"), &args);
        assert!(o.status.success(), "{}", stderr(&o));
        let r: Value = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
        r["training_pairs"].as_u64().unwrap()
    };
    let base = pairs("base.json", &[]);
    let c = clicks.to_str().unwrap();
    assert_eq!(pairs("w3.json", &["--train-pairs", c]), base + 3 * 3);
    assert_eq!(pairs("w1.json", &["--train-pairs", c, "--click-weight", "1"]), base + 3);
}

/// `bench encode` runs one encoder or several side by side (`--threads`) and says which; 0 is
/// refused with exit code 2.
#[test]
fn bench_encode_reports_its_encoders_and_refuses_zero() {
    let dir = tempfile::tempdir().unwrap();
    setup(dir.path());
    let bench = |threads: &str| {
        Command::new(env!("CARGO_BIN_EXE_fedsearch"))
            .args(["bench", "encode", "--max-len", "64", "--n", "10", "--batches", "1,4", "--threads", threads])
            .arg("--model")
            .arg(dir.path().join("model"))
            .output()
            .expect("the fedsearch binary runs")
    };
    for threads in ["1", "2"] {
        let o = bench(threads);
        assert!(o.status.success(), "{}", stderr(&o));
        let lines: Vec<Value> = String::from_utf8_lossy(&o.stdout)
            .lines()
            .filter(|l| l.starts_with('{'))
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 2, "one line per batch size");
        for l in &lines {
            assert_eq!(l["threads"].to_string(), threads, "{l}");
            assert_eq!(l["sentences"], 10, "{l}");
            assert!(l["sentences_per_s"].as_f64().unwrap() > 0.0, "{l}");
        }
    }
    let o = bench("0");
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("--threads needs at least 1"), "{}", stderr(&o));
}

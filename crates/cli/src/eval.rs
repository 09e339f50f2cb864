//! `fedsearch eval`: trains what each method needs on the corpus alone (pseudo-queries; the
//! queries file is the test set and is never trained on), then ranks every test query and
//! reports top-1/5/10 and MRR@10 per method, as a table and as JSON.

use crate::embed::{EmbedCache, embed};
use crate::error::{CliError, CliResult, read_input};
use crate::progress::bar;
use burn::prelude::*;
use fedsearch_core::adapter::SoftEmbeddingAdapter;
use fedsearch_core::data::{Corpus, parse_queries, parse_query_pairs, subset, to_jsonl};
use fedsearch_core::head::CarHead;
use fedsearch_core::index::{HybridWeights, SearchIndex, car_logits};
use fedsearch_core::metrics::{Metrics, MetricsBuilder};
use fedsearch_core::model::{ModelFiles, SentenceEncoder};
use fedsearch_core::pseudo::{PseudoQueryConfig, pseudo_queries};
use fedsearch_core::search::top_k;
use fedsearch_core::train::{Retriever, TrainConfig, TrainInputs, TrainReport, train};
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use web_time::Instant;

/// Every evaluable method, in report order.
pub const METHODS: [&str; 5] = ["mips", "bm25", "car", "car-adapter", "hybrid"];

/// Options of `fedsearch eval`.
#[derive(Debug, Clone)]
pub struct EvalOptions {
    pub model: PathBuf,
    pub corpus: PathBuf,
    pub queries: PathBuf,
    pub methods: Vec<String>,
    pub docs: Option<usize>,
    pub seed: u64,
    pub json: Option<PathBuf>,
    pub max_len: usize,
    pub head: TrainConfig,
    pub adapter: TrainConfig,
    /// Extra labelled training pairs (same format as queries), added to the pseudo-queries.
    pub train_pairs: Option<PathBuf>,
    pub hybrid: HybridWeights,
    /// Start the CaR head from the document embeddings (ranks like MIPS before training)
    /// instead of zeros.
    pub head_from_docs: bool,
    /// Folder caching frozen-encoder embeddings between runs.
    pub embed_cache: Option<PathBuf>,
}

/// One method's row of the report.
#[derive(Debug, Clone, Serialize)]
pub struct MethodResult {
    pub top1: f64,
    pub top5: f64,
    pub top10: f64,
    pub mrr10: f64,
    /// Seconds of training (for CaR: the optimiser on cached features, or end-to-end).
    pub train_s: f64,
    /// Seconds spent encoding with the frozen encoder (documents for MIPS, pseudo-queries for CaR).
    pub encode_s: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub examples_per_s: Option<f64>,
}

#[derive(Debug, Serialize)]
pub struct EvalReport {
    pub docs: usize,
    pub queries: usize,
    pub training_pairs: usize,
    pub methods: BTreeMap<String, MethodResult>,
}

fn row(m: Metrics, train_s: f64, encode_s: f64, report: Option<&TrainReport>) -> MethodResult {
    MethodResult {
        top1: m.top1,
        top5: m.top5,
        top10: m.top10,
        mrr10: m.mrr10,
        train_s,
        encode_s,
        examples_per_s: report.map(|r| r.examples_per_s),
    }
}

fn rank_all(n_queries: usize, gold: &[usize], mut scores: impl FnMut(usize) -> Vec<f32>) -> Metrics {
    let mut m = MetricsBuilder::default();
    for q in 0..n_queries {
        m.add(&top_k(&scores(q), 10), gold[q]);
    }
    m.finish()
}

async fn train_with_bar(
    model: Retriever,
    inputs: TrainInputs<'_>,
    targets: &[usize],
    cfg: &TrainConfig,
    device: &Device,
    label: &str,
) -> CliResult<(Retriever, TrainReport)> {
    let pb = bar(0, label);
    let result = train(model, inputs, targets, cfg, device, &mut |p| {
        pb.set_length(p.total_steps as u64);
        pb.set_position(p.step as u64);
        match p.val_top1 {
            Some(v) => pb.set_message(format!("{label} val@1 {v:.3}")),
            None => pb.set_message(format!("{label} loss {:.3}", p.loss)),
        }
        true
    })
    .await?;
    pb.finish();
    Ok(result)
}

/// Loads the corpus and test queries, applying `--docs`.
pub fn load_data(corpus: &Path, queries: &Path, docs: Option<usize>, seed: u64) -> CliResult<(Corpus, Vec<(String, usize)>)> {
    let corpus = Corpus::from_jsonl(&read_input(corpus, "corpus")?)?;
    let qtext = read_input(queries, "queries")?;
    // Resolve every id against the full corpus first, so a bad doc_id is an error, not a drop.
    parse_queries(&qtext, &corpus)?;
    let (corpus, qtext) = match docs {
        Some(n) if n < corpus.len() => {
            let (c, q) = subset(&corpus, &parse_query_pairs(&qtext)?, n, seed)?;
            (c, to_jsonl(&q))
        }
        _ => (corpus, qtext),
    };
    let queries = parse_queries(&qtext, &corpus).map_err(|e| match e {
        fedsearch_core::CoreError::Data(m) if m.contains("no queries") => {
            CliError::Input("no query's gold document is in the --docs subset".into())
        }
        e => e.into(),
    })?;
    Ok((corpus, queries))
}

/// Runs the evaluation and prints the table; returns the report.
pub fn run(opts: &EvalOptions) -> CliResult<EvalReport> {
    for m in &opts.methods {
        if !METHODS.contains(&m.as_str()) {
            return Err(CliError::Input(format!("unknown method {m:?}; use one of {METHODS:?} or all")));
        }
    }
    let (corpus, queries) = load_data(&opts.corpus, &opts.queries, opts.docs, opts.seed)?;
    let device = Device::flex();
    let files = ModelFiles::read_dir(&opts.model)?;
    let enc = SentenceEncoder::load(&files, &device, opts.max_len)?;
    let cache = EmbedCache::new(opts.embed_cache.clone(), &files, opts.max_len);
    let wants = |m: &str| opts.methods.iter().any(|x| x == m);
    let needs_car = wants("car") || wants("car-adapter") || wants("hybrid");
    eprintln!("{} documents, {} test queries", corpus.len(), queries.len());

    pollster::block_on(async {
        let mut methods = BTreeMap::new();
        let q_texts: Vec<String> = queries.iter().map(|(q, _)| q.clone()).collect();
        let gold: Vec<usize> = queries.iter().map(|(_, d)| *d).collect();
        let t = Instant::now();
        let doc_texts = corpus.full_texts();
        let doc_emb = embed(&enc, &doc_texts, None, "documents", &cache).await?;
        let index_s = t.elapsed().as_secs_f64();
        let t = Instant::now();
        // Builds the BM25 index too: its time is BM25's training time.
        let index = SearchIndex::from_parts(corpus.ids(), doc_emb, enc.dim(), &doc_texts);
        let bm25_build_s = t.elapsed().as_secs_f64();
        let q_emb = embed(&enc, &q_texts, None, "test queries", &cache).await?;
        let d = enc.dim();
        let q_row = |q: usize| &q_emb[q * d..(q + 1) * d];

        if wants("mips") {
            let m = rank_all(queries.len(), &gold, |q| index.mips_scores(q_row(q)));
            methods.insert("mips".to_string(), row(m, 0.0, index_s, None));
        }
        if wants("bm25") {
            let m = rank_all(queries.len(), &gold, |q| index.bm25_scores(&q_texts[q]));
            methods.insert("bm25".to_string(), row(m, bm25_build_s, 0.0, None));
        }
        let mut pairs = pseudo_queries(&corpus, &PseudoQueryConfig { seed: opts.seed, ..Default::default() });
        if let Some(p) = &opts.train_pairs {
            pairs.extend(parse_queries(&read_input(p, "training pairs")?, &corpus)?);
        }
        let p_texts: Vec<String> = pairs.iter().map(|(q, _)| q.clone()).collect();
        let p_targets: Vec<usize> = pairs.iter().map(|(_, d)| *d).collect();
        let mut best_logits: Option<Vec<f32>> = None;
        if needs_car {
            let t = Instant::now();
            let p_emb = embed(&enc, &p_texts, None, "pseudo-queries", &cache).await?;
            let encode_s = t.elapsed().as_secs_f64();
            let head = if opts.head_from_docs {
                CarHead::from_document_embeddings(&index.doc_emb, corpus.len(), d, &device)
            } else {
                CarHead::zeros(d, corpus.len(), &device)
            };
            let model = Retriever { adapter: SoftEmbeddingAdapter::identity(d, &device), head };
            let (car, rep) = train_with_bar(model, TrainInputs::Cached(&p_emb), &p_targets, &opts.head, &device, "head").await?;
            let train_s = rep.seconds;
            let logits = car_logits(&car, &q_emb, d, &device).await?;
            let n = corpus.len();
            if wants("car") {
                let m = rank_all(queries.len(), &gold, |q| logits[q * n..(q + 1) * n].to_vec());
                methods.insert("car".to_string(), row(m, train_s, encode_s, Some(&rep)));
            }
            best_logits = Some(logits);
            if wants("car-adapter") || wants("hybrid") {
                let t = Instant::now();
                let inputs = TrainInputs::Texts { encoder: &enc, texts: &p_texts };
                let (tuned, rep2) = train_with_bar(car, inputs, &p_targets, &opts.adapter, &device, "adapter+head").await?;
                let tuned_q = embed(&enc, &q_texts, Some(&tuned.adapter), "test queries+adapter", &cache).await?;
                let logits = car_logits(&tuned, &tuned_q, d, &device).await?;
                let adapter_s = train_s + rep2.seconds;
                if wants("car-adapter") {
                    let m = rank_all(queries.len(), &gold, |q| logits[q * n..(q + 1) * n].to_vec());
                    let encode_all = encode_s + t.elapsed().as_secs_f64() - rep2.seconds;
                    methods.insert("car-adapter".to_string(), row(m, adapter_s, encode_all, Some(&rep2)));
                }
                best_logits = Some(logits);
            }
        }
        if wants("hybrid") {
            let logits = best_logits.as_ref().expect("hybrid trains CaR first");
            let n = corpus.len();
            let m = rank_all(queries.len(), &gold, |q| {
                index.hybrid_scores(&logits[q * n..(q + 1) * n], q_row(q), &q_texts[q], opts.hybrid)
            });
            let (train_s, encode_s) = methods
                .get("car-adapter")
                .or(methods.get("car"))
                .map_or((0.0, 0.0), |r| (r.train_s, r.encode_s));
            methods.insert("hybrid".to_string(), row(m, train_s, encode_s, None));
        }
        let report = EvalReport { docs: corpus.len(), queries: queries.len(), training_pairs: pairs.len(), methods };
        print_table(&report);
        if let Some(path) = &opts.json {
            let text = serde_json::to_string_pretty(&report).expect("report serialises");
            std::fs::write(path, text).map_err(|e| CliError::Io(format!("{}: {e}", path.display())))?;
        }
        Ok(report)
    })
}

fn print_table(r: &EvalReport) {
    println!("{} documents, {} test queries, {} training pairs", r.docs, r.queries, r.training_pairs);
    println!(
        "{:<12} {:>7} {:>7} {:>7} {:>7} {:>9} {:>9} {:>10}",
        "method", "top1", "top5", "top10", "mrr10", "train_s", "encode_s", "ex/s"
    );
    for name in METHODS {
        if let Some(m) = r.methods.get(name) {
            let eps = m.examples_per_s.map_or("-".to_string(), |e| format!("{e:.0}"));
            println!(
                "{:<12} {:>7.3} {:>7.3} {:>7.3} {:>7.3} {:>9.1} {:>9.1} {:>10}",
                name, m.top1, m.top5, m.top10, m.mrr10, m.train_s, m.encode_s, eps
            );
        }
    }
}

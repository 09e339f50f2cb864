//! `fedsearch eval`: trains what each method needs on the corpus alone (pseudo-queries; the
//! queries file is the test set and is never trained on), then ranks every test query and
//! reports top-1/5/10 and MRR@10 per method, as a table and as JSON. A test query may name
//! several gold documents (`doc_ids`): a hit at k is any of them in the top k. Beside the test
//! set, every method is also scored on held-out pseudo-queries of the same generator that CaR
//! trains on (the in-distribution figure, `pq_top1`), which are never trained on either.

use crate::embed::{EmbedCache, embed};
use crate::error::{CliError, CliResult, read_input};
use crate::progress::bar;
use burn::prelude::*;
use fedsearch_core::CoreError;
use fedsearch_core::adapter::SoftEmbeddingAdapter;
use fedsearch_core::data::{Corpus, LabelledQuery, parse_queries, parse_query_lines, subset, to_jsonl, training_pairs};
use fedsearch_core::head::{CENTROID_MIX, CarHead, QuerySet, keys_towards};
use fedsearch_core::index::{HybridWeights, SearchIndex, car_logits};
use fedsearch_core::metrics::{Metrics, MetricsBuilder};
use fedsearch_core::model::{ModelFiles, SentenceEncoder};
use fedsearch_core::pseudo::{PseudoQueryConfig, QUESTION_MAX_WORDS, pseudo_queries};
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
    /// How many times each of those counts.
    pub click_weight: usize,
    /// The hybrid's weights; `None`: `HybridWeights::default()`, the tab's.
    pub hybrid: Option<HybridWeights>,
    /// Where the CaR head starts.
    pub head_init: HeadInit,
    /// How far centroid keys also move towards the document's category questions (0: not).
    pub question_mix: f32,
    /// Fraction of the pseudo-queries held out from training for the in-distribution figure.
    pub pq_holdout: f64,
    /// Folder caching frozen-encoder embeddings between runs.
    pub embed_cache: Option<PathBuf>,
    /// Where to write the training, held-out and category-question texts (JSON lines).
    pub pairs_out: Option<PathBuf>,
    /// Where to write every method's scores per test and held-out query (JSON lines).
    pub scores_out: Option<PathBuf>,
}

/// Where the CaR head starts before training.
#[derive(Debug, Clone, Copy, PartialEq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum HeadInit {
    /// All zeros: every document equally likely.
    Zeros,
    /// The document embeddings: ranks exactly like MIPS before training.
    Docs,
    /// Each document embedding moved halfway towards the mean of its pseudo-queries' (and, with
    /// a question mix, towards its category questions': `pseudo::category_questions`).
    Centroid,
    /// Each document embedding moved towards its category questions only (the tab's keys: it
    /// embeds no pseudo-queries when documents are added).
    Questions,
}

/// The category questions of a corpus, embedded, and how far keys move towards them.
pub struct CategoryQuestions {
    pub emb: Vec<f32>,
    pub targets: Vec<usize>,
    pub mix: f32,
}

impl CategoryQuestions {
    /// `pseudo::category_questions` of `corpus`, embedded — none (nothing embedded) when `mix`
    /// is 0 or the keys `init` makes do not use them.
    pub async fn embed(
        enc: &SentenceEncoder,
        corpus: &fedsearch_core::data::Corpus,
        init: HeadInit,
        mix: f32,
        cache: &EmbedCache,
    ) -> CliResult<Self> {
        if mix == 0.0 || !matches!(init, HeadInit::Centroid | HeadInit::Questions) {
            return Ok(Self { emb: Vec::new(), targets: Vec::new(), mix: 0.0 });
        }
        let pairs = fedsearch_core::pseudo::category_questions(corpus, QUESTION_MAX_WORDS);
        let texts: Vec<String> = pairs.iter().map(|(q, _)| q.clone()).collect();
        let emb = embed(enc, &texts, None, "category questions", cache).await?;
        Ok(Self { emb, targets: pairs.into_iter().map(|(_, d)| d).collect(), mix })
    }

    fn query_set(&self) -> QuerySet<'_> {
        QuerySet { emb: &self.emb, targets: &self.targets, mix: self.mix }
    }
}

/// What the head's keys are computed from, wherever the documents are (`eval`, `simulate`).
pub struct KeySources<'a> {
    /// Frozen document embeddings, row-major `[n_docs, d]`.
    pub doc_emb: &'a [f32],
    /// Frozen pseudo-query embeddings and their documents (never clicks).
    pub pq_emb: &'a [f32],
    pub pq_targets: &'a [usize],
    pub questions: &'a CategoryQuestions,
    pub d: usize,
}

impl HeadInit {
    /// The head's fixed keys (row-major `[n_docs, d]`; `None` for `Zeros`) from the frozen
    /// document embeddings and the pseudo-queries' (never clicks: keys must be what any holder
    /// of the documents computes).
    pub fn keys(self, src: &KeySources<'_>) -> Option<Vec<f32>> {
        let (doc_emb, d) = (src.doc_emb, src.d);
        match self {
            HeadInit::Zeros => None,
            HeadInit::Docs => Some(doc_emb.to_vec()),
            HeadInit::Centroid => Some(keys_towards(
                doc_emb,
                &[QuerySet { emb: src.pq_emb, targets: src.pq_targets, mix: CENTROID_MIX }, src.questions.query_set()],
                d,
            )),
            HeadInit::Questions => Some(keys_towards(doc_emb, &[src.questions.query_set()], d)),
        }
    }

    /// A fresh head (zero residual and bias) with these keys.
    pub fn head(self, src: &KeySources<'_>, device: &Device) -> CarHead {
        let n = src.doc_emb.len() / src.d.max(1);
        match self.keys(src) {
            Some(k) => CarHead::from_keys(&k, n, src.d, device),
            None => CarHead::zeros(src.d, n, device),
        }
    }
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
    /// Top-1 on held-out pseudo-queries (in-distribution; never trained on).
    pub pq_top1: f64,
    /// The trained methods' run: the epoch kept by early stopping (0: the start was never
    /// beaten on the training loop's own held-out pairs) and steps taken.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kept_epoch: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub steps: Option<usize>,
    /// Steps taken by the kept model (0: the start).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kept_step: Option<usize>,
    /// The training loop's held-out top-1 at each check (what chose the kept model): every
    /// epoch's end, and for the head every `HEAD_CHECK_EVERY` steps within an epoch.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub val_top1_by_check: Option<Vec<f64>>,
    /// Steps taken at each check of `val_top1_by_check`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub check_steps: Option<Vec<usize>>,
    /// The same held-out top-1 of the model before training (what epoch 0 stands for).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub start_val_top1: Option<f64>,
}

#[derive(Debug, Serialize)]
pub struct EvalReport {
    pub docs: usize,
    pub queries: usize,
    pub training_pairs: usize,
    /// Held-out pseudo-queries behind `pq_top1`.
    pub heldout_pseudo_queries: usize,
    /// The weights the hybrid ran with (absent when it did not run).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hybrid_weights: Option<HybridWeights>,
    pub methods: BTreeMap<String, MethodResult>,
}

fn row(m: Metrics, pq: Metrics, train_s: f64, encode_s: f64, report: Option<&TrainReport>) -> MethodResult {
    MethodResult {
        pq_top1: pq.top1,
        top1: m.top1,
        top5: m.top5,
        top10: m.top10,
        mrr10: m.mrr10,
        train_s,
        encode_s,
        examples_per_s: report.map(|r| r.examples_per_s),
        kept_epoch: report.map(|r| r.best_epoch),
        steps: report.map(|r| r.steps),
        kept_step: report.map(|r| r.best_step),
        val_top1_by_check: report.map(|r| r.val_top1_by_check.clone()),
        check_steps: report.map(|r| r.check_steps.clone()),
        start_val_top1: report.and_then(|r| r.start_val_top1),
    }
}

fn rank_all(gold: &[Vec<usize>], mut scores: impl FnMut(usize) -> Vec<f32>) -> Metrics {
    let mut m = MetricsBuilder::default();
    for (q, g) in gold.iter().enumerate() {
        m.add(&top_k(&scores(q), 10), g);
    }
    m.finish()
}

/// Rows `q` of a row-major `[n, n_docs]` score matrix.
fn row_of(scores: &[f32], n_docs: usize) -> impl Fn(usize) -> Vec<f32> + '_ {
    move |q| scores[q * n_docs..(q + 1) * n_docs].to_vec()
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

/// Loads the corpus and test queries, applying `--docs` (a seeded subset; queries keep the gold
/// documents that are in it and are dropped when none is).
pub fn load_data(
    corpus: &Path,
    queries: &Path,
    docs: Option<usize>,
    seed: u64,
) -> CliResult<(Corpus, Vec<LabelledQuery>)> {
    let corpus = Corpus::from_jsonl(&read_input(corpus, "corpus")?)?;
    let qtext = read_input(queries, "queries")?;
    // Resolve every id against the full corpus first, so a bad doc_id is an error, not a drop.
    parse_queries(&qtext, &corpus)?;
    let (corpus, qtext) = match docs {
        Some(n) if n < corpus.len() => {
            let (c, q) = subset(&corpus, &parse_query_lines(&qtext)?, n, &[], seed)?;
            (c, to_jsonl(&q))
        }
        _ => (corpus, qtext),
    };
    let queries = parse_queries(&qtext, &corpus).map_err(|e| match e {
        CoreError::NoQueries => CliError::Input("no query's gold document is in the --docs subset".into()),
        e => e.into(),
    })?;
    Ok((corpus, queries))
}

/// (query text, document index) training pairs.
pub type Pairs = Vec<(String, usize)>;

/// Splits pseudo-query pairs into (training, held out): a seeded `fraction` is held out.
pub fn split_heldout(pairs: Pairs, fraction: f64, seed: u64) -> (Pairs, Pairs) {
    use rand::SeedableRng;
    use rand::seq::SliceRandom;
    let mut order: Vec<usize> = (0..pairs.len()).collect();
    order.shuffle(&mut rand_chacha::ChaCha8Rng::seed_from_u64(seed ^ 0x5E_ED0F_4E1D));
    let n_hold = ((pairs.len() as f64) * fraction.clamp(0.0, 0.5)) as usize;
    let mut held = vec![false; pairs.len()];
    order[..n_hold].iter().for_each(|&i| held[i] = true);
    let (h, t): (Vec<_>, Vec<_>) = pairs.into_iter().zip(held).partition(|(_, h)| *h);
    (t.into_iter().map(|(p, _)| p).collect(), h.into_iter().map(|(p, _)| p).collect())
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
        let gold: Vec<Vec<usize>> = queries.iter().map(|(_, g)| g.clone()).collect();
        // Pseudo-queries: most train CaR, a seeded part is held out for the in-distribution figure.
        let all_pairs = pseudo_queries(&corpus, &PseudoQueryConfig { seed: opts.seed, ..Default::default() });
        let (mut pairs, heldout) = split_heldout(all_pairs, opts.pq_holdout, opts.seed);
        if let Some(path) = &opts.pairs_out {
            write_pairs(path, &corpus, &pairs, &heldout)?;
        }
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
        let n = corpus.len();
        let q_row = |q: usize| &q_emb[q * d..(q + 1) * d];

        let h_texts: Vec<String> = heldout.iter().map(|(q, _)| q.clone()).collect();
        let h_gold: Vec<Vec<usize>> = heldout.iter().map(|(_, d)| vec![*d]).collect();
        let h_emb = embed(&enc, &h_texts, None, "held-out pseudo-queries", &cache).await?;
        let h_row = |q: usize| &h_emb[q * d..(q + 1) * d];

        if wants("mips") {
            let m = rank_all(&gold, |q| index.mips_scores(q_row(q)));
            let pq = rank_all(&h_gold, |q| index.mips_scores(h_row(q)));
            methods.insert("mips".to_string(), row(m, pq, 0.0, index_s, None));
        }
        if wants("bm25") {
            let m = rank_all(&gold, |q| index.bm25_scores(&q_texts[q]));
            let pq = rank_all(&h_gold, |q| index.bm25_scores(&h_texts[q]));
            methods.insert("bm25".to_string(), row(m, pq, bm25_build_s, 0.0, None));
        }
        // Labelled pairs (clicks) train the head but never shape its keys.
        let n_pseudo = pairs.len();
        let mut n_clicks = 0;
        if let Some(p) = &opts.train_pairs {
            let clicks = training_pairs(parse_queries(&read_input(p, "training pairs")?, &corpus)?);
            n_clicks = clicks.len();
            // Each counts `click_weight` times, as a click does in the tab.
            fedsearch_core::pseudo::add_clicks(&mut pairs, &clicks, opts.click_weight);
        }
        let p_texts: Vec<String> = pairs.iter().map(|(q, _)| q.clone()).collect();
        let p_targets: Vec<usize> = pairs.iter().map(|(_, d)| *d).collect();
        // CaR logits of the best-trained model for the test queries and the held-out pseudo-queries.
        let mut best_logits: Option<(Vec<f32>, Vec<f32>)> = None;
        // Per method run, its logits for the test queries and the held-out ones (`--scores-out`).
        let mut car_scores: Vec<NamedLogits> = Vec::new();
        if needs_car {
            let t = Instant::now();
            // Two cache entries: the pseudo-queries' stays valid whatever clicks are added. Each
            // click is embedded once; its repeats (`click_weight`) reuse the rows.
            let mut p_emb = embed(&enc, &p_texts[..n_pseudo], None, "pseudo-queries", &cache).await?;
            let click_emb =
                embed(&enc, &p_texts[n_pseudo..n_pseudo + n_clicks], None, "training pairs", &cache).await?;
            while p_emb.len() < p_texts.len() * d {
                p_emb.extend_from_slice(&click_emb);
            }
            let encode_s = t.elapsed().as_secs_f64();
            let questions = CategoryQuestions::embed(&enc, &corpus, opts.head_init, opts.question_mix, &cache).await?;
            let sources = KeySources {
                doc_emb: &index.doc_emb,
                pq_emb: &p_emb[..n_pseudo * d],
                pq_targets: &p_targets[..n_pseudo],
                questions: &questions,
                d,
            };
            let head = opts.head_init.head(&sources, &device);
            let model = Retriever { adapter: SoftEmbeddingAdapter::identity(d, &device), head };
            let head_cfg = opts.head.clone().for_examples(p_targets.len());
            let (car, rep) =
                train_with_bar(model, TrainInputs::Cached(&p_emb), &p_targets, &head_cfg, &device, "head").await?;
            let train_s = rep.seconds;
            let logits = car_logits(&car, &q_emb, d, &device).await?;
            let h_logits = car_logits(&car, &h_emb, d, &device).await?;
            if wants("car") {
                let m = rank_all(&gold, row_of(&logits, n));
                let pq = rank_all(&h_gold, row_of(&h_logits, n));
                methods.insert("car".to_string(), row(m, pq, train_s, encode_s, Some(&rep)));
            }
            if opts.scores_out.is_some() {
                car_scores.push(("car", (logits.clone(), h_logits.clone())));
            }
            best_logits = Some((logits, h_logits));
            if wants("car-adapter") || wants("hybrid") {
                let t = Instant::now();
                let inputs = TrainInputs::Texts { encoder: &enc, texts: &p_texts };
                let (tuned, rep2) =
                    train_with_bar(car, inputs, &p_targets, &opts.adapter, &device, "adapter+head").await?;
                let tuned_q = embed(&enc, &q_texts, Some(&tuned.adapter), "test queries+adapter", &cache).await?;
                let tuned_h = embed(&enc, &h_texts, Some(&tuned.adapter), "held-out+adapter", &cache).await?;
                let logits = car_logits(&tuned, &tuned_q, d, &device).await?;
                let h_logits = car_logits(&tuned, &tuned_h, d, &device).await?;
                let adapter_s = train_s + rep2.seconds;
                if wants("car-adapter") {
                    let m = rank_all(&gold, row_of(&logits, n));
                    let pq = rank_all(&h_gold, row_of(&h_logits, n));
                    let encode_all = encode_s + t.elapsed().as_secs_f64() - rep2.seconds;
                    methods.insert("car-adapter".to_string(), row(m, pq, adapter_s, encode_all, Some(&rep2)));
                }
                if opts.scores_out.is_some() {
                    car_scores.push(("car_adapter", (logits.clone(), h_logits.clone())));
                }
                best_logits = Some((logits, h_logits));
            }
        }
        let mut hybrid_weights = None;
        if wants("hybrid") {
            let weights = opts.hybrid.unwrap_or_default();
            hybrid_weights = Some(weights);
            let (logits, h_logits) = best_logits.as_ref().expect("hybrid trains CaR first");
            let m =
                rank_all(&gold, |q| index.hybrid_scores(&logits[q * n..(q + 1) * n], q_row(q), &q_texts[q], weights));
            let pq = rank_all(&h_gold, |q| {
                index.hybrid_scores(&h_logits[q * n..(q + 1) * n], h_row(q), &h_texts[q], weights)
            });
            let (train_s, encode_s) =
                methods.get("car-adapter").or(methods.get("car")).map_or((0.0, 0.0), |r| (r.train_s, r.encode_s));
            methods.insert("hybrid".to_string(), row(m, pq, train_s, encode_s, None));
        }
        if let Some(path) = &opts.scores_out {
            let test = ScoreSet { name: "test", texts: &q_texts, gold: &gold, emb: &q_emb, logits_of: 0 };
            let held = ScoreSet { name: "heldout", texts: &h_texts, gold: &h_gold, emb: &h_emb, logits_of: 1 };
            write_scores(path, &index, &corpus, d, &[test, held], &car_scores)?;
        }
        let report = EvalReport {
            docs: corpus.len(),
            queries: queries.len(),
            training_pairs: pairs.len(),
            heldout_pseudo_queries: heldout.len(),
            hybrid_weights,
            methods,
        };
        print_table(&report);
        if let Some(path) = &opts.json {
            let text = serde_json::to_string_pretty(&report).expect("report serialises");
            std::fs::write(path, text).map_err(|e| CliError::Io(format!("{}: {e}", path.display())))?;
        }
        Ok(report)
    })
}

/// Writes the pseudo-queries trained on, those held out, and the category questions the keys
/// move towards, one JSON line each: `{"kind", "query", "doc_id"}`.
fn write_pairs(path: &Path, corpus: &Corpus, train: &[(String, usize)], heldout: &[(String, usize)]) -> CliResult<()> {
    let questions = fedsearch_core::pseudo::category_questions(corpus, QUESTION_MAX_WORDS);
    let mut out = String::new();
    for (kind, pairs) in [("train", train), ("heldout", heldout), ("question", &questions[..])] {
        for (query, doc) in pairs {
            let line = serde_json::json!({ "kind": kind, "query": query, "doc_id": corpus.docs[*doc].id });
            out.push_str(&line.to_string());
            out.push('\n');
        }
    }
    std::fs::write(path, out).map_err(|e| CliError::Io(format!("{}: {e}", path.display())))
}

/// A CaR method's name and its logits `[queries, docs]` for the test queries and the held-out ones.
type NamedLogits = (&'static str, (Vec<f32>, Vec<f32>));

/// One set of ranked queries for `--scores-out`: its texts, gold positions, frozen embeddings,
/// and which of a method's two logit matrices (test 0, held-out 1) holds its rows.
struct ScoreSet<'a> {
    name: &'static str,
    texts: &'a [String],
    gold: &'a [Vec<usize>],
    emb: &'a [f32],
    logits_of: usize,
}

/// Writes every query's scores over all documents, per method, as JSON lines (`--scores-out`).
fn write_scores(
    path: &Path,
    index: &SearchIndex,
    corpus: &Corpus,
    d: usize,
    sets: &[ScoreSet],
    car_scores: &[NamedLogits],
) -> CliResult<()> {
    use std::io::Write;
    let io_err = |e: std::io::Error| CliError::Io(format!("{}: {e}", path.display()));
    let file = std::fs::File::create(path).map_err(io_err)?;
    let mut out = std::io::BufWriter::new(file);
    let n = corpus.len();
    for set in sets {
        for (q, text) in set.texts.iter().enumerate() {
            let mut line = serde_json::Map::new();
            line.insert("set".into(), set.name.into());
            line.insert("query".into(), text.as_str().into());
            let gold: Vec<&str> = set.gold[q].iter().map(|&g| corpus.docs[g].id.as_str()).collect();
            line.insert("gold".into(), gold.into());
            line.insert("mips".into(), index.mips_scores(&set.emb[q * d..(q + 1) * d]).into());
            line.insert("bm25".into(), index.bm25_scores(text).into());
            for (name, logits) in car_scores {
                let rows = if set.logits_of == 0 { &logits.0 } else { &logits.1 };
                line.insert((*name).into(), rows[q * n..(q + 1) * n].to_vec().into());
            }
            writeln!(out, "{}", serde_json::Value::Object(line)).map_err(io_err)?;
        }
    }
    out.flush().map_err(io_err)
}

fn print_table(r: &EvalReport) {
    println!(
        "{} documents, {} test queries, {} training pairs, {} held-out pseudo-queries (pq_top1)",
        r.docs, r.queries, r.training_pairs, r.heldout_pseudo_queries
    );
    println!(
        "{:<12} {:>7} {:>7} {:>7} {:>7} {:>8} {:>9} {:>9} {:>10}",
        "method", "top1", "top5", "top10", "mrr10", "pq_top1", "train_s", "encode_s", "ex/s"
    );
    for name in METHODS {
        if let Some(m) = r.methods.get(name) {
            let eps = m.examples_per_s.map_or("-".to_string(), |e| format!("{e:.0}"));
            println!(
                "{:<12} {:>7.3} {:>7.3} {:>7.3} {:>7.3} {:>8.3} {:>9.1} {:>9.1} {:>10}",
                name, m.top1, m.top5, m.top10, m.mrr10, m.pq_top1, m.train_s, m.encode_s, eps
            );
        }
    }
}

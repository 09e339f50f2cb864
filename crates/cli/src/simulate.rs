//! `fedsearch simulate`: N federated clients on one machine, with exactly the code real clients
//! and the aggregation worker run — the core training loop, `fedsearch-privacy`'s clip-and-noise,
//! the protocol's binary encoding, server-side validation and streaming FedAvg.
//!
//! Data: the training pairs are the corpus' pseudo-queries (never the queries file, which is the
//! test set), plus, with `--train-pairs`, labelled (query, document) pairs standing for the
//! clients' search clicks (a click never leaves its device; only the trained delta does). All
//! pairs are split across the clients either IID (pairs dealt at random) or non-IID by document
//! (each client holds whole documents' pairs; the clients' document sets are disjoint).
//!
//! The head is keys + residual ([`fedsearch_core::head`]): every client computes the same keys
//! from the shared corpus (`--head-init`: the frozen document embeddings moved towards their
//! pseudo-queries by default; never from clicks), and only the residual and bias are trained and
//! federated, pulled back to the keys by `--head-pull`.
//!
//! One round: every client starts from the current global model (version 0: identity adapter,
//! zero residual: inner-product search against the keys), trains `--local-steps` optimiser steps on its own pairs with
//! [`fedsearch_core::train::train`] (fresh Adam state each round, no held-out split), takes the
//! difference to the global model, clips and noises the flattened difference when DP is on,
//! encodes it as a protocol `Update` (the bytes it would upload), and the "server" decodes it,
//! validates it against the federation's spec and adds it to a [`StreamingFedAvg`] with weight 1,
//! as the worker does (a client's claimed `num_examples` is never a weight);
//! [`ServerOptimizer::FedAvg`] applies `--server-lr` (default 1) times the mean delta.
//!
//! Modes: `shared` federates adapter and head (`--train head` still sends the adapter's zero
//! delta, because the shared-mode wire format requires all four tensors); `personal` federates
//! only the adapter and every client keeps its own head (so it needs `--train adapter`).
//! `--train head` trains on cached frozen-encoder features and neither trains nor applies the
//! adapter (in training or in evaluation).
//!
//! Privacy: with `--dp-sigma σ --clip C` each client clips its whole delta to L2 norm `C` and adds
//! N(0, (σC)²) per coordinate before encoding. Every client takes part in every round (sampling
//! rate q = 1), so after `r` rounds each client has spent
//! `ε = fedsearch_privacy::epsilon(σ, 1, r, δ)` (RDP accountant, add/remove adjacency of a
//! client's whole data, sensitivity `C`). The noise generators are seeded from `--seed` (SHA-256
//! of seed and client index) so that a simulation is reproducible; real clients seed theirs from
//! OS entropy. `--clip` alone clips without noise (no privacy; ε is not reported).
//!
//! Evaluation after every round: top-1 and MRR@10 on the test queries, ranked with the same code
//! as `fedsearch eval` (CaR logits, `top_k`, `MetricsBuilder`). In personal mode each client's
//! model (global adapter + its own head) is evaluated on the test queries whose gold document it
//! holds training pairs for, and the reported numbers are the mean over all (client, query) pairs,
//! i.e. the clients' metrics weighted by their number of test queries.
//!
//! Two clocks per round, both excluding evaluation: `wall_s`, the round on this machine with the
//! clients run one after another; and `parallel_s`, the slowest client's local work (training,
//! delta, privatising, encoding) plus the server's work (decoding, validating, aggregating,
//! applying) — what the round would take with one device per client (network time not counted).

use crate::embed::{EmbedCache, embed};
use crate::error::read_input;
use crate::error::{CliError, CliResult};
use crate::eval::{CategoryQuestions, HeadInit, load_data};
use crate::progress::bar;
use burn::prelude::*;
use fedsearch_core::adapter::SoftEmbeddingAdapter;
use fedsearch_core::checkpoint::{HostTensor, retriever_from_tensors, retriever_tensors};
use fedsearch_core::data::{parse_queries, training_pairs};
use fedsearch_core::head::DEFAULT_HEAD_SCALE;
use fedsearch_core::index::car_logits;
use fedsearch_core::metrics::{Metrics, MetricsBuilder};
use fedsearch_core::model::{DEFAULT_MAX_LEN, ModelFiles, SentenceEncoder};
use fedsearch_core::pseudo::{PseudoQueryConfig, pseudo_queries};
use fedsearch_core::search::top_k;
use fedsearch_core::train::Retriever;
use fedsearch_core::train::{TrainConfig, TrainInputs, train};
use fedsearch_privacy::NoiseRng;
use fedsearch_protocol::{
    DpParams, Encoding, FederationMode, GlobalModel, NamedTensor, OptimizerState, ServerOptimizer, StreamingFedAvg,
    TensorSpec, UpdateHeader, UpdatePrivacy, UpdateSpec, build_update, decode_update, encode_update,
    federated_tensor_specs, is_head_tensor, validate_update,
};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::collections::HashSet;
use std::path::PathBuf;
use web_time::Instant;

/// Federation id the simulated clients and server agree on.
const FEDERATION_ID: &str = "simulate";

/// Which tensors the federation shares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ModeArg {
    /// Adapter and head are averaged.
    Shared,
    /// Only the adapter is averaged; every client keeps its own head.
    Personal,
}

/// What the clients train.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TrainArg {
    /// The CaR head only, on cached frozen-encoder features (fast).
    Head,
    /// Adapter and head, end to end through the frozen encoder (slow on CPU).
    Adapter,
}

/// How the training pairs are spread over the clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum SplitArg {
    /// Pairs dealt to clients at random.
    Iid,
    /// Whole documents dealt to clients at random: disjoint document sets.
    NonIid,
}

/// Wire encoding of the tensors in an update.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum WireArg {
    F32,
    F16,
}

/// Options of `fedsearch simulate`.
#[derive(Debug, Clone, clap::Args, Serialize)]
pub struct SimulateArgs {
    /// Folder with config.json, model.safetensors and tokenizer.json.
    #[arg(long, default_value = "models/all-MiniLM-L6-v2")]
    pub model: PathBuf,
    /// corpus.jsonl: the clients' pseudo-queries come from it.
    #[arg(long)]
    pub corpus: PathBuf,
    /// queries.jsonl: the test set (never trained on).
    #[arg(long)]
    pub queries: PathBuf,
    /// Number of clients (1 = the centralised baseline).
    #[arg(long, default_value_t = 2)]
    pub clients: usize,
    /// Federated rounds.
    #[arg(long, default_value_t = 10)]
    pub rounds: usize,
    /// Optimiser steps each client takes per round.
    #[arg(long, default_value_t = 10)]
    pub local_steps: usize,
    /// DP noise multiplier σ (noise std = σ·C per coordinate); needs --clip.
    #[arg(long)]
    pub dp_sigma: Option<f64>,
    /// L2 bound C each client clips its whole update to (alone: clipping without noise).
    #[arg(long)]
    pub clip: Option<f64>,
    /// δ of the reported (ε, δ) guarantee.
    #[arg(long, default_value_t = 1e-5)]
    pub delta: f64,
    #[arg(long, value_enum, default_value_t = ModeArg::Shared)]
    pub mode: ModeArg,
    #[arg(long, value_enum, default_value_t = TrainArg::Head)]
    pub train: TrainArg,
    #[arg(long, value_enum, default_value_t = SplitArg::Iid)]
    pub split: SplitArg,
    /// Use a seeded subset of this many documents (queries follow their gold documents).
    #[arg(long)]
    pub docs: Option<usize>,
    /// Seeds the data split, the pseudo-queries, local shuffling and (simulation only) DP noise.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Also write the config and per-round results as JSON here.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Local mini-batch size.
    #[arg(long, default_value_t = 64)]
    pub batch_size: usize,
    #[arg(long, default_value_t = 1e-2)]
    pub head_lr: f64,
    #[arg(long, default_value_t = 1e-4)]
    pub adapter_lr: f64,
    #[arg(long, default_value_t = DEFAULT_MAX_LEN)]
    pub max_len: usize,
    /// Encoding of the uploaded tensors.
    #[arg(long, value_enum, default_value_t = WireArg::F32)]
    pub wire: WireArg,
    /// Cache frozen-encoder embeddings in this folder (default: $FEDSEARCH_EMBED_CACHE).
    #[arg(long)]
    pub embed_cache: Option<PathBuf>,
    /// The clients' clicks: labelled pairs (`{"query", "doc_id"|"doc_ids"}` per line, one pair
    /// per gold document) split across the clients with the pseudo-queries. Must not share a
    /// query with the test set.
    #[arg(long)]
    pub train_pairs: Option<PathBuf>,
    /// Server learning rate: the global model moves by this times the mean delta (FedAvg: 1).
    #[arg(long, default_value_t = 1.0)]
    pub server_lr: f64,
    /// How many times each click counts as a training pair (the tab's default).
    #[arg(long, default_value_t = 3)]
    pub click_weight: usize,
    /// The head's keys: zeros (none), docs (the document embeddings) or centroid.
    #[arg(long, value_enum, default_value_t = HeadInit::Centroid)]
    pub head_init: HeadInit,
    /// With centroid keys: how far each key also moves towards its document's category questions.
    #[arg(long, default_value_t = fedsearch_core::head::QUESTION_MIX)]
    pub question_mix: f32,
    /// λ of the L2 pull of the head back to its keys (on the trained residual; 0: none).
    #[arg(long, default_value_t = 1.0)]
    pub head_pull: f64,
}

/// One round's results.
#[derive(Debug, Clone, Serialize)]
pub struct RoundResult {
    pub round: usize,
    pub top1: f64,
    pub mrr10: f64,
    pub top10: f64,
    /// Test queries evaluated (personal mode: (client, query) pairs).
    pub eval_queries: usize,
    /// ε each client has spent after this round (absent without DP noise).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub epsilon: Option<f64>,
    /// Mean size of one client's encoded update.
    pub bytes_per_client: f64,
    /// Mean L2 norm of the clients' raw deltas (before clipping).
    pub mean_update_norm: f64,
    /// Mean final local training loss.
    pub mean_loss: f64,
    /// This machine, clients one after another (excludes evaluation).
    pub wall_s: f64,
    /// Slowest client's local work + server work: one device per client (excludes evaluation).
    pub parallel_s: f64,
    pub slowest_client_s: f64,
    pub server_s: f64,
    pub eval_s: f64,
    pub cum_wall_s: f64,
    pub cum_parallel_s: f64,
}

/// The run's configuration as reported.
#[derive(Debug, Clone, Serialize)]
pub struct RunConfig {
    #[serde(flatten)]
    pub args: SimulateArgs,
    pub docs_used: usize,
    pub test_queries: usize,
    pub training_pairs: usize,
    /// Of those, labelled pairs from `--train-pairs` (clicks).
    pub click_pairs: usize,
    pub examples_per_client: Vec<usize>,
    pub docs_per_client: Vec<usize>,
    /// Values one client uploads per round.
    pub values_per_update: usize,
    /// Seconds spent embedding the pseudo-queries (head mode) before round 1.
    pub setup_s: f64,
    pub sampling_rate_q: f64,
    pub noise_seed: &'static str,
    pub personal_eval: &'static str,
}

/// The whole report (`--json`).
#[derive(Debug, Clone, Serialize)]
pub struct SimulationReport {
    pub config: RunConfig,
    pub rounds: Vec<RoundResult>,
}

/// One simulated client.
struct Client {
    id: String,
    texts: Vec<String>,
    targets: Vec<usize>,
    /// Frozen features `[n, d]` (head mode only).
    features: Vec<f32>,
    /// Documents it holds pairs for.
    docs: HashSet<usize>,
    /// Its own head (personal mode): `head.weight`, `head.bias`.
    head: Vec<HostTensor>,
    noise: Option<NoiseRng>,
}

fn check_args(a: &SimulateArgs) -> CliResult<()> {
    let bad = |m: String| Err(CliError::Input(m));
    if a.clients == 0 {
        return bad("--clients must be at least 1".into());
    }
    if a.rounds == 0 {
        return bad("--rounds must be at least 1".into());
    }
    if a.local_steps == 0 {
        return bad("--local-steps must be at least 1".into());
    }
    if a.batch_size == 0 {
        return bad("--batch-size must be at least 1".into());
    }
    if let Some(c) = a.clip
        && !(c.is_finite() && c > 0.0 && (c as f32).is_normal())
    {
        return bad(format!("--clip must be a positive number, got {c}"));
    }
    if let Some(s) = a.dp_sigma {
        if !(s.is_finite() && s > 0.0) {
            return bad(format!("--dp-sigma must be a positive number, got {s}"));
        }
        if a.clip.is_none() {
            return bad("--dp-sigma needs --clip C: the noise std is σ·C".into());
        }
    }
    if !(a.delta > 0.0 && a.delta < 1.0) {
        return bad(format!("--delta must be in (0, 1), got {}", a.delta));
    }
    if !(a.server_lr.is_finite() && a.server_lr > 0.0) {
        return bad(format!("--server-lr must be a positive number, got {}", a.server_lr));
    }
    if !(a.head_pull.is_finite() && a.head_pull >= 0.0) {
        return bad(format!("--head-pull must be a number ≥ 0, got {}", a.head_pull));
    }
    for (name, lr) in [("--head-lr", a.head_lr), ("--adapter-lr", a.adapter_lr)] {
        if !(lr.is_finite() && lr > 0.0) {
            return bad(format!("{name} must be a positive number, got {lr}"));
        }
    }
    if a.mode == ModeArg::Personal && a.train == TrainArg::Head {
        return bad(
            "--mode personal shares only the adapter, which --train head does not train: use --train adapter".into()
        );
    }
    if a.docs == Some(0) {
        return bad("--docs must be at least 1".into());
    }
    Ok(())
}

fn proto<E: std::fmt::Display>(what: &str) -> impl FnOnce(E) -> CliError + '_ {
    move |e| CliError::Tool(format!("{what}: {e}"))
}

/// 32 bytes derived from the seed and a purpose, for per-client generators.
fn derive_seed(seed: u64, purpose: &str, a: u64, b: u64) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(b"fedsearch-simulate\0");
    h.update(purpose.as_bytes());
    h.update(seed.to_le_bytes());
    h.update(a.to_le_bytes());
    h.update(b.to_le_bytes());
    h.finalize().into()
}

fn derive_u64(seed: u64, purpose: &str, a: u64, b: u64) -> u64 {
    let s = derive_seed(seed, purpose, a, b);
    u64::from_le_bytes(s[..8].try_into().expect("8 bytes"))
}

/// Splits pair indices across clients: IID (dealt at random) or by document (disjoint sets).
fn split_pairs(pairs: &[(String, usize)], clients: usize, split: SplitArg, seed: u64) -> CliResult<Vec<Vec<usize>>> {
    let mut rng = ChaCha8Rng::seed_from_u64(derive_u64(seed, "split", 0, 0));
    let mut out = vec![Vec::new(); clients];
    match split {
        SplitArg::Iid => {
            if clients > pairs.len() {
                return Err(CliError::Input(format!(
                    "--clients {clients} is more than the {} training pairs",
                    pairs.len()
                )));
            }
            let mut order: Vec<usize> = (0..pairs.len()).collect();
            order.shuffle(&mut rng);
            for (k, i) in order.into_iter().enumerate() {
                out[k % clients].push(i);
            }
        }
        SplitArg::NonIid => {
            let mut docs: Vec<usize> = pairs.iter().map(|(_, d)| *d).collect::<HashSet<_>>().into_iter().collect();
            docs.sort_unstable();
            if clients > docs.len() {
                return Err(CliError::Input(format!(
                    "--split non-iid needs at least one document per client: --clients {clients} is more than the {} documents with training pairs",
                    docs.len()
                )));
            }
            docs.shuffle(&mut rng);
            let owner: std::collections::HashMap<usize, usize> =
                docs.iter().enumerate().map(|(k, &d)| (d, k % clients)).collect();
            for (i, (_, d)) in pairs.iter().enumerate() {
                out[owner[d]].push(i);
            }
        }
    }
    Ok(out)
}

fn to_host(t: &NamedTensor) -> HostTensor {
    HostTensor { name: t.name.clone(), shape: t.shape.iter().map(|&d| d as usize).collect(), data: t.data.clone() }
}

fn find<'a>(tensors: &'a [HostTensor], name: &str) -> CliResult<&'a HostTensor> {
    tensors
        .iter()
        .find(|t| t.name == name)
        .ok_or_else(|| CliError::Tool(format!("tensor {name} is missing from the model")))
}

/// Ranks `feats` (`[n, d]`) with a model and adds each query's rank of its first gold document.
async fn rank_into(
    m: &mut MetricsBuilder,
    model: &fedsearch_core::train::Retriever,
    feats: &[f32],
    gold: &[Vec<usize>],
    d: usize,
    device: &Device,
) -> CliResult<()> {
    if gold.is_empty() {
        return Ok(());
    }
    let logits = car_logits(model, feats, d, device).await?;
    let n = model.head.num_docs();
    for (q, g) in gold.iter().enumerate() {
        m.add(&top_k(&logits[q * n..(q + 1) * n], 10), g);
    }
    Ok(())
}

/// Runs the simulation, prints the table and writes the JSON; returns the report.
pub fn run(args: &SimulateArgs) -> CliResult<()> {
    simulate(args).map(|_| ())
}

/// The simulation itself.
pub fn simulate(args: &SimulateArgs) -> CliResult<SimulationReport> {
    check_args(args)?;
    let (corpus, queries) = load_data(&args.corpus, &args.queries, args.docs, args.seed)?;
    let mut pairs = pseudo_queries(&corpus, &PseudoQueryConfig { seed: args.seed, ..Default::default() });
    if pairs.is_empty() {
        return Err(CliError::Input("the corpus yields no pseudo-queries to train on".into()));
    }
    let n_pseudo = pairs.len();
    if let Some(p) = &args.train_pairs {
        let clicks = training_pairs(parse_queries(&read_input(p, "training pairs")?, &corpus)?);
        let test: HashSet<&str> = queries.iter().map(|(q, _)| q.trim()).collect();
        if let Some((q, _)) = clicks.iter().find(|(q, _)| test.contains(q.trim())) {
            return Err(CliError::Input(format!(
                "--train-pairs shares the query {q:?} with the test set: hold the test queries out of the clicks"
            )));
        }
        pairs.extend(clicks);
    }
    // Each click counts `--click-weight` times on the client that holds it (as in the tab).
    let split: Vec<Vec<usize>> = split_pairs(&pairs, args.clients, args.split, args.seed)?
        .into_iter()
        .map(|idx| {
            idx.into_iter()
                .flat_map(|i| std::iter::repeat_n(i, if i >= n_pseudo { args.click_weight.max(1) } else { 1 }))
                .collect()
        })
        .collect();
    let device = Device::flex();
    let files = ModelFiles::read_dir(&args.model)?;
    let enc = SentenceEncoder::load(&files, &device, args.max_len)?;
    let cache = EmbedCache::new(args.embed_cache.clone(), &files, args.max_len);
    let d = enc.dim();
    let n_docs = corpus.len();
    let mode = match args.mode {
        ModeArg::Shared => FederationMode::Shared,
        ModeArg::Personal => FederationMode::Personal,
    };
    let wire = match args.wire {
        WireArg::F32 => Encoding::F32,
        WireArg::F16 => Encoding::F16,
    };
    let clip = args.clip.map(|c| c as f32);
    let sigma = args.dp_sigma.map(|s| s as f32);
    eprintln!(
        "{} documents, {} test queries, {} training pairs ({} clicks) over {} client(s)",
        n_docs,
        queries.len(),
        pairs.len(),
        pairs.len() - n_pseudo,
        args.clients
    );

    pollster::block_on(async {
        let setup = Instant::now();
        let all_texts: Vec<String> = pairs.iter().map(|(q, _)| q.clone()).collect();
        // Frozen features of every pair: the head-only clients train on them, and the keys come
        // from the pseudo-queries' (the first `n_pseudo`).
        let mut features = embed(&enc, &all_texts[..n_pseudo], None, "pseudo-queries", &cache).await?;
        features.extend(embed(&enc, &all_texts[n_pseudo..], None, "clicks", &cache).await?);
        let keys = match args.head_init {
            HeadInit::Zeros => None,
            init => {
                let doc_emb = embed(&enc, &corpus.full_texts(), None, "documents", &cache).await?;
                let targets: Vec<usize> = pairs[..n_pseudo].iter().map(|(_, t)| *t).collect();
                let questions = CategoryQuestions::embed(&enc, &corpus, init, args.question_mix, &cache).await?;
                init.keys(&doc_emb, &features[..n_pseudo * d], &targets, &questions, d)
            }
        };
        let setup_s = setup.elapsed().as_secs_f64();
        let mut clients: Vec<Client> = split
            .iter()
            .enumerate()
            .map(|(c, idx)| Client {
                id: format!("client-{c}"),
                texts: idx.iter().map(|&i| pairs[i].0.clone()).collect(),
                targets: idx.iter().map(|&i| pairs[i].1).collect(),
                features: match args.train {
                    TrainArg::Head => idx.iter().flat_map(|&i| features[i * d..(i + 1) * d].iter().copied()).collect(),
                    TrainArg::Adapter => Vec::new(),
                },
                docs: idx.iter().map(|&i| pairs[i].1).collect(),
                head: vec![
                    HostTensor { name: "head.weight".into(), shape: vec![d, n_docs], data: vec![0.0; d * n_docs] },
                    HostTensor { name: "head.bias".into(), shape: vec![n_docs], data: vec![0.0; n_docs] },
                ],
                noise: sigma.map(|_| NoiseRng::from_seed(derive_seed(args.seed, "noise", c as u64, 0))),
            })
            .collect();
        drop(features);

        let q_texts: Vec<String> = queries.iter().map(|(q, _)| q.clone()).collect();
        let gold: Vec<Vec<usize>> = queries.iter().map(|(_, g)| g.clone()).collect();
        let frozen_q = embed(&enc, &q_texts, None, "test queries", &cache).await?;

        let specs: Vec<TensorSpec> = federated_tensor_specs(mode, d as u32, n_docs as u32);
        let values_per_update: usize = specs.iter().map(TensorSpec::numel).sum();
        let mut global = GlobalModel::initial(FEDERATION_ID, mode, d as u32, n_docs as u32, Some(corpus.ids()));
        let mut opt_state = OptimizerState::default();
        let server_opt = ServerOptimizer::FedAvg { lr: args.server_lr };

        let config = RunConfig {
            args: args.clone(),
            docs_used: n_docs,
            test_queries: queries.len(),
            training_pairs: pairs.len(),
            click_pairs: pairs.len() - n_pseudo,
            examples_per_client: clients.iter().map(|c| c.targets.len()).collect(),
            docs_per_client: clients.iter().map(|c| c.docs.len()).collect(),
            values_per_update,
            setup_s,
            sampling_rate_q: 1.0,
            noise_seed: "SHA-256(--seed, client index): reproducible simulation only; real clients seed from OS entropy",
            personal_eval: "each client's global adapter + own head on the test queries whose gold document it holds; mean over (client, query) pairs",
        };
        print_header(args);
        let total_steps = args.rounds * args.clients * args.local_steps;
        let pb = bar(total_steps, "training");
        let mut rounds = Vec::new();
        let (mut cum_wall, mut cum_parallel) = (0.0, 0.0);
        for round in 1..=args.rounds {
            let round_start = Instant::now();
            let base: Vec<HostTensor> = global.tensors.iter().map(to_host).collect();
            let spec = server_spec(mode, d, n_docs, global.version, clip, sigma, args.delta)?;
            let epsilon = match args.dp_sigma {
                Some(s) => Some(fedsearch_privacy::epsilon(s, 1.0, round as u64, args.delta)?),
                None => None,
            };
            let mut agg = StreamingFedAvg::new(&specs);
            let (mut slowest, mut server_s, mut bytes_sum, mut norm_sum, mut loss_sum) =
                (0.0f64, 0.0, 0usize, 0.0, 0.0);
            for (c, client) in clients.iter_mut().enumerate() {
                let t_client = Instant::now();
                // The client's starting point: the global model (+ its own head in personal mode).
                let mut start = base.clone();
                if mode == FederationMode::Personal {
                    start.retain(|t| !is_head_tensor(&t.name));
                    start.extend(client.head.iter().cloned());
                }
                let model =
                    keyed(retriever_from_tensors(&start, DEFAULT_HEAD_SCALE, &device)?, keys.as_deref(), &device);
                let cfg = TrainConfig {
                    epochs: args.local_steps,
                    batch_size: args.batch_size,
                    head_lr: args.head_lr,
                    adapter_lr: args.adapter_lr,
                    holdout_fraction: 0.0,
                    patience: usize::MAX,
                    seed: derive_u64(args.seed, "local-shuffle", round as u64, c as u64),
                    max_steps: Some(args.local_steps),
                    pull_to_keys: args.head_pull,
                };
                let inputs = match args.train {
                    TrainArg::Head => TrainInputs::Cached(&client.features),
                    TrainArg::Adapter => TrainInputs::Texts { encoder: &enc, texts: &client.texts },
                };
                let done_before = ((round - 1) * args.clients + c) * args.local_steps;
                let (trained, report) = train(model, inputs, &client.targets, &cfg, &device, &mut |p| {
                    pb.set_position((done_before + p.step) as u64);
                    pb.set_message(format!("r{round} c{c} loss {:.3}", p.loss));
                    true
                })
                .await?;
                loss_sum += f64::from(report.final_loss);
                let local = retriever_tensors(&trained).await?;
                if mode == FederationMode::Personal {
                    client.head = local.iter().filter(|t| is_head_tensor(&t.name)).cloned().collect();
                }
                // Delta of the federated tensors in spec order, privatized by the tab's builder.
                let mut deltas = Vec::with_capacity(specs.len());
                for s in &specs {
                    let (l, b) = (find(&local, &s.name)?, find(&base, &s.name)?);
                    let delta = l.data.iter().zip(&b.data).map(|(x, y)| x - y).collect();
                    deltas.push(NamedTensor::new(s.name.clone(), s.shape.clone(), delta));
                }
                let privacy = match (clip, sigma, client.noise.as_mut()) {
                    (Some(clip), Some(noise_multiplier), Some(rng)) => {
                        UpdatePrivacy::Gaussian { clip, noise_multiplier, rng }
                    }
                    (Some(clip), None, _) => UpdatePrivacy::ClipOnly { clip },
                    _ => UpdatePrivacy::Exact,
                };
                let header = UpdateHeader {
                    federation_id: FEDERATION_ID.into(),
                    round: round as u64,
                    client_id: client.id.clone(),
                    base_version: global.version,
                    mode,
                    dp: DpParams {
                        clip: spec.clip,
                        noise_multiplier: spec.noise_multiplier,
                        delta: args.delta,
                        epsilon_spent: epsilon.unwrap_or(0.0),
                    },
                };
                let built = build_update(header, deltas, privacy).map_err(proto("building an update"))?;
                norm_sum += built.norm_before_clip;
                let update = built.update;
                let bytes = encode_update(&update, wire);
                bytes_sum += bytes.len();
                slowest = slowest.max(t_client.elapsed().as_secs_f64());

                // The server: decode, validate, accumulate — as the worker does.
                let t_server = Instant::now();
                let received = decode_update(&bytes).map_err(proto("decoding an update"))?;
                validate_update(&received, &spec).map_err(proto("the server rejected an update"))?;
                agg.add(&received, 1.0).map_err(proto("aggregation"))?;
                server_s += t_server.elapsed().as_secs_f64();
            }
            let t_server = Instant::now();
            let mean = agg.finish().map_err(proto("aggregation"))?;
            server_opt.apply(&mut global, &mean, &mut opt_state, None).map_err(proto("server optimizer"))?;
            server_s += t_server.elapsed().as_secs_f64();
            let wall_s = round_start.elapsed().as_secs_f64();
            let parallel_s = slowest + server_s;
            cum_wall += wall_s;
            cum_parallel += parallel_s;

            let t_eval = Instant::now();
            let metrics =
                evaluate(&enc, &global, &clients, &frozen_q, &q_texts, &gold, keys.as_deref(), args, &device).await?;
            let eval_s = t_eval.elapsed().as_secs_f64();
            let n_clients = clients.len() as f64;
            let row = RoundResult {
                round,
                top1: metrics.top1,
                mrr10: metrics.mrr10,
                top10: metrics.top10,
                eval_queries: metrics.queries,
                epsilon,
                bytes_per_client: bytes_sum as f64 / n_clients,
                mean_update_norm: norm_sum / n_clients,
                mean_loss: loss_sum / n_clients,
                wall_s,
                parallel_s,
                slowest_client_s: slowest,
                server_s,
                eval_s,
                cum_wall_s: cum_wall,
                cum_parallel_s: cum_parallel,
            };
            pb.suspend(|| print_row(&row));
            rounds.push(row);
        }
        pb.finish_and_clear();
        let report = SimulationReport { config, rounds };
        if let Some(path) = &args.json {
            let text = serde_json::to_string_pretty(&report).expect("report serialises");
            std::fs::write(path, text).map_err(|e| CliError::Io(format!("{}: {e}", path.display())))?;
        }
        Ok(report)
    })
}

/// The retriever with the head's fixed keys (row-major `[n_docs, d]`) set, when there are any.
fn keyed(mut model: Retriever, keys: Option<&[f32]>, device: &Device) -> Retriever {
    if let Some(k) = keys {
        model.head = model.head.with_keys(k, device);
    }
    model
}

/// What the server demands of this round's updates.
fn server_spec(
    mode: FederationMode,
    d: usize,
    n_docs: usize,
    version: u64,
    clip: Option<f32>,
    sigma: Option<f32>,
    delta: f64,
) -> CliResult<UpdateSpec> {
    let mut spec = match (clip, sigma) {
        (Some(c), Some(s)) => UpdateSpec::for_federation(FEDERATION_ID, mode, d as u32, n_docs as u32, version, c, s)
            .map_err(proto("federation spec"))?,
        // Clip only: the update's norm can be at most C (plus f16 rounding, relative error
        // below 2⁻¹¹ per value); no noise is required.
        (Some(c), None) => UpdateSpec {
            federation_id: FEDERATION_ID.into(),
            mode,
            base_version: version,
            tensors: federated_tensor_specs(mode, d as u32, n_docs as u32),
            clip: c,
            noise_multiplier: 0.0,
            max_delta: None,
            max_norm: f64::from(c) * (1.0 + 1e-3),
            max_abs: f64::from(c) * (1.0 + 1e-3),
        },
        // No DP: the federation declares no bound.
        _ => UpdateSpec {
            federation_id: FEDERATION_ID.into(),
            mode,
            base_version: version,
            tensors: federated_tensor_specs(mode, d as u32, n_docs as u32),
            clip: f32::MAX,
            noise_multiplier: 0.0,
            max_delta: None,
            max_norm: f64::INFINITY,
            max_abs: f64::INFINITY,
        },
    };
    spec.max_delta = Some(delta);
    Ok(spec)
}

/// Top-1 / MRR@10 of the current model(s) on the test queries.
#[allow(clippy::too_many_arguments)]
async fn evaluate(
    enc: &SentenceEncoder,
    global: &GlobalModel,
    clients: &[Client],
    frozen_q: &[f32],
    q_texts: &[String],
    gold: &[Vec<usize>],
    keys: Option<&[f32]>,
    args: &SimulateArgs,
    device: &Device,
) -> CliResult<Metrics> {
    let d = enc.dim();
    let tensors: Vec<HostTensor> = global.tensors.iter().map(to_host).collect();
    let adapted;
    let q_feats: &[f32] = match args.train {
        TrainArg::Head => frozen_q,
        TrainArg::Adapter => {
            let (w, b) = (find(&tensors, "adapter.weight")?, find(&tensors, "adapter.bias")?);
            let adapter = SoftEmbeddingAdapter::from_values(w.data.clone(), b.data.clone(), device);
            adapted = embed(enc, q_texts, Some(&adapter), "test queries+adapter", &EmbedCache::disabled()).await?;
            &adapted
        }
    };
    let mut m = MetricsBuilder::default();
    match args.mode {
        ModeArg::Shared => {
            let model = keyed(retriever_from_tensors(&tensors, DEFAULT_HEAD_SCALE, device)?, keys, device);
            rank_into(&mut m, &model, q_feats, gold, d, device).await?;
        }
        ModeArg::Personal => {
            for client in clients {
                let mut t: Vec<HostTensor> = tensors.iter().filter(|t| !is_head_tensor(&t.name)).cloned().collect();
                t.extend(client.head.iter().cloned());
                let model = keyed(retriever_from_tensors(&t, DEFAULT_HEAD_SCALE, device)?, keys, device);
                // The queries with a gold document this client holds, ranked against those.
                let held: Vec<(usize, Vec<usize>)> = gold
                    .iter()
                    .enumerate()
                    .map(|(q, g)| (q, g.iter().copied().filter(|d| client.docs.contains(d)).collect::<Vec<_>>()))
                    .filter(|(_, g)| !g.is_empty())
                    .collect();
                let feats: Vec<f32> =
                    held.iter().flat_map(|(q, _)| q_feats[q * d..(q + 1) * d].iter().copied()).collect();
                let g: Vec<Vec<usize>> = held.into_iter().map(|(_, g)| g).collect();
                rank_into(&mut m, &model, &feats, &g, d, device).await?;
            }
        }
    }
    Ok(m.finish())
}

fn print_header(a: &SimulateArgs) {
    let dp = match (a.dp_sigma, a.clip) {
        (Some(s), Some(c)) => format!("DP σ={s} C={c} δ={}", a.delta),
        (None, Some(c)) => format!("clip C={c}, no noise"),
        _ => "no DP".into(),
    };
    println!(
        "clients {} · rounds {} · local steps {} · mode {:?} · train {:?} · split {:?} · {dp}",
        a.clients, a.rounds, a.local_steps, a.mode, a.train, a.split
    );
    println!(
        "{:>5} {:>7} {:>7} {:>8} {:>13} {:>8} {:>11}",
        "round", "top1", "mrr10", "epsilon", "bytes/client", "wall_s", "parallel_s"
    );
}

fn print_row(r: &RoundResult) {
    let eps = r.epsilon.map_or("-".to_string(), |e| format!("{e:.2}"));
    println!(
        "{:>5} {:>7.3} {:>7.3} {:>8} {:>13.0} {:>8.2} {:>11.2}",
        r.round, r.top1, r.mrr10, eps, r.bytes_per_client, r.wall_s, r.parallel_s
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(docs: usize, per_doc: usize) -> Vec<(String, usize)> {
        (0..docs).flat_map(|d| (0..per_doc).map(move |k| (format!("q{d}-{k}"), d))).collect()
    }

    #[test]
    fn non_iid_split_gives_disjoint_documents_and_covers_all_pairs() {
        let p = pairs(10, 3);
        let s = split_pairs(&p, 3, SplitArg::NonIid, 5).unwrap();
        let docs: Vec<HashSet<usize>> = s.iter().map(|c| c.iter().map(|&i| p[i].1).collect()).collect();
        for a in 0..3 {
            assert!(!docs[a].is_empty());
            for b in a + 1..3 {
                assert!(docs[a].is_disjoint(&docs[b]));
            }
        }
        let mut all: Vec<usize> = s.concat();
        all.sort_unstable();
        assert_eq!(all, (0..p.len()).collect::<Vec<_>>());
        assert!(split_pairs(&p, 11, SplitArg::NonIid, 5).is_err());
    }

    #[test]
    fn iid_split_is_balanced_and_seeded() {
        let p = pairs(10, 3);
        let s = split_pairs(&p, 4, SplitArg::Iid, 5).unwrap();
        assert!(s.iter().all(|c| c.len() == 7 || c.len() == 8));
        assert_eq!(s, split_pairs(&p, 4, SplitArg::Iid, 5).unwrap());
        assert_ne!(s, split_pairs(&p, 4, SplitArg::Iid, 6).unwrap());
    }

    #[test]
    fn no_dp_spec_accepts_large_updates_and_dp_spec_bounds_them() {
        let s = server_spec(FederationMode::Shared, 4, 3, 0, None, None, 1e-5).unwrap();
        assert!(s.max_norm.is_infinite());
        let s = server_spec(FederationMode::Shared, 4, 3, 0, Some(1.0), Some(1.0), 1e-5).unwrap();
        assert!(s.max_norm.is_finite());
        let s = server_spec(FederationMode::Personal, 4, 3, 0, Some(2.0), None, 1e-5).unwrap();
        assert_eq!(s.tensors.len(), 2);
        assert!(s.max_norm < 2.01);
    }
}

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
//! Evaluation before round 1 (the start: version 0, `start` in the JSON) and after every round:
//! top-1 and MRR@10 on the test queries, ranked with the same code as `fedsearch eval` (CaR
//! logits, `top_k`, `MetricsBuilder`). In personal mode each client's model (global adapter + its
//! own head) is evaluated on the test queries whose gold document it holds training pairs for —
//! ranked against every document, a hit is one of *its* gold documents first, so a question with
//! several gold articles is harder than in shared mode — and the reported numbers are the mean
//! over all (client, query) pairs, i.e. the clients' metrics weighted by their number of test
//! queries.
//!
//! Clients train side by side, one per core (`FEDSEARCH_THREADS`), in waves; the server takes
//! their uploads in client order, and every client's randomness is its own, so the result does
//! not depend on the number of threads (tested). Two clocks per round, both excluding
//! evaluation: `wall_s`, the round on this machine; and `parallel_s`, the slowest client's local
//! work (training, delta, privatising, encoding) plus the server's work (decoding, validating,
//! aggregating, applying) — what the round would take with one device per client (network time
//! not counted).

use crate::embed::{EmbedCache, embed};
use crate::error::read_input;
use crate::error::{CliError, CliResult};
use crate::eval::{CategoryQuestions, HeadInit, KeySources, load_data};
use crate::progress::bar;
use burn::prelude::*;
use fedsearch_core::adapter::SoftEmbeddingAdapter;
use fedsearch_core::data::{parse_queries, training_pairs};
use fedsearch_core::host::HostModel;
use fedsearch_core::index::car_logits;
use fedsearch_core::metrics::{Metrics, MetricsBuilder};
use fedsearch_core::model::{DEFAULT_MAX_LEN, ModelFiles, SentenceEncoder};
use fedsearch_core::pseudo::{PseudoQueryConfig, pseudo_queries};
use fedsearch_core::search::top_k;
use fedsearch_core::train::{TrainConfig, TrainInputs, TrainMode, train};
use fedsearch_privacy::{NoiseRng, SkellamParams};
use fedsearch_protocol::{
    DpParams, Encoding, FederationMode, GlobalModel, NamedTensor, OptimizerState, ServerOptimizer, StreamingFedAvg,
    TensorSpec, UpdateHeader, UpdatePrivacy, UpdateSpec, build_update, decode_update, encode_update,
    federated_tensor_specs, validate_update,
};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::collections::HashSet;
use std::path::PathBuf;
use web_time::Instant;

mod args;
mod report;
mod round;
mod server;
mod split;

use args::check_args;
pub use args::{ModeArg, SimulateArgs, SplitArg, TrainArg, WireArg};
pub use report::{RoundResult, RunConfig, SimulationReport, StartResult};
use report::{print_header, print_row, print_start};
use round::{RoundCtx, plain_round, secure_round};
use server::server_spec;
use split::{derive_seed, derive_u64, split_pairs};

/// Federation id the simulated clients and server agree on.
const FEDERATION_ID: &str = "simulate";

/// One simulated client.
struct Client {
    id: String,
    texts: Vec<String>,
    targets: Vec<usize>,
    /// Frozen features `[n, d]` (head mode only).
    features: Vec<f32>,
    /// Documents it holds pairs for.
    docs: HashSet<usize>,
    /// Its own head (personal mode): the residual weight `[d, n_docs]` and bias.
    head_w: Vec<f32>,
    head_b: Vec<f32>,
    noise: Option<NoiseRng>,
}

fn proto<E: std::fmt::Display>(what: &str) -> impl FnOnce(E) -> CliError + '_ {
    move |e| CliError::Tool(format!("{what}: {e}"))
}

/// The global model on the host (what a client starts from). Missing tensors start at their
/// initial values (a head-only federation has no adapter).
fn host_model(global: &GlobalModel, d: usize, n_docs: usize) -> CliResult<HostModel> {
    let named = global.tensors.iter().map(|t| (t.name.as_str(), t.data.as_slice()));
    HostModel::from_named(named, d, n_docs).map_err(proto("the global model"))
}

impl Client {
    /// The model this client trains and ranks with: the global one, with its own head in
    /// personal mode.
    fn start_from(&self, global: &HostModel, mode: FederationMode) -> HostModel {
        let mut start = global.clone();
        if mode == FederationMode::Personal {
            start.head_w.clone_from(&self.head_w);
            start.head_b.clone_from(&self.head_b);
        }
        start
    }
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
    // Local DP: σ given, or chosen by the accountant for the whole run.
    let sigma = match (args.dp_sigma, args.target_epsilon, args.secure_aggregation) {
        (Some(s), _, _) => Some(s as f32),
        (None, Some(e), false) => {
            Some(fedsearch_privacy::sigma_for_epsilon(e, 1.0, args.rounds as u64, args.delta)? as f32)
        }
        _ => None,
    };
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
                let pq_emb = &features[..n_pseudo * d];
                init.keys(&KeySources { doc_emb: &doc_emb, pq_emb, pq_targets: &targets, questions: &questions, d })
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
                head_w: vec![0.0; d * n_docs],
                head_b: vec![0.0; n_docs],
                noise: (sigma.is_some() || args.secure_aggregation)
                    .then(|| NoiseRng::from_seed(derive_seed(args.seed, "noise", c as u64, 0))),
            })
            .collect();
        drop(features);

        let q_texts: Vec<String> = queries.iter().map(|(q, _)| q.clone()).collect();
        let gold: Vec<Vec<usize>> = queries.iter().map(|(_, g)| g.clone()).collect();
        let frozen_q = embed(&enc, &q_texts, None, "test queries", &cache).await?;

        let specs: Vec<TensorSpec> = federated_tensor_specs(mode, d as u32, n_docs as u32);
        let values_per_update: usize = specs.iter().map(TensorSpec::numel).sum();
        // Secure aggregation: integers at a scale that keeps the sum inside 32 bits, and (with a
        // target ε) the Skellam noise the sum must carry each round.
        let skellam = match (args.secure_aggregation, clip, args.target_epsilon) {
            (true, Some(c), Some(e)) => Some(SkellamParams::for_target(
                e,
                args.delta,
                args.rounds as u64,
                f64::from(c),
                values_per_update,
                args.clients,
                args.min_survivor_count(),
            )?),
            (true, Some(c), None) => Some(SkellamParams {
                clip: f64::from(c),
                scale: fedsearch_privacy::scale_for(f64::from(c), args.clients, args.min_survivor_count(), 0.0),
                dim: values_per_update,
                mu: 0.0,
                min_clients: args.min_survivor_count(),
            }),
            _ => None,
        };
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
            noise_multiplier: sigma.map(f64::from),
            skellam,
            equivalent_noise_multiplier: skellam.filter(|p| p.mu > 0.0).map(|p| p.equivalent_noise_multiplier()),
            min_survivors: args.min_survivor_count(),
            noise_seed: "SHA-256(--seed, client index): reproducible simulation only; real clients seed from OS entropy",
            personal_eval: "each client's global adapter + own head on the test queries whose gold document it holds; mean over (client, query) pairs",
        };
        print_header(args);
        let start =
            evaluate(&enc, &global, &clients, &frozen_q, &q_texts, &gold, keys.as_deref(), n_docs, args, &device)
                .await?;
        let start =
            StartResult { top1: start.top1, mrr10: start.mrr10, top10: start.top10, eval_queries: start.queries };
        print_start(&start);
        let total_steps = args.rounds * args.clients * args.local_steps;
        let pb = bar(total_steps, "training");
        let mut rounds = Vec::new();
        let (mut cum_wall, mut cum_parallel) = (0.0, 0.0);
        let ctx = RoundCtx {
            args,
            enc: &enc,
            device: &device,
            keys: keys.as_deref(),
            specs: &specs,
            mode,
            wire,
            clip,
            sigma,
            skellam,
            pb: &pb,
            d,
            n_docs,
        };
        let mut published = 0u64;
        for round in 1..=args.rounds {
            let round_start = Instant::now();
            // ε each client has spent once this round is published (it took part in every one).
            let epsilon_if_published = |rounds: u64| -> CliResult<Option<f64>> {
                Ok(match (sigma, &skellam) {
                    (Some(s), _) => Some(fedsearch_privacy::epsilon(f64::from(s), 1.0, rounds, args.delta)?),
                    (None, Some(p)) if p.mu > 0.0 => Some(p.epsilon(rounds, args.delta)?),
                    _ => None,
                })
            };
            let outcome = if args.secure_aggregation {
                secure_round(&ctx, &mut clients, round, &global).await?
            } else {
                plain_round(&ctx, &mut clients, round, &global, epsilon_if_published(published + 1)?).await?
            };
            let mut server_s = outcome.server_s;
            if let Some(mean) = &outcome.mean {
                let t_server = Instant::now();
                server_opt.apply(&mut global, mean, &mut opt_state, None).map_err(proto("server optimizer"))?;
                server_s += t_server.elapsed().as_secs_f64();
                published += 1;
            }
            let epsilon = epsilon_if_published(published)?;
            let wall_s = round_start.elapsed().as_secs_f64();
            let parallel_s = outcome.slowest_client_s + server_s;
            cum_wall += wall_s;
            cum_parallel += parallel_s;

            let t_eval = Instant::now();
            let metrics =
                evaluate(&enc, &global, &clients, &frozen_q, &q_texts, &gold, keys.as_deref(), n_docs, args, &device)
                    .await?;
            let eval_s = t_eval.elapsed().as_secs_f64();
            let n_clients = clients.len() as f64;
            let trained = outcome.trained.max(1) as f64;
            let row = RoundResult {
                round,
                top1: metrics.top1,
                mrr10: metrics.mrr10,
                top10: metrics.top10,
                eval_queries: metrics.queries,
                epsilon,
                published: outcome.mean.is_some(),
                unpublished_reason: outcome.unpublished,
                survivors: outcome.survivors,
                bytes_per_client: outcome.bytes_sum as f64 / trained,
                secagg_bytes_per_client: outcome.secagg_bytes_sum as f64 / n_clients,
                mean_update_norm: outcome.norm_sum / trained,
                mean_loss: outcome.loss_sum / trained,
                wall_s,
                parallel_s,
                slowest_client_s: outcome.slowest_client_s,
                secagg_client_s: outcome.secagg_client_s,
                server_s,
                unmask_s: outcome.unmask_s,
                eval_s,
                cum_wall_s: cum_wall,
                cum_parallel_s: cum_parallel,
            };
            pb.suspend(|| print_row(&row));
            rounds.push(row);
        }
        pb.finish_and_clear();
        let last = rounds.last().expect("at least one round");
        let report = SimulationReport {
            final_top1: last.top1,
            final_mrr10: last.mrr10,
            start,
            epsilon: last.epsilon,
            published_rounds: published as usize,
            config,
            rounds,
        };
        if let Some(path) = &args.json {
            let text = serde_json::to_string_pretty(&report).expect("report serialises");
            std::fs::write(path, text).map_err(|e| CliError::Io(format!("{}: {e}", path.display())))?;
        }
        Ok(report)
    })
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
    n_docs: usize,
    args: &SimulateArgs,
    device: &Device,
) -> CliResult<Metrics> {
    let d = enc.dim();
    let host = host_model(global, d, n_docs)?;
    let adapted;
    let q_feats: &[f32] = match args.train {
        TrainArg::Head => frozen_q,
        TrainArg::Adapter => {
            let adapter = SoftEmbeddingAdapter::from_values(host.adapter_w.clone(), host.adapter_b.clone(), device);
            adapted = embed(enc, q_texts, Some(&adapter), "test queries+adapter", &EmbedCache::disabled()).await?;
            &adapted
        }
    };
    let mut m = MetricsBuilder::default();
    match args.mode {
        ModeArg::Shared => {
            let model = host.to_retriever(keys, device);
            rank_into(&mut m, &model, q_feats, gold, d, device).await?;
        }
        ModeArg::Personal => {
            for client in clients {
                let model = client.start_from(&host, FederationMode::Personal).to_retriever(keys, device);
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

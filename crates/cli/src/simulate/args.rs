//! `fedsearch simulate`'s options and their checks.

use super::*;

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
    /// Local mini-batch size (smaller than the recipe's 256: a client takes a few local steps a
    /// round on its share of the pairs).
    #[arg(long, default_value_t = 64)]
    pub batch_size: usize,
    /// Learning rates (defaults: core's recipe, `TrainConfig::recipe`).
    #[arg(long, default_value_t = TrainConfig::recipe(TrainMode::Head).head_lr)]
    pub head_lr: f64,
    #[arg(long, default_value_t = TrainConfig::recipe(TrainMode::AdapterHead).adapter_lr)]
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
    /// How many times each click counts as a training pair (as in the tab).
    #[arg(long, default_value_t = fedsearch_core::train::CLICK_WEIGHT)]
    pub click_weight: usize,
    /// The head's keys: zeros (none), docs (the document embeddings) or centroid.
    #[arg(long, value_enum, default_value_t = HeadInit::Centroid)]
    pub head_init: HeadInit,
    /// With centroid keys: how far each key also moves towards its document's category questions.
    #[arg(long, default_value_t = fedsearch_core::head::QUESTION_MIX)]
    pub question_mix: f32,
    /// λ of the L2 pull of the head back to its keys (on the trained residual; 0: none).
    #[arg(long, default_value_t = TrainConfig::recipe(TrainMode::Head).pull_to_keys)]
    pub head_pull: f64,
    /// Secure aggregation (SecAgg+): the server decodes only the sum of each round's updates;
    /// with DP, each client adds only its share of Skellam noise (distributed DP). Needs --clip.
    #[arg(long)]
    pub secure_aggregation: bool,
    /// Neighbours of each client in the secure-aggregation graph (SecAgg+; all when ≥ clients − 1).
    #[arg(long, default_value_t = 32)]
    pub secagg_neighbours: usize,
    /// Probability that a client drops out of a round (at a random phase under secure aggregation).
    #[arg(long, default_value_t = 0.0)]
    pub dropout: f64,
    /// The fewest surviving clients a round needs to be published, as a fraction of --clients;
    /// under distributed DP each client adds 1/(this many) of the noise.
    #[arg(long, default_value_t = 0.8)]
    pub min_survivors: f64,
    /// ε (at --delta) for the whole run: the accountant picks the noise (σ for local DP, μ for
    /// distributed DP under --secure-aggregation). Needs --clip; excludes --dp-sigma.
    #[arg(long)]
    pub target_epsilon: Option<f64>,
}

impl SimulateArgs {
    /// The fewest survivors a round needs: `⌈min_survivors · clients⌉`, at least 1 (2 under
    /// secure aggregation: a sum of one is that client's update).
    pub fn min_survivor_count(&self) -> usize {
        let floor = if self.secure_aggregation { 2 } else { 1 };
        ((self.min_survivors * self.clients as f64).ceil() as usize).max(floor)
    }
}

pub(super) fn check_args(a: &SimulateArgs) -> CliResult<()> {
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
    if !(0.0..1.0).contains(&a.dropout) {
        return bad(format!("--dropout must be in [0, 1), got {}", a.dropout));
    }
    if !(a.min_survivors > 0.0 && a.min_survivors <= 1.0) {
        return bad(format!("--min-survivors must be a fraction in (0, 1], got {}", a.min_survivors));
    }
    if let Some(e) = a.target_epsilon {
        if !(e.is_finite() && e > 0.0) {
            return bad(format!("--target-epsilon must be a positive number, got {e}"));
        }
        if a.clip.is_none() || a.dp_sigma.is_some() {
            return bad("--target-epsilon needs --clip C and picks the noise itself: drop --dp-sigma".into());
        }
    }
    if a.secure_aggregation {
        if a.clip.is_none() {
            return bad("--secure-aggregation needs --clip C: updates are clipped, then rounded to integers".into());
        }
        if a.dp_sigma.is_some() {
            return bad(
                "under --secure-aggregation the noise is distributed: give --target-epsilon, not --dp-sigma".into()
            );
        }
        if a.clients < 2 || a.min_survivor_count() > a.clients {
            return bad(format!(
                "--secure-aggregation needs at least 2 clients and --min-survivors ≤ 1 (got {} clients)",
                a.clients
            ));
        }
        if a.secagg_neighbours < 1 || a.secagg_neighbours > 254 {
            return bad(format!("--secagg-neighbours must be in 1..=254, got {}", a.secagg_neighbours));
        }
    }
    Ok(())
}

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
    Ok(())
}

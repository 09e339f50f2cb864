//! What a simulation reports: per-round results, the run's configuration, the JSON report and
//! the printed table.

use super::*;

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
    /// Whether the round's mean was applied (enough survivors, every mask removed).
    pub published: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unpublished_reason: Option<String>,
    /// Clients whose update is in the mean.
    pub survivors: usize,
    /// Mean size of one client's encoded update (secure: its masked input).
    pub bytes_per_client: f64,
    /// Mean secure-aggregation traffic per client besides its masked input, up and down.
    pub secagg_bytes_per_client: f64,
    /// Mean L2 norm of the clients' raw deltas (before clipping).
    pub mean_update_norm: f64,
    /// Mean final local training loss.
    pub mean_loss: f64,
    /// This machine, clients side by side one per core (excludes evaluation).
    pub wall_s: f64,
    /// Slowest client's local work + server work: one device per client (excludes evaluation).
    pub parallel_s: f64,
    pub slowest_client_s: f64,
    /// Slowest client's secure-aggregation work (keys, sealing, quantising, noise, masking, unmasking).
    pub secagg_client_s: f64,
    /// Server work: decoding, validating or adding, unmasking, applying.
    pub server_s: f64,
    /// Of that, removing the masks from the sum (secure rounds).
    pub unmask_s: f64,
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
    /// σ of local Gaussian DP (given or chosen for --target-epsilon).
    pub noise_multiplier: Option<f64>,
    /// Quantisation and distributed noise under secure aggregation.
    pub skellam: Option<SkellamParams>,
    /// The Gaussian σ with the variance of the sum's Skellam noise.
    pub equivalent_noise_multiplier: Option<f64>,
    /// Fewest surviving clients a round needs to be published.
    pub min_survivors: usize,
    pub noise_seed: &'static str,
    pub personal_eval: &'static str,
}

/// The start's metrics: version 0 of the federation (identity adapter, zero residual, every
/// client's own head at zero in personal mode) evaluated before round 1 like every round, so
/// that a run shows what training added.
#[derive(Debug, Clone, Serialize)]
pub struct StartResult {
    pub top1: f64,
    pub mrr10: f64,
    pub top10: f64,
    pub eval_queries: usize,
}

/// The whole report (`--json`).
#[derive(Debug, Clone, Serialize)]
pub struct SimulationReport {
    /// Top-1 / MRR@10 after the last round.
    pub final_top1: f64,
    pub final_mrr10: f64,
    /// Before round 1.
    pub start: StartResult,
    /// ε of the whole run (absent without DP noise).
    pub epsilon: Option<f64>,
    pub published_rounds: usize,
    pub config: RunConfig,
    pub rounds: Vec<RoundResult>,
}

pub(super) fn print_header(a: &SimulateArgs) {
    let dp = match (a.dp_sigma, a.target_epsilon, a.clip) {
        (Some(s), _, Some(c)) => format!("DP σ={s} C={c} δ={}", a.delta),
        (None, Some(e), Some(c)) => format!("DP target ε={e} C={c} δ={}", a.delta),
        (None, None, Some(c)) => format!("clip C={c}, no noise"),
        _ => "no DP".into(),
    };
    let dp = if a.secure_aggregation {
        format!(
            "{dp} · secure aggregation (k={}, dropout {}, ≥{} survivors)",
            a.secagg_neighbours,
            a.dropout,
            a.min_survivor_count()
        )
    } else {
        dp
    };
    println!(
        "clients {} · rounds {} · local steps {} · mode {:?} · train {:?} · split {:?} · {dp}",
        a.clients, a.rounds, a.local_steps, a.mode, a.train, a.split
    );
    println!(
        "{:>5} {:>7} {:>7} {:>8} {:>9} {:>13} {:>8} {:>11} {:>9}",
        "round", "top1", "mrr10", "epsilon", "survivors", "bytes/client", "wall_s", "parallel_s", "server_s"
    );
}

/// The start's row: round 0, before any training.
pub(super) fn print_start(s: &StartResult) {
    println!("{:>5} {:>7.3} {:>7.3}  (the start, before any round)", 0, s.top1, s.mrr10);
}

pub(super) fn print_row(r: &RoundResult) {
    let eps = r.epsilon.map_or("-".to_string(), |e| format!("{e:.2}"));
    println!(
        "{:>5} {:>7.3} {:>7.3} {:>8} {:>9} {:>13.0} {:>8.2} {:>11.2} {:>9.2}{}",
        r.round,
        r.top1,
        r.mrr10,
        eps,
        r.survivors,
        r.bytes_per_client + r.secagg_bytes_per_client,
        r.wall_s,
        r.parallel_s,
        r.server_s,
        r.unpublished_reason.as_ref().map_or(String::new(), |why| format!("  not published: {why}"))
    );
}

//! The one training loop (native CLI, simulator and browser all call it): mini-batch Adam on
//! cross-entropy over (query, document) pairs, either on cached frozen-encoder features (head
//! only: seconds) or end-to-end through the adapter and the frozen encoder (adapter + head),
//! with a held-out split of the pairs for early stopping and a progress callback.

use crate::adapter::SoftEmbeddingAdapter;
use crate::error::{CoreError, Result};
use crate::head::{CarHead, cross_entropy};
use crate::model::{SentenceEncoder, read_f32};
use burn::optim::decay::WeightDecayConfig;
use burn::optim::{AdamConfig, GradientsParams};
use burn::prelude::*;
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use web_time::Instant;

/// The trainable part of the model: adapter in front of the encoder, CaR head after it.
#[derive(Module, Debug)]
pub struct Retriever {
    pub adapter: SoftEmbeddingAdapter,
    pub head: CarHead,
}

/// Where the training queries come from.
pub enum TrainInputs<'a> {
    /// Pooled frozen-encoder features, row-major `[n, d]`: trains the head only.
    Cached(&'a [f32]),
    /// Query texts, encoded on every step through the adapter: trains adapter and head.
    Texts { encoder: &'a SentenceEncoder, texts: &'a [String] },
}

/// Hyper-parameters of one training run.
#[derive(Debug, Clone)]
pub struct TrainConfig {
    pub epochs: usize,
    pub batch_size: usize,
    pub head_lr: f64,
    pub adapter_lr: f64,
    /// Fraction of the pairs held out for early stopping (0 disables it).
    pub holdout_fraction: f64,
    /// Held-out checks without a better top-1 before stopping.
    pub patience: usize,
    /// Besides the end of every epoch, also judge the held-out pairs after every this many steps
    /// of an epoch (`None`: at epoch ends only). A large corpus' epoch is long — 241 steps of 256
    /// at 10,033 documents against 25 at 1,000 — and patience counts checks, so a run that does
    /// not beat its start stops after a bounded amount of training, not after three long epochs.
    pub check_every: Option<usize>,
    /// Which model a run with held-out pairs returns: `false`, the epoch best on them (the start
    /// included); `true`, the last epoch unless the start beats it on them by more than
    /// [`start_margin`], and `patience` is not consulted (end to end: the held-out pseudo-queries
    /// stop improving long before human questions do).
    pub keep_last_epoch: bool,
    pub seed: u64,
    /// Stop after this many optimiser steps in total, whatever the epochs.
    pub max_steps: Option<usize>,
    /// Weight λ of an L2 pull of the head back to its keys, `λ/2 · (‖W‖² + ‖b‖²)` on the trained
    /// residual and bias: a head keyed by the document embeddings moves away from inner-product
    /// search only as far as the training pairs pay for (0 disables it). Applied as the head
    /// optimiser's weight decay (its gradient `λ·W`, `λ·b`, added to the cross-entropy's): the
    /// same step as the term in the loss without its forward and backward passes over the
    /// `[d, n_docs]` residual; the reported loss is the cross-entropy alone.
    pub pull_to_keys: f64,
}

/// What a training run trains.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum TrainMode {
    /// The head on cached frozen-encoder features (seconds).
    #[serde(rename = "head")]
    Head,
    /// The adapter and the head end to end through the frozen encoder.
    #[serde(rename = "adapter+head")]
    AdapterHead,
}

impl TrainMode {
    /// `"head"` or `"adapter+head"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Head => "head",
            Self::AdapterHead => "adapter+head",
        }
    }
}

impl std::fmt::Display for TrainMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How many times a recorded click (a labelled pair) counts among the pseudo-queries (measured:
/// crates/cli/QUALITY.md, "Clicks"); the tab, `eval` and `simulate` use it.
pub const CLICK_WEIGHT: usize = 3;

/// End-to-end runs stop after this many steps (batches of 32): the adapter gains on human
/// questions only after ~1,000 steps and was measured at 3,000 (13.5 epochs of 1,000 documents'
/// pseudo-queries; crates/cli/QUALITY.md, "The adapter, trained long enough").
pub const ADAPTER_MAX_STEPS: usize = 3_000;

impl TrainConfig {
    /// The measured recipe (crates/cli/QUALITY.md), the one set of defaults that the tab,
    /// `eval` and `simulate` start from: the head in batches of 256 at Adam 1e-2, up to 30 epochs
    /// with early stopping on a held-out tenth of the pairs (patience 3 checks, a check at every
    /// epoch's end and every [`HEAD_CHECK_EVERY`] steps within one), the residual pulled
    /// back to the keys with λ = 1; end to end, batches of 32 with the head at 1e-3 and the
    /// adapter at 1e-4 (every step runs the encoder forward and backward), at most
    /// [`ADAPTER_MAX_STEPS`] steps, without an early end, keeping the last epoch unless the start
    /// beats it on the held-out pairs by more than [`start_margin`].
    pub fn recipe(mode: TrainMode) -> Self {
        let head = Self {
            epochs: 30,
            batch_size: 256,
            head_lr: 1e-2,
            adapter_lr: 1e-4,
            holdout_fraction: 0.1,
            patience: 3,
            check_every: Some(HEAD_CHECK_EVERY),
            keep_last_epoch: false,
            seed: 17,
            max_steps: None,
            pull_to_keys: 1.0,
        };
        match mode {
            TrainMode::Head => head,
            // No early end and the last epoch kept: the held-out pseudo-queries plateau after a
            // few epochs while human questions still gain (QUALITY.md, stop 17); the start is
            // kept only when it beats the last epoch on them by more than `start_margin`.
            TrainMode::AdapterHead => Self {
                batch_size: 32,
                head_lr: 1e-3,
                max_steps: Some(ADAPTER_MAX_STEPS),
                patience: head.epochs,
                check_every: None,
                keep_last_epoch: true,
                ..head
            },
        }
    }
}

/// Head-only runs also judge the held-out pairs every this many steps of an epoch (12,800 pairs
/// in batches of 256): at 1,000 documents an epoch is 25 steps and nothing changes; at 10,033
/// documents a run that does not beat its start ends after 150 steps instead of three epochs
/// of 241 (crates/cli/QUALITY.md, stop 20).
pub const HEAD_CHECK_EVERY: usize = 50;

/// How much better than the last epoch the start must be on `n` held-out pairs for a keep-last
/// run to return the start: two standard errors of a top-1 of `start_top1` over `n` pairs, and
/// at least two pairs. Held-out noise must not throw a long run away (a 3,000-step CLI run whose
/// last epoch scored 0.4 points below its start on 709 pairs was discarded, QUALITY.md stop 18),
/// while a wrecked run still gives the start back.
pub fn start_margin(start_top1: f64, n: usize) -> f64 {
    let n = n.max(1) as f64;
    (2.0 * (start_top1 * (1.0 - start_top1) / n).sqrt()).max(2.0 / n)
}

impl TrainConfig {
    /// This configuration for `n` training examples: batches no larger than an eighth of them, so
    /// that an epoch has at least 8 steps and early stopping judges more than a step or two (a
    /// tab's 30 documents give ~200 pairs: batches of 25 instead of one batch of 256).
    pub fn for_examples(mut self, n: usize) -> Self {
        self.batch_size = self.batch_size.min(n.div_ceil(8)).max(1);
        self
    }
}

impl Default for TrainConfig {
    /// [`TrainConfig::recipe`] for the head.
    fn default() -> Self {
        Self::recipe(TrainMode::Head)
    }
}

/// What the progress callback sees after each step (and after each held-out evaluation).
#[derive(Debug, Clone, Default)]
pub struct TrainProgress {
    pub step: usize,
    pub total_steps: usize,
    pub epoch: usize,
    pub loss: f32,
    pub examples_per_s: f64,
    pub val_top1: Option<f64>,
}

/// Summary of a finished run.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct TrainReport {
    pub steps: usize,
    pub epochs: usize,
    pub train_examples: usize,
    pub holdout_examples: usize,
    pub best_val_top1: Option<f64>,
    /// Held-out top-1 of the model before any step (with a held-out split).
    pub start_val_top1: Option<f64>,
    /// Held-out top-1 at each check (with a held-out split): every epoch's end, and within
    /// epochs every [`TrainConfig::check_every`] steps.
    pub val_top1_by_check: Vec<f64>,
    /// Steps taken at each check of `val_top1_by_check`.
    pub check_steps: Vec<usize>,
    /// Epoch whose model was kept (1-based; 0: the start was never beaten on the held-out
    /// pairs, and the model is returned unchanged).
    pub best_epoch: usize,
    /// Steps taken by the kept model (0: the start).
    pub best_step: usize,
    pub final_loss: f32,
    pub seconds: f64,
    pub examples_per_s: f64,
}

/// Trains `retriever` on `(input i, targets[i])`. The callback returns `false` to cancel.
/// `device` is the plain device of the encoder; autodiff is enabled here.
pub async fn train(
    retriever: Retriever,
    inputs: TrainInputs<'_>,
    targets: &[usize],
    cfg: &TrainConfig,
    device: &Device,
    progress: &mut dyn FnMut(&TrainProgress) -> bool,
) -> Result<(Retriever, TrainReport)> {
    let n = match &inputs {
        TrainInputs::Cached(f) => f.len() / retriever.adapter.dim().max(1),
        TrainInputs::Texts { texts, .. } => texts.len(),
    };
    if n != targets.len() || n == 0 {
        return Err(CoreError::Data(format!(
            "training needs one target per example and at least one example (got {n} inputs, {} targets)",
            targets.len()
        )));
    }
    let n_docs = retriever.head.num_docs();
    if let Some(bad) = targets.iter().find(|&&t| t >= n_docs) {
        return Err(CoreError::Data(format!("target {bad} is outside the head's {n_docs} documents")));
    }
    let train_adapter = matches!(inputs, TrainInputs::Texts { .. });
    let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed);
    let mut order: Vec<usize> = (0..n).collect();
    order.shuffle(&mut rng);
    let n_hold = if n >= 20 { ((n as f64) * cfg.holdout_fraction) as usize } else { 0 };
    let (holdout, train_idx) = order.split_at(n_hold);
    let mut train_idx = train_idx.to_vec();
    let holdout = holdout.to_vec();

    let ad = device.clone().autodiff();
    let Retriever { adapter, head } = retriever.fork(&ad).train();
    let mut adapter = adapter;
    let mut head = head;
    // The pull back to the keys is the head optimiser's weight decay (see `pull_to_keys`).
    let head_decay = (cfg.pull_to_keys > 0.0).then(|| WeightDecayConfig::new(cfg.pull_to_keys as f32));
    let mut opt_head = AdamConfig::new().with_weight_decay(head_decay).init();
    let mut opt_adapter = AdamConfig::new().init();

    let batch = cfg.batch_size.max(1);
    let steps_per_epoch = train_idx.len().div_ceil(batch);
    let mut total_steps = steps_per_epoch * cfg.epochs;
    if let Some(m) = cfg.max_steps {
        total_steps = total_steps.min(m);
    }
    let start = Instant::now();
    let mut report =
        TrainReport { train_examples: train_idx.len(), holdout_examples: holdout.len(), ..Default::default() };
    // The start competes too: a run that never beats it on the held-out pairs returns it.
    let mut best: Option<(f64, Retriever)> = None;
    if !holdout.is_empty() {
        let start_model = Retriever { adapter: adapter.clone(), head: head.clone() };
        let top1 = holdout_top1(&start_model, &inputs, &holdout, targets, device, batch).await?;
        report.start_val_top1 = Some(top1);
        best = Some((top1, start_model));
    }
    // With `keep_last_epoch` the start stays at hand, to come back if the last epoch is clearly
    // worse.
    let start_kept = if cfg.keep_last_epoch { best.clone() } else { None };
    let mut since_best = 0;
    let mut seen = 0usize;
    'epochs: for epoch in 0..cfg.epochs {
        train_idx.shuffle(&mut rng);
        let chunks_in_epoch = train_idx.len().div_ceil(batch);
        for (i, chunk) in train_idx.chunks(batch).enumerate() {
            if report.steps >= total_steps {
                break;
            }
            report.epochs = epoch + 1;
            let pooled = pooled_batch(&inputs, chunk, &adapter, &ad, train_adapter)?;
            let tgt: Vec<i64> = chunk.iter().map(|&i| targets[i] as i64).collect();
            let tgt = Tensor::<1, Int>::from_data(TensorData::new(tgt, [chunk.len()]), &ad);
            let loss = cross_entropy(head.forward(pooled), tgt);
            let loss_value = read_f32(loss.clone().inner()).await?[0];
            if !loss_value.is_finite() {
                return Err(CoreError::Diverged { step: report.steps, loss: loss_value });
            }
            let mut grads = loss.backward();
            let head_grads = GradientsParams::from_module(&mut grads, &head);
            head = opt_head.step(cfg.head_lr, head, head_grads);
            if train_adapter {
                let adapter_grads = GradientsParams::from_module(&mut grads, &adapter);
                adapter = opt_adapter.step(cfg.adapter_lr, adapter, adapter_grads);
            }
            report.steps += 1;
            report.final_loss = loss_value;
            seen += chunk.len();
            let p = TrainProgress {
                step: report.steps,
                total_steps,
                epoch,
                loss: loss_value,
                examples_per_s: seen as f64 / start.elapsed().as_secs_f64().max(1e-9),
                val_top1: None,
            };
            if !progress(&p) {
                return Err(CoreError::Cancelled);
            }
            // A check at the epoch's end (the step cap ends a run inside an epoch, which is still
            // judged) and every `check_every` steps within it.
            let capped = report.steps >= total_steps;
            let epoch_ends = i + 1 == chunks_in_epoch || capped;
            let mid_epoch = cfg.check_every.is_some_and(|k| k > 0 && (i + 1) % k == 0);
            if holdout.is_empty() || !(epoch_ends || mid_epoch) {
                continue;
            }
            let current = Retriever { adapter: adapter.clone(), head: head.clone() };
            let top1 = holdout_top1(&current, &inputs, &holdout, targets, device, batch).await?;
            report.val_top1_by_check.push(top1);
            report.check_steps.push(report.steps);
            let p = TrainProgress { val_top1: Some(top1), ..p };
            if !progress(&p) {
                return Err(CoreError::Cancelled);
            }
            if cfg.keep_last_epoch {
                // The last check, unless the start is clearly better on the held-out pairs.
                best = match &start_kept {
                    Some((start_top1, start_model))
                        if *start_top1 - top1 > start_margin(*start_top1, holdout.len()) =>
                    {
                        (report.best_epoch, report.best_step) = (0, 0);
                        Some((*start_top1, start_model.clone()))
                    }
                    _ => {
                        (report.best_epoch, report.best_step) = (epoch + 1, report.steps);
                        Some((top1, current))
                    }
                };
            } else {
                // A trained check replaces the start when it is at least as good (what it learnt,
                // e.g. clicks, is kept on a tie), and an earlier check only when it is better.
                let better = match &best {
                    None => true,
                    Some((b, _)) if report.best_step == 0 => top1 >= *b,
                    Some((b, _)) => top1 > *b,
                };
                if better {
                    best = Some((top1, current));
                    (report.best_epoch, report.best_step) = (epoch + 1, report.steps);
                    since_best = 0;
                } else {
                    since_best += 1;
                    if since_best >= cfg.patience {
                        break 'epochs;
                    }
                }
            }
        }
        if report.steps >= total_steps {
            break;
        }
    }
    report.seconds = start.elapsed().as_secs_f64();
    report.examples_per_s = seen as f64 / report.seconds.max(1e-9);
    let final_model = match best {
        Some((top1, model)) => {
            report.best_val_top1 = Some(top1);
            model
        }
        None => {
            (report.best_epoch, report.best_step) = (report.epochs, report.steps);
            Retriever { adapter, head }
        }
    };
    Ok((final_model.valid(), report))
}

/// Pooled query features `[batch, d]` for the examples `idx`.
fn pooled_batch(
    inputs: &TrainInputs<'_>,
    idx: &[usize],
    adapter: &SoftEmbeddingAdapter,
    device: &Device,
    through_adapter: bool,
) -> Result<Tensor<2>> {
    match inputs {
        TrainInputs::Cached(features) => {
            let d = adapter.dim();
            let mut rows = Vec::with_capacity(idx.len() * d);
            for &i in idx {
                rows.extend_from_slice(&features[i * d..(i + 1) * d]);
            }
            Ok(Tensor::from_data(TensorData::new(rows, [idx.len(), d]), device))
        }
        TrainInputs::Texts { encoder, texts } => {
            // Encoded in length groups, each within a WebGPU storage binding: the same gradient
            // as one padded batch, with less padding and smaller tensors.
            let batch_texts: Vec<&str> = idx.iter().map(|&i| texts[i].as_str()).collect();
            encoder.pooled_texts(&batch_texts, through_adapter.then_some(adapter))
        }
    }
}

/// Top-1 accuracy of the model on the held-out examples, without gradients.
async fn holdout_top1(
    model: &Retriever,
    inputs: &TrainInputs<'_>,
    holdout: &[usize],
    targets: &[usize],
    device: &Device,
    batch: usize,
) -> Result<f64> {
    let model = model.valid();
    let mut correct = 0usize;
    for chunk in holdout.chunks(batch) {
        let pooled = pooled_batch(inputs, chunk, &model.adapter, device, true)?;
        let best = model.head.forward(pooled).argmax(1);
        let best = best.into_data_async().await?;
        let best: Vec<i64> =
            best.convert::<i64>().try_into_vec::<i64>().map_err(|e| CoreError::Backend(format!("{e:?}")))?;
        correct += chunk.iter().zip(best).filter(|(i, b)| targets[**i] as i64 == *b).count();
    }
    Ok(correct as f64 / holdout.len().max(1) as f64)
}

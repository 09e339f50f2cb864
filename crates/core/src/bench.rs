//! The throughput workload shared by `fedsearch bench throughput` (native) and the browser's
//! benchmark page (`web/bench.html`, WebGPU and CPU): encoder sentences/s, and training
//! examples/s for the head on cached features and for adapter + head end to end, on the same
//! sentences with the same batch sizes, so the figures can be put side by side.

use crate::adapter::SoftEmbeddingAdapter;
use crate::error::Result;
use crate::head::CarHead;
use crate::model::SentenceEncoder;
use crate::train::{Retriever, TrainConfig, TrainInputs, train};
use web_time::Instant;

/// Sentences of varied length (short to a long paragraph), cycled to the requested count.
pub const SAMPLE: &[&str] = &[
    "A man is eating food.",
    "The Eiffel Tower is a wrought-iron lattice tower on the Champ de Mars in Paris, France.",
    "Photosynthesis is the process by which plants use sunlight, water and carbon dioxide to make oxygen and energy in the form of sugar.",
    "The girl is carrying a baby.",
    "Mount Everest is the highest mountain on Earth, in the Himalayas between Nepal and China.",
    "The piano is a keyboard instrument in which hammers strike strings; composers such as Mozart and Chopin wrote for it.",
    "Who wrote Pride and Prejudice?",
    "Rovers explore the dusty surface of Mars, the fourth planet from the Sun.",
];

/// The benchmark's sentences: [`SAMPLE`] cycled to `n`, each tagged with its index so that no
/// two are identical (the head learns one class per sentence).
pub fn sample_sentences(n: usize) -> Vec<String> {
    SAMPLE.iter().cycle().take(n).enumerate().map(|(i, s)| format!("{s} ({i})")).collect()
}

/// Sizes of one benchmark run.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct ThroughputConfig {
    /// Sentences encoded (and classes of the head).
    pub sentences: usize,
    /// Encoder batch size.
    pub encode_batch: usize,
    /// Optimiser steps of head-only training (batch `train_batch`).
    pub head_steps: usize,
    /// Optimiser steps of adapter + head training.
    pub adapter_steps: usize,
    pub train_batch: usize,
}

impl Default for ThroughputConfig {
    fn default() -> Self {
        Self { sentences: 64, encode_batch: 16, head_steps: 20, adapter_steps: 4, train_batch: 16 }
    }
}

/// Measured rates (all per second of wall time, warm-up excluded).
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Throughput {
    pub sentences: usize,
    pub max_len: usize,
    pub dim: usize,
    pub encode_sentences_per_s: f64,
    pub head_examples_per_s: f64,
    pub adapter_examples_per_s: f64,
}

/// Name of the native figure in a model folder, which the benchmark page shows next to its own.
pub const NATIVE_BENCH_FILE: &str = "native-bench.json";

impl Throughput {
    /// The figures as the benchmark page reads them, tagged with where they were measured
    /// (`"native"`, `"webgpu"`, `"cpu"`).
    pub fn to_json(&self, backend: &str) -> serde_json::Value {
        let mut v = serde_json::to_value(self).unwrap_or_default();
        v["backend"] = backend.into();
        v
    }
}

/// Runs the workload on `encoder`'s device. `stage` is told which part is running.
pub async fn throughput(
    encoder: &SentenceEncoder,
    cfg: &ThroughputConfig,
    stage: &mut dyn FnMut(&str),
) -> Result<Throughput> {
    let n = cfg.sentences.max(2);
    let texts = sample_sentences(n);
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let device = encoder.device().clone();
    let d = encoder.dim();

    stage("warming up");
    encoder
        .embed(&refs[..refs.len().min(cfg.encode_batch.max(1))], None, cfg.encode_batch.max(1), &mut |_, _| {})
        .await?;

    stage("encoding");
    let t = Instant::now();
    let features = encoder.embed(&refs, None, cfg.encode_batch.max(1), &mut |_, _| {}).await?;
    let encode_rate = n as f64 / t.elapsed().as_secs_f64().max(1e-9);

    let targets: Vec<usize> = (0..n).collect();
    let fresh =
        || Retriever { adapter: SoftEmbeddingAdapter::identity(d, &device), head: CarHead::zeros(d, n, &device) };
    let train_cfg = |steps: usize| TrainConfig {
        epochs: steps.max(1),
        batch_size: cfg.train_batch.max(1),
        holdout_fraction: 0.0,
        max_steps: Some(steps.max(1)),
        // Without the pull, as every figure in PERFORMANCE.md was measured.
        pull_to_keys: 0.0,
        ..Default::default()
    };

    // One step of each first, so that kernel compilation is not timed.
    stage("warming up training");
    train(fresh(), TrainInputs::Cached(&features), &targets, &train_cfg(1), &device, &mut |_| true).await?;
    let inputs = TrainInputs::Texts { encoder, texts: &texts };
    train(fresh(), inputs, &targets, &train_cfg(1), &device, &mut |_| true).await?;

    stage("training the head");
    let (_, head) =
        train(fresh(), TrainInputs::Cached(&features), &targets, &train_cfg(cfg.head_steps), &device, &mut |_| true)
            .await?;

    stage("training adapter + head");
    let inputs = TrainInputs::Texts { encoder, texts: &texts };
    let (_, adapter) = train(fresh(), inputs, &targets, &train_cfg(cfg.adapter_steps), &device, &mut |_| true).await?;

    Ok(Throughput {
        sentences: n,
        max_len: encoder.tokenizer.max_len(),
        dim: d,
        encode_sentences_per_s: encode_rate,
        head_examples_per_s: head.examples_per_s,
        adapter_examples_per_s: adapter.examples_per_s,
    })
}

/// Size of [`training_losses`]: a few adapter + head steps on short sentences, small enough for
/// a software WebGPU (SwiftShader) in a test.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct LossCheckConfig {
    /// Sentences (one class each; every step sees all of them).
    pub sentences: usize,
    /// Optimiser steps.
    pub steps: usize,
}

impl Default for LossCheckConfig {
    fn default() -> Self {
        Self { sentences: 4, steps: 3 }
    }
}

/// The loss at each of `cfg.steps` adapter + head training steps from a fixed start: identity
/// adapter, head keyed on the sentences' own embeddings, and each sentence labelled with the
/// next one's class, so that the loss is high and both the head and the adapter (whose gradient
/// flows through the keys) move from the first step; one batch holds every sentence. Deterministic up to
/// floating point, so two devices must agree: the browser compares WebGPU with its CPU backend
/// this way (`web/bench.html?check=1`, run by the end-to-end test with the real model). A
/// non-finite loss is [`crate::error::CoreError::Diverged`].
pub async fn training_losses(encoder: &SentenceEncoder, cfg: &LossCheckConfig) -> Result<Vec<f32>> {
    let n = cfg.sentences.max(2);
    let texts = sample_sentences(n);
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let device = encoder.device().clone();
    let d = encoder.dim();
    let keys = encoder.embed(&refs, None, n, &mut |_, _| {}).await?;
    let model = Retriever {
        adapter: SoftEmbeddingAdapter::identity(d, &device),
        head: CarHead::from_keys(&keys, n, d, &device),
    };
    let targets: Vec<usize> = (0..n).map(|i| (i + 1) % n).collect();
    let steps = cfg.steps.max(1);
    let train_cfg = TrainConfig {
        epochs: steps,
        batch_size: n,
        holdout_fraction: 0.0,
        max_steps: Some(steps),
        pull_to_keys: 0.0,
        ..Default::default()
    };
    let mut losses = Vec::with_capacity(steps);
    let inputs = TrainInputs::Texts { encoder, texts: &texts };
    train(model, inputs, &targets, &train_cfg, &device, &mut |p| {
        losses.push(p.loss);
        true
    })
    .await?;
    Ok(losses)
}

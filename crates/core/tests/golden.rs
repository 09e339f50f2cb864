//! Golden values of all-MiniLM-L6-v2 (from the reference sentence-transformers implementation):
//! token ids, the first embedding values and two cosines. Needs the real model.

mod common;

use burn::prelude::*;
use fedsearch_core::adapter::SoftEmbeddingAdapter;
use fedsearch_core::model::{DEFAULT_MAX_LEN, ModelFiles, SentenceEncoder};

fn cosine(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

#[test]
fn minilm_golden_ids_embedding_and_cosines() {
    let Some(dir) = common::real_model_dir() else { return };
    check_golden(ModelFiles::read_dir(&dir).unwrap());
}

/// The f16 copy the page downloads (`fedsearch fetch-model --f16`) keeps the golden values.
#[test]
fn minilm_with_f16_weights_keeps_the_golden_values() {
    let Some(dir) = common::real_model_dir() else { return };
    let files = ModelFiles::read_dir(&dir).unwrap();
    let half = fedsearch_core::loader::to_f16_safetensors(&files.safetensors).unwrap();
    assert!(half.len() < files.safetensors.len() / 2 + 100_000, "{} bytes", half.len());
    check_golden(ModelFiles { safetensors: half, ..files });
}

fn check_golden(files: ModelFiles) {
    let device = Device::flex();
    let enc = SentenceEncoder::load(&files, &device, DEFAULT_MAX_LEN).unwrap();
    assert_eq!(enc.tokenizer.ids("A man is eating food.").unwrap(), vec![101, 1037, 2158, 2003, 5983, 2833, 1012, 102]);
    let texts = ["A man is eating food.", "A man is eating a piece of bread.", "The girl is carrying a baby."];
    let emb = pollster::block_on(enc.embed(&texts, None, 8, &mut |_, _| {})).unwrap();
    let d = enc.dim();
    assert_eq!(d, 384);
    let golden = [0.03324, 0.00441, -0.00628, 0.04838, -0.13870, -0.03362, 0.10113, -0.05438];
    for (i, g) in golden.iter().enumerate() {
        assert!((emb[i] - g).abs() < 1e-3, "embedding[{i}] = {} expected {g}", emb[i]);
    }
    let (a, b, c) = (&emb[0..d], &emb[d..2 * d], &emb[2 * d..3 * d]);
    assert!((cosine(a, b) - 0.7553).abs() < 1e-3, "cos(a,b) = {}", cosine(a, b));
    assert!((cosine(a, c) + 0.1050).abs() < 1e-3, "cos(a,c) = {}", cosine(a, c));

    // Batching and padding must not change an embedding: each text alone gives the same vector.
    let alone = pollster::block_on(enc.embed(&texts[1..2], None, 1, &mut |_, _| {})).unwrap();
    for (x, y) in alone.iter().zip(b) {
        assert!((x - y).abs() < 1e-5);
    }

    // The identity adapter leaves the frozen model's outputs unchanged.
    let adapter = SoftEmbeddingAdapter::identity(d, &device);
    let with_adapter = pollster::block_on(enc.embed(&texts, Some(&adapter), 8, &mut |_, _| {})).unwrap();
    for (x, y) in with_adapter.iter().zip(&emb) {
        assert!((x - y).abs() < 1e-5);
    }
}

/// all-MiniLM-L6-v2 at 256 tokens: the attention scores (12 heads × 256 × 256 × 4 bytes = 3 MiB
/// per example) are the largest activation, so at most 42 examples fit one 128 MiB WebGPU
/// storage binding; larger requested batches are lowered, smaller ones kept.
#[test]
fn minilm_batches_fit_the_webgpu_storage_binding_limit() {
    let Some(dir) = common::real_model_dir() else { return };
    let enc = SentenceEncoder::load(&ModelFiles::read_dir(&dir).unwrap(), &Device::flex(), DEFAULT_MAX_LEN).unwrap();
    assert_eq!(enc.activation_bytes_per_example(256), 12 * 256 * 256 * 4);
    assert_eq!(enc.fit_batch(64, 256), 42);
    assert_eq!(enc.fit_batch(32, 256), 32);
    assert_eq!(enc.fit_batch(64, 64), 64);
    let largest = enc.fit_batch(1000, 256) as u64 * enc.activation_bytes_per_example(256);
    assert!(largest <= fedsearch_core::model::WEBGPU_MIN_STORAGE_BINDING_BYTES);
    // The word-embedding table (the largest weight) fits one binding too.
    assert!(
        (enc.config.vocab_size * enc.config.hidden_size * 4) as u64
            <= fedsearch_core::model::WEBGPU_MIN_STORAGE_BINDING_BYTES
    );
}

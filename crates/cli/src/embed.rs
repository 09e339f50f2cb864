//! Embedding texts with a progress bar, on every core (`embed_parallel`), and the on-disk cache
//! of frozen-encoder embeddings that `eval` and `simulate` share (`--embed-cache DIR`, or
//! `FEDSEARCH_EMBED_CACHE`): the key hashes the model files, the maximum length and the texts,
//! so a stale entry can never be returned.

use crate::error::{CliError, CliResult};
use crate::parallel::{on_threads, threads};
use crate::progress::bar;
use fedsearch_core::adapter::SoftEmbeddingAdapter;
use fedsearch_core::model::{ModelFiles, SentenceEncoder};
use sha2::{Digest, Sha256};
use std::path::PathBuf;

/// Where cached embeddings of one model live (or nowhere).
pub struct EmbedCache {
    dir: Option<PathBuf>,
    model_key: Sha256,
}

impl EmbedCache {
    /// A cache in `dir` (falling back to `FEDSEARCH_EMBED_CACHE`) for this model and max length.
    pub fn new(dir: Option<PathBuf>, files: &ModelFiles, max_len: usize) -> Self {
        let dir = dir.or_else(|| std::env::var_os("FEDSEARCH_EMBED_CACHE").map(PathBuf::from));
        let mut h = Sha256::new();
        if dir.is_some() {
            for part in [&files.config_json, &files.safetensors, &files.tokenizer_json] {
                h.update((part.len() as u64).to_le_bytes());
                h.update(part);
            }
            h.update((max_len as u64).to_le_bytes());
        }
        Self { dir, model_key: h }
    }

    /// No cache at all.
    pub fn disabled() -> Self {
        Self { dir: None, model_key: Sha256::new() }
    }

    fn path(&self, texts: &[String]) -> Option<PathBuf> {
        let dir = self.dir.as_ref()?;
        let mut h = self.model_key.clone();
        for t in texts {
            h.update((t.len() as u64).to_le_bytes());
            h.update(t.as_bytes());
        }
        let hex: String = h.finalize().iter().map(|b| format!("{b:02x}")).collect();
        Some(dir.join(format!("emb-{hex}.f32")))
    }
}

/// Embeds texts (row-major `[n, d]`) with a progress bar; frozen embeddings (no adapter) go
/// through the cache.
pub async fn embed(
    enc: &SentenceEncoder,
    texts: &[String],
    adapter: Option<&SoftEmbeddingAdapter>,
    label: &str,
    cache: &EmbedCache,
) -> CliResult<Vec<f32>> {
    if texts.is_empty() {
        return Ok(Vec::new());
    }
    let path = if adapter.is_none() { cache.path(texts) } else { None };
    if let Some(bytes) = path.as_ref().and_then(|p| std::fs::read(p).ok())
        && bytes.len() == texts.len() * enc.dim() * 4
    {
        return Ok(bytes.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect());
    }
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let pb = bar(texts.len(), label);
    let out = embed_parallel(enc, &refs, adapter, EMBED_BATCH, threads(), &|n| pb.inc(n as u64))?;
    pb.finish_and_clear();
    if let Some(p) = path {
        let bytes: Vec<u8> = out.iter().flat_map(|v| v.to_le_bytes()).collect();
        std::fs::create_dir_all(p.parent().unwrap_or(&p))
            .and_then(|_| std::fs::write(&p, bytes))
            .map_err(|e| CliError::Io(format!("cannot write the embedding cache {}: {e}", p.display())))?;
    }
    Ok(out)
}

/// Texts per encoder batch in [`embed`]: the fastest measured (crates/core/PERFORMANCE.md,
/// "Encoders side by side": 256 Wikipedia summaries, 4 beats 1, 8 and 16 with one encoder and
/// with two; 32 was 0.65–0.86× of 8).
pub const EMBED_BATCH: usize = 4;

/// Embeds `texts` (row-major `[n, d]`, in order) on `threads` OS threads, each running the one
/// encoder (`SentenceEncoder::embed`) over every `threads`-th text by length, so the shards pad
/// alike (crates/core/PERFORMANCE.md, "Encoders side by side"). `progress` gets the texts each
/// finished batch adds.
pub fn embed_parallel(
    enc: &SentenceEncoder,
    texts: &[&str],
    adapter: Option<&SoftEmbeddingAdapter>,
    batch: usize,
    threads: usize,
    progress: &(dyn Fn(usize) + Sync),
) -> CliResult<Vec<f32>> {
    let d = enc.dim();
    let threads = threads.clamp(1, texts.len().max(1));
    let mut by_length: Vec<usize> = (0..texts.len()).collect();
    by_length.sort_by_key(|&i| texts[i].len());
    let mut shards: Vec<Vec<usize>> =
        (0..threads).map(|t| by_length.iter().copied().skip(t).step_by(threads).collect()).collect();
    let results = on_threads(&mut shards, |shard| {
        let shard_texts: Vec<&str> = shard.iter().map(|&i| texts[i]).collect();
        let mut last = 0;
        let mut report = |done: usize, _: usize| {
            progress(done - last);
            last = done;
        };
        pollster::block_on(enc.embed(&shard_texts, adapter, batch, &mut report)).map_err(CliError::from)
    });
    let mut out = vec![0.0f32; texts.len() * d];
    for (shard, rows) in shards.iter().zip(results) {
        let rows = rows?;
        for (k, &i) in shard.iter().enumerate() {
            out[i * d..(i + 1) * d].copy_from_slice(&rows[k * d..(k + 1) * d]);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::prelude::Device;
    use fedsearch_core::tiny::{TinyBertSpec, tiny_bert_files};

    #[test]
    fn parallel_encoders_give_every_text_its_own_row_in_order() {
        let device = Device::flex();
        let enc = SentenceEncoder::load(&tiny_bert_files(&TinyBertSpec::default()).unwrap(), &device, 64).unwrap();
        let texts: Vec<String> = (0..23).map(|i| format!("text {i} {}", "word ".repeat(i % 7))).collect();
        let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
        let one = pollster::block_on(enc.embed(&refs, None, 4, &mut |_, _| {})).unwrap();
        let done = std::sync::atomic::AtomicUsize::new(0);
        for threads in [1, 2, 3, 40] {
            let count = |n: usize| {
                done.fetch_add(n, std::sync::atomic::Ordering::Relaxed);
            };
            done.store(0, std::sync::atomic::Ordering::Relaxed);
            let many = embed_parallel(&enc, &refs, None, 4, threads, &count).unwrap();
            assert_eq!(many.len(), one.len());
            let worst = many.iter().zip(&one).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
            assert!(worst < 1e-5, "{threads} threads: max difference {worst}");
            assert_eq!(done.load(std::sync::atomic::Ordering::Relaxed), texts.len(), "progress counts every text");
        }
    }
}

//! Embedding texts with a progress bar, and the on-disk cache of frozen-encoder embeddings that
//! `eval` and `simulate` share (`--embed-cache DIR`, or `FEDSEARCH_EMBED_CACHE`): the key hashes
//! the model files, the maximum length and the texts, so a stale entry can never be returned.

use crate::error::{CliError, CliResult};
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
    let out = enc.embed(&refs, adapter, 32, &mut |done, _| pb.set_position(done as u64)).await?;
    pb.finish_and_clear();
    if let Some(p) = path {
        let bytes: Vec<u8> = out.iter().flat_map(|v| v.to_le_bytes()).collect();
        std::fs::create_dir_all(p.parent().unwrap_or(&p))
            .and_then(|_| std::fs::write(&p, bytes))
            .map_err(|e| CliError::Io(format!("cannot write the embedding cache {}: {e}", p.display())))?;
    }
    Ok(out)
}

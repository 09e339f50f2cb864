//! The sentence encoder as callers see it: model files in (as bytes, so the browser can use the
//! same code), unit-norm embeddings out. Holds the frozen BERT, its tokenizer and the device.

use crate::adapter::SoftEmbeddingAdapter;
use crate::config::BertConfig;
use crate::encoder::{BertEncoder, mean_pool};
use crate::error::{CoreError, Result};
use crate::loader::load_encoder;
use crate::tokenizer::{TextTokenizer, TokenBatch};
use burn::prelude::*;
use std::path::Path;

/// The three files of a Hugging Face BERT folder, as bytes.
pub struct ModelFiles {
    pub config_json: Vec<u8>,
    pub safetensors: Vec<u8>,
    pub tokenizer_json: Vec<u8>,
}

/// Default maximum sequence length (sentence-transformers' all-MiniLM-L6-v2 uses 256).
pub const DEFAULT_MAX_LEN: usize = 256;

impl ModelFiles {
    /// Reads `config.json`, `model.safetensors` and `tokenizer.json` from a folder.
    pub fn read_dir(dir: &Path) -> Result<Self> {
        let read = |name: &str, make: fn(String) -> CoreError| {
            let p = dir.join(name);
            std::fs::read(&p).map_err(|e| make(format!("cannot read {}: {e}", p.display())))
        };
        Ok(Self {
            config_json: read("config.json", CoreError::Config)?,
            safetensors: read("model.safetensors", CoreError::Weights)?,
            tokenizer_json: read("tokenizer.json", CoreError::Tokenizer)?,
        })
    }
}

/// The largest storage-buffer binding every WebGPU device supports (the spec's default
/// `maxStorageBufferBindingSize`, 128 MiB). Batches are sized so that no activation tensor
/// exceeds it, on every backend, so the same run fits any browser.
pub const WEBGPU_MIN_STORAGE_BINDING_BYTES: u64 = 128 << 20;

/// Frozen encoder + tokenizer on one device.
pub struct SentenceEncoder {
    pub bert: BertEncoder,
    pub tokenizer: TextTokenizer,
    pub config: BertConfig,
    /// Largest tensor, in bytes, a batch may create ([`WEBGPU_MIN_STORAGE_BINDING_BYTES`]
    /// unless changed).
    pub storage_binding_limit: u64,
    device: Device,
}

impl SentenceEncoder {
    /// Loads the model from its files; `max_len` is capped at the model's position table.
    pub fn load(files: &ModelFiles, device: &Device, max_len: usize) -> Result<Self> {
        let config = BertConfig::from_json_bytes(&files.config_json)?;
        let max_len = max_len.min(config.max_position_embeddings);
        let tokenizer = TextTokenizer::from_bytes(&files.tokenizer_json, max_len, config.vocab_size)?;
        let bert = load_encoder(&files.safetensors, &config, device)?;
        Ok(Self {
            bert,
            tokenizer,
            config,
            storage_binding_limit: WEBGPU_MIN_STORAGE_BINDING_BYTES,
            device: device.clone().without_autodiff(),
        })
    }

    /// Bytes of the largest activation tensor one example of `seq_len` tokens creates in the
    /// encoder: attention scores `[heads, L, L]`, the feed-forward `[L, intermediate]` or the
    /// hidden states `[L, hidden]`, in f32.
    pub fn activation_bytes_per_example(&self, seq_len: usize) -> u64 {
        let c = &self.config;
        let l = seq_len as u64;
        let largest =
            (c.num_attention_heads as u64 * l * l).max(l * c.intermediate_size as u64).max(l * c.hidden_size as u64);
        largest * 4
    }

    /// `requested` lowered (to at least 1) so that one batch of `seq_len`-token sequences keeps
    /// every activation tensor within `storage_binding_limit`.
    pub fn fit_batch(&self, requested: usize, seq_len: usize) -> usize {
        let per = self.activation_bytes_per_example(seq_len).max(1);
        requested.min((self.storage_binding_limit / per) as usize).max(1)
    }

    /// Embedding width.
    pub fn dim(&self) -> usize {
        self.config.hidden_size
    }

    /// The (non-autodiff) device the frozen weights live on.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Pooled, normalised embeddings `[batch, d]` of a token batch, through `adapter` if given.
    /// The result carries autodiff exactly when the adapter does.
    pub fn pooled(&self, batch: &TokenBatch, adapter: Option<&SoftEmbeddingAdapter>) -> Tensor<2> {
        let (ids, mask) = batch_tensors(batch, &self.device);
        let hidden = self.bert.forward(ids, mask.clone(), adapter);
        mean_pool(hidden, mask)
    }

    /// Pooled embeddings `[texts.len(), d]` of `texts` in their order, as one training step
    /// sees them: the texts are sorted by token count and encoded in groups that are each padded
    /// only to their own longest member ([`length_groups`]), then put back in order. Pseudo-
    /// queries run from 3 to 100 tokens, so one batch padded to its longest computed ~2.5× the
    /// real tokens; the groups compute ~1.15×, with the same result (padding is masked). Carries
    /// autodiff exactly when the adapter does.
    pub fn pooled_texts(&self, texts: &[&str], adapter: Option<&SoftEmbeddingAdapter>) -> Result<Tensor<2>> {
        if texts.is_empty() {
            return Err(CoreError::Data("no texts to encode".into()));
        }
        // One plan of at most all the texts: the length groups `embed` uses.
        let plan = self.plan_batches(texts, texts.len())?;
        let mut pooled: Vec<Tensor<2>> = plan.batches.iter().map(|(_, batch)| self.pooled(batch, adapter)).collect();
        let pooled = if pooled.len() == 1 { pooled.remove(0) } else { Tensor::cat(pooled, 0) };
        // Row `pos` of `pooled` is text `order[pos]`: gather them back into the texts' order.
        let order: Vec<usize> = plan.batches.iter().flat_map(|(idx, _)| idx.iter().copied()).collect();
        if order.iter().enumerate().all(|(pos, &k)| pos == k) {
            return Ok(pooled);
        }
        let mut position = vec![0i64; order.len()];
        for (pos, &k) in order.iter().enumerate() {
            position[k] = pos as i64;
        }
        let n = position.len();
        let position = Tensor::<1, Int>::from_data(TensorData::new(position, [n]), &pooled.device());
        Ok(pooled.select(0, position))
    }

    /// Embeds texts in batches (row-major `[n, d]`), calling `progress(done, total)`.
    pub async fn embed(
        &self,
        texts: &[&str],
        adapter: Option<&SoftEmbeddingAdapter>,
        batch_size: usize,
        progress: &mut dyn FnMut(usize, usize),
    ) -> Result<Vec<f32>> {
        let inference_adapter = adapter.map(|a| a.clone().valid());
        let plan = self.plan_batches(texts, batch_size)?;
        let mut rows = vec![Vec::new(); texts.len()];
        let mut done = 0;
        for (chunk, batch) in &plan.batches {
            let pooled = self.pooled(batch, inference_adapter.as_ref());
            let values = read_f32(pooled).await?;
            for (k, &i) in chunk.iter().enumerate() {
                rows[i] = values[k * self.dim()..(k + 1) * self.dim()].to_vec();
            }
            done += chunk.len();
            progress(done, texts.len());
        }
        let mut out = Vec::with_capacity(texts.len() * self.dim());
        for r in rows {
            out.extend_from_slice(&r);
        }
        Ok(out)
    }

    /// How [`Self::embed`] batches `texts`: tokenized once, sorted by token count, and cut into
    /// batches of at most `batch_size` (lowered by [`Self::fit_batch`] for their length), each
    /// padded to its own longest member, where a shorter batch saves more padding than another
    /// pass costs ([`length_groups`], as a training step's texts). Padding is masked, so the
    /// cut does not change any text's embedding.
    pub fn plan_batches(&self, texts: &[&str], batch_size: usize) -> Result<BatchPlan> {
        let mut ids = texts.iter().map(|t| self.tokenizer.ids(t)).collect::<Result<Vec<_>>>()?;
        let mut order: Vec<usize> = (0..texts.len()).collect();
        order.sort_by_key(|&i| ids[i].len());
        let lens: Vec<usize> = order.iter().map(|&i| ids[i].len()).collect();
        let sizes = length_groups(&lens, GROUP_OVERHEAD_TOKENS, |len| self.fit_batch(batch_size.max(1), len));
        let mut batches = Vec::with_capacity(sizes.len());
        let mut start = 0;
        for size in sizes {
            let chunk = &order[start..start + size];
            // `order` is a permutation: each text's ids are taken exactly once.
            let rows: Vec<Vec<u32>> = chunk.iter().map(|&i| std::mem::take(&mut ids[i])).collect();
            batches.push((chunk.to_vec(), self.tokenizer.pad(&rows)));
            start += size;
        }
        Ok(BatchPlan { batches })
    }
}

/// A group's fixed cost in [`length_groups`], in positions: one more encoder pass (forward and
/// backward in training, forward in [`SentenceEncoder::embed`]) costs about as much as this many
/// more padded tokens would.
pub const GROUP_OVERHEAD_TOKENS: usize = 32;

/// Cuts token counts sorted ascending into consecutive groups, each padded to its own longest
/// member, so that the positions computed plus `overhead` per group are fewest; a group whose
/// longest member has `len` tokens holds at most `max_size(len)` (at least 1). Returns the
/// groups' sizes, in order.
pub fn length_groups(sorted_lens: &[usize], overhead: usize, max_size: impl Fn(usize) -> usize) -> Vec<usize> {
    let n = sorted_lens.len();
    // cost[j]: cheapest cut of the first j; cut[j]: where its last group starts.
    let mut cost = vec![usize::MAX; n + 1];
    let mut cut = vec![0; n + 1];
    cost[0] = 0;
    for j in 1..=n {
        let longest = sorted_lens[j - 1];
        let room = max_size(longest).max(1);
        for i in j.saturating_sub(room)..j {
            let c = cost[i].saturating_add((j - i) * longest + overhead);
            if c < cost[j] {
                cost[j] = c;
                cut[j] = i;
            }
        }
    }
    let mut sizes = Vec::new();
    let mut j = n;
    while j > 0 {
        sizes.push(j - cut[j]);
        j = cut[j];
    }
    sizes.reverse();
    sizes
}

/// Texts grouped into padded token batches: `(indices into the texts, their batch)`.
pub struct BatchPlan {
    pub batches: Vec<(Vec<usize>, TokenBatch)>,
}

impl BatchPlan {
    /// Tokens that are text (special tokens included), over all batches.
    pub fn real_tokens(&self) -> usize {
        self.batches.iter().map(|(_, b)| b.mask.iter().filter(|&&m| m == 1).count()).sum()
    }

    /// Positions the encoder computes, padding included.
    pub fn padded_tokens(&self) -> usize {
        self.batches.iter().map(|(_, b)| b.batch * b.seq_len).sum()
    }
}

/// Token ids and a float 0/1 mask as tensors on `device`.
pub fn batch_tensors(batch: &TokenBatch, device: &Device) -> (Tensor<2, Int>, Tensor<2>) {
    let shape = [batch.batch, batch.seq_len];
    let ids = Tensor::<2, Int>::from_data(TensorData::new(batch.ids.clone(), shape), device);
    let mask_f: Vec<f32> = batch.mask.iter().map(|&m| m as f32).collect();
    let mask = Tensor::<2>::from_data(TensorData::new(mask_f, shape), device);
    (ids, mask)
}

/// Reads a float tensor back to the host without blocking (required in the browser).
pub async fn read_f32<const D: usize>(t: Tensor<D>) -> Result<Vec<f32>> {
    let data = t.into_data_async().await?;
    data.try_into_vec::<f32>().map_err(|e| CoreError::Backend(format!("unexpected tensor element type: {e:?}")))
}
